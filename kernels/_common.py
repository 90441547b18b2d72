"""Launch plumbing shared by the kernels: backend choice, the dispatcher log, block sizes.

Only plumbing lives here, no math. The backend is chosen once per process with
`set_backend` (or the `KERNELS_BACKEND` environment variable) and may be overridden per
call with `impl=`; every decision is logged once per (op, impl, reason).
"""

from __future__ import annotations

import functools
import logging
import os

import torch

logger = logging.getLogger("kernels")

BACKENDS = ("auto", "triton", "eager")
ENV_BACKEND = "KERNELS_BACKEND"


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernels backend {name!r}; expected one of {BACKENDS}")
    return name


_backend = _check_backend(os.environ.get(ENV_BACKEND, "auto").strip().lower() or "auto")


def set_backend(name: str) -> None:
    """Choose the process-wide backend: "auto" (Triton where it can run), "triton" or "eager"."""
    global _backend
    _backend = _check_backend(name)


def get_backend() -> str:
    """The process-wide backend set by `set_backend` or `KERNELS_BACKEND`."""
    return _backend


def interpreter_enabled() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def triton_import_error() -> str | None:
    """None when Triton imports, else the reason it does not (cached: importing is slow)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError as exc:  # macOS / Windows wheels, or a broken install
        return f"triton does not import ({exc})"
    return None


_logged: set[tuple[str, str, str]] = set()


def _log_once(op: str, impl: str, reason: str) -> None:
    key = (op, impl, reason)
    if key not in _logged:
        _logged.add(key)
        logger.info("kernels.%s: %s (%s)", op, impl, reason)


def select_impl(op: str, tensors: tuple[torch.Tensor, ...], impl: str | None = None) -> str:
    """Return "triton" or "eager" for one call of `op` on `tensors`.

    "auto" picks Triton when it imports and the tensors are on CUDA (or the interpreter is
    on), else the eager reference. A forced "triton" that cannot run raises a RuntimeError
    that names the reason; it never falls back silently.
    """
    choice = _check_backend(impl) if impl is not None else _backend
    if choice == "eager":
        _log_once(op, "eager", "forced" if impl or _backend == "eager" else "backend")
        return "eager"
    devices = {t.device.type for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"kernels.{op}: all tensors must be on one device, got {sorted(devices)}")
    device = devices.pop()
    missing = triton_import_error()
    if missing is None and device != "cuda" and not interpreter_enabled():
        missing = f"tensor on {device}; TRITON_INTERPRET unset"
    if missing is None and device not in ("cuda", "cpu"):
        missing = f"tensor on {device}; Triton runs on cuda (or cpu through its interpreter)"
    if missing is None:
        reason = "cuda tensors" if device == "cuda" else "TRITON_INTERPRET=1 on cpu"
        _log_once(op, "triton", reason)
        return "triton"
    if choice == "triton":
        raise RuntimeError(f"kernels.{op}: the triton backend was forced but cannot run: {missing}")
    _log_once(op, "eager", missing)
    return "eager"


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active on `device_type`, or None when autocast is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (n >= 1); used to size blocks that must cover a whole dim."""
    return 1 << max(0, (int(n) - 1).bit_length())


def check_rank(name: str, t: torch.Tensor, rank: int, layout: str) -> None:
    """Raise a ValueError naming the tensor when it is not `rank`-dimensional."""
    if t.dim() != rank:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(t.shape)}")


def autotune_configs(gpu: list[dict], interpreted: dict) -> list:
    """`triton.Config`s for `triton.autotune`: the GPU list, or one small interpreter config.

    Each entry is a dict of constexpr meta-parameters plus optional "num_warps"/"num_stages".
    The interpreter gets a single config (no tuning runs) with blocks small enough that the
    tests' odd shapes span several blocks and exercise the tail masks.
    """
    import triton

    def config(entry: dict):
        meta = {k: v for k, v in entry.items() if k not in ("num_warps", "num_stages")}
        return triton.Config(
            meta, num_warps=entry.get("num_warps", 4), num_stages=entry.get("num_stages", 2)
        )

    if interpreter_enabled():
        return [config(interpreted)]
    return [config(entry) for entry in gpu]


def dot_precision() -> str:
    """`tl.dot`'s input_precision for fp32 inputs, following torch's own matmul setting.

    torch computes fp32 matmuls in full precision unless `torch.set_float32_matmul_precision`
    allows TF32; the kernels do the same, so an fp32 kernel matches the fp32 reference on any
    GPU. fp16/bf16 operands ignore it.
    """
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
