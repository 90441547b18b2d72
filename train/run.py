"""Train any model of the project: the one entry point, a small generic loop around a recipe.

    accelerate launch train/run.py --config train/configs/sga.toml [--set key=value ...]
        [--resume latest|PATH] [--output_dir DIR] [--mixed_precision no|fp16|bf16|auto]
    python train/run.py --config train/configs/sga_tiny.toml          # one process, no launcher

The recipe (train/methods/<method>.py) builds the models and writes one step; this file does
the rest: config, one Accelerator (mixed precision, DDP, gradient accumulation), the dataset
and a seeded DataLoader, `prepare`, the loop, log lines and trackers, PNG sample grids,
`save_state` checkpoints and `--resume`, optional EMA, NaN/inf stops, and the final
`save_pretrained` export. A run folder holds:

    config.toml                     the resolved config (reload it with --config)
    checkpoints/step_0005000/       accelerator.save_state + progress.json (the last K kept)
    samples/step_0005000.png        rows of (sketch, reference, hints, output, target)
    logs/                           tensorboard events, or metrics.jsonl without tensorboard
    weights/<name>/                 config.json + diffusion_pytorch_model.safetensors

Resuming continues at the exact step with the same data order: batches come from a seeded
sampler (seed + epoch), every sample's augmentation is seeded by (seed, epoch, index) rather
than by the global RNG, and the batches of the interrupted epoch that were already used are
skipped with `accelerator.skip_first_batches`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from importlib.util import find_spec  # noqa: E402
from types import ModuleType  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator, DataLoaderConfiguration, PartialState  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from accelerate.tracking import GeneralTracker, on_main_process  # noqa: E402
from accelerate.utils import (  # noqa: E402
    ProjectConfiguration,
    parse_flag_from_env,
    send_to_device,
    set_seed,
)
from PIL import Image  # noqa: E402
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, default_collate  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: E402

from colorize.devices import device_name, native_bf16  # noqa: E402
from colorize.image_tensors import tensor_to_array  # noqa: E402
from colorize.models import LineExtractor  # noqa: E402
from train.config import (  # noqa: E402
    PRECISIONS,
    DataConfig,
    RunConfig,
    default_config,
    differences,
    hyperparameters,
    load_config,
    to_toml,
)
from train.data import AnimePairDataset, ImageFolderDataset, OpenMojiDataset  # noqa: E402
from train.methods import METHODS, Parts  # noqa: E402

logger = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^step_(\d{7})$")
PROGRESS_FILE = "progress.json"
SUMMARY_FILE = "summary.json"  # what a finished run reports (train/publish.py reads it)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss, the step and the saved state."""


# ----------------------------------------------------------------------------------------------
# Data


def build_dataset(data: DataConfig, conditions: tuple[str, ...]) -> Dataset:
    """The [data] dataset with the recipe's conditions (train.data; the split is openmoji's)."""
    common = dict(size=data.size, conditions=conditions, augment=data.augment,
                  options=data.options)  # fmt: skip
    if data.kind == "openmoji":
        return OpenMojiDataset(data.path, split=data.split, **common)
    if data.kind == "anime_pairs":
        return AnimePairDataset(data.path, **common)
    extractor = None
    if data.line_extractor:
        folder = Path(data.line_extractor)
        if not (folder / "config.json").is_file():
            raise ValueError(f"data.line_extractor {folder} has no config.json: expected a "
                             "LineExtractor.save_pretrained folder, e.g. weights/line_extractor")
        extractor = LineExtractor.from_pretrained(folder).eval()
    return ImageFolderDataset(data.path, **common, line_extractor=extractor)


class SeededSamples(Dataset):
    """`dataset` whose sample i in epoch e is drawn with the torch RNG seeded by (seed, e, i).

    The datasets draw crops, TPS warps, jitter and hints from the global torch RNG; seeding
    per sample makes a sample independent of worker count, prefetching and of where a run was
    interrupted, so a resumed run sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.draw(index, self.epoch)

    def draw(self, index: int, epoch: int) -> dict:
        """Sample `index` as seen in `epoch` (epoch -1: the fixed batch of the sample grids)."""
        with torch.random.fork_rng(devices=[]):
            # a tuple of ints hashes the same in every process and every run
            torch.manual_seed(hash((self.seed, epoch, index)) % 2**63)
            return self.dataset[index]


# ----------------------------------------------------------------------------------------------
# Trackers, log lines, sample grids


class JSONLinesTracker(GeneralTracker):
    """Accelerate tracker that appends one JSON object per `log` call to logs/metrics.jsonl
    (the first line of a run holds its config); used where tensorboard is not installed."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, logging_dir: str | Path):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"
        self.file = None

    @property
    def tracker(self):
        return self.file

    @on_main_process
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a", encoding="utf-8")

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self._write({"config": values})

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self._write({"step": step, **values})

    @on_main_process
    def finish(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def make_trackers(kind: str, logging_dir: Path) -> list | None:
    """The `log_with` of the Accelerator for log.tracker `kind`."""
    has_tensorboard = find_spec("tensorboard") is not None or find_spec("tensorboardX") is not None
    if kind == "tensorboard" and not has_tensorboard:
        raise ValueError("log.tracker = 'tensorboard' but tensorboard is not installed "
                         "(pip install tensorboard), or use 'jsonl'")  # fmt: skip
    if kind == "none":
        return None
    if kind == "tensorboard" or (kind == "auto" and has_tensorboard):
        return ["tensorboard"]
    return [JSONLinesTracker(logging_dir)]


class Meter:
    """Running means of the step's losses and the time per optimizer step between log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.seconds = 0.0
        self.steps = 0

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] += value
            self.counts[name] += 1

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums}


def log_line(step: int, means: dict[str, float], keys: tuple[str, ...], ms: float,
             lr: float) -> str:
    """`step 1200 | loss_d 0.41 loss_g 3.02 | 85 ms/it | lr 1.0e-04`."""
    shown = [k for k in keys if k in means] or list(means)
    losses = " ".join(f"{k} {means[k]:.4g}" for k in shown)
    return f"step {step} | {losses} | {ms:.0f} ms/it | lr {lr:.1e}"


def image_grid(panels: dict[str, torch.Tensor]) -> Image.Image:
    """One row per sample, one column per panel ([B, 1|3|4, h, w] in [-1, 1]; grey repeated,
    a 4-channel hint shown by its RGB·mask on grey, smaller panels enlarged, nearest)."""
    height = max(p.shape[-2] for p in panels.values())
    width = max(p.shape[-1] for p in panels.values())
    columns = []
    for name, panel in panels.items():
        x = panel.detach().float().cpu()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 4:
            x = x[:, :3]  # RGB·mask: 0 (grey) where no hint is given
        elif x.shape[1] != 3:
            raise ValueError(f"sample panel {name!r} must have 1, 3 or 4 channels, got {x.shape}")
        columns.append(F.interpolate(x, size=(height, width), mode="nearest"))
    rows = torch.cat(columns, dim=3)  # (B, 3, H, P·W)
    grid = torch.cat(list(rows), dim=1)  # (3, B·H, P·W)
    return Image.fromarray(tensor_to_array(grid))


# ----------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Progress:
    """Where the loop is: optimizer steps done, the epoch, batches used in that epoch, and the
    seconds spent in training steps so far (summed over resumes; checkpoints and samples not
    counted)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    seconds: float = 0.0

    def write(self, folder: Path) -> None:
        (folder / PROGRESS_FILE).write_text(json.dumps(asdict(self)) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> Progress:
        path = folder / PROGRESS_FILE
        if not path.is_file():
            raise ValueError(f"{folder} is not a checkpoint of train/run.py (no {PROGRESS_FILE})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT_PATTERN.match(p.name)]
    return sorted((p for p in found if (p / PROGRESS_FILE).is_file()), key=lambda p: p.name)


def find_checkpoint(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint `--resume` names: "latest" (None when the run has none yet) or a path."""
    if resume is None:
        return None
    if resume == "latest":
        found = checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / PROGRESS_FILE).is_file():
        raise ValueError(f"--resume {resume}: not a checkpoint folder (no {PROGRESS_FILE} in it)")
    return path


def save_checkpoint(accelerator: Accelerator, folder: Path, progress: Progress,
                    keep: int) -> None:  # fmt: skip
    """save_state into `folder` plus progress.json; then keep only the newest `keep` (0: all)."""
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        progress.write(folder)
        if keep and CHECKPOINT_PATTERN.match(folder.name):
            for old in checkpoints(folder.parent.parent)[:-keep]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class Run:
    """The objects of one training run, shared by the loop and its helpers."""

    cfg: RunConfig
    accelerator: Accelerator
    recipe: ModuleType
    parts: Parts
    loader: DataLoader
    samples: SeededSamples
    progress: Progress
    ema: AveragedModel | None
    fixed_batch: dict | None

    @property
    def dir(self) -> Path:
        return Path(self.cfg.train.output_dir)

    def export_model(self) -> torch.nn.Module:
        """The model that is exported and sampled: its EMA copy when on, else the live one."""
        if self.ema is not None:
            return self.ema.module
        return self.accelerator.unwrap_model(self.parts.models[self.parts.export])

    def write_samples(self) -> None:
        """samples/step_NNNNNNN.png of the fixed batch (main process; eval mode, fixed seed)."""
        if self.fixed_batch is None:
            return
        model, accelerator = self.export_model(), self.accelerator
        was_training = model.training
        model.eval()
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices), accelerator.autocast():
            torch.manual_seed(self.cfg.train.seed)
            panels = self.recipe.sample(self.parts, model, self.fixed_batch)
        model.train(was_training)
        folder = self.dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        image_grid(panels).save(folder / f"step_{self.progress.step:07d}.png")

    def export(self) -> Path:
        """save_pretrained of the exported model (and its extra files) to weights/<name>."""
        folder = self.dir / "weights" / self.parts.export_name
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.export_model().save_pretrained(folder)
            for name, text in self.parts.export_files.items():
                (folder / name).write_text(text, encoding="utf-8")
            logger.info("exported %s%s to %s", self.parts.export_name,
                        " (EMA)" if self.ema is not None else "", folder)  # fmt: skip
        return folder


def train(cfg: RunConfig, resume: str | None = None) -> Path:
    """Run (or continue) the training `cfg` describes; returns the run folder.

    Raises:
        NonFiniteLossError: a loss was NaN or inf (after saving the state next to the others).
        ValueError: a bad config, dataset or checkpoint.
    """
    recipe = METHODS[cfg.method]
    run_dir = Path(cfg.train.output_dir)
    checkpoint = find_checkpoint(run_dir, resume)
    accelerator = Accelerator(
        mixed_precision=resolve_precision(cfg.train.mixed_precision, _launch_device()),
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        log_with=make_trackers(cfg.log.tracker, run_dir / "logs"),
        project_config=ProjectConfiguration(project_dir=str(run_dir),
                                            logging_dir=str(run_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                  data_seed=cfg.train.seed),
        step_scheduler_with_optimizer=False,
    )  # fmt: skip
    _report_config(accelerator, cfg, run_dir, resume, checkpoint)

    set_seed(cfg.train.seed)  # before the dataset and the models
    dataset = build_dataset(cfg.data, recipe.CONDITIONS)
    samples = SeededSamples(dataset, cfg.train.seed)
    per_step = cfg.train.batch_size * accelerator.num_processes
    if len(dataset) < per_step:
        raise ValueError(
            f"{cfg.data.path} has {len(dataset)} images, fewer than one batch of "
            f"{cfg.train.batch_size} per process × {accelerator.num_processes} processes"
        )
    loader = DataLoader(
        samples,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(cfg.train.seed),  # leaves the global RNG alone
        pin_memory=accelerator.device.type == "cuda",
    )
    steps_per_epoch = max(1, len(dataset) // per_step // cfg.train.gradient_accumulation_steps)
    parts = recipe.build(cfg, dataset, steps_per_epoch)
    _check_one_scale_per_step(cfg, parts)
    _speed_options(cfg, parts)
    ema = None
    if cfg.train.ema:
        ema = AveragedModel(parts.models[parts.export], use_buffers=True,
                            multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))  # fmt: skip
        ema.requires_grad_(False)
        ema.to(accelerator.device)
    loader = _prepare(accelerator, parts, loader)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    progress = Progress()
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        progress = Progress.read(checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, progress.step)

    fixed_batch = None
    if hasattr(recipe, "sample") and cfg.log.sample_every and accelerator.is_main_process:
        count = min(cfg.log.num_samples, len(dataset))
        fixed_batch = send_to_device(
            default_collate([samples.draw(i, epoch=-1) for i in range(count)]), accelerator.device
        )
    run = Run(cfg, accelerator, recipe, parts, loader, samples, progress, ema, fixed_batch)

    accelerator.init_trackers(cfg.method, config=hyperparameters(cfg))
    try:
        last_means = _loop(run)
        if cfg.log.sample_every:
            run.write_samples()
        run.export()
        if accelerator.is_main_process:
            write_summary(run, last_means)
    finally:
        accelerator.end_training()
    return run_dir


def _loop(run: Run) -> dict[str, float]:
    """Steps from `run.progress` to cfg.train.steps; logs, samples and checkpoints on the way.
    Returns the loss means of the last log line (empty when nothing was trained)."""
    cfg, accelerator, parts, progress = run.cfg, run.accelerator, run.parts, run.progress
    last_means: dict[str, float] = {}
    if progress.step >= cfg.train.steps:
        logger.info("nothing to train: the checkpoint is at step %d of %d", progress.step,
                    cfg.train.steps)  # fmt: skip
        return last_means
    models = list(parts.models.values())
    for model in models:
        model.train()
    lr_optimizer = parts.optimizers.get(parts.export) or next(iter(parts.optimizers.values()))
    meter = Meter()
    bar = tqdm(total=cfg.train.steps, initial=progress.step, desc=f"train {cfg.method}",
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)  # fmt: skip
    with logging_redirect_tqdm(), bar:
        while progress.step < cfg.train.steps:
            run.loader.set_epoch(progress.epoch)
            run.samples.set_epoch(progress.epoch)
            batches = run.loader
            if progress.batch:  # resumed inside this epoch: skip the batches already used
                batches = accelerator.skip_first_batches(run.loader, progress.batch)
            started = time.perf_counter()
            for batch in batches:
                if cfg.train.channels_last:
                    batch = _channels_last(batch)
                with accelerator.accumulate(*models):
                    losses = run.recipe.train_step(parts, batch, accelerator, progress.step + 1)
                progress.batch += 1
                values = _mean_over_processes(accelerator, losses)
                meter.add(values)
                bad = [name for name, value in values.items() if not math.isfinite(value)]
                if bad:
                    _stop_on_non_finite(run, bad[0], values[bad[0]])
                if not accelerator.sync_gradients:
                    continue

                progress.step += 1
                for scheduler in parts.schedulers.values():
                    scheduler.step()
                if run.ema is not None:
                    run.ema.update_parameters(accelerator.unwrap_model(parts.models[parts.export]))
                bar.update(1)
                seconds = time.perf_counter() - started
                meter.steps += 1
                meter.seconds += seconds
                progress.seconds += seconds
                step = progress.step
                if step % cfg.log.every == 0 or step == cfg.train.steps:
                    means, lr = meter.means(), lr_optimizer.param_groups[0]["lr"]
                    ms = 1000 * meter.seconds / meter.steps
                    logger.info(log_line(step, means, parts.log_keys, ms, lr))
                    accelerator.log({**means, "lr": lr, "ms_per_step": ms}, step=step)
                    last_means = means
                    meter = Meter()
                if cfg.log.sample_every and step % cfg.log.sample_every == 0:
                    run.write_samples()
                if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
                    folder = run.dir / "checkpoints" / f"step_{step:07d}"
                    save_checkpoint(accelerator, folder, progress, cfg.train.keep_checkpoints)
                if step >= cfg.train.steps:
                    break
                started = time.perf_counter()
            else:
                progress.epoch += 1
                progress.batch = 0
    return last_means


def _launch_device() -> torch.device:
    """The device type the Accelerator will pick, known before it exists (creating accelerate's
    state first would fix it before `accelerate launch`'s CPU multi-process settings apply)."""
    use_cpu = parse_flag_from_env("ACCELERATE_USE_CPU")
    return torch.device("cuda" if torch.cuda.is_available() and not use_cpu else "cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """accelerate's mixed_precision for train.mixed_precision on `device`: "auto" is bf16 where
    the device computes bf16 natively and "no" (fp32) elsewhere; the rest pass through."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "no"


def emulated_bf16(precision: str, device: torch.device) -> str | None:
    """The warning for bf16 on a CPU that emulates it, else None."""
    if precision != "bf16" or device.type != "cpu" or native_bf16(device):
        return None
    return (f"bf16 on this CPU ({device_name(device)}) is emulated: a training step was "
            "measured 7-20x slower than fp32 on such a CPU; train.mixed_precision = \"auto\" "
            "or \"no\" is faster here")  # fmt: skip


def write_summary(run: Run, last_means: dict[str, float]) -> Path:
    """summary.json of a finished run: steps, images seen, training seconds, images/s, the
    device and the last logged loss means (what a model card reports)."""
    cfg, accelerator, progress = run.cfg, run.accelerator, run.progress
    images = progress.step * cfg.train.batch_size * cfg.train.gradient_accumulation_steps
    images *= accelerator.num_processes
    device_text = device_name(accelerator.device)
    if accelerator.num_processes > 1:
        device_text = f"{accelerator.num_processes} processes × {device_text}"
    summary = {
        "method": cfg.method,
        "export": f"weights/{run.parts.export_name}",
        "steps": progress.step,
        "batch_size": cfg.train.batch_size * accelerator.num_processes,
        "images": images,
        "epochs": progress.epoch + progress.batch / max(1, len(run.loader)),
        "seconds": round(progress.seconds, 3),
        "images_per_second": round(images / progress.seconds, 2) if progress.seconds else None,
        "size": cfg.data.size,
        "mixed_precision": accelerator.mixed_precision,  # "auto" resolved
        "device": device_text,
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%d"),
        "final_losses": {k: round(v, 5) for k, v in last_means.items()},
    }
    path = run.dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return path


def _check_one_scale_per_step(cfg: RunConfig, parts: Parts) -> None:
    """fp16 + gradient accumulation + several optimizers is refused: accelerate has one
    GradScaler and updates its scale after every optimizer step (issue #174), so D's step could
    change the scale between G's accumulated backward passes and mix two scales in G's sum."""
    if (cfg.train.mixed_precision == "fp16" and cfg.train.gradient_accumulation_steps > 1
            and len(parts.optimizers) > 1):  # fmt: skip
        raise ValueError(
            f"{cfg.method} steps {len(parts.optimizers)} optimizers; with fp16 they share one "
            "GradScaler, which cannot accumulate gradients correctly: use "
            "train.mixed_precision = \"bf16\" or train.gradient_accumulation_steps = 1"
        )


def _speed_options(cfg: RunConfig, parts: Parts) -> None:
    """train.channels_last and train.compile applied to the recipe's networks, in place."""
    if cfg.train.channels_last:
        for model in (*parts.models.values(), *parts.frozen.values()):
            model.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        for model in parts.models.values():
            model.compile()  # in place: state_dict keys and checkpoints stay as without it


def _channels_last(batch: dict) -> dict:
    """The batch's image tensors (4-D) in the channels-last memory format."""
    return {key: value.contiguous(memory_format=torch.channels_last)
            if isinstance(value, torch.Tensor) and value.dim() == 4 else value
            for key, value in batch.items()}  # fmt: skip


def _prepare(accelerator: Accelerator, parts: Parts, loader: DataLoader) -> DataLoader:
    """One `accelerator.prepare` for every model, optimizer, scheduler and the loader (a GAN's
    G and D together); prepared objects replace the originals in `parts`."""
    groups = [parts.models, parts.optimizers, parts.schedulers]
    objects = [obj for group in groups for obj in group.values()]
    prepared = list(accelerator.prepare(*objects, loader))
    for group in groups:
        for key in group:
            group[key] = prepared.pop(0)
    for key, module in parts.frozen.items():
        parts.frozen[key] = module.to(accelerator.device)
    return prepared.pop(0)


def _mean_over_processes(accelerator: Accelerator, losses: dict) -> dict[str, float]:
    """The step's losses as floats, averaged over processes (so every process sees the same
    values, and a NaN on one process stops them all)."""
    if not losses:
        raise ValueError("train_step returned no losses")
    names = list(losses)
    vector = torch.stack([
        torch.as_tensor(losses[name], dtype=torch.float32, device=accelerator.device).reshape(())
        for name in names
    ])  # fmt: skip
    vector = accelerator.reduce(vector, reduction="mean")
    return dict(zip(names, vector.tolist(), strict=True))


def _stop_on_non_finite(run: Run, name: str, value: float) -> None:
    """Save the state for inspection (not a resume point) and raise NonFiniteLossError."""
    step = run.progress.step + 1
    folder = run.dir / "checkpoints" / f"step_{step:07d}-nonfinite"
    save_checkpoint(run.accelerator, folder, run.progress, keep=0)
    raise NonFiniteLossError(
        f"{name} is {value} at step {step}; training state saved to {folder}. Resume from the "
        "last good checkpoint (--resume latest) with a lower learning rate, or try "
        "--mixed_precision no"
    )


def _report_config(accelerator: Accelerator, cfg: RunConfig, run_dir: Path, resume: str | None,
                   checkpoint: Path | None) -> None:  # fmt: skip
    """Log what differs from the paper defaults (and from the resumed run), save config.toml."""
    changed = differences(cfg, default_config(cfg.method))
    logger.info("method %s, %d process(es) on %s, mixed precision %s; differs from the "
                "defaults:%s", cfg.method, accelerator.num_processes, accelerator.device,
                accelerator.mixed_precision,
                "".join(f"\n  {line}" for line in changed) or " nothing")  # fmt: skip
    if cfg.train.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        logger.warning("fp16 mixed precision needs a GPU; accelerate computes this CPU run in "
                       "fp32 (bf16 works on CPUs)")  # fmt: skip
    warning = emulated_bf16(accelerator.mixed_precision, accelerator.device)
    if warning:
        logger.warning(warning)
    if resume == "latest" and checkpoint is None:
        logger.info("--resume latest: no checkpoint in %s yet, starting at step 0", run_dir)
    saved = run_dir / "config.toml"
    if accelerator.is_main_process:
        if checkpoint is not None and saved.is_file():
            previous = load_config(saved)
            changes = differences(cfg, previous)
            if changes:
                logger.warning("resuming with a config that differs from %s:%s", saved,
                               "".join(f"\n  {line}" for line in changes))  # fmt: skip
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(to_toml(cfg), encoding="utf-8")
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a model of the project (see train/configs/ and train/methods/).",
    )
    parser.add_argument("--config", required=True, help="a TOML file from train/configs/")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr_g=2e-4 (repeatable)")
    parser.add_argument("--resume", metavar="latest|PATH",
                        help="continue from the newest checkpoint of the run, or from PATH")
    parser.add_argument("--output_dir", help="the run folder (same as --set train.output_dir=)")
    parser.add_argument("--mixed_precision", choices=PRECISIONS,
                        help="same as --set train.mixed_precision=")  # fmt: skip
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The config file with `--set`, then `--output_dir` and `--mixed_precision`, applied."""
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"train.output_dir={json.dumps(args.output_dir)}")
    if args.mixed_precision is not None:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    """CLI: exit 0 after a finished run, 1 when a loss went NaN/inf, 2 for bad input."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    args = parse_args(argv)
    try:
        run_dir = train(config_from_args(args), resume=args.resume)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad config, dataset path, checkpoint or weights folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if PartialState().is_main_process:
        print(f"done: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
