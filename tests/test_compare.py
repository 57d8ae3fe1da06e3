"""``zoo compare``: the tolerance math, backends that agree, a perturbed ONNX caught, and bad requests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from zoo_core.comparison import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ceil_sig,
    compare,
    output_errors,
    parse_backends,
    raise_if_failed,
    reference_backend,
)
from zoo_core.errors import EXIT_CHECK, EXIT_ENV, EXIT_USAGE, CheckError, UsageError
from zoo_core.runner import Zoo
from zoo_core.specs import BackendSpec, resolve_options

TINY = ("resnest-tiny", "--bs", "2", "--weights", "random")


# ---------------------------------------------------------------- the tolerance math


def test_errors_and_needed_tolerances_are_exact_on_known_arrays() -> None:
    expected = np.array([2.0, 4.0, -8.0])
    actual = np.array([2.5, 4.0, -8.0])  # off by 0.5 where the reference is 2
    errors = output_errors(actual, expected, atol=0.25, rtol=0.125)
    assert errors.max_abs == 0.5
    assert errors.max_rel == 0.25  # 0.5 / 2
    assert errors.needed_atol == 0.25  # 0.5 - 0.125 * 2
    assert errors.needed_rtol == 0.125  # (0.5 - 0.25) / 2
    assert errors.passed  # 0.5 <= 0.25 + 0.125 * 2, exactly at the edge
    assert not output_errors(actual, expected, atol=0.25, rtol=0.0625).passed
    looser = output_errors(actual, expected, atol=0.5, rtol=0.0)
    assert looser.needed_atol == 0.5 and looser.needed_rtol == 0.0 and looser.passed


def test_needed_tolerances_are_the_edge_of_allclose_on_random_arrays() -> None:
    rng = np.random.default_rng(3)
    expected = rng.standard_normal((7, 10)).astype(np.float32)
    actual = expected + rng.standard_normal((7, 10)).astype(np.float32) * 1e-3
    errors = output_errors(actual, expected, DEFAULT_ATOL, DEFAULT_RTOL)
    a, b = actual.astype(np.float64), expected.astype(np.float64)
    assert errors.max_abs == pytest.approx(np.abs(a - b).max())
    assert not errors.passed and errors.needed_atol > DEFAULT_ATOL and errors.needed_rtol > DEFAULT_RTOL
    assert np.allclose(a, b, rtol=DEFAULT_RTOL, atol=errors.needed_atol * (1 + 1e-9))
    assert not np.allclose(a, b, rtol=DEFAULT_RTOL, atol=errors.needed_atol * (1 - 1e-6))
    assert np.allclose(a, b, rtol=errors.needed_rtol * (1 + 1e-9), atol=DEFAULT_ATOL)
    assert not np.allclose(a, b, rtol=errors.needed_rtol * (1 - 1e-6), atol=DEFAULT_ATOL)


def test_a_difference_where_the_reference_is_zero_needs_atol_no_rtol_covers_it() -> None:
    errors = output_errors(np.array([1e-3, 1.0]), np.array([0.0, 1.0]), atol=1e-4, rtol=1e-3)
    assert errors.needed_atol == 1e-3 and errors.needed_rtol is None and not errors.passed
    assert errors.max_rel > 1e300  # divided by the smallest positive float, not by zero
    within = output_errors(np.array([5e-5]), np.array([0.0]), atol=1e-4, rtol=1e-3)
    assert within.passed and within.needed_rtol == 0.0 and within.needed_atol == 5e-5


def test_nan_fails_and_reports_no_numbers() -> None:
    errors = output_errors(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), atol=1e-4, rtol=1e-3)
    assert not errors.passed
    assert (errors.max_abs, errors.max_rel, errors.needed_atol, errors.needed_rtol) == (None, None, None, None)


def test_outputs_of_another_shape_are_a_check_error() -> None:
    with pytest.raises(CheckError, match="shapes differ"):
        output_errors(np.zeros((2, 10)), np.zeros((3, 10)), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(("value", "rounded"), [
    (0.49992065, 0.5), (0.123, 0.123), (0.12301, 0.124), (6.30024, 6.31), (999.7, 1000.0), (1.2e-7, 1.2e-7),
    (0.0, 0.0),
])
def test_ceil_sig_rounds_up_to_three_digits(value: float, rounded: float) -> None:
    assert ceil_sig(value) == rounded and ceil_sig(value) >= value


def test_torch_is_the_reference_when_named_else_the_first() -> None:
    ort, ref, npu = BackendSpec("onnxruntime"), BackendSpec("torch", reference=True), BackendSpec("ascend")
    assert reference_backend([ort, ref]) == "torch"
    assert reference_backend([ort, npu]) == "onnxruntime"
    assert reference_backend([npu, ort]) == "ascend"


@pytest.mark.parametrize("text", ["onnxruntime", "onnxruntime,", "torch,onnxruntime,torch"])
def test_backends_need_two_named_once(text: str) -> None:
    with pytest.raises(UsageError):
        parse_backends(text)
    assert parse_backends(" onnxruntime , torch ") == ["onnxruntime", "torch"]


def test_the_failure_names_the_worst_output_and_the_tolerance_it_needed() -> None:
    def row(output: str, needed_atol: float, passed: bool) -> dict:
        return {"backend": "ascend", "reference": "torch", "output": output, "max_abs": needed_atol,
                "max_rel": 1.0, "needed_atol": needed_atol, "needed_rtol": 0.5, "passed": passed}

    result = {"atol": 1e-4, "rtol": 1e-3, "needed_atol": 0.0312, "needed_rtol": 0.5,
              "comparisons": [row("a", 1e-5, True), row("b", 0.0123, False), row("c", 0.03111, False)]}
    with pytest.raises(CheckError) as caught:
        raise_if_failed(result)
    assert "ascend differs from torch on c" in caught.value.message and "2 of 3" in caught.value.message
    assert "--atol 0.0312 (at --rtol 0.001)" in caught.value.note and "--rtol 0.5" in caught.value.note
    raise_if_failed({**result, "comparisons": [row("a", 1e-5, True)]})  # all pass: nothing raised


# ---------------------------------------------------------------- whole comparisons


def test_compare_in_process_pads_a_partial_batch_and_takes_torch_as_reference() -> None:
    zoo = Zoo.create()
    options = resolve_options(zoo.registry.model("resnest-tiny"), {"weights": "random", "batch_sizes": (2,)})
    result = compare(zoo, options, ["torch", "onnxruntime"], samples=3, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL)
    assert result["reference"] == "torch" and result["passed"]
    [row] = result["comparisons"]
    assert row["backend"] == "onnxruntime" and row["output"] == "output1" and row["shape"] == [3, 10]


def test_onnxruntime_agrees_with_torch(zoo_cli) -> None:
    result = zoo_cli("compare", *TINY, "--backends", "onnxruntime,torch", "--json")
    assert result.code == 0, result
    data = result.json()  # stdout is exactly one JSON document
    assert data["passed"] and data["reference"] == "torch" and data["backends"] == ["onnxruntime", "torch"]
    assert data["samples"] == 5 and (data["atol"], data["rtol"]) == (DEFAULT_ATOL, DEFAULT_RTOL)
    [row] = data["comparisons"]
    assert row["passed"] and row["backend"] == "onnxruntime" and row["shape"] == [5, 10]
    assert 0 <= row["max_abs"] < 1e-5  # about 1e-7: the same fp32 arithmetic, reordered
    assert row["needed_atol"] <= DEFAULT_ATOL and row["needed_rtol"] <= DEFAULT_RTOL
    assert "Error:" not in result.stderr


def test_human_output_is_a_table_and_a_closing_line(zoo_cli) -> None:
    result = zoo_cli("compare", *TINY, "--backends", "onnxruntime,torch")
    assert result.code == 0, result
    assert re.search(r"onnxruntime\s*│\s*torch\s*│\s*output1\s*│.*PASS", result.stdout), result
    assert "PASS: every output agrees with torch within --atol 0.0001 --rtol 0.001" in result.stdout
    assert "infer 5 samples on torch" in result.stderr  # progress goes to stderr


def perturbed_onnx(zoo_cli, folder: Path) -> Path:
    """The exported ONNX at batch 2 with 0.5 added to one element of the classifier's bias."""
    import onnx
    from onnx import numpy_helper

    path = folder / "m.onnx"
    assert zoo_cli("export", "resnest-tiny", "--bs", "2", "-o", str(path), "--weights", "random").code == 0
    graph = onnx.load(str(path))
    gemm = [n for n in graph.graph.node if n.op_type == "Gemm"][-1]
    bias = next(i for i in graph.graph.initializer if i.name == gemm.input[2])
    values = numpy_helper.to_array(bias).copy()
    assert values.dtype == np.float32
    values[0] += 0.5
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(graph, str(path))
    return path


def test_a_perturbed_weight_fails_with_the_tolerance_it_would_need(zoo_cli, tmp_path) -> None:
    bad = perturbed_onnx(zoo_cli, tmp_path)
    args = ("compare", *TINY, "--backends", "onnxruntime,torch", "--onnx", str(bad))
    result = zoo_cli(*args, "--json")
    assert result.code == EXIT_CHECK, result
    data = result.json()  # still printed, before the error
    assert not data["passed"] and data["onnx"] == str(bad)
    [row] = data["comparisons"]
    assert not row["passed"] and row["max_abs"] == pytest.approx(0.5, rel=1e-3)
    assert data["needed_atol"] == row["needed_atol"] > DEFAULT_ATOL
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "onnxruntime differs from torch on output1" in errors[0], result
    assert "Traceback" not in result.stderr
    printed = float(re.search(r"needed --atol ([0-9.e+-]+) \(at --rtol 0\.001\)", result.stderr).group(1))
    assert data["needed_atol"] <= printed <= data["needed_atol"] * 1.01  # the JSON's value, rounded up

    human = zoo_cli(*args)
    assert human.code == EXIT_CHECK, human
    assert re.search(rf"output1\s*│\s*0\.5\s*│.*│\s*{printed:g}\s*│.*FAIL", human.stdout), human
    assert "FAIL: 1 of 1 output(s) differ from torch beyond --atol 0.0001 --rtol 0.001" in human.stdout

    assert zoo_cli(*args, "--atol", f"{printed:g}").code == 0  # the printed tolerance is enough
    assert zoo_cli(*args, "--atol", f"{data['needed_atol'] * 0.99:g}").code == EXIT_CHECK  # and about the least


def test_ascend_agrees_with_onnxruntime_on_the_fakes(zoo_cli, ascend_env) -> None:
    result = zoo_cli("compare", *TINY, "--backends", "onnxruntime,ascend", "--json", env=ascend_env)
    assert result.code == 0, result
    data = result.json()
    assert data["passed"] and data["reference"] == "onnxruntime"
    assert [(r["backend"], r["shape"]) for r in data["comparisons"]] == [("ascend", [5, 10])]


# ---------------------------------------------------------------- bad requests fail before any export


@pytest.mark.parametrize(("extra", "message"), [
    (("--backends", "onnxruntime"), "at least two backends"),
    (("--backends", "torch,torch"), "torch named twice"),
    (("--backends", "onnxruntime,tensorrt"), "unknown backend 'tensorrt'"),
    (("--backends", "onnxruntime,torch", "--samples", "0"), "--samples: 0 must be at least 1"),
    (("--backends", "onnxruntime,torch", "--bs", "1,2"), "one batch size"),
    (("--backends", "onnxruntime,torch", "--atol", "-1"), "must be finite and not negative"),
])
def test_bad_requests_are_usage_errors(zoo_cli, extra: tuple[str, ...], message: str) -> None:
    result = zoo_cli("compare", *TINY, *extra)
    assert result.code == EXIT_USAGE, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and message in lines[0], result
    assert lines[1].startswith("Note: ")
    assert result.stdout == ""


def test_an_unavailable_backend_is_an_environment_error(zoo_cli) -> None:
    if Zoo.create().registry.backends["ascend"].available:
        pytest.skip("a real Ascend toolkit is installed here")
    result = zoo_cli("compare", *TINY, "--backends", "onnxruntime,ascend")
    assert result.code == EXIT_ENV, result
    assert result.stderr.startswith("Error: backend 'ascend' is not available here"), result
    assert result.stdout == ""
