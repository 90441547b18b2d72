"""SGA kernel vs the eager reference: values, gradients, stop-gradient, memory, dispatcher."""

import pytest
import torch

import kernels
from kernels.reference import sga_attention_reference

from .utils import BF16, DTYPES, assert_close, fp32_leaves, leaves

SHAPES = [
    pytest.param((1, 5, 7, 8, 8), id="B1-N5-M7-C8-Cv8-below-block"),
    pytest.param((2, 16, 16, 16, 16), id="B2-N16-M16-C16-Cv16-one-block"),
    pytest.param((2, 37, 53, 24, 40), id="B2-N37-M53-C24-Cv40-odd"),
    pytest.param((1, 61, 17, 33, 5), id="B1-N61-M17-C33-Cv5-N>M"),
]


def _inputs(B, N, M, C, CV, dtype, device, scale=0.5):
    x = torch.randn(B, N, C, device=device) * scale
    y = torch.randn(B, M, C, device=device) * scale
    v = torch.randn(B, M, CV, device=device)
    return x.to(dtype), y.to(dtype), v.to(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES + [BF16])
def test_sga_attention_matches_reference_forward_and_grads(shape, dtype, atol, rtol, device):
    x, y, v = _inputs(*shape, dtype, device)
    xt, yt, vt = leaves(x, y, v)
    xr, yr, vr = fp32_leaves(x, y, v)
    out = kernels.sga_attention(xt, yt, vt, impl="triton")
    ref = sga_attention_reference(xr, yr, vr)
    assert out.dtype == dtype
    assert_close(out, ref, atol, rtol, "z")
    dz = torch.randn_like(ref)
    out.backward(dz.to(dtype))
    ref.backward(dz)
    assert_close(vt.grad, vr.grad, atol, rtol, "dv")
    assert vt.grad.dtype == dtype


def test_sga_attention_peaky_scores_match_reference(device):
    """Unscaled x yᵀ makes rows near one-hot and some column sums tiny: the eps path and
    the online softmax must still agree with the reference."""
    x, y, v = _inputs(2, 29, 31, 24, 12, torch.float32, device, scale=2.0)
    out = kernels.sga_attention(x, y, v, impl="triton")
    ref = sga_attention_reference(x, y, v)
    assert_close(out, ref, 1e-5, 1e-4, "z")


def test_sga_attention_columns_are_l1_normalised(device):
    """With v = I every output column is a column of A, and each sums to one."""
    x, y, _ = _inputs(1, 23, 19, 16, 19, torch.float32, device)
    eye = torch.eye(19, device=device)[None]
    a = kernels.sga_attention(x, y, eye, impl="triton")  # (1, N, M) = A
    assert_close(a.sum(dim=1), torch.ones(1, 19, device=device), 1e-5, 1e-5, "column sums")


def test_sga_attention_gives_no_gradient_to_x_and_y(device):
    x, y, v = leaves(*_inputs(2, 21, 18, 16, 8, torch.float32, device))
    out = kernels.sga_attention(x, y, v, impl="triton")
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is None and y.grad is None
    assert v.grad is not None and v.grad.abs().sum() > 0
    xr, yr, vr = leaves(x, y, v)
    (sga_attention_reference(xr, yr, vr) * 1.0).sum().backward()
    assert xr.grad is None and yr.grad is None


def test_sga_attention_saves_no_n_by_m_tensor(device):
    """Memory for backward is O((N + M)·C): nothing saved has N·M elements per batch."""
    B, N, M, C, CV = 2, 40, 33, 8, 8
    x, y, v = leaves(*_inputs(B, N, M, C, CV, torch.float32, device))
    out = kernels.sga_attention(x, y, v, impl="triton")
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 4
    for t in saved:
        assert t.numel() <= B * max(N, M) * C, f"saved tensor of shape {tuple(t.shape)}"
        assert N * M not in t.shape and t.numel() != B * N * M


def test_sga_attention_accepts_non_contiguous_inputs(device):
    x, y, v = _inputs(2, 17, 22, 24, 12, torch.float32, device)
    xn = x.transpose(1, 2).contiguous().transpose(1, 2)
    vn = torch.randn(2, 12, 22, device=device).transpose(1, 2)
    assert not xn.is_contiguous() and not vn.is_contiguous()
    out = kernels.sga_attention(xn, y, vn, impl="triton")
    assert_close(out, sga_attention_reference(x, y, vn), 1e-5, 1e-5, "z")


def test_sga_attention_rejects_mismatched_shapes(device):
    x, y, v = _inputs(1, 8, 9, 16, 4, torch.float32, device)
    with pytest.raises(ValueError, match="y must be"):
        kernels.sga_attention(x, y[..., :8], v, impl="triton")
    with pytest.raises(ValueError, match="v must be"):
        kernels.sga_attention(x, y, v[:, :5], impl="triton")
    with pytest.raises(ValueError, match=r"x must be \[B, N, C\]"):
        kernels.sga_attention(x[0], y, v)


def test_sga_attention_under_autocast_matches_eager_dtype(device):
    x, y, v = _inputs(1, 19, 23, 16, 8, torch.float32, device)
    with torch.autocast(device, dtype=torch.float16):
        eager = kernels.sga_attention(x, y, v, impl="eager")
        fused = kernels.sga_attention(x, y, v, impl="triton")
    assert fused.dtype == eager.dtype == torch.float16
    assert_close(fused, eager, 5e-3, 5e-3, "z under autocast")


def test_sga_reference_gradcheck_on_v():
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    y = torch.randn(1, 6, 4, dtype=torch.float64)
    v = torch.randn(1, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sga_attention_reference(x, y, v), (v,))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_eager_formulation_matches_reference_forward_and_grads(shape, dtype, atol, rtol):
    """kernels.eager.sga_attention_eager (what the "eager" backend runs) against the spec."""
    from kernels.eager import sga_attention_eager

    x, y, v = _inputs(*shape, dtype, "cpu")
    xe, ye, ve = leaves(x, y, v)
    xr, yr, vr = fp32_leaves(x, y, v)
    out, ref = sga_attention_eager(xe, ye, ve), sga_attention_reference(xr, yr, vr)
    assert out.dtype == dtype
    assert_close(out, ref, atol, rtol, "z")
    dz = torch.randn_like(ref)
    out.backward(dz.to(dtype))
    ref.backward(dz)
    assert_close(ve.grad, vr.grad, atol, rtol, "dv")
    assert xe.grad is None and ye.grad is None  # stop-gradient: only v


def test_eager_formulation_keeps_unattended_columns_finite_in_fp16():
    """A key no query attends to has a column sum near 0: 1/s must not overflow fp16."""
    from kernels.eager import sga_attention_eager

    x = torch.full((1, 4, 2), 8.0)
    y = torch.tensor([[[8.0, 8.0], [-8.0, -8.0]]])  # the second key gets ~e^-256 of attention
    v = torch.ones(1, 2, 3)
    out = sga_attention_eager(x.half(), y.half(), v.half())
    ref = sga_attention_reference(x, y, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)
