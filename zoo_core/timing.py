"""Stage timing in one place: the core times each stage it builds, whichever plugin (or the core itself) does it."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


class StageTimer:
    """Records how long each stage took, in seconds, in call order (``seconds["compile"]``): the export (a plugin's
    ``zoo_export`` or the core's generic one), the simplification, the compile and the opening of each runner. A
    stage served from the cache is not built and not timed."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds.setdefault(name, []).append(time.perf_counter() - start)

    def snapshot(self) -> dict[str, list[float]]:
        return {k: [round(s, 4) for s in v] for k, v in self.seconds.items()}
