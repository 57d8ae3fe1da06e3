"""The DeiT model plugin (third-party example): DeiT-Tiny declared as data; the core exports and prepares it."""

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
