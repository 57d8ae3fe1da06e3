"""One suite of backend behaviours, run on every backend that can run here: onnxruntime, torch, openvino (skipped,
with its reason, only when openvino does not import) and ascend on the fakes (tests/fakes, compiled in float32).

Each backend compiles resnest-tiny at batch 2; its outputs agree with ONNX Runtime's within the backend's
tolerance; a timed run gives a valid results row; an accuracy run on a small self-consistent dataset (labels that
are the model's own predictions, each with a clear margin: tests/accuracy_data.py) scores what ONNX Runtime scores;
a batch of the wrong shape is refused in one line.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from accuracy_data import SelfConsistent, make_selfconsistent_dataset
from zoo_core.app import Zoo
from zoo_core.export import sample_input
from zoo_core.runner import prepare
from zoo_core.runtime import infer_batches
from zoo_core.specs import resolve_options

MODEL, BATCH, INPUT = "resnest-tiny", 2, "actual_input_1"


@dataclass(frozen=True)
class Case:
    """A backend, how the suite runs it, and how far its outputs may be from ONNX Runtime's."""

    name: str
    atol: float  # max |backend - onnxruntime|, over max(1, max |onnxruntime|)
    options: Mapping[str, str] = field(default_factory=dict)  # backend options, by key
    needs: str = ""  # a module that must import, else the case is skipped with the install line
    fakes: bool = False  # the fake Ascend tools on PATH

    def flags(self) -> list[str]:
        return [f"--{key.replace('_', '-')}={value}" for key, value in self.options.items()]


CASES = (
    Case("onnxruntime", 1e-6),
    Case("torch", 1e-4),  # eager: other kernels than ONNX Runtime's, measured ~1e-7 on resnest-tiny
    Case("openvino", 1e-4, needs="openvino"),  # f32 inference precision, measured ~6e-8
    Case("ascend", 1e-5, {"precision_mode": "force_fp32"}, fakes=True),  # the fakes run the ONNX in float32
)


@pytest.fixture(params=[pytest.param(c, id=c.name) for c in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    case: Case = request.param
    if case.needs:
        pytest.importorskip(case.needs, reason=f"{case.needs} does not import: pip install 'zoo[{case.needs}]'")
    if case.fakes:
        from fakes.env import PYTHON, fake_ascend_env

        for key, value in fake_ascend_env(os.environ).items():
            monkeypatch.setenv(key, value)
        monkeypatch.syspath_prepend(str(PYTHON))
    yield case
    for name in [m for m in sys.modules if m == "fake_om" or m.split(".")[0] == "ais_bench"]:
        del sys.modules[name]


def options_for(zoo: Zoo, backend: str, backend_options: Mapping[str, str] = {}, **flags: Any) -> Any:
    values = {"weights": "random", "warmup": 0, "iterations": 1, "batch_sizes": (BATCH,), "backend": backend,
              "backend_options": backend_options, **flags}
    return resolve_options(zoo.registry.model(MODEL), values)


def run_backend(backend: str, samples: np.ndarray, backend_options: Mapping[str, str] = {}) -> np.ndarray:
    zoo = Zoo.create()
    options = options_for(zoo, backend, backend_options)
    prepared = prepare(zoo, options)
    compiled = prepared.compiled[BATCH]
    assert (compiled.backend, compiled.batch_size) == (backend, BATCH)
    assert Path(compiled.path).is_file()
    with zoo.open_runner(compiled, prepared.model, options) as runner:
        return infer_batches(runner, {INPUT: samples})[0]


def test_compiles_at_batch_2_and_agrees_with_onnxruntime(case: Case) -> None:
    samples = sample_input(Zoo.create().registry.model(MODEL), 5, seed=3)  # the third batch is padded
    expected = run_backend("onnxruntime", samples)
    actual = run_backend(case.name, samples, case.options)
    assert actual.shape == expected.shape == (5, 10)
    assert np.isfinite(actual).all()
    error = float(np.abs(actual - expected).max()) / max(1.0, float(np.abs(expected).max()))
    assert error <= case.atol, f"{case.name}: max |{case.name} - onnxruntime| = {error:.3g} > {case.atol:g}"


def test_a_timed_run_gives_a_valid_results_row(case: Case, zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", MODEL, "--backend", case.name, *case.flags(), "--bs", str(BATCH), "--weights", "random",
                     "--warmup", "1", "--iterations", "3", "--json", "--out", str(tmp_path / "out"))
    assert result.code == 0, result
    data = result.json()
    assert (data["backend"], data["model"]) == (case.name, MODEL)
    (row,) = data["results"]
    assert (row["batch_size"], row["timed_batches"]) == (BATCH, 3)
    assert math.isfinite(row["throughput_e2e"]) and row["throughput_e2e"] > 0
    assert row["throughput_e2e"] == pytest.approx(1000.0 * BATCH / row["latency_e2e_ms"]["mean"], rel=1e-9)
    latency = row["latency_e2e_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert row["top1"] is None and row["images"] is None  # no --data: performance only


def tiny_selfconsistent(tmp_path_factory: pytest.TempPathFactory) -> SelfConsistent:
    """About 23 JPEGs labelled with resnest-tiny's own predictions (tests/accuracy_data.py), and their weights."""
    with pytest.MonkeyPatch.context() as mp:  # a module fixture runs before `isolated` sets the test plugins
        mp.setenv("ZOO_PLUGINS", "zoo_tiny")
        return make_selfconsistent_dataset(tmp_path_factory.mktemp("selfconsistent"), model=MODEL, count=24,
                                           min_images=12, min_classes=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SelfConsistent:
    return tiny_selfconsistent(tmp_path_factory)


_scored: dict[str, dict[str, Any]] = {}  # backend -> its accuracy on the module's dataset


def accuracy_of(zoo_cli, backend: str, flags: list[str], dataset: SelfConsistent, out: Path) -> dict[str, Any]:
    if backend not in _scored:
        result = zoo_cli("run", MODEL, "--backend", backend, *flags, "--bs", str(BATCH), "--data", str(dataset.data),
                         "--weights", str(dataset.weights), "--warmup", "0", "--iterations", "1", "--json",
                         "--out", str(out))
        assert result.code == 0, result
        _scored[backend] = result.json()["accuracy"]
    return _scored[backend]


def test_an_accuracy_run_scores_what_onnxruntime_scores(case: Case, zoo_cli, dataset, tmp_path: Path) -> None:
    reference = accuracy_of(zoo_cli, "onnxruntime", [], dataset, tmp_path / "onnxruntime")
    # The oracle: the labels are the model's own predictions, so ONNX Runtime scores 1.0 on every image.
    assert (reference["top1"], reference["top5"], reference["images"]) == (1.0, 1.0, len(dataset.labels))
    scored = accuracy_of(zoo_cli, case.name, case.flags(), dataset, tmp_path / case.name)
    assert (scored["top1"], scored["top5"], scored["images"]) == (1.0, 1.0, len(dataset.labels))


def test_a_batch_of_the_wrong_shape_is_refused_in_one_line(case: Case) -> None:
    zoo = Zoo.create()
    options = options_for(zoo, case.name, case.options)
    prepared = prepare(zoo, options)
    with zoo.open_runner(prepared.compiled[BATCH], prepared.model, options) as runner:
        wrong = np.zeros((BATCH + 1, 3, 64, 64), np.float32)
        with pytest.raises(ValueError) as raised:
            runner.infer({INPUT: wrong})
        assert str(raised.value) == f"input '{INPUT}' has shape (3, 3, 64, 64), expected (2, 3, 64, 64)"
        with pytest.raises(ValueError, match=r"^inputs \['x'\] do not match the model's \['actual_input_1'\]$"):
            runner.infer({"x": np.zeros((BATCH, 3, 64, 64), np.float32)})
        runner.infer({INPUT: np.zeros((BATCH, 3, 64, 64), np.float32)})  # and it still runs a right one
