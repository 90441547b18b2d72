"""Cross-attention GAN ResUNet for reference-based line-art colorization (Khang et al.; seed 001).

Input (§3.1): the line art I_line (3 ch; our sketch is 1 ch and is repeated to 3 inside) ⊕
the k-means palette of the reference I_color (k = 9 → 27 values, broadcast as 27 constant
planes) = 30 channels. A ResUNet of 7 encoder and 7 decoder residual blocks (Fig. 3) with
GroupNorm and Weight-Standardised convs ([25]) colours it. Cross-attention in the deep
decoder blocks takes Q = W_Q X from the sketch features and K = W_K I_ref, V = W_V I_ref from
the *encoded reference image* and returns Norm(X + Attention(Q, K, V)) with GroupNorm;
per-channel scaled noise is injected in those blocks (Fig. 4). The cross-attention needs the
reference image itself, so the conditions are ("reference", "palette"): the data pipeline or
the app computes the palette from the reference.

Noise injection (StyleGAN's "stochastic variation", [26]) is deterministic where it must be:
with a caller's `torch.Generator` the noise comes from it (train or eval); in eval mode
without one it comes from a fresh generator seeded with `noise_seed` (StyleGAN's "const"
noise), so the same input always gives the same image; only training without a generator
draws from the global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .base import ColorizationGenerator, GeneratorOutput
from .blocks import CrossAttention, WSConv2d, from_tokens, to_tokens

PRESETS: dict[str, dict] = {
    # pix2pix-like widths; 6 of the 7 encoder blocks halve the resolution (256 px -> 4×4).
    "paper": {
        "block_out_channels": (64, 128, 256, 512, 512, 512, 512),
        "num_downsample_blocks": 6,
        "norm_num_groups": 32,
    },
    # Same 7 + 7 topology, narrow, stride 16 (128 px -> 8×8 tokens in the attention blocks).
    "small": {
        "block_out_channels": (16, 32, 64, 80, 80, 80, 80),
        "num_downsample_blocks": 4,
        "norm_num_groups": 8,
        "attention_head_dim": 32,
    },
}

LINE_CHANNELS = 3  # I_line is RGB in the paper (§3.1); the 1-channel sketch is repeated
PALETTE_CHANNELS = 27  # k = 9 colours × RGB (§3.1)


class ResidualBlock(nn.Module):
    """Residual block of Fig. 3: WS-conv 3×3 → GN → ReLU → WS-conv 3×3 → GN, plus the input
    (through a WS-conv 1×1 → GN where the shape changes), then ReLU.

    The conv-BN-ReLU residual unit with GroupNorm for BatchNorm and Weight Standardisation on
    every conv (§3.1, [25]). Every standardised conv is followed by a norm, which keeps the
    activations O(1) (fp16-safe): a standardised filter alone multiplies the scale by about
    √fan_in. `stride=2` downsamples in the first conv and the shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int = 1):
        super().__init__()
        self.conv1 = WSConv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(groups, out_channels)
        self.conv2 = WSConv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.shortcut = (
            nn.Sequential(
                WSConv2d(in_channels, out_channels, 1, stride=stride),
                nn.GroupNorm(groups, out_channels),
            )
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class NoiseInjection(nn.Module):
    """x + s_c · n with n ~ N(0, 1) one [B, 1, H, W] plane and s a learnt per-channel scale
    (§3.1, Fig. 4; StyleGAN [26]). s starts at zero, so training decides how much noise helps."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.scale.view(1, -1, 1, 1) * noise


class ReferenceCrossAttention(nn.Module):
    """Output = Norm(X + Attention(Q, K, V)), Q = W_Q X, K = W_K I_ref, V = W_V I_ref (§3.1).

    X: sketch features [B, C, H, W]; the context: encoded reference [B, Cr, Hr, Wr]; Norm is
    GroupNorm. Multi-head with `head_dim` channels per head (see the generator's docstring).
    """

    def __init__(self, channels: int, context_channels: int, head_dim: int, groups: int):
        super().__init__()
        heads = max(1, channels // head_dim)
        self.attention = CrossAttention(
            channels, context_channels, heads=heads, head_dim=channels // heads
        )
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = self.attention(to_tokens(x), to_tokens(context))  # (B, H·W, C)
        return self.norm(x + from_tokens(attended, x.shape[-2], x.shape[-1]))


class DecoderBlock(nn.Module):
    """Decoder block of Fig. 4: residual block on [upsampled x ⊕ skip], then (deep blocks
    only) per-channel noise injection and cross-attention to the encoded reference."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        noise: bool,
        context_channels: int | None,
        head_dim: int,
    ):
        super().__init__()
        self.residual = ResidualBlock(in_channels, out_channels, groups)
        self.noise = NoiseInjection(out_channels) if noise else None
        self.attention = (
            ReferenceCrossAttention(out_channels, context_channels, head_dim, groups)
            if context_channels is not None
            else None
        )

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        x = self.residual(x)
        if self.noise is not None:
            B, _, H, W = x.shape
            device = generator.device if generator is not None else x.device
            plane = torch.randn(B, 1, H, W, generator=generator, device=device, dtype=x.dtype)
            x = self.noise(x, plane.to(x.device))
        if self.attention is not None:
            x = self.attention(x, context)
        return x


class ResUNetGenerator(ModelMixin, ConfigMixin, ColorizationGenerator):
    """Khang et al.'s generator: a cross-attention GAN ResUNet (§3.1, Figs. 2–4).

    Parameters:
        block_out_channels: widths of the 7 encoder residual blocks; the 7 decoder blocks
            mirror them and the reference encoder repeats them. Not given in the paper:
            pix2pix-style (64, 128, 256, 512, 512, 512, 512).
        num_downsample_blocks: encoder blocks 2 … 1+n halve the resolution (stride 2^n);
            the rest keep it. 6: a 256 px input reaches 4×4 in the deepest block.
        norm_num_groups: GroupNorm groups (Wu & He: 32); every width must be divisible by it.
        num_attention_blocks: the deepest decoder blocks that cross-attend to the encoded
            reference ("the deep layers", §3.1): 3.
        num_noise_blocks: the deepest decoder blocks with noise injection ("some layers of
            the Decoder", Fig. 4, which pairs it with the attention): 3.
        attention_head_dim: channels per attention head. The paper writes single-head
            softmax(QKᵀ/√d_k)V; with 512 channels one head would exceed the fused kernel's
            head size, so heads of 64 channels are used (one head below 64 channels).
        noise_seed: seed of the noise in eval mode when the caller passes no generator.

    `forward(..., generator=g)` draws the injected noise from `g` in train and eval mode.
    """

    conditions = ("reference", "palette")

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512),
        num_downsample_blocks: int = 6,
        norm_num_groups: int = 32,
        num_attention_blocks: int = 3,
        num_noise_blocks: int = 3,
        attention_head_dim: int = 64,
        noise_seed: int = 0,
    ):
        super().__init__()
        widths = tuple(block_out_channels)
        depth = len(widths)
        if not 0 <= num_downsample_blocks < depth:
            raise ValueError(
                f"ResUNetGenerator: num_downsample_blocks must be in [0, {depth - 1}] for "
                f"{depth} encoder blocks, got {num_downsample_blocks}"
            )
        if any(w % norm_num_groups for w in widths):
            raise ValueError(
                f"ResUNetGenerator: every width in {widths} must be divisible by "
                f"norm_num_groups={norm_num_groups}"
            )
        if not (0 <= num_attention_blocks <= depth and 0 <= num_noise_blocks <= depth):
            raise ValueError(
                f"ResUNetGenerator: num_attention_blocks and num_noise_blocks must be in "
                f"[0, {depth}], got {num_attention_blocks} and {num_noise_blocks}"
            )
        strides = [2 if 1 <= i <= num_downsample_blocks else 1 for i in range(depth)]
        groups = norm_num_groups

        def encoder(in_channels: int) -> nn.ModuleList:
            channels = (in_channels, *widths[:-1])
            return nn.ModuleList(
                ResidualBlock(channels[i], widths[i], groups, strides[i]) for i in range(depth)
            )

        self.encoder = encoder(LINE_CHANNELS + PALETTE_CHANNELS)
        self.reference_encoder = encoder(3)
        # decoder[j] works at the resolution of encoder block i = depth-1-j (deepest first);
        # the first decoder block takes the bottleneck alone, the others concatenate a skip.
        self.decoder = nn.ModuleList()
        for j in range(depth):
            i = depth - 1 - j
            in_channels = widths[i] if j == 0 else widths[i + 1] + widths[i]
            self.decoder.append(
                DecoderBlock(
                    in_channels,
                    widths[i],
                    groups,
                    noise=j < num_noise_blocks,
                    context_channels=widths[i] if j < num_attention_blocks else None,
                    head_dim=attention_head_dim,
                )
            )
        # A plain conv for the RGB head: a standardised filter has unit-variance weights,
        # which would saturate the tanh at initialisation.
        self.to_rgb = nn.Conv2d(widths[0], 3, 3, padding=1)

    @property
    def stride(self) -> int:
        return 2**self.config.num_downsample_blocks

    def forward(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
        palette: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GeneratorOutput:
        """sketch [B, 1, H, W], reference [B, 3, H, W], palette [B, 27] -> image [B, 3, H, W].

        generator: source of the injected noise (see the module docstring for the default).
        """
        self.check_inputs(sketch, reference=reference, hint=hint, palette=palette, tags=tags)
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(self.config.noise_seed)
        B, _, H, W = sketch.shape
        line = sketch.expand(B, LINE_CHANNELS, H, W)  # I_line: the sketch as 3 grey channels
        colors = palette.to(sketch.dtype)[:, :, None, None].expand(B, PALETTE_CHANNELS, H, W)
        x = torch.cat([line, colors], dim=1)  # I_input = I_line ⊕ I_color, (B, 30, H, W)

        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        contexts = []
        r = reference
        for block in self.reference_encoder:
            r = block(r)
            contexts.append(r)

        x = skips[-1]
        depth = len(self.decoder)
        for j, block in enumerate(self.decoder):
            i = depth - 1 - j
            if j > 0:
                if x.shape[-1] != skips[i].shape[-1]:
                    x = F.interpolate(x, size=skips[i].shape[-2:], mode="nearest")
                x = torch.cat([x, skips[i]], dim=1)
            x = block(x, contexts[i], generator)
        return GeneratorOutput(image=torch.tanh(self.to_rgb(x)))
