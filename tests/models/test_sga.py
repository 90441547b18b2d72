"""SGAGenerator (Cao et al.) and its stop-gradient attention block."""

import pytest
import torch
import torch.nn.functional as F

import kernels
from colorize.models.sga import PRESETS, SGABlock, SGAGenerator

# The paper's topology (5 scales × 2 conv+CBAM layers, 4 residual blocks) at narrow widths.
PAPER_NARROW = {**PRESETS["paper"], "block_out_channels": (4, 4, 8, 8, 8)}
TINY = {"block_out_channels": (4, 8, 8), "layers_per_block": 1, "num_res_blocks": 1}


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    sketch = torch.rand(batch, 1, size, size) * 2 - 1
    reference = torch.rand(batch, 3, size, size) * 2 - 1
    return sketch, reference


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", [PRESETS["small"], PAPER_NARROW], ids=["small", "paper-narrow"])
def test_forward_shape_and_range(config, size):
    model = SGAGenerator(**config).eval()
    sketch, reference = _inputs(1, size)
    with torch.no_grad():
        out = model(sketch, reference=reference)
    assert out.image.shape == (1, 3, size, size)
    assert out.coarse is None
    assert torch.isfinite(out.image).all() and out.image.abs().max() <= 1


def test_paper_preset_structure():
    model = SGAGenerator(**PAPER_NARROW)
    assert len(model.sketch_encoder.layers) == len(model.reference_encoder.layers) == 10
    assert len(model.res_blocks) == 4
    assert len(model.decoder) == 9  # one block per encoder layer after the deepest
    fused = 2 * sum(PAPER_NARROW["block_out_channels"])  # all layers concatenated
    assert model.cross_attention.to_value.in_features == fused
    assert model.stride == 16
    # the paper's widths concatenate to the 992 channels of the SGA authors' code
    assert 2 * sum(PRESETS["paper"]["block_out_channels"]) == 992


def test_backward_reaches_every_parameter():
    model = SGAGenerator(**PRESETS["small"]).train()
    sketch, reference = _inputs(2, 64)
    model(sketch, reference=reference).image.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_eval_mode_is_deterministic():
    model = SGAGenerator(**TINY).eval()
    sketch, reference = _inputs(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(sketch, reference=reference).image,
            model(sketch, reference=reference).image,
            rtol=0,
            atol=0,
        )


def test_reference_changes_the_output():
    # train mode: BatchNorm normalises with batch statistics, which swapping the two
    # references leaves unchanged, so any difference comes from the reference content
    model = SGAGenerator(**TINY).train()
    sketch, reference = _inputs(2, 32)
    with torch.no_grad():
        a = model(sketch, reference=reference).image
        b = model(sketch, reference=reference.flip(0)).image
    assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-2


def test_save_and_load_round_trip(tmp_path):
    model = SGAGenerator(**TINY).eval()
    sketch, reference = _inputs(1, 32)
    with torch.no_grad():
        expected = model(sketch, reference=reference).image
    model.save_pretrained(tmp_path)
    suffixes = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert ".safetensors" in suffixes
    assert not suffixes & {".bin", ".pt", ".pth", ".pkl", ".ckpt"}
    loaded = SGAGenerator.from_pretrained(tmp_path).eval()
    assert loaded.config.block_out_channels == list(TINY["block_out_channels"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(sketch, reference=reference).image, expected)


def test_keys_are_pooled_above_the_attention_key_side_and_every_query_stays(monkeypatch):
    spans = []
    original = kernels.sga_attention

    def recording(x, y, v, **kwargs):
        spans.append((x.shape[1], y.shape[1], v.shape[1]))
        return original(x, y, v, **kwargs)

    monkeypatch.setattr(kernels, "sga_attention", recording)
    model = SGAGenerator(**TINY, attention_key_side=16).eval()  # stride 4: a 4×4 key grid
    sketch, reference = _inputs(1, 64)
    sketch, reference = sketch[..., :48], reference[..., :48]  # 64 × 48: the aspect is kept
    assert model.key_grid(16, 12) == (4, 3) and model.key_grid(4, 4) == (4, 4)
    with torch.no_grad():
        out = model(sketch, reference=reference)
    assert out.image.shape == (1, 3, 64, 48) and torch.isfinite(out.image).all()
    assert spans == [(16 * 12, 4 * 3, 4 * 3)] * 2  # cross, then self over pooled keys


def test_a_pooled_key_weighs_as_the_positions_it_stands_for():
    """Keys that are r copies of one feature give the same message as that key once with
    key_weight r: the column normalisation would otherwise shrink the message r times (the
    pooled model lost 7.6 dB before the weight; 0.7 dB with it, at 2×2 pooling)."""
    block = SGABlock(8).eval()
    x, key = torch.randn(1, 6, 8), torch.randn(1, 2, 8)
    with torch.no_grad():
        full = block(x, key.repeat_interleave(4, dim=1))  # 8 keys, 4 copies each
        pooled = block(x, key, key_weight=4.0)
        unweighted = block(x, key)
    torch.testing.assert_close(pooled, full)
    assert not torch.allclose(unweighted, full)


def test_inputs_up_to_the_attention_key_side_attend_to_every_key():
    capped = SGAGenerator(**TINY, attention_key_side=32).eval()
    uncapped = SGAGenerator(**TINY, attention_key_side=None).eval()
    uncapped.load_state_dict(capped.state_dict())
    sketch, reference = _inputs(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(capped(sketch, reference=reference).image,
                                   uncapped(sketch, reference=reference).image, rtol=0, atol=0)
        large, large_reference = _inputs(1, 64)  # above the side: the capped keys differ
        assert not torch.equal(capped(large, reference=large_reference).image,
                               uncapped(large, reference=large_reference).image)  # fmt: skip
    assert SGAGenerator(**TINY).config.attention_key_side == 256
    with pytest.raises(ValueError, match="attention_key_side"):
        SGAGenerator(**TINY, attention_key_side=2)


def test_triton_and_eager_paths_agree():
    model = SGAGenerator(block_out_channels=(4, 8), layers_per_block=1, num_res_blocks=1).eval()
    sketch, reference = _inputs(1, 16)
    with torch.no_grad():
        eager = model(sketch, reference=reference).image
        kernels.set_backend("triton")
        triton = model(sketch, reference=reference).image
    torch.testing.assert_close(triton, eager, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = SGAGenerator(**TINY)
    sketch, reference = _inputs(1, 32)
    with pytest.raises(ValueError, match="does not use 'palette'"):
        model(sketch, reference=reference, palette=torch.zeros(1, 27))
    with pytest.raises(ValueError, match="needs 'reference'"):
        model(sketch)
    with pytest.raises(ValueError, match=r"reference must be \[1, 3, 32, 32\]"):
        model(sketch, reference=reference[:, :1])
    with pytest.raises(ValueError, match="multiples of 4"):
        model(sketch[..., :30, :30], reference=reference[..., :30, :30])


# ----------------------------------------------------------------------------------------------
# The SGA block


def _plain_sga_block(block: SGABlock, x, y, attention_grad: bool):
    """SGABlock written out in plain torch: A = colnorm(softmax(x yᵀ)), BN in eval mode.

    attention_grad=True lets the gradient flow through A, as ordinary attention would.
    """
    with torch.set_grad_enabled(attention_grad):
        attn = torch.softmax(x @ y.transpose(1, 2), dim=-1)  # (B, N, M)
        attn = attn / attn.sum(dim=1, keepdim=True).clamp_min(1e-12)
    values = F.leaky_relu(block.to_value(y), 0.2)
    z = attn @ values + F.leaky_relu(block.to_query(x), 0.2)
    norm = block.norm
    z = (z - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
    return x + z


def _grads(out: torch.Tensor, upstream: torch.Tensor, *tensors: torch.Tensor):
    return torch.autograd.grad(out, tensors, upstream, allow_unused=True)


@pytest.mark.parametrize("variant", ["cross", "self"])
def test_sga_block_matches_plain_torch_with_detached_attention(variant):
    block = SGABlock(12).eval()
    with torch.no_grad():  # non-trivial running statistics
        block.norm.running_mean.uniform_(-0.5, 0.5)
        block.norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 10, 12, requires_grad=True)
    y = torch.randn(2, 7, 12, requires_grad=True) if variant == "cross" else x
    context = y if variant == "cross" else None
    upstream = torch.randn(2, 10, 12)
    params = (block.to_query.weight, block.to_value.weight)

    out = block(x, context)
    expected = _plain_sga_block(block, x, y, attention_grad=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    inputs = (x, y) if variant == "cross" else (x,)
    for got, want in zip(
        _grads(out, upstream, *inputs, *params),
        _grads(expected, upstream, *inputs, *params),
        strict=True,
    ):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sga_block_passes_no_gradient_through_the_attention_weights():
    """In the cross block, x and W_q reach the output only through the short connection when
    A carries no gradient, so their gradients cannot depend on the reference y; through an
    ordinary (differentiable) attention matrix they would."""
    block = SGABlock(12).eval()
    x = torch.randn(2, 10, 12, requires_grad=True)
    y1, y2 = torch.randn(2, 7, 12), torch.randn(2, 7, 12)
    upstream = torch.randn(2, 10, 12)
    w_q = block.to_query.weight

    dx1, dw1 = _grads(block(x, y1), upstream, x, w_q)
    dx2, dw2 = _grads(block(x, y2), upstream, x, w_q)
    torch.testing.assert_close(dx1, dx2, rtol=0, atol=0)
    torch.testing.assert_close(dw1, dw2, rtol=0, atol=0)

    # the same check fails for attention with gradient: the test can observe a leak
    leak1, _ = _grads(_plain_sga_block(block, x, y1, attention_grad=True), upstream, x, w_q)
    leak2, _ = _grads(_plain_sga_block(block, x, y2, attention_grad=True), upstream, x, w_q)
    assert (leak1 - leak2).abs().max() > 1e-3
    assert (leak1 - dx1).abs().max() > 1e-3
