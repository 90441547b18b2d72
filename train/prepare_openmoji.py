"""Prepare OpenMoji 17.0.0 as paired training data: colour PNG + hand-drawn line-art PNG per emoji.

    python -m train.prepare_openmoji --out data/openmoji --size 256

Gets the npm package (`npm pack openmoji@17.0.0`, kept in --out for re-runs) or reads
--source (the .tgz or an extracted folder), rasterises the colour SVGs (color/svg) and the
black line-art SVGs (black/svg) on white with resvg, and writes `metadata.json`, `tags.json`
and the attribution (see `train.data.openmoji` for the layout). Splits train/val/test
(≈ 90/5/5 of the images) are drawn per base emoji, so skin-tone variants of one drawing never
straddle splits. Per image it precomputes the k-means palette (Khang et al. §3.1), the colour
shares (the colour tags) and colour-similar images (Cui et al. §3.3.2); per split it lists
cross-reference pairs (sketch of P, reference Q in tone k → P in tone k). Re-running skips
images that are already rendered at this size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import resvg_py
from PIL import Image
from tqdm import tqdm

from colorize.palette import palette_kmeans
from colorize.tags import COLOR_NAMES, color_shares
from train.data.colorific import colour_similar, lab_histogram
from train.data.openmoji import METADATA_FILE, SPLITS, TAGS_FILE, tag_vocabulary

OPENMOJI_VERSION = "17.0.0"
PACKAGE = f"openmoji@{OPENMOJI_VERSION}"
TARBALL = f"openmoji-{OPENMOJI_VERSION}.tgz"
TARBALL_URL = f"https://registry.npmjs.org/openmoji/-/{TARBALL}"
LICENSE_COPY = "LICENSE-OpenMoji.txt"
STATS_SIDE = 256  # palette and colour shares are measured at most at this side
HISTOGRAM_SIDE = 64  # Lab histograms for the colorific condition, on thumbnails
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PACKAGE_FILES = ("color/svg/", "black/svg/", "data/openmoji.json", "LICENSE.txt")

ATTRIBUTION = """# OpenMoji

All emojis designed by OpenMoji – the open-source emoji and icon project.
License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). https://openmoji.org

The images in this folder are the colour and black line-art SVGs of OpenMoji {version},
rasterised unchanged on a white background at {size}×{size} px with resvg. They are shared
under the same licence, CC BY-SA 4.0; the licence text is in {license_copy}.
"""


# ---------------------------------------------------------------- the package


def _extract(tarball: Path, into: Path) -> Path:
    """Extract the files this script needs from the npm tarball; returns the package folder."""
    package = into / "package"
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            name = member.name.removeprefix("package/")
            wanted = any(name.startswith(prefix) for prefix in _PACKAGE_FILES)
            if not member.isfile() or not wanted or ".." in Path(name).parts:
                continue
            destination = package / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as data:
                destination.write_bytes(data.read())
    return package


def _npm_pack(out: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ValueError(
            f"npm was not found and no --source was given; install Node.js/npm, or download "
            f"{TARBALL_URL} and pass --source path/to/{TARBALL}"
        )
    result = subprocess.run(
        [npm, "pack", PACKAGE, "--pack-destination", str(out)], capture_output=True, text=True
    )
    if result.returncode != 0 or not (out / TARBALL).is_file():
        raise ValueError(f"`npm pack {PACKAGE}` failed: {result.stderr.strip()[-500:]}")
    return out / TARBALL


def locate_package(source: Path | None, out: Path, workdir: Path) -> Path:
    """The OpenMoji package folder (it holds data/openmoji.json).

    From `source` (a .tgz or an extracted folder, or its parent holding package/), else from
    the tarball kept in `out` by an earlier run, else from `npm pack` (saved to `out`).
    """
    if source is None:
        source = out / TARBALL if (out / TARBALL).is_file() else _npm_pack(out)
    if source.is_file():
        try:
            return _extract(source, workdir)
        except (tarfile.TarError, OSError) as exc:
            raise ValueError(f"--source {source} is not a readable .tgz: {exc}") from exc
    for folder in (source, source / "package"):
        if (folder / "data" / "openmoji.json").is_file():
            return folder
    raise ValueError(f"--source {source} is neither a .tgz nor a folder with data/openmoji.json")


# ---------------------------------------------------------------- metadata


def read_entries(package: Path) -> list[dict]:
    """The package's emoji list (data/openmoji.json) in this dataset's item form.

    skintone: the Fitzpatrick tones (1–5) the emoji shows, one per person; [0] for the default
    yellow of an emoji that has toned variants; [] otherwise.
    """
    raw = json.loads((package / "data" / "openmoji.json").read_text(encoding="utf-8"))
    has_variants = {e["skintone_base_hexcode"] for e in raw if e["skintone_base_hexcode"]}
    entries = []
    for e in raw:
        tones = [int(t) for t in str(e["skintone"]).split(",") if t.strip()]
        tags = [t.strip() for t in f"{e['tags']},{e['openmoji_tags']}".split(",") if t.strip()]
        entries.append(
            {
                "hexcode": e["hexcode"],
                "emoji": e["emoji"],
                "annotation": e["annotation"],
                "group": e["group"],
                "subgroup": e["subgroups"],
                "tags": list(dict.fromkeys(tags)),
                "skintone": tones or ([0] if e["hexcode"] in has_variants else []),
                "base_hexcode": e["skintone_base_hexcode"] or e["hexcode"],
            }
        )
    return entries


def assign_splits(
    entries: Sequence[dict], *, val: float = 0.05, test: float = 0.05, seed: int = 0
) -> dict[str, str]:
    """Split of each base emoji: base groups in a seeded shuffle fill test, then val, then train.

    Test and val each get at least ⌈fraction·N⌉ images (whole groups, so slightly more), which
    keeps every skin-tone variant of one drawing in one split.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"need val >= 0, test >= 0 and val + test < 1, got val={val}, test={test}")
    sizes = Counter(e["base_hexcode"] for e in entries)
    bases = sorted(sizes)
    random.Random(seed).shuffle(bases)
    quota = {"test": math.ceil(test * len(entries)), "val": math.ceil(val * len(entries))}
    filled = Counter()
    split_of = {}
    for base in bases:
        split = next((s for s in ("test", "val") if filled[s] < quota[s]), "train")
        split_of[base] = split
        filled[split] += sizes[base]
    return split_of


def cross_reference_pairs(items: Sequence[dict], *, seed: int = 0) -> dict[str, list[dict]]:
    """Per split: for each person P and tone k, a reference Q ≠ P in tone k (same subgroup
    preferred), ground truth P in tone k. Only single-tone variants (one person) are used."""
    pairs: dict[str, list[dict]] = {}
    for split in SPLITS:
        toned: dict[tuple[str, int], str] = {}
        subgroup: dict[str, str] = {}
        for item in items:
            if item["split"] == split and len(item["skintone"]) == 1 and item["skintone"][0] > 0:
                toned[(item["base_hexcode"], item["skintone"][0])] = item["hexcode"]
                subgroup[item["base_hexcode"]] = item["subgroup"]
        rng = random.Random(f"{seed}/{split}")
        pairs[split] = []
        for base, tone in sorted(toned):
            others = sorted(b for b in subgroup if b != base and (b, tone) in toned)
            if not others:
                continue
            similar = [b for b in others if subgroup[b] == subgroup[base]]
            reference = rng.choice(similar or others)
            pairs[split].append(
                {
                    "sketch": toned[(base, tone)],
                    "reference": toned[(reference, tone)],
                    "target": toned[(base, tone)],
                    "skintone": tone,
                }
            )
    return pairs


# ---------------------------------------------------------------- rendering


def _rendered(path: Path, size: int) -> bool:
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            return image.size == (size, size)
    except OSError:
        return False


def _render(svg: Path, png: Path, size: int, mode: str) -> None:
    """Rasterise `svg` on white to a size×size PNG (written atomically: no half files)."""
    data = resvg_py.svg_to_bytes(svg_path=str(svg), background="#ffffff", width=size, height=size)
    image = Image.open(io.BytesIO(data)).convert(mode)
    partial = png.with_name(png.name + ".partial")
    image.save(partial, format="PNG")
    os.replace(partial, png)


def process_emoji(job: tuple[str, Path, Path, int, int]) -> dict:
    """Render one emoji (unless done) and measure it: palette, colour shares, Lab histogram."""
    hexcode, package, out, size, seed = job
    try:
        for kind, folder, mode in (("color", "color/svg", "RGB"), ("sketch", "black/svg", "L")):
            png = out / kind / f"{hexcode}.png"
            if not _rendered(png, size):
                _render(package / folder / f"{hexcode}.svg", png, size, mode)
        color = Image.open(out / "color" / f"{hexcode}.png").convert("RGB")
        sketch = Image.open(out / "sketch" / f"{hexcode}.png").convert("L")
    except (OSError, ValueError) as exc:
        return {"hexcode": hexcode, "error": str(exc)}
    side = min(size, STATS_SIDE)
    color_array = np.asarray(color.resize((side, side), Image.Resampling.BOX))
    lines = np.asarray(sketch.resize((side, side), Image.Resampling.BOX)) < 128
    shares = color_shares(color_array, line_mask=lines)
    thumbnail = np.asarray(color.resize((HISTOGRAM_SIDE, HISTOGRAM_SIDE), Image.Resampling.BOX))
    return {
        "hexcode": hexcode,
        "palette": [round(v, 4) for v in palette_kmeans(color_array, seed=seed).tolist()],
        # floored, not rounded, so the stored shares still sum to at most 1
        "color_shares": {
            name: math.floor(share * 1e4) / 1e4
            for name, share in zip(COLOR_NAMES, shares, strict=True)
        },
        "histogram": lab_histogram(thumbnail),
    }


@contextlib.contextmanager
def _one_thread_each() -> Iterator[None]:
    """Environment for worker processes: one BLAS/OpenMP thread each.

    numpy's BLAS otherwise starts a thread per core in every worker, and the oversubscribed
    workers ran 2.5× slower on a 2-core machine.
    """
    saved = {var: os.environ.get(var) for var in _THREAD_VARIABLES}
    os.environ.update({var: "1" for var in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var)
            else:
                os.environ[var] = value


def _run_jobs(jobs: list, workers: int) -> Iterator[dict]:
    progress = dict(total=len(jobs), desc="rendering OpenMoji", unit="emoji")
    if workers <= 1:
        yield from tqdm(map(process_emoji, jobs), **progress)
        return
    # spawned (not forked) workers import numpy afresh and so read the one-thread environment
    with _one_thread_each(), multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from tqdm(pool.imap(process_emoji, jobs, chunksize=16), **progress)


# ---------------------------------------------------------------- main


def prepare(
    out: Path,
    *,
    size: int = 256,
    source: Path | None = None,
    workers: int = 1,
    val: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
) -> dict:
    """Build the prepared folder `out` (see the module docstring); returns the metadata."""
    if size < 8:
        raise ValueError(f"--size must be at least 8, got {size}")
    out.mkdir(parents=True, exist_ok=True)
    for kind in ("color", "sketch"):
        (out / kind).mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openmoji-") as workdir:
        package = locate_package(source, out, Path(workdir))
        entries = read_entries(package)
        jobs = [(e["hexcode"], package, out, size, seed) for e in entries]
        measured = {m["hexcode"]: m for m in _run_jobs(jobs, workers)}
        if (package / "LICENSE.txt").is_file():
            shutil.copyfile(package / "LICENSE.txt", out / LICENSE_COPY)

    failed = [m for m in measured.values() if "error" in m]
    for m in failed:
        print(f"warning: skipped {m['hexcode']}: {m['error']}", file=sys.stderr)
    split_of = assign_splits(entries, val=val, test=test, seed=seed)
    items = []
    for e in entries:
        m = measured[e["hexcode"]]
        if "error" in m:
            continue
        items.append(
            {
                **e,
                "split": split_of[e["base_hexcode"]],
                "color": f"color/{e['hexcode']}.png",
                "sketch": f"sketch/{e['hexcode']}.png",
                "palette": m["palette"],
                "color_shares": m["color_shares"],
                "similar": [],
            }
        )
    by_split = defaultdict(list)
    for item in items:
        by_split[item["split"]].append(item)
    for split_items in by_split.values():
        neighbours = colour_similar(
            np.stack([measured[i["hexcode"]]["histogram"] for i in split_items]),
            [i["base_hexcode"] for i in split_items],
            seed=seed,
        )
        for item, found in zip(split_items, neighbours, strict=True):
            item["similar"] = [split_items[j]["hexcode"] for j in found]

    metadata = {
        "dataset": "openmoji",
        "version": OPENMOJI_VERSION,
        "license": "CC BY-SA 4.0",
        "attribution": "OpenMoji – the open-source emoji and icon project, https://openmoji.org",
        "size": size,
        "seed": seed,
        "splits": {split: len(by_split[split]) for split in SPLITS},
        "items": items,
        "cross_reference": cross_reference_pairs(items, seed=seed),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False, indent=1), "utf-8")
    (out / TAGS_FILE).write_text(json.dumps(tag_vocabulary(items), indent=1), "utf-8")
    (out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(version=OPENMOJI_VERSION, size=size, license_copy=LICENSE_COPY), "utf-8"
    )
    return metadata


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.prepare_openmoji", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/openmoji")
    parser.add_argument("--size", type=int, default=256, help="side of the square PNGs in pixels")
    parser.add_argument(
        "--source", type=Path, default=None,
        help=f"{TARBALL} or an extracted package folder, instead of `npm pack`",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="rendering processes"
    )
    parser.add_argument("--val", type=float, default=0.05, help="share of images for validation")
    parser.add_argument("--test", type=float, default=0.05, help="share of images for testing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the k-means")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        metadata = prepare(
            args.out, size=args.size, source=args.source, workers=args.workers,
            val=args.val, test=args.test, seed=args.seed,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{split} {n}" for split, n in metadata["splits"].items())
    pairs = ", ".join(f"{s} {len(p)}" for s, p in metadata["cross_reference"].items())
    print(
        f"wrote {len(metadata['items'])} emoji at {args.size} px to {args.out} in "
        f"{time.perf_counter() - start:.1f} s ({counts}; cross-reference pairs: {pairs})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
