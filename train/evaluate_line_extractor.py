"""How close a line extractor's drawings come to OpenMoji's hand-drawn line art.

    python -m train.evaluate_line_extractor --weights weights/line_extractor --split test
    python -m train.evaluate_line_extractor --baseline xdog     # the non-learned extractor
    python -m train.evaluate_line_extractor --baseline white    # blank paper

A line extractor (Cao et al. §III-A: LE) draws the sketch of a colour image, so that image
folders without sketches become training pairs (train/data's "folder" dataset takes LE or
XDoG). Its test: the colour images of a held-out split in, their artists' line art as the
truth. Reported on the grey images in [0, 1] (paper 1, ink 0):

    L1                       mean over the pixels of the split
    PSNR                     of the split's mean squared error (as `train.evaluate`: a mean
                             of per-image PSNRs is infinite once one image is exact)
    precision, recall, F1    of the ink (pixels below mid grey), with a one-pixel tolerance
                             as in edge-detection benchmarks: a drawn ink pixel is a hit when
                             the truth has ink in its 3×3 neighbourhood (precision), a true
                             ink pixel is found when the drawing has ink there (recall); the
                             counts are summed over the split, F1 = 2PR / (P + R)
    exact F1                 the same F1 with no tolerance (pixel for pixel): OpenMoji's
                             colour images carry the line art's own black outlines, so the
                             tolerant scores of every extractor that finds them sit near 1

Baselines: `xdog` (`colorize.xdog`, σ = 0.5, the middle of Ci et al.'s σ ∈ {0.3, 0.4, 0.5}; the
other extractor of the data pipeline) and `white` (no line at all: F1 0, the PSNR floor).
Writes `<out>/eval/<name>-lines-<size>px.json` (name `line_extractor` or `baseline-<kind>`),
shown in the line extractor's model card by `python -m train.publish`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from colorize.devices import device_name
from colorize.models import LineExtractor
from colorize.xdog import xdog
from train.data import OpenMojiDataset
from train.evaluate import evaluate_and_report

PROTOCOL = "lines"
INK = 0.5  # a pixel darker than mid grey is ink
TOLERANCE = 1  # pixels: the 3×3 neighbourhood
XDOG_SIGMA = 0.5
BASELINES = ("xdog", "white")


def ink_counts(drawn: torch.Tensor, truth: torch.Tensor, tolerance: int = TOLERANCE) -> dict:
    """Hit counts of the ink of `drawn` against `truth`, [B, 1, H, W] in [0, 1]: drawn ink,
    drawn ink with true ink within `tolerance` px, true ink, true ink with drawn ink nearby."""
    drawn_ink, true_ink = (drawn < INK).float(), (truth < INK).float()
    window = 2 * tolerance + 1

    def near(ink: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(ink, window, stride=1, padding=tolerance) > 0

    return {
        "drawn": drawn_ink.sum().item(), "drawn_hit": (drawn_ink.bool() & near(true_ink)).sum().item(),
        "true": true_ink.sum().item(), "true_found": (true_ink.bool() & near(drawn_ink)).sum().item(),
    }  # fmt: skip


def line_metrics(drawn: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """L1, PSNR and the tolerant ink precision, recall and F1 of drawings against the truth,
    both [N, 1, H, W] in [0, 1] (see the module docstring)."""
    if drawn.shape != truth.shape:
        raise ValueError(f"drawn {tuple(drawn.shape)} and truth {tuple(truth.shape)} differ")
    error = (drawn - truth).double()
    mse = error.pow(2).mean().clamp_min(1e-10)
    precision, recall, f1 = _scores(ink_counts(drawn, truth))
    *_, f1_exact = _scores(ink_counts(drawn, truth, tolerance=0))
    return {"l1": error.abs().mean().item(), "psnr": (10 * torch.log10(1 / mse)).item(),
            "precision": precision, "recall": recall, "f1": f1, "f1_exact": f1_exact}  # fmt: skip


def _scores(counts: dict) -> tuple[float, float, float]:
    """(precision, recall, F1) of `ink_counts`; 0 where nothing was drawn or is to be found."""
    precision = counts["drawn_hit"] / counts["drawn"] if counts["drawn"] else 0.0
    recall = counts["true_found"] / counts["true"] if counts["true"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def extractor(args: argparse.Namespace) -> tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]:
    """(result name, weights kind, colour [B, 3, H, W] in [-1, 1] -> drawing in [-1, 1])."""
    if args.baseline == "xdog":
        return "baseline-xdog", "none", lambda image: xdog(image, XDOG_SIGMA)
    if args.baseline == "white":
        return "baseline-white", "none", lambda image: torch.ones_like(image[:, :1])
    folder = Path(args.weights)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: expected LineExtractor.save_pretrained "
                         "output (python -m train.publish runs/line_extractor_cpu)")  # fmt: skip
    model = LineExtractor.from_pretrained(folder).eval()
    return "line_extractor", "trained", model


def evaluate(args: argparse.Namespace) -> dict:
    name, weights, draw = extractor(args)
    dataset = OpenMojiDataset(Path(args.data), args.split, args.size, conditions=(),
                              augment=False)  # fmt: skip
    samples = [dataset[i] for i in range(len(dataset))]
    colour = torch.stack([s["target"] for s in samples])
    truth = torch.stack([s["sketch"] for s in samples]).add(1).div(2)
    with torch.no_grad():
        drawn = torch.cat([draw(batch).float() for batch in colour.split(args.batch_size)])
    drawn = drawn.clamp(-1, 1).add(1).div(2)
    return {
        "name": name, "kind": "support" if weights == "trained" else "baseline",
        "weights": weights, "source": str(args.weights) if weights == "trained" else args.baseline,
        "protocol": PROTOCOL, "dataset": "openmoji", "data": str(args.data), "split": args.split,
        "n": len(dataset), "split_size": len(dataset), "size": args.size,
        "device": device_name(torch.device("cpu")), "date": str(datetime.date.today()),
        "torch": torch.__version__,
        "settings": {"ink": INK, "tolerance_px": TOLERANCE,
                     **({"xdog_sigma": XDOG_SIGMA} if args.baseline == "xdog" else {})},
        "metrics": line_metrics(drawn, truth),
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate_line_extractor",
        description="Score a line extractor (or a baseline) against OpenMoji's drawn line art.",
    )
    parser.add_argument("--weights", default="weights/line_extractor",
                        help="the LineExtractor's save_pretrained folder")  # fmt: skip
    parser.add_argument("--baseline", choices=BASELINES, help="a non-learned extractor instead")
    parser.add_argument("--data", default="data/openmoji", help="prepared OpenMoji folder")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="results", help="writes <out>/eval/")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return evaluate_and_report(evaluate, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
