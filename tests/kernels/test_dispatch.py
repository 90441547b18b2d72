"""The dispatcher: which path runs where, forced backends, clear errors, one log line."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels import _common

REPO = Path(__file__).resolve().parents[2]


def _sga_inputs():
    return torch.randn(1, 9, 8), torch.randn(1, 11, 8), torch.randn(1, 11, 4)


def test_dispatcher_falls_back_to_eager_on_cpu_without_interpreter(monkeypatch, caplog):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, y, v = _sga_inputs()
    assert _common.select_impl("sga_attention", (x, y, v)) == "eager"
    with caplog.at_level(logging.INFO, logger="kernels"):
        _common._logged.clear()
        out = kernels.sga_attention(x, y, v)
        kernels.sga_attention(x, y, v)
    torch.testing.assert_close(out, kernels.sga_attention_reference(x, y, v))
    lines = [r.getMessage() for r in caplog.records if "sga_attention" in r.getMessage()]
    assert lines == ["kernels.sga_attention: eager (tensor on cpu; TRITON_INTERPRET unset)"]


def test_dispatcher_forced_triton_on_cpu_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, y, v = _sga_inputs()
    with pytest.raises(RuntimeError, match="forced but cannot run: tensor on cpu"):
        kernels.sga_attention(x, y, v, impl="triton")
    kernels.set_backend("triton")
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(RuntimeError, match="cross_attention: the triton backend was forced"):
        kernels.cross_attention(q, q, q)


def test_dispatcher_uses_triton_under_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if _common.triton_import_error() is not None:
        pytest.skip(_common.triton_import_error())
    assert _common.select_impl("cbam", (torch.randn(1, 2, 3, 3),)) == "triton"


def test_dispatcher_without_triton_falls_back_or_names_the_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_common, "triton_import_error", lambda: "triton does not import (test)")
    x, y, v = _sga_inputs()
    assert _common.select_impl("sga_attention", (x, y, v)) == "eager"
    with pytest.raises(RuntimeError, match="triton does not import"):
        _common.select_impl("sga_attention", (x, y, v), "triton")


def test_set_backend_eager_wins_and_unknown_names_are_rejected(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    kernels.set_backend("eager")
    assert kernels.get_backend() == "eager"
    assert _common.select_impl("sga_attention", _sga_inputs()) == "eager"
    with pytest.raises(ValueError, match="unknown kernels backend 'fast'"):
        kernels.set_backend("fast")
    with pytest.raises(ValueError, match="unknown kernels backend"):
        kernels.sga_attention(*_sga_inputs(), impl="cuda")


def test_backend_environment_variable_sets_the_process_default():
    env = {**os.environ, "KERNELS_BACKEND": "eager"}
    code = "import kernels; print(kernels.get_backend())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "eager"
    env["KERNELS_BACKEND"] = "bogus"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode != 0 and "unknown kernels backend 'bogus'" in out.stderr


def test_dispatcher_rejects_tensors_on_two_devices():
    x, y, v = _sga_inputs()
    with pytest.raises(ValueError, match="one device"):
        _common.select_impl("sga_attention", (x, y.to("meta"), v))


def test_public_ops_stay_functions_after_the_triton_modules_load():
    """`kernels.cbam` etc. are the dispatchers; loading a Triton module must not shadow them."""
    import kernels.cbam_triton  # noqa: F401
    import kernels.cross_attention_triton  # noqa: F401
    import kernels.sga_triton  # noqa: F401

    for name in ("sga_attention", "cross_attention", "cbam"):
        assert callable(getattr(kernels, name)), name
