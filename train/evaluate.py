"""Evaluate a colorization method or a non-learned baseline under one of the papers' protocols.

    python -m train.evaluate --weights weights/sga --data data/openmoji --split test --protocol self
    python -m train.evaluate --weights runs/sga-1 --method sga ...   # a training run folder
    python -m train.evaluate --random-init small --method csft ...   # untrained, "random" weights
    python -m train.evaluate --baseline regions ...                  # white | mean | regions | …

Protocols (all on a prepared OpenMoji folder, `python -m train.prepare_openmoji`):

    self    reference = the ground truth warped by a TPS (Cao et al. §III-A; the dataset's own
            warp with a fixed seed per image, no crop, no colour jitter): PSNR, SSIM, MS-SSIM and,
            where its weights are on disk, LPIPS against the ground truth (Cao et al. §IV,
            Khang et al. §4.3)
    cross   OpenMoji's skin tones (`train.data.OpenMojiCrossReference`): sketch of person P,
            reference Q in tone k, ground truth P in tone k: PSNR, SSIM and the mean CIEDE2000
            ΔE over P's skin pixels (`train.metrics.skin_mask`)
    random  reference = another image of the split (a fixed-seed derangement): FID on the
            tagger's pooled features against the split's ground truths, NDB and JSD against
            k-means bins of the training split (Cui et al. §4.4), Inception FID where its
            weights are on disk (Cao et al. §IV, Ci et al. §4.3.1)

`hints` reads simulated strokes instead of a reference: `colorize.hints.simulate_hint` of the
ground truth (self; std 0.1, denser than training's 0.005: half of the images get no hint as
in Ci et al. §3.1, the others about 8 % of the ¼-res cells) and no strokes at all under
random, the automatic colorization that Ci et al. §4.3.1 score with FID. It has no reference
to follow, so cross does not apply to it. `tags` is also scored on a tag edit: the
reference's `color:red` value raised by 1 through the attached TagMapper (Yan et al. §3.5),
reporting the mean change of the red share of the output (`colorize.tags.color_shares`).

Each run writes `<out>/eval/<name>-<protocol>-<size>px.json` and rebuilds `<out>/eval/table.md`
from all the JSON files there, so a re-run replaces its own row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from colorize.devices import device_name
from colorize.hints import HINT_SCALE, simulate_hint
from colorize.image_tensors import image_to_tensor, tensor_to_array
from colorize.models import GENERATORS, Tagger, build_generator, presets, saved_model
from colorize.palette import palette_kmeans
from colorize.snap import snap_to_regions
from colorize.tags import COLOR_NAMES, color_shares
from train.baselines import BASELINES
from train.data import OpenMojiCrossReference, OpenMojiDataset, SampleOptions
from train.data.base import fit_square, open_image
from train.data.openmoji import read_metadata
from train.metrics import (
    LPIPS,
    InceptionFeatures,
    NDBBins,
    batched_features,
    fid_from_features,
    finite_mean,
    masked_delta_e,
    ms_ssim,
    ms_ssim_scales,
    mse,
    ndb_samples,
    psnr_of_mse,
    skin_mask,
    ssim,
    to_unit,
)

PROTOCOLS = {
    "self": "self-reference: reference = TPS-warped ground truth, metrics against the ground truth",
    "cross": "cross-reference: sketch of P + reference Q in skin tone k, ground truth P in tone k",
    "random": "random reference: another image of the split; distribution metrics",
}
EVAL_HINT_STD = 0.1  # std of ξ in Ci et al.'s hint mask B = R > |ξ| (training: 0.005)
TAG_EDIT = 1.0  # added to the reference's color:red value (Yan et al. §4.4: values may exceed 1)
RED_TAG = "color:red"
NDB_BINS = (
    20  # Richardson & Weiss use 100 bins for tens of thousands of images; the test split has 226
)
NDB_SIDE = 16
NDB_ALPHA = 0.05
SELF_OPTIONS = SampleOptions(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
LPIPS_ENV = "COLORIZE_LPIPS_WEIGHTS"
INCEPTION_ENV = "COLORIZE_INCEPTION_WEIGHTS"
RESULTS_FOLDER = "eval"
TABLE_FILE = "table.md"


# ---------------------------------------------------------------------------------------------
# what is evaluated


@dataclass
class Subject:
    """A generator or a baseline under test: its row name, where its weights came from
    ("trained" = loaded from files, "random" = untrained, "none" = a baseline) and how to run it."""

    name: str
    kind: str
    weights: str
    source: str
    conditions: tuple[str, ...]
    run: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]
    model: torch.nn.Module | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def uses_reference(self) -> bool:
        return bool({"reference", "palette"} & set(self.conditions))

    @property
    def uses_hint(self) -> bool:
        return "hint" in self.conditions


def method_of_folder(folder: Path) -> str | None:
    """The GENERATORS key of a `save_pretrained` folder (from config.json's `_class_name`)."""
    found = saved_model(folder)
    return found[0] if found is not None and found[0] in GENERATORS else None


def resolve_weights(path: Path, method: str | None = None) -> tuple[str, Path]:
    """(method key, folder) of `path`: a generator's `save_pretrained` folder, a `weights/`
    folder of them, or a training run folder holding `weights/<method>/`."""
    if not path.exists():
        raise ValueError(f"--weights {path} does not exist")
    if (path / "config.json").is_file():
        folders = [path]
    else:
        parents = [p for p in (path / "weights", path) if p.is_dir()]
        folders = sorted(
            child for parent in parents for child in parent.iterdir() if child.is_dir()
        )
    found = {folder: key for folder in folders if (key := method_of_folder(folder))}
    if method is not None:
        found = {folder: key for folder, key in found.items() if key == method}
    if len(found) == 1:
        return next(iter(found.items()))[::-1]
    wanted = f"saved {method!r} generator" if method else "saved generator"
    if not found:
        classes = sorted(cls.__name__ for cls in GENERATORS.values())
        raise ValueError(
            f"found no {wanted} (config.json with a _class_name of {classes}) in {path}"
        )
    raise ValueError(
        f"{path} holds several generators ({', '.join(sorted(found.values()))}); pick one "
        "with --method"
    )


def reference_palettes(reference: torch.Tensor) -> torch.Tensor:
    """The k-means palettes [B, 27] of references [B, 3, H, W], as at inference."""
    return torch.stack([palette_kmeans(tensor_to_array(image)) for image in reference])


def _generator_run(model: torch.nn.Module, device: torch.device) -> Callable:
    """(sketch, reference, hint) -> image for a generator: passes the conditions it reads, the
    palette computed from the reference (Khang et al. §3.1) as at inference."""

    def run(sketch, reference, hint):
        kwargs = {}
        if "reference" in model.conditions:
            kwargs["reference"] = reference.to(device)
        if "palette" in model.conditions:
            kwargs["palette"] = reference_palettes(reference).to(device)
        if "hint" in model.conditions:
            kwargs["hint"] = hint.to(device)
        with torch.no_grad():
            return model(sketch.to(device), **kwargs).image.float().cpu()

    return run


def load_subject(args: argparse.Namespace, vocabulary: list[str], device: torch.device) -> Subject:
    """The baseline, the untrained generator or the saved generator the arguments name."""
    if args.baseline:
        if args.weights or args.random_init or args.method or args.snap:
            raise ValueError("--baseline takes no --weights, --random-init, --method or --snap")
        baseline = BASELINES[args.baseline]
        return Subject(
            f"baseline-{args.baseline}", "baseline", "none", baseline.description,
            baseline.conditions, baseline,
        )  # fmt: skip
    if args.random_init:
        if args.weights:
            raise ValueError("give either --weights or --random-init, not both")
        if not args.method:
            raise ValueError("--random-init needs --method (one of " + ", ".join(GENERATORS) + ")")
        key, source, weights = args.method, f"preset {args.random_init}", "random"
        torch.manual_seed(args.seed)
        overrides = {"num_tags": len(vocabulary)} if key == "tags" else {}
        model = build_generator(key, args.random_init, **overrides)
        notes = [f"random weights: untrained {args.random_init!r} preset, seed {args.seed}"]
        if key == "tags":
            model.attach_mapper(model.build_mapper())
            notes.append("tags: untrained TagMapper attached for the tag edit")
    elif args.weights:
        key, folder = resolve_weights(Path(args.weights), args.method)
        model = GENERATORS[key].from_pretrained(folder)
        source, weights, notes = str(folder), "trained", []
    else:
        raise ValueError("give --weights PATH, --random-init SIZE (with --method) or --baseline")
    model = model.eval().to(device)
    run, name = _generator_run(model, device), key
    if args.snap:
        run, name = _snapped(run), f"{key}+snap"
        notes.append("outputs snapped to the sketch's regions (colorize.snap, flat), as the app")
    return Subject(
        name, "method", weights, source, tuple(model.conditions), run, model, notes,
    )  # fmt: skip


def _snapped(run: Callable) -> Callable:
    """`run` followed by the app's region snap (flat: one median colour per line-art region)."""

    def snapped(sketch, reference, hint):
        images = run(sketch, reference, hint)
        out = []
        for line, image in zip(sketch, images, strict=True):
            colors = snap_to_regions(tensor_to_array(line)[:, :, 0], tensor_to_array(image))
            out.append(image_to_tensor(Image.fromarray(colors)))
        return torch.stack(out)

    return snapped


# ---------------------------------------------------------------------------------------------
# the protocols' samples


@dataclass
class Batch:
    """Stacked samples: images [B, C, H, W] in [-1, 1]; `default` is P's default-yellow
    rendering (cross protocol, for the skin mask)."""

    ids: list[str]
    sketch: torch.Tensor
    target: torch.Tensor
    reference: torch.Tensor | None = None
    hint: torch.Tensor | None = None
    default: torch.Tensor | None = None


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample `index`: the same warp and hint whatever the batch size or limit."""
    return seed * 1_000_003 + index


def select_indices(count: int, limit: int | None, seed: int) -> list[int]:
    """All indices, or a fixed-seed random subset of `limit` of them (in order)."""
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    return sorted(np.random.default_rng(seed).permutation(count)[:limit].tolist())


def derangement(count: int, seed: int) -> np.ndarray:
    """For each image, a random other image of the split (fixed seed): the random references."""
    if count < 2:
        raise ValueError(f"the random protocol needs at least 2 images in the split, got {count}")
    other = np.random.default_rng(seed).integers(count - 1, size=count)
    return other + (other >= np.arange(count))


class ProtocolSamples:
    """The samples of one protocol on one split, loaded by index (see the module docstring)."""

    def __init__(
        self, protocol: str, root: Path, split: str, size: int, subject: Subject, seed: int
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
        if protocol == "cross" and subject.uses_hint:
            raise ValueError(
                f"{subject.name} colours from hint strokes, not a reference, so the "
                "cross-reference protocol does not apply; use --protocol self or random"
            )
        self.protocol, self.root, self.size, self.seed = protocol, root, size, seed
        self.subject = subject
        if protocol == "cross":
            self.pairs = OpenMojiCrossReference(root, split, size)
            self.count = len(self.pairs)
        else:
            conditions = ("reference",) if protocol == "self" and subject.uses_reference else ()
            self.dataset = OpenMojiDataset(
                root, split, size, conditions=conditions, augment=False, options=SELF_OPTIONS
            )
            self.count = len(self.dataset)
            if protocol == "random":
                self.partner = derangement(self.count, seed)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> dict:
        """Sample `index`: sketch, target and what the subject reads (reference, hint)."""
        if self.protocol == "cross":
            sample = self.pairs[index]
            items = self.pairs.items
            base = items[sample["meta"]["id"]]["base_hexcode"]
            default = open_image(self.root / items[base]["color"], "RGB")
            sample["default"] = image_to_tensor(fit_square(default, self.size))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, index))
                sample = self.dataset[index]
            if self.protocol == "random" and self.subject.uses_reference:
                sample["reference"] = self.dataset[int(self.partner[index])]["target"]
        if self.subject.uses_hint:
            target = sample["target"]
            if self.protocol == "self":
                generator = torch.Generator().manual_seed(sample_seed(self.seed, index))
                sample["hint"] = simulate_hint(target, std=EVAL_HINT_STD, generator=generator)
            else:
                side = target.shape[-1] // HINT_SCALE
                sample["hint"] = torch.zeros(4, side, side)
        return sample

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[Batch]:
        """The samples at `indices`, stacked `batch_size` at a time."""
        for start in range(0, len(indices), batch_size):
            yield self.collate([self.load(i) for i in indices[start : start + batch_size]])

    def collate(self, samples: list[dict]) -> Batch:
        """One batch of loaded samples (the reference only if the subject reads it)."""

        def stack(key: str) -> torch.Tensor | None:
            return torch.stack([s[key] for s in samples]) if key in samples[0] else None

        return Batch(
            [s["meta"]["id"] for s in samples], stack("sketch"), stack("target"),
            stack("reference") if self.subject.uses_reference else None,
            stack("hint"), stack("default"),
        )  # fmt: skip


def split_images(root: Path, split: str, size: int, description: str) -> torch.Tensor:
    """Every ground-truth colour image of a split, [N, 3, H, W] in [0, 1] (8-bit grid), read
    straight from the files (as `OpenMojiDataset` with augment=False, without the sketches)."""
    metadata, _ = read_metadata(root)
    items = [item for item in metadata["items"] if item["split"] == split]
    arrays = [
        np.asarray(fit_square(open_image(root / item["color"], "RGB"), size))
        for item in tqdm(items, desc=description)
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255


# ---------------------------------------------------------------------------------------------
# optional networks and the feature tagger


def weight_paths(option: Sequence[str] | None, env: str) -> list[Path] | None:
    """Weight files from a command-line option, else from environment variable `env`
    (os.pathsep-separated); None when neither is set."""
    if option:
        return [Path(p) for p in option]
    value = os.environ.get(env, "")
    return [Path(p) for p in value.split(os.pathsep) if p] or None


def load_feature_tagger(
    path: str | None, vocabulary: list[str], seed: int, device: torch.device
) -> tuple[Tagger, str]:
    """The tagger whose pooled features FID uses (a saved Tagger folder or a run folder with
    weights/tagger/; else a random-init one), and how it was obtained."""
    if path:
        folder = Path(path)
        if not (folder / "config.json").is_file() and (folder / "weights" / "tagger").is_dir():
            folder = folder / "weights" / "tagger"  # a training run folder
        if not (folder / "config.json").is_file():
            raise ValueError(f"--tagger {path} is neither a saved Tagger nor a run with one")
        return Tagger.from_pretrained(folder).eval().to(device), f"tagger {folder}"
    torch.manual_seed(seed)
    tagger = Tagger(**{**presets("tagger", "small"), "num_tags": len(vocabulary)})
    return tagger.eval().to(device), f"random-init tagger (small preset, seed {seed})"


def tagger_features(tagger: Tagger, device: torch.device) -> Callable:
    """Images [B, 3, H, W] in [0, 1] -> the tagger's pooled features [B, C]."""

    def features(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pooled = tagger.features((images * 2 - 1).float().to(device), ["pooled"])["pooled"]
        return pooled.double().cpu()

    return features


def red_share(images: torch.Tensor, sketch: torch.Tensor) -> np.ndarray:
    """Share of red pixels [B] of images [B, 3, H, W] in [-1, 1], lines and paper excluded."""
    red = COLOR_NAMES.index("red")
    lines = sketch[:, 0] < 0
    return np.array(
        [
            color_shares(tensor_to_array(im), line_mask=m.numpy())[red]
            for im, m in zip(images, lines, strict=True)
        ]
    )


def tag_edit_change(
    model: torch.nn.Module, batch: Batch, output: torch.Tensor, red_index: int, device: torch.device
) -> np.ndarray:
    """Change of the red share [B] when the reference's color:red tag value is raised by
    TAG_EDIT through the attached TagMapper (Yan et al. Eq. 10)."""
    reference = batch.reference.to(device)
    with torch.no_grad():
        anchor = model.reference_tags(reference)
        target = anchor.clone()
        target[:, red_index] += TAG_EDIT
        edited = model(batch.sketch.to(device), reference=reference, tags=target).image.cpu()
    return red_share(edited, batch.sketch) - red_share(output, batch.sketch)


# ---------------------------------------------------------------------------------------------
# the run


def _json_value(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def evaluate(args: argparse.Namespace) -> dict:
    """Run one evaluation and return its record (see `write_results` for where it goes)."""
    root = Path(args.data)
    _, vocabulary = read_metadata(root)
    device = torch.device(args.device)
    subject = load_subject(args, vocabulary, device)
    notes = list(subject.notes)
    samples = ProtocolSamples(args.protocol, root, args.split, args.size, subject, args.seed)
    indices = select_indices(len(samples), args.limit, args.seed)
    settings: dict = {"seed": args.seed, "batch_size": args.batch_size}
    if args.protocol == "self" and subject.uses_reference:
        settings["reference"] = f"TPS warp, strength {SELF_OPTIONS.tps_strength}, no jitter"
    if subject.uses_hint:
        settings["hint"] = (
            f"simulate_hint std {EVAL_HINT_STD}" if args.protocol == "self" else "none (Ci §4.3.1)"
        )

    lpips = None
    if args.protocol == "self":
        settings["ms_ssim_scales"] = ms_ssim_scales(args.size)
        paths = weight_paths(args.lpips_weights, LPIPS_ENV)
        if paths:
            lpips = LPIPS.from_files(paths).to(device)
            settings["lpips_weights"] = [str(p) for p in paths]
        else:
            notes.append(f"LPIPS skipped: no weights on disk (--lpips-weights or ${LPIPS_ENV})")

    red_index = None
    if subject.name == "tags":
        model = subject.model
        if model.mapper is None:
            notes.append("tag edit skipped: the generator has no TagMapper attached")
        elif model.config.num_tags != len(vocabulary) or RED_TAG not in vocabulary:
            notes.append(
                f"tag edit skipped: the generator has {model.config.num_tags} tags, the data's "
                f"vocabulary {len(vocabulary)}"
            )
        else:
            red_index = vocabulary.index(RED_TAG)
            settings["tag_edit"] = f"{RED_TAG} + {TAG_EDIT}"

    per_image: dict[str, list[float]] = {}
    outputs: list[torch.Tensor] = []
    torch.manual_seed(args.seed)
    progress = tqdm(
        samples.batches(indices, args.batch_size),
        total=math.ceil(len(indices) / args.batch_size),
        desc=f"{subject.name} {args.protocol}",
        unit="batch",
    )
    for batch in progress:
        output = subject.run(batch.sketch, batch.reference, batch.hint)
        produced, truth = to_unit(output), to_unit(batch.target)
        scores: dict[str, torch.Tensor | np.ndarray] = {}
        if args.protocol in ("self", "cross"):
            scores["mse"], scores["ssim"] = mse(produced, truth), ssim(produced, truth)
        if args.protocol == "self":
            scores["ms_ssim"] = ms_ssim(produced, truth)
            if lpips is not None:
                with torch.no_grad():
                    scores["lpips"] = lpips(produced.float() * 2 - 1, truth.float() * 2 - 1).cpu()
        if args.protocol == "cross":
            skin = skin_mask(to_unit(batch.default), truth)
            scores["delta_e00_skin"], scores["delta_e76_skin"] = masked_delta_e(
                produced, truth, skin
            )
            scores["skin_pixels"] = skin.sum(dim=(1, 2)).double()
        if args.protocol == "random":
            outputs.append(produced.float())
        if red_index is not None:
            scores["red_share_change"] = tag_edit_change(
                subject.model, batch, output, red_index, device
            )
        for key, values in scores.items():
            per_image.setdefault(key, []).extend(np.asarray(values, np.float64).tolist())

    metrics = {key: finite_mean(values) for key, values in per_image.items()}
    if "mse" in metrics:  # PSNR of the mean MSE: one exact reproduction must not make it +inf
        metrics["psnr"] = float(psnr_of_mse(metrics["mse"]))
    if args.protocol == "cross":
        metrics["pairs_without_skin"] = int(sum(v == 0 for v in per_image["skin_pixels"]))
    if args.protocol == "random":
        metrics.update(
            distribution_metrics(
                args, root, torch.cat(outputs), vocabulary, device, notes, settings
            )
        )
    return {
        "name": subject.name,
        "kind": subject.kind,
        "weights": subject.weights,
        "source": subject.source,
        "protocol": args.protocol,
        "dataset": "openmoji",
        "data": str(root),
        "split": args.split,
        "n": len(indices),
        "split_size": len(samples),
        "size": args.size,
        "device": device_name(device),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "metrics": {key: _json_value(value) for key, value in metrics.items()},
        "settings": settings,
        "notes": notes,
    }


def distribution_metrics(
    args: argparse.Namespace,
    root: Path,
    produced: torch.Tensor,
    vocabulary: list[str],
    device: torch.device,
    notes: list[str],
    settings: dict,
) -> dict[str, float]:
    """FID (tagger features; Inception where weights exist), NDB and JSD of the outputs
    [N, 3, H, W] in [0, 1] (random protocol)."""
    real = split_images(root, args.split, args.size, f"ground truths of {args.split}")
    tagger, tagger_source = load_feature_tagger(args.tagger, vocabulary, args.seed, device)
    if args.size % tagger.stride:
        raise ValueError(
            f"--size {args.size} must be a multiple of the tagger's stride {tagger.stride}"
        )
    if not args.tagger:
        notes.append(
            "FID on the features of a random-init tagger (no --tagger given): comparable only "
            "between runs with the same seed"
        )
    features = tagger_features(tagger, device)
    metrics = {
        "fid_tagger": fid_from_features(
            batched_features(features, produced), batched_features(features, real)
        )
    }
    settings.update(fid_features=f"{tagger_source}, pooled", fid_real=f"{len(real)} ground truths")

    paths = weight_paths(
        [args.inception_weights] if args.inception_weights else None, INCEPTION_ENV
    )
    if paths:
        inception = InceptionFeatures(paths[0], device)
        metrics["fid_inception"] = fid_from_features(
            batched_features(inception, produced), batched_features(inception, real)
        )
        settings["inception_weights"] = str(paths[0])
    else:
        notes.append(
            f"Inception FID skipped: no weights on disk (--inception-weights or ${INCEPTION_ENV})"
        )

    train = split_images(root, "train", args.size, "NDB bins: training images")
    if args.ndb_bins > len(train):
        raise ValueError(f"--ndb-bins {args.ndb_bins} exceeds the {len(train)} training images")
    bins = NDBBins.fit(ndb_samples(train, NDB_SIDE), args.ndb_bins, seed=args.seed)
    result = bins.score(ndb_samples(produced, NDB_SIDE), alpha=NDB_ALPHA)
    metrics.update(ndb=result.ndb, ndb_bins=result.bins, jsd=result.jsd)
    settings["ndb"] = (
        f"{args.ndb_bins} k-means bins of {len(train)} training images at {NDB_SIDE}x{NDB_SIDE} "
        f"px, two-sided proportion test at alpha {NDB_ALPHA}"
    )
    return metrics


# ---------------------------------------------------------------------------------------------
# results: JSON per run and the markdown table


# (metric key, column title, format) per protocol, in table order
TABLE_COLUMNS = {
    "self": [
        ("psnr", "PSNR ↑", "{:.2f}"),
        ("ssim", "SSIM ↑", "{:.3f}"),
        ("ms_ssim", "MS-SSIM ↑", "{:.3f}"),
        ("lpips", "LPIPS ↓", "{:.3f}"),
        ("red_share_change", "Δ red share (tag edit)", "{:+.4f}"),
    ],
    "cross": [
        ("psnr", "PSNR ↑", "{:.2f}"),
        ("ssim", "SSIM ↑", "{:.3f}"),
        ("delta_e00_skin", "ΔE00 skin ↓", "{:.2f}"),
        ("red_share_change", "Δ red share (tag edit)", "{:+.4f}"),
    ],
    "random": [
        ("fid_tagger", "FID tagger ↓", "{:.4g}"),
        ("fid_inception", "FID Inception ↓", "{:.4g}"),
        ("ndb", "NDB ↓", "{:.0f}"),
        ("jsd", "JSD ↓", "{:.4f}"),
        ("red_share_change", "Δ red share (tag edit)", "{:+.4f}"),
    ],
}
TABLE_NOTES = """\
"random" weights are untrained models: their numbers only show that the pipeline runs, not
how well a method colours. Baselines are non-learned (`train/baselines.py`). Metrics are taken
on 8-bit outputs; SSIM, MS-SSIM, LPIPS and ΔE are means over images, PSNR is that of the mean
MSE (a per-image mean would be infinite as soon as one image is reproduced exactly).

- **self**: reference = the ground truth warped by a TPS (fixed seed per image, no jitter).
  MS-SSIM keeps the finest of the 5 standard scales that hold the 11-px window (4 at 128 px),
  weights renormalised. LPIPS (AlexNet) only where its weights are on disk. `hints` reads
  simulated strokes of the ground truth (std 0.1) instead of a reference.
- **cross**: OpenMoji skin tones: sketch of person P + another person Q in tone k, ground
  truth P in tone k. ΔE00 = CIEDE2000 over P's skin pixels (pixels that are the default skin
  yellow #FCEA2B in P's default rendering and change in tone k, ΔE76 > 10).
- **random**: reference = another image of the split (fixed seed). FID on the tagger's pooled
  features against the split's ground truths (†: a random-init tagger, no trained one given);
  NDB = bins (of NDB_BINS k-means bins over the training split at 16×16 px) whose share differs
  at α = 0.05, JSD of the bin histograms (natural log). `hints` gets no strokes (Ci et al.
  §4.3.1), so it colours automatically.
- **Δ red share**: `tags` only: mean change of the share of red pixels when the reference's
  `color:red` tag is raised by 1 through the TagMapper.
"""


def result_path(out: Path, name: str, protocol: str, size: int) -> Path:
    """`<out>/eval/<name>-<protocol>-<size>px.json`: one file per row of the table."""
    return out / RESULTS_FOLDER / f"{name}-{protocol}-{size}px.json"


def _row_order(record: dict) -> tuple:
    name, size = record["name"], record["size"]
    if record["kind"] == "method":
        base = name.split("+")[0]  # "sga+snap" right after "sga"
        order = list(GENERATORS).index(base) if base in GENERATORS else len(GENERATORS)
        return (size, 0, order, name)
    key = name.removeprefix("baseline-")
    return (size, 1, list(BASELINES).index(key) if key in BASELINES else len(BASELINES), name)


def _cell(record: dict, key: str, fmt: str) -> str:
    metrics = record["metrics"]
    value = metrics.get(key)
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if key == "ndb":
        return f"{value}/{metrics.get('ndb_bins', '?')}"
    text = fmt.format(value)
    if key == "fid_tagger" and "random-init" in record["settings"].get("fid_features", ""):
        text += " †"
    return text


def render_table(records: Sequence[dict]) -> str:
    """The markdown of all records: one table per protocol, rows ordered methods then baselines."""
    lines = ["# Evaluation results", "", "Written by `python -m train.evaluate`; one row per "
             "method or baseline and protocol, replaced when re-run.", "",
             TABLE_NOTES.replace("NDB_BINS", "K"), ""]  # fmt: skip
    for protocol, description in PROTOCOLS.items():
        rows = sorted((r for r in records if r["protocol"] == protocol), key=_row_order)
        if not rows:
            continue
        columns = [c for c in TABLE_COLUMNS[protocol] if any(c[0] in r["metrics"] for r in rows)]
        header = ["method", "weights", *(title for _, title, _ in columns)]
        header += ["n", "px", "data", "device", "date"]
        lines += [f"## {description}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            label = r["name"].replace("baseline-", "baseline: ")
            weights = {"none": "non-learned"}.get(r["weights"], r["weights"])
            cells = [label, weights, *(_cell(r, key, fmt) for key, _, fmt in columns)]
            data = f"{r['dataset']} {r['split']} ({r['split_size']})"
            cells += [str(r["n"]), str(r["size"]), data, r["device"], r["date"]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_results(record: dict, out: Path) -> tuple[Path, Path]:
    """Write the run's JSON and rebuild the table from every JSON in `<out>/eval/`."""
    path = result_path(out, record["name"], record["protocol"], record["size"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    records = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(path.parent.glob("*.json"))
    ]
    table = path.parent / TABLE_FILE
    table.write_text(render_table(records), encoding="utf-8")
    return path, table


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a colorization method or a baseline on a prepared OpenMoji folder.",
    )
    subject = parser.add_argument_group("what to evaluate (one of)")
    subject.add_argument(
        "--weights",
        help="a generator's save_pretrained folder, or a training run folder with weights/<key>/",
    )
    subject.add_argument(
        "--random-init",
        choices=("small", "paper"),
        help="an untrained generator of this preset size (needs --method)",
    )
    subject.add_argument("--baseline", choices=tuple(BASELINES), help="a non-learned baseline")
    parser.add_argument(
        "--method",
        choices=tuple(GENERATORS),
        help="method key, when --weights holds several or for --random-init",
    )
    parser.add_argument("--data", default="data/openmoji", help="prepared OpenMoji folder")
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to evaluate"
    )
    parser.add_argument(
        "--protocol", required=True, choices=tuple(PROTOCOLS), help="evaluation protocol"
    )
    parser.add_argument("--out", default="results", help="results folder; writes <out>/eval/")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument(
        "--limit", type=int, help="evaluate a fixed-seed random subset of this many samples"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of warps, hints, references, subsets, bins"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    parser.add_argument(
        "--tagger", help="a trained Tagger's folder (or its run folder): the FID feature network"
    )
    parser.add_argument(
        "--snap", action="store_true",
        help="snap a method's outputs to the sketch's regions, as the app does (row <name>+snap)",
    )  # fmt: skip
    parser.add_argument("--ndb-bins", type=int, default=NDB_BINS, help="k-means bins of NDB/JSD")
    parser.add_argument(
        "--lpips-weights",
        nargs="+",
        help=f"AlexNet + LPIPS v0.1 linear-layer state dicts (default ${LPIPS_ENV})",
    )
    parser.add_argument(
        "--inception-weights", help=f"FID Inception TorchScript file (default ${INCEPTION_ENV})"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        print(f"  {key:20s} {value:.4f}" if isinstance(value, float) else f"  {key:20s} {value}")


def evaluate_and_report(evaluate: Callable[[argparse.Namespace], dict],
                        args: argparse.Namespace) -> int:  # fmt: skip
    """The end of a support model's evaluation command (tagger, line extractor): its record
    written to `<args.out>/eval/` (the colorization table lists no such rows) and printed, or
    one error message and exit code 2."""
    try:
        record = evaluate(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path, _ = write_results(record, Path(args.out))
    print(f"{record['name']}, {record['protocol']} protocol, {record['split']} split, "
          f"{record['size']} px:")  # fmt: skip
    print_metrics(record["metrics"])
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        record = evaluate(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path, table = write_results(record, Path(args.out))
    label = {"random": " (random weights)", "trained": "", "none": " (baseline)"}[record["weights"]]
    print(
        f"{record['name']}{label}, {record['protocol']} protocol, "
        f"{record['n']} images at {record['size']} px:"
    )
    print_metrics(record["metrics"])
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"wrote {path} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
