"""Fused multi-head cross attention without a mask, in SDPA's layout, FlashAttention-2 style.

    o = softmax(q kᵀ · scale) v,   q [B, H, N, D], k [B, H, M, D], v [B, H, M, D] -> o [B, H, N, D]

scale defaults to 1/√D and N may differ from M. The specification is
`kernels.reference.cross_attention_reference`.

The algorithm is FlashAttention-2 (Dao 2023, "FlashAttention-2: Faster Attention with Better
Parallelism and Work Partitioning", arXiv:2307.08691, Algorithms 1 and 2). Splitting it into a
forward, a delta preprocess, a dk/dv and a dq kernel is the idea of Triton's fused-attention
tutorial (`python/tutorials/06-fused-attention.py`); the code here is our own and, unlike the
tutorial, masks every ragged tail (N, M and D), allows N ≠ M, takes arbitrary strides and
accumulates in fp32 whatever the input dtype (fp32, fp16 or bf16; outputs in the input dtype).

Fused plan, one program per (block of rows, batch·head):
1. forward: stream the K/V blocks through an online softmax (running row max m, running
   row sum l, an fp32 accumulator rescaled by exp(m_old − m_new)); write o and the row
   log-sum-exp lse = log Σ_j exp(s_ij), s = q kᵀ · scale, as fp32 [B, H, N].
2. backward preprocess: delta_i = Σ_d o_id · do_id (fp32), which equals Σ_j p_ij · dp_ij.
3. backward dk/dv, per K/V block: loop over the Q blocks, recompute p = exp(s − lse) and
   accumulate dv += pᵀ do and dk += scale · dsᵀ q with ds = p ⊙ (do vᵀ − delta).
4. backward dq, per Q block: loop over the K/V blocks, dq += scale · ds k.

Saved for backward: q, k, v, o and lse, i.e. O(B·H·(N + M)·D) memory. The N×M score or
probability matrix is never stored, in forward or backward: every kernel recomputes the
tile it needs from q, k and lse, which keeps memory linear in the sequence lengths. dk/dv
and dq are separate kernels so that each program owns its output rows (no atomics).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import autotune_configs, check_rank, dot_precision, next_power_of_2

# exp(x) = exp2(x · log2 e): the kernels fold log2(e) into the score scale once, so every
# softmax exponential is a bare exp2 (the native instruction) on log2-unit scores.
LOG2E = 1.4426950408889634
_LOG2E = tl.constexpr(LOG2E)
_LN2 = tl.constexpr(1.0 / LOG2E)  # converts the log2-unit row statistic back to natural log

MAX_HEAD_DIM = 256  # one program holds whole [BLOCK, D] rows of q, k, v and the accumulators
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Meta-parameters: BLOCK_M tiles the query rows (N), BLOCK_N the key/value rows (M).
_FWD_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    ],
    interpreted={"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1},
)
_PREPROCESS_CONFIGS = autotune_configs(
    gpu=[{"BLOCK_M": 64, "num_warps": 4, "num_stages": 1}],
    interpreted={"BLOCK_M": 16, "num_warps": 1, "num_stages": 1},
)
# dk/dv keeps a K/V block resident and streams Q blocks, so its Q block is the smaller one.
_BWD_DKDV_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_M": 32, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_M": 32, "BLOCK_N": 128, "num_warps": 4, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    ],
    interpreted={"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1},
)
# dq keeps a Q block resident and streams K/V blocks, so its K/V block is the smaller one.
_BWD_DQ_CONFIGS = autotune_configs(
    gpu=[
        {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2},
        {"BLOCK_M": 128, "BLOCK_N": 32, "num_warps": 4, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2},
    ],
    interpreted={"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1},
)
# Every kernel only writes its outputs (no accumulation into global memory), so the repeated
# launches of autotuning on a GPU leave correct results and need no reset_to_zero.
_TUNE_KEY = ["N", "M", "D"]  # the autotuner also keys on the tensor arguments' dtypes

# ----------------------------------------------------------------------------------------------


@triton.jit
def _load_rows(base, rows, dims, stride_row, stride_dim, mask):
    """The [rows, dims] tile at `base` with its ragged tails (mask False) read as zeros."""
    return tl.load(
        base + rows[:, None] * stride_row + dims[None, :] * stride_dim, mask=mask, other=0.0
    )


@triton.autotune(configs=_FWD_CONFIGS, key=_TUNE_KEY)
@triton.jit
def _cross_attn_fwd_kernel(
    Q_ptr, K_ptr, V_ptr, O_ptr, LSE_ptr,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H, N, M, D,
    qk_scale,  # scale · log2(e): scores come out in log2 units, ready for exp2
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """o = softmax(q kᵀ · scale) v and lse = logsumexp(q kᵀ · scale) for BLOCK_M query rows.

    Online softmax over the K/V blocks (`cross_attention_reference`, FlashAttention-2 Alg. 1).
    """
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs an inner dimension of at least 16")
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs blocks of at least 16")
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    # int64 so that batch offsets of large tensors do not overflow 32-bit pointer arithmetic
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    q_base = Q_ptr + off_b * stride_qb + off_h * stride_qh
    k_base = K_ptr + off_b * stride_kb + off_h * stride_kh
    v_base = V_ptr + off_b * stride_vb + off_h * stride_vh
    o_base = O_ptr + off_b * stride_ob + off_h * stride_oh

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < N
    dim_ok = dims < D
    q_mask = row_ok[:, None] & dim_ok[None, :]
    q = _load_rows(q_base, rows, dims, stride_qn, stride_qd, q_mask)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max, log2 units
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running Σ exp2(s − m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # running Σ exp2(s − m_i) v
    for start_n in range(0, M, BLOCK_N):
        kv_rows = start_n + cols
        kv_ok = kv_rows < M
        kv_mask = kv_ok[:, None] & dim_ok[None, :]
        k = _load_rows(k_base, kv_rows, dims, stride_km, stride_kd, kv_mask)
        v = _load_rows(v_base, kv_rows, dims, stride_vm, stride_vd, kv_mask)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        s = tl.where(kv_ok[None, :], s, float("-inf"))  # the ragged K tail gets no weight
        # Each block holds at least one real key, so m_new is finite and alpha is exp2(-inf) = 0
        # on the first block rather than NaN.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        # p is cast to v's dtype like the reference casts the softmax to q's dtype before @ v
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    acc = acc / l_i[:, None]
    tl.store(
        o_base + rows[:, None] * stride_on + dims[None, :] * stride_od,
        acc.to(O_ptr.dtype.element_ty),
        mask=q_mask,
    )
    lse = (m_i + tl.log2(l_i)) * _LN2  # natural-log logsumexp of the scaled scores
    tl.store(LSE_ptr + pid_bh * N + rows, lse, mask=row_ok)


@triton.autotune(configs=_PREPROCESS_CONFIGS, key=["N", "D"])
@triton.jit
def _cross_attn_bwd_preprocess_kernel(
    O_ptr, DO_ptr, DELTA_ptr,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_dob, stride_doh, stride_don, stride_dod,
    H, N, D,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    """delta_i = Σ_d o_id · do_id in fp32, the row term of ds = p ⊙ (dp − delta)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < N
    mask = row_ok[:, None] & (dims < D)[None, :]
    o = _load_rows(
        O_ptr + off_b * stride_ob + off_h * stride_oh, rows, dims, stride_on, stride_od, mask
    )
    do = _load_rows(
        DO_ptr + off_b * stride_dob + off_h * stride_doh, rows, dims, stride_don, stride_dod, mask
    )
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA_ptr + pid_bh * N + rows, delta, mask=row_ok)


@triton.autotune(configs=_BWD_DKDV_CONFIGS, key=_TUNE_KEY)
@triton.jit
def _cross_attn_bwd_dkdv_kernel(
    Q_ptr, K_ptr, V_ptr, DO_ptr, LSE_ptr, DELTA_ptr, DK_ptr, DV_ptr,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dkb, stride_dkh, stride_dkm, stride_dkd,
    stride_dvb, stride_dvh, stride_dvm, stride_dvd,
    H, N, M, D,
    scale,
    qk_scale,  # scale · log2(e)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """dv = pᵀ do and dk = scale · dsᵀ q, ds = p ⊙ (do vᵀ − delta), for BLOCK_N key rows.

    p = exp(q kᵀ · scale − lse) is recomputed tile by tile (FlashAttention-2 Alg. 2).
    """
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs an inner dimension of at least 16")
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs blocks of at least 16")
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    q_base = Q_ptr + off_b * stride_qb + off_h * stride_qh
    do_base = DO_ptr + off_b * stride_dob + off_h * stride_doh
    k_base = K_ptr + off_b * stride_kb + off_h * stride_kh
    v_base = V_ptr + off_b * stride_vb + off_h * stride_vh

    kv_rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    kv_ok = kv_rows < M
    dim_ok = dims < D
    kv_mask = kv_ok[:, None] & dim_ok[None, :]
    k = _load_rows(k_base, kv_rows, dims, stride_km, stride_kd, kv_mask)
    v = _load_rows(v_base, kv_rows, dims, stride_vm, stride_vd, kv_mask)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for start_m in range(0, N, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < N
        q_mask = row_ok[:, None] & dim_ok[None, :]
        q = _load_rows(q_base, rows, dims, stride_qn, stride_qd, q_mask)
        do = _load_rows(do_base, rows, dims, stride_don, stride_dod, q_mask)
        lse2 = tl.load(LSE_ptr + pid_bh * N + rows, mask=row_ok, other=0.0) * _LOG2E
        delta = tl.load(DELTA_ptr + pid_bh * N + rows, mask=row_ok, other=0.0)

        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.exp2(s_t - lse2[None, :])
        # Padded rows or columns could overflow exp2 (lse is a placeholder there); zero them
        # so that no inf or NaN reaches a dot product.
        p_t = tl.where(kv_ok[:, None] & row_ok[None, :], p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)

    dk *= scale  # ∂s/∂k = scale · q; the log2(e) factor lives only inside exp2
    tl.store(
        DK_ptr + off_b * stride_dkb + off_h * stride_dkh
        + kv_rows[:, None] * stride_dkm + dims[None, :] * stride_dkd,
        dk.to(DK_ptr.dtype.element_ty),
        mask=kv_mask,
    )  # fmt: skip
    tl.store(
        DV_ptr + off_b * stride_dvb + off_h * stride_dvh
        + kv_rows[:, None] * stride_dvm + dims[None, :] * stride_dvd,
        dv.to(DV_ptr.dtype.element_ty),
        mask=kv_mask,
    )  # fmt: skip


@triton.autotune(configs=_BWD_DQ_CONFIGS, key=_TUNE_KEY)
@triton.jit
def _cross_attn_bwd_dq_kernel(
    Q_ptr, K_ptr, V_ptr, DO_ptr, LSE_ptr, DELTA_ptr, DQ_ptr,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    H, N, M, D,
    scale,
    qk_scale,  # scale · log2(e)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """dq = scale · ds k, ds = p ⊙ (do vᵀ − delta), for BLOCK_M query rows.

    p = exp(q kᵀ · scale − lse) is recomputed tile by tile (FlashAttention-2 Alg. 2).
    """
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs an inner dimension of at least 16")
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs blocks of at least 16")
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    k_base = K_ptr + off_b * stride_kb + off_h * stride_kh
    v_base = V_ptr + off_b * stride_vb + off_h * stride_vh

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < N
    dim_ok = dims < D
    q_mask = row_ok[:, None] & dim_ok[None, :]
    q = _load_rows(
        Q_ptr + off_b * stride_qb + off_h * stride_qh, rows, dims, stride_qn, stride_qd, q_mask
    )
    do = _load_rows(
        DO_ptr + off_b * stride_dob + off_h * stride_doh, rows, dims, stride_don, stride_dod, q_mask
    )
    lse2 = tl.load(LSE_ptr + pid_bh * N + rows, mask=row_ok, other=0.0) * _LOG2E
    delta = tl.load(DELTA_ptr + pid_bh * N + rows, mask=row_ok, other=0.0)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(0, M, BLOCK_N):
        kv_rows = start_n + cols
        kv_ok = kv_rows < M
        kv_mask = kv_ok[:, None] & dim_ok[None, :]
        k = _load_rows(k_base, kv_rows, dims, stride_km, stride_kd, kv_mask)
        v = _load_rows(v_base, kv_rows, dims, stride_vm, stride_vd, kv_mask)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        p = tl.exp2(s - lse2[:, None])
        p = tl.where(row_ok[:, None] & kv_ok[None, :], p, 0.0)  # see the dk/dv kernel
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)

    dq *= scale
    tl.store(
        DQ_ptr + off_b * stride_dqb + off_h * stride_dqh
        + rows[:, None] * stride_dqn + dims[None, :] * stride_dqd,
        dq.to(DQ_ptr.dtype.element_ty),
        mask=q_mask,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise a ValueError naming the first tensor whose shape, dtype or device does not fit."""
    check_rank("q", q, 4, "[B, H, N, D]")
    check_rank("k", k, 4, "[B, H, M, D]")
    check_rank("v", v, 4, "[B, H, M, D]")
    B, H, N, D = q.shape
    M = k.shape[2]
    if k.shape[:2] != q.shape[:2] or k.shape[3] != D:
        raise ValueError(
            f"k must be [B={B}, H={H}, M, D={D}] to match q {tuple(q.shape)}, "
            f"got shape {tuple(k.shape)}"
        )
    if v.shape != k.shape:
        raise ValueError(
            f"v must be [B={B}, H={H}, M={M}, D={D}] to match k {tuple(k.shape)}, "
            f"got shape {tuple(v.shape)}"
        )
    if min(B, H, N, M, D) == 0:
        raise ValueError(
            f"cross attention needs non-empty inputs, got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if D > MAX_HEAD_DIM:
        raise ValueError(
            f"q has head dim D={D} (shape {tuple(q.shape)}); the Triton kernel supports D <= "
            f"{MAX_HEAD_DIM}"
        )
    if q.dtype not in _DTYPES:
        raise ValueError(f"q has dtype {q.dtype}; expected one of {_DTYPES}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but q has {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")


def _grid(length: int, block: str, batch_heads: int):
    """Launch grid: one program per tuned `block` of `length` rows, times batch·heads."""
    return lambda meta: (triton.cdiv(length, meta[block]), batch_heads)


def _head_block(D: int) -> int:
    return max(16, next_power_of_2(D))  # tl.dot's minimum inner size; the D tail is masked


class CrossAttentionFunction(torch.autograd.Function):
    """Fused softmax(q kᵀ · scale) v with FlashAttention-2's forward and backward kernels.

    `apply(q, k, v, scale)`: q [B, H, N, D], k and v [B, H, M, D], any strides, fp32/fp16/bf16;
    scale None means 1/√D. Saves q, k, v, o and the fp32 row log-sum-exp, never the N×M matrix.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale=None):
        _check_inputs(q, k, v)
        B, H, N, D = q.shape
        M = k.shape[2]
        scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
        # empty_like keeps q's layout, so a q transposed from [B, N, H, D] yields an o that
        # transposes back to [B, N, H·D] as a view
        o = torch.empty_like(q)
        lse = torch.empty((B, H, N), device=q.device, dtype=torch.float32)
        _cross_attn_fwd_kernel[_grid(N, "BLOCK_M", B * H)](
            q, k, v, o, lse,
            *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, N, M, D,
            scale * LOG2E,
            BLOCK_D=_head_block(D),
            DOT_PRECISION=dot_precision(),
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        need_dq, need_dk, need_dv = ctx.needs_input_grad[:3]
        dq = dk = dv = None
        if not (need_dq or need_dk or need_dv):
            return dq, dk, dv, None
        B, H, N, D = q.shape
        M = k.shape[2]
        scale = ctx.scale
        block_d = _head_block(D)
        precision = dot_precision()

        delta = torch.empty((B, H, N), device=q.device, dtype=torch.float32)
        _cross_attn_bwd_preprocess_kernel[_grid(N, "BLOCK_M", B * H)](
            o, do, delta, *o.stride(), *do.stride(), H, N, D, BLOCK_D=block_d
        )

        if need_dk or need_dv:
            # One kernel yields both; a gradient that was not asked for is dropped below.
            dk = torch.empty_like(k)
            dv = torch.empty_like(v)
            _cross_attn_bwd_dkdv_kernel[_grid(M, "BLOCK_N", B * H)](
                q, k, v, do, lse, delta, dk, dv,
                *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
                H, N, M, D,
                scale, scale * LOG2E,
                BLOCK_D=block_d,
                DOT_PRECISION=precision,
            )  # fmt: skip
        if need_dq:
            dq = torch.empty_like(q)
            _cross_attn_bwd_dq_kernel[_grid(N, "BLOCK_M", B * H)](
                q, k, v, do, lse, delta, dq,
                *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
                H, N, M, D,
                scale, scale * LOG2E,
                BLOCK_D=block_d,
                DOT_PRECISION=precision,
            )  # fmt: skip
        return dq, dk if need_dk else None, dv if need_dv else None, None
