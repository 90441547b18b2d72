"""Fixtures of the training tests: the prepared OpenMoji fixture and a clean run environment."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

import kernels
from tests.data.conftest import FIXTURE_PACKAGE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _eager_one_thread_fresh_accelerate():
    """Eager kernels on one thread; accelerate's process-wide state is reset after each test,
    as a new process would start (each in-process `train` builds its own Accelerator)."""
    kernels.set_backend("eager")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(threads)
    kernels.set_backend("auto")


@pytest.fixture(scope="session")
def openmoji(tmp_path_factory) -> Path:
    """The OpenMoji fixture package (25 emoji; train split: 16) prepared at 32 px by the real
    CLI, once per session (one rendering process: spawning workers costs more than 25 SVGs).
    Tests read it and never write into it."""
    out = tmp_path_factory.mktemp("openmoji")
    command = [sys.executable, "-m", "train.prepare_openmoji", "--out", str(out), "--size", "32",
               "--source", str(FIXTURE_PACKAGE), "--workers", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out
