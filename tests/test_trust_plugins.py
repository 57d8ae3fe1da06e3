"""Plugin mistakes are plugin errors, `--onnx` files are checked, and bad names are refused at registration.

A preprocessing hook that raises on an image that decodes is the plugin's bug (exit 1, the plugin, the hook and
the original traceback), never a bad image that --skip-bad would skip; a sample of another shape or dtype than
the model takes, or no sample at all, stops the run with one line before the export. A user's ONNX file that zoo
cannot use is one line (exit 3), and one with external data works. Through the real command throughout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_bad_inputs import one_error
from zoo_core.errors import EXIT_BUG, EXIT_ENV, EXIT_USAGE
from zoo_core.plugins import name_problem
from zoo_core.testing import write_image_dataset

FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")
TRUST = {"ZOO_PLUGINS": "zoo_tiny,zoo_trust"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    write_image_dataset(folder, count=4)
    return folder


def _no_stage_ran(stderr: str) -> bool:
    """Nothing was exported, simplified, compiled or timed."""
    return not any(word in stderr for word in ("to ONNX", "simplify at", "compile for", "time batch"))


# -------------------------------------------------------------------------
# A preprocessing hook that raises: the plugin's bug, not a bad image
# -------------------------------------------------------------------------


@pytest.mark.parametrize("skip_bad", [(), ("--skip-bad",)], ids=["plain", "skip-bad"])
@pytest.mark.parametrize("trace", [{}, {"ZOO_TRACE_PLUGINS": "1"}], ids=["untraced", "traced"])
def test_plugin_raising_on_first_image_is_a_plugin_error(zoo_cli, data: Path, skip_bad, trace) -> None:
    result = zoo_cli("run", "tiny-raises", "--data", str(data), *FAST, *skip_bad, env={**TRUST, **trace})
    assert result.code == EXIT_BUG, result
    assert result.stdout == "", result
    assert "ValueError: plugin bug while preprocessing ILSVRC2012_val_00000001.JPEG" in result.stderr  # the original
    assert "in _broken_step" in result.stderr  # its traceback, down to the plugin's own frame
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"zoo_core.errors.PluginError: plugin 'zoo_trust' failed in zoo_preprocess on image "
                    f"{data}/ILSVRC2012_val_00000001.JPEG, which decodes: ValueError: plugin bug while "
                    "preprocessing ILSVRC2012_val_00000001.JPEG"), result
    assert "cannot read image" not in result.stderr and "--skip-bad" not in result.stderr
    assert _no_stage_ran(result.stderr), result  # found on the first image, before the export


def test_plugin_raising_in_a_worker_carries_its_traceback(zoo_cli, data: Path, tmp_path: Path) -> None:
    """From the third image on, in the decoding worker processes: --skip-bad skips nothing, no result is written."""
    out = tmp_path / "out"
    result = zoo_cli("run", "tiny-raises-later", "--data", str(data), *FAST, "--skip-bad", "--out", str(out),
                     env=TRUST)
    assert result.code == EXIT_BUG, result
    assert "multiprocessing.pool.RemoteTraceback" in result.stderr  # the worker's traceback, carried back
    assert "in _broken_step" in result.stderr and "ValueError: plugin bug while preprocessing" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"zoo_core.errors.PluginError: plugin 'zoo_trust' failed in zoo_preprocess on image {data}/"), result
    assert not (out / "results.json").exists()


def test_zoo_preprocess_plugin_error(zoo_cli, data: Path, tmp_path: Path) -> None:
    bins = tmp_path / "bins"
    result = zoo_cli("preprocess", "tiny-raises", "--data", str(data), "-o", str(bins), "--skip-bad", env=TRUST)
    assert result.code == EXIT_BUG, result
    assert "in _broken_step" in result.stderr
    assert "PluginError: plugin 'zoo_trust' failed in zoo_preprocess on image" in result.stderr
    assert not list(bins.glob("*.bin"))


def _corrupt_first(data: Path) -> Path:
    first = data / "ILSVRC2012_val_00000001.JPEG"
    first.write_bytes(first.read_bytes()[:300])
    return first


def test_corrupt_image_is_still_a_bad_image(zoo_cli, data: Path) -> None:
    """Without --skip-bad: one line, exit 3, before the export (the first image is checked early)."""
    first = _corrupt_first(data)
    result = zoo_cli("run", "resnest-tiny", "--data", str(data), *FAST)
    error, note = one_error(result, EXIT_ENV)
    assert error.startswith(f"Error: cannot read image {first}: OSError: "), error
    assert note == "Note: remove or replace the file, or pass --skip-bad to count and skip it"
    assert _no_stage_ran(result.stderr), result


def test_corrupt_image_is_skipped_with_skip_bad(zoo_cli, data: Path) -> None:
    _corrupt_first(data)
    result = zoo_cli("run", "resnest-tiny", "--data", str(data), *FAST, "--skip-bad", "--json")
    assert result.code == 0, result
    row = result.json()["results"][0]
    assert row["images"] == 3, row


# -------------------------------------------------------------------------
# A sample that is not what the model takes, or no sample at all
# -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "actual"),
    [pytest.param("tiny-shape", "float32[3, 32, 32]", id="shape"),
     pytest.param("tiny-dtype", "float64[3, 64, 64]", id="dtype")],
)
def test_wrong_sample_stops_before_export(zoo_cli, data: Path, model: str, actual: str) -> None:
    result = zoo_cli("run", model, "--data", str(data), *FAST, env=TRUST)
    error, note = one_error(result, EXIT_BUG)
    assert error == (f"Error: plugin 'zoo_trust' returned a {actual} sample from zoo_preprocess for model "
                     f"{model!r}, preset 'modelzoo' (image ILSVRC2012_val_00000001.JPEG); the model takes "
                     "float32[3, 64, 64]")
    assert note.startswith("Note: a bug in that plugin's preprocessing")
    assert _no_stage_ran(result.stderr), result


def test_wrong_sample_later_stops_the_evaluation(zoo_cli, data: Path, tmp_path: Path) -> None:
    """The first two images are right (the early check passes); the third is caught in the streaming loop."""
    out = tmp_path / "out"
    result = zoo_cli("run", "tiny-shape-later", "--data", str(data), *FAST, "--skip-bad", "--out", str(out),
                     env=TRUST)
    error, _ = one_error(result, EXIT_BUG)
    assert error == ("Error: plugin 'zoo_trust' returned a float32[3, 32, 32] sample from zoo_preprocess for model "
                     "'tiny-shape-later', preset 'modelzoo' (image ILSVRC2012_val_00000003.JPEG); the model takes "
                     "float32[3, 64, 64]")
    assert not (out / "results.json").exists()


def test_zoo_preprocess_writes_no_file_of_the_wrong_size(zoo_cli, data: Path, tmp_path: Path) -> None:
    bins = tmp_path / "bins"
    error, _ = one_error(zoo_cli("preprocess", "tiny-shape", "--data", str(data), "-o", str(bins), env=TRUST),
                         EXIT_BUG)
    assert "returned a float32[3, 32, 32] sample from zoo_preprocess for model 'tiny-shape'" in error
    assert "the model takes float32[3, 64, 64]" in error
    assert not list(bins.glob("*.bin"))


def test_an_undeclared_preset_that_no_hook_prepares_fails_before_export(zoo_cli, data: Path) -> None:
    """The model lists a preset that is no core preset and has no declaration, and its plugin's zoo_preprocess
    answers None for it: the plugin's bug, one line, before anything is exported (and --skip-bad skips nothing)."""
    result = zoo_cli("run", "tiny-nopre", "--data", str(data), *FAST, "--skip-bad", env=TRUST)
    error, note = one_error(result, EXIT_BUG)
    assert error == ("Error: model 'tiny-nopre' lists preprocessing preset 'custom', which is no core preset and "
                     "has no declaration")
    assert note.startswith("Note: its plugin 'zoo_trust' must declare it")
    assert _no_stage_ran(result.stderr), result


# -------------------------------------------------------------------------
# --onnx FILE
# -------------------------------------------------------------------------


def _classifier(seed: int = 0, opset: int = 11) -> onnx.ModelProto:
    """A small valid model with resnest-tiny's declared input and output: pool, flatten, a linear layer."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("actual_input_1", TensorProto.FLOAT, ["batch", 3, 64, 64])
    y = helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["batch", 10])
    weight = numpy_helper.from_array(rng.standard_normal((3, 10)).astype(np.float32), "fc.weight")
    bias = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc.bias")
    nodes = [helper.make_node("GlobalAveragePool", ["actual_input_1"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output1"])]
    graph = helper.make_graph(nodes, "classifier", [x], [y], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _saved(folder: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / name))
    return folder / name


def _empty(d: Path) -> Path:
    (d / "m.onnx").write_bytes(b"")
    return d / "m.onnx"


def _truncated(d: Path) -> Path:
    whole = _saved(d, _classifier()).read_bytes()
    (d / "m.onnx").write_bytes(whole[: len(whole) // 2])
    return d / "m.onnx"


def _text(d: Path) -> Path:
    (d / "m.onnx").write_text("hello, this is not a model\n")
    return d / "m.onnx"


def _no_graph(d: Path) -> Path:
    return _saved(d, onnx.ModelProto(ir_version=8), "m.onnx")


def _input_name(d: Path) -> Path:
    model = _classifier()
    model.graph.input[0].name = "images"
    model.graph.node[0].input[0] = "images"
    return _saved(d, model)


def _input_shape(d: Path) -> Path:
    model = _classifier()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 32
    return _saved(d, model)


def _input_dtype(d: Path) -> Path:
    model = _classifier()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    return _saved(d, model)


def _output_shape(d: Path) -> Path:
    model = _classifier()
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 1000
    return _saved(d, model)


def _opset(d: Path) -> Path:
    model = _classifier()
    model.opset_import[0].version = 999
    return _saved(d, model)


def _ir_version(d: Path) -> Path:
    model = _classifier()
    model.ir_version = 99
    return _saved(d, model)


def _invalid_graph(d: Path) -> Path:
    model = _classifier()
    model.graph.node[2].input[1] = "nowhere"  # an input no node makes and no initializer holds
    return _saved(d, model)


def _unknown_op(d: Path) -> Path:
    """Valid for the onnx checker (a custom domain), but onnxruntime has no such operator."""
    model = _classifier()
    model.graph.node[0].op_type, model.graph.node[0].domain = "Frobnicate", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return _saved(d, model)


def _external(d: Path, location: str) -> Path:
    path = d / "model" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_classifier(), str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    if location != "w.data":  # onnx refuses to write outside the folder: point the file elsewhere by hand
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(path))
    return path


def _external_outside(d: Path) -> Path:
    path = _external(d, "../w.data")
    (path.parent / "w.data").rename(d / "w.data")
    return path


def _external_absolute(d: Path) -> Path:
    path = _external(d, str(d / "model" / "w.data"))
    return path


def _external_missing(d: Path) -> Path:
    path = _external(d, "w.data")
    (path.parent / "w.data").unlink()
    return path


def _external_truncated(d: Path) -> Path:
    path = _external(d, "w.data")
    with open(path.parent / "w.data", "r+b") as fh:
        fh.truncate(20)
    return path


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(_empty, "Error: ONNX file {path} is empty (0 bytes)", id="empty"),
        pytest.param(_truncated, "Error: cannot read {path} as ONNX (truncated, or not an ONNX file): DecodeError",
                     id="truncated"),
        pytest.param(_text, "Error: cannot read {path} as ONNX (truncated, or not an ONNX file): DecodeError",
                     id="text"),
        pytest.param(_no_graph, "Error: {path} is not an ONNX model: it holds no graph", id="no-graph"),
        pytest.param(_input_name, "Error: {path} takes the inputs ['images']; model 'resnest-tiny' takes "
                     "['actual_input_1']", id="input-name"),
        pytest.param(_input_shape, "Error: {path}: input 'actual_input_1' is float32[batch, 3, 32, 64]; model "
                     "'resnest-tiny' takes float32[N, 3, 64, 64]", id="input-shape"),
        pytest.param(_input_dtype, "Error: {path}: input 'actual_input_1' is float64[batch, 3, 64, 64]; model "
                     "'resnest-tiny' takes float32[N, 3, 64, 64]", id="input-dtype"),
        pytest.param(_output_shape, "Error: {path}: output 'output1' is float32[batch, 1000]; model 'resnest-tiny' "
                     "gives [N, 10] (one score per class)", id="output-shape"),
        pytest.param(_opset, "Error: {path} uses opset 999; the installed onnx ", id="opset-999"),
        pytest.param(_ir_version, "Error: {path} has ONNX IR version 99; the installed onnx ", id="ir-version"),
        pytest.param(_invalid_graph, "Error: {path} is not a valid ONNX model for onnx ", id="checker"),
        pytest.param(_unknown_op, "Error: onnxruntime ", id="onnxruntime-cannot-load"),
        pytest.param(_external_outside, "Error: {path}: tensor 'fc.weight' keeps its data in '../w.data', outside "
                     "the model's folder", id="external-outside"),
        pytest.param(_external_absolute, "Error: {path}: tensor 'fc.weight' keeps its data in ",
                     id="external-absolute"),
        pytest.param(_external_missing, "Error: {path}: the external data file 'w.data' of tensor 'fc.weight' is "
                     "missing", id="external-missing"),
        pytest.param(_external_truncated, "Error: {path}: the external data file 'w.data' is 20 bytes; tensor ",
                     id="external-truncated"),
    ],
)
def test_bad_onnx_file(zoo_cli, tmp_path: Path, make, error: str) -> None:
    path = make(tmp_path)
    result = zoo_cli("run", "resnest-tiny", *FAST, "--onnx", str(path))
    got, _ = one_error(result, EXIT_ENV)
    assert got.startswith(error.format(path=path)), got
    assert "simplify at" not in result.stderr and "compile for" not in result.stderr


@pytest.mark.parametrize("make", [_truncated, _input_shape], ids=["truncated", "input-shape"])
def test_bad_onnx_file_in_compare(zoo_cli, tmp_path: Path, make) -> None:
    path = make(tmp_path)
    got, _ = one_error(zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2",
                               "--weights", "random", "--onnx", str(path)), EXIT_ENV)
    assert str(path) in got


def _cached_export(result_stderr: str) -> str:
    line = next(line for line in result_stderr.splitlines() if "as the export of resnest-tiny" in line)
    return "cached" if line.rstrip().endswith("(cached)") else "built"


@pytest.mark.parametrize("location", ["w.data", "data/w.data"])
def test_onnx_with_external_data(zoo_cli, tmp_path: Path, location: str) -> None:
    """The data files are copied beside model.onnx in the cache, and their content is part of the key."""
    path = tmp_path / "mine" / "model.onnx"
    (path.parent / Path(location).parent).mkdir(parents=True, exist_ok=True)
    seed = int.from_bytes(os.urandom(4), "little")  # content this session's cache has not seen
    onnx.save_model(_classifier(seed), str(path), save_as_external_data=True, location=location, size_threshold=0)
    args = ("run", "resnest-tiny", *FAST, "--bs", "2", "--onnx", str(path), "--json")
    first = zoo_cli(*args)
    assert first.code == 0, first
    assert _cached_export(first.stderr) == "built"
    copies = list(Path(os.environ["ZOO_CACHE_DIR"]).glob(f"export/*/{location}"))
    assert any((c.parent.parent if "/" in location else c.parent).joinpath("model.onnx").exists() and
               c.read_bytes() == (path.parent / location).read_bytes() for c in copies)
    again = zoo_cli(*args)
    assert again.code == 0 and _cached_export(again.stderr) == "cached", again
    data = path.parent / location
    changed = bytearray(data.read_bytes())
    changed[0] ^= 0xFF  # other weights, same size, same model.onnx
    data.write_bytes(bytes(changed))
    third = zoo_cli(*args)
    assert third.code == 0 and _cached_export(third.stderr) == "built", third


# -------------------------------------------------------------------------
# Names refused at registration
# -------------------------------------------------------------------------


BAD = ["a/b", "a\\b", "..", "x..y", ".hidden", "two words", "tab\tname", "bell\x07", "esc\x1b[31m", "", "new\nline"]


@pytest.mark.parametrize("name", BAD)
def test_name_problem(name: str) -> None:
    assert name_problem(name)


@pytest.mark.parametrize("name", ["resnest50", "resnet50.a1_in1k", "ViT-B_16", "imagenet-val", "onnxruntime"])
def test_good_names(name: str) -> None:
    assert name_problem(name) == ""


def test_bad_names_are_refused_at_registration(zoo_cli) -> None:
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_badnames"}
    listing = zoo_cli("plugins", "--json", env=env)
    assert listing.code == 0, listing
    problems = [p["error"] for p in listing.json()["plugins"] if p["name"] == "zoo_badnames" and p["error"]]
    for name in BAD:
        assert f"invalid model name {name!r}: " in "\n".join(problems), (name, problems)
    assert "invalid dataset name '../up': it holds a '/'; this one is ignored" in problems
    assert "invalid backend name 'back/slash': it holds a '/'; this one is ignored" in problems
    models = {m["name"] for m in json.loads(zoo_cli("list", "--json", env=env).stdout)}
    assert "tiny-good-name" in models and "resnest-tiny" in models  # the same plugin's good name, and others
    assert not models & set(BAD)
    assert zoo_cli("run", "tiny-good-name", "--dry-run", "--weights", "random", env=env).code == 0
    for name in ("a/b", ".."):
        error, _ = one_error(zoo_cli("run", name, *FAST, env=env), EXIT_USAGE)
        assert error == f"Error: unknown model {name!r}"
