"""Non-learned baselines that every learned method is compared against (evaluation issue).

Each baseline takes the sketch [B, 1, H, W] and the conditions it names (images in [-1, 1])
and returns an image [B, 3, H, W] in [-1, 1]; the sketch is multiplied in at the end, so
lines stay dark and only the paper between them is coloured:

    white          the sketch itself as an RGB image (nothing coloured)
    mean           a flat fill with the reference's mean colour over all its pixels (the
                   constant image closest, in L2, to the reference)
    regions        closed regions of the sketch (connected non-line pixels, not touching the
                   border) each filled with the reference's k-means colour (Khang et al. §3.1,
                   k = 9) whose pixels' centroid in the reference is nearest the region's centroid
    regions-hints  the same regions, each filled with the mean colour of the hint strokes
                   inside it (Ci et al.'s hints); regions without strokes stay white
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from colorize.background import background_mask
from colorize.hints import HINT_SCALE
from colorize.image_tensors import tensor_to_array
from colorize.kmeans import nearest_centroid
from colorize.palette import palette_kmeans

LINE_LEVEL = 0.5  # sketch pixels darker than this (in [0, 1]) are lines
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _shade(sketch: torch.Tensor) -> torch.Tensor:
    """The sketch [B, 1, H, W] in [-1, 1] as a multiplier in [0, 1] (paper 1, lines 0)."""
    if sketch.dim() != 4 or sketch.shape[1] != 1:
        raise ValueError(f"sketch must be [B, 1, H, W], got {tuple(sketch.shape)}")
    return (sketch.clamp(-1, 1) + 1) / 2


def _compose(fill: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
    """Fill colours [B, 3, H, W] in [0, 1] under the sketch's lines (multiply), in [-1, 1]."""
    return (fill * _shade(sketch)) * 2 - 1


def closed_regions(sketch: np.ndarray, line_level: float = LINE_LEVEL) -> tuple[np.ndarray, int]:
    """Labels [H, W] of the closed regions of one sketch [H, W] in [0, 1] (1 = paper).

    Regions are 4-connected components of non-line pixels (4-connectivity, so a diagonal
    line still closes a region); components touching the image border are the paper outside
    the drawing and get label 0, like line pixels. Returns (labels, number of regions).
    """
    paper = sketch >= line_level
    labels, count = ndimage.label(paper, structure=_FOUR_CONNECTED)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    labels[np.isin(labels, border[border > 0])] = 0
    kept = np.unique(labels[labels > 0])
    relabel = np.zeros(count + 1, dtype=labels.dtype)
    relabel[kept] = np.arange(1, len(kept) + 1)
    return relabel[labels], len(kept)


def _centroids(labels: np.ndarray, count: int) -> np.ndarray:
    """Mean (row, column) of each label 1..count, in units of the image side: [count, 2]."""
    if count == 0:
        return np.zeros((0, 2))
    rows, cols = np.indices(labels.shape)
    index = np.arange(1, count + 1)
    centre = np.stack(
        [ndimage.mean(rows, labels, index), ndimage.mean(cols, labels, index)], axis=1
    )
    return centre / max(labels.shape)


def palette_positions(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The k-means palette of a uint8 reference [H, W, 3] (colorize.palette) and where each
    colour sits: (colours [n, 3] in [0, 1], centroids [n, 2] of their pixels, in units of
    the side). Every non-background pixel joins its nearest palette colour; colours that no
    pixel joins (the palette's white padding) are dropped, so n <= 9."""
    palette = (palette_kmeans(reference).numpy().reshape(-1, 3) + 1) / 2  # (9, 3) in [0, 1]
    drawing = ~background_mask(reference)
    if not drawing.any():
        return np.zeros((0, 3)), np.zeros((0, 2))
    members = np.zeros(reference.shape[:2], dtype=np.int64)
    members[drawing] = 1 + nearest_centroid(reference[drawing] / 255, palette)
    present = np.unique(members[drawing])
    rows, cols = np.indices(members.shape)
    centre = np.stack(
        [ndimage.mean(rows, members, present), ndimage.mean(cols, members, present)], axis=1
    )
    return palette[present - 1], centre / max(members.shape)


def region_fill_reference(sketch: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Fill colours [H, W, 3] in [0, 1] for one sketch [H, W] in [0, 1]: each closed region
    takes the palette colour of `reference` (uint8 [H, W, 3]) whose centroid is nearest its
    own; the outside and the lines stay white (lines are multiplied in later)."""
    labels, count = closed_regions(sketch)
    fill = np.ones((*sketch.shape, 3))
    colours, positions = palette_positions(reference)
    if count == 0 or len(colours) == 0:
        return fill
    nearest = nearest_centroid(_centroids(labels, count), positions)
    lookup = np.vstack([np.ones((1, 3)), colours[nearest]])  # label 0 -> white
    return lookup[labels]


def region_fill_hint(sketch: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Fill colours [H, W, 3] in [0, 1] for one sketch [H, W] in [0, 1]: each closed region
    takes the mean colour of the hint cells inside it (hint [4, H/4, W/4] as in
    colorize.hints, upsampled by nearest neighbour); regions without strokes stay white."""
    labels, count = closed_regions(sketch)
    fill = np.ones((*sketch.shape, 3))
    mask = np.kron(hint[3], np.ones((HINT_SCALE, HINT_SCALE))) > 0.5
    colours = np.kron(hint[:3], np.ones((1, HINT_SCALE, HINT_SCALE))).transpose(1, 2, 0)
    colours = (colours + 1) / 2
    stroked = labels * mask
    if count == 0 or not stroked.any():
        return fill
    index = np.arange(1, count + 1)
    sums = np.stack([ndimage.sum(colours[..., c], stroked, index) for c in range(3)], axis=1)
    counts = ndimage.sum(np.ones_like(stroked), stroked, index)[:, None]
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    lookup = np.vstack([np.ones((1, 3)), means])
    return lookup[labels]


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A non-learned colorizer: its name, the conditions it reads, and what it does."""

    name: str
    conditions: tuple[str, ...]
    description: str

    def __call__(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image [B, 3, H, W] in [-1, 1] from sketch [B, 1, H, W] and the named conditions."""
        for key, value in (("reference", reference), ("hint", hint)):
            if (key in self.conditions) != (value is not None):
                raise ValueError(
                    f"baseline {self.name!r} reads {self.conditions or 'the sketch only'}; "
                    f"{key} was {'missing' if value is None else 'given'}"
                )
        shade = _shade(sketch)
        B, _, H, W = sketch.shape
        if reference is not None and tuple(reference.shape) != (B, 3, H, W):
            raise ValueError(f"reference must be {[B, 3, H, W]}, got {tuple(reference.shape)}")
        if self.name == "white":
            return shade.expand(-1, 3, -1, -1) * 2 - 1
        if self.name == "mean":
            mean = ((reference.clamp(-1, 1) + 1) / 2).mean(dim=(2, 3), keepdim=True)
            return _compose(mean.expand(-1, -1, H, W), sketch)
        fills = []
        for i in range(B):
            lines = shade[i, 0].double().cpu().numpy()
            if self.name == "regions":
                fills.append(region_fill_reference(lines, tensor_to_array(reference[i])))
            else:
                fills.append(region_fill_hint(lines, hint[i].double().cpu().numpy()))
        fill = torch.from_numpy(np.stack(fills)).permute(0, 3, 1, 2).to(sketch)
        return _compose(fill, sketch)


BASELINES: dict[str, Baseline] = {
    "white": Baseline("white", (), "the sketch itself"),
    "mean": Baseline("mean", ("reference",), "flat fill with the reference's mean colour"),
    "regions": Baseline(
        "regions",
        ("reference",),
        "closed regions filled with the nearest-placed k-means colour of the reference",
    ),
    "regions-hints": Baseline(
        "regions-hints", ("hint",), "closed regions filled with the hint strokes inside them"
    ),
}
