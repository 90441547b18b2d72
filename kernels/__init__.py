"""Fused Triton kernels for the colorizers' attention, with eager references and a dispatcher.

    from kernels import sga_attention, cross_attention, cbam, set_backend

`set_backend("auto" | "triton" | "eager")` (or `KERNELS_BACKEND=...`) picks the path for the
process; "auto" runs Triton on CUDA tensors (or on CPU under `TRITON_INTERPRET=1`) and the
eager reference elsewhere.
"""

from ._common import get_backend, set_backend
from .ops import cbam, cross_attention, sga_attention
from .reference import cbam_reference, cross_attention_reference, sga_attention_reference

__all__ = [
    "cbam",
    "cbam_reference",
    "cross_attention",
    "cross_attention_reference",
    "get_backend",
    "set_backend",
    "sga_attention",
    "sga_attention_reference",
]
