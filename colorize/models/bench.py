"""`python -m colorize.models.bench`: parameter counts and inference time of every model.

For each generator (and the tagger and line extractor): parameters and fp16 MiB of the
`paper` and `small` presets, and the median milliseconds of one forward pass of the small
preset at --size px (batch 1, eval, no grad, fp32, the kernels' current backend). Writes a
markdown table (and JSON) so README numbers come from one command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from . import GENERATORS, SUPPORT_MODELS, presets


def count_parameters(key: str, size: str) -> int:
    """Parameters of model `key` at preset `size`, built on the meta device (no memory)."""
    cls = GENERATORS.get(key) or SUPPORT_MODELS[key]
    with torch.device("meta"):
        model = cls(**presets(key, size))
    return sum(p.numel() for p in model.parameters())


def _inputs(model, key: str, size: int) -> tuple[tuple, dict]:
    if key == "tagger":
        return (torch.rand(1, 3, size, size) * 2 - 1,), {}
    if key == "line_extractor":
        return (torch.rand(1, 3, size, size) * 2 - 1,), {}
    sketch = torch.rand(1, 1, size, size) * 2 - 1
    given = {
        name: torch.rand(*model.expected_shape(name, 1, size, size)) * 2 - 1
        for name in model.conditions
        if name not in model.optional_conditions
    }
    return (sketch,), given


def time_forward(key: str, size: int, reps: int) -> float:
    """Median ms of one eval forward of the small preset of `key` at size×size, batch 1."""
    cls = GENERATORS.get(key) or SUPPORT_MODELS[key]
    torch.manual_seed(0)
    model = cls(**presets(key, "small")).eval()
    args, kwargs = _inputs(model, key, size)
    samples = []
    with torch.no_grad():
        model(*args, **kwargs)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            model(*args, **kwargs)
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colorize.models.bench", description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="square input side in px")
    parser.add_argument("--reps", type=int, default=5, help="timed forward passes per model")
    parser.add_argument(
        "--models",
        default=",".join([*GENERATORS, *SUPPORT_MODELS]),
        help="comma list of model keys",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for models-<size>.md/.json")
    args = parser.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    rows = []
    for key in keys:
        paper, small = count_parameters(key, "paper"), count_parameters(key, "small")
        ms = time_forward(key, args.size, args.reps)
        rows.append(
            {
                "model": key,
                "params_paper": paper,
                "params_small": small,
                "fp16_mib_small": small * 2 / 2**20,
                "ms_small": ms,
            }
        )
        print(
            f"{key:15} paper {paper / 1e6:7.2f} M | small {small / 1e6:5.2f} M "
            f"({small * 2 / 2**20:5.2f} MiB fp16) | {ms:8.1f} ms at {args.size} px"
        )
    device = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    stamp = datetime.date.today().isoformat()
    lines = [
        f"Measured {stamp} with `python -m colorize.models.bench --size {args.size}` on CPU "
        f"({device}), torch {torch.__version__}, fp32, batch 1, median of {args.reps}.",
        "",
        f"| model | params paper | params small | small fp16 | ms / {args.size} px (small) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['model']}` | {r['params_paper'] / 1e6:.1f} M | {r['params_small'] / 1e6:.2f} M "
        f"| {r['fp16_mib_small']:.2f} MiB | {r['ms_small']:.0f} |"
        for r in rows
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"models-{args.size}.md").write_text(table)
        (args.out / f"models-{args.size}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
