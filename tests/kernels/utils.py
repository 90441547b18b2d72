"""Shared helpers for the kernel tests: leaf pairs, fp32 references and per-dtype tolerances."""

from __future__ import annotations

import pytest
import torch

# (dtype, atol, rtol) for comparing a kernel in `dtype` with the fp32 reference.
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-5, id="fp32"),
    pytest.param(torch.float16, 2e-3, 2e-3, id="fp16"),
]
BF16 = pytest.param(torch.bfloat16, 2e-2, 2e-2, id="bf16", marks=pytest.mark.gpu)


def leaves(*tensors: torch.Tensor, requires_grad: bool = True) -> tuple[torch.Tensor, ...]:
    """Detached copies that are autograd leaves, so two paths can be compared from equal inputs."""
    return tuple(t.detach().clone().requires_grad_(requires_grad) for t in tensors)


def fp32_leaves(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same values as fp32 leaves: the reference runs in fp32 whatever the kernel's dtype."""
    return tuple(t.detach().float().requires_grad_(True) for t in tensors)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, name: str):
    """assert_close on fp32 copies with a message that names the compared quantity."""
    assert actual is not None, f"{name}: gradient missing"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    torch.testing.assert_close(
        actual.float(), expected.float(), atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}"
    )
