"""Recipe `sga`: Cao, Tian, Mok, attention-aware line drawing colorization (seed 000, §III).

Self-augmented training (§III-A, §IV-A): the reference I_r is the ground truth I_gt warped by
a TPS and colour-jittered (the dataset's "reference" condition), and G(I_l, I_r) must restore
I_gt. Per iteration D and G are updated alternately (§IV-B): first the conditional LSGAN
discriminator with spectral norm (train/discriminators.py: SGADiscriminator) on real and
detached fake images, then G on

    L = λ_adv L_adv + λ_rec L_rec + λ_perc L_perc + λ_style L_style      (Eq. 6)

with L1 (Eq. 1–2), perceptual (Eq. 3) and style (Eq. 4) losses on five ReLU feature layers of
a frozen feature network φ (VGG-19 in the paper; the project's trained tagger by default,
since no ImageNet weights can be downloaded here). Adam(β1 0.5, β2 0.999), lr 1e-4 for G and
2e-4 for D, no decay, batch 16, 250k iterations at 256×256 (§IV-B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn

from colorize.models import build_generator
from train.discriminators import build_discriminators
from train.features import FeatureNetwork
from train.losses import l1_loss, lsgan_d_loss, lsgan_g_loss, perceptual_loss, style_loss
from train.methods.common import Parts, frozen, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS = ("reference",)


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Cao et al. §IV-B: Adam for both players, constant learning rates.

    Parameters:
        lr_g: generator learning rate (1e-4).
        lr_d: discriminator learning rate (2e-4).
        betas: Adam's (β1, β2) = (0.5, 0.999).
    """

    lr_g: float = 1e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the λ of Cao et al. Eq. (6) and the feature network φ of Eq. (3)–(4).

    Parameters:
        adv: λ_adv = 1, weight of the LSGAN loss (Eq. 5), for both players.
        l1: λ_rec = 30, weight of the L1 reconstruction loss (Eq. 1–2).
        perceptual: λ_perc = 0.01 (Eq. 3).
        style: λ_style = 50 (Eq. 4).
        feature_net: "tagger" (the project's trained tagger, the default) or "vgg19" (the
            paper's network, from a local torchvision weights file).
        feature_path: the tagger's save_pretrained folder (what train/configs/tagger.toml
            exports) or the VGG-19 weights file.
    """

    adv: float = 1.0
    l1: float = 30.0
    perceptual: float = 0.01
    style: float = 50.0
    feature_net: str = "tagger"
    feature_path: str = "runs/tagger/weights/tagger"

    def __post_init__(self) -> None:
        if self.feature_net not in ("tagger", "vgg19"):
            raise ValueError(
                f"loss.feature_net must be 'tagger' or 'vgg19' (Cao et al. use VGG-19), got "
                f"{self.feature_net!r}"
            )


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """SGAGenerator and SGADiscriminator at `cfg.model.size`, their Adams, and the frozen φ."""
    generator = build_generator("sga", cfg.model.size, **cfg.model.overrides)
    discriminator = build_discriminators(
        "sga", cfg.model.size, **cfg.model.discriminator_overrides
    )["d"]
    phi = FeatureNetwork.from_config(cfg.loss.feature_net, cfg.loss.feature_path)
    return Parts(
        cfg=cfg,
        models={"g": generator, "d": discriminator},
        optimizers={
            "g": torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas),
            "d": torch.optim.Adam(
                discriminator.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas
            ),
        },
        frozen={"phi": phi},
        export="g",
        export_name="sga",
        log_keys=("loss_d", "loss_g", "loss_g_l1"),
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One alternating update (§IV-B): the discriminator on real and detached fake images,
    then the generator on Eq. (6)."""
    cfg = parts.cfg
    generator, discriminator = parts.models["g"], parts.models["d"]
    optimizer_g, optimizer_d = parts.optimizers["g"], parts.optimizers["d"]
    phi = parts.frozen["phi"]
    sketch, reference, target = batch["sketch"], batch["reference"], batch["target"]

    with accelerator.autocast():
        fake = generator(sketch, reference=reference).image  # I_gen = G(I_l, I_r)

    # D step: conditional LSGAN on (image, sketch) pairs, Eq. (5), D's side
    with accelerator.autocast():
        d_real = discriminator(target, sketch)
        d_fake = discriminator(fake.detach(), sketch)
        loss_d_real = lsgan_g_loss(d_real)  # E[(D(I_gt, I_l) − 1)²]: real scores to 1
        loss_d_fake = lsgan_d_loss(torch.ones_like(d_fake), d_fake)  # E[D(I_gen, I_l)²]
        loss_d = cfg.loss.adv * (loss_d_real + loss_d_fake)  # Cao et al. Eq. (6): λ_adv = 1
    update(accelerator, loss_d, discriminator, optimizer_d, cfg.train.max_grad_norm)

    # G step: Eq. (6); D scores the fake through its plain module with frozen weights, so G's
    # loss leaves no gradient in D (nor a second DDP reduction of D)
    layers_perc, layers_style = phi.presets("perceptual"), phi.presets("style")
    layers = tuple(dict.fromkeys(layers_perc + layers_style))
    with accelerator.autocast():
        with frozen(accelerator.unwrap_model(discriminator)) as d_plain:
            loss_g_adv = lsgan_g_loss(d_plain(fake, sketch))  # E[(D(I_gen, I_l) − 1)²]
        loss_g_l1 = l1_loss(fake, target)  # L_rec, Eq. (1)–(2)
        fake_features = phi(fake, layers)
        with torch.no_grad():
            real_features = phi(target, layers)
        loss_g_perceptual = perceptual_loss(fake_features, real_features, layers_perc)  # Eq. (3)
        loss_g_style = style_loss(fake_features, real_features, layers_style)  # Eq. (4)
        loss_g = (
            cfg.loss.adv * loss_g_adv  # Cao et al. Eq. (6): λ_adv = 1
            + cfg.loss.l1 * loss_g_l1  # λ_rec = 30
            + cfg.loss.perceptual * loss_g_perceptual  # λ_perc = 0.01
            + cfg.loss.style * loss_g_style  # λ_style = 50
        )
    update(accelerator, loss_g, generator, optimizer_g, cfg.train.max_grad_norm)

    return scalars(
        loss_d=loss_d,
        loss_d_real=loss_d_real,
        loss_d_fake=loss_d_fake,
        loss_g=loss_g,
        loss_g_adv=loss_g_adv,
        loss_g_l1=loss_g_l1,
        loss_g_perceptual=loss_g_perceptual,
        loss_g_style=loss_g_style,
    )


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: G(I_l, I_r) between its inputs and I_gt."""
    output = model(batch["sketch"], reference=batch["reference"]).image
    return {
        "sketch": batch["sketch"],
        "reference": batch["reference"],
        "output": output,
        "target": batch["target"],
    }
