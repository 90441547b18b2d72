"""A labelled PNG of what every trained method does on test images (README's sample grid).

    python -m train.sample_grid --weights weights --data data/openmoji --out docs/samples.png

One row per method with weights under `--weights` (in the registry's order), `--count` test
images per row, each as four panels: sketch, what the method reads (the reference, or the
strokes for `hints`, shown as their colour on grey), its output, the ground truth. The inputs
are those of `python -m train.evaluate --protocol <protocol>` with the same seed, so the grid
shows images its numbers were measured on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from colorize.image_tensors import tensor_to_array
from colorize.models import GENERATORS
from train.data.openmoji import read_metadata
from train.evaluate import ProtocolSamples, load_subject, method_of_folder, select_indices

PANELS = ("sketch", "input", "output", "ground truth")
LABEL_WIDTH = 80
HEADER = 18
GAP = 6


def trained_methods(weights: Path) -> list[str]:
    """The methods with a saved generator under `weights/<method>/`, in registry order."""
    return [key for key in GENERATORS if method_of_folder(weights / key) == key]


def panel(image: torch.Tensor, side: int) -> Image.Image:
    """[1|3|4, h, w] in [-1, 1] as an RGB `side`×`side` image (a 4-channel hint: RGB·mask on
    grey, enlarged with nearest neighbours so single cells stay visible)."""
    x = image.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    elif x.shape[0] == 4:
        x = x[:3]
    x = F.interpolate(x[None], size=(side, side), mode="nearest")[0]
    return Image.fromarray(tensor_to_array(x))


def method_row(args: argparse.Namespace, method: str, vocabulary: list[str]) -> list[Image.Image]:
    """The 4·count panels of one method on the first `count` seeded test images."""
    options = argparse.Namespace(
        baseline=None, random_init=None, method=method, seed=args.seed, snap=False,
        weights=str(Path(args.weights) / method),
    )  # fmt: skip
    subject = load_subject(options, vocabulary, torch.device("cpu"))
    samples = ProtocolSamples(args.protocol, Path(args.data), args.split, args.size, subject,
                              args.seed)  # fmt: skip
    indices = select_indices(len(samples), args.count, args.seed)
    batch = samples.collate([samples.load(i) for i in indices])
    torch.manual_seed(args.seed)
    output = subject.run(batch.sketch, batch.reference, batch.hint)
    shown = batch.hint if subject.uses_hint else batch.reference
    panels = []
    for i in range(len(indices)):
        for image in (batch.sketch[i], shown[i], output[i], batch.target[i]):
            panels.append(panel(image, args.size))
    return panels


def render(rows: dict[str, list[Image.Image]], size: int, count: int) -> Image.Image:
    """Rows of panels with the method names on the left and the panel names on top."""
    width = LABEL_WIDTH + count * (len(PANELS) * size + GAP)
    height = HEADER + len(rows) * (size + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for j in range(count * len(PANELS)):
        x = LABEL_WIDTH + (j // len(PANELS)) * GAP + j * size
        draw.text((x + 4, 3), PANELS[j % len(PANELS)], fill="black", font=font)
    for r, (method, panels) in enumerate(rows.items()):
        y = HEADER + r * (size + GAP)
        draw.text((6, y + size // 2 - 6), method, fill="black", font=font)
        for j, image in enumerate(panels):
            canvas.paste(image, (LABEL_WIDTH + (j // len(PANELS)) * GAP + j * size, y))
    return canvas


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render a sample grid of the trained methods.")
    parser.add_argument("--weights", default="weights", help="folder of <method>/ weight folders")
    parser.add_argument("--data", default="data/openmoji", help="prepared OpenMoji folder")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument(
        "--protocol", default="self", choices=("self", "random"),
        help="inputs of train.evaluate's protocol (cross has no hints)",
    )  # fmt: skip
    parser.add_argument("--size", type=int, default=128, help="panel side in pixels")
    parser.add_argument("--count", type=int, default=3, help="test images per method")
    parser.add_argument("--seed", type=int, default=0, help="picks the images, as in evaluate")
    parser.add_argument("--out", default="docs/samples.png", help="the PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        methods = trained_methods(Path(args.weights))
        if not methods:
            raise ValueError(f"{args.weights} holds no trained method (<method>/config.json)")
        _, vocabulary = read_metadata(Path(args.data))
        rows = {method: method_row(args, method, vocabulary) for method in methods}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render(rows, args.size, args.count).save(out, optimize=True)
    print(f"wrote {out}: {', '.join(methods)} × {args.count} {args.split} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
