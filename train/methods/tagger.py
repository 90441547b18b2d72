"""Recipe `tagger`: the multi-label tag classifier behind the tags/hints methods and the losses.

The `Tagger` stands in for the papers' pretrained classifiers (Yan et al.'s ResNet-34 on
Danbooru tags, Ci et al.'s Illustration2Vec, see colorize/models/tagger.py). It learns the
dataset's tag vector (colour shares, skin tone, OpenMoji group/subgroup) with a binary
cross-entropy per tag, from the colour image *and* from the grey sketch of the same drawing
with the same targets: Ci et al. (§3.1) and the hints generator feed it sketches, Yan et al.
(§3.4) and the feature losses feed it colour images, so it must read both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from colorize.models import Tagger, presets
from train.methods.common import Parts, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS = ("tags",)


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of the tagger: AdamW with cosine decay to zero (no paper gives a recipe for it).

    Parameters:
        lr: peak learning rate.
        betas: Adam's (β1, β2).
        weight_decay: AdamW's decoupled weight decay.
        schedule: "cosine" (to 0 at train.steps) or "constant".
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(
                f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}"
            )


@dataclass(frozen=True)
class LossConfig:
    """[loss] of the tagger: weights of the BCE on colour images and on sketches.

    Parameters:
        color: weight of BCE(tagger(colour image), tags).
        sketch: weight of BCE(tagger(grey sketch), tags).
    """

    color: float = 1.0
    sketch: float = 1.0


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """A fresh Tagger over the dataset's tag vocabulary at `cfg.model.size`, and its AdamW."""
    vocabulary = list(dataset.vocabulary)
    tagger = Tagger(
        num_tags=len(vocabulary), **{**presets("tagger", cfg.model.size), **cfg.model.overrides}
    )
    optimizer = torch.optim.AdamW(
        tagger.parameters(),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
    )
    schedulers = {}
    if cfg.optim.schedule == "cosine":
        schedulers["tagger"] = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.train.steps
        )
    return Parts(
        cfg=cfg,
        models={"tagger": tagger},
        optimizers={"tagger": optimizer},
        schedulers=schedulers,
        export="tagger",
        export_name="tagger",
        export_files={"tags.json": json.dumps(vocabulary, indent=1)},
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One multi-label step on colour images and their sketches (one forward, one backward)."""
    cfg, tagger, optimizer = parts.cfg, parts.models["tagger"], parts.optimizers["tagger"]
    target, sketch, tags = batch["target"], batch["sketch"], batch["tags"]
    B = target.shape[0]

    with accelerator.autocast():
        # colour and grey in one batch: one forward per backward keeps DDP and BN simple
        images = torch.cat([target, sketch.expand(-1, 3, -1, -1)])  # (2B, 3, H, W)
        logits = tagger(images).float()  # (2B, T)
        loss_color = F.binary_cross_entropy_with_logits(logits[:B], tags)
        loss_sketch = F.binary_cross_entropy_with_logits(logits[B:], tags)
        loss = cfg.loss.color * loss_color + cfg.loss.sketch * loss_sketch

    update(accelerator, loss, tagger, optimizer, cfg.train.max_grad_norm)
    return scalars(loss=loss, loss_color=loss_color, loss_sketch=loss_sketch)

