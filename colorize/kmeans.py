"""k-means clustering (Lloyd's algorithm, k-means++ seeding), deterministic for a seed.

Used for the colour palette (Khang et al. §3.1, k = 9) and for clustering Lab histograms
(Cui et al. §3.3.2). Plain numpy: the point sets here are small (a few thousand rows).
"""

from __future__ import annotations

import numpy as np


def nearest_centroid(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) for each row of `points` [N, D]."""
    points = points.astype(np.float64, copy=False)
    centroids = centroids.astype(np.float64, copy=False)
    distances = (
        (points**2).sum(1, keepdims=True) - 2 * points @ centroids.T + (centroids**2).sum(1)
    )  # (N, k)
    return distances.argmin(1)


def kmeans(
    points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of `points` [N, D] into `k` groups.

    Returns the centroids [k, D] (float64) and each point's cluster [N]. A cluster that
    empties keeps its previous centroid. Needs N ≥ k.
    """
    if points.ndim != 2:
        raise ValueError(f"points must be [N, D], got shape {points.shape}")
    if not 1 <= k <= len(points):
        raise ValueError(f"k must be between 1 and the number of points {len(points)}, got {k}")
    rng = np.random.default_rng(seed)
    x = points.astype(np.float64)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(len(x))]
    closest = ((x - centroids[0]) ** 2).sum(1)
    for i in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centroids[i] = x[pick]
        closest = np.minimum(closest, ((x - centroids[i]) ** 2).sum(1))
    for _ in range(iterations):
        labels = nearest_centroid(x, centroids)
        members = np.eye(k)[labels]  # (N, k) one-hot
        counts = members.sum(0)
        sums = members.T @ x  # (k, D)
        updated = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids, nearest_centroid(x, centroids)
