"""Colour tags: per-pixel colour names, shares of the drawing, the page mask, tag vectors."""

import numpy as np
import pytest
import torch

from colorize.background import background_mask
from colorize.tags import COLOR_NAMES, color_names, color_shares, tag_vector

# OpenMoji's palette (data/color-palette.json) with the name each colour must get
OPENMOJI_COLOURS = {
    "#000000": "black", "#ffffff": "white", "#92d3f5": "blue", "#61b2e4": "blue",
    "#ea5a47": "red", "#d22f27": "red", "#b1cc33": "green", "#5c9e31": "green",
    "#fcea2b": "yellow", "#f1b31c": "yellow", "#d0cfce": "grey", "#9b9b9a": "grey",
    "#3f3f3f": "grey", "#f4aa41": "orange", "#e27022": "orange", "#ffa7c0": "pink",
    "#e67a94": "pink", "#b399c8": "purple", "#8967aa": "purple", "#a57939": "brown",
    "#6a462f": "brown", "#1e50a0": "blue", "#781e32": "red", "#186648": "green",
    "#00c0c0": "cyan", "#c000c0": "pink", "#600060": "purple",
}  # fmt: skip


def test_color_names_of_the_openmoji_palette():
    rgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in OPENMOJI_COLOURS], np.uint8)
    assert [COLOR_NAMES[i] for i in color_names(rgb)] == list(OPENMOJI_COLOURS.values())


def _drawing() -> tuple[np.ndarray, np.ndarray]:
    """Page with a black-outlined box: inside 60 px red, 20 px white (e.g. an eye)."""
    image = np.full((20, 20, 3), 255, np.uint8)
    lines = np.zeros((20, 20), bool)
    lines[4, 4:14] = lines[13, 4:14] = lines[4:14, 4] = lines[4:14, 13] = True
    image[lines] = 0
    image[5:11, 5:13] = (220, 20, 20)  # 6×8 = 48 ... plus below
    image[11:13, 5:11] = (220, 20, 20)  # +12 = 60 px red
    return image, lines  # 2×2 = 4 px white at [11:13, 11:13]


def test_color_shares_ignore_page_and_lines_and_sum_to_one():
    image, lines = _drawing()
    shares = dict(zip(COLOR_NAMES, color_shares(image, line_mask=lines), strict=True))
    assert shares["red"] == pytest.approx(60 / 64) and shares["white"] == pytest.approx(4 / 64)
    assert sum(shares.values()) == pytest.approx(1.0)
    with_lines = dict(zip(COLOR_NAMES, color_shares(image), strict=True))
    assert with_lines["black"] == pytest.approx(36 / 100)  # the outline counts without a mask


def test_color_shares_of_a_blank_page_are_zero():
    assert color_shares(np.full((8, 8, 3), 255, np.uint8)).sum() == 0


def test_background_is_only_the_white_touching_the_border():
    image, _ = _drawing()
    mask = background_mask(image)
    assert mask[0, 0] and mask[19, 19] and not mask[12, 12] and not mask[4, 4]
    assert mask.sum() == 400 - 100  # everything outside the 10×10 box


def test_tag_vector_follows_the_vocabulary():
    vocabulary = ["color:red", "group:flags", "skintone:3"]
    vector = tag_vector({"skintone:3": 1.0, "color:red": 0.25}, vocabulary)
    assert torch.equal(vector, torch.tensor([0.25, 0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown tag 'group:cats'"):
        tag_vector({"group:cats": 1.0}, vocabulary)
