"""Where a run or an evaluation ran, in words (for results tables and model cards), and what
that device computes natively."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU with bf16 support, or a CPU with
    AVX-512 BF16 or AMX. Elsewhere bf16 is emulated, and on an AVX2-only CPU a bf16-autocast
    training step was measured 7-20x slower than fp32 (2026-12-01, resunet and the line
    extractor at 128 px), so `train.mixed_precision = "auto"` picks fp32 there."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_features() -> str:
    """The CPU's vector instruction set as torch dispatches it, plus native bf16: 'AVX2',
    'AVX512 + BF16', ... (two CPUs both called 'AMD EPYC' here differ 2x in speed by it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability} + BF16" if native_bf16(torch.device("cpu")) else capability


def device_name(device: torch.device) -> str:
    """A readable name of the device: the GPU model, or the CPU model, its instruction set and
    its torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {model} ({cpu_features()}), {threads} thread{'' if threads == 1 else 's'}"
