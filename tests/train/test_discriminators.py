"""The training discriminators: output shapes, gradients, spectral norm where the papers put it."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from train.discriminators import (
    DISCRIMINATORS,
    PRESETS,
    ColorificDiscriminator,
    HintsCritic,
    MultiscalePatchGAN,
    PatchDiscriminator,
    SGADiscriminator,
    StructuralDiscriminator,
    TagsDiscriminator,
    build_discriminators,
    patch_plan,
)

CLASSES = [
    SGADiscriminator,
    PatchDiscriminator,
    StructuralDiscriminator,
    ColorificDiscriminator,
    TagsDiscriminator,
    HintsCritic,
]
IDS = [cls.__name__ for cls in CLASSES]


def _small(cls: type[nn.Module], **overrides) -> nn.Module:
    return cls(**{**PRESETS["small"][cls.__name__], **overrides})


def _condition(d: nn.Module, batch: int, size: int) -> torch.Tensor:
    """The second input: the condition image, or the tagger's local features for the critic."""
    if isinstance(d, HintsCritic):
        side = size // d.feature_stride
        return torch.randn(batch, d.feature_channels, side, side)
    return torch.rand(batch, d.condition_channels, size, size) * 2 - 1


def _scores(d: nn.Module, image: torch.Tensor, condition: torch.Tensor) -> list[torch.Tensor]:
    out = d(image, condition)
    return out if isinstance(out, list) else [out]


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _has_spectral_norm(conv: nn.Conv2d) -> bool:
    return parametrize.is_parametrized(conv, "weight")


def _patch_side(size: int) -> int:
    """Output side of the 70×70 PatchGAN: three stride-2 4×4 convs, then two that trim 1 px."""
    return size // 8 - 2


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_output_shapes(cls, size):
    d = _small(cls)
    image = torch.rand(2, 3, size, size) * 2 - 1
    scores = _scores(d, image, _condition(d, 2, size))
    if cls is HintsCritic:
        assert [s.shape for s in scores] == [(2, 1)]
    elif issubclass(cls, MultiscalePatchGAN):  # two scales: the input, then pooled by 2
        assert [s.shape for s in scores] == [
            (2, 1, _patch_side(size), _patch_side(size)),
            (2, 1, _patch_side(size // 2), _patch_side(size // 2)),
        ]
    else:
        assert [s.shape for s in scores] == [(2, 1, _patch_side(size), _patch_side(size))]


@pytest.mark.parametrize(
    "cls",
    [
        SGADiscriminator,
        PatchDiscriminator,
        TagsDiscriminator,
        StructuralDiscriminator,
        ColorificDiscriminator,
    ],
)
def test_patchgan_gives_30x30_at_256px(cls):
    d = cls(base_channels=2)
    scores = _scores(d, torch.zeros(1, 3, 256, 256), _condition(d, 1, 256))
    assert scores[0].shape == (1, 1, 30, 30)


def test_patch_discriminator_is_five_spectral_norm_convs():
    """Khang et al. §3.2: 5 convs, all spectrally normalised, LeakyReLU, no normalisation."""
    d = PatchDiscriminator(base_channels=4)
    convs = _convs(d)
    assert len(convs) == 5 and all(_has_spectral_norm(c) for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in d.modules())
    assert d.layers[0][0].in_channels == 1 + 3  # line art ⊕ image


def test_patch_discriminator_without_condition_is_the_literal_d_of_y():
    """Khang et al. Eq. (5)–(6) write D(y); condition_channels = 0 gives exactly that."""
    d = PatchDiscriminator(base_channels=4, condition_channels=0)
    assert d.layers[0][0].in_channels == 3
    assert d(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="needs its sketch"):
        PatchDiscriminator(base_channels=4)(torch.zeros(1, 3, 64, 64))


def test_sga_discriminator_has_sn_and_bn_except_on_the_last_layer():
    """Cao et al. §III-A: SN + BN everywhere but the final layer, which has neither."""
    d = SGADiscriminator(base_channels=4)
    *hidden, last = d.layers
    assert all(_has_spectral_norm(block[0]) for block in hidden)
    assert all(isinstance(block[1], nn.BatchNorm2d) for block in hidden)
    assert len(last) == 1 and isinstance(last[0], nn.Conv2d) and not _has_spectral_norm(last[0])
    assert d.layers[0][0].in_channels == 1 + 3  # sketch ⊕ image


@pytest.mark.parametrize(
    ("cls", "condition_channels"), [(StructuralDiscriminator, 1), (ColorificDiscriminator, 3)]
)
def test_cui_discriminators_are_multiscale_sn_instance_norm_patchgans(cls, condition_channels):
    d = cls(base_channels=4)
    assert d.condition_channels == condition_channels and len(d.scales) == 2
    for scale in d.scales:
        first, *hidden, last = scale
        assert first[0].in_channels == condition_channels + 3
        assert not _has_spectral_norm(first[0]) and not _has_spectral_norm(last[0])
        assert all(_has_spectral_norm(b[0]) and isinstance(b[1], nn.InstanceNorm2d) for b in hidden)


def test_tags_discriminator_is_pix2pix_with_batch_norm_and_no_spectral_norm():
    d = TagsDiscriminator(base_channels=4)
    assert not any(_has_spectral_norm(c) for c in _convs(d))
    first, *hidden, last = d.layers
    assert len(first) == 2 and all(isinstance(b[1], nn.BatchNorm2d) for b in hidden)
    assert len(last) == 1 and first[0].in_channels == 1 + 3  # sketch ⊕ image


def test_hints_critic_has_no_normalisation_spectral_norm_or_sigmoid():
    d = _small(HintsCritic)
    assert not any(_has_spectral_norm(c) for c in _convs(d))
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms + (nn.Sigmoid,)) for m in d.modules())
    assert isinstance(list(d.children())[-1], nn.Linear)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_gradients_reach_every_parameter(cls):
    d = _small(cls).train()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    sum(s.square().mean() for s in _scores(d, image, _condition(d, 2, 64))).backward()
    for name, param in d.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_hints_critic_gradient_penalty_backpropagates_to_every_parameter():
    """WGAN-GP (Ci et al. Eq. 7) differentiates ‖∇_Ŷ D(Ŷ, F1(X))‖ w.r.t. the critic."""
    d = _small(HintsCritic)
    image = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(image, _condition(d, 2, 64)).sum(), image, create_graph=True)
    ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    for name, param in d.named_parameters():
        if name == "score.bias":  # a constant shift has no input gradient, so no penalty
            assert param.grad is None
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_runs_in_train_and_eval_mode_and_eval_is_deterministic(cls):
    d = _small(cls)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    condition = _condition(d, 2, 64)
    d.train()
    train_scores = _scores(d, image, condition)
    d.eval()
    with torch.no_grad():
        first, second = _scores(d, image, condition), _scores(d, image, condition)
    for a, b, t in zip(first, second, train_scores, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert a.shape == t.shape and torch.isfinite(a).all()


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_wrong_shapes_raise_clear_errors(cls):
    d = _small(cls)
    image = torch.zeros(1, 3, 64, 64)
    condition = _condition(d, 1, 64)
    with pytest.raises(ValueError, match=r"image must be \[B, 3, H, W\]"):
        d(torch.zeros(1, 4, 64, 64), condition)
    name = "local_features" if cls is HintsCritic else d.condition_name
    with pytest.raises(ValueError, match=name):
        d(image, condition[:, :1, :-1])


def test_hints_critic_rejects_sides_off_its_feature_stride():
    d = _small(HintsCritic)
    with pytest.raises(ValueError, match="multiples of 16"):
        d(torch.zeros(1, 3, 72, 72), torch.zeros(1, 96, 4, 4))
    with pytest.raises(ValueError, match="power of two"):
        HintsCritic(feature_stride=12)


def test_registry_builds_every_method_with_overrides():
    assert set(DISCRIMINATORS) == {"sga", "resunet", "csft", "tags", "hints"}
    parts = build_discriminators("csft", size="small")
    assert set(parts) == {"structural", "colorific"}
    assert isinstance(parts["structural"], StructuralDiscriminator)
    critic = build_discriminators("hints", feature_channels=40, feature_stride=8)["critic"]
    assert (critic.feature_channels, critic.feature_stride) == (40, 8)
    for method, roles in DISCRIMINATORS.items():
        for cls in roles.values():  # every preset is complete for both sizes
            assert cls.__name__ in PRESETS["small"] and cls.__name__ in PRESETS["paper"], method
    with pytest.raises(ValueError, match="unknown method"):
        build_discriminators("pix2pix")
    with pytest.raises(ValueError, match="unknown size"):
        build_discriminators("sga", size="huge")


def test_patch_plan_is_the_70x70_patchgan():
    assert patch_plan(4, 64) == [
        (4, 64, 2),
        (64, 128, 2),
        (128, 256, 2),
        (256, 512, 1),
        (512, 1, 1),
    ]
