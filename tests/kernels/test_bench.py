"""`python -m kernels.bench` runs for real on tiny shapes and writes its table and JSON."""

import json

import pytest

from kernels import bench


def _run(tmp_path, *extra):
    argv = ["--quick", "--device", "cpu", "--reps", "2", "--out", str(tmp_path), "--name", "t"]
    return bench.main(argv + list(extra))


def test_bench_cli_writes_markdown_and_json_for_every_op(tmp_path, capsys):
    assert _run(tmp_path, "--providers", "eager,sdpa,triton") == 0
    printed = capsys.readouterr().out
    assert "triton: skipped" in printed
    data = json.loads((tmp_path / "kernels-t.json").read_text())
    rows = data["rows"]
    assert {r["op"] for r in rows} == {"sga", "cross", "cbam"}
    assert {r["mode"] for r in rows} == {"fwd", "bwd", "fwd+bwd"}
    assert {r["provider"] for r in rows if r["op"] == "cross"} == {"eager", "sdpa"}
    assert {r["provider"] for r in rows if r["op"] != "cross"} == {"eager"}
    for r in rows:
        assert r["status"] == "ok" and r["check"] == "ok" and r["ms_p50"] > 0
        assert r["device"] == data["environment"]["device"] and r["torch"]
    eager = [r for r in rows if r["provider"] == "eager"]
    assert all(r["speedup_vs_eager"] == pytest.approx(1.0) for r in eager)
    table = (tmp_path / "kernels-t.md").read_text()
    for header in ("## sga", "## cross", "## cbam", "TFLOP/s", "GB/s"):
        assert header in table


def test_bench_rerun_replaces_rows_instead_of_duplicating(tmp_path):
    args = ("--op", "cbam", "--providers", "eager", "--modes", "fwd")
    assert _run(tmp_path, *args) == 0
    assert _run(tmp_path, *args) == 0
    assert _run(tmp_path, "--op", "sga", "--providers", "eager", "--modes", "fwd") == 0
    rows = json.loads((tmp_path / "kernels-t.json").read_text())["rows"]
    assert sorted(r["op"] for r in rows) == ["cbam", "sga"]


@pytest.mark.slow
def test_bench_compile_provider_runs_and_matches_reference(tmp_path):
    assert _run(tmp_path, "--op", "cbam", "--providers", "eager,compile", "--modes", "fwd") == 0
    rows = json.loads((tmp_path / "kernels-t.json").read_text())["rows"]
    compiled = [r for r in rows if r["provider"] == "compile"]
    assert len(compiled) == 1 and compiled[0]["check"] == "ok"


def test_work_formulas_match_hand_counts():
    # q kᵀ and P v: 2 matmuls of 2·N·M·D flops each, per head.
    assert bench._cross_attention_flops(2, 3, 5, 7, 16, "fwd") == 2 * 3 * 2 * (2 * 5 * 7 * 16)
    assert bench._cross_attention_flops(1, 1, 4, 4, 8, "bwd") == 2.5 * 4 * 4 * 4 * 8
    assert bench._sga_flops(1, 4, 6, 8, 2, "fwd") == 2 * 4 * 6 * 8 + 2 * 4 * 6 * 2
    assert bench._sga_flops(1, 4, 6, 8, 2, "fwd+bwd") == 2 * 4 * 6 * (8 + 2) + 2 * 4 * 6 * 2
    assert bench._cbam_bytes(2, 3, 4, 5, 2, "fwd+bwd") == 5 * 2 * 3 * 4 * 5 * 2


def test_device_slug_is_file_name_friendly():
    assert bench.device_slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
    assert bench.device_slug("AMD EPYC 7B13 (2 threads)") == "amd-epyc-7b13"
