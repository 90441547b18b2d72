"""ResUNetGenerator (Khang et al.): shapes, gradients, noise determinism, round trip."""

import pytest
import torch

import kernels
from colorize.models.resunet import PRESETS, NoiseInjection, ResUNetGenerator

# The paper's topology (7 + 7 residual blocks, 6 downsamplings, 3 attention and noise blocks)
# at narrow widths.
PAPER_NARROW = {
    **PRESETS["paper"],
    "block_out_channels": (8, 8, 16, 16, 16, 16, 16),
    "norm_num_groups": 4,
    "attention_head_dim": 8,
}
TINY = {
    "block_out_channels": (8, 8, 16, 16, 16, 16, 16),
    "num_downsample_blocks": 3,
    "norm_num_groups": 4,
    "attention_head_dim": 8,
}


def _inputs(batch: int, size: int) -> dict[str, torch.Tensor]:
    return {
        "sketch": torch.rand(batch, 1, size, size) * 2 - 1,
        "reference": torch.rand(batch, 3, size, size) * 2 - 1,
        "palette": torch.rand(batch, 27) * 2 - 1,
    }


def _with_noise(model: ResUNetGenerator) -> ResUNetGenerator:
    """Noise scales start at zero; make them count so that noise tests can fail."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NoiseInjection):
                module.scale.fill_(1.0)
    return model


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", [PRESETS["small"], PAPER_NARROW], ids=["small", "paper-narrow"])
def test_forward_shape_and_range(config, size):
    model = ResUNetGenerator(**config).eval()
    with torch.no_grad():
        out = model(**_inputs(1, size))
    assert out.image.shape == (1, 3, size, size)
    assert out.coarse is None
    assert torch.isfinite(out.image).all() and out.image.abs().max() <= 1


def test_paper_preset_structure():
    model = ResUNetGenerator(**PAPER_NARROW)
    assert len(model.encoder) == len(model.decoder) == len(model.reference_encoder) == 7
    assert model.encoder[0].conv1.in_channels == 30  # line (3) ⊕ palette (27)
    assert model.stride == 64
    with_attention = [block.attention is not None for block in model.decoder]
    with_noise = [block.noise is not None for block in model.decoder]
    assert with_attention == with_noise == [True] * 3 + [False] * 4  # the deepest blocks


def test_backward_reaches_every_parameter():
    model = ResUNetGenerator(**PRESETS["small"]).train()
    model(**_inputs(2, 64)).image.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_eval_mode_is_deterministic_and_uses_the_seeded_noise():
    model = _with_noise(ResUNetGenerator(**TINY)).eval()
    inputs = _inputs(2, 32)
    with torch.no_grad():
        first = model(**inputs).image
        torch.testing.assert_close(model(**inputs).image, first, rtol=0, atol=0)
        seeded = torch.Generator().manual_seed(model.config.noise_seed)
        torch.testing.assert_close(model(**inputs, generator=seeded).image, first, rtol=0, atol=0)
        other = torch.Generator().manual_seed(model.config.noise_seed + 1)
        assert (model(**inputs, generator=other).image - first).abs().max() > 1e-4


def test_training_noise_follows_the_callers_generator():
    model = _with_noise(ResUNetGenerator(**TINY)).train()
    inputs = _inputs(2, 32)
    with torch.no_grad():
        a = model(**inputs, generator=torch.Generator().manual_seed(7)).image
        b = model(**inputs, generator=torch.Generator().manual_seed(7)).image
        c = model(**inputs).image  # global RNG: fresh noise
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-4


@pytest.mark.parametrize("condition", ["reference", "palette"])
def test_each_condition_changes_the_output(condition):
    model = ResUNetGenerator(**TINY).eval()
    inputs = _inputs(1, 32)
    with torch.no_grad():
        a = model(**inputs).image
        b = model(**{**inputs, condition: -inputs[condition]}).image
    assert (a - b).abs().max() > 1e-4


def test_save_and_load_round_trip(tmp_path):
    model = _with_noise(ResUNetGenerator(**TINY)).eval()
    inputs = _inputs(1, 32)
    with torch.no_grad():
        expected = model(**inputs).image
    model.save_pretrained(tmp_path)
    suffixes = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert ".safetensors" in suffixes
    assert not suffixes & {".bin", ".pt", ".pth", ".pkl", ".ckpt"}
    loaded = ResUNetGenerator.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).image, expected)


def test_triton_and_eager_paths_agree():
    model = _with_noise(ResUNetGenerator(**{**TINY, "num_downsample_blocks": 2})).eval()
    inputs = _inputs(1, 16)
    with torch.no_grad():
        eager = model(**inputs).image
        kernels.set_backend("triton")
        triton = model(**inputs).image
    torch.testing.assert_close(triton, eager, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = ResUNetGenerator(**TINY)
    inputs = _inputs(1, 32)
    with pytest.raises(ValueError, match="does not use 'hint'"):
        model(**inputs, hint=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="needs 'palette'"):
        model(**{**inputs, "palette": None})
    with pytest.raises(ValueError, match=r"palette must be \[1, 27\]"):
        model(**{**inputs, "palette": torch.zeros(1, 9, 3)})
    with pytest.raises(ValueError, match="multiples of 8"):
        model(**{k: v[..., :28, :28] if v.dim() == 4 else v for k, v in inputs.items()})
    with pytest.raises(ValueError, match="divisible by norm_num_groups"):
        ResUNetGenerator(**{**TINY, "norm_num_groups": 3})
