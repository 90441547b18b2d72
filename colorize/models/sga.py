"""Attention-aware reference-based colorization (Cao, Tian, Mok; seed 000).

Sketch encoder E_l (1 ch) and reference encoder E_r (3 ch), every conv followed by CBAM
(§III-B.1); the multi-scale encoder features are resized to the last scale and concatenated
("feature dimension transformation", as in Lee et al.'s SCFT); two stop-gradient attention
blocks fuse them, cross then self (§III-B.2, Fig. 2, Li et al. 2022); the fused features are
added to the sketch features, pass residual blocks and a U-Net decoder fed by the sketch
encoder's skip connections, with BatchNorm throughout (§III-A) and a tanh output.

Widths, depths and the SGA block's internals follow the SGA authors' public code (Li et al.,
ECCV 2022), on which Cao et al. build; Cao et al. give no widths themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

import kernels

from .base import ColorizationGenerator, GeneratorOutput
from .blocks import CBAM, fit_within, from_tokens, to_tokens

PRESETS: dict[str, dict] = {
    # Li et al.'s encoder widths 16…256 with two convs per scale: 992 fused channels, 4 res blocks.
    "paper": {
        "block_out_channels": (16, 32, 64, 128, 256),
        "layers_per_block": 2,
        "num_res_blocks": 4,
    },
    # One conv per scale, stride 8: 208 fused channels on a 16×16 grid at 128 px.
    "small": {
        "block_out_channels": (16, 32, 64, 96),
        "layers_per_block": 1,
        "num_res_blocks": 2,
    },
}


class SGABlock(nn.Module):
    """Stop-gradient attention block of Li et al. (ECCV 2022), Cao et al. §III-B.2.

    z = BN(A · lrelu(W_v y) + lrelu(W_q x)) and out = x + z (the short connection), with
    A = colnorm(softmax(x yᵀ)) computed from the raw features *without gradient* by
    `kernels.sga_attention`. Cross-attention passes y (reference tokens); self-attention
    leaves y None (y = x). x and W_q get gradient only through the short connection, y and
    W_v only through the values: the attention matrix never back-propagates.
    """

    def __init__(self, channels: int, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.to_query = nn.Linear(channels, channels)  # W_q: the projected short connection
        self.to_value = nn.Linear(channels, channels)  # W_v: the attended messages
        self.norm = nn.BatchNorm1d(channels)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, key_weight: float = 1.0
    ) -> torch.Tensor:
        """x: [B, N, C] queries; y: [B, M, C] keys/values (None: self-attention). -> [B, N, C].

        key_weight: how many positions each key stands for (pooled keys: the pooling area).
        The column normalisation gives every key a total weight of 1 over the queries, so
        A·v carries M units of mass and its rows sum to M/N on average; a key pooled from r
        positions carries r, which keeps the message's scale (and the BatchNorm statistics
        that follow) what the uncapped block would see."""
        y = x if y is None else y
        values = F.leaky_relu(self.to_value(y), self.negative_slope)  # (B, M, C)
        z = kernels.sga_attention(x, y, values)  # (B, N, C), A without gradient
        if key_weight != 1.0:
            z = z * key_weight
        z = z + F.leaky_relu(self.to_query(x), self.negative_slope)  # (B, N, C)
        z = self.norm(z.transpose(1, 2)).transpose(1, 2)  # BN over channels, (B, N, C)
        return x + z


class ConvBlock(nn.Sequential):
    """Conv 3×3 → BN → LeakyReLU(0.2), optionally followed by CBAM (the encoders, §III-B.1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        negative_slope: float = 0.2,
        cbam_reduction: int | None = None,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(negative_slope),
        ]
        if cbam_reduction is not None:
            layers.append(CBAM(out_channels, reduction=cbam_reduction))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity: the residual blocks after the fusion (§III-A)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AttentionEncoder(nn.Module):
    """E_l or E_r: ConvBlocks with CBAM; the first scale keeps the resolution and every later
    scale starts with a stride-2 conv. Returns every layer's feature map, shallow first."""

    def __init__(
        self,
        in_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        negative_slope: float,
        cbam_reduction: int,
    ):
        super().__init__()
        layers = []
        channels = in_channels
        for level, width in enumerate(block_out_channels):
            for index in range(layers_per_block):
                stride = 2 if level > 0 and index == 0 else 1
                layers.append(ConvBlock(channels, width, stride, negative_slope, cbam_reduction))
                channels = width
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


def feature_dimension_transformation(features: list[torch.Tensor]) -> torch.Tensor:
    """Resize every feature map to the last one's size and concatenate on channels (§III-B.1).

    Area (average) pooling, as the SGA authors' adaptive average pooling: [B, ΣC, h, w].
    """
    size = features[-1].shape[-2:]
    return torch.cat([F.adaptive_avg_pool2d(f, size) for f in features], dim=1)


class SGAGenerator(ModelMixin, ConfigMixin, ColorizationGenerator):
    """Cao et al.'s attention-aware generator G(I_l, I_r) (§III-A, Fig. 2).

    Parameters:
        block_out_channels: encoder widths per scale (both encoders; the decoder mirrors them).
            Cao et al. give none; (16, 32, 64, 128, 256) is the SGA authors' code, giving
            992 fused channels at 1/16 resolution.
        layers_per_block: ConvBlocks (conv-BN-LeakyReLU-CBAM) per scale; 2 in the SGA code.
        num_res_blocks: residual blocks after the fusion ("several", §III-A; 4 in the SGA code).
        cbam_reduction: CBAM's channel-MLP reduction ratio r (Woo et al. 2018: 16).
        negative_slope: LeakyReLU slope of the conv blocks and SGA projections (SGA code: 0.2).
        attention_key_side: the input side up to which the SGA blocks attend to every key
            position. Beyond it their keys and values (the reference's tokens, and the sketch's
            own in the self-attention) are average-pooled to the grid of that side, while the
            queries keep every position: the attention then costs N·M' with M' fixed, linear in
            the image's area instead of quadratic (at 512 px with 256: 4,096 queries over 1,024
            keys instead of 4,096). The training sizes (128 px here, 256 in the paper) sit below
            it, so training and their evaluations are unchanged. None: attend to all keys.

    The input side must be a multiple of 2^(len(block_out_channels) - 1).
    """

    conditions = ("reference",)

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128, 256),
        layers_per_block: int = 2,
        num_res_blocks: int = 4,
        cbam_reduction: int = 16,
        negative_slope: float = 0.2,
        attention_key_side: int | None = 256,
    ):
        super().__init__()
        widths = tuple(block_out_channels)
        if attention_key_side is not None and attention_key_side < 2 ** (len(widths) - 1):
            raise ValueError(
                "SGAGenerator: attention_key_side must be None or at least the stride "
                f"{2 ** (len(widths) - 1)}, got {attention_key_side}"
            )
        if not widths or min(widths) < 1 or layers_per_block < 1 or num_res_blocks < 0:
            raise ValueError(
                f"SGAGenerator: need widths >= 1, layers_per_block >= 1, num_res_blocks >= 0; "
                f"got {widths}, {layers_per_block}, {num_res_blocks}"
            )
        encoder_args = (widths, layers_per_block, negative_slope, cbam_reduction)
        self.sketch_encoder = AttentionEncoder(1, *encoder_args)  # E_l
        self.reference_encoder = AttentionEncoder(3, *encoder_args)  # E_r
        fused = layers_per_block * sum(widths)  # channels of V_l, V_r
        self.cross_attention = SGABlock(fused, negative_slope)
        self.self_attention = SGABlock(fused, negative_slope)
        self.res_blocks = nn.Sequential(*(ResidualBlock(fused) for _ in range(num_res_blocks)))

        layer_widths = [w for w in widths for _ in range(layers_per_block)]
        # U-Net decoder: one ConvBlock per encoder layer, deepest first; every block but the
        # first takes the matching sketch-encoder feature as a skip connection.
        self.decoder_in = ConvBlock(fused, layer_widths[-1], negative_slope=negative_slope)
        self.decoder = nn.ModuleList(
            ConvBlock(
                layer_widths[i + 1] + layer_widths[i],
                layer_widths[i],
                negative_slope=negative_slope,
            )
            for i in reversed(range(len(layer_widths) - 1))
        )
        self.to_rgb = nn.Conv2d(layer_widths[0], 3, 3, padding=1)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def key_grid(self, h: int, w: int) -> tuple[int, int]:
        """The token grid the SGA blocks' keys sit on for an h×w feature grid: the grid itself
        up to `attention_key_side` / stride positions a side, else pooled to that, aspect kept."""
        side = self.config.attention_key_side
        return (h, w) if side is None else fit_within(h, w, side / self.stride)

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map [B, C, h, w] -> key/value tokens [B, M', C] on `key_grid`."""
        grid = self.key_grid(*features.shape[-2:])
        if grid != tuple(features.shape[-2:]):
            features = F.adaptive_avg_pool2d(features, grid)
        return to_tokens(features)

    def forward(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
        palette: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> GeneratorOutput:
        """sketch [B, 1, H, W] and reference [B, 3, H, W] in [-1, 1] -> image [B, 3, H, W]."""
        self.check_inputs(sketch, reference=reference, hint=hint, palette=palette, tags=tags)
        sketch_features = self.sketch_encoder(sketch)
        v_l = feature_dimension_transformation(sketch_features)  # (B, Cf, h, w)
        v_r = feature_dimension_transformation(self.reference_encoder(reference))  # (B, Cf, h, w)
        h, w = v_l.shape[-2:]

        keys_r = self.keys(v_r)
        tokens = self.cross_attention(to_tokens(v_l), keys_r, h * w / keys_r.shape[1])
        if self.key_grid(h, w) == (h, w):
            v_f = from_tokens(self.self_attention(tokens), h, w)  # (B, Cf, h, w)
        else:  # self-attention over pooled keys of the same tokens
            keys = self.keys(from_tokens(tokens, h, w))
            v_f = from_tokens(self.self_attention(tokens, keys, h * w / keys.shape[1]), h, w)
        x = self.res_blocks(v_l + v_f)  # V_l + V_f, then the residual blocks (§III-A)

        x = self.decoder_in(x)
        for block, skip in zip(self.decoder, reversed(sketch_features[:-1]), strict=True):
            if skip.shape[-1] != x.shape[-1]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return GeneratorOutput(image=torch.tanh(self.to_rgb(x)))
