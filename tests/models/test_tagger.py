"""Tagger: named features, the frozen-encoder behaviour, weights round trip and budget.

The tagger calls no `kernels` op (convolutions, BN and a linear head only), so there is no
Triton-against-eager test here.
"""

import pytest
import torch
import torch.nn.functional as F

from colorize.models.tagger import PRESETS, Tagger

# ResNet-34's topology (stem 7×7 + max-pool, 3-4-6-3 blocks) at reduced widths
PAPER_STRUCTURE = {**PRESETS["paper"], "stage_channels": (8, 8, 16, 16)}


def _small(**kwargs) -> Tagger:
    return Tagger(num_tags=12, **{**PRESETS["small"], **kwargs})


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", [PRESETS["small"], PAPER_STRUCTURE], ids=["small", "paper"])
def test_features_have_the_declared_shapes(config, size):
    tagger = Tagger(num_tags=12, **config)
    feats = tagger.features(torch.randn(2, 3, size, size))
    assert tuple(feats) == tagger.layer_names
    for name, value in feats.items():
        channels = tagger.feature_channels[name]
        if name in tagger.feature_strides:
            s = tagger.feature_strides[name]
            assert value.shape == (2, channels, size // s, size // s), name
        else:
            assert value.shape == (2, channels), name
    assert tagger(torch.randn(2, 3, size, size)).shape == (2, 12)
    assert (feats[f"stage{len(config['stage_blocks'])}"] >= 0).all()  # ReLU: codes φ(r) >= 0


def test_paper_structure_is_resnet34():
    tagger = Tagger(num_tags=12, **PAPER_STRUCTURE)
    assert [len(stage) for stage in tagger.stages] == [3, 4, 6, 3]
    assert tagger.feature_strides == {"stem": 2, "stage1": 4, "stage2": 8, "stage3": 16,
                                      "stage4": 32}  # fmt: skip
    assert tagger.stride == 32 and tagger.local_features_layer == "stage3"


def test_requested_layers_match_the_full_pass_and_grey_is_rgb_replicated():
    tagger = _small().eval()
    image = torch.randn(2, 3, 32, 32)
    full = tagger.features(image)
    part = tagger.features(image, ["stage2", "pooled"])
    assert list(part) == ["stage2", "pooled"]
    torch.testing.assert_close(part["stage2"], full["stage2"])
    torch.testing.assert_close(part["pooled"], full["stage4"].mean(dim=(2, 3)))
    torch.testing.assert_close(tagger.local_features(image), full["stage3"])
    torch.testing.assert_close(tagger.probabilities(image), torch.sigmoid(full["logits"]))
    grey = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(tagger(grey), tagger(grey.repeat(1, 3, 1, 1)))


def test_only_the_deepest_requested_layer_bounds_the_input_size():
    tagger = _small()
    assert tagger.local_features(torch.randn(1, 3, 24, 24)).shape == (1, 96, 3, 3)  # stride 8
    with pytest.raises(ValueError, match="multiples of 16"):
        tagger(torch.randn(1, 3, 24, 24))


@pytest.mark.parametrize(
    ("image", "layers", "message"),
    [
        pytest.param(torch.zeros(1, 2, 32, 32), None, r"must be \[B, 3, H, W\]", id="channels"),
        pytest.param(torch.zeros(3, 32, 32), None, r"must be \[B, 3, H, W\]", id="rank"),
        pytest.param(torch.zeros(1, 3, 40, 32), None, "multiples of 16", id="size"),
        pytest.param(torch.zeros(1, 3, 32, 32), ["stage9"], "unknown layers", id="layer"),
    ],
)
def test_bad_input_names_the_problem(image, layers, message):
    with pytest.raises(ValueError, match=message):
        _small().features(image, layers)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="same length"):
        Tagger(stage_channels=(8, 16), stage_blocks=(1,))
    with pytest.raises(ValueError, match="odd"):
        Tagger(stem_kernel_size=4)


def test_backward_reaches_every_parameter():
    tagger = _small().train()
    loss = F.binary_cross_entropy_with_logits(tagger(torch.randn(2, 3, 32, 32)),
                                              torch.rand(2, 12))  # fmt: skip
    loss.backward()
    for name, p in tagger.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_frozen_tagger_stays_in_eval_and_passes_gradients_to_its_input():
    tagger = _small().freeze()
    tagger.train()
    assert not tagger.training and not any(m.training for m in tagger.modules())
    assert not any(p.requires_grad for p in tagger.parameters())
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    tagger.features(image, ["stage2"])["stage2"].square().mean().backward()  # a perceptual loss
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in tagger.parameters())


def test_unfrozen_tagger_follows_train_and_eval():
    tagger = _small()
    assert tagger.train().training and not tagger.eval().training


def test_eval_is_deterministic():
    tagger = _small().eval()
    image = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tagger(image), tagger(image), rtol=0, atol=0)


def test_save_and_load_round_trip(tmp_path):
    tagger = _small()
    tagger.train()(torch.randn(4, 3, 32, 32))  # move the BN running statistics off their init
    tagger.eval()
    tagger.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]  # fmt: skip
    loaded = Tagger.from_pretrained(tmp_path)
    image = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(image), tagger(image), rtol=0, atol=0)
    assert loaded.architecture() == tagger.architecture()


def test_load_weights_from_copies_and_checks_the_architecture():
    source, target = _small().eval(), _small().eval()
    image = torch.randn(1, 3, 32, 32)
    assert not torch.equal(source(image), target(image))
    target.load_weights_from(source)
    torch.testing.assert_close(target(image), source(image), rtol=0, atol=0)
    with pytest.raises(ValueError, match="architectures differ"):
        target.load_weights_from(_small(stage_blocks=(1, 1, 1, 1)))


def test_small_preset_fits_its_budget():
    tagger = Tagger(num_tags=64, **PRESETS["small"])
    params = sum(p.numel() for p in tagger.parameters())
    assert params <= 1_000_000 and params * 2 <= 2 * 2**20
