"""colorize.Colorizer on tiny saved models of every method: weights from a folder, the Hub cache
or the random preset; geometry, conditions, tags, strokes, kernels; every kind of bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from colorize import Colorizer, pipeline
from colorize.hints import stroke_hint
from colorize.models import build_generator
from colorize.models.resunet import NoiseInjection
from colorize.models.tagger import PRESETS as TAGGER_PRESETS
from colorize.models.tags import PRESETS as TAGS_PRESETS
from colorize.pipeline import MAX_SIDE, Canvas, load_image
from colorize.tags import COLOR_TAGS

METHODS = ("sga", "resunet", "csft", "tags", "hints")
TINY_TAGGER = {**TAGGER_PRESETS["small"], "stage_channels": (8, 8, 16, 16)}
VOCABULARY = [*COLOR_TAGS, "skintone:0", "group:smileys-emotion"]
TINY = {
    "sga": {"block_out_channels": (4, 8, 8), "layers_per_block": 1, "num_res_blocks": 1},
    "resunet": {"block_out_channels": (8, 8, 16, 16, 16, 16, 16), "num_downsample_blocks": 3,
                "norm_num_groups": 4, "attention_head_dim": 8},
    "csft": {"pyramid_channels": (4, 8, 8), "domain_channels": 16, "generator_channels": (4, 8, 8),
             "num_res_blocks": 1, "moment_hidden_channels": 4},
    "tags": {**TAGS_PRESETS["small"], "encoder_channels": (8, 16, 16), "latent_channels": 32,
             "num_tags": len(VOCABULARY),
             "tagger_config": {**TINY_TAGGER, "num_tags": len(VOCABULARY)}},
    "hints": {"ngf": 8, "cardinality": (4, 4, 2, 2),
              "tagger_config": {**TINY_TAGGER, "num_tags": 5}},
}  # fmt: skip


def write_tiny_weights(root: Path, mapper: bool = True) -> Path:
    """`root/<method>/` save_pretrained folders of tiny random models (what training exports),
    the tags model with a TagMapper (visible offsets) and its tags.json vocabulary."""
    torch.manual_seed(0)
    for method in METHODS:
        model = build_generator(method, **TINY[method])
        if method == "resunet":
            for module in model.modules():  # noise scales start at 0: make the seed matter
                if isinstance(module, NoiseInjection):
                    module.scale.data.fill_(1.0)
        if method == "tags" and mapper:
            tag_mapper = model.build_mapper()
            for p in tag_mapper.parameters():  # default init nearly cancels: a visible shift
                torch.nn.init.normal_(p, std=0.5)
            model.attach_mapper(tag_mapper)
        model.save_pretrained(root / method)
        if method == "tags":
            (root / method / "tags.json").write_text(json.dumps(VOCABULARY))
    return root


def drawn_sketch(width: int = 100, height: int = 60) -> Image.Image:
    """A closed outline split in two by a vertical line (greyscale, white paper)."""
    sketch = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sketch)
    draw.rectangle([4, 4, width - 5, height - 5], outline=0, width=2)
    draw.line([width // 2, 4, width // 2, height - 5], fill=0, width=2)
    return sketch


def reference_image() -> Image.Image:
    reference = Image.new("RGB", (48, 40), (200, 40, 40))
    ImageDraw.Draw(reference).ellipse([10, 8, 38, 32], fill=(40, 90, 220))
    return reference


def right_half_stroke(width: int = 100, height: int = 60) -> np.ndarray:
    strokes = np.zeros((height, width, 4), np.uint8)
    strokes[height // 2 - 3 : height // 2 + 3, 3 * width // 4 - 6 : 3 * width // 4 + 6] = (
        0, 180, 60, 255,
    )  # fmt: skip
    return strokes


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def colorizer(weights) -> Colorizer:
    return Colorizer(weights=weights, device="cpu")


def _inputs(method: str) -> dict:
    if method == "hints":
        return {"strokes": right_half_stroke()}
    return {"reference": reference_image()}


# ---------------------------------------------------------------------------------------------
# every method, geometry, weights


@pytest.mark.parametrize("method", METHODS)
def test_every_method_colours_at_the_sketch_size_and_reports(colorizer, weights, method):
    sketch = drawn_sketch()
    image, info = colorizer(sketch, **_inputs(method), method=method, size=64)
    assert image.mode == "RGB" and image.size == sketch.size
    assert info["method"] == method and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["weights"] == str(weights / method)
    assert info["snap"] == "flat" and info["notices"] == []
    assert info["ms"] > 0
    out = np.asarray(image)
    lines = np.asarray(sketch) == 0
    assert (out[lines] == 0).all(), "snap keeps the lines as dark as the sketch"


def test_snap_off_returns_the_network_output_resized(colorizer):
    sketch = drawn_sketch()
    raw, info = colorizer(sketch, reference=reference_image(), size=64, snap=False)
    snapped, _ = colorizer(sketch, reference=reference_image(), size=64)
    assert info["snap"] == "off" and raw.size == sketch.size
    assert not np.array_equal(np.asarray(raw), np.asarray(snapped))


def test_canvas_pads_to_the_stride_and_restores_the_original_size():
    canvas = Canvas.fit((100, 60), 64, 16)
    assert canvas.inner == (64, 38) and canvas.padded == (64, 48)
    sketch = canvas.sketch(drawn_sketch())
    assert sketch.shape == (1, 1, 48, 64)
    assert (sketch[0, 0, 38:] == 1).all(), "padding is white paper (+1)"
    assert canvas.restore(torch.zeros(3, 48, 64)).shape == (60, 100, 3)
    assert canvas.reference(reference_image()).shape == (1, 3, 48, 64)


def test_canvas_hint_matches_stroke_hint_of_the_padded_layer():
    canvas = Canvas.fit((64, 48), 64, 16)  # no resize: the layer is only padded to 64×48
    strokes = np.zeros((48, 64, 4), np.uint8)
    strokes[8:12, 20:24] = (255, 0, 0, 255)
    hint = canvas.hint(Image.fromarray(strokes, "RGBA"))
    torch.testing.assert_close(hint[0], stroke_hint(strokes, (48, 64)))
    assert hint[0, 3, 2, 5] == 1 and hint[0, 0, 2, 5] == 1  # cell (8/4, 20/4) is red
    assert canvas.hint(None).abs().sum() == 0


def test_tall_sketch_keeps_its_aspect(colorizer):
    image, info = colorizer(drawn_sketch(40, 130), reference=reference_image(), size=64)
    assert image.size == (40, 130) and info["size"] == "20×64"


def test_models_are_loaded_once(colorizer):
    assert colorizer.load("sga") is colorizer.load("sga")


def test_missing_weights_give_the_seeded_small_preset_marked_random(tmp_path):
    first = Colorizer(weights=tmp_path, device="cpu")
    second = Colorizer(weights=tmp_path, device="cpu")
    assert first.load("hints").random
    a, info = first(drawn_sketch(), strokes=right_half_stroke(), method="hints", size=64)
    b, _ = second(drawn_sketch(), strokes=right_half_stroke(), method="hints", size=64)
    assert info["weights"] == "random"
    assert np.array_equal(np.asarray(a), np.asarray(b)), "random weights come from a fixed seed"


def test_weights_from_the_environment_variable(weights, monkeypatch):
    monkeypatch.setenv("COLORIZE_WEIGHTS", str(weights))
    assert Colorizer(device="cpu").load("csft").source == str(weights / "csft")


def _hub_cache(root: Path, repo: str, weights: Path, method: str) -> None:
    """The Hugging Face cache layout of `repo` holding `<method>/` (as `hf download` leaves)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit / method
    snapshot.mkdir(parents=True)
    for file in (weights / method).iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())


def test_hub_repo_id_loads_from_the_cache_offline(weights, tmp_path, monkeypatch):
    from huggingface_hub import constants

    _hub_cache(tmp_path, "someone/colorize-weights", weights, "hints")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    colorizer = Colorizer(weights="someone/colorize-weights", device="cpu")
    image, info = colorizer(drawn_sketch(), strokes=right_half_stroke(), method="hints", size=64)
    assert info["weights"] == "hub:someone/colorize-weights" and image.size == (100, 60)


def test_uncached_hub_repo_offline_is_a_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        Colorizer(weights="nobody/not-downloaded").load("sga")


def test_weights_that_are_neither_folder_nor_repo_id_are_refused():
    with pytest.raises(ValueError, match="neither a folder nor a Hub repo id"):
        Colorizer(weights="./no/such/folder").load("sga")


def test_cpu_runs_the_eager_kernels_even_under_triton_interpret(colorizer, monkeypatch):
    # tests/conftest.py sets TRITON_INTERPRET=1 and the "auto" backend, which would pick Triton
    import kernels.ops

    chosen = []
    select = kernels.ops.select_impl
    monkeypatch.setattr(
        kernels.ops, "select_impl", lambda *a, **k: chosen.append(select(*a, **k)) or chosen[-1]
    )
    colorizer(drawn_sketch(), reference=reference_image(), method="sga", size=64)
    assert chosen and set(chosen) == {"eager"}
    assert kernels.get_backend() == "auto", "the process-wide backend is restored"


@pytest.mark.parametrize("method", ["sga", "hints"])
def test_bf16_on_cpu_runs_under_autocast_and_stays_close_to_fp32(weights, method, monkeypatch):
    dtypes = []
    real_cat = torch.cat

    def spying_cat(tensors, *args, **kwargs):  # every generator concatenates features
        dtypes.extend(t.dtype for t in tensors)
        return real_cat(tensors, *args, **kwargs)

    sketch = drawn_sketch()
    fp32, _ = Colorizer(weights, device="cpu")(sketch, **_inputs(method), method=method, size=64)
    monkeypatch.setattr(torch, "cat", spying_cat)
    bf16, info = Colorizer(weights, device="cpu", dtype="bf16")(
        sketch, **_inputs(method), method=method, size=64
    )
    assert info["dtype"] == "bfloat16" and torch.bfloat16 in dtypes
    difference = np.abs(np.asarray(bf16, np.float64) - np.asarray(fp32, np.float64))
    assert difference.mean() < 8  # of 255: the same picture, bf16-rounded


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_about(weights, monkeypatch, caplog, native):
    monkeypatch.setattr(pipeline, "native_bf16", lambda device: native)
    with caplog.at_level("WARNING", logger="colorize.pipeline"):
        Colorizer(weights, device="cpu", dtype="bf16")
        Colorizer(weights, device="cpu")
    assert ("is emulated" in caplog.text) == (not native)


@pytest.mark.parametrize("method", METHODS)
def test_channels_last_is_the_cpu_default_and_gives_the_same_picture(weights, method):
    sketch = drawn_sketch()
    fast = Colorizer(weights, device="cpu")
    plain = Colorizer(weights, device="cpu", channels_last=False)
    assert fast.channels_last and not plain.channels_last
    image, _ = fast(sketch, **_inputs(method), method=method, size=64, snap=False)
    expected, _ = plain(sketch, **_inputs(method), method=method, size=64, snap=False)
    conv = next(m for m in fast.load(method).model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(expected, np.int16))
    assert difference.max() <= 1  # rounding only


def test_device_and_dtype_are_checked():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Colorizer(device="cpu", dtype="fp16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        Colorizer(device="cpu", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Colorizer(device="cuda")


# ---------------------------------------------------------------------------------------------
# conditions: strokes, tags, seed


def test_strokes_steer_the_hints_network(colorizer):
    sketch = drawn_sketch()
    with_strokes, _ = colorizer(sketch, strokes=right_half_stroke(), method="hints", size=64,
                                snap=False)  # fmt: skip
    without, _ = colorizer(sketch, method="hints", size=64, snap=False)
    assert not np.array_equal(np.asarray(with_strokes), np.asarray(without))


@pytest.mark.parametrize("method", ["sga", "hints"])
def test_snap_paints_a_stroked_region_exactly_in_the_stroke_colour(colorizer, method):
    sketch = drawn_sketch()
    image, _ = colorizer(sketch, **{**_inputs(method), "strokes": right_half_stroke()},
                         method=method, size=64)  # fmt: skip
    out = np.asarray(image)
    paper = np.asarray(sketch) == 255
    right = np.zeros_like(paper)
    right[8:52, 55:92] = True  # inside the right half, off the lines
    assert (out[right & paper] == (0, 180, 60)).all()
    left = np.zeros_like(paper)
    left[8:52, 8:46] = True
    assert not (out[left & paper] == (0, 180, 60)).all(axis=-1).any()


def test_tag_values_shift_the_colours(colorizer):
    sketch, reference = drawn_sketch(), reference_image()
    plain, _ = colorizer(sketch, reference=reference, method="tags", size=64, snap=False)
    blue, _ = colorizer(sketch, reference=reference, method="tags", size=64, snap=False,
                        tags={"color:blue": 5.0})  # fmt: skip
    assert not np.array_equal(np.asarray(plain), np.asarray(blue))
    assert colorizer.tag_names("tags") == tuple(VOCABULARY)
    start = colorizer.reference_tags(reference)
    assert list(start) == VOCABULARY and all(0 <= v <= 1 for v in start.values())
    # the reference's own values as targets change nothing (Eq. 10: φ(cls_t) - φ(cls_a) = 0)
    same, _ = colorizer(sketch, reference=reference, method="tags", size=64, snap=False,
                        tags={"color:blue": start["color:blue"]})  # fmt: skip
    # (the sliders' start is read at 256 px, the call's anchor at 64 px: a rounding apart)
    assert np.abs(np.asarray(same, float) - np.asarray(plain, float)).max() <= 2


@pytest.mark.parametrize(
    "method, tags, message",
    [
        ("tags", {"color:blue": 7}, "from 0 to 5"),
        ("tags", {"color:blue": float("nan")}, "from 0 to 5"),
        ("tags", {"color:blue": "3"}, "from 0 to 5"),
        ("tags", {"color:mauve": 1}, "unknown tag 'color:mauve'"),
        ("sga", {"color:blue": 1}, "takes no tag values"),
    ],
    ids=["above-5", "nan", "string", "unknown", "not-tags-method"],
)
def test_bad_tags_are_refused(colorizer, method, tags, message):
    with pytest.raises(ValueError, match=message):
        colorizer(drawn_sketch(), reference=reference_image(), tags=tags, method=method, size=64)


def test_tags_without_a_trained_mapper_are_refused(tmp_path):
    colorizer = Colorizer(weights=write_tiny_weights(tmp_path, mapper=False), device="cpu")
    assert colorizer.tag_names("tags") == ()
    with pytest.raises(ValueError, match="no trained TagMapper"):
        colorizer(drawn_sketch(), reference=reference_image(), tags={"color:red": 2},
                  method="tags", size=64)  # fmt: skip


def test_seed_drives_resunet_noise_only(colorizer):
    run = lambda seed: np.asarray(  # noqa: E731
        colorizer(drawn_sketch(), reference=reference_image(), method="resunet", size=64,
                  snap=False, seed=seed)[0]
    )  # fmt: skip
    assert np.array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


# ---------------------------------------------------------------------------------------------
# input modes and bad input


def _modes() -> list:
    grey = np.asarray(drawn_sketch())
    rgba = np.dstack([np.zeros((60, 100, 3), np.uint8), 255 - grey])  # black ink, clear paper
    palette = Image.fromarray(grey).convert("P")
    return [
        pytest.param(Image.fromarray(grey), id="L"),
        pytest.param(Image.fromarray(grey).convert("RGB"), id="RGB"),
        pytest.param(Image.fromarray(rgba, "RGBA"), id="RGBA-transparent-paper"),
        pytest.param(Image.fromarray(grey).convert("LA"), id="LA"),
        pytest.param(palette, id="P"),
        pytest.param(Image.fromarray(grey.astype(np.uint16) * 257), id="I;16"),
        pytest.param(Image.fromarray(grey.astype(np.int32) * 257, "I"), id="I-16-bit-values"),
        pytest.param(Image.fromarray(grey.astype(np.float32) / 255, "F"), id="F"),
        pytest.param(Image.fromarray(grey).convert("1"), id="1-bit"),
        pytest.param(grey, id="uint8-array"),
        pytest.param(grey.astype(np.uint16) * 257, id="uint16-array"),
        pytest.param(grey.astype(np.float64) / 255, id="float-array"),
        pytest.param(grey > 127, id="bool-array"),
        pytest.param(np.dstack([grey] * 3), id="rgb-array"),
    ]


@pytest.mark.parametrize("source", _modes())
def test_any_image_mode_loads_as_the_same_sketch(source):
    sketch, notices = load_image(source, "sketch")
    assert sketch.mode == "L" and sketch.size == (100, 60) and notices == []
    expected = np.asarray(drawn_sketch(), np.int16)
    assert np.abs(np.asarray(sketch, np.int16) - expected).max() <= 1


def test_sixteen_bit_png_file_is_scaled_not_clipped(tmp_path):
    grey = np.asarray(drawn_sketch()).astype(np.uint16) * 257
    Image.fromarray(grey).save(tmp_path / "deep.png")
    sketch, _ = load_image(tmp_path / "deep.png", "sketch")
    assert np.array_equal(np.asarray(sketch), np.asarray(drawn_sketch()))


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "sketch.png"
    if kind == "text":
        path.write_text("not an image at all")
    elif kind == "truncated":
        drawn_sketch().save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "kind, message",
    [("text", "not a readable image"), ("truncated", "not a readable image"),
     ("empty", "not a readable image"), ("missing", "no such file")],
)  # fmt: skip
def test_unreadable_sketch_files_are_named(colorizer, tmp_path, kind, message):
    path = _bad_file(tmp_path, kind) if kind != "missing" else tmp_path / "nope.png"
    with pytest.raises(ValueError, match=f"sketch: .*{message}"):
        colorizer(path, reference=reference_image(), size=64)


def test_corrupt_reference_is_named(colorizer, tmp_path):
    path = _bad_file(tmp_path, "truncated")
    with pytest.raises(ValueError, match="reference: sketch.png is not a readable image"):
        colorizer(drawn_sketch(), reference=path, size=64)


@pytest.mark.parametrize(
    "call, message",
    [
        ({"sketch": np.zeros((1, 1), np.uint8)}, r"sketch is 1×1 px; each side must be at least"),
        ({"reference": Image.new("RGB", (1, 1))}, r"reference is 1×1 px"),
        ({"reference": None}, "method 'sga' colours from a reference image"),
        ({"sketch": Image.new("RGBA", (64, 64))}, "sketch is blank .*grey level 255"),
        ({"sketch": 42}, "sketch must be a file path, a PIL image or a numpy array"),
        ({"sketch": np.zeros((20, 20, 2), np.uint8)}, r"sketch must be \[H, W\]"),
        ({"sketch": np.full((20, 20), np.nan)}, "NaN"),
        ({"method": "pix2pix"}, "unknown method 'pix2pix'"),
        ({"size": 8}, "size must be an integer from 64 to 2048"),
        ({"size": 100.5}, "size must be an integer"),
        ({"snap": "blurry"}, "snap must be True, False or one of"),
    ],
    ids=["1x1-sketch", "1x1-reference", "missing-reference", "blank-sketch", "not-an-image-object",
         "two-channels", "nan-array", "unknown-method", "tiny-size", "float-size", "snap-mode"],
)  # fmt: skip
def test_bad_input_is_a_clear_value_error(colorizer, call, message):
    arguments = {"sketch": drawn_sketch(), "reference": reference_image(), "size": 64, **call}
    with pytest.raises(ValueError, match=message):
        colorizer(arguments.pop("sketch"), **arguments)


def test_huge_sketch_is_downscaled_with_a_notice(colorizer):
    huge = np.full((12000, 12000), 255, np.uint8)
    huge[2000:2100] = 0
    image, info = colorizer(huge, reference=reference_image(), size=64)
    assert image.size == (MAX_SIDE, MAX_SIDE)
    assert any("12000×12000" in n and f"limit is {MAX_SIDE} px" in n for n in info["notices"])


def test_decompression_bomb_file_is_refused_with_the_limit(colorizer, tmp_path, monkeypatch):
    drawn_sketch().save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 6000 px is over twice this limit
    with pytest.raises(ValueError, match=f"far too large.*{MAX_SIDE} px per side"):
        colorizer(tmp_path / "bomb.png", reference=reference_image(), size=64)


def test_empty_strokes_are_a_notice_and_change_nothing(colorizer):
    empty = np.zeros((60, 100, 4), np.uint8)
    with_empty, info = colorizer(drawn_sketch(), strokes=empty, method="hints", size=64)
    plain, _ = colorizer(drawn_sketch(), method="hints", size=64)
    assert any("empty" in n for n in info["notices"])
    assert np.array_equal(np.asarray(with_empty), np.asarray(plain))


def test_opaque_stroke_file_counts_non_white_pixels_and_is_resized(colorizer):
    strokes = Image.new("RGB", (50, 30), "white")
    ImageDraw.Draw(strokes).rectangle([34, 12, 40, 18], fill=(0, 180, 60))
    image, info = colorizer(drawn_sketch(), strokes=strokes, method="hints", size=64)
    assert any("no transparency" in n for n in info["notices"])
    assert any("stretched" in n for n in info["notices"])
    assert tuple(np.asarray(image)[30, 75]) == (0, 180, 60)


def test_reference_for_a_method_without_one_is_ignored_with_a_notice(colorizer):
    _, info = colorizer(drawn_sketch(), reference=reference_image(), method="hints", size=64)
    assert any("does not use a reference" in n for n in info["notices"])
