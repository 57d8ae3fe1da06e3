"""The ResNeSt model plugin: ResNeSt-50/101/200/269 with the Ascend ModelZoo recipe's settings.

A declaration only (``config.py``): the core exports the models from their factory and prepares their input with
the core's ``modelzoo`` and ``reference`` presets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_core import hookimpl

from .config import MODELS

if TYPE_CHECKING:
    from collections.abc import Callable

    from zoo_core.specs import ModelSpec

__version__ = "0.2.0"


@hookimpl
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)
