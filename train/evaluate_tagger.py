"""How well a trained Tagger reads the tag vector of held-out drawings.

    python -m train.evaluate_tagger --weights weights/tagger --data data/openmoji --split test

The tag vector (train/data: `tags`) has soft colour shares (`color:*`, the share of the
drawing's pixels in each colour) and binary tags (skin tone, OpenMoji group and subgroup).
Reported, from the colour image and from its sketch (the two inputs the tagger serves):

    colour MAE   mean |σ(logit) − share| over the colour tags (colour input only: a sketch
                 has no colours to read)
    mAP          mean average precision over the binary tags with a positive in the split
    BCE          the training loss, over all tags

Writes `<out>/eval/tagger-tags-<size>px.json` (shown in the tagger's model card by
`python -m train.publish`).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colorize.devices import device_name
from colorize.models import Tagger
from train.data import OpenMojiDataset
from train.evaluate import evaluate_and_report

PROTOCOL = "tags"


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve of one binary tag (ties broken by order)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def tag_metrics(logits: torch.Tensor, targets: torch.Tensor, vocabulary: Sequence[str],
                colour: bool) -> dict[str, float]:  # fmt: skip
    """BCE, mAP over the binary tags with a positive, and (colour input) the colour-share MAE."""
    is_colour = np.array([name.startswith("color:") for name in vocabulary])
    probabilities, labels = torch.sigmoid(logits).numpy(), targets.numpy()
    aps = [average_precision(probabilities[:, j], labels[:, j])
           for j in np.flatnonzero(~is_colour) if (labels[:, j] > 0.5).any()]  # fmt: skip
    metrics = {"bce": F.binary_cross_entropy_with_logits(logits, targets).item(),
               "map": float(np.mean(aps)), "tags_scored": len(aps)}  # fmt: skip
    if colour:
        metrics["colour_mae"] = float(np.abs(probabilities - labels)[:, is_colour].mean())
    return metrics


def evaluate(args: argparse.Namespace) -> dict:
    tagger = Tagger.from_pretrained(args.weights).eval()
    dataset = OpenMojiDataset(Path(args.data), args.split, args.size, conditions=("tags",),
                              augment=False)  # fmt: skip
    vocabulary = list(dataset.vocabulary)
    if tagger.config.num_tags != len(vocabulary):
        raise ValueError(f"the tagger has {tagger.config.num_tags} tags, {args.data} "
                         f"{len(vocabulary)}: trained on another vocabulary")  # fmt: skip
    samples = [dataset[i] for i in range(len(dataset))]
    targets = torch.stack([s["tags"] for s in samples])
    metrics = {}
    for name, key in (("colour", "target"), ("sketch", "sketch")):
        images = torch.stack([s[key] for s in samples])
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        with torch.no_grad():
            logits = torch.cat([tagger(batch).float() for batch in images.split(args.batch_size)])
        for metric, value in tag_metrics(logits, targets, vocabulary, name == "colour").items():
            metrics[f"{name}_{metric}"] = value
    return {
        "name": "tagger", "kind": "support", "weights": "trained", "source": str(args.weights),
        "protocol": PROTOCOL, "dataset": "openmoji", "split": args.split, "n": len(dataset),
        "split_size": len(dataset), "size": args.size,
        "device": device_name(torch.device("cpu")), "date": str(datetime.date.today()),
        "torch": torch.__version__, "metrics": metrics,
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Score a trained Tagger on a prepared split.")
    parser.add_argument("--weights", default="weights/tagger", help="the tagger's folder")
    parser.add_argument("--data", default="data/openmoji", help="prepared OpenMoji folder")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="results", help="writes <out>/eval/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return evaluate_and_report(evaluate, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
