"""The public ops: one function each, dispatching to the Triton kernel or the eager reference.

Models call only these. The Triton implementations (`<op>_triton.py`) are imported on first
use, so this module (and the eager path) works where Triton is not installed. Under autocast
the ops behave like the eager references: attention inputs are cast to the autocast dtype
(as a matmul would be) and CBAM keeps x's dtype.
"""

from __future__ import annotations

import torch

from ._common import autocast_dtype, check_rank, select_impl
from .eager import sga_attention_eager
from .reference import cbam_reference, cross_attention_reference


def _cast_for_autocast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    dtype = autocast_dtype(tensors[0].device.type)
    if dtype is None or not tensors[0].is_floating_point():
        return tensors
    return tuple(t.to(dtype) for t in tensors)


def sga_attention(
    x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, impl: str | None = None
) -> torch.Tensor:
    """Stop-gradient attention (Li et al. 2022; Cao et al. §III-B.2).

    [B, N, C], [B, M, C], [B, M, Cv] -> [B, N, Cv].

    Only v receives a gradient; see `kernels.reference.sga_attention_reference` for the spec.
    `impl` ("auto" | "triton" | "eager") overrides the backend for this call.
    """
    check_rank("x", x, 3, "[B, N, C]")
    check_rank("y", y, 3, "[B, M, C]")
    check_rank("v", v, 3, "[B, M, Cv]")
    if select_impl("sga_attention", (x, y, v), impl) == "eager":
        return sga_attention_eager(x, y, v)
    from .sga_triton import SGAAttentionFunction

    x, y, v = _cast_for_autocast(x, y, v)
    with torch.autocast(x.device.type, enabled=False):
        return SGAAttentionFunction.apply(x, y, v)


def cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale) v in SDPA's layout: [B,H,N,D],[B,H,M,D],[B,H,M,D] -> [B,H,N,D].

    scale defaults to 1/√D; no mask; N ≠ M allowed. `impl` overrides the backend for this call.
    """
    check_rank("q", q, 4, "[B, H, N, D]")
    check_rank("k", k, 4, "[B, H, M, D]")
    check_rank("v", v, 4, "[B, H, M, D]")
    if select_impl("cross_attention", (q, k, v), impl) == "eager":
        return cross_attention_reference(q, k, v, scale)
    from .cross_attention_triton import CrossAttentionFunction

    q, k, v = _cast_for_autocast(q, k, v)
    with torch.autocast(q.device.type, enabled=False):
        return CrossAttentionFunction.apply(q, k, v, scale)


def cbam(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """CBAM channel then spatial gating (Woo et al. 2018) of x [B,C,H,W]; output in x's dtype.

    MLP C -> C/r -> C (w1 [C/r,C], b1 [C/r], w2 [C,C/r], b2 [C]); spatial conv conv_w
    [1,2,k,k], conv_b [1]. `impl` overrides the backend for this call.
    """
    check_rank("x", x, 4, "[B, C, H, W]")
    params = (w1, b1, w2, b2, conv_w, conv_b)
    if select_impl("cbam", (x, *params), impl) == "eager":
        return cbam_reference(x, *params)
    from .cbam_triton import CBAMFunction

    with torch.autocast(x.device.type, enabled=False):
        return CBAMFunction.apply(x, *params)
