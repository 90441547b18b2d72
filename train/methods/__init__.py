"""Training recipes, one module per trainable thing, and their registry `METHODS`.

`train/run.py` is the generic loop; a recipe says what is trained and how one step reads in
its paper. A recipe module defines:

    CONDITIONS: tuple[str, ...]
        The sample conditions its batches need (train.data.sample.CONDITIONS), e.g.
        ("reference",). Every batch also holds "sketch" [B,1,H,W], "target" [B,3,H,W], "meta".

    OptimConfig, LossConfig: frozen dataclasses
        The [optim] and [loss] sections, every field defaulting to the paper's value with the
        section/equation in the docstring. A recipe that needs more [model] keys defines
        `ModelConfig` as a subclass of train.config.ModelConfig (optional).

    build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts
        Fresh models, their optimizers (and schedulers, in optimizer steps; steps_per_epoch
        converts an epoch-based schedule), the frozen networks the losses need, which model
        is exported under weights/<export_name>/. Called after the seed is set; the run
        prepares everything in `Parts` through one `accelerator.prepare`.

    train_step(parts: Parts, batch: dict, accelerator: Accelerator, step: int)
            -> dict[str, Tensor]
        One batch of optimizer step number `step` (from 1; with gradient accumulation several
        batches share a step), written as the paper's algorithm. For a GAN (see sga.py):
        - generate once; D step: D on real and on the detached fake, loss_d_real and
          loss_d_fake, then `update(accelerator, loss_d, d, optimizer_d, max_norm)`
          (backward, `clip_gradients`, step, zero_grad);
        - G step: D scores the fake through `with frozen(accelerator.unwrap_model(d)) as
          d_plain:` (G's loss then leaves D's accumulating gradients alone, and the DDP
          wrapper of D sees one forward per backward); each loss weighted by its
          `cfg.loss.<name>` with the paper's reference ("# Cao et al. Eq. (6): λ_rec = 30");
          its own `update(...)`.
        Forward passes and losses go inside `with accelerator.autocast():`, backward outside
        it; a term that must run in fp32 (a gradient penalty) opens
        `torch.autocast(accelerator.device.type, enabled=False)` and casts its inputs.
        The step runs inside `accelerator.accumulate(*models)`: optimizer.step() and
        zero_grad() act only on batches that sync gradients, `clip_gradients` clips only
        there. Return detached scalars (`scalars(loss_d=..., ...)`); run.py averages them
        over processes, logs them, and stops the run, after saving state, when one is NaN
        or infinite.

    sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, Tensor]   (optional)
        Panels of the PNG grid for a fixed batch, in column order ("sketch", "reference",
        "hint", "output", "target"), each [B, C, H', W'] in [-1, 1]. `model` is the
        exported model (its EMA copy when train.ema is on), in eval mode, under no_grad.

Add a recipe by writing `train/methods/<key>.py`, registering it below and adding
`train/configs/<key>.toml` and `<key>_tiny.toml`.
"""

from __future__ import annotations

from types import ModuleType

from train.methods import csft, hints, line_extractor, resunet, sga, tagger, tags, tags_mapper
from train.methods.common import Parts, clip_gradients, frozen, scalars, update

METHODS: dict[str, ModuleType] = {
    "tagger": tagger,
    "line_extractor": line_extractor,
    "sga": sga,
    "resunet": resunet,
    "csft": csft,
    "tags": tags,
    "tags_mapper": tags_mapper,
    "hints": hints,
}

__all__ = ["METHODS", "Parts", "clip_gradients", "frozen", "scalars", "update"]
