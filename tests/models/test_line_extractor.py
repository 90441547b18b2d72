"""LineExtractor (Cao et al.'s U-Net LE): colour image -> line drawing."""

import pytest
import torch

from colorize.models.line_extractor import PRESETS, LineExtractor

# The paper's topology (5 scales, 4 poolings) at narrow widths.
PAPER_NARROW = {"block_out_channels": (4, 8, 8, 16, 16)}
TINY = {"block_out_channels": (4, 8, 8)}


def _image(batch: int, size: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size) * 2 - 1


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", [PRESETS["small"], PAPER_NARROW], ids=["small", "paper-narrow"])
def test_forward_shape_and_range(config, size):
    model = LineExtractor(**config).eval()
    with torch.no_grad():
        sketch = model(_image(1, size))
    assert sketch.shape == (1, 1, size, size)
    assert torch.isfinite(sketch).all() and sketch.abs().max() <= 1


def test_paper_preset_structure():
    assert PRESETS["paper"]["block_out_channels"] == (64, 128, 256, 512, 1024)  # Ronneberger
    model = LineExtractor(**PAPER_NARROW)
    assert len(model.down) == 5 and len(model.up) == len(model.up_convs) == 4
    assert model.stride == 16


def test_small_preset_fits_its_budget():
    count = sum(p.numel() for p in LineExtractor(**PRESETS["small"]).parameters())
    assert count <= 1_000_000  # ≤ 1M parameters, under 2 MiB in fp16


def test_backward_reaches_every_parameter():
    model = LineExtractor(**PRESETS["small"]).train()
    model(_image(2, 64)).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_eval_mode_is_deterministic():
    model = LineExtractor(**TINY).eval()
    image = _image(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(image), rtol=0, atol=0)


def test_save_and_load_round_trip(tmp_path):
    model = LineExtractor(**TINY).eval()
    image = _image(1, 32)
    with torch.no_grad():
        expected = model(image)
    model.save_pretrained(tmp_path)
    suffixes = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert ".safetensors" in suffixes
    assert not suffixes & {".bin", ".pt", ".pth", ".pkl", ".ckpt"}
    loaded = LineExtractor.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), expected)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        pytest.param(torch.zeros(1, 1, 32, 32), r"\[B, 3, H, W\].*\(1, 1, 32, 32\)", id="grey"),
        pytest.param(torch.zeros(3, 32, 32), r"\[B, 3, H, W\].*\(3, 32, 32\)", id="unbatched"),
        pytest.param(torch.zeros(1, 3, 30, 32), "multiples of 4, got 30x32", id="size"),
        pytest.param(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float tensor", id="uint8"),
    ],
)
def test_bad_inputs_raise_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        LineExtractor(**TINY)(image)


def test_untrained_output_starts_near_white_paper():
    """Most of a line drawing is paper: the untrained LE draws none and starts at +0.8, so L1
    training fits lines from step one (with the default init it started at mid grey)."""
    model = LineExtractor(**TINY).eval()
    with torch.no_grad():
        out = model(_image(2, 32))
    torch.testing.assert_close(out, torch.full_like(out, 0.8))
    assert LineExtractor(**TINY, initial_paper=0.5)(_image(1, 32)).detach().allclose(
        torch.tensor(0.5))
    with pytest.raises(ValueError, match="initial_paper"):
        LineExtractor(**TINY, initial_paper=1.0)
