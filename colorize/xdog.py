"""XDoG line extraction (Winnemöller et al. 2012) with the settings of Ci et al. §4.1.

    D = G_σ(I) − τ·G_κσ(I),   T = 1 if D ≥ ε else 1 + tanh(φ·(D − ε))

on the luminance I ∈ [0, 1]. Ci et al. use φ = 1e9 (a step at the line border), σ drawn from
{0.3, 0.4, 0.5} for varied line widths, τ = 0.95 and κ = 4.5. They do not give ε; we use
ε = 0, so a flat area (D = (1 − τ)·I ≥ 0) stays white and dark lines come out filled rather
than as double outlines.
Cui et al. §3.3.1 use the same filter for their structural condition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SIGMAS = (0.3, 0.4, 0.5)  # Ci et al. §4.1
KAPPA = 4.5
TAU = 0.95
PHI = 1e9
EPSILON = 0.0

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, 1, H, W] with radius ⌈3σ⌉ and replicated borders."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def xdog(
    image: torch.Tensor,
    sigma: float = 0.5,
    *,
    kappa: float = KAPPA,
    tau: float = TAU,
    phi: float = PHI,
    epsilon: float = EPSILON,
) -> torch.Tensor:
    """XDoG sketch of RGB images (see the module docstring for the formula).

    Args:
        image: [B, 3, H, W] or [3, H, W] RGB in [-1, 1].
        sigma: the smaller Gaussian's standard deviation in pixels.
    Returns:
        [B, 1, H, W] (or [1, H, W]) in [-1, 1]: white paper = +1, lines = −1.
    """
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"image must be [B, 3, H, W] or [3, H, W], got {tuple(image.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    batched = image.dim() == 4
    rgb = (image if batched else image[None]).float().add(1).mul(0.5)
    luma = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    intensity = (rgb * luma).sum(1, keepdim=True)
    dog = _gaussian_blur(intensity, sigma) - tau * _gaussian_blur(intensity, kappa * sigma)
    soft = 1 + torch.tanh(phi * (dog - epsilon))
    sketch = torch.where(dog >= epsilon, torch.ones_like(dog), soft) * 2 - 1
    return sketch if batched else sketch[0]


class XDoG(nn.Module):
    """Line extractor [B, 3, H, W] → [B, 1, H, W] (both in [-1, 1]) drawing σ per image.

    It has the signature a learned line extractor (Cao et al. §III-A) has, so datasets take
    either. σ is drawn from `sigmas` with torch's global generator (Ci et al. §4.1).
    """

    def __init__(self, sigmas: Sequence[float] = SIGMAS, epsilon: float = EPSILON) -> None:
        super().__init__()
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be a non-empty list of positive values, got {sigmas}")
        self.sigmas = tuple(float(s) for s in sigmas)
        self.epsilon = epsilon

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        picks = torch.randint(len(self.sigmas), (images.shape[0],)).tolist()
        return torch.cat(
            [
                xdog(image[None], self.sigmas[pick], epsilon=self.epsilon)
                for image, pick in zip(images, picks, strict=True)
            ]
        )

    def extra_repr(self) -> str:
        return f"sigmas={self.sigmas}, epsilon={self.epsilon}"
