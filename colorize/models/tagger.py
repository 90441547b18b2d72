"""Tagger: a ResNet-style CNN that predicts the tags of colour images (multi-label).

It stands in for the pretrained classifiers of the papers, which cannot be downloaded here:
ResNet-34 retrained on Danbooru tags, the frozen reference encoder of Yan et al. (§3.4), and
Illustration2Vec, the local features network F1 of Ci et al. (§3.1). Trained on the data
pipeline's tag vocabulary (colour shares, skin tone, OpenMoji group/subgroup), it is

- the frozen reference encoder of `tags` (`features(r)["stage4"]` = φ(r), Yan et al. Eq. 10),
- the frozen local features network of `hints` (`local_features`),
- the feature network of the perceptual, style and contextual losses and of the FID-style
  metric where no ImageNet VGG/Inception weights are on disk (`features`).

Layers (`Tagger.feature_channels`, `Tagger.feature_strides`), for the four-stage presets:

    stem     conv + BN + ReLU, stride 2
    stage1   residual stage, stride 4 ("paper", after ResNet's max-pool) or 2 ("small")
    stage2   stride 8 | 4
    stage3   stride 16 | 8   <- local features: the mid-level map before the last stage
    stage4   stride 32 | 16  <- reference codes φ(r) of Yan et al., ReLU so φ(r) >= 0
    pooled   global average of the last stage, [B, C]
    logits   linear head, [B, num_tags]; sigmoid gives the tag probabilities

Ci et al. take Illustration2Vec's 6th convolution (conv4_2, ReLU, the last layer before its
4th pool) on the sketch average-pooled by 2, so their local features sit at 1/16 of the
sketch; the mid-level analogue here is the penultimate stage (`local_features`), and
`HintsGenerator` pools the sketch so that it lands at 1/16 as well.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

PRESETS: dict[str, dict[str, Any]] = {
    # ResNet-34 (He et al. 2016), Yan et al.'s reference encoder (§3 and §3.4)
    "paper": {
        "stage_channels": (64, 128, 256, 512),
        "stage_blocks": (3, 4, 6, 3),
        "stem_kernel_size": 7,
        "stem_pool": True,
    },
    # ~0.6 M parameters: trains on a 2-core CPU at 128 px
    "small": {
        "stage_channels": (24, 48, 96, 128),
        "stage_blocks": (1, 1, 2, 1),
        "stem_kernel_size": 3,
        "stem_pool": False,
    },
}


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3×3 conv + BN, identity or 1×1 projection
    shortcut, ReLU after the sum (so every stage output is >= 0)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class Tagger(ModelMixin, ConfigMixin):
    """ResNet-style multi-label tagger of colour images in [-1, 1] (see the module docstring).

    Parameters:
        num_tags: size of the tag vocabulary (the data pipeline passes its own; Yan et al. use
            the 6000 most frequent Danbooru tags, §3, Illustration2Vec predicts 1539).
        stage_channels: width of each residual stage (ResNet-34: 64, 128, 256, 512); the stem
            has the first stage's width.
        stage_blocks: basic blocks per stage (ResNet-34: 3, 4, 6, 3).
        stem_kernel_size: stem convolution size (ResNet: 7).
        stem_pool: ResNet's 3×3 stride-2 max-pool after the stem (doubles every stage stride).
    """

    @register_to_config
    def __init__(
        self,
        num_tags: int = 64,
        stage_channels: tuple[int, ...] = (64, 128, 256, 512),
        stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
        stem_kernel_size: int = 7,
        stem_pool: bool = True,
    ):
        super().__init__()
        if len(stage_channels) != len(stage_blocks) or len(stage_channels) < 2:
            raise ValueError(
                "Tagger: stage_channels and stage_blocks must have the same length (>= 2), got "
                f"{list(stage_channels)} and {list(stage_blocks)}"
            )
        if stem_kernel_size % 2 == 0:
            raise ValueError(f"Tagger: stem_kernel_size must be odd, got {stem_kernel_size}")
        stem_channels = stage_channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, stem_kernel_size, 2, stem_kernel_size // 2, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, 2, 1) if stem_pool else nn.Identity()
        stages, in_channels = [], stem_channels
        for i, (width, depth) in enumerate(zip(stage_channels, stage_blocks, strict=True)):
            blocks = [BasicBlock(in_channels, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(in_channels, num_tags)

        stride = 2 * (2 if stem_pool else 1)
        self.feature_strides: dict[str, int] = {"stem": 2}
        self.feature_channels: dict[str, int] = {"stem": stem_channels}
        for i, width in enumerate(stage_channels):
            stride = stride if i == 0 else stride * 2
            self.feature_strides[f"stage{i + 1}"] = stride
            self.feature_channels[f"stage{i + 1}"] = width
        self.feature_channels["pooled"] = stage_channels[-1]
        self.feature_channels["logits"] = num_tags
        self.layer_names: tuple[str, ...] = tuple(self.feature_channels)
        self.stride: int = stride
        self.local_features_layer: str = f"stage{len(stage_channels) - 1}"
        self.frozen = False

    # ---------------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Tag logits [B, num_tags] of an image [B, 3 (or 1: grey), H, W] in [-1, 1]."""
        return self.features(image, ["logits"])["logits"]

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Predicted tag values sigmoid(logits) [B, num_tags] (Yan et al.'s cls, §3.5)."""
        return torch.sigmoid(self(image))

    def local_features(self, image: torch.Tensor) -> torch.Tensor:
        """The mid-level map (`local_features_layer`, the penultimate stage): Ci et al.'s local
        features F1 (§3.1), [B, C, H/s, W/s] with s = feature_strides[local_features_layer]."""
        return self.features(image, [self.local_features_layer])[self.local_features_layer]

    def features(
        self, image: torch.Tensor, layers: list[str] | tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        """Named activations of `image` [B, 3 (or 1), H, W] in [-1, 1].

        Args:
            image: H and W multiples of the stride of the deepest spatial layer computed.
            layers: names from `layer_names` (default: all); only what they need is computed.
        Returns:
            {name: [B, C, H/s, W/s]} for "stem" and the stages, [B, C] for "pooled",
            [B, num_tags] for "logits", in network order.
        """
        wanted = set(self.layer_names if layers is None else layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(f"Tagger: unknown layers {sorted(unknown)}; known: {self.layer_names}")
        deepest = max(self.layer_names.index(name) for name in wanted)
        last_spatial = self.layer_names[min(deepest, len(self.stages))]
        x = self._check_image(image, self.feature_strides[last_spatial])

        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)  # (B, C0, H/2, W/2)
        if "stem" in wanted:
            out["stem"] = x
        x = self.pool(x)
        for i, stage in enumerate(self.stages):
            if deepest <= i:
                return out
            x = stage(x)  # (B, Ci, H/s, W/s)
            if f"stage{i + 1}" in wanted:
                out[f"stage{i + 1}"] = x
        if deepest <= len(self.stages):
            return out
        pooled = x.mean(dim=(2, 3))  # (B, C)
        if "pooled" in wanted:
            out["pooled"] = pooled
        if "logits" in wanted:
            out["logits"] = self.head(pooled)  # (B, T)
        return out

    def _check_image(self, image: torch.Tensor, stride: int) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] not in (1, 3):
            raise ValueError(
                f"Tagger: image must be [B, 3, H, W] (or [B, 1, H, W] grey), got "
                f"{tuple(image.shape)}"
            )
        H, W = image.shape[-2:]
        if H % stride or W % stride:
            raise ValueError(
                f"Tagger: image sides must be multiples of {stride} for these layers, got {H}x{W}"
            )
        return image.expand(-1, 3, -1, -1)

    # ---------------------------------------------------------------------------------------

    def freeze(self) -> Tagger:
        """Stop gradients into the weights and keep eval mode for good, even under .train():
        a pretrained tagger is a fixed encoder (Yan et al. §3.4, Ci et al. §3.1)."""
        self.requires_grad_(False)
        self.frozen = True
        return self.eval()

    def train(self, mode: bool = True) -> Tagger:
        """nn.Module.train, except that a frozen tagger stays in eval mode (BN statistics)."""
        return super().train(mode and not self.frozen)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values (for comparing and rebuilding)."""
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        return json.loads(json.dumps(config))

    def load_weights_from(self, other: Tagger) -> None:
        """Copy a trained tagger's weights into this one; the architectures must match."""
        if not isinstance(other, Tagger):
            raise ValueError(f"expected a Tagger, got {type(other).__name__}")
        if other.architecture() != self.architecture():
            raise ValueError(
                "Tagger architectures differ: this model was built with tagger_config "
                f"{self.architecture()}, the given tagger has {other.architecture()}"
            )
        self.load_state_dict(other.state_dict())
