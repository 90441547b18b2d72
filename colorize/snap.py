"""Region snap: one colour per closed region of the line art, so no colour bleeds across a line.

Colour bleeding across lines is the artefact the seed papers hold against earlier methods
(Cao et al. §IV-C on Lee et al.; Khang et al. §1 and §4). Line art already says where colours
may change: at the lines. So after the network has coloured the image we

1. segment the sketch: dark pixels are lines; a small morphological closing of the lines
   bridges hairline gaps, and the connected components of the remaining (paper) pixels are
   the closed regions (4-connectivity). Artists also leave wider gaps (an outline that stops
   short of the mouth lets the face leak into the background), so a region is split further
   where a ball of radius `ball_radius` cannot pass ("trapped-ball" segmentation, Zhang et
   al. 2009, "Vectorizing cartoon animations", §4.1): the places the ball can reach form
   cores, and each pixel of the region joins the core it reaches in the fewest steps without
   crossing a line;
2. give every region one colour, the per-channel median of the network output inside it
   ("flat"), or keep the network's shading: its output low-pass filtered inside the region
   only, with outliers far from the region's median (bled colours) left out ("smooth");
3. let colour strokes win: a region a stroke touches gets exactly that stroke's colour;
4. fill line pixels with the nearest region's colour and multiply by the sketch's grey
   level, so the lines keep exactly the sketch's darkness (white paper multiplies by 1).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

LINE_LEVEL = 128  # grey level below which a sketch pixel is a line (for segmentation only)
STROKE_ALPHA = 128  # stroke pixels at least this opaque count when matching them to regions
STROKE_SHARE = 0.1  # a stroke claims every region that holds this share of its pixels
SNAP_MODES = ("flat", "smooth")
ANALYSIS_SIDE = 1024  # larger images are segmented on a block-reduced copy
OUTLIER_LEVEL = 96  # "smooth" ignores pixels this far (max over RGB) from their region's median


def gap_radius(height: int, width: int) -> int:
    """Radius of the closing that bridges hairline gaps: 1 px per 256 px of the longer side."""
    return max(1, round(max(height, width) / 256))


def ball_radius(height: int, width: int) -> int:
    """Radius of the trapped ball: 1 px per 50 px of the longer side (5 px at 256 px, enough
    for the gaps OpenMoji's hand-drawn outlines leave), at least 2."""
    return max(2, round(max(height, width) / 50))


def _close(lines: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing of the line mask with a disk (through distance transforms, so the
    cost does not grow with the radius); lines at the border are not eroded away."""
    padded = np.pad(lines, radius + 1)
    reach = radius + 0.5  # the digital disk: radius 1 is the 3×3 square, so 2 px gaps close
    dilated = ndimage.distance_transform_edt(~padded) <= reach
    closed = ndimage.distance_transform_edt(dilated) > reach
    return closed[radius + 1 : -radius - 1, radius + 1 : -radius - 1] | lines


def segment_regions(
    sketch: np.ndarray, gap: int | None = None, ball: int | None = None
) -> tuple[np.ndarray, int]:
    """Regions of a greyscale uint8 [H, W] sketch (white paper, dark lines).

    Args:
        sketch: uint8 [H, W], lines darker than `LINE_LEVEL`.
        gap: radius of the closing applied to the lines (None: `gap_radius`; 0: none).
        ball: trapped-ball radius that splits regions at wider gaps (None: `ball_radius`;
            0: no splitting).
    Returns:
        int32 labels [H, W] (0 on the closed lines, 1 … n on the regions) and n.
    """
    if sketch.ndim != 2 or sketch.dtype != np.uint8:
        raise ValueError(f"sketch must be uint8 [H, W], got {sketch.dtype} {sketch.shape}")
    gap = gap_radius(*sketch.shape) if gap is None else gap
    ball = ball_radius(*sketch.shape) if ball is None else ball
    if gap < 0 or ball < 0:
        raise ValueError(f"gap and ball radii must be >= 0, got {gap} and {ball}")
    lines = sketch < LINE_LEVEL
    if gap:
        lines = _close(lines, gap)
    free = ~lines
    regions, count = ndimage.label(free)
    if not ball or count == 0:
        return regions.astype(np.int32), int(count)
    # cores: where the ball fits (the paper goes on past the border, so pad with paper)
    padded = np.pad(free, ball + 1, constant_values=True)
    core = ndimage.distance_transform_edt(padded)[ball + 1 : -ball - 1, ball + 1 : -ball - 1]
    cores, n_cores = ndimage.label(core > ball)
    if n_cores == 0:
        return regions.astype(np.int32), int(count)
    core_region = np.zeros(n_cores + 1, dtype=np.int64)
    core_region[cores.ravel()] = regions.ravel()  # a core lies inside one region
    core_region = core_region[1:]
    labels = regions.astype(np.int32)
    boxes = ndimage.find_objects(regions)
    for region in np.flatnonzero(np.bincount(core_region, minlength=count + 1) >= 2):
        box = boxes[region - 1]
        inside = regions[box] == region
        grown = _grow(np.where(inside, cores[box], 0), inside, steps=4 * ball)
        labels[box] = np.where(inside, grown + count, labels[box])  # new labels above count
    used = np.zeros(int(labels.max()) + 1, dtype=bool)
    used[labels] = True
    used[0] = False
    compact = np.zeros(len(used), dtype=np.int32)
    compact[used] = np.arange(1, used.sum() + 1)  # labels 1 … n, 0 stays on the lines
    return compact[labels], int(used.sum())


def _grow(seeds: np.ndarray, inside: np.ndarray, steps: int) -> np.ndarray:
    """Grow labelled seeds one pixel per step (4-neighbours) through `inside` only, so a pixel
    gets the seed it is fewest steps from (ties: the larger label); after `steps` steps the
    pixels still unreached (thin ends far from every core) take the nearest seed pixel."""
    cross = ndimage.generate_binary_structure(2, 1)
    seeds = seeds.copy()
    for _ in range(steps):
        reached = ndimage.grey_dilation(seeds, footprint=cross)
        new = inside & (seeds == 0) & (reached > 0)
        if not new.any():
            return seeds
        seeds[new] = reached[new]
    unreached = inside & (seeds == 0)
    if unreached.any():
        nearest = ndimage.distance_transform_edt(
            seeds == 0, return_distances=False, return_indices=True
        )
        seeds[unreached] = seeds[tuple(nearest)][unreached]
    return seeds


def _region_medians(labels: np.ndarray, colors: np.ndarray, count: int) -> np.ndarray:
    """float [count + 1, 3]: per-channel median of `colors` over each region (row 0 unused)."""
    flat = labels.ravel()
    inside = flat > 0
    region = flat[inside]
    sizes = np.bincount(region, minlength=count + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    present = sizes > 0
    middle = (starts + (sizes - 1) // 2)[present]
    medians = np.zeros((count + 1, 3))
    for channel in range(3):
        values = colors[..., channel].ravel()[inside]
        key = region.astype(np.int64) * 256 + values  # sorts by region, then by value
        medians[present, channel] = np.sort(key)[middle] % 256
    return medians


def _smooth_inside_regions(
    labels: np.ndarray, colors: np.ndarray, fill: np.ndarray, sigma: float
) -> np.ndarray:
    """`fill` (the region medians) with each large region replaced by `colors` Gaussian-filtered
    inside that region only, ignoring outliers: a normalised convolution whose weights are 0
    across lines and on pixels farther than `OUTLIER_LEVEL` from the median (bled colours), so
    shading survives and bleeding does not."""
    out = fill.copy()
    min_area = int((4 * sigma) ** 2)  # smaller regions stay flat
    sizes = np.bincount(labels.ravel())
    inlier = np.abs(colors - fill).max(axis=-1) <= OUTLIER_LEVEL
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or sizes[index] < min_area:
            continue
        region = labels[box] == index
        weights = (region & inlier[box]).astype(np.float64)
        norm = ndimage.gaussian_filter(weights, sigma, mode="constant")
        for channel in range(3):
            total = ndimage.gaussian_filter(colors[box][..., channel] * weights, sigma,
                                            mode="constant")  # fmt: skip
            smooth = np.where(norm > 1e-6, total / np.maximum(norm, 1e-6), fill[box][..., channel])
            out[box][..., channel] = np.where(region, smooth, out[box][..., channel])
    return out


def _stroke_colors(labels: np.ndarray, count: int, strokes: np.ndarray) -> dict[int, np.ndarray]:
    """{region: exact RGB} for the regions the strokes of an RGBA [H, W, 4] layer claim.

    Each connected stroke claims the region holding most of its pixels and every region
    holding at least `STROKE_SHARE` of them (a scribble that slips over a line does not paint
    the neighbour); a region's colour is the most frequent opaque stroke colour inside it.
    """
    painted = strokes[..., 3] >= STROKE_ALPHA
    components, n_strokes = ndimage.label(painted)
    claimed = np.zeros(count + 1, dtype=bool)
    for stroke in range(1, n_strokes + 1):
        touched = labels[components == stroke]
        touched = touched[touched > 0]
        if touched.size == 0:
            continue  # painted on the lines only
        per_region = np.bincount(touched, minlength=count + 1)
        claimed[per_region >= STROKE_SHARE * touched.size] = True
        claimed[np.argmax(per_region)] = True
    claimed[0] = False
    pixels = painted & claimed[labels]
    codes = strokes[..., :3].astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    result: dict[int, np.ndarray] = {}
    for region in np.flatnonzero(claimed):
        values, counts = np.unique(codes[pixels & (labels == region)], return_counts=True)
        code = values[np.argmax(counts)]
        result[int(region)] = np.array([code >> 16, (code >> 8) & 255, code & 255], float)
    return result


def _blocks(array: np.ndarray, factor: int, fill: int) -> np.ndarray:
    """[H, W, ...] -> [H/f, W/f, f*f, ...] blocks (edges padded with `fill`)."""
    height, width = array.shape[:2]
    pad = [(0, -height % factor), (0, -width % factor)] + [(0, 0)] * (array.ndim - 2)
    array = np.pad(array, pad, constant_values=fill)
    h, w = array.shape[0] // factor, array.shape[1] // factor
    blocks = array.reshape(h, factor, w, factor, *array.shape[2:]).swapaxes(1, 2)
    return blocks.reshape(h, w, factor * factor, *array.shape[2:])


def _downscale(
    sketch: np.ndarray, colors: np.ndarray, strokes: np.ndarray | None, factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The analysis copies of a large image: the darkest pixel per block (lines survive),
    the mean colour, and each block's most opaque stroke pixel (its colour stays exact)."""
    small_sketch = _blocks(sketch, factor, 255).min(axis=2)
    small_colors = _blocks(colors, factor, 255).mean(axis=2).round().astype(np.uint8)
    small_strokes = None
    if strokes is not None:
        blocks = _blocks(strokes, factor, 0)
        pick = blocks[..., 3].argmax(axis=2)[..., None, None]
        small_strokes = np.take_along_axis(blocks, pick, axis=2)[:, :, 0]
    return small_sketch, small_colors, small_strokes


def snap_to_regions(
    sketch: np.ndarray,
    colors: np.ndarray,
    strokes: np.ndarray | None = None,
    mode: str = "flat",
    gap: int | None = None,
    ball: int | None = None,
) -> np.ndarray:
    """Snap a coloured image to the regions of its sketch (see the module docstring).

    Images larger than `ANALYSIS_SIDE` are analysed on a block-reduced copy (each side
    divided by an integer f) and the region colours painted back at full size, so region
    borders are placed to within f px under the lines; the line darkness stays exact.

    Args:
        sketch: uint8 [H, W] greyscale line art (white paper, dark lines).
        colors: uint8 [H, W, 3], the network's colours at the sketch's size.
        strokes: optional uint8 [H, W, 4] RGBA layer of user strokes (alpha 0 = unpainted);
            a region a stroke claims gets the stroke's colour exactly.
        mode: "flat" (per-region median) or "smooth" (Gaussian inside each region).
        gap, ball: closing and trapped-ball radii at the analysis size (see
            `segment_regions`).
    Returns:
        uint8 [H, W, 3]: region colours times the sketch's grey level / 255.
    """
    if mode not in SNAP_MODES:
        raise ValueError(f"snap mode must be one of {SNAP_MODES}, got {mode!r}")
    if sketch.ndim != 2 or sketch.dtype != np.uint8:
        raise ValueError(f"sketch must be uint8 [H, W], got {sketch.dtype} {sketch.shape}")
    if colors.shape != (*sketch.shape, 3) or colors.dtype != np.uint8:
        raise ValueError(
            f"colors must be uint8 {[*sketch.shape, 3]}, got {colors.dtype} {list(colors.shape)}"
        )
    if strokes is not None and (strokes.shape != (*sketch.shape, 4) or strokes.dtype != np.uint8):
        raise ValueError(
            f"strokes must be uint8 {[*sketch.shape, 4]}, got {strokes.dtype} {list(strokes.shape)}"
        )
    height, width = sketch.shape
    factor = -(-max(height, width) // ANALYSIS_SIDE)
    small = (
        (sketch, colors, strokes) if factor == 1 else _downscale(sketch, colors, strokes, factor)
    )
    small_sketch, small_colors, small_strokes = small
    labels, count = segment_regions(small_sketch, gap, ball)
    if count == 0:
        logger.info("snap: the sketch has no closed region; colours left as they are")
        return colors.copy()
    region_colors = _region_medians(labels, small_colors, count)
    stroked = _stroke_colors(labels, count, small_strokes) if small_strokes is not None else {}
    for region, color in stroked.items():
        region_colors[region] = color
    # line pixels (label 0) take the colour of the nearest region
    nearest = ndimage.distance_transform_edt(
        labels == 0, return_distances=False, return_indices=True
    )
    filled_labels = labels[tuple(nearest)]
    fill = region_colors[filled_labels]
    if mode == "smooth":
        sigma = max(1.0, max(small_sketch.shape) / 128)
        smooth = _smooth_inside_regions(labels, small_colors.astype(np.float64), fill, sigma)
        keep_flat = np.zeros(count + 1, dtype=bool)
        keep_flat[list(stroked)] = True  # stroke colours stay exact
        fill = np.where(keep_flat[filled_labels][..., None], fill, smooth)
    fill = np.clip(np.round(fill), 0, 255).astype(np.uint8)
    if factor > 1:
        fill = fill.repeat(factor, axis=0).repeat(factor, axis=1)[:height, :width]
    # multiply by the grey level, rounded: paper (255) keeps the colour exactly
    shaded = (fill.astype(np.uint16) * sketch[..., None] + 127) // 255
    return shaded.astype(np.uint8)
