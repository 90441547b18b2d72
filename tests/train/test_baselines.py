"""The non-learned baselines on drawn cases with known answers: two closed squares, a
reference with two colours, and hint strokes."""

import numpy as np
import pytest
import torch

from train.baselines import BASELINES, closed_regions, palette_positions

SIDE = 40
LEFT = (slice(10, 21), slice(4, 17))  # rows, columns of the left square's outline
RIGHT = (slice(10, 21), slice(23, 36))


def _outline(image: torch.Tensor, box: tuple[slice, slice]) -> None:
    rows, cols = box
    image[..., rows.start, cols] = -1
    image[..., rows.stop - 1, cols] = -1
    image[..., rows, cols.start] = -1
    image[..., rows, cols.stop - 1] = -1


def _inside(box: tuple[slice, slice]) -> tuple[slice, slice]:
    rows, cols = box
    return slice(rows.start + 1, rows.stop - 1), slice(cols.start + 1, cols.stop - 1)


@pytest.fixture
def two_squares() -> torch.Tensor:
    """Sketch [1, 1, 40, 40] in [-1, 1]: white paper, two closed black squares."""
    sketch = torch.ones(1, 1, SIDE, SIDE)
    _outline(sketch, LEFT)
    _outline(sketch, RIGHT)
    return sketch


def _rgb(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(3, 1, 1) * 2 - 1


def test_closed_regions_are_the_squares_and_the_outside_is_paper(two_squares):
    labels, count = closed_regions(((two_squares[0, 0] + 1) / 2).numpy())
    assert count == 2
    assert len(np.unique(labels[_inside(LEFT)])) == 1 and labels[_inside(LEFT)][0, 0] > 0
    assert labels[_inside(LEFT)][0, 0] != labels[_inside(RIGHT)][0, 0]
    assert (labels[:5] == 0).all() and (labels[LEFT[0], LEFT[1].start] == 0).all()


def test_a_diagonal_line_closes_a_region():
    sketch = np.ones((8, 8))
    for i in range(8):
        sketch[i, 7 - i] = 0  # anti-diagonal: only 8-connected across it
    labels, count = closed_regions(sketch)
    assert count == 0  # both halves touch the border: paper, not regions
    sketch[0, :] = sketch[:, 0] = 0  # close the upper-left triangle
    labels, count = closed_regions(sketch)
    assert count == 1 and labels[1, 1] == 1 and labels[6, 6] == 0


def test_palette_positions_place_each_colour_at_its_pixels():
    reference = np.full((20, 20, 3), 255, np.uint8)
    reference[2:6, 2:6] = (255, 0, 0)  # red around (3.5, 3.5)
    reference[12:18, 10:16] = (0, 0, 255)  # blue around (14.5, 12.5)
    colours, positions = palette_positions(reference)
    order = np.argsort(colours[:, 0])  # blue first
    np.testing.assert_allclose(colours[order], [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(positions[order], [[14.5 / 20, 12.5 / 20], [3.5 / 20, 3.5 / 20]])


def test_region_fill_takes_the_reference_colour_placed_nearest(two_squares):
    reference = torch.ones(1, 3, SIDE, SIDE)
    # two blobs, moved a little from the squares (as a TPS warp would), bigger one blue
    reference[0, :, 12:22, 2:14] = _rgb(1, 0, 0)
    reference[0, :, 6:20, 22:38] = _rgb(0, 0, 1)
    out = BASELINES["regions"](two_squares, reference=reference)
    assert torch.equal(out[0, :, 15, 10], torch.tensor([1.0, -1.0, -1.0]))  # left: red
    assert (out[0][(slice(None), *_inside(LEFT))] == _rgb(1, 0, 0)).all()
    assert (out[0][(slice(None), *_inside(RIGHT))] == _rgb(0, 0, 1)).all()
    assert (out[0, :, LEFT[0].start, LEFT[1]] == -1).all()  # lines stay black
    assert (out[0, :, :5] == 1).all()  # the outside stays white


def test_region_fill_from_hints_uses_the_strokes_inside_each_region(two_squares):
    hint = torch.zeros(1, 4, SIDE // 4, SIDE // 4)
    hint[0, :3, 3, 2] = _rgb(0, 1, 0).flatten()  # cell rows 12–15, columns 8–11: left square
    hint[0, :3, 4, 2] = _rgb(0, 0, 1).flatten()  # rows 16–19, same columns: left square too
    hint[0, 3, 3:5, 2] = 1
    out = BASELINES["regions-hints"](two_squares, hint=hint)
    assert (out[0][(slice(None), *_inside(LEFT))] == _rgb(0, 0.5, 0.5)).all()  # mean of the two
    assert (out[0][(slice(None), *_inside(RIGHT))] == 1).all()  # no stroke: white
    assert (out[0, :, RIGHT[0].start, RIGHT[1]] == -1).all()


def test_mean_fill_is_the_reference_mean_under_the_lines(two_squares):
    reference = torch.ones(1, 3, SIDE, SIDE)
    reference[0, :, :, : SIDE // 2] = _rgb(1, 0, 0)  # half red, half white: mean (1, .5, .5)
    out = BASELINES["mean"](two_squares, reference=reference)
    expected = _rgb(1, 0.5, 0.5).flatten()
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    torch.testing.assert_close(out[0, :, 15, 10], expected)
    assert (out[0, :, LEFT[0].start, LEFT[1]] == -1).all()


def test_white_fill_is_the_sketch_itself(two_squares):
    out = BASELINES["white"](two_squares)
    assert torch.equal(out, two_squares.expand(-1, 3, -1, -1))


def test_baselines_reject_missing_or_unused_conditions(two_squares):
    with pytest.raises(ValueError, match="reference was missing"):
        BASELINES["regions"](two_squares)
    with pytest.raises(ValueError, match="hint was given"):
        BASELINES["white"](two_squares, hint=torch.zeros(1, 4, 10, 10))
