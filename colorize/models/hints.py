"""User-guided stroke colorization: the generator of Ci et al., "User-Guided Deep Anime Line Art
Colorization with Conditional Adversarial Networks" (ACM MM 2018, AlacGAN).

    image = G(X, H, F1(X))                                              (Ci et al. Eq. 1)

X is the sketch [B, 1, H, W], H the colour hint [B, 4, H/4, W/4] (RGB·mask, mask) and F1(X)
the local features of the sketch from a frozen pretrained tagger (§3.1), which here is the
project's `Tagger` embedded in the generator (no gradient, always in eval mode, saved with it).

Generator (§3.3, Fig. 3): a U-Net. Two convolutions turn the sketch and the hint into feature
maps; the sketch features are halved four times (the hint joins at 1/4) down to the scale of
the local features, 1/16. Four decoder sub-networks follow, each a fusing convolution (skip
connection, or the local features for the first), B_n ResNeXt blocks (Xie et al. 2017) with
B = {20, 10, 10, 5} and dilation in the last three, and a sub-pixel convolution (Shi et al.
2016) that doubles the resolution. No normalisation, LeakyReLU(0.2) everywhere, tanh out.

Local features: Ci et al. use Illustration2Vec's 6th convolution (conv4_2 + ReLU, 1/8 of its
input) on the sketch average-pooled by 2, i.e. a mid-level map at 1/16 of the sketch. We use
the tagger's mid-level map (`Tagger.local_features`, its penultimate stage) and average-pool the
sketch by 16 / (that map's stride) first, so the local features always land at 1/16: pooling
by 2 for the "small" tagger (stride 8, like conv4_2) and by 1 for the ResNet-34 tagger
(stride 16).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .base import ColorizationGenerator, GeneratorOutput
from .blocks import init_unnormalised
from .tagger import PRESETS as TAGGER_PRESETS
from .tagger import Tagger

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "ngf": 64,
        "blocks_per_stage": (20, 10, 10, 5),
        "cardinality": (32, 32, 32, 16),
        "dilation_cycle": (1, 2, 4, 2, 1),
        "tagger_config": dict(TAGGER_PRESETS["paper"]),
    },
    # ~1.7 M parameters with the embedded small tagger: trains on a 2-core CPU at 128 px
    "small": {
        "ngf": 16,
        "blocks_per_stage": (6, 3, 3, 2),
        "cardinality": (8, 8, 8, 4),
        "dilation_cycle": (1, 2, 4, 2, 1),
        "tagger_config": dict(TAGGER_PRESETS["small"]),
    },
}

LOCAL_FEATURES_STRIDE = 16  # the local features meet the sketch features at 1/16 (§3.1)


class ResNeXtBlock(nn.Module):
    """ResNeXt bottleneck (Xie et al. 2017) as in Ci et al. §3.3: 1×1 reduce to C/2, grouped
    (cardinality) dilated 3×3, 1×1 expand, identity shortcut; LeakyReLU, no normalisation."""

    def __init__(self, channels: int, cardinality: int, dilation: int, negative_slope: float):
        super().__init__()
        hidden = channels // 2
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.conv = nn.Conv2d(
            hidden, hidden, 3, padding=dilation, dilation=dilation, groups=cardinality, bias=False
        )
        self.expand = nn.Conv2d(hidden, channels, 1, bias=False)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.reduce(x))
        y = self.act(self.conv(y))
        return x + self.expand(y)


class DecoderStage(nn.Module):
    """One decoder sub-network of Ci et al. §3.3: fuse (3×3 conv) the concatenated input, B_n
    ResNeXt blocks, then a sub-pixel convolution (3×3 conv to 4·C_out, PixelShuffle(2))."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int,
        dilations: list[int],
        cardinality: int,
        negative_slope: float,
    ):
        super().__init__()
        self.fuse = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(negative_slope)
        )
        self.blocks = nn.Sequential(
            *[ResNeXtBlock(channels, cardinality, d, negative_slope) for d in dilations]
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(channels, out_channels * 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(negative_slope),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.blocks(self.fuse(x)))


def _down(in_channels: int, out_channels: int, negative_slope: float) -> nn.Sequential:
    """4×4 stride-2 convolution + LeakyReLU: halves the resolution (Ci et al. Fig. 3)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(negative_slope)
    )


def stage_dilations(num_blocks: int, cycle: tuple[int, ...] | list[int]) -> list[int]:
    """Spread the dilation cycle over a stage's blocks (block i takes the cycle entry under its
    midpoint): 5 blocks with (1, 2, 4, 2, 1) get exactly the cycle, 10 get (1, 1, 2, 2, 4, 4,
    2, 2, 1, 1), 3 get (1, 4, 1): rising then falling, after Yu et al.'s dilated residual
    networks that Ci et al. §3.3 follow."""
    return [cycle[(2 * i + 1) * len(cycle) // (2 * num_blocks)] for i in range(num_blocks)]


class HintsGenerator(ModelMixin, ConfigMixin, ColorizationGenerator):
    """Ci et al.'s U-Net generator G(X, H, F1(X)) with an embedded frozen tagger as F1.

    Parameters:
        ngf: base width; the encoder has ngf/2, ngf, 2·ngf, 4·ngf, 8·ngf channels and the
            decoder stages 8·ngf, 4·ngf, 2·ngf, ngf (Fig. 3; 64 in the authors' code).
        blocks_per_stage: ResNeXt blocks B_n of the decoder stages, deepest first (§3.3:
            {20, 10, 10, 5}).
        cardinality: groups of each stage's ResNeXt 3×3 convolution, deepest first (the
            authors' code: 32, 32, 32, 16).
        dilation_cycle: dilations spread over the blocks of stages B_2..B_4 (§3.3: "add
            dilation in the ResNeXt blocks of B_2, B_3, B_4"; the authors' code cycles 1, 2,
            4, 2, 1); B_1 is not dilated.
        negative_slope: LeakyReLU slope of every convolution but the last (§3.3: 0.2).
        tagger_config: constructor arguments of the embedded `Tagger` (JSON-friendly), the
            local features network F1 of §3.1; None builds `Tagger()`'s defaults. Load trained
            weights with `load_tagger`.
    """

    conditions = ("hint",)
    stride = 16

    @register_to_config
    def __init__(
        self,
        ngf: int = 64,
        blocks_per_stage: tuple[int, ...] = (20, 10, 10, 5),
        cardinality: tuple[int, ...] = (32, 32, 32, 16),
        dilation_cycle: tuple[int, ...] = (1, 2, 4, 2, 1),
        negative_slope: float = 0.2,
        tagger_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        if len(blocks_per_stage) != 4 or len(cardinality) != 4:
            raise ValueError(
                "HintsGenerator: blocks_per_stage and cardinality need one entry per decoder "
                f"stage (4), got {list(blocks_per_stage)} and {list(cardinality)}"
            )
        widths = (8 * ngf, 4 * ngf, 2 * ngf, ngf)  # decoder stages, deepest first
        for width, groups in zip(widths, cardinality, strict=True):
            if ngf % 2 or (width // 2) % groups:
                raise ValueError(
                    f"HintsGenerator: a stage of width {width} has a {width // 2}-channel "
                    f"bottleneck that cardinality {groups} does not divide (ngf={ngf} must be "
                    "even and every cardinality must divide its stage's width / 2)"
                )

        self.tagger = Tagger(**(tagger_config or {})).freeze()
        local_stride = self.tagger.feature_strides[self.tagger.local_features_layer]
        if LOCAL_FEATURES_STRIDE % local_stride:
            raise ValueError(
                f"HintsGenerator: the tagger's local features ({self.tagger.local_features_layer})"
                f" have stride {local_stride}; it must divide {LOCAL_FEATURES_STRIDE}"
            )
        self.tagger_pool = LOCAL_FEATURES_STRIDE // local_stride
        local_channels = self.tagger.feature_channels[self.tagger.local_features_layer]

        slope = negative_slope
        self.to_hint = nn.Sequential(nn.Conv2d(4, ngf, 7, padding=3), nn.LeakyReLU(slope))
        self.to0 = nn.Sequential(nn.Conv2d(1, ngf // 2, 3, padding=1), nn.LeakyReLU(slope))
        self.to1 = _down(ngf // 2, ngf, slope)  # 1/2
        self.to2 = _down(ngf, 2 * ngf, slope)  # 1/4
        self.to3 = _down(3 * ngf, 4 * ngf, slope)  # 1/8, after the hint joins at 1/4
        self.to4 = _down(4 * ngf, 8 * ngf, slope)  # 1/16

        fused_in = (8 * ngf + local_channels, 8 * ngf, 4 * ngf, 2 * ngf)  # input + skip
        outs = (4 * ngf, 2 * ngf, ngf, ngf // 2)
        self.decoder = nn.ModuleList()
        for i in range(4):
            dilations = stage_dilations(blocks_per_stage[i], (1,) if i == 0 else dilation_cycle)
            self.decoder.append(
                DecoderStage(fused_in[i], widths[i], outs[i], dilations, cardinality[i], slope)
            )
        self.to_rgb = nn.Conv2d(ngf, 3, 3, padding=1)
        init_unnormalised(
            [m for name, m in self.named_children() if name != "tagger"],
            slope,
            [m.expand for m in self.decoder.modules() if isinstance(m, ResNeXtBlock)],
        )

    # ---------------------------------------------------------------------------------------

    @classmethod
    def with_tagger(cls, tagger: Tagger, **kwargs: Any) -> HintsGenerator:
        """A generator whose embedded tagger is a copy of the trained `tagger` (its
        architecture replaces any tagger_config in kwargs, e.g. from a preset)."""
        model = cls(**{**kwargs, "tagger_config": tagger.architecture()})
        model.load_tagger(tagger)
        return model

    def load_tagger(self, tagger: Tagger) -> None:
        """Copy trained tagger weights into the embedded frozen tagger (configs must match)."""
        self.tagger.load_weights_from(tagger)

    def local_features(self, sketch: torch.Tensor) -> torch.Tensor:
        """F1(X) of Ci et al. §3.1: the frozen tagger's mid-level map of the (pooled) sketch,
        [B, C, H/16, W/16]; the discriminator is conditioned on it too (Eq. 3, 6)."""
        with torch.no_grad():
            if self.tagger_pool > 1:
                sketch = F.avg_pool2d(sketch, self.tagger_pool)
            return self.tagger.local_features(sketch)

    def forward(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
        palette: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> GeneratorOutput:
        """G(X, H, F1(X)) of Ci et al. Eq. 1: sketch [B, 1, H, W] and hint [B, 4, H/4, W/4]
        -> image [B, 3, H, W] in [-1, 1]."""
        self.check_inputs(sketch, reference=reference, hint=hint, palette=palette, tags=tags)
        features = self.local_features(sketch)  # (B, Cl, H/16, W/16)
        x0 = self.to0(sketch)  # (B, ngf/2, H, W)
        x1 = self.to1(x0)  # (B, ngf, H/2, W/2)
        x2 = self.to2(x1)  # (B, 2ngf, H/4, W/4)
        x3 = self.to3(torch.cat([x2, self.to_hint(hint)], 1))  # (B, 4ngf, H/8, W/8)
        x4 = self.to4(x3)  # (B, 8ngf, H/16, W/16)
        x = self.decoder[0](torch.cat([x4, features], 1))  # (B, 4ngf, H/8, W/8)
        x = self.decoder[1](torch.cat([x, x3], 1))  # (B, 2ngf, H/4, W/4)
        x = self.decoder[2](torch.cat([x, x2], 1))  # (B, ngf, H/2, W/2)
        x = self.decoder[3](torch.cat([x, x1], 1))  # (B, ngf/2, H, W)
        return GeneratorOutput(image=torch.tanh(self.to_rgb(torch.cat([x, x0], 1))))
