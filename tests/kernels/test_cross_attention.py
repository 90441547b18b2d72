"""Cross attention: the FlashAttention-2 Triton kernels against the eager reference.

Without a GPU the kernels run under Triton's interpreter (tests/conftest.py) with 16×16
blocks, so these shapes span several blocks and exercise every ragged-tail mask.
"""

import math

import pytest
import torch

from kernels import cross_attention, cross_attention_reference
from kernels.cross_attention_triton import CrossAttentionFunction
from tests.kernels.utils import BF16, DTYPES, assert_close, fp32_leaves, leaves

SHAPES = [  # (B, H, N, M, D)
    pytest.param((1, 1, 1, 5, 32), id="B1-H1-N1-M5-D32"),  # below one block
    pytest.param((1, 2, 16, 16, 64), id="B1-H2-N16-M16-D64"),  # exactly one block
    pytest.param((2, 3, 37, 53, 16), id="B2-H3-N37-M53-D16"),  # prime sizes, N < M
    pytest.param((2, 1, 53, 17, 24), id="B2-H1-N53-M17-D24"),  # N > M, D not a power of 2
    pytest.param((1, 2, 19, 32, 128), id="B1-H2-N19-M32-D128"),  # widest supported block
    pytest.param((2, 2, 3, 29, 8), id="B2-H2-N3-M29-D8"),  # D below tl.dot's minimum of 16
]


def _qkv(shape, dtype, device):
    B, H, N, M, D = shape
    q = torch.randn(B, H, N, D, dtype=dtype, device=device)
    k = torch.randn(B, H, M, D, dtype=dtype, device=device)
    v = torch.randn(B, H, M, D, dtype=dtype, device=device)
    return q, k, v


def _check_against_reference(q, k, v, scale, atol, rtol, grad_out=None):
    """Triton on leaves of q, k, v against the reference on fp32 copies: output and all grads."""
    tq, tk, tv = leaves(q, k, v)
    rq, rk, rv = fp32_leaves(q, k, v)
    out = cross_attention(tq, tk, tv, scale, impl="triton")
    expected = cross_attention_reference(rq, rk, rv, scale)
    assert out.dtype == q.dtype
    assert_close(out, expected, atol, rtol, "out")

    if grad_out is None:
        grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out.float())
    for name, got, want in (("dq", tq.grad, rq.grad), ("dk", tk.grad, rk.grad),
                            ("dv", tv.grad, rv.grad)):  # fmt: skip
        assert got is not None and got.dtype == q.dtype, f"{name}: {got}"
        assert_close(got, want, atol, rtol, name)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, atol, rtol", [*DTYPES, BF16])
def test_cross_attention_matches_reference_forward_and_grads(shape, dtype, atol, rtol, device):
    q, k, v = _qkv(shape, dtype, device)
    _check_against_reference(q, k, v, None, atol, rtol)


@pytest.mark.parametrize("scale", [0.3, -0.5], ids=["scale0.3", "scale-0.5"])
def test_cross_attention_custom_scale_matches_reference(scale, device):
    q, k, v = _qkv((2, 2, 19, 23, 32), torch.float32, device)
    _check_against_reference(q, k, v, scale, 1e-5, 1e-5)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_cross_attention_non_contiguous_inputs_match_reference(dtype, atol, rtol, device):
    B, H, N, M, D = 2, 3, 21, 34, 16
    # q, and k/v split from one packed projection, all viewed from the [B, N, H, D] layout;
    # the upstream gradient is a transposed view too.
    q = torch.randn(B, N, H, D, dtype=dtype, device=device).transpose(1, 2)
    kv = torch.randn(B, M, H, 2 * D, dtype=dtype, device=device)
    k, v = kv[..., :D].transpose(1, 2), kv[..., D:].transpose(1, 2)
    grad_out = torch.randn(B, N, H, D, dtype=dtype, device=device).transpose(1, 2)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous())
    _check_against_reference(q, k, v, None, atol, rtol, grad_out=grad_out)


@pytest.mark.parametrize(
    "needs_grad", [("q",), ("k",), ("v",), ("k", "v")], ids=["q", "k", "v", "kv"]
)
def test_cross_attention_partial_grads_match_reference(needs_grad, device):
    q, k, v = _qkv((1, 2, 18, 21, 16), torch.float32, device)
    triton_in = dict(zip("qkv", leaves(q, k, v, requires_grad=False), strict=True))
    ref_in = dict(zip("qkv", leaves(q, k, v, requires_grad=False), strict=True))
    for name in needs_grad:
        triton_in[name].requires_grad_(True)
        ref_in[name].requires_grad_(True)
    out = cross_attention(*triton_in.values(), impl="triton")
    expected = cross_attention_reference(*ref_in.values())
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    for name in "qkv":
        if name in needs_grad:
            assert_close(triton_in[name].grad, ref_in[name].grad, 1e-5, 1e-5, f"d{name}")
        else:
            assert triton_in[name].grad is None


def test_cross_attention_saves_no_attention_matrix(device):
    B, H, N, M, D = 1, 2, 67, 71, 16
    q, k, v = leaves(*_qkv((B, H, N, M, D), torch.float32, device))
    out = CrossAttentionFunction.apply(q, k, v, None)
    saved = out.grad_fn.saved_tensors
    assert saved, "nothing saved for backward"
    for t in saved:
        assert t.numel() not in (N * M, B * H * N * M), f"saved {tuple(t.shape)} is N×M-sized"
        assert not {N, M} <= set(t.shape), f"saved {tuple(t.shape)} spans N and M"
    # Linear memory: at this size everything saved is smaller than the attention matrix.
    assert sum(t.numel() for t in saved) < B * H * N * M


def test_cross_attention_saves_fp32_row_logsumexp(device):
    B, H, N, M, D = 2, 1, 23, 40, 32
    q, k, v = leaves(*_qkv((B, H, N, M, D), torch.float16, device))
    out = CrossAttentionFunction.apply(q, k, v, None)
    row_stats = [t for t in out.grad_fn.saved_tensors if t.shape == (B, H, N)]
    assert len(row_stats) == 1 and row_stats[0].dtype == torch.float32
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(D)  # (B, H, N, M)
    assert_close(row_stats[0], torch.logsumexp(scores, dim=-1), 1e-4, 1e-5, "lse")


def test_cross_attention_reference_gradcheck_fp64():
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: cross_attention_reference(q, k, v, 0.7), (q, k, v)
    )


def _autocast_fp16_works(device: str) -> bool:
    try:
        with torch.autocast(device, dtype=torch.float16):
            probe = torch.ones(2, 2, device=device)
            return (probe @ probe).dtype == torch.float16
    except (RuntimeError, ValueError):
        return False


def test_cross_attention_dispatcher_under_autocast_matches_eager(device):
    if not _autocast_fp16_works(device):
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast on {device}")
    q, k, v = _qkv((1, 2, 17, 20, 16), torch.float32, device)
    tq, tk, tv = leaves(q, k, v)
    eq, ek, ev = leaves(q, k, v)
    with torch.autocast(device, dtype=torch.float16):
        out = cross_attention(tq, tk, tv, impl="triton")
        expected = cross_attention(eq, ek, ev, impl="eager")
    assert out.dtype == expected.dtype == torch.float16
    assert_close(out, expected, 5e-3, 5e-3, "out")
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    for name, got, want in (("dq", tq.grad, eq.grad), ("dk", tk.grad, ek.grad),
                            ("dv", tv.grad, ev.grad)):  # fmt: skip
        assert got.dtype == torch.float32, f"{name} reached the fp32 leaf as {got.dtype}"
        assert_close(got, want, 5e-3, 5e-3, name)


@pytest.mark.parametrize(
    "q_shape, k_shape, v_shape, match",
    [
        pytest.param((2, 2, 5, 16), (1, 2, 7, 16), (1, 2, 7, 16), r"k must be .*\(1, 2, 7, 16\)",
                     id="k-batch"),
        pytest.param((2, 2, 5, 16), (2, 3, 7, 16), (2, 3, 7, 16), r"k must be .*\(2, 3, 7, 16\)",
                     id="k-heads"),
        pytest.param((2, 2, 5, 16), (2, 2, 7, 8), (2, 2, 7, 16), r"k must be .*\(2, 2, 7, 8\)",
                     id="k-head-dim"),
        pytest.param((2, 2, 5, 16), (2, 2, 7, 16), (2, 2, 6, 16), r"v must be .*\(2, 2, 6, 16\)",
                     id="v-length"),
        pytest.param((2, 2, 5, 16), (2, 2, 7, 16), (2, 2, 7, 32), r"v must be .*\(2, 2, 7, 32\)",
                     id="v-head-dim"),
        pytest.param((2, 5, 16), (2, 2, 7, 16), (2, 2, 7, 16), r"q must be .*\(2, 5, 16\)",
                     id="q-rank"),
        pytest.param((1, 1, 5, 264), (1, 1, 7, 264), (1, 1, 7, 264), r"head dim D=264",
                     id="head-dim-too-large"),
    ],
)  # fmt: skip
def test_cross_attention_mismatched_shapes_raise(q_shape, k_shape, v_shape, match, device):
    q = torch.randn(q_shape, device=device)
    k = torch.randn(k_shape, device=device)
    v = torch.randn(v_shape, device=device)
    with pytest.raises(ValueError, match=match):
        cross_attention(q, k, v, impl="triton")


@pytest.mark.parametrize(
    "dtypes, match",
    [
        pytest.param((torch.float32, torch.float16, torch.float32), "k has dtype", id="k-fp16"),
        pytest.param((torch.float16, torch.float16, torch.float32), "v has dtype", id="v-fp32"),
        pytest.param((torch.float64,) * 3, "q has dtype", id="fp64"),
    ],
)
def test_cross_attention_unsupported_dtypes_raise(dtypes, match, device):
    q, k, v = (torch.randn(1, 1, 4, 16, dtype=dt, device=device) for dt in dtypes)
    with pytest.raises(ValueError, match=match):
        cross_attention(q, k, v, impl="triton")
