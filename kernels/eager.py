"""Faster eager formulations of the references, for the CPU (and any device without Triton).

Each equals its reference in `kernels/reference.py` (the spec) up to floating-point rounding
and has the same gradients; tests/kernels compares them. `kernels.ops` uses them for its
"eager" implementation.
"""

from __future__ import annotations

import torch

from ._common import autocast_dtype
from .reference import SGA_EPS, _at_least_fp32


def sga_attention_eager(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`sga_attention_reference` without normalising the N×M matrix: with P = softmax(x yᵀ)
    and s_j = max(Σ_i P_ij, eps) its column sums, A v = P (v / s), so the column sums are one
    reduction and the division touches M·Cv values instead of N·M (measured ~20 % of an
    sga forward at 512 px on a CPU). Only v gets a gradient: dv = (Pᵀ dz) / s = Aᵀ dz.
    The product runs in fp32 (at least), since 1/s can exceed the fp16 range; the output
    has the reference's dtype (the autocast dtype under autocast, else v's)."""
    compute = _at_least_fp32(v.dtype)
    with torch.no_grad():
        scores = x @ y.transpose(-1, -2)  # (B, N, M)
        attn = torch.softmax(scores.to(_at_least_fp32(scores.dtype)), dim=-1).to(compute)
        inverse = attn.sum(dim=-2).clamp_min(SGA_EPS).reciprocal()  # (B, M)
    with torch.autocast(v.device.type, enabled=False):  # 1/s in fp16 could overflow
        out = attn @ (v.to(compute) * inverse[..., None])
    return out.to(autocast_dtype(v.device.type) or v.dtype)  # the reference's output dtype
