"""``zoo debug``: the first tensor where two backends part, layer by layer (the core: zoo_core/debug.py).

The backends' side (returning intermediate tensors, ATC --out_nodes on the fakes) is in test_debug_backends.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from test_bad_inputs import one_error

TINY = "resnest-tiny"


def conv_in_the_middle(path: Path) -> tuple[str, str]:
    """The Conv node half way down the graph: (its weight initializer, its output tensor)."""
    import onnx

    model = onnx.load(str(path))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    node = convs[len(convs) // 2]
    return node.input[1], node.output[0]


def scale_weight(source: Path, target: Path, weight: str, factor: float) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    (init,) = [i for i in model.graph.initializer if i.name == weight]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), weight))
    onnx.save(model, str(target))


def debug_json(zoo_cli, *args: str, env=None) -> dict:
    result = zoo_cli("debug", *args, "--weights", "random", "--json", env=env)
    assert result.code == 0, result
    return result.json()


@pytest.mark.slow
def test_a_changed_weight_in_a_middle_layer_is_named_as_the_first_to_exceed(zoo_cli, tmp_path) -> None:
    """ResNeSt-50, exported; one middle Conv's weight scaled by 1.5 in a copy; the copy (--onnx) against the torch
    reference: the first tensor over the tolerance is that Conv's output, not an earlier one."""
    exported = tmp_path / "resnest50.onnx"
    result = zoo_cli("export", "resnest50", "--weights", "random", "-o", str(exported))
    assert result.code == 0, result
    weight, output = conv_in_the_middle(exported)
    modified = tmp_path / "modified.onnx"
    scale_weight(exported, modified, weight, 1.5)
    out = tmp_path / "debug"
    data = debug_json(zoo_cli, "resnest50", "--backends", "torch,onnxruntime", "--onnx", str(modified),
                      "--out", str(out))
    assert data["mode"] == "layers" and data["reference"].startswith("torch (its ONNX export")
    assert data["compared"] == data["tensors_in_graph"] > 100  # every tensor of the graph
    assert data["first_exceeding"]["tensor"] == output, data["first_exceeding"]
    rows = {r["tensor"]: r for r in data["rows"]}
    before = [r for r in data["rows"] if r["index"] < rows[output]["index"]]
    assert before and all(r["passed"] for r in before)  # everything before it agrees
    assert not all(r["passed"] for r in data["outputs"])  # and the change reaches the logits
    with (out / "debug.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["tensor"] for r in table][: len(data["rows"])] == [r["tensor"] for r in data["rows"]]
    assert json.loads((out / "debug.json").read_text())["first_exceeding"]["tensor"] == output


def test_the_same_model_on_both_sides_has_no_layer_over_the_tolerance(zoo_cli, tmp_path) -> None:
    result = zoo_cli("debug", TINY, "--backends", "torch,onnxruntime", "--weights", "random", "--bs", "2")
    assert result.code == 0, result
    assert "no layer exceeds the tolerance" in result.stdout
    assert "tensor" in result.stdout and "cosine" in result.stdout


def test_a_small_model_with_a_changed_weight_names_it_too(zoo_cli, tmp_path) -> None:
    exported = tmp_path / "tiny.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "-o", str(exported)).code == 0
    weight, output = conv_in_the_middle(exported)
    scale_weight(exported, tmp_path / "modified.onnx", weight, 2.0)
    data = debug_json(zoo_cli, TINY, "--backends", "torch,onnxruntime", "--onnx", str(tmp_path / "modified.onnx"),
                      "--bs", "2", "--group", "7")  # several compiles of 7 marked tensors each
    assert data["first_exceeding"]["tensor"] == output
    assert data["compared"] == data["tensors_in_graph"]


def test_layers_and_every_choose_the_tensors(zoo_cli) -> None:
    every = debug_json(zoo_cli, TINY, "--backends", "torch,onnxruntime", "--bs", "2", "--every", "3")
    assert every["compared"] == every["tensors_in_graph"] // 3
    convs = debug_json(zoo_cli, TINY, "--backends", "torch,onnxruntime", "--bs", "2", "--layers", "^Conv$")
    assert convs["compared"] > 0 and {r["op_type"] for r in convs["rows"]} == {"Conv"}


@pytest.mark.parametrize("args, message", [
    (["--backends", "onnxruntime"], "compare needs at least two backends"),
    (["--backends", "torch,onnxruntime,openvino"], "zoo debug compares two backends, not 3"),
    (["--backends", "torch,onnxruntime", "--layers", "("], "--layers '(' is not a regular expression"),
    (["--backends", "torch,onnxruntime", "--layers", "NoSuchOp"], "no tensor of the graph matches --layers"),
    (["--backends", "torch,onnxruntime", "--every", "0"], "--every: 0 must be at least 1"),
    (["--backends", "torch,onnxruntime", "--atol", "nan"], "--atol and --rtol must be finite"),
])
def test_bad_requests_are_one_line(zoo_cli, args, message) -> None:
    result = zoo_cli("debug", TINY, "--weights", "random", "--bs", "2", *args)
    one_error(result, 2)
    assert message in result.stderr


@pytest.mark.parametrize("target", ["slowq-cpu", "onnxruntime"])
def test_a_target_that_returns_no_tensors_is_bisected_to_the_same_layer(zoo_cli, tmp_path, target) -> None:
    """slowq-cpu (tests/plugins/zoo_slowquant.py) does not declare exposes_tensors: zoo compiles it on the graph
    cut at a tensor, halving; --bisect does the same on a backend that could return them."""
    exported = tmp_path / "tiny.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "-o", str(exported)).code == 0
    weight, output = conv_in_the_middle(exported)
    scale_weight(exported, tmp_path / "modified.onnx", weight, 2.0)
    extra = ["--bisect"] if target == "onnxruntime" else []
    data = debug_json(zoo_cli, TINY, "--backends", f"torch,{target}", "--onnx", str(tmp_path / "modified.onnx"),
                      "--bs", "2", *extra, env={"ZOO_PLUGINS": "zoo_tiny,zoo_slowquant"})
    assert data["mode"] == "bisect"
    assert data["first_exceeding"]["tensor"] == output
    assert data["compared"] <= 2 + data["tensors_in_graph"].bit_length()  # halving, not every tensor


def test_ascend_fp16_error_grows_through_the_network_and_compare_reports_the_agreement(zoo_cli, ascend_env) -> None:
    """On the fakes' float16 emulation (ATC's default force_fp16), against ONNX Runtime fp32: the first Conv carries
    one rounding of its input and weights; the tensors after it carry the roundings of every layer before them, so
    their relative error (||a - b|| / ||b||) is larger, up to the logits. With --precision fp32 (force_fp32) the
    same fakes agree to float32 rounding: the growth is float16's. zoo compare gives the task-level agreement."""
    data = debug_json(zoo_cli, TINY, "--backends", "onnxruntime,ascend", "--bs", "2", "--samples", "8",
                      env=ascend_env)
    errors = [r["rel_l2"] for r in data["rows"]]
    first, later = errors[0], errors[len(errors) // 2 :]
    # Measured here (resnest-tiny, seed 0, 8 samples): the first Conv 3.6e-4, the median of the second half 5.6e-4,
    # the logits 6.2e-4.
    assert data["rows"][0]["op_type"] == "Conv" and 1e-5 < first < 1e-3
    assert np.median(later) > 1.3 * first, (first, np.median(later))
    assert data["outputs"][0]["rel_l2"] > first
    assert all(r["cosine"] > 0.9999 for r in data["rows"])  # float16 rounding, not a wrong layer
    fp32 = debug_json(zoo_cli, TINY, "--backends", "onnxruntime,ascend", "--bs", "2", "--samples", "8",
                      "--precision", "fp32", env=ascend_env)
    assert max(r["rel_l2"] for r in fp32["rows"]) < 1e-5 and fp32["first_exceeding"] is None
    compared = zoo_cli("compare", TINY, "--backends", "onnxruntime,ascend", "--bs", "2", "--weights", "random",
                       "--atol", "1", "--rtol", "1", "--json", env=ascend_env)
    assert compared.code == 0, compared
    (comparison,) = compared.json()["comparisons"]
    assert 0 <= comparison["top1_agreement"] <= 1 and comparison["top5_overlap"] is not None


def test_the_table_is_written_beside_the_runs_by_default(zoo_cli) -> None:
    result = zoo_cli("debug", TINY, "--backends", "torch,onnxruntime", "--weights", "random", "--bs", "2")
    assert result.code == 0, result
    (folder,) = Path("zoo-runs").glob(f"{TINY}-debug-torch-onnxruntime-*")  # the test's own working folder
    assert (folder / "debug.csv").is_file() and json.loads((folder / "debug.json").read_text())["compared"] > 0
    assert f"wrote {folder / 'debug.csv'}" in result.stdout


def test_a_bisected_verdict_says_it_was_bisected_and_the_table_has_the_relative_l2(zoo_cli, tmp_path) -> None:
    exported = tmp_path / "tiny.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "-o", str(exported)).code == 0
    weight, _ = conv_in_the_middle(exported)
    scale_weight(exported, tmp_path / "modified.onnx", weight, 2.0)
    result = zoo_cli("debug", TINY, "--backends", "torch,onnxruntime", "--onnx", str(tmp_path / "modified.onnx"),
                     "--weights", "random", "--bs", "2", "--bisect", "--out", str(tmp_path / "out"))
    assert result.code == 0, result
    assert "(bisected in " in result.stdout and "an earlier tensor may be over too" in result.stdout
    assert "rel L2" in result.stdout


def test_profiling_without_an_output_folder_leaves_no_temporary_folder(tmp_path, monkeypatch) -> None:
    """The Python API's runner without an output folder profiles into a temporary folder, and removes it."""
    import tempfile

    from zoo_core.runner import Zoo, run
    from zoo_core.specs import resolve_options

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    zoo = Zoo.create()
    options = resolve_options(zoo.registry.model(TINY), {"weights": "random", "warmup": 0, "iterations": 1,
                                                         "batch_sizes": (2,), "profile": 2})
    data = run(zoo, options)
    assert data["profile"] and not list(tmp_path.glob("zoo-profile-*"))


def test_data_images_are_the_inputs_and_an_unreadable_one_is_one_line(zoo_cli, tmp_path) -> None:
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "val", count=4)
    data = debug_json(zoo_cli, TINY, "--backends", "torch,onnxruntime", "--bs", "2", "--data", str(tmp_path / "val"),
                      "--samples", "3", "--every", "20")
    assert data["samples"] == 3 and data["first_exceeding"] is None
    first = sorted((tmp_path / "val").glob("*.JPEG"))[0]
    first.write_bytes(b"not a jpeg")
    result = zoo_cli("debug", TINY, "--backends", "torch,onnxruntime", "--weights", "random", "--bs", "2",
                     "--data", str(tmp_path / "val"))
    error, _ = one_error(result, 3)
    assert f"cannot read image {first}" in error
