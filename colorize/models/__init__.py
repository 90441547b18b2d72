"""The generators, the tagger and the line extractor (one module per method).

    from colorize.models import build_generator
    model = build_generator("sga", size="small")

`GENERATORS` is the explicit registry of the five colorization methods; each module's
`PRESETS` holds its `paper` and `small` constructor arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffusers import ModelMixin

from . import csft, hints, line_extractor, resunet, sga, tagger, tags
from .base import CONDITIONS, ColorizationGenerator, GeneratorOutput
from .csft import CSFTGenerator
from .hints import HintsGenerator
from .line_extractor import LineExtractor
from .resunet import ResUNetGenerator
from .sga import SGAGenerator
from .tagger import Tagger
from .tags import TagMapper, TagsGenerator

GENERATORS: dict[str, type[ModelMixin]] = {
    "sga": SGAGenerator,
    "resunet": ResUNetGenerator,
    "csft": CSFTGenerator,
    "tags": TagsGenerator,
    "hints": HintsGenerator,
}
_PRESETS = {
    "sga": sga.PRESETS,
    "resunet": resunet.PRESETS,
    "csft": csft.PRESETS,
    "tags": tags.PRESETS,
    "hints": hints.PRESETS,
    "tagger": tagger.PRESETS,
    "line_extractor": line_extractor.PRESETS,
}
SUPPORT_MODELS: dict[str, type[ModelMixin]] = {"tagger": Tagger, "line_extractor": LineExtractor}
SIZES = ("paper", "small")
_SAVED_CLASSES = {cls.__name__: (key, cls) for key, cls in {**GENERATORS, **SUPPORT_MODELS}.items()}


def presets(key: str, size: str = "small") -> dict:
    """The constructor arguments of model `key` ("sga", …, "tagger", "line_extractor") at `size`."""
    if key not in _PRESETS:
        raise ValueError(f"unknown model {key!r}; known: {sorted(_PRESETS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")
    return dict(_PRESETS[key][size])


def saved_model(folder: str | os.PathLike) -> tuple[str, type[ModelMixin]] | None:
    """(registry key, class) of a `save_pretrained` folder of any model here (generators,
    tagger, line extractor), from config.json's `_class_name`; None when it holds none."""
    config = Path(folder) / "config.json"
    try:
        class_name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, json.JSONDecodeError):
        return None
    return _SAVED_CLASSES.get(class_name)


def build_generator(key: str, size: str = "small", **overrides) -> ModelMixin:
    """A freshly initialised generator of method `key` at preset `size`, with overrides."""
    if key not in GENERATORS:
        raise ValueError(f"unknown method {key!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[key](**{**presets(key, size), **overrides})


__all__ = [
    "CONDITIONS",
    "GENERATORS",
    "SUPPORT_MODELS",
    "CSFTGenerator",
    "ColorizationGenerator",
    "GeneratorOutput",
    "HintsGenerator",
    "LineExtractor",
    "ResUNetGenerator",
    "SGAGenerator",
    "TagMapper",
    "Tagger",
    "TagsGenerator",
    "build_generator",
    "presets",
    "saved_model",
]
