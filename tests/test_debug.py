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
