"""A plain folder of colour images; sketches are drawn on the fly by a line extractor.

The default extractor is XDoG with Ci et al.'s §4.1 settings (σ ∈ {0.3, 0.4, 0.5} drawn per
image). Any module mapping colour [B, 3, H, W] in [-1, 1] to a sketch [B, 1, H, W] in [-1, 1]
can replace it, e.g. the learned line extractor of Cao et al. §III-A.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from colorize.xdog import XDoG
from train.data.base import ConditionedDataset, find_images, open_image
from train.data.sample import CONDITIONS, SampleOptions


class ImageFolderDataset(ConditionedDataset):
    """Colour images in a folder (searched recursively) with extracted sketches.

    Args:
        line_extractor: [B, 3, H, W] → [B, 1, H, W], both in [-1, 1]; None = XDoG with
            `options.xdog_sigmas`. It runs without gradients inside the data loader, on the CPU.
        Others: as `ConditionedDataset`; the tag vocabulary is the colour tags only.
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 128,
        conditions: Sequence[str] = CONDITIONS,
        augment: bool = True,
        options: SampleOptions | None = None,
        line_extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(root, size, conditions, augment, options)
        self.files = find_images(self.root)
        self.line_extractor = line_extractor or XDoG(self.options.xdog_sigmas)
        if "colorific" in self.conditions:
            self.build_colorific_index()

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, index: int) -> str:
        return str(self.files[index].relative_to(self.root))

    def read(self, index: int) -> tuple[None, Image.Image]:
        return None, open_image(self.files[index], "RGB")

    def make_sketch(self, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sketch = self.line_extractor(target[None])
        if tuple(sketch.shape) != (1, 1, *target.shape[1:]):
            raise ValueError(
                f"line_extractor must map [1, 3, H, W] to [1, 1, H, W], got {tuple(sketch.shape)}"
            )
        return sketch[0].float().clamp(-1, 1)
