"""The PyTorch eager backend: the reference that every other backend is compared with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .. import hookimpl
from ..runtime import CompiledModel, Runner, compiled_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..profiling import Profile
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


# -------------------------------------------------------------------------
# --profile: torch.profiler, each operator's own CPU time attributed to the innermost module it ran in
# -------------------------------------------------------------------------

SCOPE = "zoo.module::"  # the record_function ranges that name each module in the trace


@hookimpl
def zoo_profile(
    compiled: CompiledModel, model: ModelSpec, options: RunOptions, feed: Mapping[str, np.ndarray], batches: int
) -> Profile:
    """The eager module under ``torch.profiler`` (CPU), after one warm-up batch; a node is a module (its qualified
    name, its class as the op type) and holds the self time of every operator that ran in it and in no submodule."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from ..profiling import Profile, timed_calls

    runner = TorchRunner(compiled, model, options.threads)
    runner._infer(feed)  # warm-up, outside the profile
    names = {module: name or "(model)" for name, module in runner.module.named_modules()}
    kinds = {name: type(module).__name__ for module, name in names.items()}
    open_scopes: dict[int, list[Any]] = {}

    def enter(module: Any, _args: Any) -> None:
        scope = record_function(SCOPE + names[module])
        scope.__enter__()
        open_scopes.setdefault(id(module), []).append(scope)

    def leave(module: Any, _args: Any, _out: Any) -> None:
        open_scopes[id(module)].pop().__exit__(None, None, None)

    handles = [h for m in names for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = timed_calls(lambda: runner._infer(feed), batches)
    finally:
        for handle in handles:
            handle.remove()
    operators = []
    for event in prof.events():
        node = _innermost_scope(event)
        if node is not None and event.self_cpu_time_total > 0:
            operators.append((node, kinds.get(node, "?"), float(event.self_cpu_time_total)))
    return Profile(source=f"torch {torch.__version__} profiler (CPU)", wall_ms=wall, operators=tuple(operators))


def _innermost_scope(event: Any) -> str | None:
    """The module an event ran in: its own scope, or its nearest enclosing one; ``None`` outside the model."""
    while event is not None:
        if event.name.startswith(SCOPE):
            return str(event.name.removeprefix(SCOPE))
        event = event.cpu_parent
    return None
