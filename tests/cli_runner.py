"""Two ways to run the ``zoo`` command for a test: in this process (the default: milliseconds) or as a real process.

``run_in_process`` calls the console script's entry point, ``zoo_core.cli.main(argv)``, the way ``python -m zoo_core``
does, and reports what that process would: the exit code (``SystemExit``'s, or 1 with the traceback on stderr for an
uncaught exception), stdout and stderr apart (captured at the file descriptors too, so what a C library or a child
process writes is there as it would be), the environment and folder the test gives, no terminal on any stream, and
Python's default warning filters. Afterwards it puts back what a call changes in this process and a process would
have dropped at exit: environment, folder, argv, streams, signal handlers, warning filters, torch's thread count, the
cache's folder locks, the test plugins it imported (they read the environment at import time), the cached registry
of installed plugins and the hashes of plugin sources. A Ctrl-C that zoo took for its own (exit 130) stops pytest.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from zoo_core.errors import EXIT_INTERRUPTED

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# Where the installed packages live: modules imported from there are kept between calls (torch imports once).
_KEPT = tuple({str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
# What a fresh interpreter's warning filters are (no -W, no PYTHONWARNINGS): pytest records warnings instead.
_DEFAULT_FILTERS = [
    ("default", None, DeprecationWarning, "__main__", 0),
    ("ignore", None, DeprecationWarning, None, 0),
    ("ignore", None, PendingDeprecationWarning, None, 0),
    ("ignore", None, ImportWarning, None, 0),
    ("ignore", None, ResourceWarning, None, 0),
]


class Result:
    """What one ``zoo`` command did: its exit code, stdout and stderr."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}>"


def run_process(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
    """``python -m zoo_core ARGS`` in a new process, as a user would run ``zoo``."""
    proc = subprocess.run([sys.executable, "-m", "zoo_core", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_in_process(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
    """``zoo ARGS`` through ``zoo_core.cli.main`` in this process, reported as :func:`run_process` would."""
    from zoo_core.cli import main

    before = set(sys.modules)
    try:
        with ExitStack() as stack:
            stack.enter_context(_environment({**os.environ, **(env or {})}, cwd))
            stack.enter_context(_process_state())
            out, err = stack.enter_context(_captured())
            code = _call(main, list(args))
    finally:
        _forget_test_modules(before)
    if code == EXIT_INTERRUPTED:  # Ctrl-C on pytest, which zoo's handler took for its own: stop the session
        raise KeyboardInterrupt(f"zoo {' '.join(args)}: {err.text.strip()}")
    return Result(code, out.text, err.text)


def _call(main: Any, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:  # what the interpreter does with it at exit
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 -- an uncaught exception: its traceback and exit 1, as a process shows
        traceback.print_exc()
        return 1
    return 0


@contextmanager
def _environment(env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """``env`` as os.environ (and its PYTHONPATH on sys.path), ``cwd`` as the folder, ``zoo``'s __main__ as
    argv[0]; no bytecode written, and the import system's folder listings read afresh."""
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv, list(sys.path)
    saved_bytecode = sys.dont_write_bytecode
    # A module a test writes, imports, then edits within the second (same size): no stale .pyc of it is used.
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[:0] = extra
    sys.argv = [str(ROOT / "zoo_core" / "__main__.py")]
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode


@contextmanager
def _process_state() -> Iterator[None]:
    """Signal handlers, warning filters and torch's thread count as they were; the cache's folder locks released,
    the cached registry of installed plugins and the hashes of plugin sources dropped, as at a process's exit."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fds = _open_fds()
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, _, category, module, lineno in reversed(_DEFAULT_FILTERS):
            warnings.filterwarnings(action, category=category, module=module or "", lineno=lineno)
        warnings.showwarning = _show_warning
        try:
            yield
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
            if threads is not None:
                torch.set_num_threads(threads)
            _close_cache_locks(fds)
            report = sys.modules.get("zoo_core.reporting")
            if report is not None:
                report._installed_registry.cache_clear()
            plugins = sys.modules.get("zoo_core.plugins")
            if plugins is not None:  # "once per process": the hashes of the plugins' sources
                plugins._source_hashes.clear()


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if os.path.isdir("/proc/self/fd") else set()


def _close_cache_locks(before: set[int]) -> None:
    """Close what the call left open in the cache: the folder locks zoo holds until its process exits (so that
    `zoo cache clean` leaves those folders alone), which would otherwise stay held by this process."""
    from zoo_core.artifacts import cache_root

    root = str(cache_root().resolve())
    for fd in _open_fds() - before:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target == root or target.startswith(root + os.sep):
            os.close(fd)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _Stream:
    """One of the process's standard streams: a file at its descriptor, read back once the call is over."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.file = tempfile.TemporaryFile()
        self.text = ""


@contextmanager
def _captured() -> Iterator[tuple[_Stream, _Stream]]:
    """stdout and stderr into files of their own, at descriptors 1 and 2 and as sys.stdout/sys.stderr (UTF-8,
    not a terminal); stdin empty, as a process run without one."""
    streams = (_Stream(1), _Stream(2))
    saved_fds = [os.dup(s.fd) for s in streams]
    saved = sys.stdin, sys.stdout, sys.stderr
    for s in (sys.stdout, sys.stderr):
        s.flush()
    for s in streams:
        os.dup2(s.file.fileno(), s.fd)
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # flushed and closed below
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False,
                      buffering=1)
    try:
        yield streams
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            finally:
                s.close()
        sys.stdin, sys.stdout, sys.stderr = saved
        for s, fd in zip(streams, saved_fds, strict=True):
            os.dup2(fd, s.fd)
            os.close(fd)
            s.file.seek(0)
            with io.TextIOWrapper(s.file, encoding="utf-8", newline=None) as text:  # as text=True reads a pipe
                s.text = text.read()


def _forget_test_modules(before: set[str]) -> None:
    """Drop the modules this call imported from the tests or a test's folder: a process would import them afresh
    (test plugins read the environment at import time, and a test's folder may hold a module of a common name)."""
    for name in set(sys.modules) - before:
        where = getattr(sys.modules.get(name), "__file__", None)
        if where is None:
            continue
        path = str(Path(where).resolve())
        if path.startswith(str(TESTS)) or not (path.startswith(str(ROOT)) or path.startswith(_KEPT)):
            del sys.modules[name]
