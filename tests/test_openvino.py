"""The OpenVINO backend's own behaviours (the shared ones are in tests/test_backend_suite.py): the IR is cached and
reused, INT8 through NNCF gives a quantized IR that agrees with FP32, --mode/--streams are recorded and refused when
bad, and the backend says how to install it when openvino is missing."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from test_bad_inputs import one_error
from test_backend_suite import tiny_selfconsistent
from zoo_core.app import Zoo
from zoo_core.backends import openvino as backend
from zoo_core.errors import ZooError
from zoo_core.export import sample_input
from zoo_core.precision import Calibration
from zoo_core.runtime import COMPILED_FILE, load_compiled
from zoo_core.testing import preprocess

pytest.importorskip("openvino", reason="openvino does not import: pip install 'zoo[openvino]'")

MODEL, INPUT = "resnest-tiny", "actual_input_1"
RUN = ("run", MODEL, "--backend", "openvino", "--weights", "random", "--warmup", "0", "--iterations", "1")


def compiled_folders(cache: Path) -> list[Path]:
    return sorted(p.parent for p in (cache / "compile").glob(f"*/{COMPILED_FILE}"))


def element_types(xml: Path) -> set[str]:
    """The element types of the IR's constants (its weights)."""
    return {layer.find("data").get("element_type") for layer in ET.parse(xml).getroot().iter("layer")
            if layer.get("type") == "Const"}


def layer_types(xml: Path) -> list[str]:
    return [layer.get("type") for layer in ET.parse(xml).getroot().iter("layer")]


def test_the_ir_is_cached_and_reused(zoo_cli, tmp_path: Path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    first = zoo_cli(*RUN, "--bs", "2", "--out", str(tmp_path / "a"), env=env)
    assert first.code == 0, first
    assert "compile for openvino at batch 2 (built)" in first.stderr
    (folder,) = compiled_folders(tmp_path / "cache")
    compiled = load_compiled(folder)
    assert compiled.path == folder / backend.IR_FILE and (folder / "model.bin").is_file()
    types = element_types(compiled.path)  # f32 weights (and i64 shapes): no FP16 compression of the FP32 weights
    assert "f32" in types and "f16" not in types, types
    assert compiled.extra["mode"] == "latency" and compiled.extra["streams"] is None
    ir = (folder / "model.bin").stat().st_mtime_ns
    second = zoo_cli(*RUN, "--bs", "2", "--out", str(tmp_path / "b"), env=env)
    assert second.code == 0, second
    assert "compile for openvino at batch 2 (cached)" in second.stderr
    assert compiled_folders(tmp_path / "cache") == [folder] and (folder / "model.bin").stat().st_mtime_ns == ir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return tiny_selfconsistent(tmp_path_factory)


def test_int8_through_nncf_is_a_quantized_ir_that_agrees_with_fp32(zoo_cli, dataset, tmp_path, capsys) -> None:
    onnx = tmp_path / "tiny.onnx"  # the simplified model at batch 2, with the dataset's weights
    exported = zoo_cli("export", MODEL, "--bs", "2", "-o", str(onnx), "--weights", str(dataset.weights))
    assert exported.code == 0, exported
    zoo = Zoo.create()
    model = zoo.registry.model(MODEL)
    images = np.stack([preprocess(zoo, model, dataset.data / f"{stem}.JPEG") for stem in dataset.labels])
    calibration = Calibration.from_array(images, tmp_path / "calib", INPUT, method="minmax")
    (tmp_path / "quantize").mkdir()  # the runner's empty artifact folder
    capsys.readouterr()
    quantized = backend.zoo_quantize(onnx_path=onnx, batch_size=2, precision="int8", calibration=calibration,
                                     workdir=tmp_path / "quantize")
    assert capsys.readouterr().out == ""  # NNCF's progress bars and log lines went to its log file, not stdout
    assert quantized == tmp_path / "quantize" / backend.QUANTIZED_FILE
    assert "Statistics collection" in (tmp_path / "quantize" / backend.NNCF_LOG).read_text()
    assert layer_types(quantized).count("FakeQuantize") >= 10  # every convolution's input and weights

    spec = zoo.registry.backend("openvino")
    options = zoo_options(zoo)
    top1 = {}
    for precision, source in (("fp32", onnx), ("int8", quantized)):
        (tmp_path / precision).mkdir()
        compiled = backend.zoo_compile(backend=spec, model=model, onnx_path=source, batch_size=2,
                                       workdir=tmp_path / precision, options=options, precision=precision)
        assert compiled.extra["precision"] == precision
        with backend.zoo_infer(compiled, options) as runner:
            outputs = [runner.infer({INPUT: batch})[0] for batch in calibration.batches(2)]
        top1[precision] = np.concatenate(outputs).argmax(1)
    assert len(top1["int8"]) == 2 * (len(images) // 2)
    assert (top1["fp32"] == np.array(list(dataset.labels.values()))[: len(top1["fp32"])]).all()  # fp32: the oracle
    agreement = float((top1["int8"] == top1["fp32"]).mean())
    assert agreement >= 0.8, agreement  # measured 20 of 22 (0.91): minmax on 24 images, margins >= 0.065


def zoo_options(zoo: Zoo, **backend_options: object):
    from zoo_core.specs import resolve_options

    return resolve_options(zoo.registry.model(MODEL), {"weights": "random", "backend": "openvino", "threads": 1,
                                                       "backend_options": backend_options})


def test_quantize_says_how_to_install_nncf_when_it_is_missing(monkeypatch, tmp_path) -> None:
    calibration = Calibration.from_array(np.zeros((2, 3, 64, 64)), tmp_path, INPUT)
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError
    with pytest.raises(ZooError) as raised:
        backend.zoo_quantize(onnx_path=tmp_path / "x.onnx", batch_size=2, precision="int8", calibration=calibration,
                             workdir=tmp_path)
    assert raised.value.message.startswith("backend openvino quantizes to int8 with NNCF, which does not import")
    assert raised.value.note == "pip install 'zoo[openvino]'"


@pytest.mark.parametrize(("bs", "streams"), [(4, 2), (3, 2), (2, 4)])
def test_throughput_mode_splits_each_batch_across_streams_and_keeps_the_outputs(bs, streams, tmp_path) -> None:
    zoo = Zoo.create()
    model = zoo.registry.model(MODEL)
    from zoo_core.runner import prepare

    outputs = {}
    for mode in ("latency", "throughput"):
        options = zoo_options(zoo, **({"streams": streams} if mode == "throughput" else {}))
        options = options.with_(batch_sizes=(bs,))
        compiled = prepare(zoo, options).compiled[bs]
        assert (compiled.extra["mode"], compiled.extra["streams"]) == (mode, streams if mode == "throughput" else None)
        with zoo.open_runner(compiled, model, options) as runner:
            if mode == "throughput":
                per_request, requests = backend.split(bs, streams)
                assert runner.requests == requests and per_request * requests >= bs
                assert runner.model.input(INPUT).get_shape()[0] == per_request  # really split, not one request
            outputs[mode] = runner.infer({INPUT: sample_input(model, bs, seed=5)})[0]
    assert outputs["throughput"].shape == (bs, 10)
    np.testing.assert_allclose(outputs["throughput"], outputs["latency"], rtol=0, atol=1e-5)


def test_the_mode_and_streams_are_recorded(zoo_cli, tmp_path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    result = zoo_cli(*RUN, "--bs", "4", "--streams", "2", "--json", "--out", str(tmp_path / "out"), env=env)
    assert result.code == 0, result
    (folder,) = compiled_folders(tmp_path / "cache")
    extra = json.loads((folder / COMPILED_FILE).read_text())["extra"]
    assert (extra["mode"], extra["streams"], extra["precision"]) == ("throughput", 2, "fp32")
    assert {k: result.json()["measurement"][k] for k in ("mode", "streams")} == {"mode": "throughput", "streams": 2}
    assert "throughput mode (2 streams)" in zoo_cli(*RUN, "--bs", "4", "--streams", "2", env=env).stdout
    result = zoo_cli(*RUN, "--bs", "4", "--mode", "throughput", "--json", "--out", str(tmp_path / "out2"), env=env)
    assert result.code == 0, result
    chosen = [load_compiled(f).extra for f in compiled_folders(tmp_path / "cache") if f != folder]
    assert [e["mode"] for e in chosen] == ["throughput"] and chosen[0]["streams"] >= 1  # OpenVINO's choice


@pytest.mark.parametrize(("flags", "error", "note"), [
    (("--mode", "fast"), "Error: --mode: 'fast' is not a mode of backend openvino",
     "Note: write --mode latency (one request at a time) or --mode throughput"),
    (("--streams", "0"), "Error: --streams: 0 must be at least 1", "Note: write e.g. --streams 2"),
    (("--streams", "two"), "Error: --streams: 'two' is not a whole number", "Note: write e.g. --streams 2"),
    (("--mode", "latency", "--streams", "2"),
     "Error: --streams 2 asks for parallel requests, and --mode latency runs one at a time",
     "Note: drop --streams, or write --mode throughput --streams N"),
])
def test_a_bad_mode_or_streams_is_refused(zoo_cli, flags, error, note) -> None:
    result = zoo_cli(*RUN, "--bs", "2", *flags)
    assert one_error(result, 2) == (error, note)
    assert "export" not in result.stderr  # before any work


def test_streams_is_refused_on_another_backend(zoo_cli) -> None:
    result = zoo_cli("run", MODEL, "--backend", "onnxruntime", "--weights", "random", "--streams", "2")
    error, _ = one_error(result, 2)
    assert error.startswith("Error: --streams is an option of backend openvino"), error


def test_unavailable_without_openvino_says_how_to_install_it(zoo_cli, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: importlib finds no spec
    spec = Zoo.create().registry.backends["openvino"]
    assert not spec.available
    assert spec.unavailable_reason == "openvino is not installed (pip install 'zoo[openvino]')"
    error, note = one_error(zoo_cli(*RUN, "--bs", "2"), 3)
    assert "openvino" in error and "pip install 'zoo[openvino]'" in error + note, (error, note)


def test_zoo_run_int8_on_openvino_end_to_end(zoo_cli, dataset, tmp_path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    result = zoo_cli("run", MODEL, "--backend", "openvino", "--bs", "2", "--data", str(dataset.data), "--weights",
                     str(dataset.weights), "--warmup", "0", "--iterations", "1", "--precision", "fp32,int8", "--json",
                     "--out", str(tmp_path / "out"), env=env)
    assert result.code == 0, result
    assert "quantize to int8 for openvino at batch 2 (minmax) (built)" in result.stderr
    data = result.json()
    fp32, int8 = data["results"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert (fp32["top1"], fp32["images"], int8["images"]) == (1.0, len(dataset.labels), len(dataset.labels))
    assert int8["agreement"] >= 0.8, int8  # measured 21 of 23 (0.91), calibrated on the same 23 images
    assert data["precision"]["calibration"]["method"] == "minmax"
    quantized = [f for f in compiled_folders(tmp_path / "cache") if load_compiled(f).extra["precision"] == "int8"]
    assert len(quantized) == 1 and "FakeQuantize" in layer_types(load_compiled(quantized[0]).path)


def test_a_broken_openvino_install_is_one_line_with_the_install_note(zoo_cli, monkeypatch) -> None:
    import importlib.machinery
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError ...
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: importlib.machinery.ModuleSpec(name, None)
                        if name == "openvino" else find_spec(name, *args))
    error, note = one_error(zoo_cli(*RUN, "--bs", "2"), 3)  # ... while registration finds it
    assert error.startswith("Error: backend openvino: openvino does not import (") and \
        note == "Note: pip install 'zoo[openvino]'", (error, note)
