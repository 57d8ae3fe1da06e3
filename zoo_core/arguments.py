"""Python values as the command line's flags, for zoo_core.run / compare / report: each checked as click checks
its flag (one UsageError worded alike), and the options plugins add for their backends and engines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping, Union

from .errors import UsageError

if TYPE_CHECKING:
    from .app import Zoo
    from .options import OptionSpec
    from .progress import Progress
    from .specs import RunOptions

PathLike = Union[str, Path]


# ------------------------------------------------------------------------------ the plugins' options


def plugin_options(zoo: Zoo, cache: dict[str, Any] | None = None, taken: Collection[str] = ()) -> list[OptionSpec]:
    """The options plugins add for their backends and engines. ``taken``: the command line's own flags; a plugin
    option whose flag is one of them is a problem of its plugin (``zoo plugins``) and left out (from Python,
    where an option is named by its key, none is taken). ``cache``: where a command keeps them once found (a
    click context's ``meta``)."""
    from .plugin_options import declared
    from .plugins import PluginProblem

    cache = {} if cache is None else cache
    if "zoo.options" not in cache:
        cache["zoo.options"] = []
        for spec in declared(zoo.registry):
            if spec.command_line and spec.flag in taken:
                zoo.pm.problems.append(PluginProblem(spec.plugin, f"option {spec.flag} of {spec.owner}: zoo's own "
                                                     "option takes that flag; it is ignored"))
            else:
                cache["zoo.options"].append(spec)
    options: list[OptionSpec] = cache["zoo.options"]
    return options


def with_plugin_options(zoo: Zoo, options: RunOptions, backends: list[str], given: Mapping[str, Any],
                        generic: tuple[str, ...], cache: dict[str, Any] | None = None) -> RunOptions:
    """``options`` with the plugin options ``given`` and every ``--backend-opt``; a usage error for an option of a
    backend or engine the run does not use, or a key its backend does not declare."""
    if not given and not generic:
        return options
    from .plugin_options import resolve

    specs = [zoo.registry.backend(name) if name == "auto" else zoo.registry.backend_of(name) for name in backends]
    backend_options, engine_options = resolve(plugin_options(zoo, cache), specs, options.engine, given, generic)
    return options.with_(backend_options=backend_options, engine_options=engine_options)


# ------------------------------------------------------------------------------------------------ helpers

_INTEGERS = {"limit", "workers", "shard_images", "warmup", "iterations", "window", "threads", "opset", "seed",
             "actors", "samples", "calib_images"}
_NUMBERS = {"agree", "max_seconds", "actor_cpus", "atol", "rtol"}
_PATHS = {"weights", "onnx", "data", "labels", "classes", "out", "calib"}
_TEXT_PATHS = {"weights", "calib"}  # a path or a word (random)


def checked(command: str, values: Mapping[str, object]) -> dict[str, Any]:
    """The keyword arguments given (not ``None``), each of the type its flag takes, else the usage error the CLI
    gives for a value it cannot read."""
    flags: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if name in _INTEGERS and (not isinstance(value, int) or isinstance(value, bool)):
            raise UsageError(f"{flag}: {value!r} is not a whole number", note=f"`zoo {command} --help` lists them")
        if name in _NUMBERS and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise UsageError(f"{flag}: {value!r} is not a number", note=f"`zoo {command} --help` lists them")
        if name in _PATHS:
            if not isinstance(value, (str, Path)):
                raise UsageError(f"{flag}: {value!r} is not a path", note="pass a str or a pathlib.Path")
            value = str(value) if name in _TEXT_PATHS else Path(value)
        elif name not in _INTEGERS | _NUMBERS and not isinstance(value, (str, bool)):
            raise UsageError(f"{flag}: {value!r} is not a name", note=f"`zoo {command} --help` lists them")
        flags[name] = value
    return flags


def listed(value: object) -> str:
    """``8``, ``[1, 4, 8]`` or ``"1,4,8"`` as the command line's ``1,4,8``; the parser checks each part."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def pairs(options: Mapping[str, object] | None) -> tuple[str, ...]:
    """A backend's options as ``--backend-opt KEY=VALUE`` pairs: a list is one pair each, a bool ``true``/``false``."""
    pairs: list[str] = []
    for key, value in (options or {}).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append(f"{key}={str(item).lower() if isinstance(item, bool) else item}")
    return tuple(pairs)


def given_flags(options: Mapping[str, object] | None) -> dict[str, Any]:
    """An engine's options as given on the command line: a flag ``True`` (``False`` leaves it out), else text."""
    given: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if value is True:
            given[key] = True
        elif value is not False and value is not None:
            given[key] = tuple(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return given


def app() -> Zoo:
    from .app import Zoo

    return Zoo.create()


def progress_for(shown: bool) -> Progress:
    from .progress import Progress, RichProgress

    return RichProgress() if shown else Progress()
