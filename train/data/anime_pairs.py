"""The Kaggle "Anime Sketch Colorization Pair" layout (Kim 2018), used by Cao and Khang et al.

Each file holds a colour illustration and its sketch side by side (1024×512 in the original,
colour on the left). `split_pair` does not trust the order: of the two halves, the sketch is
the one with the lower mean HSV saturation; when both are about equally grey (means within
0.02, e.g. a monochrome illustration) it is the one with the larger share of near-white pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from train.data.base import ConditionedDataset, find_images, open_image
from train.data.sample import CONDITIONS, SampleOptions

SATURATION_TIE = 0.02  # mean saturations closer than this are "equally grey"
NEAR_WHITE = 230  # luminance at or above which a pixel counts as paper


def split_pair(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """(sketch in mode "L", colour in "RGB") from one side-by-side pair image (rule: module doc)."""
    width, height = image.size
    if width < 2 * 4 or height < 4:
        raise ValueError(f"a pair image must be at least 8x4 pixels, got {width}x{height}")
    rgb = image.convert("RGB")
    half = width // 2
    halves = (rgb.crop((0, 0, half, height)), rgb.crop((width - half, 0, width, height)))
    saturation = [np.asarray(h.convert("HSV"))[..., 1].mean() / 255 for h in halves]
    if abs(saturation[0] - saturation[1]) >= SATURATION_TIE:
        sketch_side = int(saturation[1] < saturation[0])
    else:
        white = [(np.asarray(h.convert("L")) >= NEAR_WHITE).mean() for h in halves]
        sketch_side = int(white[1] > white[0])
    return halves[sketch_side].convert("L"), halves[1 - sketch_side]


class AnimePairDataset(ConditionedDataset):
    """Side-by-side colour/sketch pairs in a folder (searched recursively), e.g. `data/train`.

    Args: as `ConditionedDataset`; the tag vocabulary is the colour tags only.
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 128,
        conditions: Sequence[str] = CONDITIONS,
        augment: bool = True,
        options: SampleOptions | None = None,
    ) -> None:
        super().__init__(root, size, conditions, augment, options)
        self.files = find_images(self.root)
        if "colorific" in self.conditions:
            self.build_colorific_index()

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, index: int) -> str:
        return str(self.files[index].relative_to(self.root))

    def read(self, index: int) -> tuple[Image.Image, Image.Image]:
        return split_pair(open_image(self.files[index], "RGB"))
