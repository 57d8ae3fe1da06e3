"""The backend contract: a compiled model, and a runner whose public method validates and times each call."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class InputInfo:
    """One model input, with its full (batched) shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class CompiledModel:
    """What a backend's compile step produced: files under one folder, and what they serve."""

    backend: str
    model: str
    batch_size: int
    path: Path  # the main file (an optimized ONNX, an .om, ...)
    inputs: tuple[InputInfo, ...]
    output_names: tuple[str, ...]
    device: str = "cpu"
    extra: Mapping[str, Any] = field(default_factory=dict)


class Runner(ABC):
    """Runs batches on a compiled model. Backends implement :meth:`_infer`; the core calls :meth:`infer`.

    ``infer`` checks the feed against the compiled model's inputs and records the wall time of the call
    in :attr:`last_ms`; a backend that measures its own device time sets :attr:`last_device_ms` in ``_infer``.
    """

    def __init__(self, compiled: CompiledModel) -> None:
        self.compiled = compiled
        self.last_ms: float = 0.0
        self.last_device_ms: float | None = None
        self._expected = {i.name: i.shape for i in compiled.inputs}

    def infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Run one batch. ``feed`` maps every input name to an array of the compiled shape."""
        if set(feed) != set(self._expected):
            raise ValueError(f"inputs {sorted(feed)} do not match the model's {sorted(self._expected)}")
        for name, array in feed.items():
            if tuple(array.shape) != self._expected[name]:
                raise ValueError(f"input {name!r} has shape {tuple(array.shape)}, expected {self._expected[name]}")
        start = time.perf_counter()
        outputs = self._infer(feed)
        self.last_ms = (time.perf_counter() - start) * 1000.0
        return outputs

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Run one batch on the device; the shapes are already checked."""

    def close(self) -> None:  # noqa: B027 -- not abstract: a runner with nothing to release keeps this one
        """Release the session and the device."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


COMPILED_FILE = "compiled.json"


def compiled_inputs(model: Any, backend: str, batch_size: int) -> tuple[InputInfo, ...]:
    """The batched inputs of ``model`` compiled for ``backend`` (its input override, if the model has one)."""
    shape, dtype, _ = model.input_for(backend)
    return tuple(InputInfo(name, (batch_size, *shape), dtype) for name in model.input_names)


def save_compiled(compiled: CompiledModel, folder: Path) -> None:
    """Write ``compiled`` into its artifact folder, with paths relative to it."""
    import json

    data = {
        "backend": compiled.backend,
        "model": compiled.model,
        "batch_size": compiled.batch_size,
        "path": str(Path(compiled.path).relative_to(folder)),
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in compiled.inputs],
        "output_names": list(compiled.output_names),
        "device": compiled.device,
        "extra": dict(compiled.extra),
    }
    (folder / COMPILED_FILE).write_text(json.dumps(data, indent=2))


def load_compiled(folder: Path) -> CompiledModel:
    """Read what :func:`save_compiled` wrote, resolving paths against ``folder``."""
    import json

    data = json.loads((folder / COMPILED_FILE).read_text())
    return CompiledModel(
        backend=data["backend"],
        model=data["model"],
        batch_size=data["batch_size"],
        path=folder / data["path"],
        inputs=tuple(InputInfo(i["name"], tuple(i["shape"]), i["dtype"]) for i in data["inputs"]),
        output_names=tuple(data["output_names"]),
        device=data["device"],
        extra=data["extra"],
    )


def infer_batches(runner: Runner, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run any number of samples through a static-batch runner, as ais_bench does.

    ``inputs`` maps each input name to an array of shape ``(N, ...)``. Batches of the compiled size are fed in
    order; the last partial batch is padded with copies of its last sample and the padded outputs are dropped.
    Returns one array per model output, each of shape ``(N, ...)``.
    """
    import numpy as np

    bs = runner.compiled.batch_size
    total = len(next(iter(inputs.values())))
    if any(len(a) != total for a in inputs.values()):
        raise ValueError("every input must have the same number of samples")
    chunks: list[list[np.ndarray]] = []
    for start in range(0, total, bs):
        real = min(bs, total - start)
        feed = {}
        for name, array in inputs.items():
            batch = array[start : start + real]
            if real < bs:
                batch = np.concatenate([batch, np.repeat(batch[-1:], bs - real, axis=0)])
            feed[name] = np.ascontiguousarray(batch)
        chunks.append([out[:real] for out in runner.infer(feed)])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))] if chunks else []
