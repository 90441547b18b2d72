"""Training speed of one config under the speed options, measured with the real loop.

    python -m train.speed --config train/configs/sga_cpu.toml --steps 12
    python -m train.speed --config ... --variant fp32 --variant bf16+channels_last

Each variant is a fresh `python train/run.py` process (so compile caches and thread pools do
not leak between them) for `--steps` optimizer steps on the config's data, model and batch.
The first `--warmup` steps (data start-up, `torch.compile`) are left out; the rest give ms per
step and images/s. The table goes to stdout and, with `--out`, into a markdown file. Run it
on an otherwise idle machine: the variants are compared as ratios of one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from colorize.devices import device_name
from train.config import load_config

REPO = Path(__file__).resolve().parents[1]
# Each variant sets every speed option, so a config's own choice (a cpu profile's bf16, say)
# never leaks into the variant that is named for its absence.
VARIANTS = {
    "fp32": ["train.mixed_precision=no", "train.channels_last=false"],
    "channels_last": ["train.mixed_precision=no", "train.channels_last=true"],
    "bf16": ["train.mixed_precision=bf16", "train.channels_last=false"],
    "bf16+channels_last": ["train.mixed_precision=bf16", "train.channels_last=true"],
    "compile": ["train.mixed_precision=no", "train.channels_last=false", "train.compile=true"],
}


def measure(config: str, variant: str, steps: int, warmup: int, extra: Sequence[str],
            timeout: float = 900) -> dict:  # fmt: skip
    """ms/step and images/s of `variant` after `warmup` steps, from the run's metrics.jsonl."""
    with tempfile.TemporaryDirectory(prefix="speed-") as out:
        overrides = [*VARIANTS[variant], f"train.steps={steps}", f"log.every={warmup}",
                     "log.sample_every=0", f"train.checkpoint_every={steps}",
                     "log.tracker=jsonl", *extra]  # fmt: skip
        command = [sys.executable, str(REPO / "train" / "run.py"), "--config", config,
                   "--output_dir", out]  # fmt: skip
        for override in overrides:
            command += ["--set", override]
        try:
            environment = {**os.environ, "TQDM_DISABLE": "1"}
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                    env=environment, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"variant": variant, "error": f"timed out after {timeout:.0f} s"}
        if result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-5:])
            return {"variant": variant, "error": tail}
        lines = (Path(out) / "logs" / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        timed = [r for r in records if "ms_per_step" in r and r["step"] > warmup]
        ms = sum(r["ms_per_step"] for r in timed) / len(timed)
    batch = load_config(config, extra).train.batch_size
    return {"variant": variant, "ms_per_step": ms, "images_per_second": 1000 * batch / ms}


def table(config: str, results: Sequence[dict]) -> str:
    base = next((r["ms_per_step"] for r in results if "ms_per_step" in r), None)
    lines = [f"Training speed of `{config}` (`python -m train.speed`), "
             f"{device_name(torch.device('cpu'))}, {datetime.date.today()}:", "",
             "| variant | ms / step | images / s | speed-up |", "|---|---|---|---|"]  # fmt: skip
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].splitlines()[-1]} | | |")
            continue
        ratio = base / r["ms_per_step"]
        lines.append(f"| {r['variant']} | {r['ms_per_step']:.0f} | "
                     f"{r['images_per_second']:.2f} | {ratio:.2f}× |")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare training speed options of a config.")
    parser.add_argument("--config", required=True, help="a TOML file from train/configs/")
    parser.add_argument("--variant", action="append", choices=tuple(VARIANTS),
                        help="repeatable; default: all")  # fmt: skip
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=4, help="first steps not timed")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every variant")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="seconds per variant")
    parser.add_argument("--out", help="also write the table to this markdown file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.warmup < args.steps:
        print("error: need 0 < --warmup < --steps", file=sys.stderr)
        return 2
    results = []
    for variant in args.variant or VARIANTS:
        results.append(measure(args.config, variant, args.steps, args.warmup, args.overrides,
                               args.timeout))  # fmt: skip
        print(json.dumps(results[-1]), flush=True)
    text = table(args.config, results)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
