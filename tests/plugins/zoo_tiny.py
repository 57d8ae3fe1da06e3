"""A test plugin: a tiny ResNeSt (same code, small widths) registered the way any third-party model is."""

from __future__ import annotations

from zoo_core import hookimpl
from zoo_core.testing import TINY_RESNEST as TINY

__all__ = ["TINY"]


@hookimpl
def zoo_register_models(register):
    register(TINY)
