"""Recipe `tags`: Yan et al., two-step reference + text-tag colourization, step 1 (seed 003, §3.1).

The first GAN training (§3.1–3.4): G(x, φ(r)) colours the sketch x like the reference r,
where φ is a frozen pretrained tagger embedded in G (§3.4; the project's trained `Tagger`,
loaded from `model.tagger_path`, stands in for their Danbooru ResNet-34). The reference is the
target deformed (TPS) and colour-jittered (§3: "deformation [SMW06] to colour images y"), the
dataset's "reference" condition. Per iteration, first the conditional discriminator D(x, y)
(train/discriminators.py: TagsDiscriminator, the sketch as condition, [IZZE17]) on real and
detached fake images, then G on Eq. (1):

    L = L_cGAN(G, D) + λ_L1 L_L1(G) + λ_tv L_tv(G),   λ_L1 = 100, λ_tv = 1e-4

with the log-loss cGAN of Eq. (2) (non-saturating for G, as in pix2pix), the pixel L1 of
Eq. (3) and the isotropic total variation of Eq. (4) (η = 1, summed over pixels). Adam with
lr 1e-4 and betas (0.5, 0.99) for both players, 384² inputs, batch 32, nine epochs (§4.1).

Step 2 (the tag mapper, §3.5) is the recipe `tags_mapper`, trained on this recipe's export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch import nn

from colorize.models import Tagger, TagsGenerator, build_generator, presets
from train.config import ModelConfig as BaseModelConfig
from train.discriminators import build_discriminators
from train.losses import bce_d_loss, bce_g_loss, l1_loss, total_variation_loss
from train.methods.common import Parts, frozen, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

logger = get_logger(__name__)

CONDITIONS = ("reference",)


@dataclass(frozen=True)
class ModelConfig(BaseModelConfig):
    """[model] of `tags`: the preset, constructor overrides, and the trained reference encoder.

    Parameters:
        tagger_path: folder of a trained `Tagger` (written by train/configs/tagger.toml),
            copied into G as its frozen reference encoder φ (Yan et al. §3.4; its
            architecture and num_tags replace the preset's). "" keeps a randomly initialised
            frozen φ, with a warning: §4.2 shows an untrained fixed encoder colours poorly.
    """

    tagger_path: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Yan et al. §4.1: Adam for both players, constant learning rate.

    Parameters:
        lr_g: generator learning rate (1e-4).
        lr_d: discriminator learning rate (1e-4).
        betas: Adam's (β1, β2) = (0.5, 0.99).
    """

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.99)


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the weights of Yan et al. Eq. (1).

    Parameters:
        adv: weight of the cGAN loss (Eq. 2), for both players (1).
        l1: λ_L1 = 100, the pixel L1 of Eq. (3).
        tv: λ_tv = 1e-4, the isotropic total variation of Eq. (4), summed over pixels. §3.1
            finds it unnecessary below 384² (artifacts are not noticeable there); 0 turns
            it off.
    """

    adv: float = 1.0
    l1: float = 100.0
    tv: float = 1e-4


def load_tagger(path: str, method: str) -> Tagger | None:
    """The trained Tagger in folder `path` (a config's model.tagger_path), or None for "" after
    a warning that the frozen tagger inside `method`'s generator stays randomly initialised."""
    if not path:
        logger.warning(
            "%s: model.tagger_path is empty, so the generator's frozen tagger keeps its random "
            "initialisation; train train/configs/tagger.toml first and set model.tagger_path "
            "to its weights/tagger folder",
            method,
        )
        return None
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(
            f"model.tagger_path {folder} has no config.json: expected a folder written by "
            "Tagger.save_pretrained (train/configs/tagger.toml exports runs/tagger/weights/tagger)"
        )
    class_name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    if class_name != "Tagger":
        raise ValueError(f"model.tagger_path {folder} holds a {class_name}, not a Tagger")
    logger.info("%s: frozen tagger loaded from %s", method, folder)
    return Tagger.from_pretrained(folder)


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """TagsGenerator (with the trained tagger as φ) and TagsDiscriminator, and their Adams."""
    tagger = load_tagger(cfg.model.tagger_path, cfg.method)
    if tagger is None:
        # num_tags: the dataset's vocabulary, so that step 2 can use its tag vectors
        kwargs = {"num_tags": len(dataset.vocabulary), **cfg.model.overrides}
        generator = build_generator("tags", cfg.model.size, **kwargs)
    else:
        kwargs = {**presets("tags", cfg.model.size), **cfg.model.overrides}
        generator = TagsGenerator.with_tagger(tagger, **kwargs)
    discriminator = build_discriminators(
        "tags", cfg.model.size, **cfg.model.discriminator_overrides
    )["d"]
    adam = dict(betas=cfg.optim.betas)
    return Parts(
        cfg=cfg,
        models={"g": generator, "d": discriminator},
        optimizers={
            "g": torch.optim.Adam(
                (p for p in generator.parameters() if p.requires_grad), lr=cfg.optim.lr_g, **adam
            ),
            "d": torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr_d, **adam),
        },
        export="g",
        export_name="tags",
        # the slider names: the app maps {tag name: value} onto the tag vector with it
        export_files={"tags.json": json.dumps(list(dataset.vocabulary), indent=1)},
        log_keys=("loss_d", "loss_g", "loss_g_l1"),
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One alternating update of Eq. (1): D on real and detached fake pairs, then G."""
    cfg = parts.cfg
    generator, discriminator = parts.models["g"], parts.models["d"]
    optimizer_g, optimizer_d = parts.optimizers["g"], parts.optimizers["d"]
    sketch, reference, target = batch["sketch"], batch["reference"], batch["target"]

    with accelerator.autocast():
        fake = generator(sketch, reference=reference).image  # G(x, φ(r))

    # D step: Eq. (2), D's side: log D(x, y) + log(1 − D(x, G(x, φ(r))))
    with accelerator.autocast():
        d_real = discriminator(target, sketch)
        d_fake = discriminator(fake.detach(), sketch)
        loss_d = cfg.loss.adv * bce_d_loss(d_real, d_fake)  # Yan et al. Eq. (1): weight 1
    update(accelerator, loss_d, discriminator, optimizer_d, cfg.train.max_grad_norm)

    # G step: Eq. (1); D scores the fake through its plain module with frozen weights
    with accelerator.autocast():
        with frozen(accelerator.unwrap_model(discriminator)) as d_plain:
            loss_g_adv = bce_g_loss(d_plain(fake, sketch))  # −log D(x, G(x, φ(r)))
        loss_g_l1 = l1_loss(fake, target)  # Eq. (3)
        loss_g_tv = total_variation_loss(fake, norm="isotropic", eta=1.0)  # Eq. (4)
        loss_g = (
            cfg.loss.adv * loss_g_adv  # Yan et al. Eq. (1): weight 1
            + cfg.loss.l1 * loss_g_l1  # λ_L1 = 100
            + cfg.loss.tv * loss_g_tv  # λ_tv = 1e-4
        )
    update(accelerator, loss_g, generator, optimizer_g, cfg.train.max_grad_norm)

    return scalars(
        loss_d=loss_d,
        loss_g=loss_g,
        loss_g_adv=loss_g_adv,
        loss_g_l1=loss_g_l1,
        loss_g_tv=loss_g_tv,
    )


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: G(x, φ(r)) between its inputs and y."""
    output = model(batch["sketch"], reference=batch["reference"]).image
    return {
        "sketch": batch["sketch"],
        "reference": batch["reference"],
        "output": output,
        "target": batch["target"],
    }
