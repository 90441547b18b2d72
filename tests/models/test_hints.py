"""HintsGenerator (Ci et al.): shapes, the frozen embedded tagger, gradients, round trip.

The generator calls no `kernels` op (convolutions only; the tagger neither), so there is no
Triton-against-eager test here.
"""

import pytest
import torch
import torch.nn.functional as F

from colorize.models.hints import PRESETS, HintsGenerator, ResNeXtBlock, stage_dilations
from colorize.models.tagger import PRESETS as TAGGER_PRESETS
from colorize.models.tagger import Tagger
from tests.models.conftest import pre_tanh_scale_at_init

TINY_TAGGER = {**TAGGER_PRESETS["small"], "num_tags": 5, "stage_channels": (8, 8, 16, 16)}
# the paper's topology (B = 20, 10, 10, 5, dilations, ResNet-34 tagger) at reduced widths
PAPER_STRUCTURE = {
    **PRESETS["paper"],
    "ngf": 8,
    "cardinality": (4, 4, 2, 2),
    "tagger_config": {**TAGGER_PRESETS["paper"], "num_tags": 5, "stage_channels": (8, 8, 16, 16)},
}


def _tiny(**kwargs) -> HintsGenerator:
    config = {**PRESETS["small"], "ngf": 8, "cardinality": (4, 4, 2, 2),
              "tagger_config": TINY_TAGGER, **kwargs}  # fmt: skip
    return HintsGenerator(**config)


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    sketch = torch.rand(batch, 1, size, size) * 2 - 1
    hint = torch.randn(batch, 4, size // 4, size // 4)
    return sketch, hint


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", ["small", "paper"])
def test_forward_shapes(config, size):
    model = HintsGenerator(**PRESETS["small"]) if config == "small" else HintsGenerator(
        **PAPER_STRUCTURE)  # fmt: skip
    sketch, hint = _inputs(1, size)
    with torch.no_grad():
        image = model(sketch, hint=hint).image
    assert image.shape == (1, 3, size, size)
    assert image.abs().max() <= 1
    assert model.local_features(sketch).shape[-2:] == (size // 16, size // 16)


def test_paper_structure_follows_the_paper():
    model = HintsGenerator(**PAPER_STRUCTURE)
    assert [len(stage.blocks) for stage in model.decoder] == [20, 10, 10, 5]
    dilations = [[block.conv.dilation[0] for block in stage.blocks] for stage in model.decoder]
    assert dilations[0] == [1] * 20  # B_1 is not dilated
    assert dilations[3] == [1, 2, 4, 2, 1]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in model.modules() if m not in set(model.tagger.modules()))  # fmt: skip
    assert model.tagger_pool == 1  # ResNet-34's stage3 is already at 1/16


def test_stage_dilations_spread_the_cycle():
    assert stage_dilations(5, (1, 2, 4, 2, 1)) == [1, 2, 4, 2, 1]
    assert stage_dilations(10, (1, 2, 4, 2, 1)) == [1, 1, 2, 2, 4, 4, 2, 2, 1, 1]
    assert stage_dilations(3, (1, 2, 4, 2, 1)) == [1, 4, 1]
    assert stage_dilations(4, (1, 2, 4, 2, 1)) == [1, 2, 2, 1]
    assert stage_dilations(4, (1,)) == [1, 1, 1, 1]


def test_local_features_are_the_taggers_mid_level_map_at_one_sixteenth():
    model = _tiny().eval()
    sketch, _ = _inputs(2, 64)
    assert model.tagger_pool == 2  # the small tagger's stage3 has stride 8, like i2v's conv4_2
    expected = model.tagger.local_features(F.avg_pool2d(sketch, 2))
    torch.testing.assert_close(model.local_features(sketch), expected)
    assert expected.shape == (2, 16, 4, 4)


def test_backward_reaches_every_trainable_parameter_and_not_the_tagger():
    model = _tiny().train()
    assert not model.tagger.training
    sketch, hint = _inputs(2, 32)
    model(sketch, hint=hint).image.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("tagger."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_the_hint_changes_the_output():
    model = _tiny().eval()
    sketch, hint = _inputs(1, 32)
    with torch.no_grad():
        assert not torch.allclose(model(sketch, hint=hint).image,
                                  model(sketch, hint=torch.zeros_like(hint)).image)  # fmt: skip


def test_eval_is_deterministic():
    model = _tiny().eval()
    sketch, hint = _inputs(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(sketch, hint=hint).image,
                                   model(sketch, hint=hint).image, rtol=0, atol=0)  # fmt: skip


def test_save_and_load_round_trip_keeps_the_tagger(tmp_path):
    tagger = Tagger(**TINY_TAGGER)
    tagger.train()(torch.randn(4, 3, 32, 32))  # non-default BN statistics
    model = HintsGenerator.with_tagger(tagger, **{**PRESETS["small"], "ngf": 8,
                                                  "cardinality": (4, 4, 2, 2)})  # fmt: skip
    model.eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]  # fmt: skip
    loaded = HintsGenerator.from_pretrained(tmp_path)
    sketch, hint = _inputs(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(sketch, hint=hint).image,
                                   model(sketch, hint=hint).image, rtol=0, atol=0)  # fmt: skip
    assert not any(p.requires_grad for p in loaded.tagger.parameters())
    loaded.train()
    assert not loaded.tagger.training


def test_load_tagger_copies_weights_and_checks_the_config():
    model = _tiny().eval()
    tagger = Tagger(**TINY_TAGGER).eval()
    sketch, _ = _inputs(1, 32)
    model.load_tagger(tagger)
    torch.testing.assert_close(model.tagger.state_dict(), tagger.state_dict())
    torch.testing.assert_close(model.local_features(sketch),
                               tagger.local_features(F.avg_pool2d(sketch, 2)))  # fmt: skip
    assert not any(p.requires_grad for p in model.tagger.parameters())
    with pytest.raises(ValueError, match="architectures differ"):
        model.load_tagger(Tagger(**{**TINY_TAGGER, "num_tags": 6}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"reference": torch.zeros(1, 3, 32, 32)}, "does not use 'reference'",
                     id="unused-reference"),
        pytest.param({"tags": torch.zeros(1, 5)}, "does not use 'tags'", id="unused-tags"),
        pytest.param({"hint": None}, "needs 'hint'", id="missing-hint"),
        pytest.param({"hint": torch.zeros(1, 3, 8, 8)}, r"hint must be \[1, 4, 8, 8\]",
                     id="hint-channels"),
        pytest.param({"sketch": torch.zeros(1, 1, 40, 32), "hint": torch.zeros(1, 4, 10, 8)},
                     "multiples of 16", id="size"),
    ],
)  # fmt: skip
def test_bad_input_names_the_problem(kwargs, message):
    sketch, hint = _inputs(1, 32)
    call = {"sketch": sketch, "hint": hint, **kwargs}
    with pytest.raises(ValueError, match=message):
        _tiny()(**call)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="cardinality"):
        _tiny(cardinality=(3, 4, 2, 2))
    with pytest.raises(ValueError, match="one entry per decoder stage"):
        _tiny(blocks_per_stage=(2, 2, 2))
    with pytest.raises(ValueError, match="must divide 16"):
        _tiny(tagger_config={**TINY_TAGGER, "stage_blocks": (1, 1, 1, 1, 1, 1),
                             "stage_channels": (8, 8, 8, 8, 8, 8)})  # fmt: skip


def test_small_preset_fits_its_budget():
    model = HintsGenerator(
        **{**PRESETS["small"], "tagger_config": {**TAGGER_PRESETS["small"], "num_tags": 64}}
    )
    params = sum(p.numel() for p in model.parameters())  # the embedded tagger included
    assert params * 2 <= 4 * 2**20


def test_init_keeps_the_signal_and_starts_residual_blocks_as_identity():
    torch.manual_seed(0)
    model = HintsGenerator(**PRESETS["small"])
    ends = [m.expand for m in model.modules() if isinstance(m, ResNeXtBlock)]
    sketch, hint = _inputs(2, 64)
    assert 0.3 < pre_tanh_scale_at_init(model, model.to_rgb, ends, sketch, hint=hint) < 3.0
