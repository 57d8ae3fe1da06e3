"""Latency statistics and throughput, by the ais_bench formula ``1000 * batch / mean batch ms``."""

from __future__ import annotations

import math
from typing import Sequence


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, interpolated linearly as numpy's default does."""
    if not sorted_ms:
        return float("nan")
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, min and max of per-batch latencies in milliseconds."""
    values = sorted(ms)
    if not values:
        raise ValueError("no latencies measured")
    return {
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": values[0],
        "max": values[-1],
    }


def throughput(batch_size: int, mean_ms: float) -> float:
    """Images per second: ``1000 * batch_size / mean_ms``."""
    return 1000.0 * batch_size / mean_ms


def windows_agree(window_means: Sequence[float], tolerance: float = 0.10, count: int = 3) -> bool:
    """Whether the last ``count`` windows' mean latencies agree within ``tolerance`` of the smallest."""
    if len(window_means) < count:
        return False
    last = window_means[-count:]
    return (max(last) - min(last)) <= tolerance * min(last)
