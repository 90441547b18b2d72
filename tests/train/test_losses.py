"""The training losses against hand-computed answers, plus the WGAN-GP penalty under autocast."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train.losses import (
    alignment_loss,
    bce_d_loss,
    bce_g_loss,
    content_loss,
    contextual_loss,
    drift_penalty,
    feature_matching_loss,
    gradient_penalty,
    gram_matrix,
    hybrid_l1_loss,
    inversion_loss,
    l1_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    perceptual_loss,
    pseudo_pair_loss,
    style_loss,
    total_variation_loss,
    wgan_critic_loss,
    wgan_g_loss,
)


def _features(*shapes: tuple[int, ...], scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {f"layer{i}": torch.randn(shape) * scale for i, shape in enumerate(shapes)}


# ----------------------------------------------------------------------------------------------
# Pixel losses


def test_l1_loss_is_zero_for_identical_images_and_the_mean_absolute_error_otherwise():
    target = torch.rand(2, 3, 4, 4) * 2 - 1
    assert l1_loss(target, target.clone()).item() == 0.0
    output = target.clone()
    output[0, 0, 0, 0] += 0.96  # one of 96 elements off by 0.96
    torch.testing.assert_close(l1_loss(output, target), torch.tensor(0.01))
    torch.testing.assert_close(pseudo_pair_loss(output, target), torch.tensor(0.01))


def test_l1_loss_of_bf16_images_is_fp32():
    a = torch.zeros(1, 3, 2, 2, dtype=torch.bfloat16)
    loss = l1_loss(a, a + 0.5)
    assert loss.dtype == torch.float32
    assert loss.item() == 0.5


def test_l1_loss_rejects_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        l1_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def _ramp(C: int, H: int, W: int, a: float, b: float) -> torch.Tensor:
    """x[c, i, j] = a·i + b·j: every vertical step is a, every horizontal one b."""
    i = torch.arange(H, dtype=torch.float32)[:, None]
    j = torch.arange(W, dtype=torch.float32)[None, :]
    return (a * i + b * j).expand(1, C, H, W).repeat(2, 1, 1, 1)


def test_total_variation_of_a_ramp_anisotropic_khang():
    C, H, W, a, b = 3, 5, 7, 0.1, -0.2
    image = _ramp(C, H, W, a, b)
    expected = C * ((H - 1) * W * abs(a) + H * (W - 1) * abs(b))
    torch.testing.assert_close(total_variation_loss(image), torch.tensor(expected))
    count = C * ((H - 1) * W + H * (W - 1))
    torch.testing.assert_close(
        total_variation_loss(image, reduction="mean"), torch.tensor(expected / count)
    )


def test_total_variation_of_a_ramp_isotropic_yan():
    C, H, W, a, b = 3, 5, 7, 0.1, -0.2
    image = _ramp(C, H, W, a, b)
    expected = (H - 1) * (W - 1) * math.sqrt(C * (a * a + b * b))  # η = 1
    torch.testing.assert_close(
        total_variation_loss(image, norm="isotropic"), torch.tensor(expected)
    )
    expected_eta2 = (H - 1) * (W - 1) * C * (a * a + b * b)
    torch.testing.assert_close(
        total_variation_loss(image, norm="isotropic", eta=2.0), torch.tensor(expected_eta2)
    )


def test_total_variation_of_a_flat_image_is_zero_with_finite_gradients():
    image = torch.full((1, 3, 4, 4), 0.3, requires_grad=True)
    assert total_variation_loss(image).item() == 0.0
    isotropic = total_variation_loss(image, norm="isotropic")
    assert isotropic.item() < 1e-3
    isotropic.backward()
    assert torch.isfinite(image.grad).all()


def test_total_variation_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm must be"):
        total_variation_loss(torch.zeros(1, 3, 4, 4), norm="l2")


# ----------------------------------------------------------------------------------------------
# Feature losses


def test_gram_matrix_of_a_2x2_example_by_hand():
    # C = 2 channels over H·W = 2 positions: rows [1, 2] and [3, 4]
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(features), expected)


def test_gram_matrix_is_fp32_under_bf16_autocast():
    features = torch.randn(2, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features)
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(features))


def test_perceptual_loss_sums_weighted_layer_l1():
    output = {"a": torch.ones(1, 2, 2, 2), "b": torch.full((1, 4, 1, 1), 3.0)}
    target = {"a": torch.zeros(1, 2, 2, 2), "b": torch.ones(1, 4, 1, 1)}
    torch.testing.assert_close(perceptual_loss(output, target), torch.tensor(1.0 + 2.0))
    torch.testing.assert_close(
        perceptual_loss(output, target, weights=[2.0, 0.5]), torch.tensor(2.0 + 1.0)
    )
    torch.testing.assert_close(perceptual_loss(output, target, layers=["b"]), torch.tensor(2.0))
    assert perceptual_loss(output, output).item() == 0.0


def test_perceptual_loss_names_a_missing_layer():
    features = _features((1, 2, 2, 2))
    with pytest.raises(ValueError, match="'relu9_9' missing"):
        perceptual_loss(features, features, layers=["relu9_9"])
    with pytest.raises(ValueError, match="2 weights for 1 layers"):
        perceptual_loss(features, features, weights=[1.0, 1.0])


def test_style_loss_is_the_l1_between_gram_matrices():
    output = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)}
    target = {"a": torch.zeros(1, 2, 1, 2)}
    expected = (5 + 11 + 11 + 25) / 4 / 4  # mean |G| over the 2×2 entries
    torch.testing.assert_close(style_loss(output, target), torch.tensor(expected))
    features = _features((2, 8, 4, 4), (2, 16, 2, 2))
    assert style_loss(features, features).item() == 0.0


def test_feature_matching_and_content_losses_are_mean_squared_errors_per_layer():
    output = {"a": torch.full((1, 2, 3, 3), 2.0), "b": torch.ones(1, 1, 2, 2)}
    target = {"a": torch.zeros(1, 2, 3, 3), "b": torch.zeros(1, 1, 2, 2)}
    torch.testing.assert_close(feature_matching_loss(output, target), torch.tensor(4.0 + 1.0))
    torch.testing.assert_close(content_loss(output, target, layer="a"), torch.tensor(4.0))
    with pytest.raises(ValueError, match="name the layer"):
        content_loss(output, target)


def test_feature_losses_send_gradients_to_the_output_features_only():
    output = {"a": torch.randn(2, 8, 4, 4, requires_grad=True)}
    target = {"a": torch.randn(2, 8, 4, 4)}
    loss = perceptual_loss(output, target) + style_loss(output, target)
    loss = loss + contextual_loss(output, target)
    loss.backward()
    assert output["a"].grad.abs().sum() > 0


def test_contextual_loss_is_near_zero_for_identical_and_spatially_permuted_features():
    torch.manual_seed(0)
    features = {"a": torch.randn(2, 16, 6, 6), "b": torch.randn(2, 32, 3, 3)}
    identical = contextual_loss(features, {k: v.clone() for k, v in features.items()})
    assert 0 <= identical.item() < 1e-3
    # Mechrez et al.: CX compares feature statistics, so moving features around changes nothing
    permuted = {}
    for name, x in features.items():
        B, C, H, W = x.shape
        order = torch.randperm(H * W)
        permuted[name] = x.flatten(2)[:, :, order].reshape(B, C, H, W)
    assert contextual_loss(permuted, features).item() < 1e-3


def test_contextual_loss_is_larger_for_unrelated_or_channel_shuffled_features():
    torch.manual_seed(0)
    target = {"a": torch.randn(2, 16, 6, 6)}
    unrelated = {"a": torch.randn(2, 16, 6, 6)}
    shuffled = {"a": target["a"][:, torch.randperm(16)]}
    identical = contextual_loss(target, target).item()
    assert contextual_loss(unrelated, target).item() > identical + 0.5
    assert contextual_loss(shuffled, target).item() > identical + 0.5


def test_contextual_loss_pools_large_maps_to_max_positions():
    torch.manual_seed(0)
    output, target = {"a": torch.randn(1, 4, 8, 8)}, {"a": torch.randn(1, 4, 8, 8)}
    pooled = contextual_loss(output, target, max_positions=16)
    by_hand = contextual_loss(
        {"a": F.avg_pool2d(output["a"], 2)}, {"a": F.avg_pool2d(target["a"], 2)}, max_positions=None
    )
    torch.testing.assert_close(pooled, by_hand)
    with pytest.raises(ValueError, match="bandwidth"):
        contextual_loss(output, target, bandwidth=0.0)


def test_contextual_loss_matches_a_direct_formula_on_a_tiny_case():
    """Eq. 12 with an explicit double loop over i, j (one layer, one image)."""
    torch.manual_seed(0)
    x, y = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    h, eps = 0.5, 1e-5
    xs, ys = x.flatten(2)[0].T, y.flatten(2)[0].T  # (4, 3) rows = positions
    mu = ys.mean(0)
    cos = lambda u, v: float(torch.dot(u, v) / (u.norm() * v.norm()))
    d = [[1 - cos(xs[i] - mu, ys[j] - mu) for j in range(4)] for i in range(4)]
    total = 0.0
    for i in range(4):
        relative = [d[i][j] / (min(d[i]) + eps) for j in range(4)]
        w = [math.exp((1 - r) / h) for r in relative]
        total += max(wj / sum(w) for wj in w)
    expected = -math.log(total / 4)
    loss = contextual_loss({"a": x}, {"a": y})
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Losses on the models' own outputs


def test_alignment_loss_sums_the_l1_of_each_pseudo_pair():
    x_s, x_e = torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3)
    y_s, y_e = torch.zeros(2, 4, 3, 3), torch.full((2, 4, 3, 3), 0.5)
    torch.testing.assert_close(alignment_loss(x_s, x_e), torch.tensor(1.0))
    torch.testing.assert_close(alignment_loss([x_s, y_s], [x_e, y_e]), torch.tensor(1.5))
    with pytest.raises(ValueError, match="as many exemplar codes"):
        alignment_loss([x_s, y_s], [x_e])


def test_hybrid_l1_loss_adds_pixel_and_feature_levels():
    image_t, image_b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.25)
    latent_t, latent_b = torch.ones(1, 8, 2, 2), torch.full((1, 8, 2, 2), 3.0)
    torch.testing.assert_close(
        hybrid_l1_loss(image_t, image_b, latent_t, latent_b), torch.tensor(0.25 + 2.0)
    )


def test_inversion_loss_is_zero_when_the_mapped_shift_equals_the_gap_shift():
    codes_a = torch.rand(2, 4, 3, 3)
    codes_t = codes_a + torch.tensor([0.0, 1.0, 2.0, 3.0])[None, :, None, None]
    mapped_a = torch.randn(2, 4)
    exact = mapped_a + torch.tensor([0.0, 1.0, 2.0, 3.0])
    torch.testing.assert_close(inversion_loss(codes_t, codes_a, exact, mapped_a), torch.tensor(0.0))
    off = exact + torch.tensor([0.4, 0.0, 0.0, 0.0])
    torch.testing.assert_close(inversion_loss(codes_t, codes_a, off, mapped_a), torch.tensor(0.1))
    with pytest.raises(ValueError, match="mapped tags"):
        inversion_loss(codes_t, codes_a, torch.zeros(2, 5), mapped_a)


# ----------------------------------------------------------------------------------------------
# Adversarial losses


def test_lsgan_losses_on_known_scores():
    real, fake = torch.full((2, 1, 3, 3), 0.5), torch.full((2, 1, 3, 3), 0.25)
    torch.testing.assert_close(lsgan_d_loss(real, fake), torch.tensor(0.25 + 0.0625))
    torch.testing.assert_close(lsgan_g_loss(fake), torch.tensor(0.5625))
    assert lsgan_d_loss(torch.ones(4), torch.zeros(4)).item() == 0.0
    assert lsgan_g_loss(torch.ones(4)).item() == 0.0


def test_adversarial_losses_average_over_discriminator_scales():
    real = [torch.ones(1, 1, 4, 4), torch.full((1, 1, 2, 2), 0.5)]
    fake = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    torch.testing.assert_close(lsgan_d_loss(real, fake), torch.tensor((0.0 + 0.25) / 2))
    with pytest.raises(ValueError, match="as many fake as real"):
        lsgan_d_loss(real, fake[:1])


def test_bce_losses_on_known_logits():
    zeros = torch.zeros(2, 1, 30, 30)
    torch.testing.assert_close(bce_d_loss(zeros, zeros), torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(bce_g_loss(zeros), torch.tensor(math.log(2)))
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(bce_d_loss(real, fake), expected)
    torch.testing.assert_close(bce_g_loss(fake), -torch.log(torch.sigmoid(fake)).mean())


def test_wgan_losses_and_drift_on_known_scores():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 0.0])
    torch.testing.assert_close(wgan_critic_loss(real, fake), torch.tensor(-0.5 - 3.0))
    torch.testing.assert_close(wgan_g_loss(fake), torch.tensor(0.5))
    torch.testing.assert_close(drift_penalty(real), torch.tensor(1e-3 * (4 + 16) / 2))


class LinearCritic(nn.Module):
    """D(y, c) = <w, y> + <v, c>: its gradient w.r.t. y is w everywhere."""

    def __init__(self, w: torch.Tensor, conditioned: bool = False):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.v = nn.Parameter(torch.randn_like(w)) if conditioned else None

    def forward(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        score = (y * self.w).flatten(1).sum(1)
        return score if c is None else score + (c * self.v).flatten(1).sum(1)


class ConvCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2))
        self.score = nn.Linear(8, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(y).mean(dim=(2, 3)))


def test_gradient_penalty_is_zero_for_a_unit_lipschitz_linear_critic():
    w = torch.randn(3, 4, 4)
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    unit = LinearCritic(w / w.norm())
    torch.testing.assert_close(gradient_penalty(unit, real, fake), torch.tensor(0.0))
    conditioned = LinearCritic(w / w.norm(), conditioned=True)
    condition = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(
        gradient_penalty(conditioned, real, fake, condition), torch.tensor(0.0)
    )
    double = LinearCritic(2 * w / w.norm())
    torch.testing.assert_close(gradient_penalty(double, real, fake), torch.tensor(10.0 * 1.0))
    assert gradient_penalty(double, real, fake, weight=1.0).item() == pytest.approx(1.0)


def test_gradient_penalty_backpropagates_into_the_critic_weights():
    critic = ConvCritic()
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8, requires_grad=True)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() > 0
    penalty.backward()  # double backward through the create_graph gradient
    # ∇_Ŷ D depends on the weights (not on the last bias): both weights get a gradient
    for weight in (critic.body[0].weight, critic.score.weight):
        assert weight.grad is not None and torch.isfinite(weight.grad).all()
        assert weight.grad.abs().sum() > 0
    assert fake.grad is None  # Ŷ is built from detached images


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gradient_penalty_under_cpu_autocast_is_computed_in_fp32(dtype):
    critic = ConvCritic()
    # images as a generator under autocast hands them over: already rounded to `dtype`
    real, fake = torch.randn(2, 3, 8, 8).to(dtype), torch.randn(2, 3, 8, 8).to(dtype)
    seed = lambda: torch.Generator().manual_seed(1)
    expected = gradient_penalty(critic, real.float(), fake.float(), generator=seed())
    expected.backward()
    grads = {n: p.grad.clone() for n, p in critic.named_parameters() if p.grad is not None}
    critic.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype):
        penalty = gradient_penalty(critic, real, fake, generator=seed())
    assert penalty.dtype == torch.float32
    penalty.backward()
    # fp32 inside: the same value and weight gradients as without autocast, to fp32 rounding
    torch.testing.assert_close(penalty, expected)
    assert grads.keys() == {n for n, p in critic.named_parameters() if p.grad is not None}
    for name, p in critic.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name])


def test_gradient_penalty_rejects_mismatched_images():
    with pytest.raises(ValueError, match="one shape"):
        gradient_penalty(ConvCritic(), torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4))


def test_feature_losses_of_bf16_features_under_autocast_are_fp32():
    output = {"a": torch.randn(2, 8, 4, 4).bfloat16()}
    target = {"a": torch.randn(2, 8, 4, 4).bfloat16()}
    as_fp32 = ({"a": output["a"].float()}, {"a": target["a"].float()})
    for loss in (perceptual_loss, style_loss, feature_matching_loss, contextual_loss):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(output, target)
        assert value.dtype == torch.float32, loss.__name__
        torch.testing.assert_close(value, loss(*as_fp32), msg=loss.__name__)
