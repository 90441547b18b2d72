"""Colour palette of a reference image: its k = 9 dominant colours by k-means (Khang et al. §3.1).

The 27 values (9 RGB colours) are the reference's colour condition: Khang et al. broadcast them
as 27 constant planes next to the 3-channel line drawing (a 30-channel input, Eq. (1)).
"""

from __future__ import annotations

import numpy as np
import torch

from colorize.background import background_mask
from colorize.kmeans import kmeans, nearest_centroid

PALETTE_COLORS = 9  # Khang et al. §3.1: k = 9 → 27 channels


def palette_kmeans(
    rgb: np.ndarray,
    k: int = PALETTE_COLORS,
    *,
    seed: int = 0,
    max_samples: int = 4096,
    ignore_background: bool = True,
) -> torch.Tensor:
    """The k dominant colours of a uint8 [H, W, 3] image as float32 [3k] in [-1, 1].

    Colours are cluster means over all non-background pixels, sorted by pixel count (most
    frequent first). k-means runs on `max_samples` pixels drawn with `seed`, so the result is
    deterministic. An image with fewer than k distinct colours gives them exactly and pads with
    white; an image that is all background gives an all-white palette.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    pixels = rgb[~background_mask(rgb)] if ignore_background else rgb.reshape(-1, 3)
    codes = pixels.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    distinct, counts = np.unique(codes, return_counts=True)
    if len(distinct) <= k:
        colors = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], 1).astype(float)
    else:
        rng = np.random.default_rng(seed)
        sample = pixels[rng.choice(len(pixels), min(max_samples, len(pixels)), replace=False)]
        colors, _ = kmeans(sample, k, seed=seed)
        labels = nearest_centroid(pixels, colors)
        counts = np.bincount(labels, minlength=k)
        members = np.eye(k)[labels]  # (N, k): the final means use every pixel, not the sample
        colors = np.where(
            counts[:, None] > 0, members.T @ pixels / np.maximum(counts, 1)[:, None], colors
        )
    order = np.lexsort((colors[:, 2], colors[:, 1], colors[:, 0], -counts))
    padded = np.full((k, 3), 255.0)
    padded[: len(order)] = colors[order]
    return torch.from_numpy(padded / 127.5 - 1).float().reshape(-1)
