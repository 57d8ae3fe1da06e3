"""ONNX Runtime's int8: static QDQ quantization of the simplified model (per-channel int8 weights, uint8
activations), calibrated on zoo's calibration set; fp16 is not offered on this backend.

The hook is called directly on resnest-tiny (exported at opset 13, simplified at batch 4) with a calibration set of
generated images preprocessed as a run prepares them (``Calibration.from_array``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from zoo_tiny import TINY

from zoo_core.backends import onnxruntime as ort_backend
from zoo_core.errors import EXIT_CHECK, EXIT_ENV, CheckError, ZooError
from zoo_core.precision import Calibration
from zoo_core.specs import ModelSpec, RunOptions

BATCH = 4
INPUT = TINY.input_names[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """resnest-tiny simplified at batch 4, and 16 generated images preprocessed for it."""
    import zoo_tiny

    from zoo_core.export import export_onnx, simplify_onnx
    from zoo_core.testing import make_zoo, preprocess, write_image_dataset
    from zoo_core.weights import resolve_weights

    root = tmp_path_factory.mktemp("tiny-int8")
    export_onnx(TINY, resolve_weights(TINY, "random"), root / "exported.onnx", opset=13)
    (root / "simplified").mkdir()
    simplify_onnx(TINY, root / "exported.onnx", root / "simplified" / "model.onnx", BATCH)
    write_image_dataset(root / "images", count=16, num_classes=10, seed=3)
    zoo = make_zoo(zoo_tiny, cache_dir=root / "cache")
    images = np.stack([preprocess(zoo, TINY, path) for path in sorted((root / "images").glob("*.JPEG"))])
    return root / "simplified" / "model.onnx", images


def quantize(onnx_path: Path, images: np.ndarray, folder: Path, method: str | None = "minmax",
             model: ModelSpec = TINY, batch_size: int = BATCH) -> Path:
    calibration = Calibration.from_array(images, folder / "calibration", model.input_names[0], method=method)
    workdir = folder / "work"
    workdir.mkdir(parents=True)
    out = ort_backend.zoo_quantize(model=model, onnx_path=onnx_path, batch_size=batch_size, precision="int8",
                                   calibration=calibration, workdir=workdir,
                                   options=RunOptions(model=model.name, threads=1))
    assert out is not None and out.parent == workdir
    return out


def outputs(path: Path, images: np.ndarray) -> np.ndarray:
    from zoo_core.export import run_onnx

    return np.concatenate([run_onnx(path, {INPUT: images[i:i + BATCH]})[0] for i in range(0, len(images), BATCH)])


def test_the_spec_offers_fp32_and_int8_three_methods_and_opset_13() -> None:
    from zoo_core.plugins import Registry, get_plugin_manager

    spec = Registry(get_plugin_manager(autoload=False)).backends["onnxruntime"]
    assert spec.precisions == ("fp32", "int8")  # fp32 first: its native precision; no fp16 on the CPU provider
    assert spec.calib_methods == ("minmax", "entropy", "percentile")
    assert spec.quantize_opset == 13


def test_int8_model_is_qdq_with_per_channel_weight_scales(prepared, tmp_path: Path) -> None:
    import onnx

    from zoo_core.export import run_onnx

    simplified, images = prepared
    path = quantize(simplified, images, tmp_path)
    graph = onnx.load(str(path)).graph
    kinds = [node.op_type for node in graph.node]
    assert kinds.count("QuantizeLinear") > 0 and kinds.count("DequantizeLinear") > 0
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    produced_by = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs
    for conv in convs:  # every Conv's weight is an int8 tensor dequantized with one scale per output channel
        dq = produced_by[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        weight, scale = initializers[dq.input[0]], initializers[dq.input[1]]
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],) and weight.shape[0] > 1
        assert {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
    activations = [node for node in graph.node
                   if node.op_type == "QuantizeLinear" and node.input[0] not in initializers]
    assert activations and all(initializers[node.input[2]].dtype == np.uint8 for node in activations)
    # ONNX Runtime takes it (the session fuses the QDQ pairs into int8 kernels)
    assert run_onnx(path, {INPUT: images[:BATCH]})[0].shape == (BATCH, TINY.num_classes)


def test_int8_outputs_agree_with_fp32_on_the_calibration_images(prepared, tmp_path: Path) -> None:
    simplified, images = prepared
    reference, int8 = outputs(simplified, images), outputs(quantize(simplified, images, tmp_path), images)
    difference = np.abs(reference - int8).max()
    # measured: max |difference| 0.0038 with outputs up to 0.13 (2.9 %); the bound leaves room for other kernels
    assert difference <= 0.06 * np.abs(reference).max()
    # top-1 agreement, measured 15 of 16: the one that flips is a near tie in fp32 (its two best logits 0.0007 apart,
    # random weights); every image whose fp32 margin is clear of twice the error keeps its class
    agree = reference.argmax(1) == int8.argmax(1)
    assert agree.mean() >= 14 / 16
    top2 = np.sort(reference, axis=1)[:, -2:]
    assert agree[top2[:, 1] - top2[:, 0] > 2 * difference].all()
    assert not np.array_equal(reference, int8)  # it really computes in int8


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_each_calibration_method_gives_a_model(prepared, tmp_path: Path, method: str) -> None:
    simplified, images = prepared
    path = quantize(simplified, images, tmp_path, method=method)
    ranges = json.loads((path.parent / ort_backend.RANGES_FILE).read_text())
    assert ranges["calibration_method"]["value"].lower().endswith(method)
    int8 = outputs(path, images)
    assert np.isfinite(int8).all() and (int8.argmax(1) == outputs(simplified, images).argmax(1)).mean() >= 0.75


def test_no_method_is_the_backends_first(prepared, tmp_path: Path) -> None:
    simplified, images = prepared
    path = quantize(simplified, images, tmp_path, method=None)
    ranges = json.loads((path.parent / ort_backend.RANGES_FILE).read_text())
    assert ranges["calibration_method"]["value"].lower().endswith("minmax")


def test_another_calibration_set_gives_another_model(prepared, tmp_path: Path) -> None:
    simplified, images = prepared
    first = quantize(simplified, images, tmp_path / "a")
    again = quantize(simplified, images, tmp_path / "b")
    other = quantize(simplified, images * 0.5, tmp_path / "c")
    assert first.read_bytes() == again.read_bytes()  # deterministic: same set, same model
    assert first.read_bytes() != other.read_bytes()


def test_nothing_is_written_outside_the_work_folder(prepared, tmp_path: Path, monkeypatch, capfd) -> None:
    simplified, images = prepared
    system_tmp, cwd = tmp_path / "system-tmp", tmp_path / "cwd"
    system_tmp.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    monkeypatch.chdir(cwd)
    before = sorted(p.name for p in simplified.parent.iterdir())
    capfd.readouterr()
    path = quantize(simplified, images, tmp_path / "q", method="entropy")  # the histogram methods print progress
    assert capfd.readouterr().out == ""  # the quantizer's progress lines go to its log, not stdout (--json)
    assert "Collecting tensor data" in (path.parent / ort_backend.LOG_FILE).read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [ort_backend.QUANTIZED_FILE, ort_backend.RANGES_FILE, ort_backend.LOG_FILE])
    assert list(system_tmp.iterdir()) == [] and list(cwd.iterdir()) == []
    assert sorted(p.name for p in simplified.parent.iterdir()) == before
    assert tempfile.gettempdir() == str(system_tmp)  # the process's temporary folder is put back


def test_a_quantization_ort_fails_is_one_zoo_error(prepared, tmp_path: Path) -> None:
    simplified, images = prepared
    with pytest.raises(ZooError) as info:  # images of another size than the graph's: ORT's session refuses them
        quantize(simplified, images[:, :, :32, :32], tmp_path)
    error = info.value
    assert type(error) is ZooError and error.exit_code == EXIT_ENV
    assert error.message.startswith("ONNX Runtime ") and "could not quantize 'resnest-tiny' at batch 4 to int8" \
        in error.message and "\n" not in error.message and error.note
    assert not (tmp_path / "work" / ort_backend.SCRATCH).exists()


def log_model(path: Path) -> ModelSpec:
    """A convolution then a log: negative values give NaN, in fp32 and in int8 alike."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((2, 3, 1, 1), 1.0, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Log", ["c"], ["y"])], "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, 2, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return ModelSpec(name="log-net", family="test", factory="none:none", input_names=("x",), output_names=("y",),
                     input_shape=(3, 8, 8), num_classes=2)


def test_nan_in_the_int8_outputs_is_one_check_error(tmp_path: Path) -> None:
    model = log_model(tmp_path / "log.onnx")
    images = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    with pytest.raises(CheckError) as info:
        quantize(tmp_path / "log.onnx", images, tmp_path / "q", model=model)
    error = info.value
    assert error.exit_code == EXIT_CHECK and "\n" not in error.message and error.note
    assert error.message.startswith("the int8 model of 'log-net' at batch 4 gives NaN or infinity in output 'y'")


def test_positive_inputs_of_the_same_model_pass(tmp_path: Path) -> None:
    """The same graph on inputs whose log is finite: the check above is about the values, not the graph."""
    model = log_model(tmp_path / "log.onnx")
    images = np.random.default_rng(0).uniform(0.5, 1.0, (8, 3, 8, 8)).astype(np.float32)
    assert quantize(tmp_path / "log.onnx", images, tmp_path / "q", model=model).is_file()



def test_the_compile_stage_saves_the_int8_model_with_int8_kernels(prepared, tmp_path: Path) -> None:
    """zoo_compile (unchanged for int8) saves the session's optimized graph of the QDQ model: ONNX Runtime fuses the
    QDQ pairs into int8 operators, the file reloads, and a runner on it computes what the QDQ model computes."""
    import onnx

    from zoo_core.export import run_onnx
    from zoo_core.plugins import Registry, get_plugin_manager

    simplified, images = prepared
    path = quantize(simplified, images, tmp_path / "q")
    spec = Registry(get_plugin_manager(autoload=False)).backends["onnxruntime"]
    (tmp_path / "compiled").mkdir()
    compiled = ort_backend.zoo_compile(backend=spec, model=TINY, onnx_path=path, batch_size=BATCH,
                                       workdir=tmp_path / "compiled", options=RunOptions(model=TINY.name, threads=1))
    kinds = {node.op_type for node in onnx.load(str(compiled.path)).graph.node}
    assert "QLinearConv" in kinds and "Conv" not in kinds
    runner = ort_backend.OnnxRuntimeRunner(compiled, threads=1)
    batch = np.ascontiguousarray(images[:BATCH])
    np.testing.assert_allclose(runner._infer({INPUT: batch})[0], run_onnx(path, {INPUT: batch})[0], atol=1e-6)
    runner.close()


# -------------------------------------------------------------------------
# Through the zoo command (the runner's precision stage)
# -------------------------------------------------------------------------


def test_a_run_of_fp32_and_int8_gives_a_row_for_each(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "onnxruntime", "--precision", "fp32,int8", "--calib", "random",
                     "--calib-images", "8", "--weights", "random", "--bs", "4", "--warmup", "0", "--iterations", "1",
                     "--out", tmp_path / "out", "--json")
    assert result.code == 0, result
    rows = result.json()["results"]
    assert [(row["precision"], row["batch_size"]) for row in rows] == [("fp32", 4), ("int8", 4)]
    assert all(row["throughput"] > 0 for row in rows)
    assert "quantize to int8 for onnxruntime at batch 4 (minmax)" in result.stderr


def test_fp16_on_onnxruntime_is_one_usage_error(zoo_cli, tmp_path: Path) -> None:
    from test_bad_inputs import one_error

    result = zoo_cli("run", "resnest-tiny", "--backend", "onnxruntime", "--precision", "fp16", "--weights", "random",
                     "--bs", "4", "--warmup", "0", "--iterations", "1", "--out", tmp_path / "out")
    error, _ = one_error(result, 2)
    assert "--precision fp16" in error and "onnxruntime" in error
