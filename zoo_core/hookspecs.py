"""Hook specifications: what a zoo plugin (model, dataset, backend, metrics) can implement."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import pluggy

if TYPE_CHECKING:
    import numpy as np

    from .datasets import Dataset
    from .engines import EngineSpec
    from .options import OptionSpec
    from .precision import Calibration
    from .profiling import Profile
    from .preprocessing import Preprocessing
    from .runtime import CompiledModel, Runner
    from .specs import BackendSpec, DatasetSpec, ModelSpec, RunOptions
    from .weights import WeightsRef

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)


# -------------------------------------------------------------------------
# Registration hooks: called once, when the registry is first needed
# -------------------------------------------------------------------------


@hookspec
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register the models this plugin provides.

    Called once per plugin manager, when the model registry is first built.

    :param register: Call it with one :class:`~zoo_core.specs.ModelSpec` per model. The core validates the
        spec, records which plugin registered it and refuses a name that another plugin already took.
    """


@hookspec
def zoo_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register the dataset kinds this plugin provides (an image folder with labels, generated input, ...).

    :param register: Call it with one :class:`~zoo_core.specs.DatasetSpec` per dataset kind.
    """


@hookspec
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the backends this plugin provides.

    A backend that cannot run on this machine still registers, with ``available=False`` and an
    ``unavailable_reason`` saying what is missing and how to get it, so ``zoo plugins`` can show it.

    :param register: Call it with one :class:`~zoo_core.specs.BackendSpec` per backend.
    """


# -------------------------------------------------------------------------
# Stage hooks: the recipe, PyTorch weights -> ONNX -> compiled -> outputs -> metrics
#
# The core calls a stage hook on ONE plugin: the one that registered the model (zoo_export, zoo_preprocess), the
# dataset kind (zoo_dataset_matches, zoo_load_dataset) or the backend (zoo_compile, zoo_infer, zoo_commands) it is
# for. An implementation never checks names: it is only ever asked about what its own plugin registered. A model
# plugin that implements no zoo_export or zoo_preprocess (or answers None) gets the core's: the generic ONNX export
# of the model's factory, and the model's declared preprocessing.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def zoo_dataset_matches(dataset: DatasetSpec, path: Path, labels: Path | None, classes: Path | None) -> bool | None:
    """Whether the folder ``path`` is a dataset of kind ``dataset``, for a run that names no ``--dataset``.

    Asked of each kind's plugin, kinds in registration order; the first that says ``True`` reads the folder.

    :param dataset: One of this plugin's dataset kinds.
    :param path: The data folder (``--data``).
    :param labels: ``--labels``, or ``None``.
    :param classes: ``--classes``, or ``None``.
    :return: ``True`` when this kind should read the folder.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_load_dataset(
    dataset: DatasetSpec, path: Path, labels: Path | None, classes: Path | None, model: ModelSpec
) -> Dataset | None:
    """List the labelled images of a dataset folder, matching labels to images by file stem.

    Called once per accuracy run, before any image is decoded. File names in a label file are keys to
    match, never paths to open. Entries whose name starts with ``.`` are ignored and counted.

    :param dataset: The dataset kind (as registered) to read ``path`` as.
    :param path: The data folder (``--data``).
    :param labels: A label file (``--labels``), or ``None`` for the dataset's default.
    :param classes: A class list (``--classes``: one class folder name per line, in index order), or ``None``.
        A kind that numbers classes itself sets ``Dataset.classes``; zoo refuses ``--classes`` for one that does not.
    :param model: The model, for its number of classes.
    :return: The :class:`~zoo_core.datasets.Dataset`, or ``None`` when this kind cannot read a folder.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_export(model: ModelSpec, weights: WeightsRef, path: Path, options: RunOptions) -> Path | None:
    """Export ``model`` with ``weights`` to an ONNX file at ``path``, with a dynamic batch axis.

    Optional: without it (or when it returns ``None``) the core exports the model's ``factory`` itself
    (:func:`zoo_core.api.export_onnx`). Implement it only for a model the generic export cannot handle.
    Called by the runner when no cached export matches. The input and output names, the opset
    (``options.opset``) and the per-sample input shape come from the model spec and options.

    :param model: The model to export.
    :param weights: The weights to load, or ``kind == "random"`` for seeded random weights.
    :param path: Where to write the ONNX file.
    :param options: The resolved run options.
    :return: ``path`` once written, or ``None`` for the core's generic export.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_preprocess(
    model: ModelSpec, preset: str, image_path: Path, declaration: Preprocessing | None
) -> np.ndarray | None:
    """Turn one image file into the model's input sample (no batch axis), as the preset prescribes.

    Optional: without it (or when it returns ``None``) the core applies the preset's declaration
    (:class:`~zoo_core.api.Preprocessing`). Implement it only for what a declaration cannot express.

    Called for each image of a dataset, in worker processes (and once in the main process on the first image,
    before the export). An exception on an image that Pillow decodes is this plugin's bug: the run stops with it
    (never skipped by ``--skip-bad``). A sample of another shape or dtype stops the run with one line.

    :param model: The model the sample is for; its spec holds mean, std and input shape.
    :param preset: The preprocessing preset (e.g. ``"modelzoo"`` or ``"reference"``).
    :param image_path: The image file.
    :param declaration: The preset's declaration, as the model declares it (sizes, mean, std, layout, ...), or
        ``None`` for a preset the model lists by a name that is no core preset: this hook prepares it.
    :return: The sample as an array of the model's input shape and dtype (or, for a preset that a backend's
        input override names, of that override's shape and dtype), or ``None`` for the core's declared preprocessing.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_check_run(backend: BackendSpec, model: ModelSpec, options: RunOptions, precisions: tuple[str, ...]) -> None:
    """Refuse, before any work, a run ``backend`` cannot do: raise a :class:`~zoo_core.errors.UsageError` (one
    line and a note) for options of this backend that contradict each other or the precisions asked.

    Called once per run and per ``--dry-run``, after the core's own checks (a precision the backend does not
    declare is already refused), before the export. It must not start tools or touch devices.

    :param backend: The run's backend.
    :param model: The run's model.
    :param options: The resolved run options (``options.backend_options`` holds this backend's).
    :param precisions: The precisions the run computes in, in order.
    :return: Nothing; raise to refuse.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_run_model(backend: BackendSpec, model: ModelSpec, options: RunOptions) -> ModelSpec | None:
    """The model as ``backend`` compiles and runs it with these options, where one of its options changes what the
    compiled model takes (Ascend's ``--aipp``: uint8 images of a derived host-side preset, the chip normalising).

    Called once per run, after :func:`zoo_check_run` and before the export. The core then compiles, times and
    evaluates the returned model (its ``backend_inputs`` and ``presets`` say what the host prepares); the export
    stays the registered model's. It must not start tools or touch devices; raise a
    :class:`~zoo_core.errors.UsageError` to refuse a model the option cannot serve.

    :param backend: The run's backend.
    :param model: The model as registered.
    :param options: The resolved run options (``options.backend_options`` holds this backend's).
    :return: A model of the same name (``dataclasses.replace`` of ``model``), or ``None``: the model as registered.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_quantize(
    backend: BackendSpec,
    model: ModelSpec,
    onnx_path: Path,
    batch_size: int,
    precision: str,
    calibration: Calibration,
    workdir: Path,
    options: RunOptions,
) -> Path | None:
    """Quantize a simplified ONNX file to ``precision`` (one of ``backend.precisions`` that zoo makes from
    calibration data: ``"int8"``), for ``backend`` to compile next.

    Called by the runner when no cached quantize matches, between simplify and compile. Whatever is written
    under ``workdir`` becomes the cached artifact (key: the simplified model, the calibration set's content hash,
    the method, the backend's plugin and version); the returned path must be in it.

    :param backend: The backend the quantized model is for.
    :param model: The model being quantized.
    :param onnx_path: The simplified ONNX file, its batch axis fixed at ``batch_size``.
    :param batch_size: The batch size of ``onnx_path``.
    :param precision: The precision asked for.
    :param calibration: The calibration set: preprocessed inputs of the ONNX model, in whole batches
        (:meth:`~zoo_core.precision.Calibration.batches`), and the method asked for (``calibration.method``:
        one of ``backend.calib_methods``, or ``None`` when the backend declares none).
    :param workdir: An empty folder to write the quantized model (and the tool's logs) into.
    :param options: The resolved run options.
    :return: The file :func:`zoo_compile` gets as its ``onnx_path`` (an ONNX file for ONNX Runtime and ATC, or
        the backend's own format), or ``None`` when this backend cannot quantize to ``precision``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_compile(
    backend: BackendSpec,
    model: ModelSpec,
    weights: WeightsRef,
    onnx_path: Path,
    batch_size: int,
    workdir: Path,
    options: RunOptions,
    precision: str,
    batch_sizes: tuple[int, ...],
) -> CompiledModel | None:
    """Compile a simplified ONNX file, fixed at ``batch_size``, for ``backend``.

    Called by the runner when no cached compile matches. Whatever is written under ``workdir``
    becomes the cached artifact; the returned object must only refer to files in it.

    :param backend: The backend to compile for.
    :param model: The model being compiled.
    :param weights: The weights it was exported with (for backends that run the framework model itself).
    :param onnx_path: The simplified ONNX file, its batch axis fixed at ``batch_size``; for a quantized
        precision, what the backend's :func:`zoo_quantize` returned.
    :param batch_size: The batch size the compiled model serves.
    :param workdir: An empty folder to write the compiled model (and logs) into.
    :param options: The resolved run options. When ``options.extra_outputs`` is not empty (``zoo debug``, for
        a backend that declares ``exposes_tensors``), the compiled model returns those tensors of the ONNX graph
        too, after the model's own outputs and in that order, and its ``output_names`` say so.
    :param precision: The precision to compute in: one of ``backend.precisions`` (its first when the run asked
        for none).
    :param batch_sizes: Empty, except for ``--dynamic-batch`` on a backend that declares ``dynamic_batch``: then
        ``onnx_path`` keeps its batch axis dynamic, and the one compiled model must serve each of these batch sizes
        (sorted; ``batch_size`` is the largest, the batch of the returned model's inputs).
    :return: The compiled model.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_infer(compiled: CompiledModel, model: ModelSpec, options: RunOptions) -> Runner | None:
    """Open a runner that infers batches on a compiled model.

    The core drives the returned :class:`~zoo_core.runtime.Runner`: it validates and times each
    call, feeds generated input in performance mode or the dataset's batches, and closes it.

    :param compiled: What :func:`zoo_compile` returned (possibly from the cache).
    :param model: The model it was compiled from.
    :param options: The resolved run options.
    :return: An open runner.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_profile(
    compiled: CompiledModel, model: ModelSpec, options: RunOptions, feed: Mapping[str, np.ndarray], batches: int,
    workdir: Path,
) -> Profile | None:
    """Run ``batches`` batches of ``feed`` on ``compiled`` under the backend's profiler (``zoo run --profile``).

    Called after a batch size's timed batches, in the run's process, so that profiling never touches the timed
    numbers; a backend without it is refused ``--profile`` before any work. Open a session of its own, run a
    warm-up batch outside the profile, then the profiled ones, timing each call (:func:`~zoo_core.api.timed_calls`).

    :param compiled: What :func:`zoo_compile` returned.
    :param model: The model it was compiled from.
    :param options: The resolved run options (``options.threads``, ``options.devices``).
    :param feed: One batch: every input name mapped to an array of the compiled shape.
    :param batches: How many batches to profile.
    :param workdir: A folder in the run's output folder for the profiler's files (a trace, the tool's folder).
    :return: A :class:`~zoo_core.api.Profile`: (node, op type, microseconds over the batches) for each operator
        and each batch's wall time, or the folder where the backend's tool wrote its profile; ``None``: no profile.

    Stops at first non-None result.
    """


@hookspec
def zoo_metrics(model: ModelSpec, outputs: np.ndarray, labels: np.ndarray) -> Mapping[str, Any] | None:
    """Compute metrics from a dataset's outputs and labels.

    Every plugin that implements it contributes; the results are merged (a later key never
    silently replaces an earlier one: the core refuses duplicates).

    :param model: The model that produced the outputs.
    :param outputs: The first model output for every image, in dataset order, shape ``(N, ...)``.
    :param labels: The label of every image, shape ``(N,)``.
    :return: A mapping of metric name to JSON-ready value (numbers finite: a NaN or infinity stops the run
        as the plugin's bug), or ``None`` when nothing applies.
    """


# -------------------------------------------------------------------------
# Reporting hooks: what a user can paste by hand, and what the environment is
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def zoo_commands(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, options: RunOptions, precision: str,
    calibration_dir: Path | None, inputs: Path | None, batch_sizes: tuple[int, ...],
) -> list[list[str]] | None:
    """The shell commands that compile and benchmark ``onnx_path`` on ``backend`` by hand, for ``--dry-run``.

    Called without running anything: an implementation must not start tools or touch devices beyond
    read-only queries, and should fall back to a placeholder (e.g. ``Ascend${chip}``) when a query fails.

    :param backend: The backend the commands are for.
    :param model: The model being compiled.
    :param onnx_path: The simplified ONNX file the commands start from (it may not exist yet).
    :param batch_size: The batch size the commands serve.
    :param options: The resolved run options.
    :param precision: The precision to compile for (as in :func:`zoo_compile`).
    :param calibration_dir: For a quantized precision, the folder where ``zoo calibrate`` writes the calibration
        set as whole-batch raw float32 ``.bin`` files (``batch-000000.bin``, ...); ``None`` otherwise.
    :param inputs: With ``--data``, at the batch size ``zoo run`` evaluates at (the largest): the folder where
        ``zoo preprocess`` (printed before) writes the dataset's inputs, one raw float32 ``<stem>.bin`` per image;
        the commands then also run the compiled model over them and score its outputs (``options.data``,
        ``options.labels``, ``options.limit``, ``options.preset``). ``None`` otherwise.
    :param batch_sizes: Empty, except for ``--dynamic-batch`` (as in :func:`zoo_compile`): then ``onnx_path`` keeps
        a dynamic batch axis, and the commands compile one model for these batch sizes and benchmark each.
    :return: A list of argument lists (one per command), or ``None`` when the backend has no standalone commands.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def zoo_commands_setup(backend: BackendSpec, model: ModelSpec, options: RunOptions) -> list[str] | None:
    """The shell lines that a ``--dry-run`` script for ``backend`` starts with: setting up the tools' environment,
    and any shell variable its :func:`zoo_commands` use (e.g. ``chip=...`` for ``Ascend${chip}``).

    Printed first and as they are (not quoted): each must be a complete shell line that stops the script
    (``bash -e``) with a message when the setup fails. Run nothing, as :func:`zoo_commands`.

    :param backend: The backend the script is for.
    :param model: The model the script compiles (as registered).
    :param options: The resolved run options.
    :return: The lines (one may hold several, as a here-document that writes a config file does), or ``None``
        when the commands need no setup.

    Stops at first non-None result.
    """


@hookspec
def zoo_environment() -> Mapping[str, Any] | None:
    """Facts about the machine that a plugin knows (chip, driver and toolkit versions, ...).

    Called for ``zoo doctor`` and for the ``env`` of every results object. Every plugin contributes;
    a plugin returns ``None`` when it has nothing to say (e.g. its tools are not installed).

    :return: A mapping of JSON-ready facts, e.g. ``{"ascend": {"chip": "310P3", "cann": "7.0.RC1"}}``.
    """


@hookspec(firstresult=True)
def zoo_device_name(backend: BackendSpec, env: Mapping[str, Any]) -> str | None:
    """The name of the device a run on ``backend`` measured, as reports print it (the seed table's 芯片型号).

    Called on the backend's plugin only: when a run's results are made (their ``device_name``), and when a report
    reads an older results object that has none. Read it from ``env``, the facts recorded with the run, not from
    this machine: an old results file may come from another one.

    :param backend: One of this plugin's backends.
    :param env: The run's environment facts (``results["env"]``: what every ``zoo_environment`` returned).
    :return: e.g. ``"Ascend310P3"``, or ``None`` for the core's default, the CPU model.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# Command-line hooks: what a backend or an engine adds to `zoo run` and `zoo compare`
# -------------------------------------------------------------------------


@hookspec
def zoo_add_options(register: Callable[[OptionSpec], None]) -> None:
    """Add command-line options for this plugin's backends (or engines), as tox's ``tox_add_option``.

    Called once per plugin manager, when ``zoo run`` or ``zoo compare`` is parsed or shows its ``--help`` (never
    for ``zoo list`` or ``zoo --help``). Each option belongs to one backend (or engine): ``zoo run --help`` lists it
    under that name, a run on another backend refuses it (a usage error), and a run on it passes the value to the
    backend's hooks as ``options.backend_options[spec.key]`` (an engine's as ``options.engine_options``). Options
    not given are absent from that mapping. ``--backend-opt KEY=VALUE`` sets any option of the run's backend by key
    (``command_line=False`` declares a key without a flag of its own); a key the backend does not declare is
    refused. Every value enters the compile stage's cache key.

    Options of the same name declared by several backends share one flag. An option for a backend this plugin does
    not register, or that clashes with another, is reported by ``zoo plugins`` and ignored.

    :param register: Call it with one :class:`~zoo_core.options.OptionSpec` per option.
    """


# -------------------------------------------------------------------------
# Engine hooks: where a run executes (``--engine NAME``)
# -------------------------------------------------------------------------


@hookspec
def zoo_register_engines(register: Callable[[EngineSpec], None]) -> None:
    """Register the engines this plugin provides, beside the core's ``local`` and ``ray``.

    Called when a run (or ``zoo doctor``) looks its engine up. An engine is an object that the spec's ``open``
    returns for one run and that implements :class:`~zoo_core.engines.Engine`: ``measure`` (the timed loop on
    each device), ``evaluate`` (the dataset's batches, saved shard by shard), ``where``, ``describe`` and the
    context-manager methods.

    :param register: Call it with one :class:`~zoo_core.engines.EngineSpec` per engine. A name already taken
        (the core's included) is refused and shown by ``zoo plugins``.
    """
