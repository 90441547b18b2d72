"""Test configuration: Triton's CPU interpreter is switched on here, before triton is imported.

Without a GPU the kernels run under `TRITON_INTERPRET=1` (correct for fp32/fp16, never timed);
with one they run natively and the `gpu`-marked tests (bf16) run too.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (bf16 is wrong in Triton's interpreter)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture(autouse=True)
def _seed_and_backend():
    """Every test starts from seed 0 and the "auto" backend, whatever the last one set."""
    import kernels

    torch.manual_seed(0)
    kernels.set_backend("auto")
    yield
    kernels.set_backend("auto")
