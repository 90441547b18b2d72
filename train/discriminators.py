"""The training-only discriminators of the five methods, one class per paper, plus a registry.

Each takes the image first and its condition second, `D(image, condition)`, and returns raw
scores (no sigmoid): a patch map, a list of maps (multi-scale), or one value per image (the
WGAN-GP critic). The losses decide how to read them (LSGAN, BCE with logits, WGAN).

    parts = build_discriminators("csft", size="small")  # {"structural": ..., "colorific": ...}

Most of the papers name the discriminator family but give no widths; where they are silent we
use the 70×70 PatchGAN of pix2pix (Isola et al. 2017: three stride-2 4×4 convs doubling the
width from 64, one stride-1 conv, a stride-1 conv to one channel; a 30×30 map at 256 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NEGATIVE_SLOPE = 0.2  # LeakyReLU slope of every discriminator here (pix2pix, SPADE, AlacGAN)


# ----------------------------------------------------------------------------------------------
# Building blocks


def patch_plan(in_channels: int, base_channels: int, num_downsampling: int = 3,
               max_channels: int | None = None) -> list[tuple[int, int, int]]:
    """(in, out, stride) of the pix2pix PatchGAN's 4×4 convs: `num_downsampling` stride-2
    convs widening from `base_channels` (×2 each, capped at 8·base), one stride-1 conv at the
    next width, one stride-1 conv to a single channel. With 3 it is the 70×70 PatchGAN."""
    cap = max_channels or 8 * base_channels
    widths = [min(base_channels * 2**i, cap) for i in range(num_downsampling + 1)]
    plan = [(in_channels, widths[0], 2)]
    plan += [(widths[i - 1], widths[i], 2) for i in range(1, num_downsampling)]
    plan += [(widths[num_downsampling - 1], widths[num_downsampling], 1)]
    return plan + [(widths[num_downsampling], 1, 1)]


def conv_block(in_channels: int, out_channels: int, stride: int, *, norm: str | None = None,
               spectral: bool = False, activation: bool = True) -> nn.Sequential:
    """4×4 conv (padding 1) with optional spectral norm, then norm ("batch" | "instance")
    and LeakyReLU(0.2). A conv followed by a norm has no bias (the norm's shift replaces it)."""
    conv = nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=1, bias=norm is None)
    layers: list[nn.Module] = [spectral_norm(conv) if spectral else conv]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_channels))
    elif norm == "instance":
        layers.append(nn.InstanceNorm2d(out_channels, affine=False))
    elif norm is not None:
        raise ValueError(f"unknown norm {norm!r}; expected 'batch', 'instance' or None")
    if activation:
        layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
    return nn.Sequential(*layers)


def _check_pair(name: str, image: torch.Tensor, condition: torch.Tensor,
                image_channels: int, condition_channels: int, condition_name: str) -> None:
    """Raise a ValueError naming the input whose shape does not fit [B, C, H, W]."""
    if image.dim() != 4 or image.shape[1] != image_channels:
        raise ValueError(
            f"{name}: image must be [B, {image_channels}, H, W], got {tuple(image.shape)}"
        )
    B, _, H, W = image.shape
    expected = (B, condition_channels, H, W)
    if tuple(condition.shape) != expected:
        raise ValueError(
            f"{name}: {condition_name} must be {list(expected)}, got {tuple(condition.shape)}"
        )


class _PatchGAN(nn.Module):
    """A PatchGAN on condition ⊕ image; subclasses pick normalisation and spectral norm."""

    condition_name = "condition"

    def __init__(self, layers: list[nn.Module], image_channels: int, condition_channels: int):
        super().__init__()
        self.image_channels = image_channels
        self.condition_channels = condition_channels
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """image [B, 3, H, W], condition [B, C_cond, H, W] -> logits [B, 1, h, w]. With
        condition_channels = 0 the discriminator is unconditional and condition stays None."""
        if self.condition_channels == 0 and condition is None:
            condition = image[:, :0]
        if condition is None:
            raise ValueError(f"{type(self).__name__} needs its {self.condition_name}")
        _check_pair(type(self).__name__, image, condition, self.image_channels,
                    self.condition_channels, self.condition_name)
        return self.layers(torch.cat([condition, image], dim=1))


# ----------------------------------------------------------------------------------------------
# sga: Cao, Tian, Mok (seed 000)


class SGADiscriminator(_PatchGAN):
    """Conditional LSGAN discriminator of Cao et al. §III-A, loss Eq. (5) of §III-C.

    D(I, I_l) scores sketch ⊕ image (1 + 3 channels): every conv has spectral norm (Miyato et
    al.) and BatchNorm except the last, which has neither (§III-A). The layout is the 70×70
    PatchGAN (the paper gives none); the output is an LSGAN score map [B, 1, h, w].
    """

    condition_name = "sketch"

    def __init__(self, base_channels: int = 64, num_downsampling: int = 3,
                 image_channels: int = 3, condition_channels: int = 1):
        plan = patch_plan(image_channels + condition_channels, base_channels, num_downsampling)
        layers = [conv_block(i, o, s, norm="batch", spectral=True) for i, o, s in plan[:-1]]
        layers.append(conv_block(*plan[-1], activation=False))  # no BN, no SN (§III-A)
        super().__init__(layers, image_channels, condition_channels)


# ----------------------------------------------------------------------------------------------
# resunet: Khang et al. (seed 001)


class PatchDiscriminator(_PatchGAN):
    """PatchGAN of Khang et al. §3.2, for the BCE losses Eq. (5)–(6).

    Five 4×4 convs, all with spectral norm, LeakyReLU and no normalisation: three stride-2
    convs (256 → 32) and two stride-1 convs that each trim one pixel, a 30×30 map of logits at
    256 px. Eq. (5)–(6) write D(y) without a condition; like pix2pix we score the line art ⊕
    image (`condition_channels` = 1, the 1-channel sketch; 0 gives the literal D(y)).
    """

    condition_name = "sketch"

    def __init__(self, base_channels: int = 64, num_downsampling: int = 3,
                 image_channels: int = 3, condition_channels: int = 1):
        plan = patch_plan(image_channels + condition_channels, base_channels, num_downsampling)
        layers = [conv_block(i, o, s, spectral=True) for i, o, s in plan[:-1]]
        layers.append(conv_block(*plan[-1], spectral=True, activation=False))  # 5 SN convs
        super().__init__(layers, image_channels, condition_channels)


# ----------------------------------------------------------------------------------------------
# csft: Cui et al. (seed 002)


class MultiscalePatchGAN(nn.Module):
    """The multi-scale discriminator of Cui et al. §3.3.2 (the paper gives no layout): as in
    CoCosNet/SPADE, `num_scales` PatchGANs on the input and its 2×, 4×, … average-pooled
    copies; first conv plain, hidden convs spectral norm + InstanceNorm, last conv plain.
    Returns one logit map per scale, finest first."""

    condition_name = "condition"

    def __init__(self, image_channels: int, condition_channels: int, base_channels: int,
                 num_downsampling: int, num_scales: int):
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"{type(self).__name__}: num_scales must be >= 1, got {num_scales}")
        self.image_channels = image_channels
        self.condition_channels = condition_channels
        plan = patch_plan(image_channels + condition_channels, base_channels, num_downsampling)
        self.scales = nn.ModuleList(
            nn.Sequential(
                conv_block(*plan[0]),
                *(conv_block(i, o, s, norm="instance", spectral=True) for i, o, s in plan[1:-1]),
                conv_block(*plan[-1], activation=False),
            )
            for _ in range(num_scales)
        )

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> list[torch.Tensor]:
        """image [B, 3, H, W], condition [B, C_cond, H, W] -> [[B, 1, h_s, w_s] per scale]."""
        _check_pair(type(self).__name__, image, condition, self.image_channels,
                    self.condition_channels, self.condition_name)
        x = torch.cat([condition, image], dim=1)
        outputs = []
        for index, scale in enumerate(self.scales):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


class StructuralDiscriminator(MultiscalePatchGAN):
    """Structural discriminator D_s of Cui et al. §3.3.1, §3.3.3, Eq. (15).

    Scores the 1-channel structure ⊕ image: the structure is the xDoG sketch (Winnemöller et al.,
    ref. [57]) that goes with the image (the exemplar's for real pairs, the input sketch for
    generated ones), so D_s judges structural plausibility and consistency with the sketch.
    """

    condition_name = "structure"

    def __init__(self, base_channels: int = 64, num_downsampling: int = 3, num_scales: int = 2):
        super().__init__(3, 1, base_channels, num_downsampling, num_scales)


class ColorificDiscriminator(MultiscalePatchGAN):
    """Colorific discriminator D_r of Cui et al. §3.3.2, §3.3.3, Eq. (15).

    Scores a 3-channel colour condition ⊕ image: the condition is an image of another drawing
    whose colours are close to the exemplar's (3-D Lab histograms 8×8×8, grouped by k-means,
    Fig. 4), so D_r is sensitive to colour rather than structure.
    """

    condition_name = "color_condition"

    def __init__(self, base_channels: int = 64, num_downsampling: int = 3, num_scales: int = 2):
        super().__init__(3, 3, base_channels, num_downsampling, num_scales)


# ----------------------------------------------------------------------------------------------
# tags: Yan et al. (seed 003)


class TagsDiscriminator(_PatchGAN):
    """Conditional discriminator of Yan et al.'s first training step, §3.1, Eq. (2).

    D(x, y) takes the sketch x as its condition (pix2pix, [IZZE17]): sketch ⊕ image into the
    pix2pix 70×70 PatchGAN with BatchNorm on the hidden convs and no spectral norm; logits for
    the log-loss of Eq. (2).
    """

    condition_name = "sketch"

    def __init__(self, base_channels: int = 64, num_downsampling: int = 3,
                 image_channels: int = 3, condition_channels: int = 1):
        plan = patch_plan(image_channels + condition_channels, base_channels, num_downsampling)
        layers = [conv_block(*plan[0])]
        layers += [conv_block(i, o, s, norm="batch") for i, o, s in plan[1:-1]]
        layers.append(conv_block(*plan[-1], activation=False))
        super().__init__(layers, image_channels, condition_channels)


# ----------------------------------------------------------------------------------------------
# hints: Ci et al. (seed 004)


class ResNeXtBlock(nn.Module):
    """ResNeXt bottleneck of Ci et al. §3.3 (their generator's block, used without dilation in
    D): 1×1 reduce to C/2, grouped conv (`cardinality` groups), 1×1 expand, LeakyReLU(0.2),
    no normalisation, plus identity (average-pooled when it halves the resolution).

    The stride-2 grouped conv is 3×3 with padding 1 and the shortcut pools with ceil_mode, so
    any side n maps to ⌈n/2⌉ on both paths and the critic runs at any input size.
    """

    def __init__(self, channels: int, cardinality: int = 8, stride: int = 1):
        super().__init__()
        hidden = channels // 2
        if hidden % cardinality:
            raise ValueError(
                f"ResNeXtBlock: channels/2 = {hidden} must be a multiple of cardinality "
                f"{cardinality}"
            )
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=cardinality, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.shortcut = nn.AvgPool2d(2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class HintsCritic(nn.Module):
    """WGAN-GP critic of Ci et al. §3.3, Eq. (5)–(7), Fig. 3 (after SRGAN, with ResNeXt blocks).

    D(Y, F_1(X)): the image goes through a 7×7 conv, a stride-2 4×4 conv and stages of
    [ResNeXt, ResNeXt stride 2] (widths 64, 128, 256) down to the local features' resolution;
    there it is concatenated with the frozen tagger's local features F_1(X) (the sketch itself
    is never shown to D, §3.1), fused by a 3×3 conv to 512 channels and reduced by
    `num_tail_stages` more [ResNeXt, ResNeXt stride 2] stages and one ResNeXt block. No
    normalisation, no sigmoid: a linear layer on the spatial mean gives one Wasserstein score
    per image (the paper's final 4×4 valid conv needs a fixed 512 px input; the mean keeps the
    critic fully convolutional, any input size works).

    Parameters:
        base_channels: width of the first stage (64 in Ci et al.'s Fig. 3); later stages
            double it, the fused tail uses 8×.
        feature_channels: channels C_f of the local features (512: Illustration2Vec's 6th
            conv in the paper; the project's tagger passes its own).
        feature_stride: s, where local_features is [B, C_f, H/s, W/s] (16 in the paper); a
            power of two >= 2.
        cardinality: groups of the ResNeXt grouped conv (8 in Ci et al.'s code).
        num_tail_stages: stride-2 stages after the concatenation (3 in Fig. 3).
    """

    def __init__(self, base_channels: int = 64, feature_channels: int = 512,
                 feature_stride: int = 16, cardinality: int = 8, num_tail_stages: int = 3):
        super().__init__()
        if feature_stride < 2 or feature_stride & (feature_stride - 1):
            raise ValueError(
                f"HintsCritic: feature_stride must be a power of two >= 2, got {feature_stride}"
            )
        self.feature_channels = feature_channels
        self.feature_stride = feature_stride
        num_stages = feature_stride.bit_length() - 2  # the 4×4 stride-2 conv does the first ×2
        layers: list[nn.Module] = [
            nn.Conv2d(3, base_channels, 7, padding=3, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(base_channels, base_channels, 4, stride=2, padding=1, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
        ]
        width = base_channels
        for stage in range(num_stages):
            if stage:
                layers += [nn.Conv2d(width, 2 * width, 1, bias=False), nn.LeakyReLU(NEGATIVE_SLOPE)]
                width *= 2
            layers += [ResNeXtBlock(width, cardinality), ResNeXtBlock(width, cardinality, 2)]
        self.image_branch = nn.Sequential(*layers)
        tail_width = 8 * base_channels
        tail: list[nn.Module] = [
            nn.Conv2d(width + feature_channels, tail_width, 3, padding=1, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
        ]
        for _ in range(num_tail_stages):
            tail += [
                ResNeXtBlock(tail_width, cardinality),
                ResNeXtBlock(tail_width, cardinality, stride=2),
            ]
        tail.append(ResNeXtBlock(tail_width, cardinality))
        self.tail = nn.Sequential(*tail)
        self.score = nn.Linear(tail_width, 1)

    def forward(self, image: torch.Tensor, local_features: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W]; local_features F_1(X) [B, C_f, H/s, W/s] -> scores [B, 1]."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"HintsCritic: image must be [B, 3, H, W], got {tuple(image.shape)}")
        B, _, H, W = image.shape
        s = self.feature_stride
        if H % s or W % s:
            raise ValueError(f"HintsCritic: image sides must be multiples of {s}, got {H}x{W}")
        expected = (B, self.feature_channels, H // s, W // s)
        if tuple(local_features.shape) != expected:
            raise ValueError(
                f"HintsCritic: local_features must be {list(expected)}, "
                f"got {tuple(local_features.shape)}"
            )
        x = self.image_branch(image)  # (B, 4·base, H/s, W/s) with the paper's s = 16
        x = self.tail(torch.cat([x, local_features], dim=1))  # (B, 8·base, h, w)
        return self.score(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------
# Registry


DISCRIMINATORS: dict[str, dict[str, type[nn.Module]]] = {
    "sga": {"d": SGADiscriminator},
    "resunet": {"d": PatchDiscriminator},
    "csft": {"structural": StructuralDiscriminator, "colorific": ColorificDiscriminator},
    "tags": {"d": TagsDiscriminator},
    "hints": {"critic": HintsCritic},
}

PRESETS: dict[str, dict[str, dict]] = {
    # The papers' widths where given (Ci et al. Fig. 3), else pix2pix/SPADE's base width 64.
    "paper": {
        "SGADiscriminator": {"base_channels": 64},
        "PatchDiscriminator": {"base_channels": 64},
        "StructuralDiscriminator": {"base_channels": 64, "num_scales": 2},
        "ColorificDiscriminator": {"base_channels": 64, "num_scales": 2},
        "TagsDiscriminator": {"base_channels": 64},
        # local features of the project's paper tagger (ResNet-34 stage 3: 256 channels at
        # 1/16, as HintsGenerator uses them); Ci et al.'s Illustration2Vec gives 512
        "HintsCritic": {"base_channels": 64, "feature_channels": 256, "feature_stride": 16,
                        "num_tail_stages": 3},
    },
    # Same layouts, a quarter of the width: fast next to a small generator on a 2-core CPU.
    # The hints critic's features are the small tagger's stage 3 (96 channels) at 1/16; pass
    # feature_channels/feature_stride to build_discriminators for another tagger.
    "small": {
        "SGADiscriminator": {"base_channels": 16},
        "PatchDiscriminator": {"base_channels": 16},
        "StructuralDiscriminator": {"base_channels": 16, "num_scales": 2},
        "ColorificDiscriminator": {"base_channels": 16, "num_scales": 2},
        "TagsDiscriminator": {"base_channels": 16},
        "HintsCritic": {"base_channels": 16, "feature_channels": 96, "feature_stride": 16,
                        "num_tail_stages": 2},
    },
}


def build_discriminators(method: str, size: str = "small", **overrides) -> nn.ModuleDict:
    """The discriminator(s) of `method`, keyed by role ("d", "critic", or "structural" and
    "colorific" for csft), built from PRESETS[size] with `overrides` applied to each one."""
    if method not in DISCRIMINATORS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(DISCRIMINATORS)}")
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(PRESETS)}")
    return nn.ModuleDict({
        role: cls(**{**PRESETS[size][cls.__name__], **overrides})
        for role, cls in DISCRIMINATORS[method].items()
    })  # fmt: skip
