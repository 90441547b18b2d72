"""Blocks that two or more methods share. Attention runs only through the `kernels` ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import kernels


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018), after each encoder conv in
    Cao et al. §III-B.1: channel gate (avg+max pool, shared MLP C -> C/r -> C) then spatial
    gate (k×k conv over the channel mean and max), fused by `kernels.cbam`."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM kernel_size must be odd, got {kernel_size}")
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.cbam(
            x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
            self.spatial.weight, self.spatial.bias,
        )  # fmt: skip


class CrossAttention(nn.Module):
    """Multi-head attention of query tokens over context tokens through `kernels.cross_attention`.

    softmax(Q Kᵀ/√d) V with Q = W_q x, K = W_k c, V = W_v c and an output projection; with
    c = x it is self-attention. Tokens are [B, N, C] (queries) and [B, M, Cc] (context).
    """

    def __init__(
        self, dim: int, context_dim: int | None = None, heads: int = 1, head_dim: int | None = None
    ):
        super().__init__()
        head_dim = head_dim or dim // heads
        if head_dim * heads == 0:
            raise ValueError(f"CrossAttention: dim={dim} with heads={heads} leaves no head dim")
        inner = head_dim * heads
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        B, N, _ = x.shape
        M = context.shape[1]
        q = self.to_q(x).view(B, N, self.heads, -1).transpose(1, 2)  # (B, h, N, d)
        k = self.to_k(context).view(B, M, self.heads, -1).transpose(1, 2)  # (B, h, M, d)
        v = self.to_v(context).view(B, M, self.heads, -1).transpose(1, 2)  # (B, h, M, d)
        out = kernels.cross_attention(q, k, v)  # (B, h, N, d)
        return self.to_out(out.transpose(1, 2).reshape(B, N, -1))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H·W, C]."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H·W, C] -> [B, C, H, W]."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], height, width)


def fit_within(height: int, width: int, limit: float, multiple: int = 1) -> tuple[int, int]:
    """(height, width) unchanged when its longer side is at most `limit`, else scaled down so
    that it is (aspect kept, each side rounded down to a multiple of `multiple`, at least one
    multiple): the capped grids of `sga`'s attention keys and `csft`'s correspondence."""
    if max(height, width) <= limit:
        return height, width
    scale = limit / max(height, width)
    return max(multiple, int(height * scale) // multiple * multiple), max(
        multiple, int(width * scale) // multiple * multiple)  # fmt: skip


class WSConv2d(nn.Conv2d):
    """Conv with Weight Standardization (Qiao et al. 2019): each filter is zero-mean,
    unit-variance before use; paired with GroupNorm in Khang et al.'s ResUNet (§3.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def init_unnormalised(
    modules: list[nn.Module], negative_slope: float, residual_ends: list[nn.Conv2d]
) -> None:
    """Initialise a generator without normalisation layers so that it trains at all.

    Every convolution of `modules` gets He initialisation (He et al. 2015: N(0, 2 / ((1 + a²)
    fan_in)) for a (leaky) ReLU of slope a) and zero bias, so a signal keeps its scale through
    the stack; the last convolution of every residual branch (`residual_ends`) starts at zero,
    so each residual block starts as the identity (Goyal et al. 2017; Zhang et al. 2019,
    Fixup). PyTorch's default (uniform, gain 1/√3 per layer) shrinks the signal ~100× through
    the hints and tags generators; Adam then grows every layer at once until the pre-tanh
    output explodes and the image is white everywhere within ~30 steps on OpenMoji, whose
    targets are mostly exact white (measured at 128 px, lr 1e-4; the normalised sga net does
    not need this). The embedded frozen tagger is never passed here.
    """
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, a=negative_slope, nonlinearity="leaky_relu")
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
    for conv in residual_ends:
        nn.init.zeros_(conv.weight)
