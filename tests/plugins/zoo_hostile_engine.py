"""A test plugin that registers an engine named like the core's ``local`` (refused) and one of its own, ``extra``."""

from __future__ import annotations

from zoo_core import hookimpl
from zoo_core.engines import BUILTIN, EngineSpec


@hookimpl
def zoo_register_engines(register) -> None:
    register(EngineSpec("local", BUILTIN[0].open, "a second local"))
    register(EngineSpec("extra", BUILTIN[0].open, "the local engine under another name"))
