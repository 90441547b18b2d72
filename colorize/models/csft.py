"""Exemplar-based sketch colorization with cross-domain dense correspondence (Cui et al.; seed 002).

Domain alignment (§3.1): two feature pyramids E_s (sketch, 1 ch) and E_r (exemplar, 3 ch) of
L convolutional layers; every map is pooled to the last map's size and concatenated (Eq. 5);
the CSFT module (Eq. 6–9, scaled dot-product attention with W_q, W_k, W_v) and a 1×1 conv
map each side into the shared domain c (x_c, y_c; Eq. 1–2). The correlation of the
channel-wise centred features (cosine similarity, Eq. 3) gives softmax(α·M) with α = 100,
which warps the exemplar pooled to the correspondence resolution (Eq. 4): the coarse image.

Coarse-to-fine generator (§3.2): an encoder-decoder over the sketch and the upsampled coarse
image; positional normalisation (Li et al. 2019, ref. [33]) takes the moments μ, σ of every
encoder level and the Dynamic Moment Shortcut re-injects them, modulated by a small ConvNet
(Fig. 5, right), into the decoder level of the same resolution.

Eq. 8 pairs sketch queries v_s with exemplar keys and values v_r, so F_{s→c} attends to the
exemplar; F_{e→c} applies the same form to the exemplar alone (self-attention). Each side has
its own W_q, W_k, W_v (θ_{F,s→c} and θ_{F,e→c} of Eq. 1–2), and V* is added back to the
queries before the 1×1 conv so that x_c keeps the sketch's layout.

The paper gives no widths or depths; where it is silent we follow CoCosNet (Zhang et al.
2020, ref. [60], whose correspondence this method builds on): correspondence at 1/4 of the
input (64×64 at 256 px), the exemplar average-pooled to that size before warping and the
coarse image upsampled bilinearly, InstanceNorm + LeakyReLU(0.2) in the pyramids, and in
Eq. 3 every channel centred over the positions (CoCosNet's code; the text, worded as in
CoCosNet's paper, reads like a mean over channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

import kernels

from .base import ColorizationGenerator, GeneratorOutput
from .blocks import CrossAttention, fit_within, from_tokens, to_tokens

PRESETS: dict[str, dict] = {
    # Pyramids 64-64-128 (d_v = 256, the fused kernel's largest single head, so Eq. 8 stays one
    # head with the 1/√d_v scale), a 256-channel shared domain as in CoCosNet, and a
    # 64-128-256 generator with four residual blocks at 1/4 resolution.
    "paper": {
        "pyramid_channels": (64, 64, 128),
        "domain_channels": 256,
        "generator_channels": (64, 128, 256),
        "num_res_blocks": 4,
        "moment_hidden_channels": 64,
    },
    # Same topology, narrow (d_v = 128, 1.4 M parameters): the 2-core CPU trains it at 128 px.
    "small": {
        "pyramid_channels": (16, 32, 80),
        "domain_channels": 128,
        "generator_channels": (32, 64, 128),
        "num_res_blocks": 3,
        "moment_hidden_channels": 16,
    },
}

NORM_EPS = 1e-5  # positional normalisation's variance epsilon (Li et al. 2019)
COSINE_EPS = 1e-8  # guards the L2 norm of a centred feature that is exactly zero (Eq. 3)


@dataclass
class CSFTOutput(GeneratorOutput):
    """image and coarse (the warped exemplar, Eq. 4, upsampled to [B, 3, H, W]) as in
    GeneratorOutput, plus the shared-domain features x_c and y_c [B, C, h, w] (Eq. 1–2) for
    the domain alignment loss (Eq. 14)."""

    sketch_domain: torch.Tensor | None = None
    exemplar_domain: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------
# Domain alignment network (§3.1)


class FeaturePyramid(nn.Module):
    """E_s or E_r (§3.1.3): L conv layers (3×3, InstanceNorm, LeakyReLU); the first keeps the
    resolution, every later one halves it. Returns V = [ϕ(f^1), …, ϕ(f^{L-1}), f^L] (Eq. 5)
    with ϕ average pooling to f^L's size: [B, Σ channels, H/2^(L-1), W/2^(L-1)]."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], negative_slope: float):
        super().__init__()
        layers = []
        for level, width in enumerate(channels):
            layers.append(nn.Sequential(
                nn.Conv2d(in_channels, width, 3, stride=1 if level == 0 else 2, padding=1),
                nn.InstanceNorm2d(width, affine=True),
                nn.LeakyReLU(negative_slope),
            ))  # fmt: skip
            in_channels = width
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        size = features[-1].shape[-2:]
        return torch.cat([F.adaptive_avg_pool2d(f, size) for f in features], dim=1)


class CSFT(nn.Module):
    """Cross-domain spatially feature transfer, §3.1.3, Eq. 8–9, then the 1×1 conv to domain c.

    α_ij = softmax_j(W_q v^i · W_k u^j / √d_v) and V*_i = Σ_j α_ij W_v u^j (one head, through
    `kernels.cross_attention`), added back to the queries (a residual, so the query layout
    survives) and projected by a 1×1 conv to the shared domain's channels.
    """

    def __init__(self, feature_channels: int, domain_channels: int):
        super().__init__()
        self.attention = CrossAttention(feature_channels, heads=1)  # W_q, W_k, W_v: d_v × d_v
        self.to_domain = nn.Conv2d(feature_channels, domain_channels, 1)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """queries [B, d_v, h, w], context [B, d_v, h', w'] -> [B, C, h, w]."""
        h, w = queries.shape[-2:]
        tokens = to_tokens(queries)  # (B, h·w, d_v)
        transferred = self.attention(tokens, to_tokens(context))  # V*, (B, h·w, d_v)
        return self.to_domain(from_tokens(tokens + transferred, h, w))


def centred_unit_features(x: torch.Tensor) -> torch.Tensor:
    """x̂ / ‖x̂‖ of Eq. 3 with x̂ = x − mean: every channel centred over the positions, then every
    position's C-vector scaled to unit length, so that dot products are cosines. [B, C, h, w]."""
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / (x.norm(dim=1, keepdim=True) + COSINE_EPS)


def warp_exemplar(
    sketch_domain: torch.Tensor, exemplar_domain: torch.Tensor, exemplar: torch.Tensor,
    alpha: float,
) -> torch.Tensor:  # fmt: skip
    """w_{y→x}(i) = Σ_j softmax_j(α·M(i, j)) y'_e(j), Eq. 3–4, fused by `kernels.cross_attention`.

    Args:
        sketch_domain: x_c, [B, C, h, w]; exemplar_domain: y_c, [B, C, h', w'].
        exemplar: y_e, [B, 3, H', W'], average-pooled to h'×w' (y'_e).
        alpha: the softmax sharpness α (100 in §3.1.2).
    Returns:
        The coarse image at the correspondence resolution, [B, 3, h, w].
    """
    B, C, h, w = sketch_domain.shape
    if C < 3:
        raise ValueError(f"warp_exemplar: the shared domain needs >= 3 channels, got {C}")
    q = to_tokens(centred_unit_features(sketch_domain))[:, None]  # (B, 1, N, C)
    k = to_tokens(centred_unit_features(exemplar_domain))[:, None]  # (B, 1, M, C)
    pooled = F.adaptive_avg_pool2d(exemplar, exemplar_domain.shape[-2:])  # y'_e, (B, 3, h', w')
    # The fused kernel takes values as wide as the keys: the RGB values ride in a zero-padded
    # C-wide row, and the padding columns (which stay zero) are dropped after the product.
    v = F.pad(to_tokens(pooled), (0, C - 3))[:, None]  # (B, 1, M, C)
    warped = kernels.cross_attention(q, k, v, scale=alpha)  # softmax(α·M) y'_e, (B, 1, N, C)
    return from_tokens(warped[:, 0, :, :3], h, w)


# ----------------------------------------------------------------------------------------------
# Coarse-to-fine generator (§3.2)


def positional_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positional normalisation (Li et al. 2019): per-position mean and std over channels.

    [B, C, H, W] -> (normalised [B, C, H, W], μ [B, 1, H, W], σ [B, 1, H, W]).
    """
    mean = x.mean(dim=1, keepdim=True)
    std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + NORM_EPS)
    return (x - mean) / std, mean, std


class DynamicMomentShortcut(nn.Module):
    """Dynamic Moment Shortcut, §3.2 and Fig. 5: x' = γ ⊙ x + β with the encoder moments.

    Fig. 5 left (the plain Moment Shortcut): γ = σ, β = μ. Fig. 5 right (dynamic, the default):
    a two-layer ConvNet on [μ, σ] predicts per-channel offsets, γ = σ + Δγ and β = μ + Δβ, so
    the dynamic form starts out close to the plain shortcut.
    """

    def __init__(self, channels: int, hidden_channels: int, dynamic: bool, negative_slope: float):
        super().__init__()
        self.modulation = (
            nn.Sequential(
                nn.Conv2d(2, hidden_channels, 3, padding=1),
                nn.LeakyReLU(negative_slope),
                nn.Conv2d(hidden_channels, 2 * channels, 3, padding=1),
            )
            if dynamic
            else None
        )

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W]; mean, std [B, 1, H, W] from the encoder level of the same size."""
        gamma, beta = std, mean
        if self.modulation is not None:
            delta_gamma, delta_beta = self.modulation(torch.cat([mean, std], 1)).chunk(2, dim=1)
            gamma, beta = gamma + delta_gamma, beta + delta_beta  # (B, C, H, W) each
        return x * gamma + beta


class ResidualBlock(nn.Module):
    """conv-LeakyReLU-conv plus identity, without normalisation (the DMS carries the
    statistics, §3.2)."""

    def __init__(self, channels: int, negative_slope: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CoarseToFineGenerator(nn.Module):
    """Refines the coarse image under the sketch (§3.2): encoder levels conv → LeakyReLU →
    positional normalisation (keeping μ, σ), residual blocks at the coarsest level, then a
    decoder that upsamples level by level with a DMS from the encoder level of equal size."""

    def __init__(
        self,
        channels: tuple[int, ...],
        num_res_blocks: int,
        hidden_channels: int,
        dynamic_moments: bool,
        negative_slope: float,
    ):
        super().__init__()
        self.negative_slope = negative_slope
        widths = (4, *channels)  # input: sketch ⊕ upsampled coarse image
        self.encoder = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, padding=1)
            for i in range(len(channels))
        )
        self.res_blocks = nn.Sequential(
            *(ResidualBlock(channels[-1], negative_slope) for _ in range(num_res_blocks))
        )
        self.shortcuts = nn.ModuleList(
            DynamicMomentShortcut(width, hidden_channels, dynamic_moments, negative_slope)
            for width in channels
        )
        self.decoder = nn.ModuleList(
            nn.Conv2d(channels[i + 1], channels[i], 3, padding=1) for i in range(len(channels) - 1)
        )
        self.to_rgb = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, sketch: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """sketch [B, 1, H, W], coarse [B, 3, H, W] -> image [B, 3, H, W] in [-1, 1]."""
        x = torch.cat([sketch, coarse], dim=1)  # (B, 4, H, W)
        moments = []
        for conv in self.encoder:
            x, mean, std = positional_moments(F.leaky_relu(conv(x), self.negative_slope))
            moments.append((mean, std))
        x = self.res_blocks(x)
        x = self.shortcuts[-1](x, *moments[-1])
        for level in reversed(range(len(self.decoder))):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.shortcuts[level](self.decoder[level](x), *moments[level])
            x = F.leaky_relu(x, self.negative_slope)
        return torch.tanh(self.to_rgb(x))


# ----------------------------------------------------------------------------------------------


class CSFTGenerator(ModelMixin, ConfigMixin, ColorizationGenerator):
    """Cui et al.'s domain alignment network plus coarse-to-fine generator G(x_s, y_e) (Fig. 1).

    Parameters:
        pyramid_channels: widths of the L conv layers of E_s and E_r (§3.1.3; the paper gives
            none). d_v = Σ widths is the CSFT width of Eq. 6–9; the last layer sits at
            1/2^(L-1) of the input, the correspondence resolution (CoCosNet: 1/4, L = 3).
        domain_channels: channels C of the shared domain c (x_c, y_c; Eq. 1–3).
        correspondence_alpha: α of Eq. 4, the sharpness of softmax(α·M); 100 in §3.1.2.
        generator_channels: encoder/decoder widths of the coarse-to-fine generator per level,
            full resolution first (§3.2; the paper gives none).
        num_res_blocks: residual blocks at the generator's coarsest level.
        moment_hidden_channels: hidden width of the DMS ConvNet predicting γ, β (Fig. 5 right).
        dynamic_moments: True for the Dynamic Moment Shortcut (Fig. 5 right), False for the
            plain Moment Shortcut γ = σ, β = μ (Fig. 5 left).
        negative_slope: LeakyReLU slope everywhere (CoCosNet: 0.2).
        correspondence_side: the longest side the domain alignment network (§3.1: pyramids,
            CSFT, warp) reads the sketch and exemplar at; larger inputs are downscaled to it
            (antialiased, both alike, so they stay at one scale as in training), and the
            coarse image is upsampled to the full size for the coarse-to-fine generator, which
            runs at full resolution. Its attentions are quadratic in the number of positions:
            at 512 px uncapped they span (512/4)² = 16,384 positions each; capped at 256 (the
            paper's training size, §4.1) they span at most 4,096 whatever the input, so the
            cost grows linearly with the sketch's area. None: no cap (exact at any size).

    Input sides must be a multiple of `stride` (the larger of 2^(L-1) and the generator's
    2^(levels-1)). The output carries the upsampled coarse image and x_c, y_c (`CSFTOutput`).
    """

    conditions = ("reference",)

    @register_to_config
    def __init__(
        self,
        pyramid_channels: tuple[int, ...] = (64, 64, 128),
        domain_channels: int = 256,
        correspondence_alpha: float = 100.0,
        generator_channels: tuple[int, ...] = (64, 128, 256),
        num_res_blocks: int = 4,
        moment_hidden_channels: int = 64,
        dynamic_moments: bool = True,
        negative_slope: float = 0.2,
        correspondence_side: int | None = 256,
    ):
        super().__init__()
        pyramid, widths = tuple(pyramid_channels), tuple(generator_channels)
        if not pyramid or min(pyramid) < 1 or not widths or min(widths) < 1:
            raise ValueError(
                "CSFTGenerator: pyramid_channels and generator_channels need at least one "
                f"positive width, got {pyramid} and {widths}"
            )
        if domain_channels < 3 or num_res_blocks < 0 or moment_hidden_channels < 1:
            raise ValueError(
                "CSFTGenerator: need domain_channels >= 3 (the warp carries RGB in that width), "
                f"num_res_blocks >= 0 and moment_hidden_channels >= 1; got {domain_channels}, "
                f"{num_res_blocks}, {moment_hidden_channels}"
            )
        if correspondence_side is not None and correspondence_side < 2 ** len(pyramid):
            raise ValueError(
                "CSFTGenerator: correspondence_side must be None or at least "
                f"{2 ** len(pyramid)} (two positions per side), got {correspondence_side}"
            )
        feature_channels = sum(pyramid)  # d_v of Eq. 6–7
        self.sketch_pyramid = FeaturePyramid(1, pyramid, negative_slope)  # E_s
        self.exemplar_pyramid = FeaturePyramid(3, pyramid, negative_slope)  # E_r
        self.sketch_to_domain = CSFT(feature_channels, domain_channels)  # F_{s→c}, Eq. 1
        self.exemplar_to_domain = CSFT(feature_channels, domain_channels)  # F_{e→c}, Eq. 2
        self.generator = CoarseToFineGenerator(
            widths, num_res_blocks, moment_hidden_channels, dynamic_moments, negative_slope
        )

    @property
    def stride(self) -> int:
        levels = max(len(self.config.pyramid_channels), len(self.config.generator_channels))
        return 2 ** (levels - 1)

    def alignment_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the alignment network reads an H×W input at: the input itself up to
        `correspondence_side`, else scaled to it, aspect kept, sides multiples of `stride`."""
        side = self.config.correspondence_side
        if side is None:
            return height, width
        return fit_within(height, width, side, self.stride)

    def aligned(self, x: torch.Tensor) -> torch.Tensor:
        """An image [B, C, H, W] at `alignment_size` (antialiased bilinear; unchanged when it
        is no larger than `correspondence_side`)."""
        size = self.alignment_size(*x.shape[-2:])
        if size == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    def embed_exemplar(self, image: torch.Tensor) -> torch.Tensor:
        """y_c = F_{e→c}(y_e), Eq. 2: CSFT self-attention over the exemplar's own features.

        [B, 3, H, W] -> [B, C, h/2^(L-1), w/2^(L-1)] at the `alignment_size` (h, w) of the
        input; also the x_e term of Eq. 14.
        """
        features = self.exemplar_pyramid(self.aligned(image))  # (B, d_v, h, w)
        return self.exemplar_to_domain(features, features)

    def embed_sketch(self, sketch: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
        """x_c = F_{s→c}(x_s), Eq. 1: the sketch's features query the exemplar's (Eq. 8–9).

        [B, 1, H, W], [B, 3, H, W] -> [B, C, h/2^(L-1), w/2^(L-1)] (h, w: `alignment_size`).
        """
        return self.sketch_to_domain(self.sketch_pyramid(self.aligned(sketch)),
                                     self.exemplar_pyramid(self.aligned(exemplar)))  # fmt: skip

    def forward(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
        palette: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> CSFTOutput:
        """sketch [B, 1, H, W] and exemplar `reference` [B, 3, H, W] in [-1, 1] -> CSFTOutput."""
        self.check_inputs(sketch, reference=reference, hint=hint, palette=palette, tags=tags)
        small_sketch, small_reference = self.aligned(sketch), self.aligned(reference)
        v_s = self.sketch_pyramid(small_sketch)  # V̂_s, (B, d_v, h, w)
        v_r = self.exemplar_pyramid(small_reference)  # V̂_r, (B, d_v, h, w)
        x_c = self.sketch_to_domain(v_s, v_r)  # (B, C, h, w)
        y_c = self.exemplar_to_domain(v_r, v_r)  # (B, C, h, w)
        warped = warp_exemplar(x_c, y_c, small_reference, self.config.correspondence_alpha)
        coarse = F.interpolate(
            warped, size=sketch.shape[-2:], mode="bilinear", align_corners=False
        )  # (B, 3, H, W)
        image = self.generator(sketch, coarse)
        return CSFTOutput(image=image, coarse=coarse, sketch_domain=x_c, exemplar_domain=y_c)
