"""The ONNX Runtime backend: compile is an optimized graph, inference a session with one thread per core."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from .. import hookimpl
from ..onnx_shared import reshare
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..specs import BackendSpec, ModelSpec, RunOptions

NAME = "onnxruntime"
OPTIMIZED_FILE = "model.optimized.onnx"


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
        )
    )


def session_options(threads: int, level: str = "all", optimized_path: Path | None = None):  # noqa: ANN201
    """The session options zoo uses; the overhead benchmark uses the same ones for its bare loop."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
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
        output_names=model.output_names,
        device="cpu",
        extra={"onnxruntime": ort.__version__},
    )


class OnnxRuntimeRunner(Runner):
    """One ONNX Runtime session on the CPU provider."""

    def __init__(self, compiled: CompiledModel, threads: int) -> None:
        super().__init__(compiled)
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            str(compiled.path), session_options(threads, "all"), providers=["CPUExecutionProvider"]
        )

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self.session.run(None, dict(feed))

    def close(self) -> None:
        self.session = None


@hookimpl
def zoo_infer(compiled: CompiledModel, options: RunOptions) -> Runner:
    return OnnxRuntimeRunner(compiled, options.threads)

