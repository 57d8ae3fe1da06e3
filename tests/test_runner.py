"""The runner: stages through hooks, the artifact cache, the export check, backends agreeing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import zoo_datasets
import zoo_resnest
import zoo_tiny
from zoo_core import hookimpl
from zoo_core.errors import CheckError, ZooError
from zoo_core.export import build_module, export_onnx, sample_input
from zoo_core.progress import Progress
from zoo_core.measure import measure
from zoo_core.runner import Zoo, prepare, run
from zoo_core.specs import ModelSpec, resolve_options
from zoo_core.weights import resolve_weights


class CallCounter:
    """Counts the stage hooks through a wrapper, as a timing or tracing plugin would see them."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _count(self, name: str):
        self.calls[name] = self.calls.get(name, 0) + 1
        return (yield)

    @hookimpl(wrapper=True)
    def zoo_export(self):
        return (yield from self._count("export"))

    @hookimpl(wrapper=True)
    def zoo_compile(self):
        return (yield from self._count("compile"))


def make_zoo(tmp_path: Path, *plugins: object) -> Zoo:
    return Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_datasets, *plugins], cache_dir=tmp_path / "cache")


def options_for(zoo: Zoo, **flags: object):
    flags = {"weights": "random", "warmup": 0, "iterations": 2, **flags}
    return resolve_options(zoo.registry.model(flags.pop("model", "resnest-tiny")), flags)


def test_second_run_redoes_no_export_simplify_or_compile(tmp_path: Path) -> None:
    counter = CallCounter()
    zoo = make_zoo(tmp_path, counter)
    options = options_for(zoo, batch_sizes=(1, 4))
    first = prepare(zoo, options)
    assert counter.calls == {"export": 1, "compile": 2}
    assert [a.cached for a in first.artifacts] == [False] * 5
    second = prepare(zoo, options)
    assert counter.calls == {"export": 1, "compile": 2}  # nothing was built again
    assert [a.cached for a in second.artifacts] == [True] * 5
    assert [a.path for a in second.artifacts] == [a.path for a in first.artifacts]


def test_a_changed_input_rebuilds_only_what_depends_on_it(tmp_path: Path) -> None:
    counter = CallCounter()
    zoo = make_zoo(tmp_path, counter)
    prepare(zoo, options_for(zoo, batch_sizes=(1,)))
    prepare(zoo, options_for(zoo, batch_sizes=(1, 2)))  # a new batch size: one simplify, one compile
    assert counter.calls == {"export": 1, "compile": 2}
    prepare(zoo, options_for(zoo, batch_sizes=(1,), seed=5))  # other weights: everything again
    assert counter.calls == {"export": 2, "compile": 3}


def test_every_artifact_has_a_complete_manifest(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    prepared = prepare(zoo, options_for(zoo, batch_sizes=(2,)))
    for artifact in prepared.artifacts:
        files = {p.name for p in artifact.path.iterdir()} - {"manifest.json"}
        assert set(artifact.manifest["files"]) == files and files
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if ".tmp-" in p.name]
    assert not leftovers


def test_a_failed_build_leaves_no_artifact(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)

    def build(folder: Path) -> None:
        (folder / "half.onnx").write_text("partial")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        zoo.store.get_or_build("export", {"x": 1}, build)
    assert not [p for p in (tmp_path / "cache" / "export").iterdir() if not p.name.endswith(".lock")]
    built = zoo.store.get_or_build("export", {"x": 1}, lambda f: (f / "whole.onnx").write_text("ok"))
    assert not built.cached and (built.path / "whole.onnx").read_text() == "ok"


def test_onnxruntime_and_torch_backends_agree(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    outputs = {}
    for backend in ("onnxruntime", "torch"):
        options = options_for(zoo, backend=backend, batch_sizes=(3,))
        prepared = prepare(zoo, options)
        runner = zoo.open_runner(prepared.compiled[3], prepared.model, options)  # the backend's own plugin
        with runner:
            outputs[backend] = runner.infer({"actual_input_1": sample_input(prepared.model, 3, seed=9)})[0]
    assert outputs["torch"].shape == (3, 10)
    np.testing.assert_allclose(outputs["onnxruntime"], outputs["torch"], atol=1e-5)


def test_runner_rejects_a_wrong_shape(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,))
    prepared = prepare(zoo, options)
    with zoo.open_runner(prepared.compiled[2], prepared.model, options) as runner:
        with pytest.raises(ValueError, match=r"shape \(3, 3, 64, 64\), expected \(2, 3, 64, 64\)"):
            runner.infer({"actual_input_1": sample_input(prepared.model, 3)})


def test_measure_row(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,), iterations=4)
    prepared = prepare(zoo, options)
    row = measure(zoo, prepared.model, prepared.compiled[2], options, Progress())
    assert row["batch_size"] == 2 and row["throughput"] > 0
    assert row["throughput"] == pytest.approx(2000 / row["latency_ms"]["mean"])


def test_weights_from_a_file_are_loaded_and_keyed_by_their_hash(tmp_path: Path) -> None:
    spec = zoo_tiny.TINY
    torch.manual_seed(3)
    module = build_module(spec, resolve_weights(spec, "random", seed=3))
    path = tmp_path / "tiny.pth"
    torch.save({"module." + k: v for k, v in module.state_dict().items()}, path)  # DataParallel-style keys
    ref = resolve_weights(spec, str(path))
    loaded = build_module(spec, ref)
    x = torch.from_numpy(sample_input(spec, 2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))
    zoo = make_zoo(tmp_path)
    results = run(zoo, options_for(zoo, weights=str(path), batch_sizes=(1,)))
    assert results["weights"] == ref.label and ref.label.startswith("sha256:")


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ZooError, match="do not fit model 'resnest-tiny'") as info:
        build_module(zoo_tiny.TINY, resolve_weights(zoo_tiny.TINY, str(path)))
    assert "--weights" in info.value.note


class Noisy(torch.nn.Module):
    """Adds fresh noise on every call: ONNX Runtime cannot reproduce torch's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] + torch.rand(x.shape[0], 10)


NOISY = ModelSpec(name="noisy", family="noisy", factory=f"{__name__}:Noisy", input_shape=(3, 8, 8), num_classes=10)


def test_an_export_beyond_tolerance_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckError, match="differs from PyTorch by"):
        export_onnx(NOISY, resolve_weights(NOISY, "random"), tmp_path / "noisy.onnx", opset=11)
    assert (tmp_path / "export-check.json").exists()


def test_a_bad_dataset_fails_before_any_export(tmp_path: Path) -> None:
    counter = CallCounter()
    zoo = make_zoo(tmp_path, counter)
    (tmp_path / "data").mkdir()
    with pytest.raises(ZooError, match="label file not found"):
        run(zoo, options_for(zoo, data=tmp_path / "data", labels=tmp_path / "nope.txt"))
    assert counter.calls == {}


def test_timing_windows_settle_or_stop_at_the_cap(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,), iterations=None, window=3, agree=0.99, max_seconds=30.0)
    prepared = prepare(zoo, options)
    settled = measure(zoo, prepared.model, prepared.compiled[2], options, Progress())
    # The statistics come from the three windows that agreed (more windows ran if a hiccup got in the way).
    assert settled["stable"] is True and settled["timed_batches"] == 9
    means = settled["devices"][0]["windows_ms"]
    assert len(means) >= 3 and max(means[-3:]) <= 1.99 * min(means[-3:])

    strict = options.with_(agree=1e-12, max_seconds=0.3)  # no two windows' means are ever that close
    capped = measure(zoo, prepared.model, prepared.compiled[2], strict, Progress())
    assert capped["stable"] is False
    assert capped["timed_batches"] == 3 * len(capped["devices"][0]["windows_ms"]) >= 3


def test_a_fixed_count_is_not_judged(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,), iterations=4)
    prepared = prepare(zoo, options)
    row = measure(zoo, prepared.model, prepared.compiled[2], options, Progress())
    assert row["stable"] is None and row["timed_batches"] == 4
