"""Gradio app: colour a line drawing from a reference image, colour strokes and colour tags.

    python app.py [--share] [--device cpu|cuda] [--weights DIR_OR_HUB_ID] [--port N]

The same file is the Hugging Face Space's entry point (README front matter: app_file app.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from PIL import Image, UnidentifiedImageError

from colorize import Colorizer
from colorize.models import GENERATORS
from colorize.pipeline import MAX_SIDE, SIZES, TAG_RANGE
from colorize.tags import COLOR_TAGS

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_SIZE = 512  # the working size of the (cached) example outputs
EXAMPLES_CACHE_ENV = "GRADIO_EXAMPLES_CACHE"

DESCRIPTION = """\
# Line-art colorization

Upload a **sketch** (dark lines on white), then colour it from a **reference image**, your own
**colour strokes** (paint them on the sketch with the brush; each stroke fills the region it
touches with exactly its colour) or **colour tags**. Five published methods, one library:
pick one below. *Snap* keeps every closed region of the drawing one clean colour, so nothing
bleeds over the lines.

Examples: [OpenMoji](https://openmoji.org) test-split drawings, CC BY-SA 4.0.
"""

METHOD_NOTES = {
    "sga": "Cao et al. — reference image; attention (CBAM + stop-gradient attention) matches "
    "sketch and reference",
    "resunet": "Khang et al. — reference image and its 9-colour k-means palette; noise seed",
    "csft": "Cui et al. — reference image warped by dense correspondence (the slowest)",
    "tags": "Yan et al. — reference image, then colour-tag sliders shift its colours",
    "hints": "Ci et al. — your colour strokes only, no reference",
}

BRUSH_COLORS = ("#e53935", "#fb8c00", "#fdd835", "#43a047", "#1e88e5", "#8e24aa", "#f8bbd0",
                "#f1c27d", "#8d5524", "#212121", "#9e9e9e", "#ffffff")  # fmt: skip
TAG_STEP = 0.01  # slider resolution; a slider counts as moved when it is off its start by more
UploadT = TypeVar("UploadT", gr.Image, gr.ImageEditor)


# ---------------------------------------------------------------------------------------------
# Uploads that name a bad file instead of failing with a bare "Error"


def _readable(component: gr.components.Component, preprocess: Any, payload: Any) -> Any:
    """`preprocess(payload)` with the errors PIL raises on a corrupt, non-image or huge
    upload turned into a gr.Error that names the component (Gradio would say only "Error")."""
    try:
        return preprocess(payload)
    except Image.DecompressionBombError as exc:
        raise gr.Error(
            f"{component.label}: the image is far too large; the limit is {MAX_SIDE} px per side"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise gr.Error(
            f"{component.label}: the file is not a readable image (corrupt or another format)"
        ) from exc


def named_errors(component: UploadT) -> UploadT:
    """`component` whose preprocessing names a bad upload (see `_readable`). The instance is
    wrapped rather than subclassed: Gradio writes a .pyi stub next to any module that defines
    a component subclass, so a subclass here would make importing app.py write a file."""
    preprocess = component.preprocess
    component.preprocess = lambda payload: _readable(component, preprocess, payload)
    return component


# ---------------------------------------------------------------------------------------------
# The app


def _strokes(layers: list[Image.Image] | None) -> Image.Image | None:
    """All painted layers composited into one RGBA stroke layer; None when nothing is painted."""
    painted = [layer.convert("RGBA") for layer in layers or [] if layer is not None]
    painted = [layer for layer in painted if layer.getchannel("A").getbbox() is not None]
    if not painted:
        return None
    merged = painted[0]
    for layer in painted[1:]:
        merged = Image.alpha_composite(merged, layer.resize(merged.size))
    return merged


def _weights_warning(method: str, source: str) -> str:
    if source != "random":
        return ""
    return (
        f"⚠️ **Untrained random weights** for `{method}`: the colours are meaningless until "
        f"trained weights are in `weights/{method}/` (or `--weights`)."
    )


def _status(info: dict[str, Any]) -> str:
    line = (
        f"**{info['method']}** · {info['device']} · {info['dtype']} · **{info['ms']:.0f} ms** · "
        f"input {info['size']} · snap {info['snap']}"
    )
    parts = [line, _weights_warning(info["method"], info["weights"])]
    parts += [f"ℹ️ {notice}" for notice in info["notices"]]
    return "\n\n".join(part for part in parts if part)


def _tag_slider(tag: str) -> gr.Slider:
    """A 0–5 slider for one colour tag of the vocabulary (e.g. "color:blue")."""
    colour = tag.removeprefix("color:")
    return gr.Slider(
        *TAG_RANGE, value=0.0, step=TAG_STEP, label=colour, elem_id=f"tag-{colour}", min_width=120
    )


def _gpu(fn: Any) -> Any:
    """`spaces.GPU` on a ZeroGPU Space (the package exists there), else `fn` unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


def build_demo(colorizer: Colorizer) -> gr.Blocks:
    """The Blocks app around `colorizer` (models load on first use, then stay cached)."""
    methods = list(GENERATORS)

    def controls(method: str, reference: Image.Image | None) -> list[Any]:
        """What `method` can use: reference, tag sliders (start values from the reference),
        the seed; and the method's note with the weights warning."""
        loaded = colorizer.load(method)
        uses = loaded.model.conditions
        note = "\n\n".join(
            p for p in (METHOD_NOTES[method], _weights_warning(method, loaded.source)) if p
        )
        tag_names = colorizer.tag_names(method) if method == "tags" else ()
        start = {name: 0.0 for name in COLOR_TAGS}
        if tag_names and reference is not None:
            try:
                read = colorizer.reference_tags(reference)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
            start.update({k: round(v, 2) for k, v in read.items() if k in start})
        tag_note = (
            "Sliders start at what the tagger reads from the reference; move one to push that "
            "colour (values above 1 exaggerate it)."
            if tag_names
            else "These weights have no trained TagMapper, so the tag sliders are disabled."
        )
        sliders = [
            gr.update(value=start[name], interactive=name in tag_names) for name in COLOR_TAGS
        ]
        return [
            note,
            gr.update(visible="reference" in uses),
            gr.update(visible=method == "tags"),
            tag_note,
            gr.update(visible=method == "resunet"),
            start,
            *sliders,
        ]

    @_gpu
    def colorize(
        sketch: dict[str, Any] | None,
        reference: Image.Image | None,
        method: str,
        size: float,
        snap: bool,
        snap_mode: str,
        seed: float,
        tag_start: dict[str, float],
        *tag_values: float,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio's API)
    ) -> tuple[Image.Image, str]:
        """Colour the uploaded sketch; every input problem comes back as a gr.Error."""
        if not sketch or sketch.get("background") is None:
            raise gr.Error("Upload a sketch first (dark lines on a white background).")
        strokes = _strokes(sketch.get("layers"))
        if method == "hints" and strokes is None:
            gr.Warning("No strokes painted: hints colours from the sketch alone. Paint with the "
                       "brush to choose colours.")  # fmt: skip
        tags = None
        if method == "tags" and colorizer.tag_names(method):
            moved = {
                name: float(value)
                for name, value in zip(COLOR_TAGS, tag_values, strict=True)
                if abs(float(value) - tag_start.get(name, 0.0)) > TAG_STEP / 2
            }
            tags = moved or None
        progress(0.1, desc=f"{method}: colorizing")
        try:
            image, info = colorizer(
                sketch["background"],
                reference=reference if "reference" in colorizer.load(method).model.conditions
                else None,
                strokes=strokes, tags=tags, method=method, size=int(round(size)),
                snap=snap_mode if snap else False, seed=int(seed or 0),
            )  # fmt: skip
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        for notice in info["notices"]:
            gr.Warning(notice)
        return image, _status(info)

    def example(sketch: Any, reference: Image.Image | None, method: str) -> tuple[Image.Image, str]:
        """An example with the default settings (what the cached example shows)."""
        unmoved = [0.0] * len(COLOR_TAGS)
        return colorize(sketch, reference, method, EXAMPLE_SIZE, True, "flat", 0, {}, *unmoved)

    with gr.Blocks(title="Line-art colorization") as demo:
        gr.Markdown(DESCRIPTION)
        tag_start = gr.State({name: 0.0 for name in COLOR_TAGS})
        with gr.Row():
            with gr.Column():
                sketch = named_errors(
                    gr.ImageEditor(
                        label="Sketch — paint colour strokes on it with the brush",
                        type="pil",
                        image_mode=None,  # keep 16-bit and palette uploads for the pipeline
                        format="png",  # exact stroke colours (no lossy webp)
                        sources=("upload", "clipboard"),
                        transforms=(),
                        brush=gr.Brush(
                            colors=list(BRUSH_COLORS), default_size=12, color_mode="defaults"
                        ),
                        eraser=gr.Eraser(),
                        layers=gr.LayerOptions(allow_additional_layers=False, layers=["strokes"]),
                        elem_id="sketch",
                    )
                )
                reference = named_errors(
                    gr.Image(
                        label="Reference image (its colours are used)",
                        type="pil",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        height=240,
                        elem_id="reference",
                    )
                )
                method = gr.Dropdown(
                    [(f"{key} — {METHOD_NOTES[key].split(' — ')[0]}", key) for key in methods],
                    value="sga",
                    label="Method",
                    elem_id="method",
                )
                method_note = gr.Markdown(METHOD_NOTES["sga"], elem_id="method-note")
                with gr.Accordion("Colour tags (0–5)", open=True, visible=False) as tag_box:
                    tag_note = gr.Markdown()
                    sliders = []
                    for row in range(0, len(COLOR_TAGS), 3):
                        with gr.Row():
                            sliders += [_tag_slider(tag) for tag in COLOR_TAGS[row : row + 3]]
                with gr.Row():
                    size = gr.Slider(
                        128, min(1024, SIZES[1]), value=512, step=64,
                        label="Working size (longer side, px)", elem_id="size",
                    )  # fmt: skip
                    seed = gr.Number(0, precision=0, label="Noise seed", visible=False)
                with gr.Row():
                    snap = gr.Checkbox(
                        True, label="Snap colours to line-art regions", elem_id="snap"
                    )
                    snap_mode = gr.Radio(["flat", "smooth"], value="flat", label="Snap mode")
                run = gr.Button("Colorize", variant="primary", elem_id="colorize")
            with gr.Column():
                output = gr.Image(
                    label="Result", type="pil", format="png", interactive=False,
                    buttons=["download", "fullscreen"], elem_id="output",
                )  # fmt: skip
                status = gr.Markdown(elem_id="status")

        control_outputs = [method_note, reference, tag_box, tag_note, seed, tag_start, *sliders]
        for trigger in (method.change, reference.upload, reference.clear):
            trigger(controls, [method, reference], control_outputs, concurrency_id="model",
                    concurrency_limit=1, api_visibility="private")  # fmt: skip
        demo.load(controls, [method, reference], control_outputs, concurrency_id="model",
                  concurrency_limit=1, api_visibility="private")  # fmt: skip
        snap.change(lambda on: gr.update(visible=on), snap, snap_mode, api_visibility="private")
        run.click(
            colorize,
            [sketch, reference, method, size, snap, snap_mode, seed, tag_start, *sliders],
            [output, status],
            api_name="colorize",
            concurrency_id="model",
            concurrency_limit=1,
        )
        example_rows = _examples()
        if example_rows:
            with _examples_cache(colorizer.weights):
                gr.Examples(
                    example_rows, [sketch, reference, method], [output, status], fn=example,
                    cache_examples=True, cache_mode="lazy",
                    label="Examples (OpenMoji, CC BY-SA 4.0)",
                )  # fmt: skip
    demo.queue(max_size=16)
    return demo


def weights_key(weights: str) -> str:
    """A short hash of the weights the app serves: each file's name, size and modification
    time under a local folder, or the Hub id. New weights give a new key."""
    root, parts = Path(weights).expanduser(), [weights]
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                parts.append(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _examples_cache(weights: str) -> Iterator[None]:
    """Gradio's example cache in a folder per `weights_key`, so outputs cached with other
    weights (e.g. the random ones before training) are never served; gr.Examples reads the
    folder when it is built."""
    base = os.environ.get(EXAMPLES_CACHE_ENV)
    folder = Path(base or ".gradio/cached_examples") / weights_key(weights)
    os.environ[EXAMPLES_CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if base is None:
            os.environ.pop(EXAMPLES_CACHE_ENV)
        else:
            os.environ[EXAMPLES_CACHE_ENV] = base


def _examples() -> list[list[Any]]:
    """[sketch, reference, method] rows from examples/ (OpenMoji test split; see its README)."""
    rows = [
        ("runner-sketch.png", None, "runner-reference.png", "sga"),
        ("girl-sketch.png", None, "girl-reference.png", "resunet"),
        ("robot-sketch.png", None, "alien-reference.png", "csft"),
        ("monkey-sketch.png", None, "heart-reference.png", "tags"),
        ("face-sketch.png", "face-strokes.png", None, "hints"),
    ]
    examples = []
    for sketch, strokes, reference, method in rows:
        files = [EXAMPLES / name for name in (sketch, strokes, reference) if name]
        if not all(path.is_file() for path in files):
            continue
        layers = [str(EXAMPLES / strokes)] if strokes else []
        editor = {"background": str(EXAMPLES / sketch), "layers": layers, "composite": None}
        examples.append([editor, str(EXAMPLES / reference) if reference else None, method])
    return examples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Line-art colorization app (Gradio).")
    parser.add_argument("--share", action="store_true", help="make a public gradio.live link")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--weights", help="weights folder or Hub repo id (default: weights/)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="port to serve on (default 7860 or $GRADIO_SERVER_PORT)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # the hints example has no reference on purpose; Gradio warns about that gap at launch
    warnings.filterwarnings("ignore", "Examples will be cached but not all input components")
    try:
        colorizer = Colorizer(weights=args.weights, device=args.device)
    except ValueError as exc:
        parser.error(str(exc))
    build_demo(colorizer).launch(share=args.share, server_port=args.port, theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
