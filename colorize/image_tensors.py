"""Conversions between 8-bit images and the [-1, 1] float tensors every model reads and writes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """An RGB or greyscale image (PIL, or uint8 [H, W(, C)]) as float32 [C, H, W] in [-1, 1].

    Greyscale gives one channel (white paper = +1, black lines = -1), RGB three.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be 8-bit, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {array.shape}")
    tensor = torch.from_numpy(np.require(array, requirements=("C", "W"))).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """A [C, H, W] tensor in [-1, 1] as a uint8 [H, W, C] array (values clamped, rounded)."""
    if tensor.dim() != 3:
        raise ValueError(f"tensor must be [C, H, W], got shape {tuple(tensor.shape)}")
    scaled = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
