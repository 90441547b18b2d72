"""TagsGenerator and TagMapper (Yan et al.): shapes, Eq. 5/10/11, the frozen encoder, the
optional tags, gradients of both training steps, kernels, round trip and budget."""

import pytest
import torch

import kernels
from colorize.models.tagger import PRESETS as TAGGER_PRESETS
from colorize.models.tagger import Tagger
from colorize.models.tags import (
    MAPPER_PRESETS,
    PRESETS,
    ChannelAttention,
    ReceivingBlock,
    ResidualBlock,
    TagMapper,
    TagsGenerator,
)
from tests.models.conftest import pre_tanh_scale_at_init

T = 5
TINY_TAGGER = {**TAGGER_PRESETS["small"], "stage_channels": (8, 8, 16, 24)}
TINY = {**PRESETS["small"], "encoder_channels": (8, 16, 16), "latent_channels": 32,
        "tagger_config": TINY_TAGGER}  # fmt: skip
# the paper's topology (4 encoder levels, stride 32, RBCA, ResNet-34 encoder) at reduced widths
PAPER_STRUCTURE = {
    **PRESETS["paper"],
    "encoder_channels": (8, 16, 16, 32),
    "latent_channels": 32,
    "tagger_config": {**TAGGER_PRESETS["paper"], "stage_channels": (8, 8, 16, 16)},
}


def _tiny(**kwargs) -> TagsGenerator:
    return TagsGenerator(num_tags=T, **{**TINY, **kwargs})


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    sketch = torch.rand(batch, 1, size, size) * 2 - 1
    reference = torch.rand(batch, 3, size, size) * 2 - 1
    return sketch, reference


def _with_mapper(model: TagsGenerator) -> TagsGenerator:
    mapper = model.build_mapper()
    for p in mapper.parameters():  # a visible offset: default-initialised maps nearly cancel
        torch.nn.init.normal_(p, std=0.5)
    model.attach_mapper(mapper)
    return model


@pytest.mark.parametrize("size", [64, 128], ids=["64px", "128px"])
@pytest.mark.parametrize("config", ["small", "paper", "add"])
def test_forward_shapes(config, size):
    kwargs = {"small": PRESETS["small"], "paper": PAPER_STRUCTURE,
              "add": {**TINY, "receiving_block": "add"}}[config]  # fmt: skip
    model = TagsGenerator(num_tags=T, **kwargs).eval()
    sketch, reference = _inputs(1, size)
    with torch.no_grad():
        image = model(sketch, reference=reference).image
        codes, tags = model.encode_reference(reference)
        _, latent = model.generate(sketch, codes)
    assert image.shape == (1, 3, size, size) and image.abs().max() <= 1
    s = model.tagger.stride
    assert codes.shape == (1, model.code_channels, size // s, size // s) and tags.shape == (1, T)
    n = 2 ** (len(kwargs["encoder_channels"]) + 1)  # one halving per encoder block
    assert latent.shape == (1, model.config.latent_channels, size // n, size // n)


def test_paper_structure_follows_the_paper():
    model = TagsGenerator(num_tags=T, **PAPER_STRUCTURE)
    assert model.stride == 32 and model.tagger.stride == 32
    assert len(model.encoder) == 5 and len(model.up_blocks) == 3  # RBCA in the middle three
    assert all(up.rbca is not None for up in model.up_blocks) and model.up_final.rbca is None
    assert [len(stage) for stage in model.tagger.stages] == [3, 4, 6, 3]  # ResNet-34
    no_rbca = TagsGenerator(num_tags=T, **{**PAPER_STRUCTURE, "rbca": False})
    assert all(up.rbca is None for up in no_rbca.up_blocks)


def test_receiving_block_add_is_H_of_x_plus_gap():
    block = ReceivingBlock(6, 4, "add", heads=1)
    x, codes = torch.randn(2, 6, 3, 5), torch.rand(2, 4, 2, 2)
    gap = block.project(codes.mean(dim=(2, 3)))[:, :, None, None]
    torch.testing.assert_close(block(x, codes), torch.relu(block.H(x + gap)))


def test_receiving_block_attention_is_eq5():
    block = ReceivingBlock(6, 4, "attention", heads=1)
    x, codes = torch.randn(2, 6, 3, 5), torch.rand(2, 4, 2, 2)
    attn = block.attention
    xt, ct = x.flatten(2).transpose(1, 2), codes.flatten(2).transpose(1, 2)  # (B, n, c)
    scores = attn.to_q(xt) @ attn.to_k(ct).transpose(1, 2) / 6**0.5  # √d_s
    received = attn.to_out(torch.softmax(scores, -1) @ attn.to_v(ct))  # (B, n, 6)
    expected = torch.relu(block.H(x + received.transpose(1, 2).reshape(2, 6, 3, 5)))
    torch.testing.assert_close(block(x, codes), expected, atol=1e-5, rtol=1e-5)


def test_rbca_channel_attention_matches_plain_torch():
    attn = ChannelAttention(6, 4)
    pooled, pooled_codes = torch.randn(2, 6), torch.rand(2, 4)
    q, k, v = attn.to_q(pooled), attn.to_k(pooled_codes), attn.to_v(pooled_codes)  # (B, C)
    weights = torch.softmax(q[:, :, None] * k[:, None, :] / 6**0.5, dim=-1)  # (B, C, C)
    expected = attn.to_out((weights @ v[:, :, None]).squeeze(-1))
    torch.testing.assert_close(attn(pooled, pooled_codes), expected, atol=1e-6, rtol=1e-6)


def test_mapper_is_eq10_with_position_weights_eq11():
    mapper = TagMapper(num_tags=T, code_channels=4, num_layers=3)
    codes = torch.rand(2, 4, 3, 3)
    codes[:, 1] = 0  # a channel with GAP 0: its ratio is 1 (§3.5)
    anchor, target = torch.rand(2, T), torch.rand(2, T) * 3
    ratio = codes / codes.mean(dim=(2, 3), keepdim=True)
    ratio[:, 1] = 1
    pwm = torch.einsum("oc,bchw->bohw", mapper.omega.weight, ratio)
    pwm = pwm + mapper.omega.bias[None, :, None, None]
    offset = mapper.map_tags(target) - mapper.map_tags(anchor)
    expected = codes + pwm * offset[:, :, None, None]
    torch.testing.assert_close(mapper(codes, anchor, target), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mapper(codes, anchor, anchor), codes)  # no change, no shift


def test_mapper_m_add_shifts_every_position_alike():
    mapper = TagMapper(num_tags=T, code_channels=4, position_weights=False)
    assert mapper.omega is None
    codes, anchor, target = torch.rand(2, 4, 3, 3), torch.rand(2, T), torch.rand(2, T)
    shift = mapper(codes, anchor, target) - codes
    offset = mapper.map_tags(target) - mapper.map_tags(anchor)
    torch.testing.assert_close(shift, offset[:, :, None, None].expand_as(codes))


def test_self_adaptive_mlp_fuses_every_layer():
    mapper = TagMapper(num_tags=T, code_channels=4, num_layers=3)
    tags = torch.rand(2, T)
    outs, x = [], tags
    for layer in mapper.layers:
        x = torch.relu(layer[0](x))
        outs.append(x)
    torch.testing.assert_close(mapper.map_tags(tags), torch.cat(outs, 1) @ mapper.fusion.weight.T)
    assert mapper.fusion.in_features == 12 and mapper.fusion.bias is None


def test_encode_reference_uses_the_frozen_tagger():
    model = _tiny().eval()
    _, reference = _inputs(2, 32)
    codes, tags = model.encode_reference(reference)
    feats = model.tagger.features(reference)
    torch.testing.assert_close(codes, feats["stage4"])
    torch.testing.assert_close(tags, torch.sigmoid(feats["logits"]))
    torch.testing.assert_close(model.reference_tags(reference), tags)


def test_tags_equal_to_the_references_own_give_the_reference_result():
    model = _with_mapper(_tiny()).eval()
    sketch, reference = _inputs(2, 32)
    with torch.no_grad():
        plain = model(sketch, reference=reference).image
        same = model(sketch, reference=reference, tags=model.reference_tags(reference)).image
        moved = model(sketch, reference=reference, tags=torch.full((2, T), 3.0)).image
    torch.testing.assert_close(same, plain)
    assert (moved - plain).abs().max() > 1e-4


def test_step1_backward_reaches_every_trainable_parameter_and_not_the_tagger():
    model = _tiny().train()
    assert not model.tagger.training
    sketch, reference = _inputs(2, 32)
    model(sketch, reference=reference).image.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("tagger."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_step2_backward_trains_the_mapper_through_the_frozen_generator():
    model = _with_mapper(_tiny()).train()
    model.requires_grad_(False)
    model.mapper.requires_grad_(True)
    sketch, reference = _inputs(2, 32)
    target = torch.rand(2, T)
    codes, anchor = model.encode_reference(reference)
    image, latent = model.generate(sketch, model.mapper(codes, anchor, target))
    (image.abs().mean() + latent.abs().mean()).backward()  # the hybrid L1's two terms, Eq. 12
    for name, p in model.named_parameters():
        if name.startswith("mapper."):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name


def test_triton_and_eager_paths_agree():
    model = _with_mapper(_tiny()).eval()
    sketch, reference = _inputs(1, 32)
    tags = torch.rand(1, T)
    with torch.no_grad():
        kernels.set_backend("eager")
        eager = model(sketch, reference=reference, tags=tags).image
        kernels.set_backend("triton")
        triton = model(sketch, reference=reference, tags=tags).image
    torch.testing.assert_close(triton, eager, atol=1e-5, rtol=1e-5)


def test_eval_is_deterministic():
    model = _with_mapper(_tiny()).eval()
    sketch, reference = _inputs(2, 32)
    tags = torch.rand(2, T)
    with torch.no_grad():
        torch.testing.assert_close(model(sketch, reference=reference, tags=tags).image,
                                   model(sketch, reference=reference, tags=tags).image,
                                   rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("mapper", [False, True], ids=["step1", "with-mapper"])
def test_save_and_load_round_trip(tmp_path, mapper):
    tagger = Tagger(num_tags=T, **TINY_TAGGER)
    tagger.train()(torch.randn(4, 3, 32, 32))  # non-default BN statistics
    model = TagsGenerator.with_tagger(tagger, **TINY)
    if mapper:
        _with_mapper(model)
    model.eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]  # fmt: skip
    loaded = TagsGenerator.from_pretrained(tmp_path)
    assert (loaded.mapper is not None) == mapper
    sketch, reference = _inputs(2, 32)
    tags = torch.rand(2, T) if mapper else None
    with torch.no_grad():
        torch.testing.assert_close(loaded(sketch, reference=reference, tags=tags).image,
                                   model(sketch, reference=reference, tags=tags).image,
                                   rtol=0, atol=0)  # fmt: skip
    assert not any(p.requires_grad for p in loaded.tagger.parameters())
    torch.testing.assert_close(loaded.tagger.state_dict(), tagger.state_dict())


def test_load_tagger_checks_the_config():
    model = _tiny()
    with pytest.raises(ValueError, match="architectures differ"):
        model.load_tagger(Tagger(num_tags=T, **TAGGER_PRESETS["small"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"hint": torch.zeros(1, 4, 8, 8)}, "does not use 'hint'", id="unused-hint"),
        pytest.param({"reference": None}, "needs 'reference'", id="missing-reference"),
        pytest.param({"tags": torch.zeros(1, T + 1)}, rf"tags must be \[1, {T}\]",
                     id="tags-shape"),
        pytest.param({"tags": torch.zeros(1, T)}, "no trained TagMapper", id="no-mapper"),
        pytest.param({"sketch": torch.zeros(1, 1, 40, 32), "reference": torch.zeros(1, 3, 40, 32)},
                     "multiples of 16", id="size"),
    ],
)  # fmt: skip
def test_bad_input_names_the_problem(kwargs, message):
    sketch, reference = _inputs(1, 32)
    call = {"sketch": sketch, "reference": reference, **kwargs}
    with pytest.raises(ValueError, match=message):
        _tiny()(**call)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="receiving_block"):
        _tiny(receiving_block="concat")
    with pytest.raises(ValueError, match="tagger_config has num_tags"):
        _tiny(tagger_config={**TINY_TAGGER, "num_tags": T + 1})
    model = _tiny()
    with pytest.raises(ValueError, match="needs 5 tags and 24 code channels"):
        model.attach_mapper(TagMapper(num_tags=T, code_channels=16))
    with pytest.raises(ValueError, match="codes must be"):
        model.generate(torch.zeros(1, 1, 32, 32), torch.zeros(1, 16, 2, 2))


def test_small_presets_fit_their_budgets():
    model = TagsGenerator(num_tags=64, **PRESETS["small"])
    params = sum(p.numel() for p in model.parameters())  # the embedded tagger included
    assert params * 2 <= 4 * 2**20
    mapper = TagMapper(num_tags=64, **MAPPER_PRESETS["small"])
    assert sum(p.numel() for p in mapper.parameters()) * 2 <= 2**20
    assert mapper.config.code_channels == model.code_channels


def test_init_keeps_the_signal_and_starts_residual_blocks_as_identity():
    torch.manual_seed(0)
    model = TagsGenerator(**PRESETS["small"], num_tags=T)
    ends = [m.conv2 for m in model.modules() if isinstance(m, ResidualBlock)]
    sketch, reference = _inputs(2, 64)
    scale = pre_tanh_scale_at_init(model, model.up_final, ends, sketch, reference=reference)
    assert 0.3 < scale < 3.0
