"""``zoo debug`` tried as a hostile user (#16): requests it took silently or answered with a traceback."""

from __future__ import annotations

from pathlib import Path

from test_bad_inputs import one_error

TINY = "resnest-tiny"
BASE = ("debug", TINY, "--weights", "random", "--bs", "2", "--backends", "torch,onnxruntime")


def test_out_that_is_a_file_is_one_line_before_any_work(zoo_cli, tmp_path) -> None:
    """--out naming an existing file: before, a FileExistsError traceback after the whole comparison."""
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    result = zoo_cli(*BASE, "--layers", "Flatten", "--out", str(taken))
    one_error(result, 2)
    assert "--out" in result.stderr and "not a folder" in result.stderr
    assert "compile" not in result.stderr  # refused before the work
    assert taken.read_text() == "mine\n"


def test_out_below_a_file_is_one_line(zoo_cli, tmp_path) -> None:
    (tmp_path / "taken").write_text("mine\n")
    result = zoo_cli(*BASE, "--layers", "Flatten", "--out", str(tmp_path / "taken" / "sub"))
    one_error(result, 2)
    assert "not a folder" in result.stderr


def test_group_zero_is_refused(zoo_cli) -> None:
    """--group 0 became the default 48 (``group or GROUP``); every other count below 1 is refused."""
    result = zoo_cli(*BASE, "--group", "0")
    one_error(result, 2)
    assert "--group: 0 must be at least 1" in result.stderr


def test_a_precision_sweep_is_refused(zoo_cli) -> None:
    """--precision fp32,int8 compared fp32 alone, silently (the first of the list)."""
    result = zoo_cli(*BASE, "--precision", "fp32,int8")
    one_error(result, 2)
    assert "zoo debug takes one precision" in result.stderr


def test_int8_on_onnxruntime_exports_at_the_quantizer_opset(zoo_cli, tmp_path: Path) -> None:
    """--precision int8 on ONNX Runtime: the quantizer needs opset 13 and zoo's own export was made at 11, so the
    run stopped with 'leave --onnx out' (no --onnx was given). Both sides export at the raised opset, so the
    reference's tensors are the target's."""
    result = zoo_cli(*BASE, "--precision", "int8", "--calib", "random", "--calib-images", "2", "--layers",
                     "Flatten", "--json", "--out", str(tmp_path / "out"))
    assert result.code == 0, result
    data = result.json()
    assert data["precision"] == "int8" and data["compared"] == 1
    assert data["rows"][0]["tensor"] == "/Flatten_output_0"
    assert data["rows"][0]["max_abs"] > 0  # int8 against fp32: not the same numbers


def test_debug_files_that_cannot_be_written_are_one_zoo_error(tmp_path) -> None:
    """The default folder (zoo-runs/… in the working folder) is not checked before the work: a write that fails
    there was an OSError traceback (NotADirectoryError)."""
    import pytest

    from zoo_core.debug import write_files
    from zoo_core.errors import ZooError

    (tmp_path / "zoo-runs").write_text("a file\n")
    data = {"rows": [], "outputs": []}
    with pytest.raises(ZooError, match="cannot write the debug files to") as caught:
        write_files(data, tmp_path / "zoo-runs" / "run")
    assert caught.value.exit_code == 3


def test_an_onnx_whose_tensors_are_named_otherwise_says_so(zoo_cli, tmp_path) -> None:
    """--onnx: the model's export with every intermediate tensor renamed. The torch reference runs its own export,
    whose graph has none of those names: before, the error blamed the simplified graph for not computing
    'R/conv1/…' and suggested the reference's name, as if the user had misspelled a tensor."""
    import onnx

    exported = tmp_path / "tiny.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "--bs", "2", "-o", str(exported)).code == 0
    model = onnx.load(str(exported))
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        node.output[:] = [o if o in outputs else "R" + o for o in node.output]
        node.input[:] = ["R" + i if i.startswith("/") else i for i in node.input]
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    result = zoo_cli(*BASE, "--onnx", str(tmp_path / "renamed.onnx"))
    one_error(result, 2)
    assert "no tensor of --onnx" in result.stderr and "the reference" in result.stderr
