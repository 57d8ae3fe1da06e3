"""End to end on the real ResNeSt-50 architecture (seeded random weights): seconds each."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_resnest50_sweep_json_then_cached(zoo_cli, tmp_path) -> None:
    args = ("run", "resnest50", "--bs", "1,8", "--weights", "random", "--warmup", "1", "--iterations", "2", "--json")
    cache = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}  # its own cache: other tests export resnest50 too
    first = zoo_cli(*args, "--out", str(tmp_path / "a"), env=cache)
    assert first.code == 0, first
    data = first.json()
    assert data["model"] == "resnest50" and data["weights"] == "random"
    assert [r["batch_size"] for r in data["results"]] == [1, 8]
    assert all(r["throughput"] > 0 for r in data["results"])
    assert data["export"]["opset"] == 11 and data["export"]["max_abs_diff"] < 1e-4
    assert first.stderr.count("(built") == 5  # export, then simplify and compile per batch size

    second = zoo_cli(*args, "--out", str(tmp_path / "b"), env=cache)
    assert second.code == 0, second
    assert second.stderr.count("(cached") == 5 and "(built" not in second.stderr


def test_resnest50_on_the_torch_reference_backend(zoo_cli, tmp_path) -> None:
    result = zoo_cli("run", "resnest50", "--bs", "2", "--backend", "torch", "--weights", "random",
                     "--warmup", "0", "--iterations", "1", "--json", "--out", str(tmp_path / "t"))
    assert result.code == 0, result
    assert result.json()["backend"] == "torch"
