"""User-facing errors: one line, a Note with what to do, and a documented exit code."""

from __future__ import annotations

# Exit codes, documented in the README. Anything that is not a ZooError is a bug and keeps its traceback (1).
EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2  # a bad flag, an unknown model or backend: the command line is wrong
EXIT_ENV = 3  # the environment or the input data is wrong: missing weights, offline, unavailable backend
EXIT_CHECK = 4  # a verification failed: exported model disagrees with PyTorch, a checksum mismatch
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): timeout, docker stop, Slurm


class ZooError(Exception):
    """A user or environment problem, printed as one line plus a ``Note:`` and never as a traceback.

    Only ``zoo_core.cli`` turns it into an exit code.
    """

    def __init__(self, message: str, note: str | None = None, exit_code: int = EXIT_ENV) -> None:
        super().__init__(message)
        self.message = message
        self.note = note
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(ZooError):
    """The command line asks for something that does not exist or cannot be parsed."""

    def __init__(self, message: str, note: str | None = None) -> None:
        super().__init__(message, note, exit_code=EXIT_USAGE)


class CheckError(ZooError):
    """A verification failed: numbers that must agree do not."""

    def __init__(self, message: str, note: str | None = None) -> None:
        super().__init__(message, note, exit_code=EXIT_CHECK)


class PluginError(Exception):
    """A plugin's own code failed (not the user's input): a bug, reported with the plugin, the hook and the original
    traceback, and exit code 1. Deliberately not a ZooError."""


def first_line(exc: BaseException, *, with_type: bool = True) -> str:
    """An exception as one line for a one-line message: ``Type: first line of its text`` (``Type`` alone when it
    has none); ``with_type=False``: the first line alone (the type's name when there is no text)."""
    lines = str(exc).strip().splitlines()
    if not with_type:
        return lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
