"""Shared data fixtures: the OpenMoji fixture package prepared once per session by the real CLI."""

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE_PACKAGE = Path(__file__).resolve().parents[1] / "fixtures" / "openmoji"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def openmoji_root(tmp_path_factory) -> Path:
    """`python -m train.prepare_openmoji` run for real (two spawned workers) on the fixture."""
    out = tmp_path_factory.mktemp("openmoji")
    command = [
        sys.executable, "-m", "train.prepare_openmoji", "--out", str(out), "--size", "32",
        "--source", str(FIXTURE_PACKAGE), "--workers", "2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 25 emoji" in result.stdout
    return out
