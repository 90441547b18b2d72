"""Reference + tag colorization: Yan et al., "Two-Step Training: Adjustable Sketch Colourization
via Reference Image and Text Tag" (Computer Graphics Forum 2023).

Step 1 (§3.1–3.4) trains `TagsGenerator` G(x, φ(r)): a frozen pretrained reference encoder φ
(the project's `Tagger`, embedded, no gradient, always in eval mode; Yan et al. use ResNet-34,
§3.4) turns the reference r into latent codes φ(r) [B, Cr, h, w] (its last stage, after ReLU,
so φ(r) >= 0). A sketch encoder gives x̂; the receiving block (Eq. 5)

    ψ(x, r̂) = H(x̂ + O(softmax(Q(x̂) K(r̂) / √d_s) V(r̂)))   "Attention" model
    ψ(x, r̂) = H(x̂ + GAP(r̂))                                "Add" model

injects the codes; RBCA blocks (§3.3) re-weight the upsampling features by the reference; a
sub-pixel decoder with U-Net skips gives the image (ReLU inside, tanh out, Fig. 2).

Step 2 (§3.5) trains `TagMapper` (φ_map, "the mapping network φ" of the paper, and ω) with G
frozen. Given an anchor reference r_a with predicted tag values cls_a and target tag values
cls_t, the biased codes (Eq. 10, 11)

    δ_b = φ(r_a) + F(r_a) · (φ_map(cls_t) − φ_map(cls_a)),
    F(r_a) = ω(φ(r_a) / GAP(φ(r_a)))  (M-Attention)   or   I  (M-Add)

replace φ(r) as r̂ in G.

Inference with tags: `TagsGenerator.forward(sketch, reference=r, tags=cls_t)`. `tags` [B, T]
are the *target* tag values (the app's sliders, which start at `reference_tags(r)`, i.e. cls_a);
the attached mapper moves the reference's codes towards them. `tags=None` colours from the
reference alone. Passing tags to a generator without a trained mapper is a ValueError. The
mapper is a submodule (`attach_mapper`), recorded in the config as `mapper_config`, so a
generator saved after step 2 reloads with its mapper.

Implementation notes (from the authors' code, github.com/tellurion-kanata/sketch_colorizer):
the encoder is five blocks of (3×3 conv, 3×3 stride-2 conv), ReLU; a residual block precedes
the receiving block, whose H is a 3×3 conv + ReLU; the first upsampling block adds a spatial
self-attention; the next ones carry RBCA; every upsampling is a sub-pixel convolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

import kernels

from .base import ColorizationGenerator, GeneratorOutput
from .blocks import CrossAttention, from_tokens, init_unnormalised, to_tokens
from .tagger import PRESETS as TAGGER_PRESETS
from .tagger import Tagger

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "encoder_channels": (64, 128, 256, 512),
        "latent_channels": 512,
        "receiving_block": "attention",
        "attention_heads": 2,
        "rbca": True,
        "tagger_config": dict(TAGGER_PRESETS["paper"]),
    },
    # ~1.9 M parameters with the embedded small tagger: trains on a 2-core CPU at 128 px
    "small": {
        "encoder_channels": (16, 32, 64),
        "latent_channels": 128,
        "receiving_block": "attention",
        "attention_heads": 2,
        "rbca": True,
        "tagger_config": dict(TAGGER_PRESETS["small"]),
    },
}

MAPPER_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"code_channels": 512, "num_layers": 4, "position_weights": True},
    "small": {"code_channels": 128, "num_layers": 4, "position_weights": True},
}


# ---------------------------------------------------------------------------------------------
# Step 2: the tag mapper


class TagMapper(ModelMixin, ConfigMixin):
    """Yan et al.'s mapping networks of the second training (§3.5): the self-adaptive MLP
    φ_map (Fig. 5) from tag values to a latent offset and ω, the position-weight matrix.

    Parameters:
        num_tags: T, the length of the tag-value vectors (the tagger's vocabulary).
        code_channels: Cr, the channels of the reference codes φ(r) (ResNet-34: 512).
        num_layers: fully connected layers of the self-adaptive MLP (the authors' code: 4).
        position_weights: learn ω for M-Attention (Eq. 11, top); False gives M-Add's F = I.
    """

    @register_to_config
    def __init__(
        self,
        num_tags: int = 64,
        code_channels: int = 512,
        num_layers: int = 4,
        position_weights: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"TagMapper: num_layers must be >= 1, got {num_layers}")
        widths = [num_tags] + [code_channels] * num_layers
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU())
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        # Fig. 5: the layers' outputs are concatenated and adaptively weighted
        self.fusion = nn.Linear(code_channels * num_layers, code_channels, bias=False)
        self.omega = nn.Linear(code_channels, code_channels) if position_weights else None

    def map_tags(self, tags: torch.Tensor) -> torch.Tensor:
        """φ_map(cls): tag values [B, T] -> latent offset [B, Cr] (self-adaptive MLP, Fig. 5)."""
        if tags.dim() != 2 or tags.shape[1] != self.config.num_tags:
            raise ValueError(
                f"TagMapper: tags must be [B, {self.config.num_tags}], got {tuple(tags.shape)}"
            )
        outputs, x = [], tags
        for layer in self.layers:
            x = layer(x)  # (B, Cr)
            outputs.append(x)
        return self.fusion(torch.cat(outputs, dim=1))  # (B, Cr)

    def position_weight_matrix(self, codes: torch.Tensor) -> torch.Tensor | float:
        """F(r_a) of Eq. 11: ω(φ(r_a) / GAP(φ(r_a))) per position [B, Cr, h, w] (the ratio is 1
        where a channel's GAP is 0), or 1 for M-Add."""
        if self.omega is None:
            return 1.0
        mean = codes.mean(dim=(2, 3), keepdim=True)  # (B, Cr, 1, 1)
        ratio = torch.where(mean > 0, codes / mean.clamp_min(1e-12), torch.ones_like(codes))
        h, w = codes.shape[-2:]
        return from_tokens(self.omega(to_tokens(ratio)), h, w)  # (B, Cr, h, w)

    def forward(
        self, codes: torch.Tensor, anchor_tags: torch.Tensor, target_tags: torch.Tensor
    ) -> torch.Tensor:
        """δ_b = φ(r_a) + F(r_a) · (φ_map(cls_t) − φ_map(cls_a)), Yan et al. Eq. 10.

        Args:
            codes: φ(r_a), the anchor reference's codes [B, Cr, h, w].
            anchor_tags: cls_a, the tagger's tag values of r_a [B, T].
            target_tags: cls_t, the wanted tag values [B, T] (may exceed 1, §4.4).
        Returns:
            δ_b [B, Cr, h, w].
        """
        if codes.dim() != 4 or codes.shape[1] != self.config.code_channels:
            raise ValueError(
                f"TagMapper: codes must be [B, {self.config.code_channels}, h, w], got "
                f"{tuple(codes.shape)}"
            )
        offset = self.map_tags(target_tags) - self.map_tags(anchor_tags)  # (B, Cr)
        return codes + self.position_weight_matrix(codes) * offset[:, :, None, None]


# ---------------------------------------------------------------------------------------------
# Step 1: the generator's blocks


class DownBlock(nn.Module):
    """Sketch-encoder block of the authors' code: 3×3 conv, 3×3 stride-2 conv, ReLU after each."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class ResidualBlock(nn.Module):
    """3×3 conv, ReLU, 3×3 conv, identity shortcut, ReLU (before the receiving block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ReceivingBlock(nn.Module):
    """Receiving block ψ(x, r̂) of Yan et al. §3.2, Eq. 5: H(x̂ + O(softmax(Q K/√d) V)) for the
    Attention model (through `kernels.cross_attention`), H(x̂ + GAP(r̂)) for the Add model."""

    def __init__(self, channels: int, code_channels: int, mode: str, heads: int):
        super().__init__()
        self.mode = mode
        if mode == "attention":
            self.attention = CrossAttention(channels, context_dim=code_channels, heads=heads)
        elif code_channels != channels:
            self.project = nn.Linear(code_channels, channels)  # GAP(r̂) to x̂'s width
        else:
            self.project = nn.Identity()
        self.H = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.mode == "attention":
            h, w = x.shape[-2:]
            received = from_tokens(self.attention(to_tokens(x), to_tokens(codes)), h, w)
        else:
            received = self.project(codes.mean(dim=(2, 3)))[:, :, None, None]  # (B, C, 1, 1)
        return torch.relu(self.H(x + received))


class ChannelAttention(nn.Module):
    """Reference-based channel-wise attention core (Yan et al. §3.3, Fig. 3): the channels are
    the tokens. q = W_q GAP(x̂), k = W_k GAP(r̂), v = W_v GAP(r̂) are [B, C] (one scalar per
    channel); out = W_o softmax(q kᵀ / √C) v through `kernels.cross_attention` (head dim 1).

    Each sketch channel attends over the reference channels (softmax over the keys). The
    authors' code normalises over the query channels instead, which is not an attention the
    fused kernel computes; the scale 1/√C is theirs."""

    def __init__(self, channels: int, code_channels: int):
        super().__init__()
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(code_channels, channels, bias=False)
        self.to_v = nn.Linear(code_channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels, bias=False)

    def forward(self, pooled: torch.Tensor, pooled_codes: torch.Tensor) -> torch.Tensor:
        B, C = pooled.shape
        q = self.to_q(pooled).view(B, 1, C, 1)  # (B, 1 head, C tokens, d=1)
        k = self.to_k(pooled_codes).view(B, 1, C, 1)
        v = self.to_v(pooled_codes).view(B, 1, C, 1)
        out = kernels.cross_attention(q, k, v, scale=C**-0.5)  # (B, 1, C, 1)
        return self.to_out(out.view(B, C))


class UpBlock(nn.Module):
    """Sub-pixel upsampling block (3×3 conv to 4·C, ReLU, PixelShuffle(2)), optionally with
    an RBCA block x̂ + x̂·sigmoid(attention) (Yan et al. §3.3), then a 3×3 conv (+ ReLU, or
    nothing for the last block, whose tanh is applied by the generator)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int,
        code_channels: int | None = None,
        final: bool = False,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels * 4, 3, padding=1)
        self.rbca = ChannelAttention(channels, code_channels) if code_channels else None
        self.conv2 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.final = final

    def forward(self, x: torch.Tensor, pooled_codes: torch.Tensor | None = None) -> torch.Tensor:
        y = F.pixel_shuffle(torch.relu(self.conv1(x)), 2)  # (B, C, 2h, 2w)
        if self.rbca is not None:
            gate = torch.sigmoid(self.rbca(y.mean(dim=(2, 3)), pooled_codes))  # (B, C)
            y = y + y * gate[:, :, None, None]  # re-weighted, with a residual path (§3.3)
        y = self.conv2(y)
        return y if self.final else torch.relu(y)


class SelfAttentionUpBlock(nn.Module):
    """First decoder block of the authors' code: sub-pixel upsampling (3×3 conv to 4·C, ReLU,
    PixelShuffle(2)) then y + SelfAttention(y) through `kernels.cross_attention`."""

    def __init__(self, in_channels: int, channels: int, heads: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels * 4, 3, padding=1)
        self.attention = CrossAttention(channels, heads=heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(torch.relu(self.conv(x)), 2)  # (B, C, 2h, 2w)
        h, w = y.shape[-2:]
        return y + from_tokens(self.attention(to_tokens(y)), h, w)


# ---------------------------------------------------------------------------------------------
# The generator


class TagsGenerator(ModelMixin, ConfigMixin, ColorizationGenerator):
    """Yan et al.'s generator G(x, r̂) with the embedded frozen reference encoder φ and an
    optional step-2 `TagMapper` (see the module docstring for the data flow).

    Parameters:
        num_tags: T, the tagger's vocabulary size; `tags` are [B, T] (the paper: 6000 Danbooru
            tags, §3). The embedded tagger gets it unless tagger_config sets the same value.
        encoder_channels: widths of the sketch-encoder blocks above the bottleneck, each
            halving the resolution (the authors' code: ngf·(1, 2, 4, 8), ngf = 64); the
            decoder mirrors them. Stride: max(2^(len + 1), the tagger's stride).
        latent_channels: width of x̂ at the bottleneck, d_s of Eq. 5 (the authors' code: 512).
        receiving_block: "attention" (the Attention model) or "add" (the Add model), Eq. 5.
        attention_heads: heads of the receiving and first-decoder attention. The paper uses
            one head of d_s = 512; the fused kernel holds head dims <= 256, so the paper
            preset splits d_s into 2 heads (a deviation, softmax scale 1/√(d_s/2)).
        rbca: RBCA blocks in the intermediate upsampling layers (§3.3, Table 1 ablation).
        tagger_config: constructor arguments of the embedded `Tagger` (JSON-friendly), the
            frozen reference encoder φ (§3.4; default `Tagger()`, ResNet-34-like). φ(r) is its
            last stage. Load trained weights with `load_tagger`.
        mapper_config: constructor arguments of the attached step-2 `TagMapper`, or None.
            Set by `attach_mapper`; needed to pass `tags`.
    """

    conditions = ("reference", "tags")
    optional_conditions = ("tags",)  # the reference alone colours (step 1)

    @register_to_config
    def __init__(
        self,
        num_tags: int = 64,
        encoder_channels: tuple[int, ...] = (64, 128, 256, 512),
        latent_channels: int = 512,
        receiving_block: str = "attention",
        attention_heads: int = 2,
        rbca: bool = True,
        tagger_config: dict[str, Any] | None = None,
        mapper_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        if receiving_block not in ("attention", "add"):
            raise ValueError(
                f"TagsGenerator: receiving_block must be 'attention' or 'add', got "
                f"{receiving_block!r}"
            )
        if len(encoder_channels) < 2:
            raise ValueError(
                "TagsGenerator: encoder_channels needs at least 2 levels, got "
                f"{list(encoder_channels)}"
            )
        tagger_config = dict(tagger_config or {})
        if tagger_config.setdefault("num_tags", num_tags) != num_tags:
            raise ValueError(
                f"TagsGenerator: num_tags={num_tags} but tagger_config has num_tags="
                f"{tagger_config['num_tags']}; the tag vectors are the tagger's outputs"
            )
        self.tagger = Tagger(**tagger_config).freeze()
        self.code_layer = f"stage{len(self.tagger.stages)}"
        code_channels = self.tagger.feature_channels[self.code_layer]
        self.code_channels = code_channels
        self.stride = max(2 ** (len(encoder_channels) + 1), self.tagger.stride)

        widths = (*encoder_channels, latent_channels)
        self.encoder = nn.ModuleList(
            DownBlock(a, b) for a, b in zip((1, *widths[:-1]), widths, strict=True)
        )
        self.residual = ResidualBlock(latent_channels)
        self.receive = ReceivingBlock(
            latent_channels, code_channels, receiving_block, attention_heads
        )
        self.up_first = SelfAttentionUpBlock(latent_channels, encoder_channels[-1], attention_heads)
        self.up_blocks = nn.ModuleList(
            UpBlock(2 * c, c_out, c_out, code_channels if rbca else None)
            for c, c_out in zip(encoder_channels[:0:-1], encoder_channels[-2::-1], strict=True)
        )
        c0 = encoder_channels[0]
        self.up_final = UpBlock(2 * c0, c0, 3, final=True)
        init_unnormalised(
            [m for name, m in self.named_children() if name != "tagger"],  # built before the mapper
            0.0,  # ReLU
            [self.residual.conv2],
        )
        self.mapper = TagMapper(**mapper_config) if mapper_config else None
        if self.mapper is not None:
            self._check_mapper(self.mapper)

    # ---------------------------------------------------------------------------------------
    # tagger and mapper

    @classmethod
    def with_tagger(cls, tagger: Tagger, **kwargs: Any) -> TagsGenerator:
        """A generator whose embedded reference encoder is a copy of the trained `tagger` (its
        architecture and num_tags replace any given in kwargs, e.g. from a preset)."""
        architecture = tagger.architecture()
        model = cls(
            **{**kwargs, "num_tags": architecture["num_tags"], "tagger_config": architecture}
        )
        model.load_tagger(tagger)
        return model

    def load_tagger(self, tagger: Tagger) -> None:
        """Copy trained tagger weights into the embedded frozen encoder (configs must match)."""
        self.tagger.load_weights_from(tagger)

    def build_mapper(self, **overrides: Any) -> TagMapper:
        """A new step-2 TagMapper sized for this generator (ω only for the Attention model,
        Eq. 11), to train with the generator frozen and then `attach_mapper`."""
        config = {
            "num_tags": self.config.num_tags,
            "code_channels": self.code_channels,
            "position_weights": self.config.receiving_block == "attention",
            **overrides,
        }
        return TagMapper(**config)

    def attach_mapper(self, mapper: TagMapper) -> None:
        """Make `mapper` the submodule that turns `tags` into code offsets; its config is
        recorded as `mapper_config`, so `save_pretrained` / `from_pretrained` keep it."""
        self._check_mapper(mapper)
        self.mapper = mapper.to(self.device)
        config = {k: v for k, v in mapper.config.items() if not k.startswith("_")}
        self.register_to_config(mapper_config=config)

    def _check_mapper(self, mapper: TagMapper) -> None:
        if (mapper.config.num_tags, mapper.config.code_channels) != (
            self.config.num_tags,
            self.code_channels,
        ):
            raise ValueError(
                f"TagsGenerator: the mapper maps {mapper.config.num_tags} tags to "
                f"{mapper.config.code_channels} channels; this generator needs "
                f"{self.config.num_tags} tags and {self.code_channels} code channels"
            )

    # ---------------------------------------------------------------------------------------
    # the two steps of inference

    def encode_reference(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoder's codes φ(r) [B, Cr, H/s, W/s] (s = tagger stride) and tag values
        cls = sigmoid(logits) [B, T] of a reference [B, 3, H, W] (§3.4, §3.5)."""
        with torch.no_grad():
            out = self.tagger.features(reference, [self.code_layer, "logits"])
        return out[self.code_layer], torch.sigmoid(out["logits"])

    def reference_tags(self, reference: torch.Tensor) -> torch.Tensor:
        """The tag values cls_a [B, T] the tagger reads from a reference: the sliders' start."""
        return self.encode_reference(reference)[1]

    def shift_codes(
        self, codes: torch.Tensor, anchor_tags: torch.Tensor, target_tags: torch.Tensor
    ) -> torch.Tensor:
        """δ_b of Eq. 10 with the attached mapper; a ValueError if there is none."""
        if self.mapper is None:
            raise ValueError(
                "TagsGenerator: tags were given but no trained TagMapper is attached; train "
                "step 2 and call attach_mapper(), or colour with the reference alone (tags=None)"
            )
        return self.mapper(codes, anchor_tags, target_tags)

    def generate(
        self, sketch: torch.Tensor, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G(x, r̂) with reference codes r̂ = φ(r) or δ_b [B, Cr, h, w].

        Returns:
            image [B, 3, H, W] in [-1, 1] and ψ(x, r̂) [B, latent, H/2^n, W/2^n], the receiving
            block's output that the step-2 feature-level L1 compares (Eq. 12).
        """
        if codes.dim() != 4 or codes.shape[:2] != (sketch.shape[0], self.code_channels):
            raise ValueError(
                f"TagsGenerator: codes must be [{sketch.shape[0]}, {self.code_channels}, h, w], "
                f"got {tuple(codes.shape)}"
            )
        skips = []
        x = sketch
        for down in self.encoder:
            x = down(x)
            skips.append(x)
        x = self.residual(skips.pop())  # x̂ (B, latent, H/2^n, W/2^n)
        latent = self.receive(x, codes)  # ψ(x, r̂), Eq. 5
        pooled_codes = codes.mean(dim=(2, 3))  # (B, Cr): what the RBCA blocks receive
        y = self.up_first(latent)
        for up in self.up_blocks:
            y = up(torch.cat([y, skips.pop()], 1), pooled_codes)
        image = torch.tanh(self.up_final(torch.cat([y, skips.pop()], 1)))  # (B, 3, H, W)
        return image, latent

    def forward(
        self,
        sketch: torch.Tensor,
        reference: torch.Tensor | None = None,
        hint: torch.Tensor | None = None,
        palette: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> GeneratorOutput:
        """Colour sketch [B, 1, H, W] like reference [B, 3, H, W]; with target tag values
        tags [B, T], shift the reference's codes first (Eq. 10, needs a mapper)."""
        self.check_inputs(sketch, reference=reference, hint=hint, palette=palette, tags=tags)
        codes, anchor_tags = self.encode_reference(reference)
        if tags is not None:
            codes = self.shift_codes(codes, anchor_tags, tags)
        image, _ = self.generate(sketch, codes)
        return GeneratorOutput(image=image)
