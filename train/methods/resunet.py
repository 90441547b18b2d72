"""Recipe `resunet`: Khang et al., cross-attention GAN ResUNet (seed 001, §3–§4).

G(I_line ⊕ I_color, I_ref) colours the line art from the reference image and its k-means
palette (§3.1). Training is self-augmented as in the other reference methods: the reference
is the ground truth warped by a TPS and colour-jittered (the dataset's "reference"), and its
palette is the dataset's "palette", which is computed from the *target* image before crop and
jitter. At training time the two agree: a TPS warp moves colours without changing how much of
each there is, so the warped reference has the target's palette (up to the small jitter); at
inference (colorize.pipeline) the palette is taken from the reference itself, as in §3.1.

Per iteration D and G are updated alternately (§4.2): first the PatchGAN (5 spectral-norm
convs, a 30×30 map at 256 px; train/discriminators.py: PatchDiscriminator) on real and
detached fake images with the BCE of Eq. (6), then G on

    L_G = λ_l1 L_l1 + λ_fm L_fm + λ_tv L_tv + λ_adv L_adv      (Eq. 1)

with L1 (Eq. 2), feature matching on a frozen φ (Eq. 3: VGG-16 in the paper, used when its
torchvision weights are on disk; the project's trained tagger otherwise), anisotropic total
variation (Eq. 4) and the non-saturating BCE (Eq. 5). Adam(β1 0.5, β2 0.99), lr 2e-4 for both
players, halved every 20 epochs (StepLR), batch 4, 40 epochs at 256×256 (§4.2).
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
from train.losses import (
    bce_d_loss,
    bce_g_loss,
    feature_matching_loss,
    l1_loss,
    total_variation_loss,
)
from train.methods.common import Parts, frozen, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS = ("reference", "palette")
FEATURE_NETS = ("tagger", "vgg16")


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Khang et al. §4.2: Adam for both players, StepLR every 20 epochs.

    Parameters:
        lr_g: generator learning rate (2e-4).
        lr_d: discriminator learning rate (2e-4).
        betas: Adam's (β1, β2) = (0.5, 0.99).
        step_epochs: StepLR's step size in epochs (20); converted to optimizer steps with the
            run's steps per epoch.
        gamma: StepLR's decay factor (0.5).
    """

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    step_epochs: int = 20
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.step_epochs < 1 or not 0 < self.gamma <= 1:
            raise ValueError(
                f"optim.step_epochs must be >= 1 and optim.gamma in (0, 1], got "
                f"{self.step_epochs} and {self.gamma}"
            )


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the λ of Khang et al. Eq. (1) and the feature network φ of Eq. (3).

    Parameters:
        adv: λ_adv = 1, weight of the BCE adversarial loss (Eq. 5).
        l1: λ_l1 = 50 (Eq. 2).
        feature_matching: λ_fm = 0.05 (Eq. 3).
        tv: λ_tv = 5e-4, on the total variation summed over pixels (Eq. 4).
        feature_net: "tagger" (the project's trained tagger, the default) or "vgg16" (the
            paper's network, from a local torchvision weights file).
        feature_path: the tagger's save_pretrained folder (what train/configs/tagger.toml
            exports) or the VGG-16 weights file.
    """

    adv: float = 1.0
    l1: float = 50.0
    feature_matching: float = 0.05
    tv: float = 5e-4
    feature_net: str = "tagger"
    feature_path: str = "runs/tagger/weights/tagger"

    def __post_init__(self) -> None:
        if self.feature_net not in FEATURE_NETS:
            raise ValueError(
                f"loss.feature_net must be 'tagger' or 'vgg16' (Khang et al. use VGG-16), got "
                f"{self.feature_net!r}"
            )


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """ResUNetGenerator and PatchDiscriminator at `cfg.model.size`, their Adams with StepLR
    (20 epochs in optimizer steps), and the frozen φ."""
    generator = build_generator("resunet", cfg.model.size, **cfg.model.overrides)
    discriminator = build_discriminators(
        "resunet", cfg.model.size, **cfg.model.discriminator_overrides
    )["d"]
    phi = FeatureNetwork.from_config(cfg.loss.feature_net, cfg.loss.feature_path)
    optimizers = {
        "g": torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas),
        "d": torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas),
    }
    step_size = cfg.optim.step_epochs * steps_per_epoch
    schedulers = {
        role: torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=cfg.optim.gamma)
        for role, optimizer in optimizers.items()
    }
    return Parts(
        cfg=cfg,
        models={"g": generator, "d": discriminator},
        optimizers=optimizers,
        schedulers=schedulers,
        frozen={"phi": phi},
        export="g",
        export_name="resunet",
        log_keys=("loss_d", "loss_g", "loss_g_l1"),
    )


def noise_generator(seed: int, step: int, process_index: int) -> torch.Generator:
    """The source of G's injected noise (§3.1, Fig. 4) for one step of one process: seeded by
    (seed, step, process), so a resumed run draws the noise of an uninterrupted one and no
    other consumer of the global RNG shifts it."""
    # a tuple of ints hashes the same in every process and every run
    return torch.Generator().manual_seed(hash((seed, step, process_index)) % 2**63)


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One alternating update (§4.2): the PatchGAN on real and detached fake images (Eq. 6),
    then the generator on Eq. (1)."""
    cfg = parts.cfg
    generator, discriminator = parts.models["g"], parts.models["d"]
    optimizer_g, optimizer_d = parts.optimizers["g"], parts.optimizers["d"]
    phi = parts.frozen["phi"]
    sketch, target = batch["sketch"], batch["target"]
    noise = noise_generator(cfg.train.seed, step, accelerator.process_index)

    with accelerator.autocast():
        # G(I_line ⊕ I_color, I_ref): the palette is the target's, ≈ the warped reference's
        fake = generator(
            sketch, reference=batch["reference"], palette=batch["palette"], generator=noise
        ).image

    # D step: Eq. (6), BCE over the 30×30 patches of the (image, line art) pair
    with accelerator.autocast():
        d_real = discriminator(target, sketch)
        d_fake = discriminator(fake.detach(), sketch)
        loss_d = bce_d_loss(d_real, d_fake)  # −E[log D(y)] − E[log(1 − D(G(x)))]
    update(accelerator, loss_d, discriminator, optimizer_d, cfg.train.max_grad_norm)

    # G step: Eq. (1); D scores the fake through its plain module with frozen weights, so G's
    # loss leaves no gradient in D (nor a second DDP reduction of D)
    layers = phi.presets("feature_matching")
    with accelerator.autocast():
        with frozen(accelerator.unwrap_model(discriminator)) as d_plain:
            loss_g_adv = bce_g_loss(d_plain(fake, sketch))  # Eq. (5): −E[log D(G(x))]
        loss_g_l1 = l1_loss(fake, target)  # Eq. (2)
        fake_features = phi(fake, layers)
        with torch.no_grad():
            real_features = phi(target, layers)
        loss_g_fm = feature_matching_loss(fake_features, real_features, layers)  # Eq. (3)
        loss_g_tv = total_variation_loss(fake, norm="anisotropic")  # Eq. (4), summed over pixels
        loss_g = (
            cfg.loss.l1 * loss_g_l1  # Khang et al. Eq. (1): λ_l1 = 50
            + cfg.loss.feature_matching * loss_g_fm  # λ_fm = 0.05
            + cfg.loss.tv * loss_g_tv  # λ_tv = 5e-4
            + cfg.loss.adv * loss_g_adv  # λ_adv = 1
        )
    update(accelerator, loss_g, generator, optimizer_g, cfg.train.max_grad_norm)

    return scalars(
        loss_d=loss_d,
        loss_g=loss_g,
        loss_g_adv=loss_g_adv,
        loss_g_l1=loss_g_l1,
        loss_g_fm=loss_g_fm,
        loss_g_tv=loss_g_tv,
        d_real=torch.sigmoid(d_real.float()).mean(),  # D's mean belief that y is real
        d_fake=torch.sigmoid(d_fake.float()).mean(),  # ... and that G(x) is
    )


def palette_swatches(palette: torch.Tensor) -> torch.Tensor:
    """The 9 palette colours [B, 27] as a [B, 3, 1, 9] strip (the grid stretches it into nine
    vertical bars, most frequent colour on the left)."""
    return palette.view(-1, 9, 3).permute(0, 2, 1).unsqueeze(2)


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: G's inputs (line art, reference, its palette), the
    output and I_gt; in eval mode the noise is the model's fixed one (noise_seed)."""
    output = model(batch["sketch"], reference=batch["reference"], palette=batch["palette"]).image
    return {
        "sketch": batch["sketch"],
        "reference": batch["reference"],
        "palette": palette_swatches(batch["palette"]),
        "output": output,
        "target": batch["target"],
    }
