"""A test plugin: registers models, a dataset and a backend under names that would escape a folder or a
terminal line, each refused on its own, beside one good model that keeps working."""

from __future__ import annotations

from dataclasses import replace

from zoo_core import hookimpl
from zoo_core.specs import BackendSpec, DatasetSpec

from zoo_tiny import TINY

BAD_NAMES = ("a/b", "a\\b", "..", "x..y", ".hidden", "two words", "tab\tname", "bell\x07", "esc\x1b[31m", "",
             "new\nline")
GOOD = replace(TINY, name="tiny-good-name")


@hookimpl
def zoo_register_models(register):
    for name in BAD_NAMES:
        register(replace(TINY, name=name))
    register(GOOD)


@hookimpl
def zoo_register_datasets(register):
    register(DatasetSpec(name="../up"))


@hookimpl
def zoo_register_backends(register):
    register(BackendSpec(name="back/slash", available=False, unavailable_reason="a test backend"))
