"""Cui et al.'s colorific condition (§3.3.2): a colour-similar *other* image for each image.

Each image gets a 3-D Lab colour histogram (8 × 8 × 8 bins, paper background excluded);
histograms are clustered with k-means, and an image's colour-similar images are the members
of its cluster nearest to it (Hellinger distance), from other drawings only. The colorific
discriminator sees such an image as "right colours, different structure".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from colorize.background import background_mask
from colorize.kmeans import kmeans

HISTOGRAM_BINS = 8  # per Lab axis: 8 × 8 × 8 = 512 bins
_OTHER_CLUSTER = 4.0  # > any squared Hellinger distance (≤ 2) between histograms
_LAB_RANGE = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of uint8 sRGB [..., 3]: L in [0, 100], a and b roughly in [-128, 128]."""
    c = rgb.astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def lab_histogram(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised Lab histogram [bins³] of the non-background pixels of uint8 [H, W, 3].

    Sums to 1, or is all zeros when the image is all background.
    """
    lab = rgb_to_lab(rgb[~background_mask(rgb)])
    histogram, _ = np.histogramdd(lab, bins=bins, range=_LAB_RANGE)
    total = histogram.sum()
    return (histogram / total if total else histogram).reshape(-1)


def colour_similar(
    histograms: np.ndarray,
    groups: Sequence[str],
    *,
    neighbours: int = 8,
    clusters: int | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """For each image, up to `neighbours` indices of colour-similar images of other groups.

    Images are clustered by k-means on √histogram (`clusters` defaults to ⌈√(N/2)⌉); the
    neighbours are the nearest other-group members of the same cluster, topped up with the
    nearest other-group images outside it when the cluster is too small. `groups` marks images
    of one drawing (e.g. skin-tone variants), which never count as "other".
    """
    if len(histograms) != len(groups):
        raise ValueError(f"got {len(histograms)} histograms but {len(groups)} groups")
    count = len(histograms)
    if count == 0:
        return []
    roots = np.sqrt(np.asarray(histograms, dtype=np.float64))
    k = min(count, clusters or int(np.ceil(np.sqrt(count / 2))))
    _, labels = kmeans(roots, k, seed=seed)
    squared = (roots**2).sum(1)
    distances = squared[:, None] - 2 * roots @ roots.T + squared[None, :]  # (N, N), at most 2
    # same cluster first (other clusters pushed past every in-cluster distance), own group never
    key = distances + np.where(labels[:, None] == labels[None, :], 0.0, _OTHER_CLUSTER)
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1]
    key[group_ids[:, None] == group_ids[None, :]] = np.inf
    order = np.argsort(key, axis=1, kind="stable")[:, :neighbours]
    return [[int(j) for j in row if np.isfinite(key[i, j])] for i, row in enumerate(order)]
