"""Stop-gradient attention (SGA) as one fused Triton op, forward and backward.

SGA is the attention of Li et al., "Eliminating Gradient Conflict in Reference-based Line-Art
Colorization" (ECCV 2022), used twice (cross, then self) by Cao et al. §III-B.2:

    A = colnorm(softmax(x yᵀ, dim=-1)),  colnorm(A)_ij = A_ij / max(Σ_i A_ij, 1e-12)
    z = A v,  with A computed without gradient, so dv = Aᵀ dz and dx = dy = 0.

The N×M matrix is never written to global memory. Three forward passes recompute x yᵀ
tile by tile:
  1. row statistics: the log-sum-exp of every row of x yᵀ (online softmax over M);
  2. column sums: cs_j = Σ_i exp(s_ij − lse_i), i.e. the column sums of the row softmax;
  3. output: z_i = Σ_j exp(s_ij − lse_i) / max(cs_j, eps) · v_j.
Backward is one pass: dv_j = 1/max(cs_j, eps) · Σ_i exp(s_ij − lse_i) dz_i.
Only lse [B, N] and 1/max(cs, eps) [B, M] are saved beside x and y, so memory is
O((N + M)·C) instead of O(N·M). Scores accumulate in fp32 whatever the input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import autotune_configs, dot_precision
from .reference import SGA_EPS

# exp(s) = exp2(s · log2 e): the kernels work in base 2 because exp2 is the native instruction.
LOG2E = tl.constexpr(1.4426950408889634)

_SCORE_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_N": 64, "BLOCK_M": 64, "BLOCK_C": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_N": 128, "BLOCK_M": 64, "BLOCK_C": 64, "num_warps": 8, "num_stages": 2},
        {"BLOCK_N": 64, "BLOCK_M": 128, "BLOCK_C": 64, "num_warps": 8, "num_stages": 2},
        {"BLOCK_N": 128, "BLOCK_M": 128, "BLOCK_C": 32, "num_warps": 8, "num_stages": 3},
    ],
    interpreted={"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_C": 16, "num_warps": 1},
)
_VALUE_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_N": 64, "BLOCK_M": 64, "BLOCK_C": 64, "BLOCK_CV": 64, "num_warps": 4},
        {"BLOCK_N": 128, "BLOCK_M": 64, "BLOCK_C": 64, "BLOCK_CV": 128, "num_warps": 8},
        {"BLOCK_N": 64, "BLOCK_M": 128, "BLOCK_C": 64, "BLOCK_CV": 128, "num_warps": 8},
        {"BLOCK_N": 128, "BLOCK_M": 128, "BLOCK_C": 32, "BLOCK_CV": 64, "num_warps": 8,
         "num_stages": 3},
    ],
    interpreted={"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_C": 16, "BLOCK_CV": 16, "num_warps": 1},
)


# ----------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _scores_tile(
    X_ptr, Y_ptr, offs_n, offs_m, N, M, C,
    stride_xn, stride_xc, stride_ym, stride_yc,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """s = x[offs_n] · y[offs_m]ᵀ · log2(e) in fp32, accumulated over C in BLOCK_C chunks."""
    s = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        x = tl.load(
            X_ptr + offs_n[:, None] * stride_xn + offs_c[None, :] * stride_xc,
            mask=(offs_n[:, None] < N) & (offs_c[None, :] < C), other=0.0,
        )
        y = tl.load(
            Y_ptr + offs_m[:, None] * stride_ym + offs_c[None, :] * stride_yc,
            mask=(offs_m[:, None] < M) & (offs_c[None, :] < C), other=0.0,
        )
        s += tl.dot(x, tl.trans(y), input_precision=DOT_PRECISION)
    return s * LOG2E  # scores in base 2 from here on, so exp2 gives exp


@triton.autotune(configs=_SCORE_CONFIGS, key=["N", "M", "C"])
@triton.jit
def _sga_row_stats_kernel(
    X_ptr, Y_ptr, LSE_ptr, N, M, C,
    stride_xb, stride_xn, stride_xc, stride_yb, stride_ym, stride_yc,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """lse2_i = log2 Σ_j exp2(s_ij) over all M keys (online softmax); row pass of the reference."""
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    X_ptr += b * stride_xb
    Y_ptr += b * stride_yb
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_i = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        s = _scores_tile(X_ptr, Y_ptr, offs_n, offs_m, N, M, C, stride_xn, stride_xc,
                         stride_ym, stride_yc, BLOCK_N, BLOCK_M, BLOCK_C, DOT_PRECISION)
        s = tl.where(offs_m[None, :] < M, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), axis=1)
        m_i = m_new
    tl.store(LSE_ptr + b * N + offs_n, m_i + tl.log2(l_i), mask=offs_n < N)


@triton.autotune(configs=_SCORE_CONFIGS, key=["N", "M", "C"])
@triton.jit
def _sga_col_sum_kernel(
    X_ptr, Y_ptr, LSE_ptr, CS_ptr, N, M, C,
    stride_xb, stride_xn, stride_xc, stride_yb, stride_ym, stride_yc,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """cs_j = Σ_i softmax(x yᵀ)_ij: the column sums the reference's F.normalize divides by."""
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    X_ptr += b * stride_xb
    Y_ptr += b * stride_yb
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cs = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        s = _scores_tile(X_ptr, Y_ptr, offs_n, offs_m, N, M, C, stride_xn, stride_xc,
                         stride_ym, stride_yc, BLOCK_N, BLOCK_M, BLOCK_C, DOT_PRECISION)
        lse = tl.load(LSE_ptr + b * N + offs_n, mask=offs_n < N, other=0.0)
        p = tl.where(offs_n[:, None] < N, tl.exp2(s - lse[:, None]), 0.0)
        cs += tl.sum(p, axis=0)
    tl.store(CS_ptr + b * M + offs_m, cs, mask=offs_m < M)


@triton.autotune(configs=_VALUE_CONFIGS, key=["N", "M", "C", "CV"])
@triton.jit
def _sga_out_kernel(
    X_ptr, Y_ptr, V_ptr, LSE_ptr, INV_CS_ptr, Z_ptr, N, M, C, CV,
    stride_xb, stride_xn, stride_xc, stride_yb, stride_ym, stride_yc,
    stride_vb, stride_vm, stride_vc, stride_zb, stride_zn, stride_zc,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_CV: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """z_i = Σ_j exp2(s_ij − lse2_i) · inv_cs_j · v_j: the reference's A @ v, one Cv tile."""
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    pid_cv = tl.program_id(2)
    X_ptr += b * stride_xb
    Y_ptr += b * stride_yb
    V_ptr += b * stride_vb
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_cv = pid_cv * BLOCK_CV + tl.arange(0, BLOCK_CV)
    lse = tl.load(LSE_ptr + b * N + offs_n, mask=offs_n < N, other=0.0)
    acc = tl.zeros((BLOCK_N, BLOCK_CV), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        s = _scores_tile(X_ptr, Y_ptr, offs_n, offs_m, N, M, C, stride_xn, stride_xc,
                         stride_ym, stride_yc, BLOCK_N, BLOCK_M, BLOCK_C, DOT_PRECISION)
        inv_cs = tl.load(INV_CS_ptr + b * M + offs_m, mask=offs_m < M, other=0.0)
        # A_ij ∈ [0, 1] (p_ij ≤ cs_j), so casting it to v's dtype for the tensor-core dot is safe.
        a = tl.exp2(s - lse[:, None]) * inv_cs[None, :]
        v = tl.load(
            V_ptr + offs_m[:, None] * stride_vm + offs_cv[None, :] * stride_vc,
            mask=(offs_m[:, None] < M) & (offs_cv[None, :] < CV), other=0.0,
        )
        acc += tl.dot(a.to(v.dtype), v, input_precision=DOT_PRECISION)
    tl.store(
        Z_ptr + b * stride_zb + offs_n[:, None] * stride_zn + offs_cv[None, :] * stride_zc,
        acc.to(Z_ptr.dtype.element_ty),
        mask=(offs_n[:, None] < N) & (offs_cv[None, :] < CV),
    )


@triton.autotune(configs=_VALUE_CONFIGS, key=["N", "M", "C", "CV"])
@triton.jit
def _sga_bwd_dv_kernel(
    X_ptr, Y_ptr, DZ_ptr, LSE_ptr, INV_CS_ptr, DV_ptr, N, M, C, CV,
    stride_xb, stride_xn, stride_xc, stride_yb, stride_ym, stride_yc,
    stride_db, stride_dn, stride_dc, stride_vb, stride_vm, stride_vc,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_CV: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dv_j = inv_cs_j · Σ_i exp2(s_ij − lse2_i) · dz_i: the reference's Aᵀ @ dz, one Cv tile."""
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    pid_cv = tl.program_id(2)
    X_ptr += b * stride_xb
    Y_ptr += b * stride_yb
    DZ_ptr += b * stride_db
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cv = pid_cv * BLOCK_CV + tl.arange(0, BLOCK_CV)
    acc = tl.zeros((BLOCK_M, BLOCK_CV), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        s = _scores_tile(X_ptr, Y_ptr, offs_n, offs_m, N, M, C, stride_xn, stride_xc,
                         stride_ym, stride_yc, BLOCK_N, BLOCK_M, BLOCK_C, DOT_PRECISION)
        lse = tl.load(LSE_ptr + b * N + offs_n, mask=offs_n < N, other=0.0)
        p = tl.where(offs_n[:, None] < N, tl.exp2(s - lse[:, None]), 0.0)  # ∈ [0, 1]
        dz = tl.load(
            DZ_ptr + offs_n[:, None] * stride_dn + offs_cv[None, :] * stride_dc,
            mask=(offs_n[:, None] < N) & (offs_cv[None, :] < CV), other=0.0,
        )
        acc += tl.dot(tl.trans(p.to(dz.dtype)), dz, input_precision=DOT_PRECISION)
    inv_cs = tl.load(INV_CS_ptr + b * M + offs_m, mask=offs_m < M, other=0.0)
    acc *= inv_cs[:, None]
    tl.store(
        DV_ptr + b * stride_vb + offs_m[:, None] * stride_vm + offs_cv[None, :] * stride_vc,
        acc.to(DV_ptr.dtype.element_ty),
        mask=(offs_m[:, None] < M) & (offs_cv[None, :] < CV),
    )


# ----------------------------------------------------------------------------------------------
# autograd.Function


def _check_inputs(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> None:
    B, N, C = x.shape
    if y.dim() != 3 or y.shape[0] != B or y.shape[2] != C:
        raise ValueError(f"y must be [B={B}, M, C={C}] to match x, got shape {tuple(y.shape)}")
    if v.dim() != 3 or v.shape[0] != B or v.shape[1] != y.shape[1]:
        raise ValueError(
            f"v must be [B={B}, M={y.shape[1]}, Cv] to match y, got shape {tuple(v.shape)}"
        )
    if min(N, y.shape[1], C, v.shape[2]) == 0:
        raise ValueError(f"empty input: x {tuple(x.shape)}, y {tuple(y.shape)}, v {tuple(v.shape)}")
    if not (x.dtype == y.dtype == v.dtype):
        raise ValueError(f"x, y, v must share a dtype, got {x.dtype}, {y.dtype}, {v.dtype}")


def _grid_rows(n: int, B: int):
    return lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), B)


class SGAAttentionFunction(torch.autograd.Function):
    """Fused SGA: z = colnorm(softmax(x yᵀ)) v with the attention matrix outside autograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        _check_inputs(x, y, v)
        B, N, C = x.shape
        M, CV = y.shape[1], v.shape[2]
        lse = torch.empty(B, N, device=x.device, dtype=torch.float32)
        col_sum = torch.empty(B, M, device=x.device, dtype=torch.float32)
        z = torch.empty(B, N, CV, device=x.device, dtype=v.dtype)
        xs, ys = (*x.stride(),), (*y.stride(),)
        precision = dot_precision()
        _sga_row_stats_kernel[_grid_rows(N, B)](
            x, y, lse, N, M, C, *xs, *ys, DOT_PRECISION=precision
        )
        _sga_col_sum_kernel[lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), B)](
            x, y, lse, col_sum, N, M, C, *xs, *ys, DOT_PRECISION=precision
        )
        inv_col_sum = 1.0 / col_sum.clamp_min(SGA_EPS)  # F.normalize: A / max(‖A‖₁, eps)
        _sga_out_kernel[
            lambda meta: (triton.cdiv(N, meta["BLOCK_N"]), B, triton.cdiv(CV, meta["BLOCK_CV"]))
        ](x, y, v, lse, inv_col_sum, z, N, M, C, CV, *xs, *ys, *v.stride(), *z.stride(),
          DOT_PRECISION=precision)
        ctx.save_for_backward(x, y, lse, inv_col_sum)
        return z

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        x, y, lse, inv_col_sum = ctx.saved_tensors
        # The attention matrix's gradient is truncated (Cao et al. §III-B.2; Li et al. 2022):
        # x and y get no gradient through A, so only dv is computed.
        if not ctx.needs_input_grad[2]:
            return None, None, None
        B, N, C = x.shape
        M, CV = y.shape[1], dz.shape[2]
        dv = torch.empty(B, M, CV, device=dz.device, dtype=x.dtype)
        dz = dz.to(x.dtype)
        _sga_bwd_dv_kernel[
            lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), B, triton.cdiv(CV, meta["BLOCK_CV"]))
        ](x, y, dz, lse, inv_col_sum, dv, N, M, C, CV,
          *x.stride(), *y.stride(), *dz.stride(), *dv.stride(),
          DOT_PRECISION=dot_precision())
        return None, None, dv
