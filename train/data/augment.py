"""Paired geometric augmentation and colour jitter for training samples.

Random crop and flip follow Khang et al. §4.1 and must move sketch and target together;
colour jitter is the appearance change of the self-augmented reference (Lee et al. 2020 §3.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601
# RGB → YIQ; hue is a rotation of the (I, Q) chroma plane
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def paired_crop_flip(
    images: Sequence[torch.Tensor],
    size: int,
    *,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """The same random size×size crop (and horizontal flip with p = 0.5) of each [C, H, W] image."""
    height, width = images[0].shape[-2:]
    if any(image.shape[-2:] != (height, width) for image in images):
        raise ValueError(f"images must share H and W, got {[tuple(i.shape) for i in images]}")
    if size > min(height, width):
        raise ValueError(f"crop size {size} is larger than the images ({height}x{width})")
    top = int(torch.randint(height - size + 1, (), generator=generator))
    left = int(torch.randint(width - size + 1, (), generator=generator))
    mirror = flip and bool(torch.rand((), generator=generator) < 0.5)
    crops = [image[..., top : top + size, left : left + size] for image in images]
    return [crop.flip(-1) if mirror else crop.clone() for crop in crops]


def color_jitter(
    image: torch.Tensor,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue change of [3, H, W] RGB in [-1, 1].

    Factors are drawn from U(1 − a, 1 + a) for the first three and the hue rotation from
    U(−hue, hue) turns (1 = 360°, in the YIQ chroma plane); all zero returns a copy.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {tuple(image.shape)}")
    if not (brightness or contrast or saturation or hue):
        return image.clone()

    def factor(amount: float) -> float:
        return 1 + amount * float(torch.rand((), generator=generator) * 2 - 1)

    x = (image.float() + 1) / 2
    x = x * factor(brightness)
    luma = (x * _LUMA.view(3, 1, 1)).sum(0, keepdim=True)
    x = (x - luma.mean()) * factor(contrast) + luma.mean()
    luma = (x * _LUMA.view(3, 1, 1)).sum(0, keepdim=True)
    x = (x - luma) * factor(saturation) + luma
    angle = 2 * math.pi * hue * float(torch.rand((), generator=generator) * 2 - 1)
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        rotate = torch.tensor([[1.0, 0, 0], [0, cos, -sin], [0, sin, cos]])
        transform = torch.linalg.inv(_RGB_TO_YIQ) @ rotate @ _RGB_TO_YIQ
        x = torch.einsum("ij,jhw->ihw", transform, x)
    return (x.clamp(0, 1) * 2 - 1).to(image.dtype)
