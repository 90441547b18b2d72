"""`python -m colorize.bench` runs every method end to end and writes its table."""

import json

from colorize import bench
from colorize.pipeline import METHODS
from tests.test_pipeline import write_tiny_weights


def test_bench_times_every_method_with_and_without_snap(tmp_path, capsys):
    weights = write_tiny_weights(tmp_path / "weights")
    out = tmp_path / "colorize-64.md"
    code = bench.main(["--size", "64", "--repeat", "1", "--weights", str(weights),
                       "--out", str(out)])  # fmt: skip
    assert code == 0
    table = out.read_text()
    assert "| method | weights | snap on (ms) | snap off (ms) |" in table
    for method in METHODS:
        assert f"| {method} | trained | " in table
    records = json.loads(out.with_suffix(".json").read_text())["records"]
    assert [(r["method"], r["snap"]) for r in records] == [
        (m, snap) for m in METHODS for snap in (True, False)
    ]
    assert all(r["median_ms"] > 0 for r in records)


def test_bench_says_when_weights_are_random(tmp_path):
    out = tmp_path / "t.md"
    assert bench.main(["--size", "64", "--repeat", "1", "--method", "hints", "--weights",
                       str(tmp_path), "--out", str(out)]) == 0  # fmt: skip
    assert "| hints | random | " in out.read_text()


def test_bench_takes_a_dtype_and_records_it(tmp_path):
    out = tmp_path / "bf16.md"
    assert bench.main(["--size", "64", "--repeat", "1", "--method", "hints", "--dtype", "bf16",
                       "--weights", str(tmp_path), "--out", str(out)]) == 0  # fmt: skip
    assert json.loads(out.with_suffix(".json").read_text())["dtype"] == "bfloat16"
    assert ", bfloat16, channels_last, torch" in out.read_text()  # the CPU default


def test_bench_takes_a_memory_format(tmp_path):
    out = tmp_path / "plain.md"
    argv = ["--size", "64", "--repeat", "1", "--method", "hints", "--weights", str(tmp_path)]
    assert bench.main([*argv, "--memory-format", "contiguous", "--out", str(out)]) == 0
    assert ", float32, contiguous, torch" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["channels_last"] is False
