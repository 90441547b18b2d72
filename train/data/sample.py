"""The training sample contract and the options that shape it.

Every dataset returns a dict with these keys (images square, side `size`, all float32):

    sketch     [1, H, W]      in [-1, 1], white paper = +1, black lines = −1
    target     [3, H, W]      in [-1, 1] RGB ground truth
    reference  [3, H, W]      TPS-warped + colour-jittered target (Cao et al. §III-A)
    hint       [4, H/4, W/4]  RGB·mask in [-1, 1], then the mask in {0, 1} (Ci et al. §3.1)
    palette    [27]           9 k-means colours in [-1, 1], most frequent first (Khang §3.1)
    tags       [T]            values over the dataset's tag vocabulary (colour shares, labels)
    structure  [1, H, W]      XDoG sketch of the target (Cui et al. §3.3.1)
    colorific  [3, H, W]      a colour-similar image of another drawing (Cui et al. §3.3.2)
    meta       {"id": str}    which image this is

"sketch", "target" and "meta" are always present; the others only when named in the
dataset's `conditions`, so a method pays only for what it uses. Palette and tags describe the
whole image before crop and jitter, and are computed once per image (OpenMoji: precomputed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CONDITIONS = ("reference", "hint", "palette", "tags", "structure", "colorific")


@dataclass(frozen=True)
class SampleOptions:
    """How samples are augmented and how the conditions are drawn.

    Parameters:
        crop_scale: with `augment`, images are resized to size·crop_scale and a random
            size×size crop is taken (Khang et al. §4.1: random crop and flip).
        flip: with `augment`, mirror sketch and target together with p = 0.5.
        tps_strength: largest TPS control-point offset for the reference ([-1, 1] units); 0 = none.
        tps_grid: TPS control points per side.
        brightness, contrast, saturation, hue: colour jitter of the reference (hue in turns).
        jitter_target: apply the same jitter to the target too, so the reference only differs
            by the warp (Lee et al. 2020 §3.1). Palette and tags still describe the un-jittered
            image.
        hint_std: std of ξ in the simulated hint mask B = R > |ξ| (Ci et al. §3.1).
        xdog_sigmas: σ values drawn for XDoG sketches and the structure condition (Ci §4.1).
        colorific_neighbours: colour-similar candidates kept per image (Cui et al. §3.3.2).
        seed: seed of the k-means palette and histogram clustering (deterministic statistics).
    """

    crop_scale: float = 1.125
    flip: bool = True
    tps_strength: float = 0.1
    tps_grid: int = 4
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    jitter_target: bool = False
    hint_std: float = 0.005
    xdog_sigmas: tuple[float, ...] = (0.3, 0.4, 0.5)
    colorific_neighbours: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop_scale < 1:
            raise ValueError(f"crop_scale must be >= 1, got {self.crop_scale}")
        if self.tps_strength < 0 or self.tps_grid < 2:
            raise ValueError(
                "need tps_strength >= 0 and tps_grid >= 2, "
                f"got {self.tps_strength} and {self.tps_grid}"
            )


def check_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
    """The conditions as a tuple; a ValueError names any unknown one."""
    if isinstance(conditions, str):
        raise ValueError(f"conditions must be a sequence of names, got the string {conditions!r}")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {CONDITIONS}")
    return tuple(conditions)


def check_size(size: int) -> int:
    """`size` if it is a usable square side (a multiple of 4, for the ¼-resolution hint)."""
    if size < 8 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least 8, got {size}")
    return size
