"""Cui et al.'s CSFT generator: shapes, gradients, the correspondence warp, save/load, kernels."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import kernels
from colorize.models import csft
from colorize.models.csft import (
    PRESETS,
    CSFTGenerator,
    CSFTOutput,
    DynamicMomentShortcut,
    positional_moments,
    warp_exemplar,
)

# The paper preset's topology (3 pyramid layers, 3 generator levels, 4 residual blocks, DMS)
# at a fraction of its widths.
PAPER_STRUCTURE = {
    **PRESETS["paper"],
    "pyramid_channels": (8, 8, 16),
    "domain_channels": 16,
    "generator_channels": (8, 16, 32),
    "moment_hidden_channels": 8,
}
TINY = {
    "pyramid_channels": (4, 8, 8),
    "domain_channels": 16,
    "generator_channels": (4, 8, 8),
    "num_res_blocks": 1,
    "moment_hidden_channels": 4,
}


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    sketch = torch.rand(batch, 1, size, size) * 2 - 1
    reference = torch.rand(batch, 3, size, size) * 2 - 1
    return sketch, reference


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize(
    "config", [PRESETS["small"], PAPER_STRUCTURE], ids=["small", "paper-structure"]
)
def test_forward_shapes_and_range(config, size):
    model = CSFTGenerator(**config).eval()
    sketch, reference = _inputs(2, size)
    with torch.no_grad():
        out = model(sketch, reference=reference)
    assert isinstance(out, CSFTOutput)
    assert out.image.shape == (2, 3, size, size)
    assert out.coarse.shape == (2, 3, size, size)
    side = size // 4  # L = 3 pyramid layers: correspondence at 1/4 (CoCosNet)
    channels = config["domain_channels"]
    assert out.sketch_domain.shape == out.exemplar_domain.shape == (2, channels, side, side)
    assert out.image.abs().max() <= 1
    # the coarse image is a convex combination of pooled exemplar colours
    assert out.coarse.min() >= reference.min() - 1e-5 and out.coarse.max() <= reference.max() + 1e-5


def test_backward_from_the_image_alone_reaches_every_parameter():
    """The alignment network learns only through the warp and the generator (§3.1.2)."""
    model = CSFTGenerator(**TINY).train()
    sketch, reference = _inputs(2, 32)
    model(sketch, reference=reference).image.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_eval_mode_is_deterministic():
    model = CSFTGenerator(**TINY).eval()
    sketch, reference = _inputs(2, 32)
    with torch.no_grad():
        first = model(sketch, reference=reference)
        second = model(sketch, reference=reference)
    torch.testing.assert_close(first.image, second.image, rtol=0, atol=0)
    torch.testing.assert_close(first.coarse, second.coarse, rtol=0, atol=0)


def test_save_and_load_round_trip_uses_safetensors_only(tmp_path: Path):
    model = CSFTGenerator(**TINY, correspondence_alpha=50.0, dynamic_moments=False).eval()
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert any(name.endswith(".safetensors") for name in files), files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for name in files)
    loaded = CSFTGenerator.from_pretrained(tmp_path).eval()
    assert loaded.config.correspondence_alpha == 50.0 and not loaded.config.dynamic_moments
    sketch, reference = _inputs(1, 32)
    with torch.no_grad():
        expected = model(sketch, reference=reference)
        actual = loaded(sketch, reference=reference)
    torch.testing.assert_close(actual.image, expected.image, rtol=0, atol=0)
    torch.testing.assert_close(actual.coarse, expected.coarse, rtol=0, atol=0)


def test_warp_is_softmax_of_scaled_centred_cosines_over_the_pooled_exemplar():
    """Eq. 3–4 written out: M = cosine of channel-centred features, softmax_j(α·M) y'_e."""
    x_c, y_c = torch.randn(2, 8, 4, 6), torch.randn(2, 8, 4, 6)
    exemplar = torch.rand(2, 3, 16, 24) * 2 - 1
    alpha = 7.0
    xh = (x_c - x_c.mean(dim=(2, 3), keepdim=True)).flatten(2)  # (B, C, N)
    yh = (y_c - y_c.mean(dim=(2, 3), keepdim=True)).flatten(2)  # (B, C, M)
    cosine = F.normalize(xh, dim=1).transpose(1, 2) @ F.normalize(yh, dim=1)  # (B, N, M)
    pooled = F.avg_pool2d(exemplar, 4).flatten(2).transpose(1, 2)  # (B, M, 3)
    expected = (torch.softmax(alpha * cosine, dim=-1) @ pooled).transpose(1, 2).reshape(2, 3, 4, 6)
    torch.testing.assert_close(warp_exemplar(x_c, y_c, exemplar, alpha), expected)


def test_warp_of_identical_features_with_paper_alpha_returns_the_pooled_exemplar():
    features = torch.randn(1, 32, 5, 5)
    exemplar = torch.rand(1, 3, 20, 20)
    warped = warp_exemplar(features, features, exemplar, alpha=100.0)
    torch.testing.assert_close(warped, F.avg_pool2d(exemplar, 4), atol=1e-4, rtol=1e-4)


def test_every_attention_runs_through_the_kernel_op(monkeypatch):
    calls = []
    original = kernels.cross_attention

    def counting(q, k, v, scale=None, **kwargs):
        calls.append(scale)
        return original(q, k, v, scale, **kwargs)

    monkeypatch.setattr(kernels, "cross_attention", counting)
    model = CSFTGenerator(**TINY)
    sketch, reference = _inputs(1, 32)
    model(sketch, reference=reference)
    # CSFT of each branch at 1/√d_v (scale None), then the warp at α
    assert calls == [None, None, model.config.correspondence_alpha]


def test_triton_and_eager_paths_agree():
    model = CSFTGenerator(**TINY).eval()
    sketch, reference = _inputs(1, 32)
    kernels.set_backend("eager")
    reference_eager = reference.clone().requires_grad_(True)
    eager = model(sketch, reference=reference_eager)
    eager.image.sum().backward()
    kernels.set_backend("triton")
    reference_triton = reference.clone().requires_grad_(True)
    fused = model(sketch, reference=reference_triton)
    fused.image.sum().backward()
    torch.testing.assert_close(fused.coarse, eager.coarse, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.image, eager.image, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(reference_triton.grad, reference_eager.grad, atol=1e-4, rtol=1e-4)


def test_embeddings_match_the_forward_outputs_for_the_alignment_loss():
    model = CSFTGenerator(**TINY).eval()
    sketch, reference = _inputs(2, 32)
    with torch.no_grad():
        out = model(sketch, reference=reference)
        torch.testing.assert_close(model.embed_exemplar(reference), out.exemplar_domain)
        torch.testing.assert_close(model.embed_sketch(sketch, reference), out.sketch_domain)


def test_correspondence_is_capped_at_its_side_and_the_image_keeps_the_full_size(monkeypatch):
    """Above `correspondence_side` the alignment network reads a downscaled sketch and
    exemplar: every attention spans at most (side / 4)² positions, the output stays full size."""
    spans = []
    original = kernels.cross_attention

    def recording(q, k, v, scale=None, **kwargs):
        spans.append((q.shape[2], k.shape[2]))
        return original(q, k, v, scale, **kwargs)

    monkeypatch.setattr(kernels, "cross_attention", recording)
    model = CSFTGenerator(**TINY, correspondence_side=32).eval()
    sketch, reference = _inputs(1, 64)
    sketch, reference = sketch[..., :48], reference[..., :48]  # 64 × 48: the aspect is kept
    assert model.alignment_size(64, 48) == (32, 24)
    with torch.no_grad():
        out = model(sketch, reference=reference)
    assert out.image.shape == out.coarse.shape == (1, 3, 64, 48)
    assert out.sketch_domain.shape[-2:] == out.exemplar_domain.shape[-2:] == (8, 6)
    assert spans == [(48, 48)] * 3  # (32/4) × (24/4) positions, not (64/4) × (48/4) = 192
    with torch.no_grad():  # the alignment loss reads the same downscaled embeddings
        torch.testing.assert_close(model.embed_exemplar(reference), out.exemplar_domain)


def test_inputs_up_to_the_correspondence_side_are_read_exactly():
    capped = CSFTGenerator(**TINY, correspondence_side=32).eval()
    uncapped = CSFTGenerator(**TINY, correspondence_side=None).eval()
    uncapped.load_state_dict(capped.state_dict())
    assert capped.alignment_size(32, 32) == (32, 32) and uncapped.alignment_size(999, 9) == (999, 9)
    sketch, reference = _inputs(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(capped(sketch, reference=reference).image,
                                   uncapped(sketch, reference=reference).image)  # fmt: skip
    assert CSFTGenerator(**TINY).config.correspondence_side == 256  # the paper's training size
    with pytest.raises(ValueError, match="correspondence_side"):
        CSFTGenerator(**TINY, correspondence_side=4)


def test_positional_moments_normalise_every_position():
    x = torch.randn(2, 16, 5, 7) * 3 + 1
    normalised, mean, std = positional_moments(x)
    assert mean.shape == std.shape == (2, 1, 5, 7)
    torch.testing.assert_close(normalised * std + mean, x)
    torch.testing.assert_close(normalised.mean(dim=1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        normalised.var(dim=1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0
    )


def test_plain_moment_shortcut_injects_sigma_and_mu():
    shortcut = DynamicMomentShortcut(4, 8, dynamic=False, negative_slope=0.2)
    x, mean, std = torch.randn(2, 4, 3, 3), torch.randn(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
    torch.testing.assert_close(shortcut(x, mean, std), x * std + mean)
    assert not list(shortcut.parameters())
    dynamic = DynamicMomentShortcut(4, 8, dynamic=True, negative_slope=0.2)
    assert dynamic(x, mean, std).shape == x.shape


def test_stride_follows_the_deepest_of_pyramid_and_generator():
    assert CSFTGenerator(**TINY).stride == 4
    deeper = {**TINY, "generator_channels": (4, 8, 8, 8)}
    assert CSFTGenerator(**deeper).stride == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hint": torch.zeros(1, 4, 8, 8)}, "does not use 'hint'"),
        ({"tags": torch.zeros(1, 64)}, "does not use 'tags'"),
        ({"reference": None}, "needs 'reference'"),
        ({"reference": torch.zeros(1, 3, 16, 32)}, r"reference must be \[1, 3, 32, 32\]"),
        ({"sketch": torch.zeros(1, 1, 30, 30)}, "multiples of 4"),
        ({"sketch": torch.zeros(1, 3, 32, 32)}, r"sketch must be \[B, 1, H, W\]"),
    ],
    ids=["hint", "tags", "no-reference", "reference-shape", "side", "sketch-channels"],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    model = CSFTGenerator(**TINY)
    sketch, reference = _inputs(1, 32)
    call = {"sketch": sketch, "reference": reference, **kwargs}
    with pytest.raises(ValueError, match=message):
        model(call.pop("sketch"), **call)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="domain_channels >= 3"):
        CSFTGenerator(**{**TINY, "domain_channels": 2})
    with pytest.raises(ValueError, match="at least one positive width"):
        CSFTGenerator(**{**TINY, "pyramid_channels": ()})


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_presets_fit_the_fused_kernels_head_dim(preset):
    """Eq. 8 is one head over d_v = Σ pyramid widths and the warp's head is the domain width:
    both must fit the Triton kernel, or the GPU path would refuse the preset."""
    from kernels.cross_attention_triton import MAX_HEAD_DIM

    config = csft.PRESETS[preset]
    assert sum(config["pyramid_channels"]) <= MAX_HEAD_DIM
    assert 3 <= config["domain_channels"] <= MAX_HEAD_DIM


def test_small_preset_fits_the_shipping_budget():
    small = CSFTGenerator(**PRESETS["small"])
    assert sum(p.numel() for p in small.parameters()) <= 2_500_000  # ≤ 5 MiB in fp16
