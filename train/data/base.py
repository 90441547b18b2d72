"""What the three datasets share: robust file reading, paired augmentation, the conditions.

A subclass says how to read image `i` (`read`) and may override how its palette/tags and
colour-similar images are found; `ConditionedDataset.__getitem__` builds the sample of
`train.data.sample`. A file that cannot be read is skipped with one warning (per process)
and the next readable image is returned instead, so an epoch never crashes on a bad file.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from colorize.hints import simulate_hint
from colorize.image_tensors import image_to_tensor, tensor_to_array
from colorize.palette import palette_kmeans
from colorize.tags import COLOR_TAGS, color_shares, tag_vector
from colorize.xdog import XDoG
from train.data.augment import color_jitter, paired_crop_flip
from train.data.colorific import colour_similar, lab_histogram
from train.data.sample import SampleOptions, check_conditions, check_size
from train.data.tps import random_tps

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
BAD_FILE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_HISTOGRAM_SIDE = 64  # colour histograms for the colorific index are taken on thumbnails


def find_images(root: str | Path) -> list[Path]:
    """Image files under `root` (recursively, sorted); a ValueError if there are none."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    return files


def open_image(path: Path, mode: str) -> Image.Image:
    """The fully decoded image at `path` in PIL `mode` (errors surface here, not later)."""
    with Image.open(path) as image:
        image.load()
        return image.convert(mode)


def _jitter(image: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    return color_jitter(
        image,
        brightness=opts.brightness,
        contrast=opts.contrast,
        saturation=opts.saturation,
        hue=opts.hue,
    )


def fit_square(image: Image.Image, side: int) -> Image.Image:
    """Centre crop to a square and resize to side×side (bicubic, antialiased when shrinking)."""
    return ImageOps.fit(image, (side, side), method=Image.Resampling.BICUBIC)


class ConditionedDataset(Dataset, ABC):
    """Base of the datasets: one sample = sketch, target and the selected conditions.

    Args:
        root: the dataset folder (named in errors and warnings).
        size: square side of every image (a multiple of 4).
        conditions: which of `CONDITIONS` to compute.
        augment: random crop and flip (sketch and target together); off for evaluation.
        options: augmentation and condition settings (None = the defaults).
    """

    vocabulary: list[str]

    def __init__(
        self,
        root: str | Path,
        size: int,
        conditions: Sequence[str],
        augment: bool,
        options: SampleOptions | None,
    ) -> None:
        self.root = Path(root)
        self.size = check_size(size)
        self.conditions = check_conditions(conditions)
        self.augment = augment
        self.options = options or SampleOptions()
        self.vocabulary = list(COLOR_TAGS)
        self._xdog = XDoG(self.options.xdog_sigmas)
        self._bad: set[int] = set()
        self._statistics: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._similar: list[list[int]] | None = None

    # ---------------------------------------------------------------- subclass interface

    @abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abstractmethod
    def item_id(self, index: int) -> str:
        """A readable, unique name of image `index` (file path or emoji hexcode)."""

    @abstractmethod
    def read(self, index: int) -> tuple[Image.Image | None, Image.Image]:
        """(sketch in mode "L", or None to draw one from the colour image; colour in "RGB")."""

    def make_sketch(self, target: torch.Tensor) -> torch.Tensor:
        """Sketch [1, H, W] of a target [3, H, W], for datasets whose `read` returns no sketch."""
        raise TypeError(f"{type(self).__name__} reads its sketches from files")

    def statistics(
        self, index: int, color: np.ndarray, sketch: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(palette [27], tags [T]) of image `index` from its uint8 colour [H, W, 3] and sketch."""
        palette = palette_kmeans(color, seed=self.options.seed)
        shares = color_shares(color, line_mask=sketch < 128)
        return palette, tag_vector(dict(zip(COLOR_TAGS, shares, strict=True)), self.vocabulary)

    def colorific_candidates(self, index: int) -> list[int]:
        """Indices of colour-similar images of other drawings, most similar first."""
        if self._similar is None:
            raise RuntimeError(f"{type(self).__name__} did not build its colorific index")
        return self._similar[index]

    def build_colorific_index(self) -> None:
        """Lab histograms of every image, clustered once (Cui et al. §3.3.2).

        Subclasses that read images from files call this at the end of `__init__` when the
        "colorific" condition is on, so DataLoader workers inherit it instead of each
        recomputing it.
        """
        histograms, readable = [], []
        for i in tqdm(range(len(self)), desc=f"colour histograms of {self.root.name}", leave=False):
            try:
                _, color = self.read(i)
            except BAD_FILE_ERRORS as exc:
                self._skip(i, exc)
                continue
            histograms.append(lab_histogram(np.asarray(fit_square(color, _HISTOGRAM_SIDE))))
            readable.append(i)
        similar: list[list[int]] = [[] for _ in range(len(self))]
        if histograms:
            neighbours = colour_similar(
                np.stack(histograms),
                [self.item_id(i) for i in readable],
                neighbours=self.options.colorific_neighbours,
                seed=self.options.seed,
            )
            for i, found in zip(readable, neighbours, strict=True):
                similar[i] = [readable[j] for j in found]
        self._similar = similar

    # ---------------------------------------------------------------- sample assembly

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            if i in self._bad:
                continue
            try:
                sketch, color = self.read(i)
            except BAD_FILE_ERRORS as exc:
                self._skip(i, exc)
                continue
            return self._sample(i, sketch, color)
        raise RuntimeError(f"no readable image left in {self.root}")

    def _skip(self, index: int, exc: Exception) -> None:
        self._bad.add(index)
        logger.warning("skipping unreadable image %s: %s", self.item_id(index), exc)

    def _sample(
        self, index: int, sketch_image: Image.Image | None, color_image: Image.Image
    ) -> dict:
        opts = self.options
        side = round(self.size * opts.crop_scale) if self.augment else self.size
        color = fit_square(color_image, side)
        target = image_to_tensor(color)
        sketch = (
            image_to_tensor(fit_square(sketch_image, side)) if sketch_image is not None else None
        )
        if {"palette", "tags"} & set(self.conditions) and index not in self._statistics:
            lines = sketch if sketch is not None else self.make_sketch(target)
            lines_u8 = tensor_to_array(lines)[..., 0]
            self._statistics[index] = self.statistics(index, np.asarray(color), lines_u8)
        if self.augment:
            pair = [target] if sketch is None else [target, sketch]
            pair = paired_crop_flip(pair, self.size, flip=opts.flip)
            target, sketch = pair[0], (pair[1] if sketch is not None else None)
        if sketch is None:
            sketch = self.make_sketch(target)

        sample: dict = {"sketch": sketch, "target": target}
        if "reference" in self.conditions:
            if opts.jitter_target:
                target = sample["target"] = _jitter(target, opts)
                sample["reference"] = random_tps(target, opts.tps_strength, grid=opts.tps_grid)
            else:
                warped = random_tps(target, opts.tps_strength, grid=opts.tps_grid)
                sample["reference"] = _jitter(warped, opts)
        if "hint" in self.conditions:
            sample["hint"] = simulate_hint(target, std=opts.hint_std)
        if "palette" in self.conditions:
            sample["palette"] = self._statistics[index][0]
        if "tags" in self.conditions:
            sample["tags"] = self._statistics[index][1]
        if "structure" in self.conditions:
            sample["structure"] = self._xdog(target[None])[0]
        if "colorific" in self.conditions:
            sample["colorific"] = self._colorific(index, target)
        sample["meta"] = {"id": self.item_id(index)}
        return sample

    def _colorific(self, index: int, target: torch.Tensor) -> torch.Tensor:
        """A colour-similar other image at `size`, drawn at random; the target if there is none."""
        candidates = [j for j in self.colorific_candidates(index) if j not in self._bad]
        while candidates:
            j = candidates.pop(int(torch.randint(len(candidates), ())))
            try:
                _, color = self.read(j)
            except BAD_FILE_ERRORS as exc:
                self._skip(j, exc)
                continue
            return image_to_tensor(fit_square(color, self.size))
        return target.clone()
