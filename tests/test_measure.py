"""Latency statistics and the ais_bench throughput formula."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_core.measure import latency_stats, throughput


def test_stats_match_numpy() -> None:
    values = list(np.random.default_rng(0).uniform(1, 50, size=37))
    stats = latency_stats(values)
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert stats[name] == pytest.approx(np.percentile(values, q))
    assert stats["mean"] == pytest.approx(np.mean(values))
    assert (stats["min"], stats["max"]) == (min(values), max(values))


def test_throughput_is_the_ais_bench_formula() -> None:
    # ais_bench: throughput 1000*batchsize.mean(1)/NPU_compute_time.mean(0.661): 1512.85
    assert throughput(1, 0.661) == pytest.approx(1512.85, abs=0.01)
    assert throughput(8, 100.0) == 80.0


def test_no_latencies_is_an_error() -> None:
    with pytest.raises(ValueError):
        latency_stats([])


def test_windows_agree_within_the_share_of_the_smallest() -> None:
    from zoo_core.measure import windows_agree

    assert not windows_agree([10.0, 10.0])  # fewer than three windows
    assert windows_agree([50.0, 10.0, 10.5, 11.0])  # the last three: 10% of 10.0 is 1.0
    assert not windows_agree([10.0, 10.5, 11.1])
    assert windows_agree([10.0, 10.5, 11.1], tolerance=0.2)
