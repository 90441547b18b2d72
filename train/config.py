"""Training configs: TOML files loaded into frozen dataclasses, with typed `--set` overrides.

A config file names its recipe and has six sections (see train/configs/sga.toml):

    method = "sga"
    [data]   DataConfig: dataset kind and path, split, image size, workers, [data.options]
    [model]  ModelConfig: preset size ("paper" | "small") and constructor overrides
    [optim]  the recipe's OptimConfig (learning rates, betas, ...)
    [loss]   the recipe's LossConfig (loss weights, paper values by default)
    [train]  TrainConfig: steps, batch size, precision, seed, checkpoints, EMA
    [log]    LogConfig: log / sample intervals, tracker

Every key has a default (the paper's value where a paper gives one), so a file only says
what it changes. Unknown keys and values of the wrong type are errors that name the key.
Overrides use dotted keys and TOML values: `--set optim.lr_g=2e-4 --set train.steps=10
--set model.overrides.num_res_blocks=1`; a string may be written bare (`data.path=data/x`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.data.sample import SampleOptions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DATA_KINDS = ("openmoji", "anime_pairs", "folder")
MODEL_SIZES = ("paper", "small")
PRECISIONS = ("no", "fp16", "bf16", "auto")
TRACKERS = ("auto", "tensorboard", "jsonl", "none")


def _check_choice(section: str, key: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{section}.{key} must be one of {choices}, got {value!r}")


def _check_positive(section: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{section}.{key} must be > 0, got {value}")


# ----------------------------------------------------------------------------------------------
# The generic sections (a recipe adds OptimConfig and LossConfig, and may extend ModelConfig)


@dataclass(frozen=True)
class DataConfig:
    """[data]: which images train the model and how samples are drawn (train.data).

    Parameters:
        kind: "openmoji" (a folder prepared by `python -m train.prepare_openmoji`),
            "anime_pairs" (Kaggle side-by-side colour/sketch files) or "folder" (colour
            images, sketches drawn by XDoG or `line_extractor`).
        path: the dataset folder.
        split: "train", "val" or "test" (openmoji; the other kinds read the whole folder).
        size: square side of the training images (a multiple of 4 and of the model's stride).
        augment: random crop and flip (sketch and target together).
        num_workers: DataLoader worker processes (0: load in the training process).
        options: [data.options], the augmentation and condition settings (SampleOptions).
        line_extractor: "folder" only: a trained LineExtractor's save_pretrained folder
            (e.g. "weights/line_extractor", Cao et al. §III-A) that draws the sketches; ""
            draws them with XDoG.
    """

    kind: str = "openmoji"
    path: str = "data/openmoji"
    split: str = "train"
    size: int = 256
    augment: bool = True
    num_workers: int = 2
    options: SampleOptions = field(default_factory=SampleOptions)
    line_extractor: str = ""

    def __post_init__(self) -> None:
        _check_choice("data", "kind", self.kind, DATA_KINDS)
        if self.line_extractor and self.kind != "folder":
            raise ValueError(
                f"data.line_extractor draws the sketches of a \"folder\" dataset; {self.kind!r} "
                "brings its own sketches"
            )
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class ModelConfig:
    """[model]: which architecture is trained.

    Parameters:
        size: preset of `colorize.models.presets` ("paper": the papers' widths; "small":
            trains on a CPU at 128 px).
        overrides: constructor arguments applied over the generator's (or tagger's) preset,
            e.g. tiny widths for smoke runs: `{ block_out_channels = [8, 16, 16] }`.
        discriminator_overrides: the same for the discriminator(s) of a GAN recipe.
    """

    size: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    discriminator_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("model", "size", self.size, MODEL_SIZES)


@dataclass(frozen=True)
class TrainConfig:
    """[train]: the loop, precision and checkpoints.

    Parameters:
        steps: optimizer steps in all (one step = `gradient_accumulation_steps` batches).
        batch_size: images per process per batch (the global batch is this times the number
            of processes times gradient_accumulation_steps).
        gradient_accumulation_steps: batches whose gradients are summed before a step.
        mixed_precision: "no", "fp16" (GradScaler; GPU only), "bf16", or "auto": bf16 where
            the device computes it natively (`colorize.devices.native_bf16`: a bf16 GPU, a CPU
            with AVX-512 BF16 or AMX), fp32 elsewhere (emulated bf16 is several times slower).
        seed: seeds the model initialisation, the data order and every augmentation.
        output_dir: the run folder: config.toml, checkpoints/, samples/, logs/, weights/.
        checkpoint_every: save the full training state every this many steps (and at the end).
        keep_checkpoints: how many of the newest checkpoints to keep (0: all).
        max_grad_norm: clip each model's gradient norm to this before its step (0: no clipping).
        ema: keep an exponential moving average of the exported model and export it instead.
        ema_decay: the EMA's decay per step.
        channels_last: models, frozen networks and image batches in the channels-last memory
            format (faster convolutions on some CPUs and on tensor-core GPUs).
        compile: `torch.compile` the trained models (in place: checkpoints keep their keys);
            the first steps are slow while it compiles.
    """

    steps: int = 100_000
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    output_dir: str = "runs/run"
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    max_grad_norm: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        _check_choice("train", "mixed_precision", self.mixed_precision, PRECISIONS)
        _check_positive(
            "train",
            steps=self.steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            checkpoint_every=self.checkpoint_every,
        )
        if self.keep_checkpoints < 0 or self.max_grad_norm < 0:
            raise ValueError(
                "train.keep_checkpoints and train.max_grad_norm must be >= 0, got "
                f"{self.keep_checkpoints} and {self.max_grad_norm}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass(frozen=True)
class LogConfig:
    """[log]: what the run reports and how often.

    Parameters:
        every: one log line (and tracker record) every this many steps, averaged over them.
        sample_every: a PNG grid (sketch, reference, hints, output, target) of a fixed batch
            every this many steps (and at the end); 0: never.
        num_samples: rows of that grid.
        tracker: "auto" (tensorboard if installed, else JSON lines), "tensorboard", "jsonl"
            (logs/metrics.jsonl) or "none".
    """

    every: int = 100
    sample_every: int = 1000
    num_samples: int = 4
    tracker: str = "auto"

    def __post_init__(self) -> None:
        _check_choice("log", "tracker", self.tracker, TRACKERS)
        _check_positive("log", every=self.every, num_samples=self.num_samples)
        if self.sample_every < 0:
            raise ValueError(f"log.sample_every must be >= 0, got {self.sample_every}")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the recipe key and its six sections (optim/loss/model typed by the recipe)."""

    method: str
    data: DataConfig
    model: Any
    optim: Any
    loss: Any
    train: TrainConfig
    log: LogConfig


# ----------------------------------------------------------------------------------------------
# Loading and overriding


def section_types(method: str) -> dict[str, type]:
    """The dataclass of each section for recipe `method` (a ValueError names unknown ones)."""
    # deferred: the recipes import this module for ModelConfig and the section helpers
    from train.methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    recipe = METHODS[method]
    return {
        "data": DataConfig,
        "model": getattr(recipe, "ModelConfig", ModelConfig),
        "optim": recipe.OptimConfig,
        "loss": recipe.LossConfig,
        "train": TrainConfig,
        "log": LogConfig,
    }


def default_config(method: str) -> RunConfig:
    """Every section at its defaults (the paper recipe) for `method`."""
    return RunConfig(method=method, **{name: cls() for name, cls in section_types(method).items()})


def build_config(raw: Mapping[str, Any], origin: str = "config") -> RunConfig:
    """A RunConfig from a parsed TOML mapping; errors name `origin` and the offending key."""
    if "method" not in raw:
        raise ValueError(f"{origin}: missing the top-level key `method` (e.g. method = \"sga\")")
    method = raw["method"]
    if not isinstance(method, str):
        raise ValueError(f"{origin}: method must be a string, got {method!r}")
    types = section_types(method)
    unknown = set(raw) - set(types) - {"method"}
    if unknown:
        raise ValueError(
            f"{origin}: unknown top-level key(s) {sorted(unknown)}; known: method, "
            f"{', '.join(types)}"
        )
    sections = {}
    for name, cls in types.items():
        value = raw.get(name, {})
        if not isinstance(value, Mapping):
            raise ValueError(f"{origin}: [{name}] must be a table, got {value!r}")
        sections[name] = _build_dataclass(cls, value, f"{origin}: [{name}]")
    return RunConfig(method=method, **sections)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a TOML config and apply `--set key=value` overrides, in order."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    config = build_config(raw, str(path))
    for assignment in overrides:
        config = apply_override(config, assignment)
    return config


def apply_override(config: RunConfig, assignment: str) -> RunConfig:
    """`config` with one `section.key=value` assignment applied (value in TOML syntax, or a
    bare string); the value is checked against the key's type."""
    where = f"--set {assignment}"
    key, sep, text = assignment.partition("=")
    path = [part.strip() for part in key.strip().split(".")]
    if not sep or not all(path):
        raise ValueError(f"{where}: expected section.key=value, e.g. --set optim.lr_g=2e-4")
    if path[0] == "method":
        raise ValueError(f"{where}: the method is fixed by the config file; use another config")
    if len(path) < 2:
        raise ValueError(f"{where}: name a key inside [{path[0]}], e.g. {path[0]}.<key>=...")
    return _replace(config, path, _parse_value(text.strip()), text.strip(), where)


def _parse_value(text: str) -> Any:
    """A TOML value (`2e-4`, `true`, `[1, 2]`, `"x"`, `{a = 1}`), else the text itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _replace(obj: Any, path: list[str], value: Any, text: str, where: str) -> Any:
    """Copy of dataclass/dict `obj` with the entry at `path` set to `value`."""
    name, rest = path[0], path[1:]
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    if name not in names:
        raise ValueError(f"{where}: unknown key {name!r}; known: {', '.join(names)}")
    current = getattr(obj, name)
    if rest:
        if not (dataclasses.is_dataclass(current) or isinstance(current, dict)):
            raise ValueError(f"{where}: {name!r} is a {type(current).__name__}, not a table")
        if isinstance(current, dict):
            new = _set_entry(current, rest, value, where)
        else:
            new = _replace(current, rest, value, text, where)
    else:
        if dataclasses.is_dataclass(current):
            raise ValueError(f"{where}: {name!r} is a section; set one of its keys")
        if hints[name] is str and not isinstance(value, str):
            value = text  # `--set data.path=2024` means the string "2024"
        new = _coerce(value, hints[name], where)
    try:
        return dataclasses.replace(obj, **{name: new})
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _set_entry(table: dict, path: list[str], value: Any, where: str) -> dict:
    """Copy of a free-form table (e.g. model.overrides) with `path` inside it set to `value`."""
    name, rest = path[0], path[1:]
    if not rest:
        return {**table, name: value}
    inner = table.get(name, {})
    if not isinstance(inner, dict):
        raise ValueError(f"{where}: {name!r} holds {inner!r}, not a table")
    return {**table, name: _set_entry(inner, rest, value, where)}


def _build_dataclass(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """cls(**values) with every value type-checked; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where} {k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` as type `tp` (int, float, str, bool, tuple[...], dict, a dataclass, Any)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a table, got {value!r}")
        return _build_dataclass(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(
                    _coerce(v, t, f"{where}[{i}]")
                    for i, (v, t) in enumerate(zip(value, args, strict=True))
                )
    elif tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    else:
        raise TypeError(f"{where}: unsupported config type {tp!r}")
    raise ValueError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp)


# ----------------------------------------------------------------------------------------------
# Reporting and saving


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"section.key": value} of a config (sections flattened; tuples and tables kept)."""
    items = ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config))
    flat: dict[str, Any] = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differences(config: RunConfig, reference: RunConfig) -> list[str]:
    """"key: reference -> config" lines for every key whose values differ."""
    new, old = flatten(config), flatten(reference)
    lines = []
    for key in sorted(set(new) | set(old)):
        if key not in old:
            lines.append(f"{key}: (unset) -> {new[key]!r}")
        elif key not in new:
            lines.append(f"{key}: {old[key]!r} -> (unset)")
        elif not _same(new[key], old[key]):
            lines.append(f"{key}: {old[key]!r} -> {new[key]!r}")
    return lines


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def hyperparameters(config: RunConfig) -> dict[str, int | float | str | bool]:
    """The flattened config with only tracker-friendly scalars (tuples and tables as text)."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
        for key, value in flatten(config).items()
    }


def to_toml(config: RunConfig) -> str:
    """The config as a TOML file that `load_config` reads back to an equal config."""
    lines = [f"method = {_toml_value(config.method)}"]

    def table(name: str, section: Any) -> None:
        lines.extend(["", f"[{name}]"])
        nested = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value):
                nested.append((f"{name}.{f.name}", value))
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        for nested_name, value in nested:
            table(nested_name, value)

    for section in ("data", "model", "optim", "loss", "train", "log"):
        table(section, getattr(config, section))
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        entries = (f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(entries) + "}"
    raise ValueError(f"cannot write {type(value).__name__} {value!r} to TOML")
