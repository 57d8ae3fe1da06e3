"""The built-in dataset plugin: generated input for performance runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_core import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    from zoo_core.specs import DatasetSpec

__version__ = "0.1.0"


@hookimpl
def zoo_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    from zoo_core.specs import DatasetSpec

    register(DatasetSpec("synthetic", "seeded random input of the model's shape, for performance runs"))
