"""zoo_core.testing, the helpers offered to plugin authors: the fake backend's strictness, the generated dataset,
the CLI runner, and the module as a zoo plugin. (Its fixtures run in each plugin skeleton's tests:
tests/test_scaffold.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo_core import hookimpl
from zoo_core.preprocessing import PRESETS, execute
from zoo_core.runtime import InputInfo
from zoo_core.specs import BackendSpec, ModelSpec
from zoo_core.testing import (LABEL_FILE, TINY, FakeBackend, FakeRunner, TinyModel, installed_plugin,
                              load_dataset, make_zoo, preprocess, run_cli, run_model, write_image_dataset)

MODEL = ModelSpec(name="relu", family="relu", factory="x:y", input_names=("actual_input_1",), input_shape=(3,),
                  output_names=("output1",), num_classes=3)


def _relu_onnx(path: Path, batch: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["actual_input_1"], ["output1"])], "relu",
        [helper.make_tensor_value_info("actual_input_1", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("output1", TensorProto.FLOAT, [batch, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


@pytest.fixture
def runner(tmp_path: Path) -> FakeRunner:
    backend = FakeBackend()
    workdir = tmp_path / "work"
    workdir.mkdir()
    onnx_path = _relu_onnx(tmp_path / "m.onnx", 2)
    compiled = backend.zoo_compile(backend=BackendSpec("fake"), model=MODEL, onnx_path=onnx_path,
                                   batch_size=2, workdir=workdir)
    assert compiled.path.parent == workdir and compiled.inputs == (InputInfo("actual_input_1", (2, 3)),)
    return backend.zoo_infer(compiled=compiled)


def test_the_fake_backend_runs_the_onnx_file(runner: FakeRunner) -> None:
    [out] = runner.infer({"actual_input_1": np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.float32)})
    assert out.tolist() == [[0, 2, 0], [4, 0, 6]] and runner.batches == 1


@pytest.mark.parametrize(
    ("feed", "error"),
    [
        ({"actual_input_1": np.zeros((2, 3), np.float64)}, "dtype float64, expected float32"),
        ({"actual_input_1": np.zeros((3, 2), np.float32).T}, "not C-contiguous"),
        ({"actual_input_1": np.zeros((1, 3), np.float32)}, r"shape \(1, 3\), expected \(2, 3\)"),
        ({"x": np.zeros((2, 3), np.float32)}, "do not match"),
    ],
)
def test_the_fake_runner_refuses_what_a_device_would(runner: FakeRunner, feed: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        runner.infer(feed)


def test_the_fake_runner_refuses_a_call_after_close(runner: FakeRunner) -> None:
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.infer({"actual_input_1": np.zeros((2, 3), np.float32)})


def test_the_fake_runner_refuses_a_file_compiled_for_another_batch(tmp_path: Path) -> None:
    backend = FakeBackend()
    onnx_path = _relu_onnx(tmp_path / "m.onnx", 4)
    compiled = backend.zoo_compile(backend=BackendSpec("fake"), model=MODEL, onnx_path=onnx_path,
                                   batch_size=2, workdir=tmp_path)
    with pytest.raises(ValueError, match="declares inputs"):
        backend.zoo_infer(compiled=compiled)


def test_the_fake_backend_is_its_plugins_and_never_the_automatic_choice(tmp_path: Path) -> None:
    zoo = make_zoo(FakeBackend(), cache_dir=tmp_path / "cache")
    spec = zoo.registry.backend("fake")
    assert spec.plugin == FakeBackend.plugin_name and zoo.registry.backend("auto").name != "fake"


def test_load_dataset_preprocess_and_run_model_do_what_a_run_does(tmp_path: Path) -> None:
    """load_dataset asks the kind's plugin, preprocess prepares as a run does (the declaration), run_model runs."""
    import zoo_datasets

    zoo = make_zoo(zoo_datasets, TinyModel(), FakeBackend(), cache_dir=tmp_path / "cache")
    labels = write_image_dataset(tmp_path / "data", count=3, num_classes=10, seed=2)
    dataset = load_dataset(zoo, "imagenet-val", tmp_path / "data", TINY)
    assert {s.path.name: s.label for s in dataset.samples} == labels
    image = tmp_path / "data" / next(iter(labels))
    sample = preprocess(zoo, TINY.name, image, preset="reference")
    assert sample.shape == TINY.input_shape and sample.dtype == np.float32
    assert np.array_equal(sample, execute(PRESETS["reference"], TINY, image))
    (tmp_path / "bad.JPEG").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="does not decode"):
        preprocess(zoo, TINY.name, tmp_path / "bad.JPEG")
    results = run_model(zoo, TINY.name, backend="fake", weights="random", batch_sizes=(2,), iterations=1,
                        warmup=0)
    assert results["backend"] == "fake" and results["results"][0]["throughput"] > 0


def test_installed_plugin_loads_it_as_zoo_does_or_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo_datasets

    assert installed_plugin("datasets") is zoo_datasets
    with pytest.raises(AssertionError, match="no entry point 'not-installed'"):
        installed_plugin("not-installed")
    monkeypatch.setattr(zoo_datasets, "zoo_register_datasets", _raising_registration)
    with pytest.raises(AssertionError, match="zoo reports plugin 'datasets': zoo_register_datasets: .*broken"):
        installed_plugin("datasets")


@hookimpl
def _raising_registration(register) -> None:
    raise RuntimeError("broken")


def test_write_image_dataset(tmp_path: Path) -> None:
    from PIL import Image

    labels = write_image_dataset(tmp_path, count=5, num_classes=3, seed=7)
    assert list(labels) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)]
    assert set(labels.values()) <= {0, 1, 2}
    lines = (tmp_path / LABEL_FILE).read_text().splitlines()
    assert sorted(lines) == sorted(f"{name} {label}" for name, label in labels.items())
    for name in labels:
        with Image.open(tmp_path / name) as image:
            assert image.format == "JPEG"
    assert write_image_dataset(tmp_path / "again", count=5, num_classes=3, seed=7) == labels  # seeded


def test_run_cli_and_the_module_as_a_zoo_plugin() -> None:
    result = run_cli("plugins", "--json", env={"ZOO_PLUGINS": "zoo_core.testing", "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.code == 0, result
    mine = [p for p in result.json()["plugins"] if p["name"] == "zoo_core.testing"]
    assert mine and {"zoo_register_models", "zoo_register_backends"} <= set(mine[0]["hooks"])
    assert "fake" in {b["name"] for b in result.json()["backends"]}
    without = run_cli("list", "--json", env={"ZOO_PLUGINS": None, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert without.code == 0 and without.json() == []  # None removes the variable: no plugin registers a model
