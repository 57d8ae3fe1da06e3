"""The OpenVINO backend (optional, ``pip install 'zoo[openvino]'``): the ONNX saved as an IR, run by the CPU plugin
in FP32, or in INT8 after NNCF's post-training quantization; one synchronous request per batch, or (``--mode
throughput``) each batch split across parallel infer requests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .. import hookimpl
from ..errors import UsageError, ZooError
from ..options import OptionSpec
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..precision import Calibration
    from ..specs import BackendSpec, ModelSpec, RunOptions

NAME = "openvino"
IR_FILE = "model.xml"  # and model.bin beside it
QUANTIZED_FILE = "model.int8.xml"
NNCF_LOG = "nncf.log"
INSTALL = "pip install 'zoo[openvino]'"
LATENCY, THROUGHPUT = "latency", "throughput"
MODES = (LATENCY, THROUGHPUT)
# NNCF's post-training quantization has no entropy (KL) method; "minmax" is its MINMAX range estimator for the
# activations (the weights' default is min-max already).
CALIB_METHODS = ("minmax",)


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    from ..specs import BackendSpec

    found = importlib.util.find_spec("openvino") is not None  # never imported here: `zoo list` stays fast
    register(
        BackendSpec(
            name=NAME,
            description="OpenVINO, CPU plugin, FP32 or INT8 (NNCF post-training quantization)",
            available=found,
            unavailable_reason="" if found else f"openvino is not installed ({INSTALL})",
            priority=-1,  # optional: never the automatic choice over ONNX Runtime
            device="cpu",
            precisions=("fp32", "int8"),
            calib_methods=CALIB_METHODS,
            quantize_opset=None,
            exposes_tensors=True,  # RunOptions.extra_outputs: model.add_outputs before the IR is saved
        )
    )


# -------------------------------------------------------------------------
# Options: --mode latency|throughput, --streams N (options.backend_options["mode" | "streams"])
# -------------------------------------------------------------------------


def _mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in MODES:
        raise UsageError(f"--mode: {text!r} is not a mode of backend {NAME}",
                         note="write --mode latency (one request at a time) or --mode throughput")
    return mode


def _streams(text: str) -> int:
    try:
        streams = int(text.strip())
    except ValueError:
        raise UsageError(f"--streams: {text!r} is not a whole number", note="write e.g. --streams 2") from None
    if streams < 1:
        raise UsageError(f"--streams: {streams} must be at least 1", note="write e.g. --streams 2")
    return streams


@hookimpl
def zoo_add_options(register: Callable[[OptionSpec], None]) -> None:
    register(OptionSpec("mode", "latency: one synchronous infer request per batch (default, the seed's meaning); "
                        "throughput: each batch split across parallel infer requests, one per stream.",
                        backend=NAME, type=_mode, metavar="latency|throughput"))
    register(OptionSpec("streams", "Parallel infer requests (CPU streams) of --mode throughput (default: what "
                        "OpenVINO's throughput hint picks); implies --mode throughput.",
                        backend=NAME, type=_streams, metavar="N"))


def run_mode(options: RunOptions) -> tuple[str, int | None]:
    """The run's mode and its streams (``None``: OpenVINO's choice); a usage error for latency with streams."""
    streams = options.backend_options.get("streams")
    mode = options.backend_options.get("mode") or (THROUGHPUT if streams is not None else LATENCY)
    if mode == LATENCY and streams is not None:
        raise UsageError(f"--streams {streams} asks for parallel requests, and --mode latency runs one at a time",
                         note="drop --streams, or write --mode throughput --streams N")
    return mode, streams


def openvino() -> Any:
    """The openvino module; found but broken (registration only looks for it), one line with the install note."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ZooError(f"backend {NAME}: openvino does not import ({exc})", note=INSTALL) from None
    return ov


# -------------------------------------------------------------------------
# Compile: the ONNX (or the quantized IR) saved as an IR
# -------------------------------------------------------------------------


def cpu_config(threads: int, mode: str, streams: int | None = None) -> dict[str, Any]:
    """The CPU plugin's settings: the run's threads, f32 where the graph is not quantized (the plugin would
    otherwise compute in bf16 on CPUs that have it), and the mode's performance hint."""
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "THROUGHPUT" if mode == THROUGHPUT else "LATENCY",
    }
    if streams is not None:
        config["NUM_STREAMS"] = streams
    return config


@hookimpl
def zoo_check_run(options: RunOptions) -> None:
    """--mode latency with --streams is refused before the export, not only when the compile reads it."""
    run_mode(options)


@hookimpl
def zoo_compile(
    backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, workdir: Path, options: RunOptions,
    precision: str,
) -> CompiledModel:
    ov = openvino()
    mode, streams = run_mode(options)
    core = ov.Core()
    ir = core.read_model(str(onnx_path))
    if options.extra_outputs:
        _add_marked_outputs(ir, model, Path(onnx_path), batch_size, options.extra_outputs)
    target = workdir / IR_FILE
    ov.save_model(ir, str(target), compress_to_fp16=False)  # its default would halve the FP32 weights
    if mode == THROUGHPUT and streams is None:  # what the throughput hint picks for this model on these threads
        probe = core.compile_model(ir, "CPU", cpu_config(options.threads, mode))
        streams = int(probe.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    return CompiledModel(
        backend=NAME,
        model=model.name,
        batch_size=batch_size,
        path=target,
        inputs=compiled_inputs(model, NAME, batch_size),
        output_names=(*model.output_names, *options.extra_outputs),
        device="cpu",
        extra={"openvino": ov.get_version(), "precision": precision, "mode": mode, "streams": streams},
    )


def _add_marked_outputs(ir: Any, model: ModelSpec, onnx_path: Path, batch_size: int, marks: tuple[str, ...]) -> None:
    """The marked tensors as outputs of ``ir`` (the runner reads every output by its tensor name). Names are checked
    against the ONNX graph first (an int8 compile starts from NNCF's IR, where OpenVINO's own lookup is the check);
    a tensor OpenVINO's reader did not keep under its ONNX name is one line too."""
    from .marked import check_marked, unique

    if onnx_path.suffix == ".onnx":
        from ..onnx_shared import load_shared

        check_marked(load_shared(onnx_path).graph, marks, model.name, batch_size)
    present = {name for output in ir.outputs for name in output.get_names()}
    for name in unique(marks):
        if name in present:
            continue
        try:
            ir.add_outputs([name])
        except Exception as exc:  # noqa: BLE001 -- OpenVINO raises its own RuntimeError subclasses
            lines = str(exc).strip().splitlines()  # its first line is a source location, the last one the reason
            raise UsageError(f"OpenVINO cannot return tensor {name!r} of {model.name} at batch {batch_size} as an "
                             f"extra output: {lines[-1].strip() if lines else type(exc).__name__}",
                             note="mark another tensor (OpenVINO keeps the ONNX names of most node outputs), or "
                             "compare on onnxruntime") from None


# -------------------------------------------------------------------------
# Infer: one request per batch, or the batch split across a queue of requests
# -------------------------------------------------------------------------


def split(batch_size: int, streams: int) -> tuple[int, int]:
    """(images per request, requests) for a batch of ``batch_size`` over ``streams`` requests: whole requests of
    equal size, the last one padded."""
    per_request = -(-batch_size // max(1, min(streams, batch_size)))
    return per_request, -(-batch_size // per_request)


class OpenVinoRunner(Runner):
    """A compiled model on the CPU plugin. Latency mode: one synchronous infer request per batch. Throughput mode:
    the IR reshaped to a part of the batch, and each batch's parts started at once on their own asynchronous infer
    requests (one per stream); ``infer`` returns when all are done, so each call's time is still one whole batch's
    (the runner's timing contract: throughput = 1000 * batch / mean ms of the calls). No Python callback runs on
    OpenVINO's threads: an ``AsyncInferQueue`` with one crashed the interpreter now and then at its teardown."""

    def __init__(self, compiled: CompiledModel, threads: int) -> None:
        super().__init__(compiled)
        ov = openvino()
        mode = str(compiled.extra.get("mode", LATENCY))
        streams = compiled.extra.get("streams")
        core = ov.Core()
        ir = core.read_model(str(compiled.path))
        self.per_request, self.requests = split(compiled.batch_size, int(streams or 1))
        if mode == THROUGHPUT and self.per_request != compiled.batch_size:
            ir.reshape({i.name: [self.per_request, *i.shape[1:]] for i in compiled.inputs})
        self.model = core.compile_model(ir, "CPU", cpu_config(threads, mode, streams if mode == THROUGHPUT else None))
        self.outputs = [self.model.output(name) for name in compiled.output_names]
        self.parallel = [self.model.create_infer_request() for _ in range(self.requests)] if mode == THROUGHPUT else []
        self.request = self.model.create_infer_request() if mode == LATENCY else None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        if self.request is not None:
            self.request.infer(dict(feed))
            return [self.request.get_tensor(out).data.copy() for out in self.outputs]
        import numpy as np

        bs, size = self.compiled.batch_size, self.per_request
        for part, request in enumerate(self.parallel):
            inputs = {}
            for name, array in feed.items():
                chunk = array[part * size: (part + 1) * size]
                if len(chunk) < size:  # the last part: padded with copies of its last image, dropped below
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
                inputs[name] = np.ascontiguousarray(chunk)
            request.start_async(inputs)
        for request in self.parallel:
            request.wait()
        return [np.concatenate([request.get_tensor(out).data for request in self.parallel])[:bs]
                for out in self.outputs]

    def close(self) -> None:
        self.request, self.parallel, self.model = None, [], None


@hookimpl
def zoo_infer(compiled: CompiledModel, options: RunOptions) -> Runner:
    return OpenVinoRunner(compiled, options.threads)


# -------------------------------------------------------------------------
# Quantize: NNCF post-training quantization of the OpenVINO model
# -------------------------------------------------------------------------


class _Batches:
    """The calibration set as NNCF's data source: whole batches, one feed each, read anew on every pass."""

    def __init__(self, calibration: Calibration, batch_size: int) -> None:
        self.calibration, self.batch_size = calibration, batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return ({self.calibration.input_name: batch} for batch in self.calibration.batches(self.batch_size))

    def __len__(self) -> int:
        return self.calibration.batch_count(self.batch_size)


@hookimpl
def zoo_quantize(
    onnx_path: Path, batch_size: int, precision: str, calibration: Calibration, workdir: Path,
) -> Path | None:
    if precision != "int8":
        return None
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    except ImportError as exc:
        raise ZooError(f"backend {NAME} quantizes to int8 with NNCF, which does not import ({exc})",
                       note=INSTALL) from None
    ov = openvino()
    method = calibration.method or CALIB_METHODS[0]
    if method not in CALIB_METHODS:
        raise UsageError(f"--calib-method {method}: backend {NAME} (NNCF) calibrates with {', '.join(CALIB_METHODS)}",
                         note=f"write --calib-method {CALIB_METHODS[0]}, or leave it out")
    data = _Batches(calibration, batch_size)
    ir = ov.Core().read_model(str(onnx_path))
    with _nncf_output_to(workdir / NNCF_LOG):
        quantized = nncf.quantize(
            ir, nncf.Dataset(data),
            subset_size=len(data),  # NNCF counts items, here whole batches: every calibration image once
            target_device=nncf.TargetDevice.CPU,
            advanced_parameters=AdvancedQuantizationParameters(
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
        )
    target = workdir / QUANTIZED_FILE
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


class _nncf_output_to:  # noqa: N801 -- used as a context manager, named as one
    """NNCF's log lines and progress bars (written to stdout, where ``--json`` prints its object) go to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        import contextlib
        import logging

        from nncf.common.logging import nncf_logger

        self.file = self.path.open("w", encoding="utf-8")
        self.redirect = contextlib.redirect_stdout(self.file)
        self.redirect.__enter__()
        self.logger = nncf_logger
        self.handlers = list(nncf_logger.handlers)
        for handler in self.handlers:
            nncf_logger.removeHandler(handler)
        self.handler = logging.StreamHandler(self.file)
        nncf_logger.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        for handler in self.handlers:
            self.logger.addHandler(handler)
        self.redirect.__exit__(None, None, None)
        self.file.close()
