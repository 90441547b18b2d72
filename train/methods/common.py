"""What every recipe shares: the `Parts` it builds and three helpers for its `train_step`.

`frozen` and `clip_gradients` exist because a GAN step has two optimizers: the generator's
loss must not leave gradients in the discriminator, and gradient clipping under fp16 must
unscale only the optimizer that is about to step (see `clip_gradients`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn

if TYPE_CHECKING:
    from train.config import RunConfig


@dataclass
class Parts:
    """Everything a recipe trains with; `build` returns it, `train_step` receives it.

    `train/run.py` passes `models`, `optimizers` and `schedulers` through one
    `accelerator.prepare` call (so a GAN's G and D are prepared together) and puts the
    prepared objects back under the same keys; it saves them all with `save_state`.

    Parameters:
        cfg: the run's config (loss weights are read from `cfg.loss` inside the step).
        models: trained networks by role, e.g. {"g": generator, "d": discriminator}.
        optimizers: one optimizer per trained role, same keys as the models they update.
        export: the role whose model is exported (and averaged when `train.ema` is on).
        export_name: its folder under the run's weights/ ("sga", "tagger", ...): the name
            `colorize` loads it by.
        schedulers: learning-rate schedulers by role; run.py steps each once per optimizer
            step, so their units are optimizer steps whatever the number of processes.
        frozen: fixed networks the losses need (a feature network): moved to the device,
            never prepared, never saved.
        export_files: extra text files written next to the exported weights {name: text}
            (e.g. the tagger's tag vocabulary).
        log_keys: the losses shown on the log line (all when empty); trackers get them all.
    """

    cfg: RunConfig
    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    export: str
    export_name: str
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = field(default_factory=dict)
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    export_files: dict[str, str] = field(default_factory=dict)
    log_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.export not in self.models:
            raise ValueError(f"Parts.export {self.export!r} is not one of {sorted(self.models)}")
        extra = set(self.optimizers) - set(self.models)
        if extra:
            raise ValueError(f"optimizers {sorted(extra)} have no model of the same role")


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """`module` with requires_grad off inside the block (restored after), so a generator loss
    back-propagates through a discriminator into the image without touching D's gradients
    (which may be accumulating over several batches)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def clip_gradients(
    accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer, max_norm: float
) -> None:
    """Clip `model`'s gradient norm to `max_norm` (0: off) on steps that sync gradients.

    `accelerator.clip_grad_norm_` unscales the gradients of *every* prepared optimizer under
    fp16 (one shared GradScaler, accelerate issue #174), which would unscale D's half-summed
    gradients while G clips; here only `optimizer` is unscaled, right before its own step.
    (The scaler's update after each step is why run.py refuses fp16 with gradient
    accumulation when a recipe has several optimizers.)
    """
    if max_norm <= 0 or not accelerator.sync_gradients:
        return
    accelerator.unscale_gradients(optimizer=optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def update(
    accelerator: Accelerator,
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    max_norm: float,
) -> None:
    """One optimiser update of `model` from `loss`: backward, clip (see `clip_gradients`),
    step, zero_grad. Under gradient accumulation the prepared optimizer skips the step and
    keeps the gradients until the step that syncs them."""
    accelerator.backward(loss)
    clip_gradients(accelerator, model, optimizer, max_norm)
    optimizer.step()
    optimizer.zero_grad()


def scalars(**losses: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached copies of a step's losses, the form `train_step` returns them in."""
    return {name: value.detach().float() for name, value in losses.items()}
