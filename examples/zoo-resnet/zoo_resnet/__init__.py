"""The ResNet model plugin (third-party example): ResNet-50 with torchvision's weights and the Ascend AIPP recipe."""

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

__version__ = "0.1.0"

FAMILY = "resnet"


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
