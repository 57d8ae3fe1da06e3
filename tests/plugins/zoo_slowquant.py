"""A test plugin: a backend ``slowq-cpu`` (ONNX Runtime underneath, its int8 quantizer included) whose quantize
stage first touches ``$ZOO_SLOWQ_MARK`` and then sleeps ``$ZOO_SLOWQ_SECONDS``: room for a test to kill a run in
the middle of a quantize (tests/test_precision.py)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from zoo_core import hookimpl
from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.specs import BackendSpec

NAME = "slowq-cpu"


@hookimpl
def zoo_register_backends(register) -> None:
    register(BackendSpec(name=NAME, description="ONNX Runtime with a slow quantize stage", priority=-100,
                         precisions=("fp32", "int8"), calib_methods=("minmax",), quantize_opset=13))


@hookimpl
def zoo_quantize(model, onnx_path, batch_size, precision, calibration, workdir, options):
    if os.environ.get("ZOO_SLOWQ_MARK"):
        Path(os.environ["ZOO_SLOWQ_MARK"]).touch()
    (workdir / "half-written.onnx").write_bytes(b"\0" * 1024)  # what a killed quantize leaves in its folder
    time.sleep(float(os.environ.get("ZOO_SLOWQ_SECONDS", "0")))
    return ort_backend.zoo_quantize(model=model, onnx_path=onnx_path, batch_size=batch_size, precision=precision,
                                    calibration=calibration, workdir=workdir, options=options)


@hookimpl
def zoo_compile(backend, model, onnx_path, batch_size, workdir, options):
    compiled = ort_backend.zoo_compile(backend=backend, model=model, onnx_path=onnx_path, batch_size=batch_size,
                                       workdir=workdir, options=options)
    return replace(compiled, backend=NAME)


@hookimpl
def zoo_infer(compiled, options):
    return ort_backend.OnnxRuntimeRunner(compiled, options.threads)
