"""How the runner reports progress: a silent default, and a rich one on stderr for the CLI."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator


class Progress:
    """The silent reporter: the runner's stages and timed loops call these; nothing is shown."""

    interactive = False  # whether downloads may draw their own progress bar

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[Callable[[str], None]]:
        """Wraps one stage (export, simplify, compile); the yielded callable sets its final note."""
        yield lambda note: None

    @contextlib.contextmanager
    def loop(self, description: str, total: int | None, max_seconds: float | None = None
             ) -> Iterator[Callable[[], None]]:
        """Wraps a counted loop (timed batches, images; ``total`` ``None``: count unknown); the yielded callable
        advances it by one. ``max_seconds``: the loop stops by this time (a timing's ``--max-seconds``)."""
        yield lambda: None

    def note(self, note: str) -> None:
        """Inside a loop: what its finished line says in place of the elapsed time (e.g. how many windows a
        timing took, in how many seconds of its cap)."""

    def warn(self, note: str) -> None:
        """Inside a stage or loop: end it with a warning and ``note`` instead of ✓ (it finished, but its result
        is to be doubted, e.g. timings that never settled)."""


def duration(seconds: float) -> str:
    """``41.3 s``, ``4 min 02 s``, ``1 h 05 min``: elapsed time as a person reads it."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def loop_status(description: str, done: int, total: int | None, seconds: float,
                max_seconds: float | None = None) -> str:
    """One line on a loop still running: count, elapsed time, and the ETA where the total is known or the cap."""
    parts = [f"{done}/{total}" if total else f"{done} done", f"{duration(seconds)} elapsed"]
    if total and 0 < done < total:
        parts.append(f"about {duration(seconds * (total - done) / done)} left")
    if max_seconds is not None:
        parts.append(f"stops by --max-seconds {max_seconds:g}")
    return f"{description}: {', '.join(parts)}"


class RichProgress(Progress):
    """Spinners for stages and a bar for loops on a terminal, on stderr; one line per finished stage or loop.
    Where stderr is not a terminal (a CI log, a file), a loop that runs long prints a status line every
    ``heartbeat_seconds`` instead of a bar."""

    interactive = True
    heartbeat_seconds = 60.0

    def __init__(self) -> None:
        from .console import make_console

        self.console = make_console(stderr=True)
        self._warning: str | None = None
        self._note: str | None = None

    def note(self, note: str) -> None:
        self._note = note

    def warn(self, note: str) -> None:
        self._warning = note

    def _finished(self, description: str, note: str | None = None) -> None:
        """The line a finished stage or loop leaves: ✓, or ⚠ with the warning given inside it. Descriptions and
        notes name models, files and errors: they are shown as written, never read as markup."""
        from rich.text import Text

        warning, self._warning = self._warning, None
        if warning is not None:
            mark, note = ("⚠", "yellow"), f"{note}; {warning}" if note else warning
        else:
            mark = ("✓", "green")
        self.console.print(Text.assemble(mark, " ", description, (f" ({note})", "dim") if note else ""),
                           highlight=False)

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[Callable[[str], None]]:
        from rich.markup import escape

        notes: list[str] = []
        start = time.perf_counter()
        with self.console.status(escape(f"{description} ...")):
            yield notes.append
        seconds = time.perf_counter() - start
        self._finished(description, notes[-1] if notes else duration(seconds))

    @contextlib.contextmanager
    def loop(self, description: str, total: int | None, max_seconds: float | None = None
             ) -> Iterator[Callable[[], None]]:
        self._note = None
        start = time.perf_counter()
        if self.console.is_terminal:
            with self._bar(total, max_seconds) as bar:
                task = bar.add_task(description, total=total)
                yield lambda: bar.advance(task)
        else:  # a log file gets a status line now and then, and the finished line
            yield self._heartbeat(description, total, max_seconds, start)
        note, self._note = self._note, None
        self._finished(description, note or duration(time.perf_counter() - start))

    def _heartbeat(self, description: str, total: int | None, max_seconds: float | None,
                   start: float) -> Callable[[], None]:
        done, due = 0, start + self.heartbeat_seconds

        def advance() -> None:
            nonlocal done, due
            done += 1
            now = time.perf_counter()
            if now >= due:
                due = now + self.heartbeat_seconds
                self.console.print("… " + loop_status(description, done, total, now - start, max_seconds),
                                   markup=False, highlight=False)
        return advance

    def _bar(self, total: int | None, max_seconds: float | None) -> Any:
        """A transient bar: count (of the total), elapsed time, then the ETA where the total is known, else the cap."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar
        from rich.table import Column

        # on a narrow terminal the description wraps; the numbers after it stay whole
        columns: list[Any] = [TextColumn("{task.description}", markup=False, table_column=Column(overflow="fold")),
                              BarColumn(bar_width=20)]
        if total is not None:
            columns += [MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        else:
            columns += [TextColumn("{task.completed} done"), TimeElapsedColumn()]
        if max_seconds is not None:
            columns.append(TextColumn(f"(stops by --max-seconds {max_seconds:g})", markup=False))
        return Bar(*columns, console=self.console, transient=True)
