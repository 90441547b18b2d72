"""kernels.cbam (Triton, fused) against the eager spec kernels.cbam_reference.

Each case clones one set of inputs into two groups of leaves, runs the Triton op in the
test dtype and the reference in fp32 on fp32 copies, feeds both the same upstream gradient,
and compares the output and the gradients of x and all six params.
"""

from __future__ import annotations

import re

import pytest
import torch

from kernels import cbam
from kernels.cbam_triton import CBAMFunction
from kernels.reference import cbam_reference
from tests.kernels.utils import BF16, DTYPES, assert_close, fp32_leaves, leaves

NAMES = ("x", "w1", "b1", "w2", "b2", "conv_w", "conv_b")

# (B, C, H, W, r, k). Interpreter blocks are 16 channels × 32 positions.
SHAPES = [
    pytest.param((1, 24, 7, 9, 4, 7), id="B1-C24-H7-W9-r4-k7"),
    pytest.param((2, 40, 7, 9, 8, 3), id="B2-C40-H7-W9-r8-k3"),
    pytest.param((2, 16, 4, 8, 4, 3), id="B2-C16-H4-W8-r4-k3"),
    pytest.param((3, 8, 1, 1, 2, 7), id="B3-C8-H1-W1-r2-k7"),
]


def make_inputs(shape, device, dtype=torch.float32, param_dtype=None):
    """x ~ N(0, 1) and params scaled so that both gates stay away from saturation."""
    B, C, H, W, r, k = shape
    Cr = C // r
    x = torch.randn(B, C, H, W, device=device)
    params = (
        torch.randn(Cr, C, device=device) / C**0.5,
        0.1 * torch.randn(Cr, device=device),
        torch.randn(C, Cr, device=device) / Cr**0.5,
        0.1 * torch.randn(C, device=device),
        torch.randn(1, 2, k, k, device=device) / k,
        0.1 * torch.randn(1, device=device),
    )
    param_dtype = dtype if param_dtype is None else param_dtype
    return x.to(dtype), tuple(p.to(param_dtype) for p in params)


def run_both(x, params):
    """Triton op on leaf copies and the fp32 reference on fp32 leaf copies, same upstream grad."""
    ours = leaves(x, *params)
    ref = fp32_leaves(x, *params)
    y = cbam(*ours, impl="triton")
    y_ref = cbam_reference(*ref)
    dy = torch.randn_like(y_ref)
    y.backward(dy.to(y.dtype))
    y_ref.backward(dy.to(y.dtype).float())
    return y, y_ref, ours, ref


def assert_matches(y, y_ref, ours, ref, atol, rtol):
    assert y.dtype == ours[0].dtype
    assert_close(y, y_ref, atol, rtol, "y")
    for name, a, b in zip(NAMES, ours, ref, strict=True):
        assert a.grad is not None, f"{name}: gradient missing"
        assert a.grad.dtype == a.dtype, f"{name}: grad dtype {a.grad.dtype} != {a.dtype}"
        assert_close(a.grad, b.grad, atol, rtol, f"d{name}")


@pytest.mark.parametrize("dtype, atol, rtol", [*DTYPES, BF16])
@pytest.mark.parametrize("shape", SHAPES)
def test_cbam_matches_reference_forward_and_grads(shape, dtype, atol, rtol, device):
    x, params = make_inputs(shape, device, dtype)
    assert_matches(*run_both(x, params), atol, rtol)


def test_cbam_fp16_input_with_fp32_params_matches_reference(device):
    """Params may have another dtype than x (fp32 master weights); grads keep each dtype."""
    x, params = make_inputs((2, 24, 7, 9, 4, 3), device, torch.float16, param_dtype=torch.float32)
    assert_matches(*run_both(x, params), 2e-3, 2e-3)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_cbam_non_contiguous_input_matches_reference(layout, device):
    B, C, H, W, r, k = 2, 24, 7, 9, 4, 3
    _, params = make_inputs((B, C, H, W, r, k), device)
    if layout == "channels_last":
        x = torch.randn(B, H, W, C, device=device).permute(0, 3, 1, 2)
    else:
        x = torch.randn(B, 2 * C, H, W + 3, device=device)[:, ::2, :, 1 : W + 1]
    assert not x.is_contiguous()
    assert_matches(*run_both(x, params), 1e-5, 1e-5)


@pytest.mark.parametrize(
    "x_grad, param_grads", [(True, False), (False, True)], ids=["x-only", "params-only"]
)
def test_cbam_honours_needs_input_grad(x_grad, param_grads, device):
    x, params = make_inputs((2, 24, 7, 9, 4, 3), device)
    ours = (*leaves(x, requires_grad=x_grad), *leaves(*params, requires_grad=param_grads))
    ref = fp32_leaves(x, *params)
    dy = torch.randn_like(x)
    cbam(*ours, impl="triton").backward(dy)
    cbam_reference(*ref).backward(dy)
    for name, a, b in zip(NAMES, ours, ref, strict=True):
        if a.requires_grad:
            assert_close(a.grad, b.grad, 1e-5, 1e-5, f"d{name}")
        else:
            assert a.grad is None, f"{name}: got a gradient it did not ask for"


def test_cbam_spatial_max_ties_send_gradient_to_first_position(device):
    """A channel constant over H·W ties its max-pool everywhere: torch.amax splits that
    gradient evenly, the kernel sends it all to position 0. Everything else must agree."""
    x, params = make_inputs((2, 24, 7, 9, 4, 3), device)
    x[:, 0] = 0.5
    y, y_ref, ours, ref = run_both(x, params)
    assert_close(y, y_ref, 1e-5, 1e-5, "y")
    for name, a, b in zip(NAMES[1:], ours[1:], ref[1:], strict=True):
        assert_close(a.grad, b.grad, 1e-5, 1e-5, f"d{name}")
    dx, dx_ref = ours[0].grad, ref[0].grad
    assert_close(dx[:, 1:], dx_ref[:, 1:], 1e-5, 1e-5, "dx (untied channels)")
    assert_close(dx[:, 0].sum((1, 2)), dx_ref[:, 0].sum((1, 2)), 1e-5, 1e-5, "Σ dx (tied channel)")
    # Only position 0 of the tied channel differs from the even split.
    diff = (dx[:, 0] - dx_ref[:, 0]).flatten(1)
    rest = diff[:, 1:]
    assert_close(rest, rest.mean(1, keepdim=True).expand_as(rest), 1e-5, 1e-5, "dx tie offset")
    assert diff[:, 0].abs().min() > 1e-4


def test_cbam_reference_gradcheck_fp64():
    x, params = make_inputs((1, 4, 3, 3, 2, 3), "cpu", torch.float64)
    inputs = leaves(x, *params)
    assert torch.autograd.gradcheck(cbam_reference, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["x-fp32", "x-fp16"])
def test_cbam_output_dtype_under_autocast_matches_reference(dtype, device):
    x, params = make_inputs((2, 24, 7, 9, 4, 3), device, dtype, param_dtype=torch.float32)
    with torch.autocast(torch.device(device).type, dtype=torch.float16):
        y = cbam(x, *params, impl="triton")
        y_ref = cbam_reference(x, *params)
    assert y.dtype == y_ref.dtype == dtype
    # The reference's MLP and conv run in fp16 under autocast; the kernel's in fp32.
    assert_close(y, y_ref, 1e-2, 1e-2, "y")


@pytest.mark.parametrize(
    "name, bad_shape",
    [
        ("w1", (24, 6)),
        ("b1", (24,)),
        ("w2", (6, 24)),
        ("b2", (6,)),
        ("conv_w", (1, 2, 4, 4)),
        ("conv_w", (1, 1, 3, 3)),
        ("conv_b", (2,)),
    ],
)
def test_cbam_rejects_bad_param_shape(name, bad_shape, device):
    x, params = make_inputs((2, 24, 7, 9, 4, 3), device)
    args = dict(zip(NAMES, (x, *params), strict=True))
    args[name] = torch.zeros(bad_shape, device=device)
    with pytest.raises(ValueError, match=rf"^{name} must be .*{re.escape(str(bad_shape))}"):
        cbam(*args.values(), impl="triton")


def test_cbam_saves_no_full_size_tensor_but_x(device):
    x, params = make_inputs((2, 8, 5, 6, 2, 3), device)
    ours = leaves(x, *params)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = CBAMFunction.apply(*ours)
    assert saved, "nothing was saved for backward"
    full = [t for t in saved if t.numel() >= x.numel()]
    assert len(full) == 1 and full[0].data_ptr() == ours[0].data_ptr(), (
        f"full-size saved tensors: {[(tuple(t.shape), t.dtype) for t in full]}"
    )
    y.sum().backward()
