"""Colour tags: the share of a drawing's pixels in each named colour, and tag vectors.

Yan et al. (§3.3) steer colours with tag values (e.g. 'blue_shirt' = 0…5) predicted by a
Danbooru tagger. Without Danbooru we use measurable tags: for each named colour, the share of
the drawing's pixels (paper background and line pixels excluded) that fall in it. A tag
vector lists values in the order of a fixed vocabulary saved with the data.

Per-pixel colour names from HSV (hue h in degrees, saturation s, value v, all checked in order):

    black   v < 0.2
    white   s < 0.15 and v > 0.85        grey   s < 0.15 (otherwise)
    red     h < 15 or h ≥ 345            pink   the same hues when s < 0.5 and v > 0.75
    orange  15 ≤ h < 40, v ≥ 0.7         brown  15 ≤ h < 40, v < 0.7
    yellow  40 ≤ h < 70                  green  70 ≤ h < 160
    cyan    160 ≤ h < 195                blue   195 ≤ h < 260
    purple  260 ≤ h < 295, or 295 ≤ h < 345 with v ≤ 0.6
    pink    295 ≤ h < 345 with v > 0.6
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from colorize.background import background_mask

COLOR_NAMES = (
    "red", "orange", "yellow", "green", "cyan", "blue",
    "purple", "pink", "brown", "black", "grey", "white",
)  # fmt: skip
COLOR_TAGS = tuple(f"color:{name}" for name in COLOR_NAMES)

# (first hue in degrees, name) for chromatic pixels, before the value-dependent splits
_HUE_BANDS = ((0, "red"), (15, "orange"), (40, "yellow"), (70, "green"), (160, "cyan"),
              (195, "blue"), (260, "purple"), (295, "pink"), (345, "red"))  # fmt: skip


def color_names(rgb: np.ndarray) -> np.ndarray:
    """Index into `COLOR_NAMES` of every pixel of a uint8 [..., 3] array (rules: module doc)."""
    if rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 [..., 3], got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float64) / 255
    v = x.max(-1)
    chroma = v - x.min(-1)
    s = np.where(v > 0, chroma / np.maximum(v, 1e-12), 0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    c = np.maximum(chroma, 1e-12)
    hue = (
        np.select([v == r, v == g], [((g - b) / c) % 6, (b - r) / c + 2], (r - g) / c + 4) * 60
    )  # degrees in [0, 360)
    starts = np.array([start for start, _ in _HUE_BANDS])
    band = np.array([COLOR_NAMES.index(name) for _, name in _HUE_BANDS])
    index = band[np.searchsorted(starts, hue, side="right") - 1]
    name = {n: i for i, n in enumerate(COLOR_NAMES)}
    reddish = (hue < 15) | (hue >= 345)
    index = np.where(reddish & (s < 0.5) & (v > 0.75), name["pink"], index)
    index = np.where((index == name["orange"]) & (v < 0.7), name["brown"], index)
    index = np.where((index == name["pink"]) & ~reddish & (v <= 0.6), name["purple"], index)
    achromatic = np.where(v > 0.85, name["white"], name["grey"])
    index = np.where(s < 0.15, achromatic, index)
    return np.where(v < 0.2, name["black"], index)


def color_shares(rgb: np.ndarray, line_mask: np.ndarray | None = None) -> np.ndarray:
    """Share of counted pixels per name in `COLOR_NAMES` for a uint8 [H, W, 3] image: float [12].

    Counted pixels are those outside the paper background and outside `line_mask` (bool
    [H, W], True on line-art strokes). The shares sum to 1, or are all 0 if nothing counts.
    """
    counted = ~background_mask(rgb)
    if line_mask is not None:
        if line_mask.shape != rgb.shape[:2]:
            raise ValueError(f"line_mask must be {rgb.shape[:2]}, got {line_mask.shape}")
        counted &= ~line_mask
    total = counted.sum()
    counts = np.bincount(color_names(rgb[counted]), minlength=len(COLOR_NAMES))
    return counts / total if total else counts.astype(np.float64)


def tag_vector(values: Mapping[str, float], vocabulary: Sequence[str]) -> torch.Tensor:
    """float32 [len(vocabulary)] with values[tag] at the tag's position and 0 elsewhere."""
    position = {tag: i for i, tag in enumerate(vocabulary)}
    vector = torch.zeros(len(vocabulary))
    for tag, value in values.items():
        if tag not in position:
            raise ValueError(
                f"unknown tag {tag!r}; it is not in the {len(vocabulary)}-tag vocabulary"
            )
        vector[position[tag]] = float(value)
    return vector
