"""Fused CBAM: channel then spatial gating (Woo et al., ECCV 2018), Cao et al. §III-B.1.

For x [B, C, H, W] (P = H·W positions, flattened row-major: p = h·W + w):

    ca = σ(MLP(avgpool x) + MLP(maxpool x))          (B, C), MLP C -> C/r -> C with a ReLU
    x1 = x · ca_c
    s  = [mean_c x1, max_c x1]                       (B, 2, H, W)
    sa = σ(conv2d(s, conv_w, conv_b, padding=k//2))  (B, 1, H, W)
    y  = x1 · sa_p = x · ca_c · sa_p

The spec is `kernels.reference.cbam_reference`; its channel MLP `cbam_mlp` is reused here.

Fused plan. Only the passes that touch a full [B, C, P] tensor are Triton kernels; the tiny
MLP (B×C) and the k×k conv on the 2-channel map (B×2×P) stay in torch, in fp32.

Forward, three reads of x and one write of y:
    1. `_cbam_pool_kernel`: per (b, channel block), loop over P: avg_c, max_c and the position
       attaining max_c. torch: ca.
    2. `_cbam_channel_reduce_kernel`: per (b, position block), loop over C: mean and max of
       x·ca_c over c and the channel attaining the max. torch: sa.
    3. `_cbam_gate_kernel`: y = x·ca_c·sa_p, rounded once to x's dtype.
Saved for backward: x (the only [B, C, P] tensor; x1 and y are never stored), the params and
small statistics: avg, max, ca, argmax over P (B×C), s, sa, argmax over C (B×P).

Backward, two reads of x, two reads of dy and one write of dx (formulas in each kernel):
    B1. `_cbam_bwd_spatial_kernel`: dsa_p and per-position-block partial sums of dy·x·sa_p.
        torch: conv backward -> ds_mean, ds_max, dconv_w, dconv_b.
    B2. `_cbam_bwd_channel_kernel`: the rest of dca_c. torch: MLP backward -> d_avg, d_max
        and dw1, db1, dw2, db2.
    B3. `_cbam_bwd_input_kernel`: dx, elementwise, from dy and the small tensors (no x).
No atomics: cross-block sums go through buffers reduced by torch, so gradients are
deterministic.

Ties in a max: the whole gradient goes to the first index attaining it (lowest p = h·W + w
for max over H·W, lowest c for max over C), as `torch.argmax` picks it. `torch.amax`, used
by the reference, splits the gradient evenly among ties instead. Both are valid subgradients
and agree whenever the max is unique (almost surely for continuous inputs; not for, e.g., a
channel that a ReLU zeroed everywhere).

Dtypes: x is float32, float16 or bfloat16 and y has x's dtype. The params may be any
floating dtype, independently of x (fp32 master weights with an fp16 x are fine): every
statistic, the MLP and the conv run in fp32, and each gradient comes back in its input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from ._common import autotune_configs, check_rank
from .reference import cbam_mlp

# ----------------------------------------------------------------------------------------
# Block sizes. Positions are the contiguous axis, so position blocks are the wide ones.
# Under the interpreter one small config makes the tests' odd shapes span several blocks.

_INTERPRETED = {"BLOCK_C": 16, "BLOCK_P": 32, "num_warps": 1}

# Kernels that loop over positions for a block of channels (pool, B2).
_CHANNEL_BLOCK_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_C": 4, "BLOCK_P": 512, "num_warps": 4},
        {"BLOCK_C": 8, "BLOCK_P": 256, "num_warps": 4},
        {"BLOCK_C": 16, "BLOCK_P": 128, "num_warps": 4},
    ],
    interpreted=_INTERPRETED,
)
# Kernels that loop over channels for a block of positions (channel reduce, B1).
_POSITION_BLOCK_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_C": 8, "BLOCK_P": 256, "num_warps": 4},
        {"BLOCK_C": 16, "BLOCK_P": 128, "num_warps": 4},
        {"BLOCK_C": 32, "BLOCK_P": 64, "num_warps": 4},
    ],
    interpreted=_INTERPRETED,
)
# Elementwise kernels (gate, B3).
_TILE_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_C": 8, "BLOCK_P": 256, "num_warps": 4},
        {"BLOCK_C": 16, "BLOCK_P": 128, "num_warps": 4},
    ],
    interpreted=_INTERPRETED,
)
_KEY = ["C", "HW"]

# ----------------------------------------------------------------------------------------
# Forward kernels. x, y, dy and dx share one contiguous [B, C, H·W] layout (strides
# stride_xb, stride_xc, 1); the small fp32 tensors are contiguous too.


@triton.autotune(configs=_CHANNEL_BLOCK_CONFIGS, key=_KEY)
@triton.jit
def _cbam_pool_kernel(
    X_ptr,
    AVG_ptr,
    MAX_ptr,
    ARGMAX_P_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """avg_c = Σ_p x_cp / P, max_c = max_p x_cp, argmax_p(c) = first p attaining max_c (fp32).

    The reference's `x.mean(dim=(2, 3))` and `x.amax(dim=(2, 3))`; outputs are [B, C].
    """
    pid_c = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_rows = X_ptr + pid_b.to(tl.int64) * stride_xb + offs_c[:, None] * stride_xc

    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    best = tl.full([BLOCK_C], float("-inf"), dtype=tl.float32)
    best_p = tl.zeros([BLOCK_C], dtype=tl.int32)
    for p0 in range(0, HW, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask = mask_c[:, None] & (offs_p[None, :] < HW)
        x = tl.load(x_rows + offs_p[None, :], mask=mask, other=0.0).to(tl.float32)
        total += tl.sum(x, axis=1)
        x = tl.where(mask, x, float("-inf"))
        block_max = tl.max(x, axis=1)
        block_p = tl.min(tl.where(x == block_max[:, None], offs_p[None, :], HW), axis=1)
        # Strictly greater: an equal max in a later block keeps the earlier (lower) index.
        best_p = tl.where(block_max > best, block_p, best_p)
        best = tl.maximum(best, block_max)

    out = pid_b * C + offs_c
    tl.store(AVG_ptr + out, total / HW, mask=mask_c)
    tl.store(MAX_ptr + out, best, mask=mask_c)
    tl.store(ARGMAX_P_ptr + out, best_p, mask=mask_c)


@triton.autotune(configs=_POSITION_BLOCK_CONFIGS, key=_KEY)
@triton.jit
def _cbam_channel_reduce_kernel(
    X_ptr,
    CA_ptr,
    S_ptr,
    ARGMAX_C_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """s_mean_p = Σ_c x_cp·ca_c / C, s_max_p = max_c x_cp·ca_c, argmax_c(p) = first c at the max.

    The reference's `x1.mean(dim=1)` and `x1.amax(dim=1)` with x1 = x·ca formed in fp32 and
    never stored. S is [B, 2, H·W] (mean, max); ARGMAX_C is [B, H·W].
    """
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    x_base = X_ptr + pid_b.to(tl.int64) * stride_xb

    total = tl.zeros([BLOCK_P], dtype=tl.float32)
    best = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    best_c = tl.zeros([BLOCK_P], dtype=tl.int32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        mask = mask_c[:, None] & mask_p[None, :]
        x = tl.load(x_base + offs_c[:, None] * stride_xc + offs_p[None, :], mask=mask, other=0.0)
        ca = tl.load(CA_ptr + pid_b * C + offs_c, mask=mask_c, other=0.0)
        x1 = x.to(tl.float32) * ca[:, None]
        total += tl.sum(x1, axis=0)
        x1 = tl.where(mask, x1, float("-inf"))
        block_max = tl.max(x1, axis=0)
        block_c = tl.min(tl.where(x1 == block_max[None, :], offs_c[:, None], C), axis=0)
        best_c = tl.where(block_max > best, block_c, best_c)
        best = tl.maximum(best, block_max)

    s_base = S_ptr + pid_b.to(tl.int64) * 2 * HW
    tl.store(s_base + offs_p, total / C, mask=mask_p)
    tl.store(s_base + HW + offs_p, best, mask=mask_p)
    tl.store(ARGMAX_C_ptr + pid_b.to(tl.int64) * HW + offs_p, best_c, mask=mask_p)


@triton.autotune(configs=_TILE_CONFIGS, key=_KEY)
@triton.jit
def _cbam_gate_kernel(
    X_ptr,
    CA_ptr,
    SA_ptr,
    Y_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """y_cp = x_cp·ca_c·sa_p in fp32, rounded once to y's dtype (the reference's x1·sa)."""
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask_p = offs_p < HW
    mask = mask_c[:, None] & mask_p[None, :]
    tile = pid_b.to(tl.int64) * stride_xb + offs_c[:, None] * stride_xc + offs_p[None, :]

    x = tl.load(X_ptr + tile, mask=mask, other=0.0).to(tl.float32)
    ca = tl.load(CA_ptr + pid_b * C + offs_c, mask=mask_c, other=0.0)
    sa = tl.load(SA_ptr + pid_b.to(tl.int64) * HW + offs_p, mask=mask_p, other=0.0)
    y = x * ca[:, None] * sa[None, :]
    tl.store(Y_ptr + tile, y.to(Y_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------
# Backward kernels. With g = dy and y = x·ca_c·sa_p, the gradient reaches x along four paths:
#   directly:            g·ca_c·sa_p
#   through sa and s:    dx1_cp = g·sa_p + ds_mean_p/C + ds_max_p·[c = argmax_c(p)], times ca_c
#   through avgpool:     d_avg_c / P
#   through maxpool:     d_max_c·[p = argmax_p(c)]
# where ds = conv backward of dz = dsa·sa(1−sa), dsa_p = Σ_c g·x·ca_c, and (d_avg, d_max) =
# MLP backward of da = dca·ca(1−ca), dca_c = Σ_p x_cp·dx1_cp.


@triton.autotune(configs=_POSITION_BLOCK_CONFIGS, key=_KEY, reset_to_zero=["PART_ptr"])
@triton.jit
def _cbam_bwd_spatial_kernel(
    X_ptr,
    DY_ptr,
    CA_ptr,
    SA_ptr,
    DSA_ptr,
    PART_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    stride_part_b,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """dsa_p = Σ_c dy_cp·x_cp·ca_c, and PART[b, j, c] = Σ_{p in block j} dy_cp·x_cp·sa_p.

    PART holds the g·sa_p term of dca_c = Σ_p x_cp·dx1_cp per position block (summed over j
    in torch), so B2 need not read dy. Its rows past this config's block count stay zero.
    """
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    batch = pid_b.to(tl.int64) * stride_xb
    sa = tl.load(SA_ptr + pid_b.to(tl.int64) * HW + offs_p, mask=mask_p, other=0.0)
    part_row = PART_ptr + pid_b.to(tl.int64) * stride_part_b + pid_p * C

    dsa = tl.zeros([BLOCK_P], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        mask = mask_c[:, None] & mask_p[None, :]
        tile = batch + offs_c[:, None] * stride_xc + offs_p[None, :]
        x = tl.load(X_ptr + tile, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(DY_ptr + tile, mask=mask, other=0.0).to(tl.float32)
        ca = tl.load(CA_ptr + pid_b * C + offs_c, mask=mask_c, other=0.0)
        gx = g * x
        dsa += tl.sum(gx * ca[:, None], axis=0)
        tl.store(part_row + offs_c, tl.sum(gx * sa[None, :], axis=1), mask=mask_c)

    tl.store(DSA_ptr + pid_b.to(tl.int64) * HW + offs_p, dsa, mask=mask_p)


@triton.autotune(configs=_CHANNEL_BLOCK_CONFIGS, key=_KEY)
@triton.jit
def _cbam_bwd_channel_kernel(
    X_ptr,
    DS_ptr,
    ARGMAX_C_ptr,
    DCA_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """dca_c (partial) = Σ_p x_cp·(ds_mean_p/C + ds_max_p·[c = argmax_c(p)]).

    The mean and max terms of dca_c = Σ_p x_cp·dx1_cp; the dy·sa term comes from B1's PART.
    DS is [B, 2, H·W] (d mean, d max) from the conv backward.
    """
    pid_c = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_rows = X_ptr + pid_b.to(tl.int64) * stride_xb + offs_c[:, None] * stride_xc
    ds_base = DS_ptr + pid_b.to(tl.int64) * 2 * HW
    argmax_base = ARGMAX_C_ptr + pid_b.to(tl.int64) * HW

    dca = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(0, HW, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask_p = offs_p < HW
        mask = mask_c[:, None] & mask_p[None, :]
        x = tl.load(x_rows + offs_p[None, :], mask=mask, other=0.0).to(tl.float32)
        ds_mean = tl.load(ds_base + offs_p, mask=mask_p, other=0.0)
        ds_max = tl.load(ds_base + HW + offs_p, mask=mask_p, other=0.0)
        argmax_c = tl.load(argmax_base + offs_p, mask=mask_p, other=-1)
        dx1 = ds_mean[None, :] / C + tl.where(
            offs_c[:, None] == argmax_c[None, :], ds_max[None, :], 0.0
        )
        dca += tl.sum(x * dx1, axis=1)

    tl.store(DCA_ptr + pid_b * C + offs_c, dca, mask=mask_c)


@triton.autotune(configs=_TILE_CONFIGS, key=_KEY)
@triton.jit
def _cbam_bwd_input_kernel(
    DY_ptr,
    CA_ptr,
    SA_ptr,
    DS_ptr,
    ARGMAX_C_ptr,
    DAVG_ptr,
    DMAX_ptr,
    ARGMAX_P_ptr,
    DX_ptr,
    C,
    HW,
    stride_xb,
    stride_xc,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """dx_cp = ca_c·(dy_cp·sa_p + ds_mean_p/C + ds_max_p·[c = argmax_c(p)])
             + d_avg_c/P + d_max_c·[p = argmax_p(c)].

    Elementwise over [B, C, H·W]; reads dy and small tensors only, never x.
    """
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask_p = offs_p < HW
    mask = mask_c[:, None] & mask_p[None, :]
    tile = pid_b.to(tl.int64) * stride_xb + offs_c[:, None] * stride_xc + offs_p[None, :]
    per_c = pid_b * C + offs_c
    per_p = pid_b.to(tl.int64) * HW + offs_p
    ds_base = DS_ptr + pid_b.to(tl.int64) * 2 * HW

    g = tl.load(DY_ptr + tile, mask=mask, other=0.0).to(tl.float32)
    ca = tl.load(CA_ptr + per_c, mask=mask_c, other=0.0)
    d_avg = tl.load(DAVG_ptr + per_c, mask=mask_c, other=0.0)
    d_max = tl.load(DMAX_ptr + per_c, mask=mask_c, other=0.0)
    argmax_p = tl.load(ARGMAX_P_ptr + per_c, mask=mask_c, other=-1)
    sa = tl.load(SA_ptr + per_p, mask=mask_p, other=0.0)
    ds_mean = tl.load(ds_base + offs_p, mask=mask_p, other=0.0)
    ds_max = tl.load(ds_base + HW + offs_p, mask=mask_p, other=0.0)
    argmax_c = tl.load(ARGMAX_C_ptr + per_p, mask=mask_p, other=-1)

    dx1 = g * sa[None, :] + ds_mean[None, :] / C
    dx1 += tl.where(offs_c[:, None] == argmax_c[None, :], ds_max[None, :], 0.0)
    dx = dx1 * ca[:, None] + d_avg[:, None] / HW
    dx += tl.where(offs_p[None, :] == argmax_p[:, None], d_max[:, None], 0.0)
    tl.store(DX_ptr + tile, dx.to(DX_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------
# autograd.Function

_X_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_inputs(x, w1, b1, w2, b2, conv_w, conv_b) -> None:
    """Raise a ValueError naming the first tensor whose shape or dtype does not fit x."""
    check_rank("x", x, 4, "[B, C, H, W]")
    if x.dtype not in _X_DTYPES:
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    C = x.shape[1]
    if w1.dim() != 2 or w1.shape[1] != C or w1.shape[0] == 0:
        raise ValueError(f"w1 must be [C/r, C] with C={C}, got shape {tuple(w1.shape)}")
    Cr = w1.shape[0]
    for name, t, shape, layout in (
        ("b1", b1, (Cr,), "[C/r]"),
        ("w2", w2, (C, Cr), "[C, C/r]"),
        ("b2", b2, (C,), "[C]"),
        ("conv_b", conv_b, (1,), "[1]"),
    ):
        if tuple(t.shape) != shape:
            raise ValueError(
                f"{name} must be {layout} = {list(shape)} (C={C}, C/r={Cr}), "
                f"got shape {tuple(t.shape)}"
            )
    k = conv_w.shape[-1] if conv_w.dim() == 4 else 0
    if conv_w.dim() != 4 or tuple(conv_w.shape[:3]) != (1, 2, k) or k % 2 == 0:
        raise ValueError(f"conv_w must be [1, 2, k, k] with k odd, got shape {tuple(conv_w.shape)}")
    params = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "conv_w": conv_w, "conv_b": conv_b}
    for name, t in params.items():
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def _fp32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.detach().float() for t in tensors)


def _smallest_block_p(kernel) -> int:
    return min(config.kwargs["BLOCK_P"] for config in kernel.configs)


class CBAMFunction(torch.autograd.Function):
    """CBAM forward in three passes over x, backward in three (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, conv_w, conv_b):
        _check_inputs(x, w1, b1, w2, b2, conv_w, conv_b)
        x = x.contiguous()
        B, C, H, W = x.shape
        HW = H * W
        pad = conv_w.shape[-1] // 2
        f32 = dict(device=x.device, dtype=torch.float32)
        strides = (x.stride(0), x.stride(1))

        avg = torch.empty(B, C, **f32)
        mx = torch.empty(B, C, **f32)
        argmax_p = torch.empty(B, C, device=x.device, dtype=torch.int32)
        grid = lambda meta: (triton.cdiv(C, meta["BLOCK_C"]), B)  # noqa: E731
        _cbam_pool_kernel[grid](x, avg, mx, argmax_p, C, HW, *strides)

        with torch.autocast(x.device.type, enabled=False):
            mlp = _fp32(w1, b1, w2, b2)
            ca = torch.sigmoid(cbam_mlp(avg, *mlp) + cbam_mlp(mx, *mlp)).contiguous()  # (B, C)

        s = torch.empty(B, 2, HW, **f32)
        argmax_c = torch.empty(B, HW, device=x.device, dtype=torch.int32)
        grid = lambda meta: (triton.cdiv(HW, meta["BLOCK_P"]), B)  # noqa: E731
        _cbam_channel_reduce_kernel[grid](x, ca, s, argmax_c, C, HW, *strides)

        with torch.autocast(x.device.type, enabled=False):
            conv_w32, conv_b32 = _fp32(conv_w, conv_b)
            sa = torch.sigmoid(F.conv2d(s.view(B, 2, H, W), conv_w32, conv_b32, padding=pad))
            sa = sa.contiguous()  # (B, 1, H, W)

        y = torch.empty_like(x)
        grid = lambda meta: (  # noqa: E731
            triton.cdiv(HW, meta["BLOCK_P"]),
            triton.cdiv(C, meta["BLOCK_C"]),
            B,
        )
        _cbam_gate_kernel[grid](x, ca, sa, y, C, HW, *strides)

        ctx.save_for_backward(
            x, w1, b1, w2, b2, conv_w, conv_b, avg, mx, argmax_p, ca, s, argmax_c, sa
        )
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, w1, b1, w2, b2, conv_w, conv_b, avg, mx, argmax_p, ca, s, argmax_c, sa = (
            ctx.saved_tensors
        )
        need_x = ctx.needs_input_grad[0]
        need_mlp = any(ctx.needs_input_grad[1:5])
        need_conv = any(ctx.needs_input_grad[5:7])
        B, C, H, W = x.shape
        HW = H * W
        pad = conv_w.shape[-1] // 2
        f32 = dict(device=x.device, dtype=torch.float32)
        strides = (x.stride(0), x.stride(1))
        dy = dy.contiguous()
        grads = [None] * 7

        # B1. PART is zero-filled and sized for the smallest BLOCK_P any config may pick, and
        # autotune re-zeroes it after benchmarking, so unused rows always sum to zero.
        dsa = torch.empty(B, HW, **f32)
        rows = triton.cdiv(HW, _smallest_block_p(_cbam_bwd_spatial_kernel))
        part = torch.zeros(B, rows, C, **f32)  # (B, position blocks, C)
        grid = lambda meta: (triton.cdiv(HW, meta["BLOCK_P"]), B)  # noqa: E731
        _cbam_bwd_spatial_kernel[grid](
            x, dy, ca, sa, dsa, part, C, HW, *strides, part.stride(0)
        )

        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            # Conv backward on the 2-channel map: dz = dsa·σ'(z) = dsa·sa(1−sa).
            dz = dsa.view(B, 1, H, W) * sa * (1.0 - sa)
            s_leaf, conv_w32, conv_b32 = (
                t.requires_grad_(True) for t in _fp32(s.view(B, 2, H, W), conv_w, conv_b)
            )
            z = F.conv2d(s_leaf, conv_w32, conv_b32, padding=pad)
            ds, dconv_w, dconv_b = torch.autograd.grad(z, (s_leaf, conv_w32, conv_b32), dz)
        if need_conv:
            grads[5] = dconv_w.to(conv_w.dtype)
            grads[6] = dconv_b.to(conv_b.dtype)
        if not (need_x or need_mlp):
            return tuple(grads)

        # B2, then da = dca·σ'(a) = dca·ca(1−ca) and the MLP backward for both pooled inputs.
        ds = ds.contiguous()  # (B, 2, H, W): d mean, d max
        dca = torch.empty(B, C, **f32)
        grid = lambda meta: (triton.cdiv(C, meta["BLOCK_C"]), B)  # noqa: E731
        _cbam_bwd_channel_kernel[grid](x, ds, argmax_c, dca, C, HW, *strides)
        dca += part.sum(dim=1)
        da = dca * ca * (1.0 - ca)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            leaves = tuple(t.requires_grad_(True) for t in _fp32(avg, mx, w1, b1, w2, b2))
            avg_leaf, mx_leaf, *mlp = leaves
            logits = cbam_mlp(avg_leaf, *mlp) + cbam_mlp(mx_leaf, *mlp)
            d_avg, d_max, dw1, db1, dw2, db2 = torch.autograd.grad(logits, leaves, da)
        pairs = zip((dw1, db1, dw2, db2), (w1, b1, w2, b2), strict=True)
        for i, (grad, param) in enumerate(pairs, start=1):
            if ctx.needs_input_grad[i]:
                grads[i] = grad.to(param.dtype)

        if need_x:
            dx = torch.empty_like(x)
            grid = lambda meta: (  # noqa: E731
                triton.cdiv(HW, meta["BLOCK_P"]),
                triton.cdiv(C, meta["BLOCK_C"]),
                B,
            )
            _cbam_bwd_input_kernel[grid](
                dy, ca, sa, ds, argmax_c, d_avg.contiguous(), d_max.contiguous(), argmax_p, dx,
                C, HW, *strides,
            )
            grads[0] = dx
        return tuple(grads)
