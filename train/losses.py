"""The training losses of the five methods, one function each, with its seed equation.

Feature losses take the named feature maps of a frozen `train.features.FeatureNetwork`, so a
recipe computes φ(output) and φ(target) once and reuses them for several losses:

    phi = FeatureNetwork.from_config("tagger", path="weights/tagger")
    fake, real = phi(output, layers), phi(target, layers)
    # Cao et al. Eq. 6: λ_rec = 30, λ_perc = 0.01, λ_style = 50 (plus λ_adv = 1)
    loss = 30 * l1_loss(output, target) + 0.01 * perceptual_loss(fake, real)
    loss = loss + 50 * style_loss(fake, real)

Adversarial losses take raw discriminator scores (no sigmoid), a tensor or a list of tensors
(multi-scale discriminators: the mean over scales). Everything reduces to a scalar, means over
the batch, and is computed in fp32 whatever autocast does, so bf16/fp16 runs keep their loss
values (squares, Gram sums, logs) exact enough to compare with fp32 ones.

Seeds (/work/shared/seeds/): 000 Cao et al. (SGA), 001 Khang et al. (ResUNet), 002 Cui et al.
(CSFT), 003 Yan et al. (tags), 004 Ci et al. (user hints, WGAN-GP).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

Scores = torch.Tensor | Sequence[torch.Tensor]
Features = Mapping[str, torch.Tensor]

CONTEXTUAL_BANDWIDTH = 0.5  # h, the bandwidth of Mechrez et al. §3 (the default Cui et al. keep)
CONTEXTUAL_EPS = 1e-5  # ε of the relative distance d_ij / (min_k d_ik + ε), Mechrez et al. §3
GP_WEIGHT = 10.0  # λ_2 of Ci et al. Eq. 7 (Gulrajani et al.'s λ)
DRIFT_WEIGHT = 1e-3  # ε_drift of Ci et al. Eq. 7 (Karras et al.)
TV_SQRT_EPS = 1e-8  # keeps the isotropic TV differentiable where an image is flat


# ----------------------------------------------------------------------------------------------
# Pixel losses


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error E[‖G(·) − y‖₁]: Cao et al. Eq. 1–2 (L_rec), Khang et al. Eq. 2,
    Yan et al. Eq. 3 (step-1 L_L1)."""
    _check_same_shape("l1_loss", output, target)
    return (output.float() - target.float()).abs().mean()


def pseudo_pair_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cui et al. Eq. 13 (§3.4.2): the L1 between G(x_s, s(x_e)), coloured from the
    TPS-distorted exemplar, and the undistorted ground truth x_e.

    Eq. 13 as printed compares with x'_e = s(x_e), but the text penalises "the difference
    between the output and the ground truth x_e", which is the only reading under which the
    sketch x_s and the output are aligned; we follow the text.
    """
    _check_same_shape("pseudo_pair_loss", output, target)
    return l1_loss(output, target)


def total_variation_loss(
    image: torch.Tensor, norm: str = "anisotropic", eta: float = 1.0, reduction: str = "sum"
) -> torch.Tensor:
    """Total variation of `image` [B, C, H, W]; the two seeds define it differently.

    - norm="anisotropic": Khang et al. Eq. 4, Σ_{i,j} |I_{i+1,j} − I_{i,j}| + |I_{i,j+1} − I_{i,j}|
      (their text says "squared", their equation has absolute values; we follow the equation),
      over every channel.
    - norm="isotropic": Yan et al. Eq. 4, Σ_{i,j} (‖x̃_{i,j+1} − x̃_{i,j}‖² + ‖x̃_{i+1,j} −
      x̃_{i,j}‖²)^{η/2} with ‖·‖ over the colour vector and η = 1 (Mahendran & Vedaldi),
      over the (H−1)×(W−1) pixels that have both neighbours.

    The λ_tv of both papers (5e-4, 1e-4) weigh the sum over pixels ("sum", the default, then
    the mean over the batch); "mean" divides by the number of terms instead.
    """
    if image.dim() != 4:
        raise ValueError(f"total_variation_loss: image must be [B, C, H, W], got {image.shape}")
    if reduction not in ("sum", "mean"):
        raise ValueError(
            f"total_variation_loss: reduction must be 'sum' or 'mean', got {reduction!r}"
        )
    x = image.float()
    down = x[:, :, 1:, :] - x[:, :, :-1, :]  # (B, C, H-1, W)
    right = x[:, :, :, 1:] - x[:, :, :, :-1]  # (B, C, H, W-1)
    if norm == "anisotropic":
        terms = [down.abs().flatten(1), right.abs().flatten(1)]
        per_image = sum(t.sum(1) for t in terms)
        count = sum(t.shape[1] for t in terms)
    elif norm == "isotropic":
        squared = down[:, :, :, :-1].pow(2).sum(1) + right[:, :, :-1, :].pow(2).sum(1)
        values = (squared + TV_SQRT_EPS).pow(eta / 2).flatten(1)  # (B, (H-1)(W-1))
        per_image, count = values.sum(1), values.shape[1]
    else:
        raise ValueError(
            f"total_variation_loss: norm must be 'anisotropic' (Khang Eq. 4) or 'isotropic' "
            f"(Yan Eq. 4), got {norm!r}"
        )
    per_image = per_image / count if reduction == "mean" else per_image
    return per_image.mean()


# ----------------------------------------------------------------------------------------------
# Feature losses (φ = train.features.FeatureNetwork)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G(φ) = φ φᵀ / (C·H·W) of features [B, C, H, W] -> [B, C, C] (Johnson et al.'s
    normalisation), in fp32: bf16 sums over H·W positions lose too many digits."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix: features must be [B, C, H, W], got {tuple(features.shape)}")
    B, C, H, W = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        flat = features.float().reshape(B, C, H * W)
        return flat @ flat.transpose(1, 2) / (C * H * W)  # (B, C, C)


def perceptual_loss(
    output_features: Features,
    target_features: Features,
    layers: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Σ_l w_l E[‖φ_l(output) − φ_l(target)‖₁] (mean over elements per layer): Cao et al.
    Eq. 3 (five ReLU layers, w_l = 1, §IV-B) and Cui et al. Eq. 10 (relu5_2 only)."""
    return _layer_sum(
        "perceptual_loss",
        output_features,
        target_features,
        layers,
        weights,
        lambda a, b: (a - b).abs().mean(),
    )


def style_loss(
    output_features: Features,
    target_features: Features,
    layers: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Σ_l w_l E[‖G(φ_l(output)) − G(φ_l(target))‖₁] with G the Gram matrix: Cao et al. Eq. 4,
    Cui et al. Eq. 11 (where the target is the exemplar y_e)."""
    return _layer_sum(
        "style_loss",
        output_features,
        target_features,
        layers,
        weights,
        lambda a, b: (gram_matrix(a) - gram_matrix(b)).abs().mean(),
    )


def feature_matching_loss(
    output_features: Features,
    target_features: Features,
    layers: Sequence[str] | None = None,
) -> torch.Tensor:
    """Khang et al. Eq. 3: Σ_layer (1/N_layer) ‖φ(y) − φ(G(x))‖²₂ on VGG-16 features, i.e. the
    mean squared error per layer, summed (the paper calls it feature matching, but compares a
    pretrained network's features, not the discriminator's; the text's "L2" is squared)."""
    return _layer_sum(
        "feature_matching_loss",
        output_features,
        target_features,
        layers,
        None,
        lambda a, b: (a - b).pow(2).mean(),
    )


def content_loss(
    output_features: Features, target_features: Features, layer: str | None = None
) -> torch.Tensor:
    """Ci et al. Eq. 4: L_cont = (1/chw) ‖F₂(G(X, H, F₁(X))) − F₂(Y)‖²₂ on one feature map
    (VGG-16's 4th conv after ReLU, relu2_2; with the tagger, its preset "content" layer)."""
    layers = None if layer is None else [layer]
    if layers is None and len(output_features) != 1:
        raise ValueError(f"content_loss: name the layer; features hold {sorted(output_features)}")
    return feature_matching_loss(output_features, target_features, layers)


def contextual_loss(
    output_features: Features,
    target_features: Features,
    layers: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    bandwidth: float = CONTEXTUAL_BANDWIDTH,
    max_positions: int | None = 64 * 64,
) -> torch.Tensor:
    """Cui et al. Eq. 12, the contextual loss of Mechrez et al. (2018), summed over layers:

        Σ_l w_l [−log( (1/n_l) Σ_i max_j A^l_ij )],  A_ij = softmax_j((1 − d̃_ij) / h),
        d̃_ij = d_ij / (min_k d_ik + ε),  d_ij = 1 − cos(x_i − μ_y, y_j − μ_y)

    with x_i the output's and y_j the target's (exemplar's) feature vectors, μ_y the target's
    mean feature (per image), h = 0.5, ε = 1e-5. It compares feature statistics, not places:
    it is ≈ 0 for identical features and for any spatial permutation of them.

    Args:
        max_positions: a layer with more positions is average-pooled (both images alike) until
            H·W fits, bounding the [H·W, H·W] affinity (relu2_2 at 256 px would be 16k × 16k);
            None keeps full resolution.
    """
    if bandwidth <= 0:
        raise ValueError(f"contextual_loss: bandwidth must be > 0, got {bandwidth}")

    def layer_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = _pool_to_fit(x, max_positions), _pool_to_fit(y, max_positions)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, y = x.float().flatten(2), y.float().flatten(2)  # (B, C, N), (B, C, M)
            mean = y.mean(dim=2, keepdim=True)  # (B, C, 1)
            x = F.normalize(x - mean, dim=1)
            y = F.normalize(y - mean, dim=1)
            distance = 1 - x.transpose(1, 2) @ y  # (B, N, M)
            relative = distance / (distance.min(dim=2, keepdim=True).values + CONTEXTUAL_EPS)
            affinity = torch.softmax((1 - relative) / bandwidth, dim=2)  # A_ij, (B, N, M)
            similarity = affinity.max(dim=2).values.mean(dim=1)  # (B,)
            return -torch.log(similarity).mean()

    return _layer_sum(
        "contextual_loss", output_features, target_features, layers, weights, layer_loss
    )


# ----------------------------------------------------------------------------------------------
# Losses on the models' own intermediate outputs


def alignment_loss(
    sketch_codes: torch.Tensor | Sequence[torch.Tensor],
    exemplar_codes: torch.Tensor | Sequence[torch.Tensor],
) -> torch.Tensor:
    """Cui et al. Eq. 14: L_align = Σ_pairs ‖F_{s→c}(s) − F_{e→c}(e)‖₁ (mean over elements) over
    the pseudo pairs {x_s, x_e} and {y_s, y_e}; pass one tensor per side or one per pair
    (`CSFTOutput.sketch_domain`, `CSFTGenerator.embed_exemplar`)."""
    sketch_codes = [sketch_codes] if torch.is_tensor(sketch_codes) else list(sketch_codes)
    exemplar_codes = [exemplar_codes] if torch.is_tensor(exemplar_codes) else list(exemplar_codes)
    if not sketch_codes or len(sketch_codes) != len(exemplar_codes):
        raise ValueError(
            f"alignment_loss: need as many exemplar codes as sketch codes (>= 1), got "
            f"{len(sketch_codes)} and {len(exemplar_codes)}"
        )
    return sum(l1_loss(s, e) for s, e in zip(sketch_codes, exemplar_codes, strict=True))


def hybrid_l1_loss(
    image_target: torch.Tensor,
    image_shifted: torch.Tensor,
    latent_target: torch.Tensor,
    latent_shifted: torch.Tensor,
) -> torch.Tensor:
    """Yan et al. Eq. 12: L_hybrid = E[‖G(x, φ(r_t)) − G(x, δ_b)‖₁] (pixel level)
    + E[‖ψ(x, φ(r_t)) − ψ(x, δ_b)‖₁] (feature level, the receiving block's output), with
    δ_b of Eq. 10 (`TagsGenerator.generate` returns both the image and ψ)."""
    return l1_loss(image_shifted, image_target) + l1_loss(latent_shifted, latent_target)


def inversion_loss(
    codes_target: torch.Tensor,
    codes_anchor: torch.Tensor,
    mapped_target: torch.Tensor,
    mapped_anchor: torch.Tensor,
) -> torch.Tensor:
    """Yan et al. Eq. 13: L_inv = E[‖(GAP(φ(r_t)) − GAP(φ(r_a))) − (φ_map(cls_t) − φ_map(cls_a))‖₁]
    with codes φ(r) [B, Cr, h, w] and mapped tag values φ_map(cls) [B, Cr]
    (`TagMapper.map_tags`)."""
    if codes_target.dim() != 4 or codes_anchor.shape != codes_target.shape:
        raise ValueError(
            f"inversion_loss: codes must be two [B, Cr, h, w] of one shape, got "
            f"{tuple(codes_target.shape)} and {tuple(codes_anchor.shape)}"
        )
    expected = codes_target.shape[:2]
    if mapped_target.shape != expected or mapped_anchor.shape != expected:
        raise ValueError(
            f"inversion_loss: mapped tags must be {list(expected)}, got "
            f"{tuple(mapped_target.shape)} and {tuple(mapped_anchor.shape)}"
        )
    code_shift = codes_target.float().mean(dim=(2, 3)) - codes_anchor.float().mean(dim=(2, 3))
    return l1_loss(mapped_target.float() - mapped_anchor.float(), code_shift)


# ----------------------------------------------------------------------------------------------
# Adversarial losses (raw scores; a list = one map per discriminator scale)


def lsgan_d_loss(real_scores: Scores, fake_scores: Scores) -> torch.Tensor:
    """Least-squares GAN discriminator loss (Mao et al., a = 0, b = 1), Cao et al.'s L_adv
    (Eq. 5): E[(D(y, x) − 1)²] + E[D(G(x), x)²]. Eq. 5 writes the two targets the other way
    round; this is the standard form, with the generator's target below."""
    return _mean_over_scales(
        real_scores, fake_scores, lambda r, f: (r - 1).pow(2).mean() + f.pow(2).mean()
    )


def lsgan_g_loss(fake_scores: Scores) -> torch.Tensor:
    """Least-squares GAN generator loss (Mao et al., c = 1), Cao et al. Eq. 5:
    E[(D(G(x), x) − 1)²]."""
    return _mean_over_scales(fake_scores, None, lambda f, _: (f - 1).pow(2).mean())


def bce_d_loss(real_logits: Scores, fake_logits: Scores) -> torch.Tensor:
    """Binary cross-entropy PatchGAN discriminator loss on logits, averaged over patches
    (Khang et al. §3.2): −E[log σ(D(y))] − E[log(1 − σ(D(G(x))))], the cGAN objective of
    Yan et al. Eq. 2 and Cui et al. Eq. 15 (per discriminator)."""
    return _mean_over_scales(
        real_logits,
        fake_logits,
        lambda r, f: (
            F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
            + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
        ),
    )


def bce_g_loss(fake_logits: Scores) -> torch.Tensor:
    """Khang et al. Eq. 5: L_adv = −E_{i,j,c}[log σ(D(G(x)))] over patches (non-saturating)."""
    return _mean_over_scales(
        fake_logits,
        None,
        lambda f, _: F.binary_cross_entropy_with_logits(f, torch.ones_like(f)),
    )


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Ci et al. Eq. 6: L_w = E[D(G(X, H, F₁(X)), F₁(X))] − E[D(Y, F₁(X))]."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Ci et al. Eq. 3: L_adv = −E[D(G(X, H, F₁(X)), F₁(X))]."""
    return -fake_scores.float().mean()


def drift_penalty(real_scores: torch.Tensor, weight: float = DRIFT_WEIGHT) -> torch.Tensor:
    """The second term of Ci et al. Eq. 7 (Karras et al.): ε_drift E[D(Y, F₁(X))²], which keeps
    the critic's output near zero; ε_drift = 1e-3."""
    return weight * real_scores.float().pow(2).mean()


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor | None = None,
    weight: float = GP_WEIGHT,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The first term of Ci et al. Eq. 7 (Gulrajani et al.): λ₂ E[(‖∇_Ŷ D(Ŷ, F₁(X))‖₂ − 1)²]
    at Ŷ = ε G(·) + (1 − ε) Y, ε ~ U[0, 1] per sample (Eq. 8), λ₂ = 10.

    Computed in fp32 with autocast off, whatever the caller runs under: the gradient of a
    bf16/fp16 critic is too coarse for a penalty on its norm, and fp16 autograd.grad bypasses
    the GradScaler. create_graph=True, so backward reaches the critic's weights (double
    backward). `critic(image)` or `critic(image, condition)`; the condition is detached
    (Eq. 7 differentiates w.r.t. Ŷ only). Pass a critic that does not re-enter autocast:
    a model returned by `accelerator.prepare` has a forward that does (see train/methods/
    hints.py, which calls the plain module's own forward).
    """
    if real.shape != fake.shape or real.dim() < 2:
        raise ValueError(
            f"gradient_penalty: real and fake must have one shape [B, ...], got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    with torch.autocast(device_type=real.device.type, enabled=False):
        real32, fake32 = real.detach().float(), fake.detach().float()
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        epsilon = torch.rand(shape, device=real.device, generator=generator)
        mixed = (epsilon * fake32 + (1 - epsilon) * real32).requires_grad_(True)  # Ŷ, Eq. 8
        args = (mixed,) if condition is None else (mixed, condition.detach().float())
        scores = critic(*args).float()
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norm = grad.flatten(1).norm(2, dim=1)  # (B,)
        return weight * (norm - 1).pow(2).mean()


# ----------------------------------------------------------------------------------------------
# Helpers


def _check_same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def _layer_sum(
    name: str,
    output_features: Features,
    target_features: Features,
    layers: Sequence[str] | None,
    weights: Sequence[float] | None,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Σ_l w_l distance(φ_l(output), φ_l(target)) over `layers` (default: the output's keys)."""
    layers = list(output_features) if layers is None else list(layers)
    if not layers:
        raise ValueError(f"{name}: no feature layers given")
    weights = [1.0] * len(layers) if weights is None else list(weights)
    if len(weights) != len(layers):
        raise ValueError(f"{name}: {len(weights)} weights for {len(layers)} layers {layers}")
    total = None
    for layer, w in zip(layers, weights, strict=True):
        if layer not in output_features or layer not in target_features:
            raise ValueError(
                f"{name}: layer {layer!r} missing; output has {sorted(output_features)}, "
                f"target has {sorted(target_features)}"
            )
        a, b = output_features[layer], target_features[layer]
        _check_same_shape(f"{name}[{layer}]", a, b)
        term = w * distance(a.float(), b.float())
        total = term if total is None else total + term
    return total


def _pool_to_fit(x: torch.Tensor, max_positions: int | None) -> torch.Tensor:
    """Average-pool x [B, C, H, W] by 2 until H·W <= max_positions (None: unchanged)."""
    if max_positions is not None and max_positions < 1:
        raise ValueError(f"max_positions must be >= 1 or None, got {max_positions}")
    while max_positions is not None and x.shape[-2] * x.shape[-1] > max_positions:
        x = F.avg_pool2d(x, 2, ceil_mode=True)
    return x


def _mean_over_scales(
    first: Scores,
    second: Scores | None,
    loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
) -> torch.Tensor:
    """loss(first_k, second_k) in fp32, averaged over the discriminator's scales k."""
    firsts = [first] if torch.is_tensor(first) else list(first)
    seconds = (
        [None] * len(firsts)
        if second is None
        else ([second] if torch.is_tensor(second) else list(second))
    )
    if not firsts or len(firsts) != len(seconds):
        raise ValueError(
            f"adversarial loss: need as many fake as real score maps (>= 1), got "
            f"{len(firsts)} and {len(seconds)}"
        )
    with torch.autocast(device_type=firsts[0].device.type, enabled=False):
        terms = [
            loss(a.float(), None if b is None else b.float())
            for a, b in zip(firsts, seconds, strict=True)
        ]
    return torch.stack(terms).mean()
