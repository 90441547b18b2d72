"""`python -m kernels` (the kernels self-check) runs for real and reports each op's path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, interpret: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": interpret, "KERNELS_BACKEND": "auto"}
    return subprocess.run(
        [sys.executable, "-m", "kernels", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    "args, interpret, path",
    [
        pytest.param((), "0", "eager", id="cpu-eager"),
        pytest.param(("--interpret",), "0", "triton", id="cpu-interpreter"),
    ],
)
def test_selfcheck_cli_checks_every_op_on_the_path_it_reports(args, interpret, path):
    if args and torch.cuda.is_available():
        pytest.skip("on a GPU machine the kernels run natively, not through the interpreter")
    out = _run(*args, interpret=interpret)
    assert out.returncode == 0, out.stdout + out.stderr
    for op in ("sga_attention", "cross_attention", "cbam"):
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(op))
        assert f" {path} " in line and line.endswith("ok"), line
        assert f"kernels.{op}: {path}" in out.stderr
