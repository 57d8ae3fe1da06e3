"""The PyTorch eager backend: the reference that every other backend is compared with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from .. import hookimpl
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..specs import BackendSpec, ModelSpec, RunOptions
    from ..weights import WeightsRef

NAME = "torch"
WEIGHTS_FILE = "weights.json"


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    from ..specs import BackendSpec

    found = importlib.util.find_spec("torch") is not None
    register(
        BackendSpec(
            name=NAME,
            description="PyTorch eager on the CPU, the reference implementation",
            available=found,
            unavailable_reason="" if found else "torch is not installed (pip install torch==2.13.0)",
            priority=-10,  # never the automatic choice: it is the reference, not a deployment target
            device="cpu",
            reference=True,  # zoo compare checks the other backends against the eager module
        )
    )


@hookimpl
def zoo_compile(
    backend: BackendSpec,
    model: ModelSpec,
    onnx_path: Path,
    batch_size: int,
    workdir: Path,
    options: RunOptions,
    weights: WeightsRef,
) -> CompiledModel:
    import torch

    # Eager mode compiles nothing: the artifact records which weights the runner loads.
    target = workdir / WEIGHTS_FILE
    target.write_text(
        json.dumps({"kind": weights.kind, "path": str(weights.path) if weights.path else None,
                    "sha256": weights.sha256, "source": weights.source, "seed": weights.seed})
    )
    return CompiledModel(
        backend=NAME,
        model=model.name,
        batch_size=batch_size,
        path=target,
        inputs=compiled_inputs(model, NAME, batch_size),
        output_names=model.output_names,
        device="cpu",
        extra={"torch": torch.__version__},
    )


class TorchRunner(Runner):
    """The model's torch module in eval mode, under ``torch.inference_mode``."""

    def __init__(self, compiled: CompiledModel, model: ModelSpec, threads: int) -> None:
        super().__init__(compiled)
        import torch

        from ..export import build_module
        from ..weights import WeightsRef

        data = json.loads(Path(compiled.path).read_text())
        ref = WeightsRef(kind=data["kind"], path=Path(data["path"]) if data["path"] else None,
                         sha256=data["sha256"], source=data["source"], seed=data["seed"])
        torch.set_num_threads(threads)
        self.torch = torch
        self.module = build_module(model, ref)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        args = [self.torch.from_numpy(feed[i.name]) for i in self.compiled.inputs]
        with self.torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in outs]


@hookimpl
def zoo_infer(compiled: CompiledModel, model: ModelSpec, options: RunOptions) -> Runner:
    return TorchRunner(compiled, model, options.threads)
