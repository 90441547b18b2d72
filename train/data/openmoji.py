"""The prepared OpenMoji folder (`python -m train.prepare_openmoji`): real paired line art.

OpenMoji (CC BY-SA 4.0, https://openmoji.org) draws every emoji twice, in colour and as black
line art of the same drawing, so the sketch is hand-drawn rather than extracted. Folder layout:

    metadata.json   items (hexcode, annotation, group, subgroup, tags, skintone, base_hexcode,
                    split, color/sketch paths, palette, color_shares, similar) and the
                    cross-reference pairs per split
    tags.json       the tag vocabulary (a JSON list)
    color/<hexcode>.png, sketch/<hexcode>.png, ATTRIBUTION.md
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from colorize.image_tensors import image_to_tensor
from colorize.tags import COLOR_NAMES, COLOR_TAGS, tag_vector
from train.data.base import ConditionedDataset, fit_square, open_image
from train.data.sample import CONDITIONS, SampleOptions, check_size

METADATA_FILE = "metadata.json"
TAGS_FILE = "tags.json"
SPLITS = ("train", "val", "test")
SKIN_TONES = range(6)  # 0 = the default yellow of an emoji with toned variants, 1–5 Fitzpatrick


def item_tags(item: Mapping) -> dict[str, float]:
    """Tag values of one metadata item: colour shares, skin tones, group and subgroup (one-hot)."""
    values = {f"color:{name}": float(item["color_shares"][name]) for name in COLOR_NAMES}
    values.update({f"skintone:{tone}": 1.0 for tone in item["skintone"]})
    values[f"group:{item['group']}"] = 1.0
    values[f"subgroup:{item['subgroup']}"] = 1.0
    return values


def tag_vocabulary(items: Iterable[Mapping]) -> list[str]:
    """The fixed vocabulary: colour tags, skin tones 0–5, then the sorted groups and subgroups."""
    items = list(items)
    groups = sorted({item["group"] for item in items})
    subgroups = sorted({item["subgroup"] for item in items})
    return [
        *COLOR_TAGS,
        *(f"skintone:{tone}" for tone in SKIN_TONES),
        *(f"group:{g}" for g in groups),
        *(f"subgroup:{s}" for s in subgroups),
    ]


def read_metadata(root: str | Path) -> tuple[dict, list[str]]:
    """(metadata, tag vocabulary) of a prepared folder; a ValueError if it is not one."""
    root = Path(root)
    if not (root / METADATA_FILE).is_file() or not (root / TAGS_FILE).is_file():
        raise ValueError(
            f"{root} is not a prepared OpenMoji folder (no {METADATA_FILE} / {TAGS_FILE}); "
            f"run: python -m train.prepare_openmoji --out {root}"
        )
    metadata = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
    vocabulary = json.loads((root / TAGS_FILE).read_text(encoding="utf-8"))
    return metadata, vocabulary


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


class OpenMojiDataset(ConditionedDataset):
    """One split of a prepared OpenMoji folder; sketches are OpenMoji's own line art.

    Palette, colour shares and colour-similar images come precomputed from the metadata.
    Args: `split` ("train", "val" or "test"); the rest as `ConditionedDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: int = 128,
        conditions: Sequence[str] = CONDITIONS,
        augment: bool = True,
        options: SampleOptions | None = None,
    ) -> None:
        super().__init__(root, size, conditions, augment, options)
        _check_split(split)
        metadata, self.vocabulary = read_metadata(self.root)
        self.split = split
        self.items = [item for item in metadata["items"] if item["split"] == split]
        if not self.items:
            raise ValueError(f"split {split!r} of {self.root} has no images")
        self._position = {item["hexcode"]: i for i, item in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, index: int) -> str:
        return self.items[index]["hexcode"]

    def read(self, index: int) -> tuple[Image.Image, Image.Image]:
        item = self.items[index]
        return open_image(self.root / item["sketch"], "L"), open_image(
            self.root / item["color"], "RGB"
        )

    def statistics(
        self, index: int, color: np.ndarray, sketch: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        palette = torch.tensor(item["palette"], dtype=torch.float32)
        return palette, tag_vector(item_tags(item), self.vocabulary)

    def colorific_candidates(self, index: int) -> list[int]:
        return [self._position[h] for h in self.items[index]["similar"] if h in self._position]


class OpenMojiCrossReference(Dataset):
    """Evaluation pairs of one split: sketch of person P, reference Q ≠ P in skin tone k,
    ground truth P in tone k (both drawn by OpenMoji; no augmentation).

    Each sample: "sketch" [1, H, W], "reference" [3, H, W], "target" [3, H, W] in [-1, 1] and
    "meta" {"id": P's hexcode in tone k, "reference_id": Q's, "skintone": "k"}.
    """

    def __init__(self, root: str | Path, split: str = "test", size: int = 128) -> None:
        _check_split(split)
        self.root = Path(root)
        self.size = check_size(size)
        metadata, _ = read_metadata(self.root)
        self.items = {item["hexcode"]: item for item in metadata["items"]}
        self.pairs = metadata["cross_reference"][split]
        if not self.pairs:
            raise ValueError(f"split {split!r} of {self.root} has no cross-reference pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, hexcode: str, kind: str, mode: str) -> torch.Tensor:
        path = self.root / self.items[hexcode][kind]
        return image_to_tensor(fit_square(open_image(path, mode), self.size))

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        return {
            "sketch": self._load(pair["target"], "sketch", "L"),
            "reference": self._load(pair["reference"], "color", "RGB"),
            "target": self._load(pair["target"], "color", "RGB"),
            "meta": {
                "id": pair["target"],
                "reference_id": pair["reference"],
                "skintone": str(pair["skintone"]),
            },
        }
