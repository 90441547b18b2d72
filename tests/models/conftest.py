"""Model tests run the eager kernels: the Triton interpreter is far too slow for whole networks.

A test that compares the kernel path with the eager path sets `kernels.set_backend("triton")`
itself, at a tiny size.
"""

import pytest

import kernels


@pytest.fixture(autouse=True)
def _eager_kernels():
    kernels.set_backend("eager")
    yield
    kernels.set_backend("auto")
