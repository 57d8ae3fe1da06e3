"""The runner: orchestrates export, simplify and compile for any registered model on any backend, then the
timing and the evaluation on the run's engine, into one results object."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .app import Zoo
from .artifacts import Artifact, scratch_beside
from .datasets import Dataset, check_folder
from .engines import check_engine, open_engine
from .environment import fingerprint, package_version
from .errors import EXIT_BUG, UsageError, ZooError
from .export import CHECK_FILE, CHECKS, export_onnx, simplify_onnx
from .limits import check_batch_memory, check_opset, check_opset_option
from .onnx_shared import reshare, save_whole
from .measure import results_row
from .plugins import plugin_source, plugin_version, source_hash
from .plugin_options import cache_pairs
from .precision import (RANDOM, Calibration, PrecisionPlan, accuracy_cost, calibrate, check_quantize_opset,
                        export_opset, plan_precisions)
from .profiling import block as profile_block, check_profile, profile_compiled
from .progress import Progress
from .results import RunResults
from .runtime import CompiledModel, load_compiled, save_compiled
from .specs import DEFAULTS, DYNAMIC, QUANTIZED, STATIC, BackendSpec, ModelSpec, RunOptions
from .weights import WeightsRef, resolve_weights

SCHEMA = 1
EXPORT_FILE = "model.onnx"
SIMPLIFIED_FILE = "model.sim.onnx"
QUANTIZED_RECORD = "quantized.json"  # the quantize artifact's main file, as its backend named it
__all__ = ["Zoo", "Prepared", "prepare", "run", "run_results", "plan", "export_to_file",  # Zoo lives in app.py
           "write_results"]


@dataclass
class Prepared:
    """A model exported, then simplified and compiled for every batch size, on one backend."""

    model: ModelSpec
    backend: BackendSpec
    weights: WeightsRef
    exported: Artifact
    compiled: dict[int, CompiledModel] = field(default_factory=dict)
    precision: str = ""  # what the compiled models compute in (the backend's native one when none was asked)
    batch_mode: str = STATIC  # DYNAMIC: every batch size's compiled model is the same one, compiled for them all
    artifacts: list[Artifact] = field(default_factory=list)  # every stage's, in the order they were needed


def export(zoo: Zoo, model: ModelSpec, weights: WeightsRef, options: RunOptions, progress: Progress) -> Artifact:
    """The model's dynamic-batch ONNX export, from the cache or built now."""
    inputs = {
        "model": model.to_dict(),
        "weights": weights.key,
        "opset": options.opset,
        "torch": package_version("torch"),
        "onnx": package_version("onnx"),
        "plugin": model.plugin,
        "plugin_version": plugin_version(zoo.pm, model.plugin),  # a new release may build the model differently
        "plugin_source": _export_sources(zoo, model),  # and so may an edit without a release
        "checks": CHECKS,  # an export cached before a check existed (NaN passed once) is built and checked again
    }

    def build(folder: Path) -> None:
        check_opset(options.opset)  # torch is imported for the export anyway
        with zoo.timer.stage("export"):
            path = zoo.registry.call("zoo_export", model, model=model, weights=weights, path=folder / EXPORT_FILE,
                                     options=options)
            if path is None:  # the model's plugin leaves it to the core: the generic export of its factory
                export_onnx(model, weights, folder / EXPORT_FILE, opset=options.opset, atol=options.export_atol)
        _check_written(folder / EXPORT_FILE, f"zoo_export of model {model.name!r} (plugin {model.plugin!r})")
        reshare(folder / EXPORT_FILE)  # its weights as files by content: stored once with the simplified ones

    if options.onnx is not None:
        return given_onnx(zoo, model, Path(options.onnx), progress, options)
    with progress.stage(f"export {model.name} to ONNX (opset {options.opset})") as done:
        artifact = zoo.store.get_or_build("export", inputs, build)
        done(_stage_note(artifact, _export_check(artifact)))
    return artifact


def given_onnx(zoo: Zoo, model: ModelSpec, path: Path, progress: Progress,
               options: RunOptions | None = None) -> Artifact:
    """``--onnx FILE`` in place of the export: the user's file (and the external data files it references),
    checked once and keyed by its content."""
    from .files import sha256_file
    from .onnx_input import read_given_onnx

    given = read_given_onnx(model, path)  # a file zoo cannot use is one line here, not a traceback later
    if options is not None:
        given.check_batch_sizes(options.batch_sizes, DYNAMIC in options.batch_modes)
    external = given.external_hashes()

    def build(folder: Path) -> None:
        given.check_loadable()
        given.copy_into(folder, EXPORT_FILE)

    inputs = {"given": sha256_file(path), "model": model.to_dict(), **({"external_data": external} if external else {})}
    with progress.stage(f"use {path.name} as the export of {model.name}") as done:
        artifact = zoo.store.get_or_build("export", inputs, build)
        done(_stage_note(artifact))
    return artifact


def simplify(zoo: Zoo, model: ModelSpec, exported: Artifact, batch_size: int | None, progress: Progress) -> Artifact:
    """onnxsim with the batch fixed at ``batch_size`` (``None``: left dynamic), from the cache or built now."""
    inputs = {"export": exported.key, "batch_size": batch_size, "onnxsim": package_version("onnxsim"), "checks": CHECKS}

    def build(folder: Path) -> None:
        with zoo.timer.stage("simplify"):
            simplify_onnx(model, exported.file(EXPORT_FILE), folder / SIMPLIFIED_FILE, batch_size)

    with progress.stage(f"simplify at batch {batch_size}" if batch_size else "simplify with a dynamic batch") as done:
        artifact = zoo.store.get_or_build("simplify", inputs, build)
        done(_stage_note(artifact))
    return artifact


def run_model(zoo: Zoo, backend: BackendSpec, options: RunOptions) -> ModelSpec:
    """The run's model as ``backend`` compiles and runs it with ``options`` (its ``zoo_run_model``: Ascend's
    ``--aipp`` feeds uint8 images), else as registered."""
    model = zoo.registry.model(options.model)
    adapted = zoo.registry.call("zoo_run_model", backend, backend=backend, model=model, options=options)
    if adapted is None:
        return model
    if not isinstance(adapted, ModelSpec) or adapted.name != model.name:
        raise ZooError(f"the plugin {backend.plugin!r} of backend {backend.name!r} returned "
                       f"{type(adapted).__name__} from zoo_run_model, not model {model.name!r}",
                       note="a bug in that plugin: report it to its author", exit_code=EXIT_BUG)
    return adapted


def check_same_input(zoo: Zoo, backend: BackendSpec, options: RunOptions, command: str) -> None:
    """``command`` feeds every backend the model's own input: a backend whose compiled model takes another (the uint8
    images of an AIPP, say) is one usage error, before any work."""
    model = run_model(zoo, backend, options)
    shape, dtype, _ = model.input_for(backend.name)
    if (shape, dtype) != (tuple(model.input_shape), model.input_dtype):
        raise UsageError(f"{command} feeds every backend {model.name}'s input, {model.input_dtype}"
                         f"{list(model.input_shape)}, and on {backend.name} it takes {dtype}{list(shape)} "
                         "(the model's backend input, or an option such as --aipp)",
                         note="drop that option if you gave one; else compare accuracies with `zoo run --data` on "
                         "each backend")


def compile_model(
    zoo: Zoo,
    model: ModelSpec,
    backend: BackendSpec,
    weights: WeightsRef,
    simplified: Artifact,
    batch_size: int,
    options: RunOptions,
    progress: Progress,
    precision: str = "",
    quantized: Artifact | None = None,
    batch_sizes: tuple[int, ...] = (),
) -> Artifact:
    """The backend's compiled model for one batch size, from the cache or built now; of ``quantized`` (what the
    backend's zoo_quantize made) when the precision is a quantized one. With ``batch_sizes`` (``--dynamic-batch``),
    one model that serves each of them, ``batch_size`` being the largest."""
    precision = precision or backend.precisions[0]
    inputs = {
        "simplified": simplified.key,
        **({"batch_sizes": list(batch_sizes)} if batch_sizes else {}),
        **({"precision": precision} if precision != backend.precisions[0] else {}),  # native: the keys of before
        **({"quantized": quantized.key} if quantized is not None else {}),
        **({"extra_outputs": list(options.extra_outputs)} if options.extra_outputs else {}),
        "weights": weights.key,
        "backend": backend.name,
        "plugin": backend.plugin,
        "plugin_source": plugin_source(zoo.pm, backend.plugin),  # an edit of the backend without a release
        "backend_version": package_version(backend.name),
        "threads": options.threads,
        "backend_args": _with_file_hashes([*model.backend_args.get(backend.name, {}).items()]),
        "backend_options": _with_file_hashes(cache_pairs(options.backend_options)),  # every option, files hashed
        # What the compiled model takes, where the model (or the backend's zoo_run_model) gives it another input.
        **({"input": model.to_dict()["backend_inputs"][backend.name]} if backend.name in model.backend_inputs
           else {}),
        "machine": sorted(json.dumps(f, sort_keys=True) for f in zoo.pm.hook.zoo_environment() if f),
    }

    def build(folder: Path) -> None:
        # The backend gets one self-contained ONNX file, as always: the cached one keeps its tensors beside it.
        with zoo.timer.stage("compile"), scratch_beside(folder) as scratch:
            if quantized is not None:
                source = quantized_file(quantized)
            else:
                source = scratch / SIMPLIFIED_FILE
                save_whole(simplified.file(SIMPLIFIED_FILE), source)
            compiled = zoo.registry.call(
                "zoo_compile", backend, backend=backend, model=model, weights=weights,
                onnx_path=source, batch_size=batch_size, workdir=folder, options=options, precision=precision,
                batch_sizes=batch_sizes,
            )
        if compiled is None:
            raise ZooError(f"the plugin {backend.plugin!r} of backend {backend.name!r} compiled nothing",
                           note="its zoo_compile returned nothing: a bug in that plugin", exit_code=EXIT_BUG)
        _check_compiled(compiled, backend, model, batch_size)
        _check_written(Path(compiled.path), f"zoo_compile of backend {backend.name!r} (plugin {backend.plugin!r})",
                       inside=folder)
        save_compiled(compiled, folder)

    what = f" ({precision})" if precision != backend.precisions[0] else ""
    at = f"for batches {','.join(map(str, batch_sizes))}" if batch_sizes else f"at batch {batch_size}"
    with progress.stage(f"compile for {backend.name}{what} {at}") as done:
        artifact = zoo.store.get_or_build("compile", inputs, build)
        done(_stage_note(artifact))
    return artifact


def quantize(
    zoo: Zoo,
    model: ModelSpec,
    backend: BackendSpec,
    simplified: Artifact,
    batch_size: int,
    precision: str,
    calibration: Calibration,
    options: RunOptions,
    progress: Progress,
) -> Artifact:
    """The backend's quantized model for one batch size, from the cache or built now."""
    inputs = {
        "simplified": simplified.key,
        "precision": precision,
        "calibration": calibration.sha256,  # the set's content: another set, or other preprocessing, another key
        "method": calibration.method,
        "backend": backend.name,
        "plugin": backend.plugin,
        "plugin_source": plugin_source(zoo.pm, backend.plugin),
        "backend_version": package_version(backend.name),
        "backend_options": _with_file_hashes(cache_pairs(options.backend_options)),
    }

    check_quantize_opset(backend, simplified.file(SIMPLIFIED_FILE), options)  # an --onnx FILE of an older opset

    def build(folder: Path) -> None:
        with zoo.timer.stage("quantize"), scratch_beside(folder) as scratch:
            save_whole(simplified.file(SIMPLIFIED_FILE), scratch / SIMPLIFIED_FILE)
            path = zoo.registry.call(
                "zoo_quantize", backend, backend=backend, model=model, onnx_path=scratch / SIMPLIFIED_FILE,
                batch_size=batch_size, precision=precision, calibration=calibration, workdir=folder,
                options=options,
            )
        if path is None:
            raise ZooError(f"backend {backend.name!r} declares {precision} but its plugin {backend.plugin!r} "
                           "quantized nothing", note="its zoo_quantize returned nothing: a bug in that plugin",
                           exit_code=EXIT_BUG)
        where = f"zoo_quantize of backend {backend.name!r} (plugin {backend.plugin!r})"
        _check_written(Path(path), where, inside=folder)
        (folder / QUANTIZED_RECORD).write_text(json.dumps({"file": str(Path(path).resolve().relative_to(
            folder.resolve()))}) + "\n")

    label = f"quantize to {precision} for {backend.name} at batch {batch_size}"
    with progress.stage(label + (f" ({calibration.method})" if calibration.method else "")) as done:
        artifact = zoo.store.get_or_build("quantize", inputs, build)
        done(_stage_note(artifact))
    return artifact


def quantized_file(artifact: Artifact) -> Path:
    """The file a quantize artifact holds for the compile."""
    return artifact.path / json.loads(artifact.file(QUANTIZED_RECORD).read_text())["file"]


def prepare(zoo: Zoo, options: RunOptions, progress: Progress | None = None, precision: str | None = None,
            calibration: Calibration | None = None, batch_mode: str = STATIC) -> Prepared:
    """Resolve, export, simplify (quantize) and compile for every batch size of ``options``, in ``precision``
    (default: the backend's native one; a quantized one needs ``calibration``); in ``batch_mode`` DYNAMIC, one model
    simplified with a dynamic batch and compiled for all of them."""
    progress = progress or Progress()
    model = zoo.registry.model(options.model)
    backend = zoo.registry.backend(options.backend)
    precision = precision or backend.precisions[0]
    check_opset_option(model, options)
    weights = resolve_weights(model, options.weights, seed=options.seed, progress=progress.interactive)
    exported = export(zoo, model, weights, options, progress)
    model = run_model(zoo, backend, options)  # compiled, timed and evaluated as the backend runs it
    check_batch_memory(model, exported.file(EXPORT_FILE), options.batch_sizes)  # before a batch is allocated
    prepared = Prepared(model, backend, weights, exported, artifacts=[exported], precision=precision,
                        batch_mode=batch_mode)
    if batch_mode == DYNAMIC:
        if precision in QUANTIZED:  # check_batch_modes refused it before any work
            raise RuntimeError(f"prepare({precision!r}, {batch_mode!r}): a quantized dynamic batch")
        simplified = simplify(zoo, model, exported, None, progress)
        sizes = tuple(sorted(options.batch_sizes))
        compiled = compile_model(zoo, model, backend, weights, simplified, sizes[-1], options, progress, precision,
                                 batch_sizes=sizes)
        prepared.artifacts += [simplified, compiled]
        one = load_compiled(compiled.path)
        prepared.compiled = {bs: at_batch(one, bs) for bs in options.batch_sizes}
        return prepared
    for bs in options.batch_sizes:
        simplified = simplify(zoo, model, exported, bs, progress)
        prepared.artifacts.append(simplified)
        quantized = None
        if precision in QUANTIZED:
            if calibration is None:
                raise RuntimeError(f"prepare({precision!r}) needs a calibration set")
            quantized = quantize(zoo, model, backend, simplified, bs, precision, calibration, options, progress)
            prepared.artifacts.append(quantized)
        compiled = compile_model(zoo, model, backend, weights, simplified, bs, options, progress, precision, quantized)
        prepared.artifacts.append(compiled)
        prepared.compiled[bs] = load_compiled(compiled.path)
    return prepared


def at_batch(compiled: CompiledModel, batch_size: int) -> CompiledModel:
    """A dynamic-batch compiled model (compiled at its largest batch size) as it runs at ``batch_size``: the same
    file, inputs of that batch."""
    from dataclasses import replace

    inputs = tuple(replace(i, shape=(batch_size, *i.shape[1:])) for i in compiled.inputs)
    return replace(compiled, batch_size=batch_size, inputs=inputs)


def check_batch_modes(backend: BackendSpec, options: RunOptions, precisions: tuple[str, ...]) -> None:
    """``--dynamic-batch`` needs a backend that compiles one model for several batch sizes, two or more batch
    sizes, and float precisions (a quantizer calibrates one batch shape)."""
    if DYNAMIC not in options.batch_modes:
        return
    if not backend.dynamic_batch:
        raise UsageError(f"--dynamic-batch: backend {backend.name!r} compiles one model per batch size",
                         note="leave --dynamic-batch out, or choose a backend that compiles a dynamic batch "
                         "(`zoo doctor` lists them)")
    if len(options.batch_sizes) < 2:
        raise UsageError(f"--dynamic-batch with the one batch size {options.batch_sizes[0]}: a dynamic-batch model "
                         "serves two or more", note="give the batch sizes it serves, e.g. --bs 1,4,8 --dynamic-batch")
    quantized = [p for p in precisions if p in QUANTIZED]
    if quantized:
        raise UsageError(f"--dynamic-batch with --precision {quantized[0]}: zoo quantizes and compiles one "
                         f"{quantized[0]} model per batch size", note="run the quantized precision without "
                         "--dynamic-batch, or the float ones with it")


def run(zoo: Zoo, options: RunOptions, progress: Progress | None = None) -> dict[str, Any]:
    """The whole recipe for one model on one backend and every batch size: the results object, as JSON."""
    return run_results(zoo, options, progress).to_json()


def run_results(zoo: Zoo, options: RunOptions, progress: Progress | None = None) -> RunResults:
    """The whole recipe for one model on one backend and every batch size: the typed results, written to
    ``options.out`` when it is set."""
    progress = progress or Progress()
    zoo.timer.seconds.clear()
    backend = zoo.registry.backend(options.backend)
    check_engine(zoo, options)
    check_devices(backend, options)
    plan = plan_precisions(backend, options)  # what the backend cannot do, or no calibration: before any work
    check_batch_modes(backend, options, plan.precisions)
    check_profile(zoo, backend, options)
    zoo.registry.call("zoo_check_run", backend, backend=backend, model=zoo.registry.model(options.model),
                      options=options, precisions=plan.precisions)
    options = options.with_(opset=export_opset(backend, options, plan))
    check_opset_option(zoo.registry.model(options.model), options)
    if options.data is not None:
        from .evaluate import check_first_sample, load_dataset

        model = run_model(zoo, backend, options)
        # A bad dataset, or preprocessing that fails or gives the wrong sample, fails before any export.
        dataset = load_dataset(zoo, model, options)
        check_first_sample(zoo, model, backend.name, options, dataset)
    engine = open_engine(zoo, options, backend)  # a cluster is joined (and checked) before the long export
    with engine:
        model = zoo.registry.model(options.model)
        calibration = calibrate(zoo, model, options, plan, progress) if plan.quantized else None
        model = run_model(zoo, backend, options)
        rows, asked, accuracy, evaluations = [], [], None, {}
        profiles: list[dict[str, Any]] = []
        modes = options.batch_modes
        for precision, mode in [(p, m) for p in plan.precisions for m in modes]:
            prepared = prepare(zoo, options, progress, precision, calibration, mode)
            for bs in options.batch_sizes:
                compiled = prepared.compiled[bs]
                row = results_row(bs, engine.measure(model, compiled, options, progress))
                # What the compiled model computes in, where its backend says (an Ascend .om compiled with
                # --precision-mode force_fp32 and no --precision is fp32, not the backend's native fp16).
                said = compiled.extra.get("precision") if isinstance(compiled.extra, dict) else None
                rows.append({**row, "precision": said if isinstance(said, str) and said else precision,
                             **({"batch_mode": mode} if modes != (STATIC,) else {})})
                asked.append(precision)
                if options.profile:  # extra batches after the timed ones, under the backend's profiler
                    profiles.append(profile_compiled(zoo, model, compiled, options, rows[-1]["precision"], progress))
            if options.data is not None and mode == modes[0]:  # scored once per precision, in the first mode
                from .evaluate import evaluate

                evaluated = evaluate(zoo, prepared, options, progress, engine,
                                     first=precision == plan.precisions[0], several=len(plan.precisions) > 1)
                evaluations[precision] = evaluated.pop("scored")
                accuracy = accuracy or evaluated  # the first precision's, as before precisions existed
                row = rows[len(rows) - len(options.batch_sizes) + options.batch_sizes.index(evaluated["batch_size"])]
                row.update(top1=evaluated.get("top1"), top5=evaluated.get("top5"), images=evaluated["images"])
        if plan.reference is not None and evaluations:
            for row, precision in zip(rows, asked, strict=True):
                if precision != plan.reference and row.get("images") is not None:
                    row.update(accuracy_cost(evaluations[plan.reference], evaluations[precision]))
        rows.sort(key=lambda r: options.batch_sizes.index(r["batch_size"]))  # a batch size's precisions together
        engine_facts = engine.describe()
    env = environment(zoo)
    results = {
        "schema": SCHEMA,
        "model": model.name,
        "backend": prepared.backend.name,
        "device": prepared.backend.device,
        "device_name": _device_name(zoo, prepared.backend, env),  # the chip, as the backend's plugin names it
        "plugins": {role: {"name": spec.plugin, "version": plugin_version(zoo.pm, spec.plugin)}
                    for role, spec in (("model", model), ("backend", prepared.backend))},
        "weights": prepared.weights.label,
        "preset": options.preset,
        "env": env,
        "export": {"opset": options.opset, **_export_check(prepared.exported)},
        "measurement": {
            "warmup": options.warmup,
            "iterations": options.iterations,
            "window": options.window,
            "agree": options.agree,
            "max_seconds": options.max_seconds,
            "stability": "fixed --iterations count" if options.iterations is not None else
            "windows of `window` batches until 3 consecutive window means agree within `agree`, "
            "or `max_seconds` (row marked unstable); statistics from the 3 agreeing windows",
            "threads": options.threads,
            **_request_mode(prepared),
            "formula": "throughput = 1000 * batch_size / mean batch latency (ms), summed over devices; "
            "throughput_device uses the backend's own compute time per batch (ais_bench's number), "
            "throughput_e2e the wall time of each call",
        },
        "engine": engine_facts,
        "stage_seconds": zoo.timer.snapshot(),  # the stages built in this process (a cached stage is not built)
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "accuracy": accuracy,
        "precision": _precision_facts(plan, calibration, rows),
        **({"profile": profile_block(profiles, options.profile)} if options.profile else {}),
        "results": rows,
    }
    try:
        typed = RunResults.from_json(results, "the results of this run")
    except ZooError as exc:  # what zoo or a plugin measured has the wrong shape: a bug, with its traceback
        raise RuntimeError(exc.message) from None
    if options.out is not None:
        write_results(typed, options.out)
    return typed


def _request_mode(prepared: Prepared) -> dict[str, Any]:
    """How batches were sent, as the backend compiled for it: ``latency`` (one synchronous request at a time, the
    seed's meaning) unless its compiled model says otherwise (OpenVINO's ``--mode throughput`` with its streams)."""
    extra = next(iter(prepared.compiled.values())).extra
    mode = extra.get("mode") if isinstance(extra, dict) else None
    streams = extra.get("streams") if isinstance(extra, dict) else None
    return {"mode": mode if isinstance(mode, str) else "latency",
            "streams": streams if isinstance(streams, int) and mode == "throughput" else None}


def _precision_facts(plan: PrecisionPlan, calibration: Calibration | None,
                     rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"precisions": list(dict.fromkeys(r["precision"] for r in rows)), "reference": plan.reference,
            "calibration": calibration.describe() if calibration is not None else None,
            "performance_only": bool(calibration is not None and calibration.random)}


def check_devices(backend: BackendSpec, options: RunOptions) -> None:
    """Several ``--device`` ids need a backend with separate devices: on the CPU their processes would share the
    same cores, and adding up their throughputs would count the cores once per process."""
    if len(options.devices) > 1 and backend.device == "cpu":
        raise UsageError(
            f"--device {','.join(map(str, options.devices))}: backend {backend.name!r} runs on the CPU, where "
            f"{len(options.devices)} processes would share the same cores, so their throughputs cannot be added",
            note="leave --device out (one process uses every core; --threads N sets how many)")


def environment(zoo: Zoo) -> dict[str, Any]:
    """The environment fingerprint plus what every plugin knows (chip, driver, toolkit)."""
    env = fingerprint()
    for facts in zoo.pm.hook.zoo_environment():
        env.update(facts or {})
    return env


def _device_name(zoo: Zoo, backend: BackendSpec, env: dict[str, Any]) -> str:
    from .reporting import device_name

    return device_name(backend, env, zoo.registry)


def write_results(results: RunResults | dict[str, Any], out: Path) -> Path:
    """Write ``results.json``, ``results.csv``, ``report.md`` and ``throughput.png`` (when matplotlib is
    installed; else a stale chart is removed and report.md says so) into ``out`` (created if needed), each
    atomically, once ``results`` validates against the shipped schema."""
    from . import reporting as report

    data = results.to_json() if isinstance(results, RunResults) else results
    report.validate(data)  # the shipped schema; and strict JSON below: a NaN that got this far raises
    results = report.typed(results)
    from .files import atomic_write

    target = out / "results.json"
    writing = out  # what a full disk or a forbidden folder stopped: named in the message
    try:
        out.mkdir(parents=True, exist_ok=True)
        writing = target
        with atomic_write(target) as fh:  # a half-written results.json never stays behind
            fh.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
        writing = out / report.CSV_FILE
        report.write_csv(results, writing)
        writing = out / report.CHART_FILE
        chart = report.write_chart(results, writing)
        if not chart:
            writing.unlink(missing_ok=True)
        if results.profile is not None:  # zoo run --profile
            from .profiling import CSV_FILE, write_csv

            writing = out / CSV_FILE
            write_csv(results.profile, writing)
        writing = out / report.MARKDOWN_FILE
        report.write_markdown(results, writing, chart=chart)
    except OSError as exc:
        raise ZooError(f"cannot write results to {writing}: {exc.strerror or exc}",
                       note="choose a writable folder with --out") from None
    return target


def export_to_file(zoo: Zoo, options: RunOptions, target: Path, batch_size: int | None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """``zoo export``: the dynamic export, or the simplified one at ``batch_size``, copied to ``target``."""
    progress = progress or Progress()
    model = zoo.registry.model(options.model)
    check_opset_option(model, options)
    weights = resolve_weights(model, options.weights, seed=options.seed, progress=progress.interactive)
    exported = export(zoo, model, weights, options, progress)
    source = exported.file(EXPORT_FILE)
    if batch_size is not None:
        check_batch_memory(model, source, [batch_size])
        source = simplify(zoo, model, exported, batch_size, progress).file(SIMPLIFIED_FILE)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_whole(source, target)  # one self-contained file: the cached one keeps its tensors beside it
    except OSError as exc:
        raise ZooError(f"cannot write {target}: {exc.strerror or exc}", note="choose a writable path with -o") from None
    return {"model": model.name, "path": str(target), "batch_size": batch_size, "weights": weights.label,
            "opset": options.opset, **_export_check(exported)}


def _with_file_hashes(*pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Backend arguments for a cache key; one naming a file (an AIPP config, say) adds the file's hash."""
    from .files import sha256_file

    out = []
    for key, value in (pair for group in pairs for pair in group):
        path = Path(value)
        out.append([key, value, sha256_file(path) if value and path.is_file() else ""])
    return out


def plan(zoo: Zoo, options: RunOptions) -> dict[str, Any]:
    """``--dry-run``: what a run would do and the commands a user could paste to do it by hand; runs nothing."""
    model = zoo.registry.model(options.model)
    backend = zoo.registry.backend(options.backend, require_available=False)
    check_engine(zoo, options)  # a plan the run would refuse is refused too
    check_devices(backend, options)
    precisions = plan_precisions(backend, options)
    check_batch_modes(backend, options, precisions.precisions)
    check_profile(zoo, backend, options)
    zoo.registry.call("zoo_check_run", backend, backend=backend, model=model, options=options,
                      precisions=precisions.precisions)
    opset = export_opset(backend, options, precisions)
    weights = options.weights or (model.weights.where if model.weights else "? (none declared)")
    onnx_name = f"{model.name}.onnx"
    steps = [["zoo", "export", model.name, "-o", onnx_name,
              *(["--weights", options.weights] if options.weights else []),
              # random weights are seeded: the run's seed makes the run's weights
              *(["--seed", str(options.seed)] if options.weights == "random" and options.seed != DEFAULTS["seed"]
                else []),
              *(["--opset", str(opset)] if opset != options.opset else [])]]
    if options.onnx is not None:  # --onnx FILE: the run compiles that file (or refuses it), and so does the recipe
        from .onnx_input import read_given_onnx

        read_given_onnx(model, Path(options.onnx)).check_batch_sizes(options.batch_sizes,
                                                                      DYNAMIC in options.batch_modes)
        onnx_name, steps = str(options.onnx), []
    inputs = None
    if options.data is not None:  # the accuracy recipe: the dataset's .bin inputs, run at the evaluated batch size
        check_folder(Path(options.data))
        inputs = Path(f"{model.name}_prep")
        preprocess = ["zoo", "preprocess", model.name, "--data", str(options.data), "-o", str(inputs),
                      *(["--preset", options.preset] if options.preset != model.preset else []),
                      *(["--limit", str(options.limit)] if options.limit is not None else []),
                      *_backend_input_flags(zoo, backend, model, options)]
    per_batch: list[dict[str, Any]] = []
    scored = max(options.batch_sizes)  # where evaluate() scores, in the first batch mode
    for bs in options.batch_sizes if STATIC in options.batch_modes else ():
        sim = f"{model.name}_bs{bs}_sim.onnx"
        shapes = [f"{n}:{','.join(map(str, (bs, *model.input_shape)))}" for n in model.input_names]
        commands = [["python3", "-m", "onnxsim", onnx_name, sim, "--overwrite-input-shape", *shapes]]
        has_commands = True
        for precision in precisions.precisions:
            calibration_dir = None
            if precision in precisions.quantized:
                assert precisions.source is not None  # plan_precisions asks for one
                calibration_dir = Path(f"{model.name}_calib_bs{bs}")
                commands.append(["zoo", "calibrate", model.name, "--calib", precisions.source, "--calib-images",
                                 str(precisions.images), "--bs", str(bs), "-o", str(calibration_dir),
                                 # what else makes the set: the preprocessing, and the noise's seed
                                 *(["--preset", options.preset] if options.preset != model.preset else []),
                                 *(["--seed", str(options.seed)] if precisions.source == RANDOM and options.seed
                                   else [])])
            backend_cmds = zoo.registry.call(
                "zoo_commands", backend, backend=backend, model=model, onnx_path=Path(sim), batch_size=bs,
                options=options, precision=precision, calibration_dir=calibration_dir,
                inputs=inputs if bs == scored and options.batch_modes[0] == STATIC else None, batch_sizes=(),
            )
            commands += backend_cmds or []
            has_commands = has_commands and backend_cmds is not None
        per_batch.append({"batch_size": bs, "commands": commands, "backend_has_commands": has_commands})
    if DYNAMIC in options.batch_modes:  # one model simplified with a dynamic batch, compiled for every size
        sim = f"{model.name}_dynamic_sim.onnx"
        commands = [["python3", "-m", "onnxsim", onnx_name, sim]]
        has_commands = True
        for precision in precisions.precisions:  # float ones only: check_batch_modes
            backend_cmds = zoo.registry.call(
                "zoo_commands", backend, backend=backend, model=model, onnx_path=Path(sim), batch_size=scored,
                options=options, precision=precision, calibration_dir=None,
                inputs=inputs if options.batch_modes[0] == DYNAMIC else None,
                batch_sizes=tuple(sorted(options.batch_sizes)),
            )
            commands += backend_cmds or []
            has_commands = has_commands and backend_cmds is not None
        per_batch.append({"batch_size": scored, "commands": commands, "backend_has_commands": has_commands})
    with_commands = all(b["backend_has_commands"] for b in per_batch)
    setup = zoo.registry.call("zoo_commands_setup", backend, backend=backend, model=model, options=options) or []
    if inputs is not None and with_commands:
        dataset = _check_recipe_dataset(zoo, model, options)
        if options.limit is not None:  # zoo preprocess counts every image, and --limit the labelled ones
            preprocess[preprocess.index("--limit") + 1] = str(_images_to_preprocess(options, dataset))
        steps.insert(0, preprocess)
    lines = [*setup, *(shell_join(c) for c in steps), *(shell_join(c) for b in per_batch for c in b["commands"])]
    return {
        "model": model.name,
        "backend": backend.name,
        "backend_available": backend.available,
        "batch_sizes": list(options.batch_sizes),
        "weights": weights,
        "cache": str(zoo.store.root),
        "out": str(options.out) if options.out else None,
        "commands": lines,
        "note": None if with_commands else f"{backend.name} has no standalone commands: zoo runs it in-process",
    }


def _backend_input_flags(zoo: Zoo, backend: BackendSpec, model: ModelSpec, options: RunOptions) -> list[str]:
    """``zoo preprocess``'s flags for the input the backend's compiled model takes, where that is not the model's
    own (``--aipp``'s uint8 images): the backend and its options, as the run was given them."""
    from .plugin_options import declared

    shape, dtype, _ = run_model(zoo, backend, options).input_for(backend.name)
    if (shape, dtype) == (tuple(model.input_shape), model.input_dtype):
        return []
    flags = ["--backend", backend.name]
    for spec in declared(zoo.registry):
        value = options.backend_options.get(spec.key) if spec.backend == backend.name else None
        if value is None or value is False or (spec.multiple and not value):
            continue
        if spec.type is bool:
            flags.append(spec.flag)
        else:
            flags += [part for item in (value if spec.multiple else (value,)) for part in (spec.flag, str(item))]
    return flags


def _check_recipe_dataset(zoo: Zoo, model: ModelSpec, options: RunOptions) -> Dataset:
    """The printed recipe scores what ``zoo run --data`` scores, or the dry run says why not: ``zoo preprocess``
    converts the images directly in ``--data`` and ``zoo score`` reads them with their label file, every one."""
    from .backends.ais_bench_names import samples_by_output_key
    from .evaluate import load_dataset

    if options.skip_bad:
        raise UsageError("--skip-bad: the printed recipe cannot skip unreadable images (zoo score scores every image)",
                         note="remove the unreadable images from --data, or drop --skip-bad")
    assert options.data is not None
    dataset = load_dataset(zoo, model, options)  # and a dataset the run would refuse is refused here
    folder = Path(options.data).resolve()
    if dataset.classes is not None or any(s.path.parent.resolve() != folder for s in dataset.samples):
        raise UsageError(f"--data {options.data}: the printed recipe reads a folder of images and their label file "
                         f"(zoo preprocess, zoo score), and this {dataset.kind} dataset keeps its images in subfolders",
                         note="print it for a folder of images with a label file (--labels), or run zoo run --data "
                         "without --dry-run")
    samples_by_output_key(dataset.samples)  # zoo score's refusal of two images whose outputs share a name, first
    return dataset


def _images_to_preprocess(options: RunOptions, dataset: Dataset) -> int:
    """How many of the images in ``--data`` (natural order, labelled or not, as ``zoo preprocess --limit`` counts)
    hold the first ``--limit`` labelled ones that zoo run and ``zoo score`` evaluate."""
    from .datasets import list_images

    assert options.data is not None
    images, _ = list_images(Path(options.data))
    position = {p.resolve(): i for i, p in enumerate(images)}
    return 1 + max(position.get(s.path.resolve(), len(images) - 1) for s in dataset.samples)


def shell_join(argv: list[str]) -> str:
    """A command line to paste: quoted where needed, but a ``${placeholder}`` is left for the shell to fill (any
    other ``$``, as in a folder named ``a$b``, is quoted: the shell would expand it)."""
    import re
    import shlex

    return " ".join(a if re.fullmatch(r"(?:[\w@%+=:,./-]|\$\{\w+\})+", a) else shlex.quote(a) for a in argv)


def _export_sources(zoo: Zoo, model: ModelSpec) -> dict[str, Any]:
    """Hashes of the code an export runs: the model's plugin (its zoo_export, if any), its factory's package, and
    the core's generic export."""
    return {"model_plugin": plugin_source(zoo.pm, model.plugin),
            "factory": source_hash(model.factory.partition(":")[0]),
            "exporter": source_hash("zoo_core.export")}


def _check_compiled(compiled: Any, backend: BackendSpec, model: ModelSpec, batch_size: int) -> None:
    """A plugin bug, in one line: zoo_compile answering something other than a CompiledModel of this backend,
    model and batch size (another backend's would be opened and timed by that backend's plugin, a batch size the
    inputs do not have would scale the throughput)."""
    if not isinstance(compiled, CompiledModel):
        wrong = f"a {type(compiled).__name__}, not a CompiledModel"
    else:
        shapes = [i.shape for i in compiled.inputs]
        wrong = next((f"a CompiledModel of {what} {got!r} for {what} {want!r}" for what, got, want in (
            ("backend", compiled.backend, backend.name), ("model", compiled.model, model.name),
            ("batch size", compiled.batch_size, batch_size)) if got != want), "")
        if not wrong and (not shapes or any(not shape or shape[0] != batch_size for shape in shapes)):
            wrong = f"inputs of shapes {shapes} for batch size {batch_size}"
    if wrong:
        raise ZooError(f"the zoo_compile of plugin {backend.plugin!r} (backend {backend.name!r}) returned {wrong}",
                       note="a bug in that plugin: report it to its authors", exit_code=EXIT_BUG)


def _check_written(path: Path, what: str, inside: Path | None = None) -> None:
    """A plugin bug, with its traceback: a stage's main file missing, empty or outside its artifact folder."""
    if inside is not None and not path.resolve().is_relative_to(inside.resolve()):
        raise RuntimeError(f"{what} returned {path}, outside its work folder {inside}: a bug in the plugin")
    if not path.is_file() or path.stat().st_size == 0:
        state = "is empty" if path.is_file() else "does not exist"
        raise RuntimeError(f"{what} did not write its file: {path} {state} (a bug in the plugin)")


def _export_check(artifact: Artifact) -> dict[str, Any]:
    path = artifact.file(CHECK_FILE)
    return json.loads(path.read_text()) if path.exists() else {}


def _stage_note(artifact: Artifact, check: dict[str, Any] | None = None) -> str:
    note = "cached" if artifact.cached else "built"
    if check and "max_abs_diff" in check:
        note += f", max |onnxruntime - torch| = {check['max_abs_diff']:.2g}"
    return note
