"""The Colorizer: one call from a sketch (+ reference, strokes, tag values) to a coloured image.

    from colorize import Colorizer
    colorizer = Colorizer()                       # weights/<method>/, COLORIZE_WEIGHTS or a Hub id
    image, info = colorizer("sketch.png", reference="ref.png", method="sga")

Flow (DESIGN.md §5): validate and load the images; resize the sketch so its longer side is
`size` and pad it with white paper to the model's stride; build the method's conditions with
the functions training uses (`stroke_hint`, `palette_kmeans`, tag vectors); run the generator
(CPU: fp32 with the eager kernels; CUDA: bf16/fp16 autocast with the Triton kernels); crop the
padding, resize back to the sketch's own size and snap colours to the line-art regions.

Weights: a method's weights are a `save_pretrained` folder `<root>/<method>/` (config.json +
safetensors, optionally tags.json with the tag vocabulary). The root is a local folder or a
Hugging Face Hub repo id (fetched with `snapshot_download`; `HF_HUB_OFFLINE=1` is respected).
Where a method has no weights the `small` preset is built with a fixed seed and
`info["weights"] == "random"` says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

import kernels
from colorize.devices import cpu_features, native_bf16
from colorize.hints import HINT_SCALE, stroke_hint
from colorize.image_tensors import image_to_tensor, tensor_to_array
from colorize.models import GENERATORS, build_generator
from colorize.palette import palette_kmeans
from colorize.snap import SNAP_MODES, snap_to_regions
from colorize.tags import COLOR_TAGS

logger = logging.getLogger(__name__)

METHODS = tuple(GENERATORS)
DTYPES = ("fp32", "bf16", "fp16")  # the compute dtypes the command lines offer
WEIGHTS_ENV = "COLORIZE_WEIGHTS"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
VOCABULARY_FILE = "tags.json"  # the tag vocabulary saved next to a tags model's weights
RANDOM = "random"
RANDOM_SEED = 0  # random weights are the same in every process
MIN_SIDE = 16  # smaller images carry no drawing a model could colour
MAX_SIDE = 4096  # larger images are downscaled to this longer side (with a notice)
SIZES = (64, 2048)  # the model's working size (longer side) must lie in this range
TAG_RANGE = (0.0, 5.0)  # tag slider values (Yan et al. §4.4 lets them exceed 1)
PALETTE_SIDE = 256  # the reference is downscaled to this side before its k-means palette
STROKE_WHITE = 240  # an RGB stroke file: pixels whiter than this in every channel are unpainted
KINDS = {"sketch": "L", "reference": "RGB", "strokes": "RGBA"}


# ---------------------------------------------------------------------------------------------
# Images in


def _open(source: Any, kind: str) -> Image.Image:
    """A PIL image from a path, PIL image or numpy array; ValueError naming what is wrong."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{kind}: no such file {str(path)!r}")
        try:
            with warnings.catch_warnings():
                # the pixel limit is ours (MAX_SIDE); Pillow's bomb *error* still applies
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
                image.draft(None, (MAX_SIDE, MAX_SIDE))  # JPEG: decode large files reduced
                image.load()
        except Image.DecompressionBombError as exc:
            raise ValueError(
                f"{kind}: {path.name} is far too large ({exc}); the limit is {MAX_SIDE} px per side"
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(
                f"{kind}: {path.name} is not a readable image (corrupt, truncated or not an "
                f"image file: {exc})"
            ) from exc
        return ImageOps.exif_transpose(image)
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, kind)
    raise ValueError(
        f"{kind} must be a file path, a PIL image or a numpy array, got {type(source).__name__}"
    )


def _from_array(array: np.ndarray, kind: str) -> Image.Image:
    """uint8/uint16/bool/float [H, W(, 1|3|4)] arrays as PIL (uint16 scaled, float in [0, 1])."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"{kind} must be [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{kind}: the array has NaN or infinite values")
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(
            f"{kind}: arrays must be uint8, uint16, bool or float in [0, 1], got {array.dtype}"
        )
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[array.shape[2] if array.ndim == 3 else 2]
    return Image.fromarray(np.ascontiguousarray(array), mode)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale scaled (not clipped) to 8-bit "L"; other modes unchanged."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and values.max(initial=0) <= 1:
            values = values * 255
        elif values.max(initial=0) > 255:
            values = values / 257  # 16-bit range 0…65535 onto 0…255
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), "L")
    return image


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent images composited onto white paper (palette images with transparency too)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image


def load_image(source: Any, kind: str) -> tuple[Image.Image, list[str]]:
    """Read a sketch ("L"), reference ("RGB") or stroke layer ("RGBA") from a path, PIL image
    or numpy array, forgiving about modes (palette, 16-bit, greyscale, alpha).

    Images with a side below `MIN_SIDE` are refused; those with a side above `MAX_SIDE` are
    downscaled to it. Returns the image and notices for the user (e.g. the downscale).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    notices: list[str] = []
    image = _to_8bit(_open(source, kind))
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"{kind} is {width}×{height} px; each side must be at least {MIN_SIDE} px")
    if kind == "strokes":
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = image.convert("RGBA")
        else:
            rgb = np.asarray(image.convert("RGB"))
            painted = (rgb < STROKE_WHITE).any(axis=2)
            image = Image.fromarray(np.dstack([rgb, painted.astype(np.uint8) * 255]), "RGBA")
            notices.append("the stroke layer has no transparency; its non-white pixels are strokes")
    else:
        image = _on_white(image).convert(KINDS[kind])
    if max(width, height) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
        notices.append(
            f"the {kind} is {width}×{height} px; it was downscaled to "
            f"{image.width}×{image.height} (the limit is {MAX_SIDE} px per side)"
        )
    return image, notices


# ---------------------------------------------------------------------------------------------
# Geometry: resize to the working size, pad to the stride, undo after


@dataclass(frozen=True)
class Canvas:
    """Where a sketch of `original` (W, H) sits in the model input: resized to `inner` (W, H),
    then padded with white on the right and bottom to `padded` (W, H), multiples of the stride."""

    original: tuple[int, int]
    inner: tuple[int, int]
    padded: tuple[int, int]

    @classmethod
    def fit(cls, original: tuple[int, int], size: int, stride: int) -> Canvas:
        """Longer side resized to `size`, aspect kept; both sides padded up to `stride`."""
        scale = size / max(original)
        inner = tuple(max(1, round(side * scale)) for side in original)
        padded = tuple(math.ceil(side / stride) * stride for side in inner)
        return cls(original, inner, padded)  # type: ignore[arg-type]

    def sketch(self, sketch: Image.Image) -> torch.Tensor:
        """The "L" sketch resized and padded with paper: [1, 1, H, W] in [-1, 1]."""
        canvas = Image.new("L", self.padded, 255)
        canvas.paste(sketch.resize(self.inner, Image.Resampling.LANCZOS), (0, 0))
        return image_to_tensor(canvas)[None]

    def reference(self, reference: Image.Image) -> torch.Tensor:
        """The RGB reference fitted inside the model input (aspect kept, centred on white):
        [1, 3, H, W] in [-1, 1]."""
        fitted = ImageOps.contain(reference, self.padded, Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", self.padded, "white")
        canvas.paste(
            fitted, ((self.padded[0] - fitted.width) // 2, (self.padded[1] - fitted.height) // 2)
        )
        return image_to_tensor(canvas)[None]

    def hint(self, strokes: Image.Image | None) -> torch.Tensor:
        """Ci et al.'s hint [1, 4, H/4, W/4] from an RGBA stroke layer over the whole sketch
        (resized with premultiplied alpha, so thin strokes keep a non-zero alpha); zeros (no
        hint, as in half of the training samples, §3.1) without strokes."""
        if strokes is None:
            width, height = self.padded
            return torch.zeros(1, 4, height // HINT_SCALE, width // HINT_SCALE)
        layer = Image.new("RGBA", self.padded, (0, 0, 0, 0))
        layer.paste(strokes.resize(self.inner, Image.Resampling.BOX), (0, 0))
        return stroke_hint(np.asarray(layer), (self.padded[1], self.padded[0]))[None]

    def restore(self, image: torch.Tensor) -> np.ndarray:
        """Model output [3, H, W] cropped to the drawing and resized to the original size."""
        width, height = self.inner
        array = tensor_to_array(image[:, :height, :width])
        return np.asarray(Image.fromarray(array).resize(self.original, Image.Resampling.BICUBIC))


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class LoadedModel:
    """A generator ready for inference and where it came from ("random", a folder or hub:id);
    `vocabulary` names the entries of its tag vector (tags models)."""

    model: torch.nn.Module
    source: str
    vocabulary: tuple[str, ...] = ()

    @property
    def random(self) -> bool:
        return self.source == RANDOM


def _offline() -> bool:
    """HF_HUB_OFFLINE (or huggingface_hub's own switch) read now, not at import time."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return value in ("1", "true", "yes", "on") or constants.is_offline_mode()


def _snapshot(repo_id: str, method: str) -> Path:
    """The local snapshot of `<repo_id>/<method>/` from the Hugging Face Hub (or its cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = _offline()
    try:
        folder = snapshot_download(
            repo_id, allow_patterns=[f"{method}/*"], local_files_only=offline
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise ValueError(
                f"weights {repo_id!r} are not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE=1 forbids downloading them; run `hf download "
                f"{repo_id}` where the Hub is reachable, or unset HF_HUB_OFFLINE"
            ) from exc
        raise ValueError(f"cannot download weights {repo_id!r}: {exc}") from exc
    except HfHubHTTPError as exc:
        raise ValueError(f"cannot download weights {repo_id!r} from the Hub: {exc}") from exc
    return Path(folder)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _vocabulary(folder: Path | None, num_tags: int) -> tuple[str, ...]:
    """The tag vocabulary: tags.json next to the weights; else the colour tags first (every
    vocabulary of the data pipeline starts with them) and `tag:<i>` for the rest."""
    if folder is not None and (folder / VOCABULARY_FILE).is_file():
        vocabulary = json.loads((folder / VOCABULARY_FILE).read_text(encoding="utf-8"))
        if len(vocabulary) != num_tags:
            raise ValueError(
                f"{folder / VOCABULARY_FILE} lists {len(vocabulary)} tags; the model has {num_tags}"
            )
        return tuple(vocabulary)
    named = COLOR_TAGS[:num_tags] if num_tags >= len(COLOR_TAGS) else ()
    return (*named, *(f"tag:{i}" for i in range(len(named), num_tags)))


def random_generator(method: str) -> torch.nn.Module:
    """The `small` preset of `method` with seeded random weights (what runs before training).

    The tags model gets the colour-tag vocabulary and a random `TagMapper`, so its sliders
    work end to end (moving them changes the output) before step 2 has been trained.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        if method == "tags":
            model = build_generator(method, "small", num_tags=len(COLOR_TAGS))
            model.attach_mapper(model.build_mapper())
            return model
        return build_generator(method, "small")


@contextlib.contextmanager
def _kernels_backend(name: str) -> Iterator[None]:
    previous = kernels.get_backend()
    kernels.set_backend(name)
    try:
        yield
    finally:
        kernels.set_backend(previous)


# ---------------------------------------------------------------------------------------------
# The pipeline


class Colorizer:
    """Colorize line art with any of the five methods (loads and caches one model per method).

    Args:
        weights: a local folder holding `<method>/` weight folders, or a Hub repo id laid out
            the same way (default: $COLORIZE_WEIGHTS, else the repository's `weights/`).
        device: "cpu", "cuda" or "cuda:N" (default: CUDA when available).
        dtype: compute dtype; default fp32 on CPU, bf16 on CUDA (fp16 where the GPU lacks
            bf16). Half precision runs under autocast, the weights stay fp32. bf16 on a CPU
            is opt-in: faster on CPUs with AVX-512 BF16 or AMX, slower elsewhere, and its
            colours differ slightly from fp32 (`python -m colorize.bench --dtype bf16`).
        channels_last: keep weights and image tensors in channels-last memory order, which
            oneDNN's CPU convolutions run faster (the same numbers up to rounding); default on
            for CPU, off for CUDA (`python -m colorize.bench --memory-format ...` measures it).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        channels_last: bool | None = None,
    ) -> None:
        self.weights = str(weights or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU")
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {str(self.device)!r}")
        self.dtype = self._resolve_dtype(dtype)
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def _resolve_dtype(self, dtype: str | torch.dtype | None) -> torch.dtype:
        names = {
            "fp32": torch.float32,
            "float32": torch.float32,
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
            "fp16": torch.float16,
            "float16": torch.float16,
        }
        if dtype is None:
            if self.device.type == "cpu":
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if isinstance(dtype, str):
            if dtype not in names:
                raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
            dtype = names[dtype]
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be fp32, bf16 or fp16, got {dtype}")
        if self.device.type == "cpu" and dtype == torch.float16:
            raise ValueError("fp16 needs a CUDA device; use fp32 or bf16 on CPU")
        if dtype == torch.bfloat16 and self.device.type == "cpu" and not native_bf16(self.device):
            logger.warning("bf16 on this CPU (%s) is emulated, so it is slower than fp32; "
                           "bf16 pays off with AVX-512 BF16 or AMX", cpu_features())  # fmt: skip
        return dtype

    @property
    def device_name(self) -> str:
        """A readable device, e.g. "cpu" or "cuda (NVIDIA H100 80GB HBM3)"."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return "cpu"

    # -------------------------------------------------------------------------- loading

    def _folder(self, method: str) -> tuple[Path | None, str]:
        """(the method's weight folder or None, a description of where it came from)."""
        root = Path(self.weights).expanduser()
        if root.is_dir():
            folder = root / method
            return (folder, str(folder)) if (folder / "config.json").is_file() else (None, "")
        if _is_repo_id(self.weights):
            folder = _snapshot(self.weights, method) / method
            source = f"hub:{self.weights}"
            return (folder, source) if (folder / "config.json").is_file() else (None, "")
        if self.weights != str(DEFAULT_WEIGHTS):
            raise ValueError(
                f"weights {self.weights!r} is neither a folder nor a Hub repo id (owner/name)"
            )
        return None, ""

    def load(self, method: str) -> LoadedModel:
        """The model of `method`, loaded once (later calls return the cached one)."""
        if method not in GENERATORS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        with self._lock:
            if method not in self._models:
                self._models[method] = self._load(method)
            return self._models[method]

    def _load(self, method: str) -> LoadedModel:
        folder, source = self._folder(method)
        if folder is None:
            logger.warning(
                "no weights for %r under %s: using the untrained small preset (random weights)",
                method,
                self.weights,
            )
            model, source = random_generator(method), RANDOM
        else:
            logger.info("loading %s weights from %s", method, source)
            model = GENERATORS[method].from_pretrained(folder)
        model = model.to(self.device, memory_format=self._memory_format)
        model = model.eval().requires_grad_(False)
        num_tags = model.config.num_tags if method == "tags" else 0
        vocabulary = COLOR_TAGS if source == RANDOM and num_tags else ()
        if num_tags and not vocabulary:
            vocabulary = _vocabulary(folder, num_tags)
        return LoadedModel(model, source, tuple(vocabulary))

    def tag_names(self, method: str = "tags") -> tuple[str, ...]:
        """The tags `__call__(tags=...)` accepts for `method`: the vocabulary of a tags model
        with a trained TagMapper; empty for the other methods and for a tags model without one."""
        loaded = self.load(method)
        if method != "tags" or loaded.model.mapper is None:
            return ()
        return loaded.vocabulary

    def reference_tags(self, reference: Any, method: str = "tags") -> dict[str, float]:
        """What the tags model's tagger reads from a reference: {tag: value} (cls_a of Yan et
        al. Eq. 10, where the tag sliders start)."""
        if method != "tags":
            raise ValueError(f"method {method!r} has no tags; only 'tags' does")
        loaded = self.load(method)
        image, _ = load_image(reference, "reference")
        canvas = Canvas.fit(image.size, 256, loaded.model.stride)
        with self._lock, torch.inference_mode(), self._compute():
            values = loaded.model.reference_tags(self._to_device(canvas.reference(image)))
        return dict(zip(loaded.vocabulary, values[0].float().tolist(), strict=True))

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.preserve_format

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """An input on the device, images [B, C, H, W] in the configured memory order."""
        tensor = tensor.to(self.device)
        return tensor.to(memory_format=self._memory_format) if tensor.dim() == 4 else tensor

    @contextlib.contextmanager
    def _compute(self) -> Iterator[None]:
        """CPU: the eager kernels (never Triton's interpreter, even under TRITON_INTERPRET=1),
        under bf16 autocast when `self.dtype` is bf16; CUDA: the configured backend ("auto" =
        Triton) under autocast in `self.dtype`."""
        if self.device.type == "cpu":
            bf16 = self.dtype == torch.bfloat16
            with _kernels_backend("eager"), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                yield
        else:
            with torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype != torch.float32):
                yield

    # -------------------------------------------------------------------------- colorizing

    def __call__(
        self,
        sketch: Any,
        reference: Any = None,
        strokes: Any = None,
        tags: Mapping[str, float] | None = None,
        method: str = "sga",
        size: int = 512,
        snap: bool | str = True,
        seed: int = 0,
    ) -> tuple[Image.Image, dict[str, Any]]:
        """Colour `sketch` with `method`.

        Args:
            sketch: line art (path, PIL image or numpy array); any mode, dark lines on white.
            reference: colour reference image (sga, resunet, csft, tags need one).
            strokes: RGBA layer of colour strokes over the sketch (alpha 0 = unpainted). The
                hints method reads them (Ci et al. §3.4); snapping paints the regions they
                touch in their exact colours for every method.
            tags: {tag: value in [0, 5]} target tag values for the tags method (needs a
                trained TagMapper); unnamed tags keep the value the tagger reads from the
                reference.
            method: one of `METHODS`.
            size: the longer side of the model input in pixels (64–2048).
            snap: region snap: True / "flat", "smooth", or False for the raw network output.
            seed: the noise seed (resunet's noise injection; the other methods are
                deterministic).
        Returns:
            The coloured RGB image at the sketch's size, and info: method, device, dtype,
            ms, weights (a folder, hub:<id> or "random"), size (model input W×H), notices.
        """
        start = time.perf_counter()
        if method not in GENERATORS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        if not _is_integer(size) or not SIZES[0] <= size <= SIZES[1]:
            raise ValueError(f"size must be an integer from {SIZES[0]} to {SIZES[1]}, got {size!r}")
        size = int(size)
        if isinstance(snap, bool):
            snap_mode = "flat" if snap else None
        elif snap in SNAP_MODES:
            snap_mode = snap
        else:
            raise ValueError(f"snap must be True, False or one of {SNAP_MODES}, got {snap!r}")
        sketch_image, notices = load_image(sketch, "sketch")
        darkest, lightest = sketch_image.getextrema()
        if darkest == lightest:
            raise ValueError(f"sketch is blank (every pixel is grey level {darkest}): no lines")
        loaded = self.load(method)
        model = loaded.model
        uses = set(model.conditions)

        reference_image = None
        if "reference" in uses:
            if reference is None:
                raise ValueError(
                    f"method {method!r} colours from a reference image; upload one (or choose "
                    "'hints', which needs none)"
                )
            reference_image, more = load_image(reference, "reference")
            notices += more
        elif reference is not None:
            notices.append(f"{method} does not use a reference image; it was ignored")

        stroke_image = None
        if strokes is not None:
            stroke_image, more = load_image(strokes, "strokes")
            notices += more
            if stroke_image.size != sketch_image.size:
                notices.append(
                    f"the stroke layer is {stroke_image.width}×{stroke_image.height} px; it was "
                    f"stretched to the sketch's {sketch_image.width}×{sketch_image.height}"
                )
                stroke_image = stroke_image.resize(sketch_image.size, Image.Resampling.BOX)
            if not np.asarray(stroke_image)[..., 3].any():
                notices.append("the stroke layer is empty: no strokes were painted")
                stroke_image = None

        target_tags = self._target_tags(method, loaded, tags)

        canvas = Canvas.fit(sketch_image.size, size, model.stride)
        inputs: dict[str, Any] = {"sketch": canvas.sketch(sketch_image)}
        if reference_image is not None:
            inputs["reference"] = canvas.reference(reference_image)
        if "palette" in uses:
            small = ImageOps.contain(reference_image, (PALETTE_SIDE, PALETTE_SIDE))
            inputs["palette"] = palette_kmeans(np.asarray(small), seed=seed)[None]
        if "hint" in uses:
            inputs["hint"] = canvas.hint(stroke_image)
        inputs = {key: self._to_device(value) for key, value in inputs.items()}
        if "palette" in uses:
            inputs["generator"] = torch.Generator().manual_seed(seed)  # Khang et al.'s noise
        with self._lock, torch.inference_mode(), self._compute():
            if target_tags is not None:
                anchor = model.reference_tags(inputs["reference"])  # cls_a, Eq. 10
                inputs["tags"] = torch.where(
                    torch.isnan(target_tags.to(self.device)), anchor, target_tags.to(self.device)
                )
            output = model(**inputs).image[0].float()
        colors = canvas.restore(output.cpu())
        if snap_mode is not None:
            colors = snap_to_regions(
                np.asarray(sketch_image),
                colors,
                np.asarray(stroke_image) if stroke_image is not None else None,
                mode=snap_mode,
            )
        info = {
            "method": method,
            "device": self.device_name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "ms": (time.perf_counter() - start) * 1000,
            "weights": loaded.source,
            "size": f"{canvas.padded[0]}×{canvas.padded[1]}",
            "snap": snap_mode or "off",
            "notices": notices,
        }
        return Image.fromarray(colors, "RGB"), info

    def _target_tags(
        self, method: str, loaded: LoadedModel, tags: Mapping[str, float] | None
    ) -> torch.Tensor | None:
        """[1, T] target tag values, NaN where the reference's own value stays; None without
        tags. ValueError for tags the method or model cannot take."""
        if not tags:
            return None
        if method != "tags":
            raise ValueError(f"method {method!r} takes no tag values; only 'tags' does")
        if loaded.model.mapper is None:
            raise ValueError(
                "these tags weights have no trained TagMapper (step 2 of Yan et al.), so tag "
                "values cannot steer them; colour from the reference alone (no tags)"
            )
        position = {tag: i for i, tag in enumerate(loaded.vocabulary)}
        target = torch.full((1, len(loaded.vocabulary)), float("nan"))
        for tag, value in tags.items():
            if tag not in position:
                raise ValueError(
                    f"unknown tag {tag!r}; this model knows {len(position)} tags, e.g. "
                    f"{list(position)[:4]}"
                )
            if not _is_real(value) or not TAG_RANGE[0] <= value <= TAG_RANGE[1]:
                raise ValueError(
                    f"tag {tag!r} must be a number from {TAG_RANGE[0]:g} to {TAG_RANGE[1]:g}, "
                    f"got {value!r}"
                )
            target[0, position[tag]] = float(value)
        return target
