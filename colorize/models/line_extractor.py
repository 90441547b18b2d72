"""Line drawing extraction network LE of Cao, Tian, Mok (seed 000, §III-A and §IV-A).

"A line drawing extraction network based on a U-Net" turns a colour image into a line drawing
that imitates a hand-drawn one, so that colour-only images can be paired with sketches for
training the colorizers. Cao et al. give no layer details; this is Ronneberger et al.'s U-Net
(double 3×3 conv per scale, 2×2 max-pool down, 2×2 up-convolution, skip concatenation,
1×1 output conv) with 'same' padding and BatchNorm (Cao et al. use BN in their networks,
§III-A), and a tanh output.

Layouts: colour image [B, 3, H, W] in [-1, 1] -> sketch [B, 1, H, W] in [-1, 1], white paper
= +1 and black lines = -1 (the sketch layout of `colorize.models.base`).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

PRESETS: dict[str, dict] = {
    # Ronneberger et al.'s U-Net widths: 4 poolings, 64 … 1024 channels.
    "paper": {"block_out_channels": (64, 128, 256, 512, 1024)},
    # 3 poolings, 16 … 128 channels.
    "small": {"block_out_channels": (16, 32, 64, 128)},
}


class DoubleConv(nn.Sequential):
    """(conv 3×3 → BN → ReLU) × 2: one U-Net scale."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class LineExtractor(ModelMixin, ConfigMixin):
    """U-Net line drawing extractor LE (Cao et al. §III-A): colour image -> line drawing.

    Parameters:
        block_out_channels: widths per scale, shallow to deep; every scale after the first
            starts with a 2×2 max-pool. Ronneberger et al.: (64, 128, 256, 512, 1024).
        initial_paper: the grey level in (-1, 1) the untrained output starts at: the output
            conv's bias is atanh(initial_paper) and its weights are zero. Most pixels of a
            line drawing are white paper (+1), so the first steps fit the lines instead of
            lifting mid grey to white: Adam moves the one bias by about lr per step, and from
            the default init the L1 was still 0.42 (worse than a blank page) after 300 steps at
            lr 1e-4 (2026-12-01, the CPU profile). 0.8 keeps a live tanh gradient (0.36).

    The input side must be a multiple of 2^(len(block_out_channels) - 1).
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 512, 1024),
        initial_paper: float = 0.8,
    ):
        super().__init__()
        if not -1 < initial_paper < 1:
            raise ValueError(f"LineExtractor: initial_paper must lie in (-1, 1), got {initial_paper}")
        widths = tuple(block_out_channels)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(
                f"LineExtractor: block_out_channels needs at least two positive widths, "
                f"got {widths}"
            )
        self.down = nn.ModuleList(
            DoubleConv(3 if i == 0 else widths[i - 1], w) for i, w in enumerate(widths)
        )
        self.pool = nn.MaxPool2d(2)
        # up[j] goes from scale i + 1 to scale i, i = len - 2 - j (deepest first).
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(len(widths) - 1))
        )
        self.up_convs = nn.ModuleList(
            DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.to_sketch = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.to_sketch.weight)
        nn.init.constant_(self.to_sketch.bias, math.atanh(initial_paper))

    @property
    def stride(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def check_inputs(self, image: torch.Tensor) -> None:
        """Raise a ValueError naming the problem when `image` is not [B, 3, H, W] of the stride."""
        if not torch.is_tensor(image) or not image.is_floating_point():
            kind = image.dtype if torch.is_tensor(image) else type(image).__name__
            raise ValueError(f"LineExtractor: image must be a float tensor, got {kind}")
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(
                f"LineExtractor: image must be an RGB batch [B, 3, H, W] in [-1, 1], "
                f"got shape {tuple(image.shape)}"
            )
        H, W = image.shape[-2:]
        if H % self.stride or W % self.stride:
            raise ValueError(
                f"LineExtractor: image sides must be multiples of {self.stride}, got {H}x{W}; "
                "pad or resize the input first"
            )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> line drawing [B, 1, H, W] in [-1, 1] (lines = -1)."""
        self.check_inputs(image)
        skips = []
        x = image
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, block, skip in zip(self.up, self.up_convs, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return torch.tanh(self.to_sketch(x))
