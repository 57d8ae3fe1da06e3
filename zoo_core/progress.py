"""How the runner reports progress: a silent default, and a rich one on stderr for the CLI."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator


class Progress:
    """The silent reporter: the runner's stages and timed loops call these; nothing is shown."""

    interactive = False  # whether downloads may draw their own progress bar

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[Callable[[str], None]]:
        """Wraps one stage (export, simplify, compile); the yielded callable sets its final note."""
        yield lambda note: None

    @contextlib.contextmanager
    def loop(self, description: str, total: int | None) -> Iterator[Callable[[], None]]:
        """Wraps a counted loop (timed batches; ``None``: count unknown); the yielded callable advances it by one."""
        yield lambda: None

    def warn(self, note: str) -> None:
        """Inside a stage or loop: end it with a warning and ``note`` instead of ✓ (it finished, but its result
        is to be doubted, e.g. timings that never settled)."""


class RichProgress(Progress):
    """Spinners for stages and a bar for timed loops, on stderr; one line per finished stage."""

    interactive = True

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._warning: str | None = None

    def warn(self, note: str) -> None:
        self._warning = note

    def _finished(self, description: str, note: str | None = None) -> None:
        """The line a finished stage or loop leaves: ✓, or ⚠ with the warning given inside it."""
        warning, self._warning = self._warning, None
        if warning is not None:
            mark, note = "[yellow]⚠[/]", f"{note}; {warning}" if note else warning
        else:
            mark = "[green]✓[/]"
        self.console.print(f"{mark} {description}" + (f" [dim]({note})[/]" if note else ""), highlight=False)

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[Callable[[str], None]]:
        notes: list[str] = []
        start = time.perf_counter()
        with self.console.status(f"{description} ..."):
            yield notes.append
        seconds = time.perf_counter() - start
        self._finished(description, notes[-1] if notes else f"{seconds:.1f} s")

    @contextlib.contextmanager
    def loop(self, description: str, total: int | None) -> Iterator[Callable[[], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        if not self.console.is_terminal:  # a log file gets the finished line only
            yield lambda: None
            self._finished(description)
            return
        with Bar(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)
        self._finished(description)
