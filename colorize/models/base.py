"""What every colorization generator shares: its output type and the checks on its inputs.

All five generators take the same keyword arguments and return a `GeneratorOutput`:

    out = model(sketch, reference=..., hint=..., palette=..., tags=...)
    out.image   # [B, 3, H, W] in [-1, 1]

Layouts (the data issue's sample contract):
    sketch     [B, 1, H, W] in [-1, 1], white paper = +1, black lines = -1
    reference  [B, 3, H, W] in [-1, 1] RGB
    hint       [B, 4, H/4, W/4]: RGB in [-1, 1] times mask, then the mask in {0, 1}
    palette    [B, 27] in [-1, 1]: 9 RGB colours, most frequent first
    tags       [B, T] tag values over the dataset's tag vocabulary

A method uses exactly the conditions in its `conditions` class attribute; passing any other
condition is an error rather than being silently ignored, and missing one is an error too,
unless it is also listed in `optional_conditions` (e.g. the tag values of `tags`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers.utils import BaseOutput

CONDITIONS = ("reference", "hint", "palette", "tags")


@dataclass
class GeneratorOutput(BaseOutput):
    """image: [B, 3, H, W] in [-1, 1]; coarse: an intermediate image some methods return
    for their losses (Cui et al.'s warped exemplar), else None."""

    image: torch.Tensor
    coarse: torch.Tensor | None = None


class ColorizationGenerator:
    """Mixin for the generators: declares the conditions and checks inputs against them.

    Subclasses also inherit diffusers' `ModelMixin, ConfigMixin` and set `conditions`
    (the subset of `CONDITIONS` they use), optionally `optional_conditions` (those of them
    that may be left out) and `stride` (input sides must be a multiple of it; a subclass
    whose stride depends on its config sets it per instance).
    """

    conditions: ClassVar[tuple[str, ...]] = ()
    optional_conditions: ClassVar[tuple[str, ...]] = ()
    stride: int = 1

    def check_inputs(self, sketch: torch.Tensor, **given: torch.Tensor | None) -> None:
        """Raise a ValueError naming the first input that does not fit this method."""
        name = type(self).__name__
        if sketch.dim() != 4 or sketch.shape[1] != 1:
            raise ValueError(f"{name}: sketch must be [B, 1, H, W], got {tuple(sketch.shape)}")
        B, _, H, W = sketch.shape
        if H % self.stride or W % self.stride:
            raise ValueError(
                f"{name}: sketch sides must be multiples of {self.stride}, got {H}x{W}; "
                "pad or resize the input first"
            )
        for key, value in given.items():
            if key not in CONDITIONS:
                raise ValueError(f"{name}: unknown condition {key!r}; known: {CONDITIONS}")
            if value is not None and key not in self.conditions:
                raise ValueError(
                    f"{name} does not use {key!r} (it uses {self.conditions or 'the sketch only'})"
                )
        for key in self.conditions:
            value = given.get(key)
            if value is None:
                if key in self.optional_conditions:
                    continue
                raise ValueError(f"{name} needs {key!r}")
            expected = self.expected_shape(key, B, H, W)
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"{name}: {key} must be {list(expected)}, got shape {tuple(value.shape)}"
                )

    def expected_shape(self, key: str, B: int, H: int, W: int) -> tuple[int, ...]:
        """The shape condition `key` must have for a [B, 1, H, W] sketch."""
        if key == "reference":
            return (B, 3, H, W)
        if key == "hint":
            return (B, 4, H // 4, W // 4)
        if key == "palette":
            return (B, 27)
        if key == "tags":
            return (B, self.config.num_tags)
        raise ValueError(f"unknown condition {key!r}")
