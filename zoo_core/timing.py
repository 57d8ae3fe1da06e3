"""Stage timing in one place: a wrapper around every stage hook, whichever plugin answers it."""

from __future__ import annotations

import time
from typing import Any, Generator

from . import hookimpl


class StageTimer:
    """Records how long each stage hook took, in seconds, in call order (``seconds["compile"]``)."""

    plugin_name = "builtin:timing"

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def _timed(self, stage: str) -> Generator[None, Any, Any]:
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            self.seconds.setdefault(stage, []).append(time.perf_counter() - start)

    @hookimpl(wrapper=True)
    def zoo_export(self) -> Generator[None, Any, Any]:
        return (yield from self._timed("export"))

    @hookimpl(wrapper=True)
    def zoo_compile(self) -> Generator[None, Any, Any]:
        return (yield from self._timed("compile"))

    @hookimpl(wrapper=True)
    def zoo_infer(self) -> Generator[None, Any, Any]:
        return (yield from self._timed("open_runner"))

    def snapshot(self) -> dict[str, list[float]]:
        return {k: [round(s, 4) for s in v] for k, v in self.seconds.items()}
