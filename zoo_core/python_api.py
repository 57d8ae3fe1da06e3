"""zoo for notebooks and scripts: ``run``, ``compare`` and ``report``, the CLI's commands as functions that take
Python values and return typed results (:mod:`zoo_core.results`). The CLI is a thin layer over the same code.

A bad argument raises the :class:`~zoo_core.errors.UsageError` (or :class:`~zoo_core.errors.ZooError`) the CLI
prints as one line; nothing here exits the process, and nothing is drawn unless ``progress=True``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

from .errors import UsageError, ZooError

if TYPE_CHECKING:
    from .app import Zoo
    from .options import OptionSpec
    from .progress import Progress
    from .results import CompareResult, RunComparison, RunResults
    from .specs import RunOptions

__all__ = ["run", "compare", "report"]

PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------------- run


def run(
    model: str, *, bs: int | Sequence[int] | str = 8, backend: str | None = None, weights: PathLike | None = None,
    onnx: PathLike | None = None, data: PathLike | None = None, labels: PathLike | None = None,
    classes: PathLike | None = None, dataset: str | None = None, limit: int | None = None, workers: int | None = None,
    skip_bad: bool = False, shard_images: int | None = None, preset: str | None = None, out: PathLike | None = None,
    warmup: int | None = None, iterations: int | None = None, window: int | None = None, agree: float | None = None,
    max_seconds: float | None = None, threads: int | None = None, opset: int | None = None, seed: int | None = None,
    device: int | Sequence[int] | None = None, backend_options: Mapping[str, object] | None = None,
    engine: str | None = None, address: str | None = None, actors: int | None = None,
    actor_cpus: float | None = None, engine_options: Mapping[str, object] | None = None, progress: bool = False,
    zoo: Zoo | None = None,
) -> RunResults:
    """``zoo run MODEL``: export, compile and time ``model`` (and score it with ``data``); the typed results,
    also written to ``out`` (default ``zoo-runs/MODEL-BACKEND-TIME``) as results.json, results.csv, report.md and
    the chart. Each keyword is the flag of the same name (``bs=[1, 4, 8]`` is ``--bs 1,4,8``; ``device=[0, 1]``
    is ``--device 0,1``; ``backend_options={"soc": "Ascend310P3"}`` is ``--backend-opt soc=Ascend310P3``); ``None``
    leaves it to the model's config and then zoo's default, as a flag left out does. ``zoo``: an application made
    with ``Zoo.create(...)`` (default: one with the installed plugins)."""
    from .specs import parse_batch_sizes, parse_devices

    flags = _checked("run", {
        "weights": weights, "onnx": onnx, "data": data, "labels": labels, "classes": classes, "dataset": dataset,
        "limit": limit, "workers": workers, "skip_bad": skip_bad or None, "shard_images": shard_images,
        "preset": preset, "out": out, "warmup": warmup, "iterations": iterations, "window": window, "agree": agree,
        "max_seconds": max_seconds, "threads": threads, "opset": opset, "seed": seed, "backend": backend,
        "engine": engine, "address": address, "actors": actors, "actor_cpus": actor_cpus,
    })
    flags["batch_sizes"] = parse_batch_sizes(_listed(bs))
    if device is not None:
        flags["devices"] = parse_devices(_listed(device))
    zoo = zoo or _app()
    options = run_options(zoo, model, flags, _given(engine_options), _pairs(backend_options))
    return run_with(zoo, with_default_out(zoo, options), _progress(progress))


def run_options(zoo: Zoo, model: str, flags: Mapping[str, Any], plugin_flags: Mapping[str, Any] | None = None,
                backend_opts: Iterable[str] = (), cache: dict[str, Any] | None = None) -> RunOptions:
    """The options of ``zoo run``, checked before anything runs: ``flags`` by ``RunOptions`` field (only those
    given), ``plugin_flags`` the plugins' options by key, ``backend_opts`` every ``KEY=VALUE``; ``cache`` as
    :func:`plugin_options` takes it."""
    from .engines import check_engine
    from .specs import resolve_options

    options = resolve_options(zoo.registry.model(model), flags)
    # an option of another backend, or a malformed one, is a usage error
    options = with_plugin_options(zoo, options, [options.backend], plugin_flags or {}, tuple(backend_opts), cache)
    check_engine(zoo, options)  # an unknown engine, or an option of another one: a usage error before any work
    return options


def with_default_out(zoo: Zoo, options: RunOptions) -> RunOptions:
    """``options`` with its output folder: the one given, else ``zoo-runs/MODEL-BACKEND-TIME``."""
    if options.out is not None:
        return options
    backend = zoo.registry.backend(options.backend).name
    return options.with_(out=Path("zoo-runs") / f"{options.model}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_with(zoo: Zoo, options: RunOptions, progress: Progress | None = None) -> RunResults:
    """Run ``options`` (from :func:`run_options`, with :func:`with_default_out`'s folder) into its output folder,
    made now; a run stopped before writing anything leaves no empty folder behind."""
    from .files import make_folder, remove_if_empty
    from .runner import run_results

    if options.out is None:
        raise ValueError("run_with needs an output folder: options.with_(out=...) or with_default_out(zoo, options)")
    try:  # an unwritable output folder fails now, not after the whole run
        created = make_folder(options.out)
    except OSError as exc:
        raise ZooError(f"cannot write results to {options.out}: {exc.strerror or exc}",
                       note="choose a writable folder with --out") from None
    try:
        return run_results(zoo, options, progress)
    finally:  # stopped (an error, Ctrl-C, SIGTERM) before writing anything: no empty folder left behind
        remove_if_empty(created)


# ----------------------------------------------------------------------------------------------- compare


def compare(
    model: str, *, backends: str | Sequence[str], bs: int | str = 8, weights: PathLike | None = None,
    onnx: PathLike | None = None, atol: float | None = None, rtol: float | None = None, samples: int | None = None,
    seed: int | None = None, backend_options: Mapping[str, object] | None = None, progress: bool = False,
    zoo: Zoo | None = None,
) -> CompareResult:
    """``zoo compare MODEL --backends A,B``: the same seeded inputs through every backend, each output against
    the reference's (torch when named, else the first). A failed comparison is ``passed=False`` in the result;
    ``result.raise_if_failed()`` makes it the CheckError the CLI exits 4 with."""
    flags = _checked("compare", {"weights": weights, "onnx": onnx, "seed": seed, "atol": atol, "rtol": rtol,
                                 "samples": samples})
    tolerances = {k: flags.pop(k) for k in ("atol", "rtol", "samples") if k in flags}
    zoo = zoo or _app()
    options, names = compare_options(zoo, model, _listed(bs), _listed(backends), flags, {}, _pairs(backend_options))
    return compare_with(zoo, options, names, progress=_progress(progress), **tolerances)


def compare_options(zoo: Zoo, model: str, bs: str, backends: str, flags: Mapping[str, Any],
                    plugin_flags: Mapping[str, Any] | None = None, backend_opts: Iterable[str] = (),
                    cache: dict[str, Any] | None = None) -> tuple[RunOptions, list[str]]:
    """The options of ``zoo compare`` and its backends, checked in the CLI's order: one batch size (``bs`` as
    ``--bs`` takes it), the flags, the backends (``"onnxruntime,torch"``), the plugins' options."""
    from .compare import parse_backends
    from .specs import parse_batch_sizes, resolve_options

    spec = zoo.registry.model(model)
    sizes = parse_batch_sizes(bs, single="compare")
    options = resolve_options(spec, {**flags, "batch_sizes": sizes})
    names = parse_backends(backends)
    return with_plugin_options(zoo, options, names, plugin_flags or {}, tuple(backend_opts), cache), names


def compare_with(zoo: Zoo, options: RunOptions, backends: list[str], samples: int | None = None,
                 atol: float | None = None, rtol: float | None = None, progress: Progress | None = None
                 ) -> CompareResult:
    """Compare ``backends`` under ``options`` (from :func:`compare_options`); the defaults are the CLI's."""
    # Not `from . import compare`: until the submodule is imported, that is zoo_core.compare, this module's function.
    from .compare import DEFAULT_ATOL, DEFAULT_RTOL, default_samples
    from .compare import compare as compare_backends
    from .results import CompareResult

    data = compare_backends(
        zoo, options, backends, default_samples(options.batch_sizes[0]) if samples is None else samples,
        DEFAULT_ATOL if atol is None else atol, DEFAULT_RTOL if rtol is None else rtol, progress)
    return CompareResult.from_json(data, "the comparison of this run")


# ------------------------------------------------------------------------------------------------ report


def report(a: PathLike | RunResults | Mapping[str, Any], b: PathLike | RunResults | Mapping[str, Any], *,
           fail_below: float | None = None, unstable: str | None = None) -> RunComparison:
    """``zoo report A B``: run B against run A, row by row. ``a`` and ``b``: a results.json, a run's folder, a
    :class:`~zoo_core.results.RunResults` or its JSON. With ``fail_below``, ``judgement`` says which batch sizes
    regressed; ``comparison.raise_if_regressed()`` makes that the CheckError the CLI exits 4 with."""
    from .limits import check_path
    from .report import check_judgement, compare_runs, judge, load_results, typed
    from .results import RunResults

    check_judgement(fail_below, unstable)
    sides: list[RunResults] = []
    names: list[str | None] = []
    for label, side in (("A", a), ("B", b)):
        if isinstance(side, (str, Path)):
            check_path(label, side)
            sides.append(load_results(Path(side)))
            names.append(str(side))
        elif isinstance(side, (RunResults, Mapping)):
            sides.append(typed(side))
            names.append(None)
        else:
            raise UsageError(f"{label}: a {type(side).__name__} is not a run",
                             note="pass a results.json, a run's folder, or the results of zoo_core.run")
    comparison = compare_runs(sides[0], sides[1], names[0], names[1])
    if fail_below is None:
        return comparison
    return replace(comparison, judgement=judge(comparison.rows, fail_below, unstable or "skip"))


# ------------------------------------------------------------------------------ the plugins' options


def plugin_options(zoo: Zoo, cache: dict[str, Any] | None = None) -> list[OptionSpec]:
    """The options plugins add for their backends and engines; one whose flag a core option of ``zoo run`` or
    ``zoo compare`` already takes is a problem of its plugin (``zoo plugins``) and left out. ``cache``: where a
    command keeps them once found (a click context's ``meta``)."""
    from .cli import core_flags
    from .plugin_options import declared
    from .plugins import PluginProblem

    cache = {} if cache is None else cache
    if "zoo.options" not in cache:
        taken = core_flags()
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
             "actors", "samples"}
_NUMBERS = {"agree", "max_seconds", "actor_cpus", "atol", "rtol"}
_PATHS = {"weights", "onnx", "data", "labels", "classes", "out"}


def _checked(command: str, values: Mapping[str, object]) -> dict[str, Any]:
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
            value = str(value) if name == "weights" else Path(value)
        elif name not in _INTEGERS | _NUMBERS and not isinstance(value, (str, bool)):
            raise UsageError(f"{flag}: {value!r} is not a name", note=f"`zoo {command} --help` lists them")
        flags[name] = value
    return flags


def _listed(value: object) -> str:
    """``8``, ``[1, 4, 8]`` or ``"1,4,8"`` as the command line's ``1,4,8``; the parser checks each part."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _pairs(options: Mapping[str, object] | None) -> tuple[str, ...]:
    """A backend's options as ``--backend-opt KEY=VALUE`` pairs: a list is one pair each, a bool ``true``/``false``."""
    pairs: list[str] = []
    for key, value in (options or {}).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append(f"{key}={str(item).lower() if isinstance(item, bool) else item}")
    return tuple(pairs)


def _given(options: Mapping[str, object] | None) -> dict[str, Any]:
    """An engine's options as given on the command line: a flag ``True`` (``False`` leaves it out), else text."""
    given: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if value is True:
            given[key] = True
        elif value is not False and value is not None:
            given[key] = tuple(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return given


def _app() -> Zoo:
    from .app import Zoo

    return Zoo.create()


def _progress(shown: bool) -> Progress:
    from .progress import Progress, RichProgress

    return RichProgress() if shown else Progress()
