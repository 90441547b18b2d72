"""Model tests run the eager kernels: the Triton interpreter is far too slow for whole networks.

A test that compares the kernel path with the eager path sets `kernels.set_backend("triton")`
itself, at a tiny size.
"""

import pytest
import torch
from torch import nn

import kernels


@pytest.fixture(autouse=True)
def _eager_kernels():
    kernels.set_backend("eager")
    yield
    kernels.set_backend("auto")


def pre_tanh_scale_at_init(
    model: nn.Module, output_conv: nn.Conv2d, residual_ends: list[nn.Conv2d], *inputs, **conditions
) -> float:
    """Std of the pre-tanh output of a freshly built generator without normalisation layers,
    after checking that every residual branch ends at zero (`init_unnormalised`: each residual
    block starts as the identity). PyTorch's default init gave ~0.13 (hints) and ~0.02 (tags),
    and Adam then blew the output up into an all-white image within ~30 steps on OpenMoji."""
    assert residual_ends and all(not end.weight.any() for end in residual_ends)
    captured = {}
    handle = output_conv.register_forward_hook(lambda module, args, out: captured.update(z=out))
    with torch.no_grad():
        model.eval()(*inputs, **conditions)
    handle.remove()
    return captured["z"].std().item()
