"""Ctrl-C (SIGINT) and SIGTERM end a run the same way, once: later signals are ignored while zoo winds down."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_owner: dict[str, int] = {}  # the process that installed the handlers; a forked child is not it


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``docker stop`` and Slurm send), raised wherever Ctrl-C's KeyboardInterrupt
    would be, so every cleanup that runs for Ctrl-C runs for it too."""


def install() -> dict[int, Any]:
    """Handle SIGINT and SIGTERM in this (main) process; returns the previous handlers for :func:`restore`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _owner["pid"] = os.getpid()
    return {s: signal.signal(s, _stop) for s in STOP_SIGNALS}


def restore(previous: dict[int, Any]) -> None:
    """Put the previous handlers back, unless a signal came (then they stay ignored until the process ends)."""
    for s, handler in previous.items():
        if signal.getsignal(s) is _stop:
            signal.signal(s, handler)


def _stop(signum: int, frame: Any) -> None:
    if in_forked_child(signum):
        return
    for s in STOP_SIGNALS:  # a second Ctrl-C during cleanup must not interrupt the cleanup
        signal.signal(s, signal.SIG_IGN)
    raise exception_for(signum)


def in_forked_child(signum: int) -> bool:
    """In a forked worker that has not set its own handling yet: SIGTERM ends it quietly (the default action),
    SIGINT is left to the parent. False in the process that installed the handlers."""
    if os.getpid() == _owner.get("pid", os.getpid()):
        return False
    _as_child(signum)
    return True


def _as_child(signum: int) -> None:
    if signum == signal.SIGTERM:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def exception_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def describe(exc: BaseException | None) -> tuple[str, int]:
    """What stopped the run, for the one-line message, and its exit code: 143 (128 + SIGTERM) or 130."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


@contextmanager
def held_back() -> Iterator[list[int]]:
    """Hold back SIGINT and SIGTERM (e.g. while a pool forks: a KeyboardInterrupt raised inside the fork's own
    handlers is printed and dropped by Python, and the run would go on). The list it yields holds the signals
    that came; :func:`deliver` raises them once it is safe."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    parent = os.getpid()

    def record(signum: int, frame: Any) -> None:
        if os.getpid() != parent:  # the fork's child, before its own set-up
            return _as_child(signum)
        received.append(signum)

    previous = {s: signal.signal(s, record) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def deliver(received: list[int]) -> None:
    """Raise the first held-back signal through the handler now in place, as if it had just come."""
    if received:
        signal.raise_signal(received[0])  # our handler (or Python's default for SIGINT) raises here
        raise exception_for(received[0])  # the handler ignored it: still, the run was asked to stop


@contextmanager
def blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM at the kernel while worker processes are forked, then unblock them here.

    A forked child inherits the parent's Python-level handlers, and a signal that reaches it before
    :func:`as_worker` has run can be lost: one that lands between ``fork()`` and Python's after-fork reset is
    cleared by it, and one caught at the C level is dropped once ``as_worker`` replaces the handler. A pool
    terminated that early (a short job whose last worker is still starting) then waits forever for a worker
    that never got its SIGTERM. Blocked, the signal stays pending in the kernel: the child inherits the mask
    and gets it when :func:`as_worker` unblocks, with the default action; the parent gets its own pending
    signals on leaving this block, through whatever handler is then in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def as_worker() -> None:
    """A worker process's handling: Ctrl-C is the parent's to handle (it ends the workers), and SIGTERM (the
    parent's terminate(), or a whole process group stopped) ends the worker quietly, without a traceback. The
    signals blocked while it was forked (:func:`blocked`) are unblocked only now, so a SIGTERM that came
    meanwhile ends it here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def import_quietly(*modules: str) -> None:
    """Import native-extension packages (torch, onnx, onnxruntime) with SIGINT and SIGTERM held back until the
    import is done: a KeyboardInterrupt raised inside an extension's initialisation (protobuf's, nanobind's)
    crashes the process (SIGSEGV, abort) instead of ending it with one line."""
    import importlib

    with held_back() as received:
        for name in modules:
            importlib.import_module(name)
    deliver(received)
