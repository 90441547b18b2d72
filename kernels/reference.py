"""Eager PyTorch references of the three ops: the specification the Triton kernels must match.

They are deliberately plain and slow. Tests, the benchmark and the CPU fallback import them,
so every rule a kernel follows (normalisation order, epsilon, dtypes) is written here first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SGA_EPS = 1e-12  # F.normalize's default eps, as in the SGA authors' code (Li et al. 2022)


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """Softmax precision: fp32 for half inputs, fp64 stays fp64 (so gradcheck is exact)."""
    return torch.promote_types(dtype, torch.float32)


def sga_attention_reference(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Stop-gradient attention of Li et al. (ECCV 2022), as used by Cao et al. §III-B.2.

    Args:
        x: queries, [B, N, C].
        y: keys, [B, M, C].
        v: values, [B, M, Cv].
    Returns:
        [B, N, Cv] = A @ v with, computed without gradient,
        A = softmax(x @ yᵀ, dim=-1) (no 1/√C scaling), then every column divided by
        max(column sum, 1e-12) (`F.normalize(A, p=1, dim=-2)`). Only v receives a
        gradient: dv = Aᵀ @ dz. The softmax runs in fp32; A is cast to v's dtype.
    """
    with torch.no_grad():
        scores = x @ y.transpose(-1, -2)  # (B, N, M)
        attn = torch.softmax(scores.to(_at_least_fp32(scores.dtype)), dim=-1)
        attn = F.normalize(attn, p=1, dim=-2, eps=SGA_EPS)
    return attn.to(v.dtype) @ v


def cross_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Multi-head scaled dot-product attention without a mask, in SDPA's layout.

    Args:
        q: [B, H, N, D]; k: [B, H, M, D]; v: [B, H, M, D]. N may differ from M.
        scale: multiplies q @ kᵀ; defaults to 1/√D.
    Returns:
        [B, H, N, D] = softmax(q @ kᵀ · scale) @ v, softmax in fp32 and cast back to q's dtype.
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-1, -2)  # (B, H, N, M)
    scores = scores.to(_at_least_fp32(scores.dtype)) * scale
    return torch.softmax(scores, dim=-1).to(q.dtype) @ v


def cbam_mlp(pooled: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    """CBAM's shared channel MLP C -> C/r -> C with a ReLU in between, on [B, C]."""
    return F.linear(F.relu(F.linear(pooled, w1, b1)), w2, b2)


def cbam_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor,
) -> torch.Tensor:
    """Convolutional Block Attention Module (Woo et al. 2018), Cao et al. §III-B.1.

    Args:
        x: feature map, [B, C, H, W].
        w1, b1: first MLP layer, [C/r, C] and [C/r].
        w2, b2: second MLP layer, [C, C/r] and [C].
        conv_w, conv_b: spatial gate conv, [1, 2, k, k] and [1]; k odd, 'same' padding.
    Returns:
        [B, C, H, W] in x's dtype: ca = σ(MLP(avgpool x) + MLP(maxpool x)), x1 = x·ca,
        sa = σ(conv([mean_c x1, max_c x1])), y = x1·sa. Gates are cast to x's dtype.
    """
    avg = x.mean(dim=(2, 3))  # (B, C)
    mx = x.amax(dim=(2, 3))  # (B, C)
    ca = torch.sigmoid(cbam_mlp(avg, w1, b1, w2, b2) + cbam_mlp(mx, w1, b1, w2, b2))
    x1 = x * ca.to(x.dtype)[:, :, None, None]
    s = torch.stack([x1.mean(dim=1), x1.amax(dim=1)], dim=1)  # (B, 2, H, W)
    sa = torch.sigmoid(F.conv2d(s, conv_w, conv_b, padding=conv_w.shape[-1] // 2))
    return x1 * sa.to(x.dtype)
