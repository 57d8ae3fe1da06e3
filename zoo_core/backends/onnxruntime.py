"""The ONNX Runtime backend: compile is an optimized graph, inference a session with one thread per core; int8 is
ONNX Runtime's static QDQ quantization (per-channel int8 weights, uint8 activations) calibrated on zoo's set."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .. import hookimpl
from ..errors import CheckError, ZooError, first_line
from ..onnx_shared import reshare
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..precision import Calibration
    from ..profiling import Profile
    from ..specs import BackendSpec, ModelSpec, RunOptions

NAME = "onnxruntime"
OPTIMIZED_FILE = "model.optimized.onnx"
QUANTIZED_FILE = "model.int8.onnx"
RANGES_FILE = "calibration-ranges.json"  # the tensor ranges calibration found (ONNX Runtime's calibration cache)
LOG_FILE = "quantize.log"  # what the quantizer prints and logs (it prints progress on stdout, which --json keeps clean)
SCRATCH = "scratch"  # the quantizer's temporary files, under the work folder; removed when it is done
CALIB_METHODS = ("minmax", "entropy", "percentile")


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    from ..specs import BackendSpec

    found = importlib.util.find_spec("onnxruntime") is not None
    register(
        BackendSpec(
            name=NAME,
            description="ONNX Runtime, CPU execution provider, all graph optimizations",
            available=found,
            unavailable_reason="" if found else "onnxruntime is not installed (pip install onnxruntime)",
            priority=0,
            device="cpu",
            # No fp16: the CPU provider has float16 kernels for few operators (the rest would run through casts).
            precisions=("fp32", "int8"),
            calib_methods=CALIB_METHODS,
            quantize_opset=13,  # per-channel QuantizeLinear/DequantizeLinear (an axis) needs opset 13
            exposes_tensors=True,  # RunOptions.extra_outputs: added as graph outputs before the session is built
        )
    )


def session_options(threads: int, level: str = "all", optimized_path: Path | None = None):  # noqa: ANN201
    """The session options zoo uses; the overhead benchmark uses the same ones for its bare loop."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


@hookimpl
def zoo_compile(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, workdir: Path, options: RunOptions
) -> CompiledModel:
    import onnxruntime as ort

    # The saved graph stops at the portable (extended) level; the runner's session adds the
    # hardware-specific layout optimizations when it loads it.
    target = workdir / OPTIMIZED_FILE
    extra: dict[str, object] = {"onnxruntime": ort.__version__}
    if options.extra_outputs:
        extra["optimization"] = _compile_marked(model, Path(onnx_path), batch_size, target, options)
    else:
        ort.InferenceSession(
            str(onnx_path),
            session_options(options.threads, "extended", optimized_path=target),
            providers=["CPUExecutionProvider"],
        )
    reshare(target)  # its weights as files by content, as the simplified model's: the cache stores them once
    return CompiledModel(
        backend=NAME,
        model=model.name,
        batch_size=batch_size,
        path=target,
        inputs=compiled_inputs(model, NAME, batch_size),
        output_names=(*model.output_names, *options.extra_outputs),
        device="cpu",
        extra=extra,
    )


# Tried in this order for a compile with marked tensors: a level whose saved graph lost a marked tensor (a fusion
# that dropped it) gives way to the next, lower one, so that every marked tensor is still returned.
MARKED_LEVELS = ("extended", "basic", "disabled")


def _compile_marked(model: ModelSpec, onnx_path: Path, batch_size: int, target: Path, options: RunOptions) -> str:
    """Save at ``target`` the optimized graph of ``onnx_path`` with ``options.extra_outputs`` added as graph outputs
    (typed by ONNX shape inference where it can), at the highest of :data:`MARKED_LEVELS` whose saved graph still
    holds every marked tensor as an output; returns that level (the runner loads the file at it)."""
    import onnx
    import onnxruntime as ort

    from ..onnx_shared import load_shared
    from .marked import check_marked, unique

    proto = load_shared(onnx_path)
    check_marked(proto.graph, options.extra_outputs, model.name, batch_size)
    present = {o.name for o in proto.graph.output}
    added = [name for name in unique(options.extra_outputs) if name not in present]
    typed = {v.name: v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    proto.graph.output.extend(typed.get(name) or onnx.helper.make_empty_tensor_value_info(name) for name in added)
    data = proto.SerializeToString()
    for level in MARKED_LEVELS:
        ort.InferenceSession(data, session_options(options.threads, level, optimized_path=target),
                             providers=["CPUExecutionProvider"])
        saved = onnx.load(str(target), load_external_data=False).graph
        made = {name for node in saved.node for name in node.output} | {t.name for t in saved.initializer}
        outputs = {o.name for o in saved.output}
        if all(name in outputs and name in made for name in options.extra_outputs):
            return level
    raise ZooError(f"ONNX Runtime {ort.__version__} does not keep the marked tensors of {model.name!r} at batch "
                   f"{batch_size} as outputs, even with its graph optimizations off",
                   note="mark other tensors, or compare on another backend")


class OnnxRuntimeRunner(Runner):
    """One ONNX Runtime session on the CPU provider."""

    def __init__(self, compiled: CompiledModel, threads: int) -> None:
        super().__init__(compiled)
        import onnxruntime as ort

        # A compile with marked tensors says the level its saved graph kept them at; loading it higher could undo that.
        level = str(compiled.extra.get("optimization", "all"))
        self.session = ort.InferenceSession(
            str(compiled.path), session_options(threads, level), providers=["CPUExecutionProvider"]
        )
        # With marked tensors, by name: one that is also a model output, or marked twice, is one graph output
        # returned twice. Without, every graph output, as the model's export made them.
        self.names = list(compiled.output_names) if "optimization" in compiled.extra else None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self.session.run(self.names, dict(feed))

    def close(self) -> None:
        self.session = None


@hookimpl
def zoo_infer(compiled: CompiledModel, options: RunOptions) -> Runner:
    return OnnxRuntimeRunner(compiled, options.threads)


# -------------------------------------------------------------------------
# --profile: ONNX Runtime's own profiler (SessionOptions.enable_profiling), its JSON trace read per node
# -------------------------------------------------------------------------


@hookimpl
def zoo_profile(
    compiled: CompiledModel, options: RunOptions, feed: Mapping[str, np.ndarray], batches: int, workdir: Path
) -> Profile:
    """A session like the runner's with the profiler on: one warm-up batch, then ``batches`` timed ones; the
    trace (kept in ``workdir``) gives each node's kernel time in the profiled batches."""
    import json

    import onnxruntime as ort

    from ..profiling import Profile, timed_calls

    so = session_options(options.threads, "all")
    so.enable_profiling = True
    so.profile_file_prefix = str(workdir / "onnxruntime-trace")
    session = ort.InferenceSession(str(compiled.path), so, providers=["CPUExecutionProvider"])
    session.run(None, dict(feed))  # warm-up: allocations and first-call work, left out of the tables below
    wall = timed_calls(lambda: session.run(None, dict(feed)), batches)
    trace = Path(session.end_profiling())
    return Profile(source=f"onnxruntime {ort.__version__} profiler", wall_ms=wall,
                   operators=trace_operators(json.loads(trace.read_text()), batches))


def trace_operators(events: list[dict[str, Any]], batches: int) -> tuple[tuple[str, str, float], ...]:
    """(node, op type, microseconds) of each node kernel event in the last ``batches`` runs of an ONNX Runtime
    profiler trace (``model_run`` events mark the runs; ``<node>_kernel_time`` events carry ``args.op_name``)."""
    runs = sorted(float(e["ts"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[-batches] if len(runs) >= batches else 0.0
    found = []
    for e in events:
        name, args = str(e.get("name", "")), e.get("args")
        if e.get("cat") == "Node" and name.endswith("_kernel_time") and float(e["ts"]) >= start:
            op = args.get("op_name", "?") if isinstance(args, dict) else "?"
            found.append((name.removesuffix("_kernel_time"), str(op), float(e["dur"])))
    return tuple(found)


# -------------------------------------------------------------------------
# int8: ONNX Runtime's static quantization, QDQ format
# -------------------------------------------------------------------------


@hookimpl
def zoo_quantize(
    model: ModelSpec, onnx_path: Path, batch_size: int, precision: str, calibration: Calibration, workdir: Path,
    options: RunOptions,
) -> Path | None:
    """``onnx_path`` as a QDQ model (QuantizeLinear/DequantizeLinear around each quantized operator, int8 weights
    per output channel, uint8 activations), calibrated batch by batch; the compile stage's session fuses the QDQ
    pairs into int8 kernels. The tensor ranges are kept beside it (``calibration-ranges.json``)."""
    if precision != "int8":
        return None
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        QuantFormat, QuantType, create_calibrator, quantize_static, save_tensors_data)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from ..onnx_shared import load_shared

    method = calibration.method or CALIB_METHODS[0]
    target, ranges = workdir / QUANTIZED_FILE, workdir / RANGES_FILE
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # quantize_static's default: all it can
    with _scratch_folder(workdir / SCRATCH) as scratch, _quantizer_log(workdir / LOG_FILE):
        source = scratch / "model.onnx"  # ORT's shape inference writes beside its input: a copy in the scratch
        onnx.save(load_shared(onnx_path), str(source))
        try:
            # Calibrated one batch at a time: quantize_static's own loop keeps every batch's activations until the
            # end (histogram methods), gigabytes for a ResNeSt-50 on 512 images; the ranges then go in as its cache.
            calibrator = create_calibrator(source, op_types, augmented_model_path=str(scratch / "augmented.onnx"),
                                           calibrate_method=_calibration_method(method))
            for batch in calibration.batches(batch_size):
                calibrator.collect_data(_OneBatch({calibration.input_name: batch}))
            save_tensors_data(calibrator.compute_data(), ranges)
            del calibrator  # its session holds the augmented model open
            # uint8 activations, int8 weights: ResNeSt-50 at bs 8 on 2 threads of this Xeon (AVX-512 VNNI), ORT 1.32,
            # fp32 334 ms a batch, int8 u8s8 155 ms (2.16x), s8s8 337 ms (no faster). quant_pre_process (ORT's
            # suggested preprocessing) changed neither the speed nor the outputs after onnxsim, so it is not run.
            quantize_static(
                source, target, calibration_data_reader=None, calibration_cache_path=ranges,
                calibrate_method=_calibration_method(method), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
            )
        except Exception as exc:  # whatever ONNX Runtime's quantizer raises on a graph it cannot take
            raise ZooError(
                f"ONNX Runtime {ort.__version__} could not quantize {model.name!r} at batch {batch_size} to int8 "
                f"({method} calibration): {first_line(exc)}",
                note="run it at --precision fp32, or try another --calib-method",
            ) from exc
    _check_finite_outputs(model, target, next(calibration.batches(batch_size)), calibration.input_name,
                          batch_size, options.threads)
    return target


def _calibration_method(method: str) -> object:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


class _OneBatch:
    """A calibration data reader (ONNX Runtime's protocol: ``get_next`` until ``None``) of one feed."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self.feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self.feed = self.feed, None
        return feed


@contextlib.contextmanager
def _scratch_folder(folder: Path) -> Iterator[Path]:
    """A folder for the quantizer's temporary files, also the process's temporary folder meanwhile (ORT's
    quantization tools make temporary folders of their own): whatever they write stays under the stage's work
    folder, and a killed stage leaves it where the cache cleans up."""
    folder.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _quantizer_log(path: Path) -> Iterator[None]:
    """What ONNX Runtime's quantizer prints (progress, on stdout) and logs (warnings, through the root logger)
    goes to ``path`` instead of the terminal."""
    import logging

    handler = logging.FileHandler(path, encoding="utf-8")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with open(path, "a", encoding="utf-8") as out, contextlib.redirect_stdout(out):
            yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _check_finite_outputs(model: ModelSpec, path: Path, batch: np.ndarray, input_name: str, batch_size: int,
                          threads: int) -> None:
    """The quantized model's outputs on the first calibration batch hold no NaN or infinity (a range that
    calibration got wrong shows here first)."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(threads or 1, "all"), providers=["CPUExecutionProvider"])
    for name, output in zip(model.output_names, session.run(None, {input_name: batch}), strict=False):
        bad = int(np.size(output) - np.count_nonzero(np.isfinite(output)))
        if bad:
            raise CheckError(
                f"the int8 model of {model.name!r} at batch {batch_size} gives NaN or infinity in output {name!r} "
                f"({bad} of {np.size(output)} values) on the first calibration batch",
                note="its calibration ranges are unusable: calibrate on real images (--calib DIR) or run it at "
                "--precision fp32",
            )
