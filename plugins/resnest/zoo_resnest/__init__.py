"""The ResNeSt model plugin: ResNeSt-50/101/200/269 with the Ascend ModelZoo recipe's settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo_core import hookimpl

from .config import MODELS

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from zoo_core.specs import ModelSpec, RunOptions
    from zoo_core.weights import WeightsRef

__version__ = "0.2.0"

FAMILY = "resnest"


@hookimpl
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)


@hookimpl
def zoo_preprocess(model: ModelSpec, preset: str, image_path: Path) -> np.ndarray | None:
    if model.family != FAMILY:
        return None
    from .preprocess import PRESETS

    return PRESETS[preset](image_path, model)
