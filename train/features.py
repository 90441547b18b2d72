"""The frozen feature network φ of the perceptual, style, contextual and content losses.

The papers compute these losses on ImageNet VGG networks: VGG-19 for Cao et al. (Eq. 3–4) and
Cui et al. (Eq. 11–12), VGG-16 for Khang et al. (Eq. 3) and Ci et al. (Eq. 4). No hub weights
can be downloaded here, so the default φ is the project's own trained `Tagger` (its stage
outputs play the part of the VGG ReLU layers); where a user has torchvision's VGG weights on
disk, `FeatureNetwork.from_config(kind="vgg19", path=...)` uses them with the paper layers.

    phi = FeatureNetwork.from_config(kind="tagger", path="weights/tagger")
    feats = phi(image)                      # {"stem": ..., "stage1": ..., ...}

The VGG layer stacks are written out here (torchvision cannot be installed) with
torchvision's `features.N` indices, so its state dicts load unchanged.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from colorize.models.tagger import Tagger

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("tagger", "vgg19", "vgg16")

# torchvision's `cfgs["E"]` (VGG-19) and `cfgs["D"]` (VGG-16): convs per block, each block
# ending in a 2×2 max-pool; the five blocks are 64, 128, 256, 512 and 512 channels wide
VGG_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
VGG_BLOCK_DEPTHS: dict[str, tuple[int, ...]] = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Layers per network and loss. The VGG rows are the papers' layers; the tagger rows are the
# analogues at the same depths (all tagger stage outputs follow a ReLU, like the VGG ones).
LAYER_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "vgg19": {
        # Cao et al. Eq. 3–4: "five ReLU activated feature layers" of VGG-19, weight 1 each
        # (§IV-B); the paper does not name them, these are Johnson et al.'s / Gatys et al.'s.
        "perceptual": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "style": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        # Cui et al. Eq. 11 (relu5_2) and Eq. 12 (relu2_2 … relu5_2)
        "perceptual_csft": ("relu5_2",),
        "contextual": ("relu2_2", "relu3_2", "relu4_2", "relu5_2"),
    },
    "vgg16": {
        # Khang et al. Eq. 3 sums over unnamed VGG-16 layers; Johnson et al.'s four
        "feature_matching": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        # Ci et al. Eq. 4: "the 4th convolution layer (after activation)" of VGG-16
        "content": ("relu2_2",),
    },
    "tagger": {
        "perceptual": ("stem", "stage1", "stage2", "stage3", "stage4"),
        "style": ("stem", "stage1", "stage2", "stage3", "stage4"),
        "perceptual_csft": ("stage4",),
        "contextual": ("stage1", "stage2", "stage3", "stage4"),
        "feature_matching": ("stage1", "stage2", "stage3", "stage4"),
        "content": ("stage2",),
    },
}


def vgg_layer_names(arch: str) -> tuple[str, ...]:
    """Names of torchvision's `features` modules in order: conv{b}_{i}, relu{b}_{i}, pool{b}."""
    if arch not in VGG_BLOCK_DEPTHS:
        raise ValueError(
            f"unknown VGG architecture {arch!r}; expected one of {sorted(VGG_BLOCK_DEPTHS)}"
        )
    names = []
    for block, depth in enumerate(VGG_BLOCK_DEPTHS[arch], start=1):
        for conv in range(1, depth + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


class VGGFeatures(nn.Module):
    """The convolutional part of VGG-16/19 (Simonyan & Zisserman 2015), torchvision's layout.

    `self.features[N]` matches torchvision's `features.N`, so `features.N.weight/bias` keys
    of a torchvision state dict (with or without its `classifier.*`) load as they are.
    """

    def __init__(self, arch: str = "vgg19"):
        super().__init__()
        self.arch = arch
        self.layer_names = vgg_layer_names(arch)
        layers: list[nn.Module] = []
        in_channels = 3
        for width, depth in zip(VGG_BLOCK_WIDTHS, VGG_BLOCK_DEPTHS[arch], strict=True):
            for _ in range(depth):
                # not in-place (torchvision's is): returned activations must stay unmodified
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
                in_channels = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Named activations of an ImageNet-normalised image [B, 3, H, W], up to the deepest."""
        unknown = set(layers) - set(self.layer_names)
        if unknown:
            raise ValueError(
                f"{self.arch}: unknown layers {sorted(unknown)}; known: {self.layer_names}"
            )
        deepest = max(self.layer_names.index(name) for name in layers)
        wanted, out, x = set(layers), {}, image
        for name, module in zip(self.layer_names[: deepest + 1], self.features, strict=False):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def load_torchvision_weights(self, path: str | Path) -> None:
        """Load `features.N.weight/bias` from a `.safetensors` file or a weights-only torch file."""
        path = Path(path)
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(features)), sorted(set(features) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not torchvision {self.arch} weights (another VGG depth?): "
                f"missing keys {_first(missing)}, unexpected keys {_first(unexpected)}"
            )
        for key, value in features.items():
            target = self.state_dict()[key]
            if value.shape != target.shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(value.shape)}, {self.arch} needs "
                    f"{tuple(target.shape)}"
                )
        self.load_state_dict(features)


def _first(keys: list[str], count: int = 4) -> str:
    """The first `count` keys, for error messages about state dicts with hundreds of them."""
    return str(keys[:count])[:-1] + (", …]" if len(keys) > count else "]")


class FeatureNetwork(nn.Module):
    """Frozen φ: named feature maps of an image in [-1, 1], [B, 3, H, W] or grey [B, 1, H, W].

    Weights get no gradient and the network stays in eval mode (BN statistics fixed), but
    gradients flow to the input image, as the losses need. Build it with `from_tagger`,
    `from_vgg` or `from_config`.

    Args:
        backbone: a `Tagger` or `VGGFeatures`.
        kind: "tagger", "vgg19" or "vgg16".
        layers: the layers `forward` returns when called without `layers`.
    """

    def __init__(self, backbone: nn.Module, kind: str, layers: Sequence[str]):
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature network kind {kind!r}; expected {FEATURE_KINDS}")
        if not layers:
            raise ValueError("FeatureNetwork: layers must name at least one layer")
        known = backbone.layer_names
        unknown = set(layers) - set(known)
        if unknown:
            raise ValueError(f"{kind}: unknown layers {sorted(unknown)}; known: {tuple(known)}")
        self.backbone = backbone
        self.kind = kind
        self.layers: tuple[str, ...] = tuple(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Every layer the backbone can return."""
        return tuple(self.backbone.layer_names)

    def presets(self, loss: str) -> tuple[str, ...]:
        """The layers of `loss` ("perceptual", "style", "contextual", …) for this network."""
        table = LAYER_PRESETS[self.kind]
        if loss not in table:
            raise ValueError(f"no {loss!r} layers for {self.kind}; known: {sorted(table)}")
        return table[loss]

    def train(self, mode: bool = True) -> FeatureNetwork:
        """Stays in eval mode whatever `mode` is: a frozen φ must not update BN statistics."""
        return super().train(False)

    def forward(
        self, image: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """{name: [B, C, H/s, W/s]} for `layers` (default: `self.layers`) of `image` in [-1, 1]."""
        if image.dim() != 4 or image.shape[1] not in (1, 3):
            raise ValueError(
                f"FeatureNetwork: image must be [B, 3, H, W] or [B, 1, H, W], got "
                f"{tuple(image.shape)}"
            )
        layers = self.layers if layers is None else tuple(layers)
        if not layers:
            raise ValueError("FeatureNetwork: layers must name at least one layer")
        image = image.expand(-1, 3, -1, -1)
        if self.kind == "tagger":
            return self.backbone.features(image, layers)
        # torchvision's VGG expects [0, 1] RGB normalised by the ImageNet mean and std
        x = ((image + 1) / 2 - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        return self.backbone(x, layers)

    # ---------------------------------------------------------------------------------------

    @classmethod
    def from_tagger(
        cls, tagger: Tagger | str | Path, layers: Sequence[str] | None = None
    ) -> FeatureNetwork:
        """φ from a trained tagger: a `Tagger` (copied, the caller's stays as it is) or a folder
        written by `Tagger.save_pretrained`. Default layers: the perceptual/style preset."""
        if isinstance(tagger, (str, Path)):
            folder = Path(tagger)
            if not (folder / "config.json").is_file():
                raise ValueError(
                    f"tagger folder {folder} has no config.json: expected a folder written by "
                    "Tagger.save_pretrained (train the tagger first: train/configs/tagger.toml)"
                )
            model = Tagger.from_pretrained(folder)
        elif isinstance(tagger, Tagger):
            model = copy.deepcopy(tagger)
        else:
            raise ValueError(f"expected a Tagger or a folder path, got {type(tagger).__name__}")
        model.freeze()
        layers = LAYER_PRESETS["tagger"]["perceptual"] if layers is None else layers
        return cls(model, "tagger", layers)

    @classmethod
    def from_vgg(
        cls, path: str | Path, arch: str = "vgg19", layers: Sequence[str] | None = None
    ) -> FeatureNetwork:
        """φ from torchvision VGG-16/19 ImageNet weights in a local file (`.safetensors`, or a
        `.pth` read with `weights_only=True`). Default layers: the paper's preset of `arch`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{arch} weights file {path} does not exist")
        backbone = VGGFeatures(arch)
        backbone.load_torchvision_weights(path)
        if layers is None:
            preset = LAYER_PRESETS[arch]
            layers = preset["perceptual"] if "perceptual" in preset else preset["feature_matching"]
        logger.info("feature network: %s from %s, layers %s", arch, path, list(layers))
        return cls(backbone, arch, layers)

    @classmethod
    def from_config(
        cls,
        kind: str = "tagger",
        path: str | Path | None = None,
        layers: Sequence[str] | None = None,
    ) -> FeatureNetwork:
        """φ named by a training config: `kind` "tagger" (a save_pretrained folder), "vgg19" or
        "vgg16" (a local torchvision weights file)."""
        if kind not in FEATURE_KINDS:
            raise ValueError(
                f"unknown feature network kind {kind!r}; expected one of {FEATURE_KINDS}"
            )
        if path is None or str(path) == "":
            raise ValueError(
                f"feature network {kind!r} needs a path: "
                + (
                    "a folder written by Tagger.save_pretrained"
                    if kind == "tagger"
                    else f"a local torchvision {kind} weights file (.safetensors or .pth)"
                )
            )
        if not Path(path).exists():
            raise ValueError(f"feature network {kind!r}: path {path} does not exist")
        if kind == "tagger":
            return cls.from_tagger(path, layers)
        return cls.from_vgg(path, kind, layers)
