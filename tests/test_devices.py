"""colorize.devices: the device names of cards and tables, and native bf16."""

import torch

from colorize import devices


def test_cpu_name_carries_its_instruction_set_and_threads():
    name = devices.device_name(torch.device("cpu"))
    assert name.startswith("CPU ") and f"({devices.cpu_features()})" in name
    assert name.endswith("thread" if torch.get_num_threads() == 1 else "threads")
    assert devices.cpu_features().split(" + ")[0] == torch.backends.cpu.get_cpu_capability()


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert devices.native_bf16(torch.device("cpu")) is False
    assert "BF16" not in devices.cpu_features()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert devices.native_bf16(torch.device("cpu")) is True
    assert devices.cpu_features().endswith(" + BF16")
    assert devices.native_bf16(torch.device("meta")) is False
