"""Recipe `csft`: Cui et al., exemplar-based sketch colorization with cross-domain dense
correspondence (seed 002, §3.3–§3.4, §4.1).

Pseudo exemplar pairs (§3.4.2): the exemplar y_e is the ground truth x_e warped by a TPS (the
dataset's "reference", also colour-jittered), so G(x_s, y_e) has a ground truth: x_e itself,
drawn in the sketch's layout. Per iteration the two conditional discriminators are updated
first, on real and detached fake images (Eq. 15):

- structural D_s (§3.3.1) on image ⊕ its xDoG sketch (the dataset's "structure", the xDoG of
  x_e). Real and fake pairs share that condition: the fake is drawn in x_e's layout, and a
  condition of another line style for the fakes (the dataset's own line art) would let D_s
  separate the pairs by the condition alone;
- colorific D_r (§3.3.2) on image ⊕ a colour-similar image of another drawing (the dataset's
  "colorific": 8×8×8 Lab histograms grouped by k-means), for real and fake alike;

then the domain alignment network and the generator, jointly (§3.4), on

    L = λ_adv L_adv + λ_perc L_perc + λ_style L_style + λ_ctx L_context
        + λ_pseudo L_pseudo + λ_align L_align

with perceptual (Eq. 10, relu5_2 of VGG-19, to x_e), style (Eq. 11, Gram matrices, to the
exemplar y_e), contextual (Eq. 12, relu2_2 … relu5_2, to y_e), pseudo-pair L1 (Eq. 13, to x_e)
and domain alignment L1 (Eq. 14) losses. Eq. (14) sums over two pseudo pairs, {x_s, x_e} and
{y_s, y_e}; a self-augmented sample has the first only (the exemplar's own line art would be
the warped sketch), so L_align is its first term. φ is VGG-19 from local torchvision weights
when the config names them, the project's trained tagger otherwise (its stages at the same
depths).

§4.1 gives Adam(β1 0.5, β2 0.999), lr 1e-4 for G and both Ds, batch 8, 100 epochs at 256×256,
and no loss weights. The λ here are those of the works Cui et al. build on: λ_adv = 1,
λ_pseudo = 30 (reconstruction), λ_perc = 0.01 and λ_style = 50 of Lee et al. 2020 (their
ref. [16], the self-augmented training; the same values as Cao et al. Eq. 6), and from
CoCosNet (Zhang et al. 2020, ref. [60], whose correspondence and contextual loss they take)
λ_ctx and λ_align equal to λ_adv (CoCosNet's ctx_w·λ_vgg and novgg_featpair, both equal to its
weight_gan) with the contextual layer weights ω = 1, 2, 4, 8 for relu2_2 … relu5_2.
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
    alignment_loss,
    bce_d_loss,
    bce_g_loss,
    contextual_loss,
    perceptual_loss,
    pseudo_pair_loss,
    style_loss,
)
from train.methods.common import Parts, clip_gradients, frozen, scalars, update

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from train.config import RunConfig

CONDITIONS = ("reference", "structure", "colorific")
FEATURE_NETS = ("tagger", "vgg19")
DISCRIMINATORS = ("structural", "colorific")  # D_s and D_r, each under "d_<role>" in Parts


@dataclass(frozen=True)
class OptimConfig:
    """[optim] of Cui et al. §4.1: Adam for the generator and both discriminators.

    Parameters:
        lr_g: learning rate of the domain alignment network and generator (1e-4).
        lr_d: learning rate of D_s and D_r (1e-4, "following TTUR" with equal rates).
        betas: Adam's (β1, β2) = (0.5, 0.999).
    """

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class LossConfig:
    """[loss]: the weights of Cui et al. §3.4 (not given in the paper; see the module
    docstring for where each comes from) and the feature network φ of Eq. 10–12.

    Parameters:
        adv: λ_adv = 1, weight of the BCE of Eq. (15), per discriminator (G's side).
        perceptual: λ_perc = 0.01 (Eq. 10).
        style: λ_style = 50 (Eq. 11).
        contextual: λ_ctx = 1 (Eq. 12).
        contextual_layer_weights: ω_l of Eq. (12) for the "contextual" layers of φ, shallow
            to deep (CoCosNet: 1, 2, 4, 8 for relu2_2 … relu5_2).
        contextual_max_positions: a contextual layer with more positions is average-pooled
            until it fits (CoCosNet pools relu2_2 and relu3_2 to relu4_2's 32×32 at 256 px);
            the [H·W, H·W] affinities of the shallow layers dominate the step otherwise.
        pseudo: λ_pseudo = 30 (Eq. 13).
        align: λ_align = 1 (Eq. 14).
        feature_net: "tagger" (the project's trained tagger, the default) or "vgg19" (the
            paper's network, from a local torchvision weights file).
        feature_path: the tagger's save_pretrained folder (what train/configs/tagger.toml
            exports) or the VGG-19 weights file.
    """

    adv: float = 1.0
    perceptual: float = 0.01
    style: float = 50.0
    contextual: float = 1.0
    contextual_layer_weights: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    contextual_max_positions: int = 32 * 32
    pseudo: float = 30.0
    align: float = 1.0
    feature_net: str = "tagger"
    feature_path: str = "runs/tagger/weights/tagger"

    def __post_init__(self) -> None:
        if self.feature_net not in FEATURE_NETS:
            raise ValueError(
                f"loss.feature_net must be 'tagger' or 'vgg19' (Cui et al. use VGG-19), got "
                f"{self.feature_net!r}"
            )
        if self.contextual_max_positions < 1:
            raise ValueError(
                f"loss.contextual_max_positions must be >= 1, got {self.contextual_max_positions}"
            )


def build(cfg: RunConfig, dataset: Dataset, steps_per_epoch: int) -> Parts:
    """CSFTGenerator, the structural and colorific discriminators at `cfg.model.size`, an
    Adam per model, and the frozen φ."""
    phi = FeatureNetwork.from_config(cfg.loss.feature_net, cfg.loss.feature_path)
    contextual_layers = phi.presets("contextual")
    if len(cfg.loss.contextual_layer_weights) != len(contextual_layers):
        raise ValueError(
            f"loss.contextual_layer_weights needs one weight per contextual layer of "
            f"{cfg.loss.feature_net} {contextual_layers}, got {cfg.loss.contextual_layer_weights}"
        )
    generator = build_generator("csft", cfg.model.size, **cfg.model.overrides)
    discriminators = build_discriminators(
        "csft", cfg.model.size, **cfg.model.discriminator_overrides
    )
    # one model (and optimizer) per discriminator: each is called through its own DDP wrapper
    models: dict[str, nn.Module] = {"g": generator}
    models.update({f"d_{role}": discriminators[role] for role in DISCRIMINATORS})
    optimizers = {
        role: torch.optim.Adam(
            model.parameters(),
            lr=cfg.optim.lr_g if role == "g" else cfg.optim.lr_d,
            betas=cfg.optim.betas,
        )
        for role, model in models.items()
    }
    return Parts(
        cfg=cfg,
        models=models,
        optimizers=optimizers,
        frozen={"phi": phi},
        export="g",
        export_name="csft",
        log_keys=("loss_d", "loss_g", "loss_g_pseudo"),
    )


def train_step(
    parts: Parts, batch: dict, accelerator: Accelerator, step: int
) -> dict[str, torch.Tensor]:
    """One alternating update (§3.3.3, §3.4): D_s and D_r on real and detached fake images
    (Eq. 15), then the alignment network and generator on all the losses of §3.4."""
    cfg = parts.cfg
    generator = parts.models["g"]
    d_structural, d_colorific = parts.models["d_structural"], parts.models["d_colorific"]
    optimizer_g = parts.optimizers["g"]
    optimizers_d = [parts.optimizers["d_structural"], parts.optimizers["d_colorific"]]
    phi = parts.frozen["phi"]
    sketch, exemplar, target = batch["sketch"], batch["reference"], batch["target"]
    structure, similar = batch["structure"], batch["colorific"]

    with accelerator.autocast():
        out = generator(sketch, reference=exemplar)  # G(x_s, y_e) with y_e = s(x_e)
        fake = out.image

    # D step: Eq. (15), D's side, for both discriminators (one backward)
    with accelerator.autocast():
        loss_d_structural = bce_d_loss(
            d_structural(target, structure), d_structural(fake.detach(), structure)
        )
        loss_d_colorific = bce_d_loss(
            d_colorific(target, similar), d_colorific(fake.detach(), similar)
        )
        loss_d = loss_d_structural + loss_d_colorific
    accelerator.backward(loss_d)
    for model, optimizer in zip((d_structural, d_colorific), optimizers_d, strict=True):
        clip_gradients(accelerator, model, optimizer, cfg.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()

    # G step: both Ds score the fake through their plain modules with frozen weights, so G's
    # loss leaves no gradient in them (nor a second DDP reduction)
    layers_perc, layers_style = phi.presets("perceptual_csft"), phi.presets("style")
    layers_ctx = phi.presets("contextual")
    exemplar_layers = tuple(dict.fromkeys(layers_style + layers_ctx))
    with accelerator.autocast():
        with (
            frozen(accelerator.unwrap_model(d_structural)) as ds_plain,
            frozen(accelerator.unwrap_model(d_colorific)) as dr_plain,
        ):
            loss_g_adv = (
                bce_g_loss(ds_plain(fake, structure))  # Eq. (15), G's side: −E[log D_s(G)]
                + bce_g_loss(dr_plain(fake, similar))  # − E[log D_r(G)]
            )
        fake_features = phi(fake, tuple(dict.fromkeys(layers_perc + exemplar_layers)))
        with torch.no_grad():
            target_features = phi(target, layers_perc)
            exemplar_features = phi(exemplar, exemplar_layers)
        # Eq. (10) compares with x_e, Eq. (11) and (12) with the exemplar y_e
        loss_g_perceptual = perceptual_loss(fake_features, target_features, layers_perc)
        loss_g_style = style_loss(fake_features, exemplar_features, layers_style)
        loss_g_contextual = contextual_loss(
            fake_features,
            exemplar_features,
            layers_ctx,
            cfg.loss.contextual_layer_weights,
            max_positions=cfg.loss.contextual_max_positions,
        )  # Eq. (12)
        # Eq. (13): the exemplar is the warped s(x_e), so the output in x_s's layout is x_e
        loss_g_pseudo = pseudo_pair_loss(fake, target)
        # Eq. (14) on the pair {x_s, x_e}: F_{s→c}(x_s) from the forward, F_{e→c}(x_e) from the
        # same exemplar branch (its parameters also ran in the forward, so DDP reduces them once)
        target_domain = accelerator.unwrap_model(generator).embed_exemplar(target)
        loss_g_align = alignment_loss(out.sketch_domain, target_domain)
        loss_g = (
            cfg.loss.adv * loss_g_adv  # Cui et al. Eq. (15) (λ not given; Lee et al.): λ_adv = 1
            + cfg.loss.perceptual * loss_g_perceptual  # Eq. (10): λ_perc = 0.01
            + cfg.loss.style * loss_g_style  # Eq. (11): λ_style = 50
            + cfg.loss.contextual * loss_g_contextual  # Eq. (12) (CoCosNet): λ_ctx = 1
            + cfg.loss.pseudo * loss_g_pseudo  # Eq. (13): λ_pseudo = 30
            + cfg.loss.align * loss_g_align  # Eq. (14) (CoCosNet): λ_align = 1
        )
    update(accelerator, loss_g, generator, optimizer_g, cfg.train.max_grad_norm)

    return scalars(
        loss_d=loss_d,
        loss_d_structural=loss_d_structural,
        loss_d_colorific=loss_d_colorific,
        loss_g=loss_g,
        loss_g_adv=loss_g_adv,
        loss_g_perceptual=loss_g_perceptual,
        loss_g_style=loss_g_style,
        loss_g_contextual=loss_g_contextual,
        loss_g_pseudo=loss_g_pseudo,
        loss_g_align=loss_g_align,
    )


def sample(parts: Parts, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The grid's panels for a fixed batch: the inputs, the warped exemplar (the coarse image
    of Eq. 4), the refined output and x_e."""
    out = model(batch["sketch"], reference=batch["reference"])
    return {
        "sketch": batch["sketch"],
        "reference": batch["reference"],
        "coarse": out.coarse,
        "output": out.image,
        "target": batch["target"],
    }
