"""Region snap on drawn cases with known answers: gap closing, trapped-ball splitting, flat and
smooth colours, exact stroke colours, line darkness, the block-reduced path for large images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from colorize.snap import ANALYSIS_SIDE, segment_regions, snap_to_regions

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (0, 180, 60)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def two_rooms(size: int = 64, gap: int = 0) -> np.ndarray:
    """A frame split by a vertical wall (lines 2 px wide) with a `gap` px opening in the wall."""
    sketch = np.full((size, size), 255, np.uint8)
    sketch[4:6, 4 : size - 4] = sketch[size - 6 : size - 4, 4 : size - 4] = 0
    sketch[4 : size - 4, 4:6] = sketch[4 : size - 4, size - 6 : size - 4] = 0
    wall = size // 2
    sketch[4 : size - 4, wall : wall + 2] = 0
    if gap:
        middle = size // 2
        sketch[middle : middle + gap, wall : wall + 2] = 255
    return sketch


def bleeding_colours(size: int = 64, bleed: int = 4) -> np.ndarray:
    """Network-like colours: red left, blue right, with each colour bleeding `bleed` px over
    the wall into the other room (fewer than half of its pixels, so the median is known)."""
    colours = np.zeros((size, size, 3), np.uint8)
    wall = size // 2
    colours[:, : wall + 1 + bleed] = RED
    colours[:, wall + 1 + bleed :] = BLUE
    colours[:, wall - bleed : wall + 1] = BLUE
    return colours


def test_closed_regions_are_the_rooms_and_the_outside():
    labels, count = segment_regions(two_rooms(), gap=0, ball=0)
    assert count == 3  # outside, left room, right room
    assert labels[32, 20] != labels[32, 44] and labels[0, 0] not in (labels[32, 20], 0)
    assert labels[32, 32] == 0, "line pixels are label 0"


def test_small_gaps_are_closed_by_the_closing():
    sketch = two_rooms(gap=2)
    assert segment_regions(sketch, gap=0, ball=0)[1] == 2, "without closing the rooms merge"
    labels, count = segment_regions(sketch, gap=1, ball=0)
    assert count == 3 and labels[20, 20] != labels[20, 44]


def test_wide_gaps_are_split_by_the_trapped_ball():
    sketch = two_rooms(size=128, gap=8)
    assert segment_regions(sketch, gap=1, ball=0)[1] == 2, "a closing of 1 px leaves 8 px open"
    labels, count = segment_regions(sketch, gap=1, ball=6)
    assert count == 3
    left, right = labels[30, 30], labels[30, 100]
    assert left != right
    # every room pixel joins its own room's core, the opening is shared out between them
    assert (labels[10:118, 10:60] == left).all() and (labels[10:118, 70:118] == right).all()


def test_a_drawing_without_lines_is_one_region():
    labels, count = segment_regions(np.full((20, 30), 255, np.uint8))
    assert count == 1 and (labels == 1).all()


def test_flat_snap_gives_each_region_its_median_and_keeps_lines_black():
    sketch = two_rooms()
    out = snap_to_regions(sketch, bleeding_colours())
    assert (out[8:56, 8:31] == RED).all(), "the blue that bled into the left room is gone"
    assert (out[8:56, 35:58] == BLUE).all(), "the red that bled into the right room is gone"
    assert (out[sketch == 0] == 0).all()


def test_lines_keep_the_sketch_darkness_by_multiplication():
    sketch = two_rooms()
    sketch[4:6, 10:20] = 128  # a grey (anti-aliased) stretch of the top line
    out = snap_to_regions(sketch, bleeding_colours(), gap=0, ball=0)
    # a line pixel takes the colour of its nearest region (here the room below), times grey
    expected = np.round(np.array(RED) * 128 / 255).astype(np.uint8)
    assert (out[5, 12] == expected).all()


def test_a_stroke_paints_its_region_exactly_and_wins_over_the_network():
    sketch = two_rooms()
    strokes = np.zeros((64, 64, 4), np.uint8)
    strokes[30:34, 44:50] = (*GREEN, 255)
    strokes[29, 43] = (*GREEN, 60)  # a faint anti-aliased edge does not decide anything
    out = snap_to_regions(sketch, bleeding_colours(), strokes)
    assert (out[8:56, 35:58] == GREEN).all()
    assert (out[8:56, 8:31] == RED).all()


def test_a_stroke_that_slips_over_a_line_claims_only_its_region():
    sketch = two_rooms()
    strokes = np.zeros((64, 64, 4), np.uint8)
    strokes[30:33, 30:56] = (*GREEN, 255)  # 2 of its 24 off-line columns are in the left room
    out = snap_to_regions(sketch, bleeding_colours(), strokes)
    assert (out[8:56, 35:58] == GREEN).all() and (out[8:56, 8:31] == RED).all()


def test_the_most_painted_stroke_colour_wins_a_region():
    strokes = np.zeros((64, 64, 4), np.uint8)
    strokes[10:20, 40:50] = (*GREEN, 255)
    strokes[40:42, 40:42] = (255, 255, 0, 255)
    out = snap_to_regions(two_rooms(), bleeding_colours(), strokes)
    assert (out[8:56, 35:58] == GREEN).all()


def test_smooth_snap_keeps_gradients_but_nothing_crosses_a_line():
    sketch = two_rooms(size=96)
    colours = np.zeros((96, 96, 3), np.uint8)
    colours[..., 0] = np.linspace(100, 250, 96).astype(np.uint8)[None, :]  # red ramp, left
    colours[:, 44:, :] = BLUE  # blue bleeds 4 px over the wall at x = 48
    out = snap_to_regions(sketch, colours, mode="smooth")
    left = out[10:86, 8:46]
    assert (left[..., 2] < 40).all(), "no blue inside the left room"
    assert left[:, -1, 0].mean() > left[:, 0, 0].mean() + 20, "the ramp survives"
    assert (out[10:86, 52:90] == BLUE).all()


def test_large_images_are_analysed_block_reduced_and_stay_exact_on_paper():
    size = ANALYSIS_SIDE + 100  # factor 2
    sketch = two_rooms(size=size)
    strokes = np.zeros((size, size, 4), np.uint8)
    strokes[500:540, 800:840] = (*GREEN, 255)
    out = snap_to_regions(sketch, bleeding_colours(size=size, bleed=8), strokes)
    wall = size // 2
    assert (out[10:-10, 10 : wall - 2] == RED).all()
    assert (out[10:-10, wall + 4 : -10] == GREEN).all()
    assert (out[sketch == 0] == 0).all()


def test_openmoji_face_is_not_flooded_through_its_open_outline():
    """examples/face-sketch.png: the outline stops short of the tongue, so without the trapped
    ball the face and the page are one region; the example strokes paint face and tongue."""
    sketch = np.asarray(Image.open(EXAMPLES / "face-sketch.png"))
    strokes = np.asarray(Image.open(EXAMPLES / "face-strokes.png"))
    grey = np.full((*sketch.shape, 3), 128, np.uint8)
    assert segment_regions(sketch, ball=0)[1] < segment_regions(sketch)[1]
    out = snap_to_regions(sketch, grey, strokes)
    assert (out[0, 0] == 128).all(), "the page keeps the network's colour"
    assert tuple(out[84, 126]) == (253, 216, 53), "the face is the yellow of its stroke"
    assert tuple(out[181, 182]) == (229, 57, 53), "the tongue is the red of its stroke"


@pytest.mark.parametrize(
    "sketch, colours, strokes, mode, message",
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), None, "flat", "sketch"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9, 3), np.uint8), None, "flat", "colors"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
         "flat", "strokes"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8), None, "blur", "snap mode"),
    ],
    ids=["rgb-sketch", "colour-size", "strokes-without-alpha", "mode"],
)  # fmt: skip
def test_bad_arguments_are_named(sketch, colours, strokes, mode, message):
    with pytest.raises(ValueError, match=message):
        snap_to_regions(sketch, colours, strokes, mode=mode)


def test_drawn_circle_with_pil_antialiasing_snaps_cleanly():
    image = Image.new("L", (80, 80), 255)
    ImageDraw.Draw(image).ellipse([10, 10, 70, 70], outline=0, width=3)
    sketch = np.asarray(image)
    colours = np.zeros((80, 80, 3), np.uint8)
    colours[:, :] = BLUE
    colours[14:66, 14:66] = RED  # the disc is red but for its rim; the red bled outside
    out = snap_to_regions(sketch, colours)
    assert (out[30:50, 30:50] == RED).all() and (out[0:5, 0:5] == BLUE).all()
