"""Publish a finished training run as default weights: fp16 `save_pretrained` + a model card.

    python -m train.publish runs/sga                 # -> weights/sga/ (README.md, config.json, …)
    python -m train.publish runs/sga --card-only     # refresh the card after `train.evaluate`

The exported model of the run (`runs/<name>/weights/<model>/`, what train/run.py writes) is
saved in fp16 under `<out>/<model>/` next to its extra files (tags.json), the run's resolved
config as `train_<recipe>.toml` and `training.json`: one record per published run (a `tags`
model lists step 1 and the tag-mapper step). `Colorizer` and `python -m train.evaluate` load
the folder back in fp32. The model card README.md is rendered from `training.json` and every
`train.evaluate` result of this model (with the baselines of the same protocol and size) in
`<results>/eval/`, so publish again with `--card-only` after evaluating.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from colorize.models import GENERATORS, SUPPORT_MODELS, saved_model
from train.run import SUMMARY_FILE

TRAINING_FILE = "training.json"
CARD_FILE = "README.md"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
BASELINES_SHOWN = ("baseline-white", "baseline-mean", "baseline-regions", "baseline-regions-hints",
                   "baseline-xdog")
DATA_CREDIT = (
    "Trained on [OpenMoji](https://openmoji.org) 17.0.0 (the open-source emoji and icon "
    "project; colour and hand-drawn line-art SVGs, rendered with `python -m "
    "train.prepare_openmoji`), licensed [CC BY-SA 4.0]"
    "(https://creativecommons.org/licenses/by-sa/4.0/). The weights are derived from that "
    "data and shared under the same licence; the code that trained them is MIT."
)
ABOUT = {
    "sga": "Cao, Tian, Mok: attention-aware line drawing colorization with stop-gradient "
    "attention (SGA). Colours a sketch after a reference image.",
    "resunet": "Khang et al.: cross-attention GAN ResUNet. Colours a sketch after a reference "
    "image and its k-means palette.",
    "csft": "Cui et al.: cross-domain dense correspondence (CSFT). Colours a sketch by warping "
    "a reference image onto it, then refining coarse to fine.",
    "tags": "Yan et al.: two-step training with a reference and colour tags. Colours a sketch "
    "after a reference; the tag mapper (step 2) turns moved tag sliders into colour edits.",
    "hints": "Ci et al.: user-guided colorization (AlacGAN). Colours a sketch from colour "
    "strokes, or automatically without any.",
    "tagger": "The project's multi-label tag classifier (colour shares, skin tone, OpenMoji "
    "groups). It stands in for the papers' pretrained classifiers: the frozen encoder of "
    "`tags` and `hints` and the feature network of the perceptual and style losses.",
    "line_extractor": "A U-Net that draws line art from a colour image (the sketch side of "
    "training pairs for image folders without sketches).",
}
USAGE = {
    "sga": 'Colorizer()("sketch.png", reference="reference.png", method="sga")',
    "resunet": 'Colorizer()("sketch.png", reference="reference.png", method="resunet")',
    "csft": 'Colorizer()("sketch.png", reference="reference.png", method="csft")',
    "tags": 'Colorizer()("sketch.png", reference="reference.png", tags={"color:red": 2.0}, '
    'method="tags")',
    "hints": 'Colorizer()("sketch.png", strokes="strokes.png", method="hints")',
}
METRICS = {  # protocol: (key, title, format) shown in the card
    "self": (("psnr", "PSNR ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.3f}"),
             ("ms_ssim", "MS-SSIM ↑", "{:.3f}")),
    "cross": (("psnr", "PSNR ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.3f}"),
              ("delta_e00_skin", "ΔE00 skin ↓", "{:.2f}")),
    "random": (("fid_tagger", "FID tagger ↓", "{:.4g}"), ("ndb", "NDB ↓", "{}"),
               ("jsd", "JSD ↓", "{:.4f}")),
    "tags": (("colour_map", "mAP from colour ↑", "{:.3f}"),
             ("sketch_map", "mAP from sketch ↑", "{:.3f}"),
             ("colour_colour_mae", "colour-share MAE ↓", "{:.4f}"),
             ("colour_bce", "BCE colour", "{:.4f}"), ("sketch_bce", "BCE sketch", "{:.4f}")),
    "lines": (("l1", "L1 ↓", "{:.4f}"), ("psnr", "PSNR ↑", "{:.2f}"),
              ("precision", "ink precision ↑", "{:.3f}"), ("recall", "ink recall ↑", "{:.3f}"),
              ("f1", "ink F1 ↑", "{:.3f}"), ("f1_exact", "exact ink F1 ↑", "{:.3f}")),
}  # fmt: skip
COMMANDS = {"tags": "train.evaluate_tagger", "lines": "train.evaluate_line_extractor"}


def exported_folder(run_dir: Path) -> Path:
    """The one `save_pretrained` folder under `<run_dir>/weights/`."""
    folders = sorted(p for p in (run_dir / "weights").glob("*") if (p / "config.json").is_file())
    if len(folders) != 1:
        found = ", ".join(p.name for p in folders) or "none"
        raise ValueError(
            f"{run_dir}/weights/ must hold one exported model (found {found}); is {run_dir} a "
            "finished run of train/run.py?"
        )
    return folders[0]


def model_class(folder: Path) -> tuple[str, type]:
    """(registry key, class) of a `save_pretrained` folder from its config's `_class_name`."""
    found = saved_model(folder)
    if found is None:
        known = sorted(cls.__name__ for cls in (*GENERATORS.values(), *SUPPORT_MODELS.values()))
        raise ValueError(f"{folder}/config.json names none of the model classes {known}")
    return found


def run_summary(run_dir: Path) -> dict:
    """summary.json of a finished run (train/run.py writes it after the export)."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {SUMMARY_FILE}: the run has not finished")
    return json.loads(path.read_text(encoding="utf-8"))


def publish(run_dir: Path, out: Path) -> Path:
    """fp16 weights, extra files, the run's config and its training record into `out/<model>/`
    (the card is written by `write_card`)."""
    source = exported_folder(run_dir)
    _, cls = model_class(source)
    target = out / source.name
    model = cls.from_pretrained(source).eval()
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():  # weights of an earlier publish (any precision or format)
        if old.suffix in WEIGHT_SUFFIXES:
            old.unlink()
    with _quiet_diffusers():  # its warning about fp32-only modules: these models have none
        model.to(torch.float16).save_pretrained(target)
    for extra in source.iterdir():
        if extra.is_file() and extra.name != "config.json" and extra.suffix not in WEIGHT_SUFFIXES:
            shutil.copyfile(extra, target / extra.name)
    summary = run_summary(run_dir)
    recipe = summary["method"]
    shutil.copyfile(run_dir / "config.toml", target / f"train_{recipe}.toml")
    record = {
        **summary,
        "recipe": recipe,
        "config": f"train_{recipe}.toml",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    records = [r for r in read_training(target) if r["recipe"] != recipe] + [record]
    (target / TRAINING_FILE).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return target


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def read_training(folder: Path) -> list[dict]:
    path = folder / TRAINING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def training_table(records: Sequence[dict]) -> list[str]:
    """One column per published run (recipe): what it trained, how long, on what."""
    header = "| | " + " | ".join(f"`{r['recipe']}`" for r in records) + " |"
    rows = [header, "|---|" + "---|" * len(records)]

    def row(title: str, cell) -> None:
        rows.append(f"| {title} | " + " | ".join(cell(r) for r in records) + " |")

    row("config", lambda r: f"[`{r['config']}`]({r['config']})")
    row("resolution", lambda r: f"{r['size']} px")
    row("steps × batch", lambda r: f"{r['steps']:,} × {r['batch_size']}")
    row("images seen", lambda r: f"{r['images']:,}"
        + (f" ({r['epochs']:.1f} epochs)" if "epochs" in r else ""))  # fmt: skip
    row("training time", lambda r: _hours(r["seconds"]))
    row("images / s", lambda r: f"{r['images_per_second']}")
    row("device", lambda r: r["device"])
    row("precision", lambda r: {"no": "fp32"}.get(r["mixed_precision"], r["mixed_precision"]))
    row("final losses", lambda r: ", ".join(f"{k} {v:.4g}" for k, v in r["final_losses"].items()))
    row("finished", lambda r: r.get("finished", "—"))
    return rows


def eval_records(results: Path, key: str) -> list[dict]:
    """The trained model's evaluation records and the baselines of the same protocol/size."""
    folder = results / "eval"
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    mine = [r for r in records
            if r["name"] in (key, f"{key}+snap") and r["weights"] == "trained"]  # fmt: skip
    settings = {(r["protocol"], r["size"]) for r in mine}
    baselines = [r for r in records if r["name"] in BASELINES_SHOWN
                 and (r["protocol"], r["size"]) in settings]  # fmt: skip
    return mine + baselines


def _metric(record: dict, key: str, fmt: str) -> str:
    value = record["metrics"].get(key)
    if value is None:
        return "—"
    if key == "ndb":
        return f"{value}/{record['metrics'].get('ndb_bins', '?')}"
    return value if isinstance(value, str) else fmt.format(value)


def _row_order(record: dict) -> tuple:
    """By size, this model first, then the baselines in BASELINES_SHOWN's order."""
    if record["kind"] != "baseline":
        return (record["size"], 0, record["name"])
    return (record["size"], 1 + BASELINES_SHOWN.index(record["name"]), record["name"])


def evaluation_table(records: Sequence[dict]) -> list[str]:
    """Per protocol and size: this model's row, then the baselines'."""
    lines = []
    for protocol, columns in METRICS.items():
        rows = [r for r in records if r["protocol"] == protocol]
        if not any(r["kind"] != "baseline" for r in rows):
            continue
        rows.sort(key=_row_order)
        lines += [f"**{protocol}** ({rows[0]['n']} test images, "
                  f"{rows[0]['dataset']} {rows[0]['split']})", "",  # fmt: skip
                  "| | px | " + " | ".join(title for _, title, _ in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]  # fmt: skip
        for r in rows:
            if r["kind"] == "baseline":
                label = r["name"].replace("-", ": ", 1)
            else:
                label = "**this model + snap**" if r["name"].endswith("+snap") else "**this model**"
            cells = [_metric(r, key, fmt) for key, _, fmt in columns]
            lines.append(f"| {label} | {r['size']} | " + " | ".join(cells) + " |")
        lines.append("")
    for r in sorted(records, key=_row_order):
        change = r["metrics"].get("red_share_change")
        if change is not None and r["kind"] != "baseline":
            lines += [f"Tag edit ({r['protocol']}, {r['size']} px): raising the reference's "
                      f"`{r['settings'].get('tag_edit', 'color:red + 1')}` through the TagMapper "
                      f"changes the red share of the output by {change:+.3f} on average "
                      "(`colorize.tags.color_shares`, lines and paper excluded).", ""]  # fmt: skip
    if lines:
        first = next(r for r in records if r["kind"] != "baseline")
        command = COMMANDS.get(first["protocol"], "train.evaluate")
        lines += [f"Measured {first['date']} on {first['device']} with `python -m {command}` "
                  f"(protocols and metrics: `train/{command[6:]}.py`).", ""]  # fmt: skip
    return lines


def write_card(folder: Path, key: str, results: Path) -> Path:
    """README.md of a published model folder from training.json and the evaluation results."""
    records = read_training(folder)
    if not records:
        raise ValueError(f"{folder} has no {TRAINING_FILE}; publish a run into it first")
    parameters = records[-1]["parameters"]
    lines = [
        "---",
        "license: cc-by-sa-4.0",
        "library_name: diffusers",
        "tags: [line-art-colorization, colorization, sketch, openmoji]",
        "---",
        "",
        f"# `{key}`: default weights of the line-art colorization project",
        "",
        ABOUT[key],
        "",
        f"`{model_class(folder)[1].__name__}`, {parameters / 1e6:.2f} M parameters, stored in fp16 "
        "(loaded in fp32). Any input size works at inference; training was at the resolution "
        "below.",
        "",
    ]
    if key in USAGE:
        lines += ["```python", "from colorize import Colorizer", "",
                  f"image, info = {USAGE[key]}", "```", ""]  # fmt: skip
    lines += ["## Training", "", *training_table(records), "",
              "Reproduce: `python train/run.py --config <config>` in the repository (the "
              "config is the run's own, with every value resolved).", ""]  # fmt: skip
    evaluation = evaluation_table(eval_records(results, key))
    lines += ["## Evaluation", ""]
    lines += evaluation or ["Not evaluated yet.", ""]
    lines += ["## Data and licence", "", DATA_CREDIT, ""]
    path = folder / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Publish a finished training run as fp16 weights with a model card."
    )
    parser.add_argument("run", help="the run folder (train.output_dir of the config)")
    parser.add_argument("--out", default="weights", help="where <model>/ is written")
    parser.add_argument("--results", default="results", help="train.evaluate's --out folder")
    parser.add_argument(
        "--card-only", action="store_true",
        help="only re-render README.md from training.json and the results",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir, out = Path(args.run), Path(args.out)
    try:
        if args.card_only:
            folder = out / exported_folder(run_dir).name
        else:
            folder = publish(run_dir, out)
        key, _ = model_class(folder)
        path = write_card(folder, key, Path(args.results))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f"published {folder} ({size:.2f} MiB), card {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
