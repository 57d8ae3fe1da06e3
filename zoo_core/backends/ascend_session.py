"""ais_bench's ``InferSession`` as a zoo runner, for both API generations (ascend-tools.md §4).

The older generation (Ascend/tools, to mid-2023) spells the summary ``sumary()`` / ``reset_sumaryinfo()``, records
each call's time as a float, releases a session with its own ``finalize()`` and needs
``set_dynamic_batchsize(n)`` for a dynamic batch. The newer one (ait/msit, late 2023 on) has ``summary()`` /
``reset_summaryinfo()``, records (start, end) pairs, releases a session with ``free_resource()``, and its
``finalize()`` is a static call that releases every ACL resource of the process. Methods are looked up, never
the generation; the generation is only reported (``zoo doctor``, the results' env).
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ZooError
from ..runtime import Runner
from .marked import unique

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..runtime import CompiledModel


def generation(session_class: type) -> str:
    """``newer`` when ``InferSession`` has ``summary`` and a static ``finalize``, ``older`` when it has ``sumary``
    and a per-session ``finalize``, else ``mixed``."""
    static = _static_finalize(session_class)
    if static and hasattr(session_class, "summary"):
        return "newer"
    if not static and hasattr(session_class, "sumary"):
        return "older"
    return "mixed"


def installed_generation() -> str | None:
    """The generation of the importable ais_bench, or None when it does not import."""
    try:
        from ais_bench.infer.interface import InferSession
    except Exception:  # noqa: BLE001 -- probe() reports why
        return None
    return generation(InferSession)


def _static_finalize(session_class: type) -> bool:
    return isinstance(inspect.getattr_static(session_class, "finalize", None), staticmethod)


_FINALIZE_AT_EXIT: set[type] = set()


def _finalize_at_exit(session_class: Any) -> None:  # ais_bench's InferSession class
    """The newer generation's static ``finalize()`` releases every ACL resource of the process: called once, at
    exit, and only in a process that opened a session (never per runner: a sweep's next runner, or another
    runner of this process, would lose its device)."""
    if session_class in _FINALIZE_AT_EXIT:
        return
    _FINALIZE_AT_EXIT.add(session_class)

    def finalize() -> None:
        with contextlib.suppress(Exception):  # the process is ending: a failing release must not add a traceback
            session_class.finalize()

    atexit.register(finalize)


def call_ms(entry: Any) -> float:
    """One ``exec_time_list`` entry in ms: a (start, end) pair (newer) is ``end - start``, a number (older) itself."""
    if isinstance(entry, (tuple, list)):
        start, end = entry
        return float(end) - float(start)
    return float(entry)


class AscendRunner(Runner):
    """One ``InferSession`` on one NPU; the device time of each call comes from its summary."""

    def __init__(self, compiled: CompiledModel, device_id: int, device_note: Callable[[], str]) -> None:
        super().__init__(compiled)
        from ais_bench.infer.interface import InferSession

        try:
            self.session = InferSession(device_id, str(compiled.path))
        except Exception as exc:  # noqa: BLE001 -- the real session raises RuntimeError on a bad device or file
            raise ZooError(f"cannot open {compiled.path} on NPU {device_id}: {exc}", note=device_note()) from None
        if _static_finalize(InferSession):
            _finalize_at_exit(InferSession)
        session = self.session
        self._summary = getattr(session, "summary", None) or session.sumary  # (sic) the older spelling
        self._reset = getattr(session, "reset_summaryinfo", None) or session.reset_sumaryinfo
        self._order = [i.name for i in compiled.inputs]
        # A dynamic-batch .om keeps -1 in its inputs' batch axis: the batch is set before each call.
        self._dynamic = any(list(d.shape)[:1] == [-1] for d in session.get_inputs())
        self._mode = "dymbatch" if self._dynamic else "static"
        # A marked tensor that is also a model output, or marked twice, is one output of the .om (ATC's --out_nodes
        # lists each once): returned at every place it was asked.
        names = list(compiled.output_names)
        order = unique(compiled.output_names)
        self._pick = [order.index(name) for name in names] if len(order) != len(names) else None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        arrays = [feed[name] for name in self._order]
        if self._dynamic and hasattr(self.session, "set_dynamic_batchsize"):
            self.session.set_dynamic_batchsize(int(arrays[0].shape[0]))  # the older generation ignores the mode
        outputs = self.session.infer(arrays, mode=self._mode)
        times = self._summary().exec_time_list
        self.last_device_ms = call_ms(times[-1]) if times else None
        self._reset()  # keep the summary at one entry, however long the run
        return outputs if self._pick is None else [outputs[i] for i in self._pick]

    def close(self) -> None:
        session, self.session = getattr(self, "session", None), None
        if session is None:
            return
        if hasattr(session, "free_resource"):  # newer: releases this session only
            session.free_resource()
        elif not _static_finalize(type(session)):  # older: finalize() is this session's own release
            session.finalize()
        # A static finalize() without free_resource() would release the whole process: left to exit.
