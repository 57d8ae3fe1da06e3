"""Numbers that are never silently wrong: NaN and infinity fail every check that compares numbers (export,
simplify, `zoo compare`, the outputs of an accuracy run); results and every `--json` are strict JSON that
validates against the schema; an accuracy run that scored nothing stops; `--device 0,1` on a CPU backend is
refused; a timing that never settled is shown as such wherever its throughput is, and `zoo report --fail-below`
says what it did with it. Through the real command, with real checkpoints and ONNX files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from test_bad_inputs import one_error
from zoo_core.errors import EXIT_CHECK, EXIT_ENV, EXIT_USAGE, CheckError
from zoo_core.testing import IMAGE_NAME, write_image_dataset

FAST = ("--warmup", "0", "--iterations", "1")
# Windows of one batch that must agree within 0.01 % inside 1 ms: the timing never settles.
UNSETTLED = ("--warmup", "0", "--window", "1", "--agree", "0.0001", "--max-seconds", "0.001")


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(name: str):
        raise AssertionError(f"{name} in the JSON output: not JSON")

    return json.loads(text, parse_constant=refuse)


# -------------------------------------------------------------------------
# Real checkpoints and ONNX files of the tiny model
# -------------------------------------------------------------------------


def _state_dict() -> dict:
    from zoo_resnest.model import build_resnest
    from zoo_tiny import TINY

    return build_resnest(**TINY.factory_kwargs).state_dict()


def _onnx_from(state: dict, path: Path) -> Path:
    """The tiny model with ``state`` exported to ONNX with a dynamic batch axis, as `zoo export` would."""
    import torch
    from zoo_resnest.model import build_resnest
    from zoo_tiny import TINY

    module = build_resnest(**TINY.factory_kwargs)
    module.load_state_dict(state)
    module.eval()
    names = {name: {0: "batch"} for name in (*TINY.input_names, *TINY.output_names)}
    torch.onnx.export(module, (torch.zeros(2, *TINY.input_shape),), str(path), input_names=list(TINY.input_names),
                      output_names=list(TINY.output_names), dynamic_axes=names, opset_version=11, dynamo=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """good.pth; nan.pth (one NaN weight); overflow.pth (finite weights whose outputs overflow float32);
    good.onnx; nan.onnx (a NaN in an initializer); dark-inf.onnx (an infinite initializer that the graph adds to
    the logits of dark images only: finite on generated input, infinite on a black image)."""
    import onnx
    import torch
    from onnx import helper, numpy_helper

    folder = tmp_path_factory.mktemp("numbers")
    state = _state_dict()
    torch.save(state, folder / "good.pth")
    nan = {k: v.clone() for k, v in state.items()}
    nan["fc.weight"][0, 0] = float("nan")
    torch.save(nan, folder / "nan.pth")
    fc = state["fc.weight"]
    # Every fc weight positive, up to 1e38: the features (after a ReLU, summing to about 30) overflow float32.
    overflow = {**state, "fc.weight": (fc.double().abs() * (1e38 / fc.abs().max().item())).float()}
    assert all(torch.isfinite(v).all() for v in overflow.values() if v.is_floating_point())
    torch.save(overflow, folder / "overflow.pth")

    good = _onnx_from(state, folder / "good.onnx")
    proto = onnx.load(str(good))
    weight = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).ndim == 2)  # the fc weight
    array = numpy_helper.to_array(weight).copy()
    array[0, 0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(proto, str(folder / "nan.onnx"))

    proto = onnx.load(str(good))
    graph = proto.graph
    x, logits = graph.input[0].name, graph.output[0].name
    for node in graph.node:  # the model's last node now writes "logits", and the added nodes write the output
        node.output[:] = ["logits" if o == logits else o for o in node.output]
    graph.initializer.extend([numpy_helper.from_array(np.array(np.inf, np.float32), "inf"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                              numpy_helper.from_array(np.array(-1.0, np.float32), "dark")])
    graph.node.extend([
        helper.make_node("ReduceMax", [x], ["brightest"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Less", ["brightest", "dark"], ["is_dark"]),
        helper.make_node("Where", ["is_dark", "inf", "zero"], ["shift"]),
        helper.make_node("Unsqueeze", ["shift"], ["shift_column"], axes=[1]),
        helper.make_node("Add", ["logits", "shift_column"], [logits]),
    ])
    onnx.checker.check_model(proto)
    onnx.save(proto, str(folder / "dark-inf.onnx"))
    return {p.name: p for p in folder.iterdir()}


def _dataset_with_black_images(folder: Path, black: tuple[int, ...]) -> Path:
    from PIL import Image

    write_image_dataset(folder, 8)
    for index in black:
        Image.new("RGB", (70, 60)).save(folder / IMAGE_NAME.format(index))
    return folder


# -------------------------------------------------------------------------
# Non-finite numbers fail every check that compares numbers
# -------------------------------------------------------------------------


@pytest.mark.parametrize(("weights", "counts"), [
    pytest.param("nan", "2 of 20 values from PyTorch, 2 of 20 values from ONNX Runtime", id="nan-weight"),
    pytest.param("overflow", "20 of 20 values from PyTorch, 20 of 20 values from ONNX Runtime", id="overflow"),
])
def test_export_stops_on_non_finite_outputs(zoo_cli, tmp_path: Path, files, weights: str, counts: str) -> None:
    path = files[f"{weights}.pth"]
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", str(path), *FAST, "--json",
                                    "--out", str(tmp_path / "o")), EXIT_CHECK)
    assert error == f"Error: exported ONNX of 'resnest-tiny': NaN or infinity in the outputs, {counts}"
    assert note.startswith("Note: the weights hold NaN or infinity, or are so large that the outputs overflow")
    assert not (tmp_path / "o" / "results.json").exists()
    # `zoo export` runs the same check and writes no file.
    error, _ = one_error(zoo_cli("export", "resnest-tiny", "-o", str(tmp_path / "m.onnx"), "--weights", str(path)),
                         EXIT_CHECK)
    assert error.startswith("Error: exported ONNX of 'resnest-tiny': NaN or infinity in the outputs")
    assert not (tmp_path / "m.onnx").exists()


def test_an_onnx_file_holding_nan_stops_at_the_simplify_check(zoo_cli, tmp_path: Path, files) -> None:
    expected = ("Error: simplified ONNX of 'resnest-tiny' at batch 2: NaN or infinity in the outputs, "
                "2 of 20 values from the exported ONNX, 2 of 20 values from the simplified ONNX")
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--onnx", str(files["nan.onnx"]),
                                    "--weights", "random", *FAST, "--out", str(tmp_path / "o")), EXIT_CHECK)
    assert error == expected
    assert note.startswith("Note: the ONNX file's weights hold NaN or infinity")
    error, _ = one_error(zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--onnx",
                                 str(files["nan.onnx"]), "--weights", str(files["good.pth"]), "--json"), EXIT_CHECK)
    assert error == expected


@pytest.mark.parametrize(("weights", "count"), [("nan", 5), ("overflow", 50)])
def test_compare_fails_on_a_non_finite_reference_and_reports_no_tolerance(
        zoo_cli, files, weights: str, count: int) -> None:
    # The ONNX file is sound; the torch backend (the reference) runs the bad checkpoint.
    result = zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2",
                     "--onnx", str(files["good.onnx"]), "--weights", str(files[f"{weights}.pth"]), "--json")
    assert result.code == EXIT_CHECK, result
    data = strict_json(result.stdout)
    assert data["passed"] is False and data["needed_atol"] is None and data["needed_rtol"] is None
    [row] = data["comparisons"]
    assert row["passed"] is False and row["max_abs"] is None
    assert (row["nonfinite"], row["reference_nonfinite"]) == (0, count)
    lines = result.stderr.strip().splitlines()
    assert lines[-2] == (f"Error: onnxruntime differs from torch on {row['output']}: NaN or infinity in the outputs, "
                         f"{count} of 50 values from torch")
    assert lines[-1].startswith("Note: no tolerance covers it")
    assert "Traceback" not in result.stderr


def test_the_same_infinity_on_both_sides_is_not_a_pass() -> None:
    from zoo_core.comparison import output_errors

    # numpy.allclose(inf, inf) is True: the comparison must not be.
    errors = output_errors(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]), atol=1e-4, rtol=1e-3)
    assert not errors.passed
    assert (errors.nonfinite, errors.reference_nonfinite) == (1, 1)
    assert errors.needed_atol is None


def test_an_accuracy_run_stops_on_non_finite_scores(zoo_cli, tmp_path: Path, files) -> None:
    # The ONNX file passes the simplify check on generated input, but adds +inf to the logits of black images.
    data = _dataset_with_black_images(tmp_path / "val", black=(3, 6))
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "4", "--onnx", str(files["dark-inf.onnx"]),
                                    "--weights", "random", *FAST, "--data", str(data), "--workers", "1", "--json",
                                    "--out", str(tmp_path / "o")), EXIT_CHECK)
    assert error == ("Error: the model's outputs hold NaN or infinity for 2 of 8 images "
                     "(first: ILSVRC2012_val_00000003); they cannot be scored")
    assert note.startswith("Note: the weights or the ONNX file hold NaN or infinity")
    assert not (tmp_path / "o" / "results.json").exists()


def test_an_accuracy_run_on_torch_with_nan_weights_stops(zoo_cli, tmp_path: Path, files) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 4)
    error, _ = one_error(zoo_cli("run", "resnest-tiny", "--backend", "torch", "--bs", "2", "--onnx",
                                 str(files["good.onnx"]), "--weights", str(files["nan.pth"]), *FAST, "--data",
                                 str(data), "--workers", "1", "--out", str(tmp_path / "o")), EXIT_CHECK)
    assert error == ("Error: the model's outputs hold NaN or infinity for 4 of 4 images "
                     "(first: ILSVRC2012_val_00000001); they cannot be scored")


# -------------------------------------------------------------------------
# Nothing scored is not a result
# -------------------------------------------------------------------------


def test_an_accuracy_run_that_scored_no_image_is_an_error(zoo_cli, tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 3)
    for image in data.glob("*.JPEG"):
        image.write_bytes(b"not a JPEG")
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST, "--data",
                                    str(data), "--skip-bad", "--workers", "1", "--out", str(tmp_path / "o")), EXIT_ENV)
    assert error.startswith("Error: no image was scored: all 3 images were skipped as unreadable, "
                            "e.g. ILSVRC2012_val_00000001: ")
    assert note == "Note: replace the unreadable images, or point --data at a folder of readable ones"
    assert not (tmp_path / "o" / "results.json").exists()


# -------------------------------------------------------------------------
# Strict JSON, validated
# -------------------------------------------------------------------------


def test_every_json_output_is_strict_json(zoo_cli, tmp_path: Path, files) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 4)
    run = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", str(files["good.pth"]), *FAST, "--data", str(data),
                  "--workers", "1", "--json", "--out", str(tmp_path / "a"))
    assert run.code == 0, run
    results = strict_json(run.stdout)
    assert results["accuracy"]["images"] == 4 and 0 <= results["results"][0]["top1"] <= 1
    assert strict_json((tmp_path / "a" / "results.json").read_text()) == results
    outputs = [
        zoo_cli("export", "resnest-tiny", "-o", str(tmp_path / "m.onnx"), "--weights", str(files["good.pth"]),
                "--json"),
        zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights",
                str(files["good.pth"]), "--json"),
        zoo_cli("report", str(tmp_path / "a"), str(tmp_path / "a"), "--json", "--fail-below", "0.5"),
        zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--dry-run", "--json"),
        zoo_cli("info", "resnest-tiny", "--json"),
    ]
    for result in outputs:
        assert result.code == 0, result
        strict_json(result.stdout)


def test_results_are_validated_and_strict_when_written(tmp_path: Path) -> None:
    from zoo_core.reporting import load_schema  # noqa: F401  # the schema ships in the package
    from zoo_core.runner import write_results

    row = {"batch_size": 2, "throughput": 10.0, "latency_ms": dict.fromkeys(("mean", "p50", "p90", "p99", "min",
                                                                            "max"), 200.0),
           "top1": None, "top5": None, "images": None}
    results = {"schema": 1, "model": "m", "backend": "b", "device": "cpu", "weights": "random", "env": {},
               "results": [row]}
    with pytest.raises(CheckError, match="results do not match the schema: results/0/top1: 1.5 is greater"):
        write_results({**results, "results": [{**row, "top1": 1.5}]}, tmp_path / "bad")
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_results({**results, "export": {"max_abs_diff": math.nan}}, tmp_path / "nan")
    assert not (tmp_path / "bad" / "results.json").exists() and not (tmp_path / "nan" / "results.json").exists()
    assert strict_json(write_results(results, tmp_path / "ok").read_text())["results"] == [row]


def test_zoo_report_refuses_a_results_file_holding_nan(zoo_cli, tmp_path: Path) -> None:
    results = {"schema": 1, "model": "m", "backend": "b", "device": "cpu", "weights": "random", "env": {},
               "results": [{"batch_size": 2, "throughput": 10.0, "top1": math.nan}]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))  # what an older zoo wrote
    error, note = one_error(zoo_cli("report", str(path), str(path)), EXIT_ENV)
    assert error == f"Error: {path} holds NaN, which is not a number and not JSON: its figures cannot be compared"
    assert note.startswith("Note: run it again with this zoo")


# -------------------------------------------------------------------------
# --device 0,1 on a CPU backend
# -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_several_devices_on_a_cpu_backend_are_refused(zoo_cli, tmp_path: Path, backend: str) -> None:
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--backend", backend, "--weights", "random", *FAST,
                                    "--device", "0,1", "--out", str(tmp_path / "o")), EXIT_USAGE)
    assert error == (f"Error: --device 0,1: backend {backend!r} runs on the CPU, where 2 processes would share the "
                     "same cores, so their throughputs cannot be added")
    assert note == "Note: leave --device out (one process uses every core; --threads N sets how many)"


# -------------------------------------------------------------------------
# Timings that never settled
# -------------------------------------------------------------------------


def _table_cells(stdout: str) -> dict[int, list[str]]:
    """The rows of a rich table on stdout, by their first cell (the batch size)."""
    lines = [line for line in stdout.splitlines() if line.startswith("│")]
    rows = ([c.strip() for c in line.strip("│").split("│")] for line in lines)
    return {int(cells[0]): cells[1:] for cells in rows if cells[0].isdigit()}


@pytest.fixture
def two_runs(zoo_cli, tmp_path: Path):
    """A: a fixed --iterations count (stability not judged); B: windows that never settle. Both at batch 2."""
    a = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--warmup", "0", "--iterations", "3",
                "--out", str(tmp_path / "a"))
    assert a.code == 0, a
    b = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *UNSETTLED, "--out", str(tmp_path / "b"))
    assert b.code == 0, b
    return tmp_path / "a", tmp_path / "b", b


def test_a_timing_that_never_settled_is_shown_wherever_its_throughput_is(two_runs) -> None:
    _, b, result = two_runs
    timing = [line for line in result.stderr.splitlines() if "time batch 2" in line]
    assert len(timing) == 1 and timing[0].startswith("⚠ time batch 2: windows of 1 until 3 agree within 0.01%")
    assert "did not settle within --max-seconds 0.001 s: the throughput is unstable" in " ".join(
        result.stderr.split())  # rich may wrap the line
    assert "✓ time batch" not in result.stderr
    cell = _table_cells(result.stdout)[2][0]
    assert cell.endswith(" unstable") and float(cell.split()[0]) > 0
    assert "unstable: the timing of batch 2 did not settle within --max-seconds 0.001 s" in result.stdout
    results = strict_json((b / "results.json").read_text())
    assert results["results"][0]["stable"] is False
    seed_row = (b / "report.md").read_text().splitlines()[6]
    assert seed_row.endswith(" (unstable) |"), seed_row


def test_a_settled_timing_keeps_its_check_mark(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--warmup", "0", "--window", "2",
                     "--agree", "0.99", "--out", str(tmp_path / "o"))
    assert result.code == 0, result
    assert "✓ time batch 2: windows of 2 until 3 agree within 99%" in result.stderr
    assert "unstable" not in result.stdout and "⚠" not in result.stderr


def test_zoo_report_marks_unstable_rows_and_does_not_judge_them_by_default(zoo_cli, two_runs) -> None:
    a, b, _ = two_runs
    shown = zoo_cli("report", str(a), str(b))
    assert shown.code == 0, shown
    cells = _table_cells(shown.stdout)[2]
    assert not cells[0].endswith("unstable") and cells[1].endswith(" unstable")

    # B is far faster or slower than A, who knows: --fail-below 1000 fails every row that is judged.
    skipped = zoo_cli("report", str(a), str(b), "--fail-below", "1000")
    assert skipped.code == 0, skipped
    assert ("not judged by --fail-below: batch 2 (unstable in B: the timing did not settle); "
            "--unstable count judges unstable rows too") in " ".join(skipped.stdout.split())
    as_json = zoo_cli("report", str(a), str(b), "--fail-below", "1000", "--json")
    assert as_json.code == 0, as_json
    assert strict_json(as_json.stdout)["judgement"] == {
        "fail_below": 1000.0, "unstable": "skip", "judged": [], "regressed": [], "regressed_precisions": None,
        "not_judged": [{"batch_size": 2, "reason": "unstable in B: the timing did not settle", "precision": None}]}
    assert "not judged by --fail-below: batch 2" in as_json.stderr

    counted = zoo_cli("report", str(a), str(b), "--fail-below", "1000", "--unstable", "count", "--json")
    assert counted.code == EXIT_CHECK, counted
    assert strict_json(counted.stdout)["judgement"]["regressed"] == [2]
    assert "Error: throughput regressed at batch 2" in counted.stderr
