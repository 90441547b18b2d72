"""k-means palette (Khang et al. §3.1, k = 9 → 27 values) and the k-means it runs on."""

import numpy as np
import pytest
import torch

from colorize.kmeans import kmeans
from colorize.palette import palette_kmeans


def _patches() -> np.ndarray:
    """White page with a red (300 px), a blue (200 px) and a green (100 px) patch."""
    image = np.full((40, 40, 3), 255, np.uint8)
    image[2:17, 2:22] = (200, 30, 30)
    image[20:30, 2:22] = (20, 40, 220)
    image[32:37, 2:22] = (30, 160, 40)
    return image


def test_palette_lists_colours_by_area_and_ignores_the_page():
    palette = palette_kmeans(_patches())
    assert palette.shape == (27,) and palette.dtype == torch.float32
    colours = ((palette.view(9, 3) + 1) * 127.5).round().int().tolist()
    assert colours[:3] == [[200, 30, 30], [20, 40, 220], [30, 160, 40]]
    assert colours[3:] == [[255, 255, 255]] * 6  # fewer than 9 colours: padded with white


def test_palette_of_a_many_coloured_image_is_deterministic_and_in_range():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (48, 48, 3), dtype=np.uint8)
    first = palette_kmeans(image, seed=3)
    assert torch.equal(first, palette_kmeans(image, seed=3))
    assert first.min() >= -1 and first.max() <= 1
    assert len({tuple(c) for c in first.view(9, 3).tolist()}) == 9


def test_palette_sorted_by_cluster_size():
    image = np.zeros((30, 30, 3), np.uint8)
    image[:20] = (250, 10, 10)  # 600 px of two near-identical reds
    image[:10, :15] = (240, 20, 20)
    image[20:] = (10, 10, 250)  # 300 px blue
    colours = palette_kmeans(image, k=2).view(2, 3)
    assert colours[0, 0] > 0.8 and colours[1, 2] > 0.8  # red cluster first, then blue


def test_palette_of_a_blank_page_is_all_white():
    assert torch.equal(palette_kmeans(np.full((8, 8, 3), 255, np.uint8)), torch.ones(27))


def test_palette_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="uint8"):
        palette_kmeans(np.zeros((8, 8), np.uint8))


def test_kmeans_separates_two_blobs_deterministically():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (30, 2))])
    centroids, labels = kmeans(points, 2, seed=1)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[-1]
    np.testing.assert_allclose(centroids[labels[0]], points[:50].mean(0))
    again, _ = kmeans(points, 2, seed=1)
    np.testing.assert_array_equal(centroids, again)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(points, 81)
