"""Recipe `line_extractor`: the line drawing extraction U-Net LE of Cao, Tian, Mok (seed 000,
§III-A and §IV-A).

LE learns to turn a colour image into the line drawing an artist would draw for it, from the
paired colour/sketch images of a dataset (Kaggle anime pairs in the paper, OpenMoji's own line
art here); its output then pairs colour-only images with sketches for the colorizers
(train/data: the "folder" dataset's `line_extractor`). The step is a plain regression,
LE(I_gt) ≈ I_l, with an L1 loss.

Cao et al. say only that LE is "based on U-Net" and is trained on the anime pairs (§III-A,
§IV-A): no loss, optimizer or schedule is given. We take the L1 of their reconstruction term
(Eq. 1–2), which keeps thin lines crisp where an L2 blurs them, and their only optimizer
setting, Adam(β1 0.5, β2 0.999) with batch 16 at 256×256 (§IV-B), but at lr 1e-3 instead of
their 1e-4: at 1e-4 this BatchNorm U-Net still drew worse than a blank page after 150 steps
(L1 0.364 against 0.219 for white paper), at 1e-3 it was at 0.295 after 60 (2026-12-01, the
CPU profile at 128 px, batch 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn

from colorize.models import LineExtractor, presets
from train.losses import l1_loss
from train.methods.common import Parts, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS: tuple[str, ...] = ()  # the sample's sketch and target are all LE needs


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of LE: Adam at a constant rate (Cao et al. §IV-B, the colorizer's settings; the
    paper gives none for LE).

    Parameters:
        lr: learning rate (1e-3; the colorizer's 1e-4 learns LE ~5× slower).
        betas: Adam's (β1, β2) = (0.5, 0.999).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class LossConfig:
    """[loss] of LE.

    Parameters:
        l1: weight of the L1 between LE(I_gt) and the drawn line art I_l (Cao et al.'s
            reconstruction loss, Eq. 1–2, applied to line drawings).
    """

    l1: float = 1.0


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """A fresh LineExtractor at `cfg.model.size` (with the overrides) and its Adam."""
    model = LineExtractor(**{**presets("line_extractor", cfg.model.size), **cfg.model.overrides})
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    return Parts(
        cfg=cfg,
        models={"line_extractor": model},
        optimizers={"line_extractor": optimizer},
        export="line_extractor",
        export_name="line_extractor",
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One regression step: the colour image in, the L1 to its line art out."""
    cfg = parts.cfg
    model, optimizer = parts.models["line_extractor"], parts.optimizers["line_extractor"]
    with accelerator.autocast():
        extracted = model(batch["target"])  # LE(I_gt), [B, 1, H, W]
        loss_l1 = l1_loss(extracted, batch["sketch"])
        loss = cfg.loss.l1 * loss_l1
    update(accelerator, loss, model, optimizer, cfg.train.max_grad_norm)
    return scalars(loss=loss, loss_l1=loss_l1)


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: the colour input, LE's line drawing, the drawn one."""
    return {
        "color": batch["target"],
        "output": model(batch["target"]),
        "sketch": batch["sketch"],
    }
