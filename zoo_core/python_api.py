"""zoo for notebooks and scripts: ``run``, ``compare`` and ``report``, the CLI's commands as functions that take
Python values and return typed results (:mod:`zoo_core.results`). The CLI is a thin layer over the same code.

A bad argument raises the :class:`~zoo_core.errors.UsageError` (or :class:`~zoo_core.errors.ZooError`) the CLI
prints as one line; nothing here exits the process, and nothing is drawn unless ``progress=True``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import arguments as args
from .arguments import PathLike
from .errors import UsageError, ZooError

from .comparison import compare_models as compare

if TYPE_CHECKING:
    from .app import Zoo
    from .progress import Progress
    from .results import CompareResult, RunComparison, RunResults
    from .specs import RunOptions

__all__ = ["run", "compare", "report", "load"]

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
    actor_cpus: float | None = None, engine_options: Mapping[str, object] | None = None,
    precision: str | Sequence[str] | None = None, calib: PathLike | None = None, calib_images: int | None = None,
    calib_method: str | None = None, dynamic_batch: bool | str = False, progress: bool = False,
    zoo: Zoo | None = None,
) -> RunResults:
    """``zoo run MODEL``: export, compile and time ``model`` (and score it with ``data``); the typed results,
    also written to ``out`` (default ``zoo-runs/MODEL-BACKEND-TIME``) as results.json, results.csv, report.md and
    the chart. Each keyword is the flag of the same name (``bs=[1, 4, 8]`` is ``--bs 1,4,8``; ``device=[0, 1]``
    is ``--device 0,1``; ``precision=["fp32", "int8"]`` is ``--precision fp32,int8``; ``dynamic_batch=True`` is
    ``--dynamic-batch``, ``dynamic_batch="both"`` is ``--dynamic-batch=both``;
    ``backend_options={"soc": "Ascend310P3"}`` is ``--backend-opt soc=Ascend310P3``); ``None``
    leaves it to the model's config and then zoo's default, as a flag left out does. ``zoo``: an application made
    with ``Zoo.create(...)`` (default: one with the installed plugins)."""
    from .specs import parse_batch_sizes, parse_devices, parse_precisions

    flags = args.checked("run", {
        "weights": weights, "onnx": onnx, "data": data, "labels": labels, "classes": classes, "dataset": dataset,
        "limit": limit, "workers": workers, "skip_bad": skip_bad or None, "shard_images": shard_images,
        "preset": preset, "out": out, "warmup": warmup, "iterations": iterations, "window": window, "agree": agree,
        "max_seconds": max_seconds, "threads": threads, "opset": opset, "seed": seed, "backend": backend,
        "engine": engine, "address": address, "actors": actors, "actor_cpus": actor_cpus,
        "calib": calib, "calib_images": calib_images, "calib_method": calib_method,
    })
    flags["batch_sizes"] = parse_batch_sizes(args.listed(bs))
    if precision is not None:
        flags["precisions"] = parse_precisions(args.listed(precision))
    if device is not None:
        flags["devices"] = parse_devices(args.listed(device))
    if dynamic_batch not in (False, True, "only", "both"):
        raise UsageError(f"dynamic_batch={dynamic_batch!r}: give True (or 'only') or 'both'",
                         note="dynamic_batch=True is --dynamic-batch, 'both' is --dynamic-batch=both")
    if dynamic_batch:
        flags["batch_modes"] = ("static", "dynamic") if dynamic_batch == "both" else ("dynamic",)
    zoo = zoo or args.app()
    options = run_options(zoo, model, flags, args.given_flags(engine_options), args.pairs(backend_options))
    return run_with(zoo, with_default_out(zoo, options), args.progress_for(progress))


# zoo run's options that only mean something with --data: (flag, RunOptions field)
DATA_FLAGS = (("--labels", "labels"), ("--classes", "classes"), ("--dataset", "dataset"), ("--limit", "limit"),
              ("--skip-bad", "skip_bad"), ("--shard-images", "shard_images"))


def run_options(zoo: Zoo, model: str, flags: Mapping[str, Any], plugin_flags: Mapping[str, Any] | None = None,
                backend_opts: Iterable[str] = (), cache: dict[str, Any] | None = None) -> RunOptions:
    """The options of ``zoo run``, checked before anything runs: ``flags`` by ``RunOptions`` field (only those
    given), ``plugin_flags`` the plugins' options by key, ``backend_opts`` every ``KEY=VALUE``; ``cache`` as
    :func:`zoo_core.arguments.plugin_options` takes it."""
    from .engines import check_engine
    from .specs import resolve_options

    options = resolve_options(zoo.registry.model(model), flags)
    if options.data is None:  # the dataset's options, without a dataset, would be ignored without a word
        given = [flag for flag, key in DATA_FLAGS if flags.get(key) is not None]
        if given:
            raise UsageError(f"{given[0]} is for --data, and without it the run times generated input",
                             note=f"add --data DIR, or drop {given[0]}")
    # an option of another backend, or a malformed one, is a usage error
    options = args.with_plugin_options(zoo, options, [options.backend], plugin_flags or {}, tuple(backend_opts), cache)
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


# ------------------------------------------------------------------------------- compare (imported above), report


def report(a: PathLike | RunResults | Mapping[str, Any], b: PathLike | RunResults | Mapping[str, Any], *,
           fail_below: float | None = None, unstable: str | None = None) -> RunComparison:
    """``zoo report A B``: run B against run A, row by row. ``a`` and ``b``: a results.json, a run's folder, a
    :class:`~zoo_core.results.RunResults` or its JSON. With ``fail_below``, ``judgement`` says which batch sizes
    regressed; ``comparison.raise_if_regressed()`` makes that the CheckError the CLI exits 4 with."""
    from .reporting import compare_two

    return compare_two(a, b, fail_below=fail_below, unstable=unstable)


def load(path: PathLike) -> RunResults:
    """The results of a run from its results.json (or its folder), checked as ``zoo report`` checks it: a file
    that is not a zoo results object is one ZooError naming the file and the field."""
    from .reporting import load_results

    return load_results(Path(path))


def compare_with(zoo: Zoo, options: RunOptions, backends: list[str], samples: int | None = None,
                 atol: float | None = None, rtol: float | None = None, progress: Progress | None = None,
                 min_agreement: float | None = None, precision: str | None = None) -> CompareResult:
    """:func:`zoo_core.comparison.compare_with`: compare ``backends`` under options already resolved."""
    from .comparison import compare_with as compare_resolved

    return compare_resolved(zoo, options, backends, samples, atol, rtol, progress, min_agreement, precision)


def _app() -> Zoo:
    return args.app()
