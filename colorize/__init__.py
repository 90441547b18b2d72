"""Line-art colorization library: models, pre/post-processing and the Colorizer pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colorize.pipeline import Colorizer

__all__ = ["Colorizer"]


def __getattr__(name: str) -> Any:
    # Colorizer is imported on first use: the light modules (tags, palette, hints) stay free of
    # the models and diffusers for the data pipeline's worker processes.
    if name == "Colorizer":
        from colorize.pipeline import Colorizer

        return Colorizer
    raise AttributeError(f"module 'colorize' has no attribute {name!r}")
