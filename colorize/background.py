"""The paper background of a drawing: near-white pixels connected to the image border.

Palette and colour-tag statistics ignore it, so they describe the drawing rather than the page;
white *inside* the drawing (eyes, teeth, a white shirt) is enclosed by lines and is kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

WHITE_LEVEL = 240  # every channel at least this: near-white paper (anti-aliasing included)


def background_mask(rgb: np.ndarray, white_level: int = WHITE_LEVEL) -> np.ndarray:
    """Boolean [H, W] mask of near-white pixels 4-connected to the border of a uint8 [H, W, 3]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    near_white = (rgb >= white_level).all(axis=2)
    labels, _ = ndimage.label(near_white)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    return np.isin(labels, touching)
