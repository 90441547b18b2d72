"""Recipe `hints`: Ci et al., user-guided line art colorization, AlacGAN (seed 004, §3.2–3.4).

G(X, H, F1(X)) colours the sketch X from the colour hint H (the dataset's "hint" condition:
pixels of the target kept where a simulated stroke mask is on, ¼ resolution, §3.1) and the
local features F1(X) of a frozen pretrained tagger embedded in G (loaded from
`model.tagger_path`; the project's `Tagger` stands in for Illustration2Vec). The critic
D(Y, F1(X)) (train/discriminators.py: HintsCritic) sees the image and the local features,
never the sketch. Each iteration updates D once, then G once (§3.2, §4.1: the drift term makes
the usual five critic steps per G step unnecessary):

    L_D = L_w + L_p                                    (Eq. 5)
    L_w = E[D(G(·), F1(X))] − E[D(Y, F1(X))]           (Eq. 6)
    L_p = λ2 E[(‖∇_Ŷ D(Ŷ, F1(X))‖₂ − 1)²] + ε_drift E[D(Y, F1(X))²],  λ2 = 10, ε = 1e-3 (Eq. 7)
    L_G = L_cont + λ1 L_adv,  λ1 = 1e-4                (Eq. 2), L_adv = −E[D(G(·), F1(X))] (Eq. 3)

with L_cont the mean squared distance of one mid-level feature map F2 (Eq. 4: VGG-16 relu2_2;
the trained tagger's "content" layer by default). Adam(β1 0.5, β2 0.9), lr 1e-4 for both,
divided by 10 after half of the 250k iterations, batch 4, 512² crops; every sketch is lightened
to x̂ = 1 − λ(1 − x), λ ~ U(0.7, 1), so that non-black line art is seen too (§4.1).

The gradient penalty differentiates the critic twice (create_graph). It calls the critic's
plain module, not the DDP wrapper, inside the one backward of L_D; DDP reduces each weight's
gradient once, after autograd has summed the penalty's contribution with L_w's. It runs in
fp32 (`train.losses.gradient_penalty`), and through the critic class's own `forward`:
accelerate replaces a prepared model's instance `forward` with one that re-enters autocast,
which would silently compute the penalty in bf16/fp16 (`_critic_in_fp32`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn

from colorize.models import HintsGenerator, build_generator, presets
from colorize.models.hints import LOCAL_FEATURES_STRIDE
from train.config import ModelConfig as BaseModelConfig
from train.discriminators import build_discriminators
from train.features import FeatureNetwork
from train.losses import (
    content_loss,
    drift_penalty,
    gradient_penalty,
    l1_loss,
    wgan_critic_loss,
    wgan_g_loss,
)
from train.methods.common import Parts, frozen, scalars, update
from train.methods.tags import load_tagger

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS = ("hint",)


@dataclass(frozen=True)
class ModelConfig(BaseModelConfig):
    """[model] of `hints`: the preset, constructor overrides, and the trained tagger.

    Parameters:
        tagger_path: folder of a trained `Tagger` (written by train/configs/tagger.toml),
            copied into G as its frozen local features network F1 (Ci et al. §3.1; its
            architecture replaces the preset's tagger_config). "" keeps a randomly
            initialised frozen F1, with a warning. The critic's feature width follows it.
    """

    tagger_path: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Ci et al. §4.1: Adam for both players, lr divided by 10 halfway.

    Parameters:
        lr_g: generator learning rate (1e-4).
        lr_d: critic learning rate (1e-4).
        betas: Adam's (β1, β2) = (0.5, 0.9).
        decay_at: fraction of train.steps after which both rates are multiplied by
            `decay_factor` (125k of 250k iterations: 0.5).
        decay_factor: 1e-4 → 1e-5: 0.1.
    """

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    decay_at: float = 0.5
    decay_factor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.decay_at <= 1 or not 0 < self.decay_factor <= 1:
            raise ValueError(
                f"optim.decay_at and optim.decay_factor must be in (0, 1], got {self.decay_at} "
                f"and {self.decay_factor}"
            )


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the weights of Ci et al. Eq. (2) and (7), the content network, the sketch shade.

    Parameters:
        content: weight of L_cont, Eq. (4) (1).
        l1: weight of a pixel L1 to Y added to L_G (not in the paper: 0 = Ci et al.). VGG-16's
            relu2_2 keeps an image's colours; the project's tagger, trained on a few thousand
            drawings, keeps fewer, so its CPU profile adds this term.
        adv: λ1 = 1e-4, weight of L_adv in Eq. (2).
        gp: λ2 = 10, the gradient penalty of Eq. (7).
        drift: ε_drift = 1e-3, the drift term of Eq. (7).
        feature_net: F2 of Eq. (4): "tagger" (the project's trained tagger, its "content"
            layer; the default) or "vgg16" (the paper's relu2_2, from a local weights file).
        feature_path: the tagger's save_pretrained folder or the VGG-16 weights file.
        sketch_shade: (low, high) of λ in the sketch augmentation x̂ = 1 − λ(1 − x) of §4.1,
            (0.7, 1); (1, 1) keeps the sketches black.
    """

    content: float = 1.0
    l1: float = 0.0
    adv: float = 1e-4
    gp: float = 10.0
    drift: float = 1e-3
    feature_net: str = "tagger"
    feature_path: str = "runs/tagger/weights/tagger"
    sketch_shade: tuple[float, float] = (0.7, 1.0)

    def __post_init__(self) -> None:
        if self.feature_net not in ("tagger", "vgg16"):
            raise ValueError(
                f"loss.feature_net must be 'tagger' or 'vgg16' (Ci et al. use VGG-16), got "
                f"{self.feature_net!r}"
            )
        low, high = self.sketch_shade
        if not 0 < low <= high <= 1:
            raise ValueError(f"loss.sketch_shade must be (low, high) with 0 < low <= high <= 1, "
                             f"got {self.sketch_shade}")  # fmt: skip


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """HintsGenerator (the trained tagger as F1), a HintsCritic on its local features, their
    Adams with the step decay, and the frozen F2 of the content loss."""
    tagger = load_tagger(cfg.model.tagger_path, cfg.method)
    if tagger is None:
        generator = build_generator("hints", cfg.model.size, **cfg.model.overrides)
    else:
        kwargs = {**presets("hints", cfg.model.size), **cfg.model.overrides}
        generator = HintsGenerator.with_tagger(tagger, **kwargs)
    local_layer = generator.tagger.local_features_layer
    critic = build_discriminators(
        "hints",
        cfg.model.size,
        **{
            **cfg.model.discriminator_overrides,
            # F1(X) as the generator computes it: the tagger's mid-level map at 1/16
            "feature_channels": generator.tagger.feature_channels[local_layer],
            "feature_stride": LOCAL_FEATURES_STRIDE,
        },
    )["critic"]
    phi = FeatureNetwork.from_config(cfg.loss.feature_net, cfg.loss.feature_path)
    adam = dict(betas=cfg.optim.betas)
    optimizers = {
        "g": torch.optim.Adam(
            (p for p in generator.parameters() if p.requires_grad), lr=cfg.optim.lr_g, **adam
        ),
        "critic": torch.optim.Adam(critic.parameters(), lr=cfg.optim.lr_d, **adam),
    }
    milestone = max(1, round(cfg.optim.decay_at * cfg.train.steps))  # in optimizer steps
    schedulers = {
        role: torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[milestone], gamma=cfg.optim.decay_factor
        )
        for role, optimizer in optimizers.items()
    }
    return Parts(
        cfg=cfg,
        models={"g": generator, "critic": critic},
        optimizers=optimizers,
        schedulers=schedulers,
        frozen={"phi": phi},
        export="g",
        export_name="hints",
        log_keys=("loss_d", "loss_d_gp", "loss_g", "loss_g_content", "loss_g_l1"),
    )


def _critic_in_fp32(accelerator: Accelerator, critic: nn.Module) -> Callable[..., torch.Tensor]:
    """The critic's weights through its class's `forward`: accelerate's `prepare` replaces the
    instance's `forward` with one that enters autocast, which would override the fp32 block of
    `gradient_penalty`. Calling the class's function keeps the penalty in fp32 (the critic has
    no forward hooks or spectral norm that `__call__` would run)."""
    plain = accelerator.unwrap_model(critic)
    return partial(type(plain).forward, plain)


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One critic update (Eq. 5–8), then one generator update (Eq. 2–4), §4.1."""
    cfg = parts.cfg
    generator, critic = parts.models["g"], parts.models["critic"]
    optimizer_g, optimizer_d = parts.optimizers["g"], parts.optimizers["critic"]
    phi = parts.frozen["phi"]
    hint, target = batch["hint"], batch["target"]
    # §4.1: x̂ = 1 − λ(1 − x), λ ~ U(low, high) per sketch (the same formula in [-1, 1])
    low, high = cfg.loss.sketch_shade
    shade = torch.empty(target.shape[0], 1, 1, 1, device=target.device).uniform_(low, high)
    sketch = 1 - shade * (1 - batch["sketch"])

    with accelerator.autocast():
        fake = generator(sketch, hint=hint).image  # G(X, H, F1(X)), Eq. (1)
        features = accelerator.unwrap_model(generator).local_features(sketch)  # F1(X), frozen

    # D step: Eq. (5) = the critic loss of Eq. (6) + the penalties of Eq. (7)
    with accelerator.autocast():
        d_real = critic(target, features)
        d_fake = critic(fake.detach(), features)
        loss_d_w = wgan_critic_loss(d_real, d_fake)  # Eq. (6)
        loss_d_drift = drift_penalty(d_real, cfg.loss.drift)  # Ci et al. Eq. (7): ε_drift = 1e-3
    loss_d_gp = gradient_penalty(  # Ci et al. Eq. (7)–(8): λ2 = 10, in fp32
        _critic_in_fp32(accelerator, critic), target, fake, features, weight=cfg.loss.gp
    )
    loss_d = loss_d_w + loss_d_gp + loss_d_drift
    update(accelerator, loss_d, critic, optimizer_d, cfg.train.max_grad_norm)

    # G step: Eq. (2); the critic scores the fake through its plain module with frozen weights
    layer = phi.presets("content")[0]
    with accelerator.autocast():
        with frozen(accelerator.unwrap_model(critic)) as critic_plain:
            loss_g_adv = wgan_g_loss(critic_plain(fake, features))  # Eq. (3)
        fake_features = phi(fake, [layer])
        with torch.no_grad():
            real_features = phi(target, [layer])
        loss_g_content = content_loss(fake_features, real_features, layer)  # Eq. (4)
        loss_g_l1 = l1_loss(fake, target)  # not in the paper (loss.l1 = 0 there)
        loss_g = (
            cfg.loss.content * loss_g_content  # Ci et al. Eq. (2): weight 1
            + cfg.loss.adv * loss_g_adv  # λ1 = 1e-4
            + cfg.loss.l1 * loss_g_l1
        )
    update(accelerator, loss_g, generator, optimizer_g, cfg.train.max_grad_norm)

    return scalars(
        loss_d=loss_d,
        loss_d_w=loss_d_w,
        loss_d_gp=loss_d_gp,
        loss_d_drift=loss_d_drift,
        loss_g=loss_g,
        loss_g_adv=loss_g_adv,
        loss_g_content=loss_g_content,
        loss_g_l1=loss_g_l1,
    )


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: G(X, H, F1(X)) between its inputs and Y."""
    output = model(batch["sketch"], hint=batch["hint"]).image
    return {
        "sketch": batch["sketch"],
        "hint": batch["hint"],
        "output": output,
        "target": batch["target"],
    }
