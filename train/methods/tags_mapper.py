"""Recipe `tags_mapper`: Yan et al., two-step colourization, step 2: the tag mapper (seed 003).

The step-1 generator G (recipe `tags`) is loaded from `model.generator_path` and frozen ("the
second training excludes G from optimization", §3.5); only the mapping networks are trained:
the self-adaptive MLP φ_map and, for the Attention model, the position-weight matrix ω
(`TagsGenerator.build_mapper`, colorize/models/tags.py: TagMapper). They move an anchor
reference's codes towards another reference's by the difference of mapped tag values:

    δ_b = φ(r_a) + F(r_a) · (φ_map(cls_t) − φ_map(cls_a))                         (Eq. 10–11)
    L = L_hybrid + L_inv                                                          (Eq. 9)
    L_hybrid = E‖G(x, φ(r_t)) − G(x, δ_b)‖₁ + E‖ψ(x, φ(r_t)) − ψ(x, δ_b)‖₁          (Eq. 12)
    L_inv = E‖(GAP(φ(r_t)) − GAP(φ(r_a))) − (φ_map(cls_t) − φ_map(cls_a))‖₁        (Eq. 13)

Training pairs. Eq. (12)–(13) need, per sample, a sketch x, an anchor reference r_a and a target
reference r_t whose codes δ_b must reach. In a batch of samples (x_i, r_i) of step 1 (r_i the
deformed colour image of x_i), sample i uses x = x_i, r_a = r_i (the reference step 1 paired
with x) and r_t = r_{i−1}, the reference of the previous sample in the batch (another image),
so G(x, φ(r_t)) is x coloured like another image, what moving the tags towards cls_t should
give. cls_a and cls_t are, as in §3.5, "the probabilities given by our pre-trained
classifier": the tag values the frozen tagger inside G reads from r_a and r_t, the same values
the app's sliders start from (`TagsGenerator.reference_tags`). `loss.target_tags = "dataset"`
takes cls_t from the dataset's tag vector of r_t's image instead. For the Add model (M-Add)
L_inv and ω are dropped (§3.5). Adam(1e-4, (0.5, 0.99)), three epochs (§4.1).

The export is G with the trained mapper attached (`attach_mapper`), under weights/tags:
`TagsGenerator.from_pretrained` then gives a model that accepts target tag values
(`model(sketch, reference=r, tags=cls_t)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch import nn

from colorize.models import TagsGenerator
from colorize.models.tags import MAPPER_PRESETS
from train.config import ModelConfig as BaseModelConfig
from train.losses import hybrid_l1_loss, inversion_loss, l1_loss
from train.methods.common import Parts, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

logger = get_logger(__name__)

CONDITIONS = ("reference", "tags")
TARGET_TAGS = ("tagger", "dataset")


@dataclass(frozen=True)
class ModelConfig(BaseModelConfig):
    """[model] of `tags_mapper`: the frozen step-1 generator and the mapper to train.

    Parameters:
        generator_path: folder of the step-1 TagsGenerator (what train/configs/tags.toml
            exports, runs/tags/weights/tags); required.
        size: the TagMapper preset ("paper" and "small" both have 4 MLP layers, as the
            authors' code); its code width always follows the generator.
        overrides: TagMapper arguments over the preset (e.g. num_layers).
    """

    generator_path: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Yan et al. §4.1 ("the second training was taken with the same settings").

    Parameters:
        lr: the mapper's learning rate (1e-4).
        betas: Adam's (β1, β2) = (0.5, 0.99).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.99)


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the weights of Yan et al. Eq. (9) and where the target tag values come from.

    Parameters:
        hybrid: weight of the hybrid L1 of Eq. (12), pixel + feature level (1).
        inversion: weight of the inversion loss of Eq. (13) (1; M-Attention only, the M-Add
            model trains without it, §3.5).
        target_tags: cls_t of Eq. (10), (13): "tagger" (the frozen tagger's probabilities of
            r_t, §3.5) or "dataset" (the dataset's tag vector of r_t's image).
    """

    hybrid: float = 1.0
    inversion: float = 1.0
    target_tags: str = "tagger"

    def __post_init__(self) -> None:
        if self.target_tags not in TARGET_TAGS:
            raise ValueError(
                f"loss.target_tags must be one of {TARGET_TAGS}, got {self.target_tags!r}"
            )


class MappedGenerator(nn.Module):
    """The frozen step-1 generator with its trainable TagMapper attached; one forward gives
    every term of Eq. (9), so DDP sees one forward per backward.

    `save_pretrained` writes the generator (mapper included), the model `colorize` loads.
    """

    def __init__(self, generator: TagsGenerator):
        super().__init__()
        if generator.mapper is None:
            raise ValueError("MappedGenerator: attach a TagMapper to the generator first")
        self.generator = generator

    def train(self, mode: bool = True) -> MappedGenerator:
        """Only the mapper follows `mode`: G stays in eval mode, excluded from training."""
        super().train(mode)
        self.generator.eval()
        self.generator.mapper.train(mode)
        return self

    def forward(
        self,
        sketch: torch.Tensor,
        anchor: torch.Tensor,
        target_reference: torch.Tensor,
        target_tags: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Eq. (10)–(13) inputs for sketch x [B, 1, H, W], r_a and r_t [B, 3, H, W]; cls_t
        [B, T] (None: the tagger's probabilities of r_t).

        Returns:
            image_shifted G(x, δ_b), latent_shifted ψ(x, δ_b), image_target G(x, φ(r_t)),
            latent_target ψ(x, φ(r_t)), codes_anchor φ(r_a), codes_target φ(r_t),
            mapped_anchor φ_map(cls_a), mapped_target φ_map(cls_t).
        """
        generator, mapper = self.generator, self.generator.mapper
        codes_anchor, tags_anchor = generator.encode_reference(anchor)  # φ(r_a), cls_a
        codes_target, tags_predicted = generator.encode_reference(target_reference)
        tags_target = tags_predicted if target_tags is None else target_tags  # cls_t
        shifted = generator.shift_codes(codes_anchor, tags_anchor, tags_target)  # δ_b, Eq. 10
        image_shifted, latent_shifted = generator.generate(sketch, shifted)
        with torch.no_grad():  # the targets: G is frozen and φ(r_t) has no gradient
            image_target, latent_target = generator.generate(sketch, codes_target)
        return {
            "image_shifted": image_shifted,
            "latent_shifted": latent_shifted,
            "image_target": image_target,
            "latent_target": latent_target,
            "codes_anchor": codes_anchor,
            "codes_target": codes_target,
            "mapped_anchor": mapper.map_tags(tags_anchor),
            "mapped_target": mapper.map_tags(tags_target),
        }

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """`TagsGenerator.save_pretrained` of the generator with the trained mapper."""
        self.generator.save_pretrained(folder, **kwargs)


def load_generator(path: str) -> TagsGenerator:
    """The step-1 TagsGenerator saved in folder `path` (model.generator_path)."""
    if not path:
        raise ValueError(
            "tags_mapper needs model.generator_path: the step-1 generator folder that "
            "train/configs/tags.toml exports (runs/tags/weights/tags); train step 1 first"
        )
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(
            f"model.generator_path {folder} has no config.json: expected a folder written by "
            "TagsGenerator.save_pretrained (train step 1 with train/configs/tags.toml first)"
        )
    class_name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    if class_name != "TagsGenerator":
        raise ValueError(f"model.generator_path {folder} holds a {class_name}, not a TagsGenerator")
    return TagsGenerator.from_pretrained(folder)


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """The frozen step-1 generator with a fresh TagMapper attached, and the mapper's Adam."""
    if cfg.model.discriminator_overrides:
        raise ValueError(
            "tags_mapper trains no discriminator: remove model.discriminator_overrides"
        )
    if cfg.train.batch_size < 2:
        raise ValueError(
            "tags_mapper pairs each sample with another image of its batch (r_t): "
            f"train.batch_size must be >= 2, got {cfg.train.batch_size}"
        )
    generator = load_generator(cfg.model.generator_path)
    if cfg.loss.target_tags == "dataset" and generator.config.num_tags != len(dataset.vocabulary):
        raise ValueError(
            f"loss.target_tags = 'dataset': the generator reads {generator.config.num_tags} "
            f"tags but the dataset's vocabulary has {len(dataset.vocabulary)}"
        )
    if generator.mapper is not None:
        logger.info("%s already has a TagMapper; training a new one in its place",
                    cfg.model.generator_path)  # fmt: skip
    generator.requires_grad_(False)  # G is frozen (§3.5); only the mapper below trains
    preset = {"num_layers": MAPPER_PRESETS[cfg.model.size]["num_layers"]}
    mapper = generator.build_mapper(**{**preset, **cfg.model.overrides})
    generator.attach_mapper(mapper)
    model = MappedGenerator(generator)
    return Parts(
        cfg=cfg,
        models={"g": model},
        optimizers={
            "g": torch.optim.Adam(mapper.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
        },  # fmt: skip
        export="g",
        export_name="tags",
        # the slider names: the app maps {tag name: value} onto the tag vector with it
        export_files={"tags.json": json.dumps(list(dataset.vocabulary), indent=1)},
        log_keys=("loss", "loss_pixel", "loss_feature", "loss_inv"),
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One mapper update on Eq. (9): anchors r_a = the batch's references, targets r_t = the
    references of the previous samples (see the module docstring)."""
    cfg = parts.cfg
    model, optimizer = parts.models["g"], parts.optimizers["g"]
    generator = accelerator.unwrap_model(model).generator
    anchor = batch["reference"]
    target_reference = anchor.roll(1, dims=0)  # r_t: another image of the batch
    target_tags = batch["tags"].roll(1, dims=0) if cfg.loss.target_tags == "dataset" else None

    with accelerator.autocast():
        out = model(batch["sketch"], anchor, target_reference, target_tags)
        loss_hybrid = hybrid_l1_loss(  # Eq. (12)
            out["image_target"], out["image_shifted"], out["latent_target"], out["latent_shifted"]
        )
        loss_pixel = l1_loss(out["image_shifted"], out["image_target"])  # its first term
        loss_inv = inversion_loss(  # Eq. (13)
            out["codes_target"], out["codes_anchor"], out["mapped_target"], out["mapped_anchor"]
        )
        # Yan et al. Eq. (9): L_hybrid + L_inv, weights 1; L_inv only for M-Attention (§3.5)
        inversion = cfg.loss.inversion if generator.config.receiving_block == "attention" else 0.0
        loss = cfg.loss.hybrid * loss_hybrid + inversion * loss_inv
    update(accelerator, loss, model, optimizer, cfg.train.max_grad_norm)

    return scalars(
        loss=loss,
        loss_hybrid=loss_hybrid,
        loss_pixel=loss_pixel,
        loss_feature=loss_hybrid - loss_pixel,
        loss_inv=loss_inv,
    )


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels: the sketch, r_a, r_t, G(x, δ_b) from r_a moved to cls_t by the
    mapper (through the public `tags=` input), and the step-1 G(x, φ(r_t)) it approximates."""
    generator = model.generator
    anchor = batch["reference"]
    target_reference = anchor.roll(1, dims=0)
    if parts.cfg.loss.target_tags == "dataset":
        target_tags = batch["tags"].roll(1, dims=0)
    else:
        target_tags = generator.reference_tags(target_reference)
    return {
        "sketch": batch["sketch"],
        "reference": anchor,
        "reference_target": target_reference,
        "output": generator(batch["sketch"], reference=anchor, tags=target_tags).image,
        "target": generator(batch["sketch"], reference=target_reference).image,
    }
