"""`python -m colorize.bench`: end-to-end time of one colorization through `Colorizer`.

    python -m colorize.bench --size 512 --out results/colorize-512-cpu.md

For each method: the median wall time of `Colorizer.__call__` on the examples/ girl drawing
(sketch, a reference of the same drawing in another skin tone, face strokes for `hints`) at
`--size` px, with region snap on and off, after one warm-up call; with the weights a user gets
(`weights/` by default; random ones where a method has none, which the table says). This is
the number the README's speed claims and the "under 0.5 s at 512 px on a CPU" target use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from colorize.devices import device_name
from colorize.pipeline import DTYPES, METHODS, Colorizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SKETCH, REFERENCE, STROKES = "girl-sketch.png", "girl-reference.png", "face-strokes.png"


def time_method(colorizer: Colorizer, method: str, size: int, snap: bool, repeat: int) -> dict:
    """Median and minimum ms of `repeat` calls after a warm-up, and where the weights came from."""
    inputs = {"strokes": EXAMPLES / STROKES} if method == "hints" else {
        "reference": EXAMPLES / REFERENCE}  # fmt: skip
    call = dict(method=method, size=size, snap=snap, **inputs)
    _, info = colorizer(EXAMPLES / SKETCH, **call)  # warm-up: loads the model
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        colorizer(EXAMPLES / SKETCH, **call)
        samples.append(1000 * (time.perf_counter() - start))
    weights = "random" if info["weights"] == "random" else "trained"
    return {"method": method, "snap": snap, "median_ms": statistics.median(samples),
            "min_ms": min(samples), "weights": weights}  # fmt: skip


def setting(colorizer: Colorizer) -> str:
    """The compute dtype and memory order, e.g. "float32, channels_last"."""
    order = "channels_last" if colorizer.channels_last else "contiguous"
    return f"{str(colorizer.dtype).removeprefix('torch.')}, {order}"


def render(records: Sequence[dict], size: int, device: str, repeat: int) -> str:
    lines = [f"# End-to-end colorization time, {size} px", "",
             f"Measured {datetime.date.today()} with `python -m colorize.bench --size {size}` "
             f"on {device}, torch {torch.__version__}, median of {repeat} calls after a "
             "warm-up (examples/girl-sketch.png; loading, conditions, network, snap).", "",
             "| method | weights | snap on (ms) | snap off (ms) |",
             "|---|---|---|---|"]  # fmt: skip
    for method in dict.fromkeys(r["method"] for r in records):
        on = next((r for r in records if r["method"] == method and r["snap"]), None)
        off = next((r for r in records if r["method"] == method and not r["snap"]), None)
        cells = [f"{r['median_ms']:.0f}" if r else "—" for r in (on, off)]
        lines.append(f"| {method} | {(on or off)['weights']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time Colorizer end to end for each method.")
    parser.add_argument("--method", action="append", choices=METHODS, help="default: all")
    parser.add_argument("--size", type=int, default=512, help="the model's working size")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per setting")
    parser.add_argument("--weights", help="weights folder or Hub id (default: Colorizer's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=DTYPES, help="default: Colorizer's")
    parser.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                        help="tensor memory order (default: Colorizer's, channels_last on CPU)")
    parser.add_argument("--out", help="write the markdown table here (and JSON next to it)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    channels_last = None if args.memory_format is None else args.memory_format == "channels_last"
    colorizer = Colorizer(args.weights, args.device, args.dtype, channels_last)
    device = device_name(colorizer.device)
    records = []
    for method in args.method or METHODS:
        for snap in (True, False):
            records.append(time_method(colorizer, method, args.size, snap, args.repeat))
            print(json.dumps(records[-1]), flush=True)
    text = render(records, args.size, f"{device}, {setting(colorizer)}", args.repeat)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        payload = {"size": args.size, "device": device, "torch": torch.__version__,
                   "dtype": str(colorizer.dtype).removeprefix("torch."),
                   "channels_last": colorizer.channels_last,
                   "date": str(datetime.date.today()), "records": records}  # fmt: skip
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
