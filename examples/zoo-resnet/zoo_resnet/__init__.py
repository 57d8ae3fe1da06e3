"""The ResNet model plugin (third-party example): ResNet-50 with torchvision's weights and the Ascend AIPP recipe.

A declaration only (``config.py``): the core exports the model from its factory and prepares its input with the
core's ``modelzoo`` preset and the ``aipp`` preset declared in ``config.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_core import hookimpl

from .config import MODELS

if TYPE_CHECKING:
    from collections.abc import Callable

    from zoo_core.specs import ModelSpec

__version__ = "0.1.0"


@hookimpl
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)
