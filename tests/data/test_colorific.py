"""Cui et al.'s colorific condition: Lab histograms and colour-similar images of other drawings."""

import numpy as np
import pytest

from train.data.colorific import colour_similar, lab_histogram, rgb_to_lab


def test_rgb_to_lab_known_values():
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8)
    expected = [[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20]]
    np.testing.assert_allclose(rgb_to_lab(rgb), expected, atol=0.02)


def test_lab_histogram_is_normalised_and_ignores_the_page():
    image = np.full((16, 16, 3), 255, np.uint8)
    image[4:12, 4:12] = (255, 0, 0)
    histogram = lab_histogram(image)
    assert histogram.shape == (512,) and histogram.sum() == pytest.approx(1.0)
    # red: L 53 → bin 4 of 8 over [0, 100]; a 80 → bin 6 and b 67 → bin 6 of 8 over [-128, 128]
    assert histogram[4 * 64 + 6 * 8 + 6] == pytest.approx(1.0)
    assert lab_histogram(np.full((8, 8, 3), 255, np.uint8)).sum() == 0


def _swatch(rgb) -> np.ndarray:
    image = np.full((12, 12, 3), 255, np.uint8)
    image[2:10, 2:10] = rgb
    return lab_histogram(image)


def test_colour_similar_picks_close_colours_from_other_drawings():
    colours = [
        (220, 30, 30),
        (225, 35, 30),
        (215, 25, 40),
        (30, 30, 220),
        (35, 35, 215),
        (225, 30, 30),
    ]
    groups = ["a", "b", "c", "d", "e", "a"]  # index 5 is a variant of drawing a
    similar = colour_similar(
        np.stack([_swatch(c) for c in colours]), groups, neighbours=2, clusters=2
    )
    assert sorted(similar[0]) == [1, 2]  # the other reds, never its own variant 5
    assert similar[3] == [4, similar[3][1]] and similar[3][1] in (0, 1, 2, 5)
    assert all(groups[j] != groups[i] for i, row in enumerate(similar) for j in row)
    again = colour_similar(
        np.stack([_swatch(c) for c in colours]), groups, neighbours=2, clusters=2
    )
    assert similar == again


def test_colour_similar_checks_its_inputs():
    with pytest.raises(ValueError, match="histograms"):
        colour_similar(np.zeros((3, 512)), ["a", "b"])
    assert colour_similar(np.zeros((0, 512)), []) == []
