"""What this installation and machine can do: opsets, memory for a batch, path lengths (checked before the work),
and a full disk (named, with no temporary file left)."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import EXIT_ENV, UsageError, ZooError
from .signals import import_quietly

if TYPE_CHECKING:
    from .specs import ModelSpec, RunOptions

INT64_MAX = 2**63 - 1
NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems alike


# -------------------------------------------------------------------------
# ONNX opsets: what torch.onnx exports, onnx knows and onnxruntime runs
# -------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _runtime_runs(opset: int) -> bool:
    """Whether the installed onnxruntime opens a one-node model of ``opset``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "opset-probe", [x], [y])
    imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=imports)
    try:
        model.ir_version = helper.find_min_ir_version_for(imports)
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an opset it does not know, whatever the exception's type
        return False
    return True


@functools.lru_cache(maxsize=None)
def supported_opsets() -> tuple[int, int, str]:
    """The opsets that the installed exporter (torch.onnx), onnx and onnxruntime all support: (lowest, highest,
    the versions that set them). Imports torch: only called once a run needs an export."""
    import onnx
    import onnxruntime
    import torch
    from torch.onnx import _constants  # the exporter's own bounds (no public name holds them)

    low, high = _constants.ONNX_MIN_OPSET, min(_constants.ONNX_MAX_OPSET, onnx.defs.onnx_opset_version())
    runs = [o for o in range(low, high + 1) if _runtime_runs(o)]
    low, high = (min(runs), max(runs)) if runs else (low, low - 1)
    return low, high, f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"


def check_opset(opset: int) -> None:
    """A usage error, naming the supported range, for an opset the installation cannot export and run."""
    import_quietly("torch", "onnx", "onnxruntime")
    import onnx
    from torch.onnx import _constants

    high = min(_constants.ONNX_MAX_OPSET, onnx.defs.onnx_opset_version())
    if _constants.ONNX_MIN_OPSET <= opset <= high and _runtime_runs(opset):
        return  # the common case: no need to probe every opset
    low, high, versions = supported_opsets()
    raise UsageError(f"--opset {opset} is outside the opsets this installation exports and runs: {low} to {high} "
                     f"({versions})", note=f"choose an opset from {low} to {high}, or leave --opset out for the "
                     "model's own")


def check_opset_option(model: ModelSpec, options: RunOptions) -> None:
    """Before any work: an ``--opset`` other than the model's own that the installation cannot export and run.
    (The model's own is checked when an export is built, where torch is imported anyway.)"""
    if options.onnx is None and options.opset != model.opset:
        check_opset(options.opset)


# -------------------------------------------------------------------------
# Memory: a batch's inputs and outputs must fit before anything is compiled
# -------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def memory_available() -> int | None:
    """Bytes this process can still allocate: MemAvailable, or the cgroup's limit less its usage when lower;
    ``None`` where neither can be read (then nothing is refused)."""
    figures = []
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            figures.append(int(line.split()[1]) * 1024)
    groups = [line.split(":", 2)[2] for line in (_read("/proc/self/cgroup") or "").splitlines() if line.count(":") >= 2]
    candidates = [(f"/sys/fs/cgroup{g.rstrip('/')}/memory.max", f"/sys/fs/cgroup{g.rstrip('/')}/memory.current")
                  for g in groups] + [("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                      ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                       "/sys/fs/cgroup/memory/memory.usage_in_bytes")]
    for limit_file, usage_file in candidates:
        limit, usage = _read(limit_file), _read(usage_file)
        if limit and limit.isdigit() and int(limit) < 2**60:  # "max", or v1's huge "no limit" number
            figures.append(max(0, int(limit) - int(usage or 0)))
            break
    return min(figures) if figures else None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.0f} GB" if n >= 10e9 else f"{n / 1e9:.1f} GB"


def batch_bytes(model: ModelSpec, onnx_path: Path, batch_size: int) -> tuple[int, int]:
    """(elements of the largest tensor, bytes of the inputs and outputs) of one batch: the model's declared
    inputs, and the ONNX graph's outputs with their batch axis at ``batch_size`` (other unknown axes count 1,
    so the figure is a lower bound)."""
    import_quietly("onnx")
    import numpy as np
    import onnx
    from onnx import helper

    sample = int(np.prod(model.input_shape))
    largest = batch_size * sample
    total = len(model.input_names) * largest * np.dtype(model.input_dtype).itemsize
    try:
        outputs = onnx.load(str(onnx_path), load_external_data=False).graph.output
    except Exception:  # noqa: BLE001 - a file onnx cannot read: the inputs alone, and simplify will say why
        outputs = []
    for output in outputs:
        kind = output.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (batch_size if i == 0 else 1)
                for i, d in enumerate(kind.shape.dim)]
        count = int(np.prod(dims, dtype=object)) if dims else 1
        largest = max(largest, count)
        total += count * np.dtype(helper.tensor_dtype_to_np_dtype(kind.elem_type)).itemsize
    return largest, total


def check_batch_memory(model: ModelSpec, onnx_path: Path, batch_sizes: Iterable[int]) -> None:
    """Refuse, with the figures, a batch whose inputs and outputs alone exceed the memory available (exit 3),
    or whose shape overflows what ONNX shapes hold (exit 2), before it is simplified or compiled."""
    available: Any = ...
    for bs in sorted(set(batch_sizes), reverse=True):
        largest, needed = batch_bytes(model, onnx_path, bs)
        if largest > INT64_MAX:
            raise UsageError(f"--bs: batch {bs} is too large: a tensor of it would hold {largest:.3g} values, "
                             "more than an ONNX shape can count (2**63 - 1)", note="write e.g. --bs 64")
        if available is ...:
            available = memory_available()
        if available is not None and needed > available:
            raise ZooError(f"batch {bs} needs at least {_gb(needed)} for inputs and outputs; "
                           f"{_gb(available)} available", exit_code=EXIT_ENV,
                           note="choose a smaller --bs, or run where more memory is free")


# -------------------------------------------------------------------------
# Paths: a component longer than the file system allows (ENAMETOOLONG)
# -------------------------------------------------------------------------


def long_component(path: str | os.PathLike[str]) -> tuple[str, int] | None:
    """The first component of ``path`` longer than 255 bytes (its start, for a message) and its length."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            return f"{part[:20]}…", size
    return None


def check_path(option: str, path: str | os.PathLike[str] | None) -> None:
    """A usage error naming ``option`` when one component of ``path`` is too long for any file system."""
    found = long_component(path) if path is not None else None
    if found is not None:
        raise UsageError(f"{option}: the name {found[0]!r} is {found[1]} bytes long; a file or folder name may have "
                         f"at most {NAME_MAX}", note="shorten that file or folder name")


# -------------------------------------------------------------------------
# A full disk: the file is named and its temporary file removed
# -------------------------------------------------------------------------


@contextlib.contextmanager
def writing(final: Path, tmp: Path | None = None) -> Iterator[None]:
    """Writing ``final`` (through ``tmp``, moved over it at the end): if the block fails, ``tmp`` is removed, and an
    OSError without a file name (a full disk, raised inside a library's write) is given ``final``'s."""
    try:
        yield
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(final)) from None
        raise
