"""Batch colorization: a folder of sketches (or a frame sequence) coloured with one reference.

    python -m colorize --sketch frames/ --reference ref.png --method sga --out coloured/

Writes `<out>/<sketch name>.png` for every readable image in --sketch (sorted by name, so a
frame sequence keeps its order), skips unreadable files with a message, and never writes over
an input: an --out that is an input folder, or that would replace an existing file, is refused
(--overwrite allows replacing earlier outputs, never inputs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from colorize.pipeline import DTYPES, METHODS, SIZES, TAG_RANGE, Colorizer, load_image
from colorize.snap import SNAP_MODES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def sketch_files(source: Path) -> list[Path]:
    """The image files to colour: `source` itself, or the images directly inside the folder."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ValueError(f"--sketch {source} is neither a file nor a folder")
    files = sorted(
        p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"--sketch folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def output_paths(files: list[Path], out: Path) -> list[Path]:
    """`<out>/<stem>.png` per sketch; sketches whose stems clash keep their suffix in the name."""
    stems = Counter(p.stem for p in files)
    return [out / (f"{p.stem}.png" if stems[p.stem] == 1 else f"{p.name}.png") for p in files]


def check_outputs(
    sketch: Path, inputs: list[Path], outputs: list[Path], out: Path, overwrite: bool
) -> None:
    """Refuse an --out that is an input folder or that would replace an input (or, without
    --overwrite, any existing file)."""
    out = out.resolve()
    folder = sketch.resolve() if sketch.is_dir() else sketch.resolve().parent
    if out == folder:
        raise ValueError(f"--out {out} is the sketches' folder; choose another folder")
    protected = {p.resolve() for p in inputs}
    for path in outputs:
        if path.resolve() in protected:
            raise ValueError(f"--out would overwrite the input {path}; choose another folder")
        if path.exists() and not overwrite:
            raise ValueError(f"{path} exists; choose an empty --out folder or pass --overwrite")


def parse_tags(values: list[str]) -> dict[str, float]:
    """NAME=VALUE pairs (e.g. color:blue=3) as a dict."""
    tags = {}
    for item in values:
        name, sep, value = item.rpartition("=")
        try:
            tags[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--tag must be NAME=VALUE (e.g. color:blue=3), got {item!r}")
    return tags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m colorize",
        description="Colorize a sketch, a folder of sketches or a frame sequence with one "
        "reference (and optional colour strokes).",
    )
    parser.add_argument("--sketch", type=Path, required=True, help="a sketch file or a folder")
    parser.add_argument("--reference", type=Path, help="colour reference (not for hints)")
    parser.add_argument(
        "--strokes", type=Path, help="RGBA stroke layer (transparent = unpainted), any size"
    )
    parser.add_argument("--method", choices=METHODS, default="sga")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--size",
        type=int,
        default=512,
        help=f"model input, longer side in px ({SIZES[0]}–{SIZES[1]})",
    )
    parser.add_argument("--no-snap", action="store_true", help="keep the raw network colours")
    parser.add_argument("--snap", choices=SNAP_MODES, default="flat", help="region snap mode")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"tag value {TAG_RANGE[0]:g}–{TAG_RANGE[1]:g} for --method tags, repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (resunet)")
    parser.add_argument("--weights", help="weights folder or Hub repo id (default: weights/)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--dtype", choices=DTYPES,
        help="compute dtype (default: fp32 on CPU, bf16 on CUDA; bf16 on CPU is opt-in)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace earlier outputs (never inputs)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        files = sketch_files(args.sketch)
        outputs = output_paths(files, args.out)
        extra = [p for p in (args.reference, args.strokes) if p is not None]
        check_outputs(args.sketch, files + extra, outputs, args.out, args.overwrite)
        tags = parse_tags(args.tag)
        reference = load_image(args.reference, "reference")[0] if args.reference else None
        strokes = load_image(args.strokes, "strokes")[0] if args.strokes else None
        colorizer = Colorizer(weights=args.weights, device=args.device, dtype=args.dtype)
        loaded = colorizer.load(args.method)
    except ValueError as exc:
        parser.error(str(exc))
    if loaded.random:
        print(f"warning: no trained weights for {args.method}; using untrained random weights")
    if reference is not None and "reference" not in loaded.model.conditions:
        print(f"note: {args.method} does not use a reference image; --reference is ignored")
        reference = None
    args.out.mkdir(parents=True, exist_ok=True)
    written, skipped, start = 0, 0, time.perf_counter()
    for path, target in zip(tqdm(files, desc="colorizing", unit="image"), outputs, strict=True):
        try:
            image, info = colorizer(
                path, reference=reference, strokes=strokes, tags=tags or None,
                method=args.method, size=args.size,
                snap=False if args.no_snap else args.snap, seed=args.seed,
            )  # fmt: skip
        except ValueError as exc:
            tqdm.write(f"skipped {path.name}: {exc}")
            skipped += 1
            continue
        for notice in info["notices"]:
            tqdm.write(f"{path.name}: {notice}")
        image.save(target)
        written += 1
    seconds = time.perf_counter() - start
    print(
        f"wrote {written} image(s) to {args.out} with {args.method} on {colorizer.device_name} "
        f"in {seconds:.1f} s" + (f"; skipped {skipped}" if skipped else "")
    )
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
