"""Shared blocks and the generator input contract."""

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

import kernels
from colorize.models.base import ColorizationGenerator
from colorize.models.blocks import (
    CBAM,
    CrossAttention,
    WSConv2d,
    fit_within,
    from_tokens,
    init_unnormalised,
    to_tokens,
)


def test_cbam_module_triton_and_eager_paths_agree():
    block = CBAM(24, reduction=4)
    x = torch.randn(2, 24, 7, 9)
    kernels.set_backend("eager")
    eager = block(x)
    kernels.set_backend("triton")
    torch.testing.assert_close(block(x), eager, atol=1e-5, rtol=1e-5)
    assert eager.shape == x.shape


def test_cross_attention_module_matches_a_plain_torch_computation():
    attn = CrossAttention(32, context_dim=16, heads=2)
    x, c = torch.randn(2, 11, 32), torch.randn(2, 7, 16)
    q = attn.to_q(x).view(2, 11, 2, 16).transpose(1, 2)
    k = attn.to_k(c).view(2, 7, 2, 16).transpose(1, 2)
    v = attn.to_v(c).view(2, 7, 2, 16).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v
    expected = attn.to_out(expected.transpose(1, 2).reshape(2, 11, 32))
    torch.testing.assert_close(attn(x, c), expected, atol=1e-5, rtol=1e-5)
    self_attn = CrossAttention(32, heads=4)
    assert self_attn(x).shape == x.shape  # self-attention when no context is given


def test_tokens_round_trip():
    x = torch.randn(2, 5, 3, 4)
    assert to_tokens(x).shape == (2, 12, 5)
    torch.testing.assert_close(from_tokens(to_tokens(x), 3, 4), x)


def _conv_stack(depth: int = 12, width: int = 16) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


def test_init_unnormalised_keeps_the_signal_scale_that_the_default_loses():
    torch.manual_seed(0)
    x = torch.randn(4, 16, 32, 32)
    stack = _conv_stack()
    assert stack(x).std() < 0.1  # PyTorch's default init: ~0.03 after 12 layers
    end = nn.Conv2d(16, 16, 3, padding=1)
    init_unnormalised([stack, end], 0.2, [end])
    assert 0.3 < stack(x).std() < 3.0
    conv = stack[0]
    expected = (2 / ((1 + 0.2**2) * conv.weight[0].numel())) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.1
    assert not conv.bias.any()
    assert not end.weight.any() and not end.bias.any()  # a residual branch's end starts at zero


def test_ws_conv_standardises_each_filter():
    conv = WSConv2d(3, 4, 3, padding=1, bias=False)
    x = torch.ones(1, 3, 5, 5)
    # a standardised filter sums to zero, so a constant input gives zero in the interior
    assert conv(x)[:, :, 1:-1, 1:-1].abs().max() < 1e-4


class _Toy(ModelMixin, ConfigMixin, ColorizationGenerator):
    conditions = ("reference", "tags")
    stride = 8

    @register_to_config
    def __init__(self, num_tags: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)


def test_check_inputs_names_the_problem():
    model = _Toy()
    sketch, ref, tags = torch.zeros(2, 1, 16, 24), torch.zeros(2, 3, 16, 24), torch.zeros(2, 5)
    model.check_inputs(sketch, reference=ref, tags=tags, hint=None)
    cases = [
        (dict(sketch=torch.zeros(2, 3, 16, 24)), "sketch must be"),
        (dict(sketch=torch.zeros(2, 1, 12, 24)), "multiples of 8"),
        (dict(hint=torch.zeros(2, 4, 4, 6)), "does not use 'hint'"),
        (dict(reference=None), "needs 'reference'"),
        (dict(tags=torch.zeros(2, 4)), r"tags must be \[2, 5\]"),
        (dict(strokes=torch.zeros(1)), "unknown condition 'strokes'"),
    ]
    for change, message in cases:
        kwargs = {"sketch": sketch, "reference": ref, "tags": tags, **change}
        with pytest.raises(ValueError, match=message):
            model.check_inputs(**kwargs)


def test_fit_within_keeps_small_grids_and_scales_large_ones_to_multiples():
    assert fit_within(32, 24, 32) == (32, 24)
    assert fit_within(64, 48, 32) == (32, 24)
    assert fit_within(64, 48, 32, multiple=5) == (30, 20)  # rounded down to multiples of 5
    assert fit_within(100, 3, 10, multiple=4) == (8, 4)  # never below one multiple
    assert fit_within(16, 12, 31.25) == (16, 12) and fit_within(64, 64, 31.25) == (31, 31)
