"""app.py: importing starts nothing, build_demo builds on CPU with tiny weights, the handler
returns an image, every bad input is a gr.Error, controls follow the method, and a
gradio_client call against the app served locally."""

import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

import app
from colorize import Colorizer
from colorize.tags import COLOR_TAGS
from tests.test_pipeline import drawn_sketch, reference_image, right_half_stroke, write_tiny_weights

REPO = Path(__file__).resolve().parents[1]
NO_TAGS = [0.0] * len(COLOR_TAGS)


@pytest.fixture(scope="module", autouse=True)
def _gradio_cache(tmp_path_factory):
    """Gradio's example cache goes to a temporary folder, never the repository's .gradio/ (a
    cache of tiny-model outputs there would be served by a later `python app.py`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("gradio-examples")))
        yield


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory) -> Colorizer:
    return Colorizer(weights=write_tiny_weights(tmp_path_factory.mktemp("weights")), device="cpu")


@pytest.fixture(scope="module")
def demo(colorizer, _gradio_cache) -> gr.Blocks:
    return app.build_demo(colorizer)


def _fn(demo: gr.Blocks, api_name: str):
    return next(block.fn for block in demo.fns.values() if block.api_name == api_name)


def _editor(sketch: Image.Image, layers: list | None = None) -> dict:
    return {"background": sketch.convert("RGBA"), "layers": layers or [], "composite": None}


@pytest.mark.slow  # a fresh interpreter imports gradio and torch: ~10 s on 2 busy cores
def test_importing_app_starts_nothing(tmp_path):
    """No server, no thread, no file: the import runs in a copy of app.py in an empty folder
    (Gradio would write a .pyi stub beside a module that subclassed a component)."""
    (tmp_path / "app.py").write_text((REPO / "app.py").read_text())
    code = "import os, threading, app; print(threading.active_count(), *sorted(os.listdir()))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    threads, *files = result.stdout.split()
    assert threads == "1", "no server or worker thread at import"
    assert [f for f in files if f != "__pycache__"] == ["app.py"], "no file written at import"
    assert not [v for v in vars(app).values() if isinstance(v, (gr.Blocks, Colorizer))]


def test_build_demo_builds_with_queue_and_api(demo):
    assert isinstance(demo, gr.Blocks)
    assert demo._queue.max_size == 16
    run = next(block for block in demo.fns.values() if block.api_name == "colorize")
    assert run.concurrency_limit == 1


def test_handler_returns_an_image_and_the_status_line(demo):
    sketch = drawn_sketch()
    image, status = _fn(demo, "colorize")(_editor(sketch), reference_image(), "sga", 128, True,
                                          "flat", 0, {}, *NO_TAGS)  # fmt: skip
    assert isinstance(image, Image.Image) and image.size == sketch.size
    assert status.startswith("**sga** · cpu · float32 · **") and " ms** · " in status
    assert "Untrained random weights" not in status


def test_handler_paints_strokes_from_the_brush_layer(demo):
    layer = Image.fromarray(right_half_stroke(), "RGBA")
    image, _ = _fn(demo, "colorize")(_editor(drawn_sketch(), [layer]), None, "hints", 128, True,
                                     "flat", 0, {}, *NO_TAGS)  # fmt: skip
    assert tuple(np.asarray(image)[30, 75]) == (0, 180, 60)


def test_handler_passes_only_moved_tag_sliders(demo, colorizer, monkeypatch):
    start = {name: 0.5 for name in COLOR_TAGS}
    sliders = [0.5] * len(COLOR_TAGS)
    sliders[COLOR_TAGS.index("color:blue")] = 4.0
    seen = {}
    call = colorizer.__call__
    monkeypatch.setattr(Colorizer, "__call__",
                        lambda self, *a, **k: seen.update(k) or call(*a, **k))  # fmt: skip
    _fn(demo, "colorize")(_editor(drawn_sketch()), reference_image(), "tags", 128, False,
                          "flat", 0, start, *sliders)  # fmt: skip
    assert seen["tags"] == {"color:blue": 4.0} and seen["snap"] is False


@pytest.mark.parametrize(
    "sketch, reference, method, message",
    [
        (None, None, "sga", "Upload a sketch first"),
        (_editor(Image.new("RGBA", (1, 1))), reference_image(), "sga", "1×1 px"),
        (_editor(drawn_sketch()), None, "csft", "colours from a reference image"),
        (_editor(drawn_sketch()), Image.new("RGB", (4, 4)), "sga", "reference is 4×4 px"),
    ],
    ids=["no-sketch", "1x1-sketch", "missing-reference", "tiny-reference"],
)
def test_bad_input_raises_gr_error(demo, sketch, reference, method, message):
    with pytest.raises(gr.Error, match=message):
        _fn(demo, "colorize")(sketch, reference, method, 128, True, "flat", 0, {}, *NO_TAGS)


def test_empty_strokes_for_hints_warn_and_still_colour(demo):
    sketch = _editor(drawn_sketch(), [Image.new("RGBA", (100, 60))])
    with pytest.warns(UserWarning, match="No strokes painted"):
        image, _ = _fn(demo, "colorize")(sketch, None, "hints", 128, True, "flat", 0, {}, *NO_TAGS)
    assert image.size == (100, 60)


def test_huge_sketch_notice_is_shown(demo):
    huge = Image.new("L", (4200, 300), 255)
    huge.paste(0, (0, 140, 4200, 160))  # one thick line
    with pytest.warns(UserWarning, match="downscaled to 4096×293"):
        image, status = _fn(demo, "colorize")(_editor(huge), reference_image(), "sga", 128, True,
                                              "flat", 0, {}, *NO_TAGS)  # fmt: skip
    assert image.size == (4096, 293) and "limit is 4096 px" in status


@pytest.mark.parametrize("component", [gr.ImageEditor, gr.Image])
@pytest.mark.parametrize("content", [b"not an image", b"\x89PNG\r\n\x1a\n truncated"])
def test_unreadable_uploads_raise_a_named_gr_error(tmp_path, component, content):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with gr.Blocks():
        upload = app.named_errors(component(label="Upload", type="pil"))
    payload = FileData(path=str(path), orig_name="upload.png")
    if component is gr.ImageEditor:
        payload = upload.data_model(background=payload, layers=[], composite=None)
    with pytest.raises(gr.Error, match="Upload: the file is not a readable image"):
        upload.preprocess(payload)


def _controls(demo, method, reference=None) -> dict:
    names = ["note", "reference", "tag_box", "tag_note", "seed", "start"]
    values = _fn(demo, "controls")(method, reference)
    return {**dict(zip(names, values[:6], strict=True)), "sliders": values[6:]}


def test_controls_hide_what_a_method_cannot_use(demo):
    hints = _controls(demo, "hints")
    assert hints["reference"]["visible"] is False and hints["tag_box"]["visible"] is False
    assert _controls(demo, "sga")["reference"]["visible"] is True
    assert _controls(demo, "resunet")["seed"]["visible"] is True
    assert _controls(demo, "csft")["seed"]["visible"] is False
    tags = _controls(demo, "tags", reference_image())
    assert tags["tag_box"]["visible"] is True
    assert all(slider["interactive"] for slider in tags["sliders"])
    # sliders start where the tagger reads the reference (cls_a), rounded to the slider step
    assert tags["start"]["color:blue"] == tags["sliders"][COLOR_TAGS.index("color:blue")]["value"]
    assert 0 < tags["start"]["color:blue"] < 1


def test_random_weights_are_announced_on_screen(tmp_path):
    demo = app.build_demo(Colorizer(weights=tmp_path, device="cpu"))
    assert "Untrained random weights" in _controls(demo, "hints")["note"]
    layer = Image.fromarray(right_half_stroke(), "RGBA")
    _, status = _fn(demo, "colorize")(_editor(drawn_sketch(), [layer]), None, "hints", 128, True,
                                      "flat", 0, {}, *NO_TAGS)  # fmt: skip
    assert "Untrained random weights" in status and "weights/hints/" in status


def test_tags_without_mapper_disable_the_sliders(tmp_path):
    demo = app.build_demo(Colorizer(weights=write_tiny_weights(tmp_path, mapper=False)))
    tags = _controls(demo, "tags", reference_image())
    assert not any(slider["interactive"] for slider in tags["sliders"])
    assert "no trained TagMapper" in tags["tag_note"]


def test_spaces_gpu_decorates_only_when_the_package_exists(monkeypatch):
    fn = lambda: None  # noqa: E731
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert app._gpu(fn) is fn
    calls = []
    fake = types.SimpleNamespace(GPU=lambda duration: lambda f: calls.append(duration) or f)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert app._gpu(fn) is fn and calls == [120]


def test_examples_exist_and_are_small():
    rows = app._examples()
    assert {row[2] for row in rows} == {"sga", "resunet", "csft", "tags", "hints"}
    files = [p for p in (REPO / "examples").iterdir() if p.suffix == ".png"]
    assert sum(p.stat().st_size for p in files) < 100_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.filterwarnings("ignore:Examples will be cached but not all input components")
def test_gradio_client_against_the_served_app(demo, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setattr(app, "EXAMPLE_SIZE", 128)  # tiny models at 512 px are needlessly slow

    drawn_sketch().save(tmp_path / "sketch.png")
    reference_image().save(tmp_path / "reference.png")
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        sketch = {"background": handle_file(str(tmp_path / "sketch.png")), "layers": [],
                  "composite": None}  # fmt: skip
        path, status = client.predict(sketch, handle_file(str(tmp_path / "reference.png")),
                                      "csft", 128, True, "flat", 0, *NO_TAGS,
                                      api_name="/colorize")  # fmt: skip
        assert Image.open(path).size == (100, 60) and status.startswith("**csft**")
        with pytest.raises(Exception, match="colours from a reference image"):
            client.predict(sketch, None, "csft", 128, True, "flat", 0, *NO_TAGS,
                           api_name="/colorize")  # fmt: skip
        # the examples run through Gradio's own loading (dict value with a stroke layer: hints)
        methods = [row[2] for row in app._examples()]
        for method in ("tags", "hints"):
            path, status = client.predict(methods.index(method), api_name="/load_example")
            assert Image.open(path).size == (256, 256) and status.startswith(f"**{method}**")
    finally:
        demo.close()


def test_example_cache_is_a_folder_per_set_of_weights(tmp_path, monkeypatch):
    """Outputs cached with other weights (the random ones before training) are never served."""
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "cache"))
    weights = write_tiny_weights(tmp_path / "weights")
    key = app.weights_key(str(weights))
    folders = []
    original = gr.helpers.Examples.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        folders.append(self.cached_folder)

    monkeypatch.setattr(gr.helpers.Examples, "__init__", record)
    app.build_demo(Colorizer(weights=weights, device="cpu"))
    assert folders and all(f.parent == tmp_path / "cache" / key for f in folders)
    assert os.environ["GRADIO_EXAMPLES_CACHE"] == str(tmp_path / "cache")  # restored
    os.utime(weights / "sga" / "config.json", ns=(1, 1))  # retrained weights, say
    assert app.weights_key(str(weights)) != key
    assert app.weights_key("someone/weights") == app.weights_key("someone/weights")
