"""The Python API (zoo_core.run / compare / report) and its typed results (zoo_core.results): the same objects as
the CLI's --json, round trips through to_json/from_json, one ZooError for a bad results file, the CLI's usage
errors for bad arguments, an import that costs nothing, and docs/python-api.md's examples as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core
from test_bad_inputs import one_error
from zoo_core import python_api, reporting
from zoo_core.errors import EXIT_ENV, UsageError, ZooError
from zoo_core.results import CompareResult, RunComparison, RunResults

ROOT = Path(__file__).resolve().parents[1]
FAST = {"weights": "random", "warmup": 0, "iterations": 1}
FAST_FLAGS = ("--weights", "random", "--warmup", "0", "--iterations", "1")
TIMING = {"throughput", "throughput_device", "throughput_e2e", "latency_ms", "latency_e2e_ms", "windows_ms"}


def without_timing(data: object) -> object:
    """``data`` less what differs between two runs of the same settings: timings, stage seconds, the date."""
    if isinstance(data, dict):
        return {k: without_timing(v) for k, v in data.items() if k not in TIMING | {"stage_seconds", "created"}}
    if isinstance(data, list):
        return [without_timing(v) for v in data]
    return data


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> tuple[RunResults, Path]:
    """One ``zoo_core.run`` of the tiny model at batch sizes 1 and 2, for the module."""
    out = tmp_path_factory.mktemp("api") / "a"
    with pytest.MonkeyPatch.context() as mp:  # the module's run sees what each test's ``isolated`` sets
        mp.setenv("ZOO_CACHE_DIR", str(session_cache))
        mp.setenv("ZOO_PLUGINS", "zoo_tiny,zoo_slow")
        mp.setenv("ZOO_OFFLINE", "1")
        return zoo_core.run("resnest-tiny", bs=[1, 2], backend="onnxruntime", out=out, **FAST), out


def test_run_returns_what_zoo_run_json_prints_but_the_timings(api_run, zoo_cli, tmp_path: Path) -> None:
    results, _ = api_run
    cli = zoo_cli("run", "resnest-tiny", "--bs", "1,2", "--backend", "onnxruntime", *FAST_FLAGS, "--json",
                  "--out", str(tmp_path / "b"))
    assert cli.code == 0, cli
    printed = cli.json()
    assert isinstance(results, RunResults) and results.results[1].batch_size == 2
    assert without_timing(results.to_json()) == without_timing(printed)
    assert list(results.to_json()) == list(printed)  # the same keys in the same order
    assert results.row(2).latency_ms.p99 > 0 and results.row(1).top1 is None and results.accuracy is None


def test_run_draws_nothing_unless_asked(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    zoo_core.run("resnest-tiny", bs=2, backend="onnxruntime", out=tmp_path / "quiet", **FAST)
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    zoo_core.run("resnest-tiny", bs=2, backend="onnxruntime", out=tmp_path / "loud", progress=True, **FAST)
    assert "time batch 2" in capfd.readouterr().err


def test_results_validate_against_the_schema_and_round_trip(api_run) -> None:
    results, out = api_run
    data = results.to_json()
    assert reporting.validation_errors(data) == []
    assert data == json.loads((out / "results.json").read_text(encoding="utf-8"))  # what was written
    again = RunResults.from_json(json.loads(json.dumps(data)))
    assert again == results and again.to_json() == data
    assert zoo_core.load(out) == results and json.loads(results.to_text()) == data


def test_keys_an_older_file_lacks_stay_out_and_unknown_keys_stay_in() -> None:
    latency = dict.fromkeys(("mean", "p50", "p90", "p99", "min", "max"), 10.0)
    old = {"schema": 1, "model": "m", "backend": "onnxruntime", "device": "cpu", "weights": "random",
           "env": {"cpu": "Some CPU", "ascend": {"chip": "310P3"}}, "future": [1, {"x": None}],
           "results": [{"batch_size": 4, "throughput": 400, "latency_ms": latency, "top1": None, "top5": None,
                        "images": None, "windows": [[1.0, 2.0]]}]}
    results = RunResults.from_json(old)
    assert results.to_json() == old and json.dumps(results.to_json()) == json.dumps(old)
    assert results.device_name is None and results.results[0].stable is None
    assert not results.results[0].recorded("stable") and results.extra == {"future": [1, {"x": None}]}
    assert results.env.extra == {"ascend": {"chip": "310P3"}}


def test_an_accuracy_run_round_trips(tmp_path: Path) -> None:
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "val", count=6)
    results = zoo_core.run("resnest-tiny", bs=2, backend="onnxruntime", data=tmp_path / "val",
                           out=tmp_path / "acc", **FAST)
    assert results.accuracy is not None and results.accuracy.images == 6
    assert results.accuracy.dataset is not None and results.accuracy.dataset.kind == "imagenet-val"
    assert results.row(2).top1 == results.accuracy.top1 is not None
    data = json.loads((tmp_path / "acc" / "results.json").read_text(encoding="utf-8"))
    assert RunResults.from_json(data).to_json() == data == results.to_json()


def round_trip(path: Path) -> RunResults:
    """The results.json at ``path`` read back: its typed object gives the very same JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    results = RunResults.from_json(data, str(path))
    assert results.to_json() == data and json.dumps(results.to_json()) == json.dumps(data)
    return results


def test_an_unstable_run_round_trips(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--backend", "onnxruntime",
                     "--warmup", "0", "--window", "1", "--agree", "0.0001", "--max-seconds", "0.001",
                     "--out", str(tmp_path / "o"))
    assert result.code == 0, result
    row = round_trip(tmp_path / "o" / "results.json").row(2)
    assert row.stable is False and row.devices and row.devices[0].windows_ms


def test_a_run_on_two_ascend_devices_round_trips(zoo_cli, ascend_env, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--backend", "ascend", "--device",
                     "0,1", "--warmup", "0", "--iterations", "2", "--out", str(tmp_path / "o"),
                     env={**ascend_env, "FAKE_NPU_COUNT": "2"})
    assert result.code == 0, result
    results = round_trip(tmp_path / "o" / "results.json")
    row = results.row(2)
    assert results.backend == "ascend" and [d.device for d in row.devices or ()] == [0, 1]
    assert row.throughput_device is not None and results.env.extra["ascend"]


@pytest.mark.parametrize("field, value, where", [
    ("env", [1], "env: expected an object, found [1]"),
    ("measurement", "fast", 'measurement: expected an object, found "fast"'),
    ("accuracy", {"images": "6", "batch_size": 2}, 'accuracy.images: expected an integer, found "6"'),
])
def test_a_bad_results_file_is_one_error_naming_the_file_and_the_field(zoo_cli, api_run, tmp_path: Path,
                                                                        field: str, value: object,
                                                                        where: str) -> None:
    results, out = api_run
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({**results.to_json(), field: value}))
    error, note = one_error(zoo_cli("report", str(out), str(bad)), EXIT_ENV)
    assert error == f"Error: {bad} is not a zoo results file: {where}"
    with pytest.raises(ZooError, match=re.escape(f"{bad} is not a zoo results file: {where}")):
        zoo_core.load(bad)


def test_compare_returns_what_zoo_compare_json_prints(zoo_cli) -> None:
    args = dict(backends=["onnxruntime", "torch"], bs=2, weights="random", samples=3)
    result = zoo_core.compare("resnest-tiny", **args)
    cli = zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                  "--samples", "3", "--json")
    assert cli.code == 0, cli
    assert isinstance(result, CompareResult) and result.passed and result.reference == "torch"
    assert result.to_json() == cli.json()
    assert CompareResult.from_json(cli.json()) == result
    result.raise_if_failed()  # passed: nothing raised


@pytest.mark.parametrize("value, problem", [(-5.0, "-5.0 is less than or equal to the minimum of 0"),
                                             (float("nan"), "not JSON compliant")])
@pytest.mark.parametrize("as_object", [False, True], ids=["json", "object"])
def test_report_checks_results_given_as_objects_as_it_checks_a_file(api_run, value: float, problem: str,
                                                                   as_object: bool) -> None:
    """A results object or its JSON handed to ``zoo_core.report`` is checked as a results.json is: a throughput
    of -5 or NaN is one ZooError naming the side, not a ratio (nor a math domain error from its logarithm)."""
    results, out = api_run
    edited = results.to_json()
    edited["results"][0]["throughput"] = value
    side = RunResults.from_json(edited) if as_object else edited
    with pytest.raises(ZooError) as info:
        zoo_core.report(side, out)
    assert info.value.message.startswith("A is not a zoo results ") and problem in info.value.message
    assert zoo_core.report(results, out).rows[0].throughput_ratio == pytest.approx(1.0)  # the unedited one is fine


def test_report_returns_what_zoo_report_json_prints(zoo_cli, api_run, tmp_path: Path) -> None:
    results, out = api_run
    slower = results.to_json()
    for row in slower["results"]:
        row["throughput"] /= 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(json.dumps(slower))
    comparison = zoo_core.report(out, tmp_path / "b", fail_below=0.9)
    cli = zoo_cli("report", str(out), str(tmp_path / "b"), "--json", "--fail-below", "0.9")
    assert cli.code == 4, cli  # the CLI exits 4 on the regression; the API returns it as data
    assert isinstance(comparison, RunComparison) and comparison.to_json() == cli.json()
    assert comparison.judgement is not None and comparison.judgement.regressed == (1, 2)
    assert [r.throughput_ratio for r in comparison.rows] == pytest.approx([0.5, 0.5])
    with pytest.raises(ZooError, match="throughput regressed at batch 1, 2: B/A down to 0.500"):
        comparison.raise_if_regressed()
    same = zoo_core.report(results, RunResults.from_json(results.to_json()))  # result objects, no files
    assert (same.a, same.b, same.judgement, dict(same.differences)) == (None, None, None, {})


@pytest.mark.parametrize("call, cli", [
    (lambda: zoo_core.run("resnest-tiny", bs=[8, 0]), ("run", "resnest-tiny", "--bs", "8,0")),
    (lambda: zoo_core.run("resnest-tiny", threads=0), ("run", "resnest-tiny", "--threads", "0")),
    (lambda: zoo_core.run("no-such-model"), ("run", "no-such-model")),
    (lambda: zoo_core.run("resnest-tiny", backend_options={"nope": 1}, backend="onnxruntime"),
     ("run", "resnest-tiny", "--backend", "onnxruntime", "--backend-opt", "nope=1")),
    (lambda: zoo_core.compare("resnest-tiny", backends="onnxruntime,torch", bs=[1, 4]),
     ("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "1,4")),
    (lambda: zoo_core.compare("resnest-tiny", backends=["torch"]), ("compare", "resnest-tiny", "--backends", "torch")),
    (lambda: zoo_core.report("a", "b", unstable="count"), ("report", "a", "b", "--unstable", "count")),
    (lambda: zoo_core.report("a", "b", fail_below=0.0), ("report", "a", "b", "--fail-below", "0")),
])
def test_a_bad_argument_raises_the_usage_error_the_cli_prints(zoo_cli, call, cli) -> None:
    error, note = one_error(zoo_cli(*cli), 2)
    with pytest.raises(UsageError) as raised:
        call()
    assert (f"Error: {raised.value.message}", f"Note: {raised.value.note}") == (error, note)


@pytest.mark.parametrize("kwargs, message", [
    ({"warmup": "5"}, "--warmup: '5' is not a whole number"),
    ({"agree": "0.1"}, "--agree: '0.1' is not a number"),
    ({"bs": [1, 2.5]}, "--bs: '2.5' is not a whole number"),
    ({"data": 3}, "--data: 3 is not a path"),
])
def test_a_value_of_the_wrong_type_is_a_usage_error(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        zoo_core.run("resnest-tiny", **kwargs)


def test_import_zoo_core_and_its_api_names_import_neither_torch_nor_numpy_nor_onnx() -> None:
    code = ("import sys, zoo_core; zoo_core.run, zoo_core.compare, zoo_core.report, zoo_core.RunResults; "
            "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert zoo_core.report is python_api.report and zoo_core.compare is python_api.compare


# ------------------------------------------------------------------------------------- docs/python-api.md


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_python_api_page_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Its python blocks, in order, in one namespace, in a folder of their own holding imagenet/val, with
    tests/test_docs_pages.py's two substitutions: resnest50 is resnest-tiny, and a run times one batch after no
    warm-up."""
    from zoo_core.testing import write_image_dataset

    blocks = python_blocks((ROOT / "docs" / "python-api.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    write_image_dataset(tmp_path / "imagenet" / "val")
    monkeypatch.chdir(tmp_path)
    run = zoo_core.run
    monkeypatch.setattr(zoo_core, "run", lambda model, **kw: run(model, **{"warmup": 0, "iterations": 1, **kw}))
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block.replace('"resnest50"', '"resnest-tiny"'), "docs/python-api.md", "exec"), namespace)
    shown = capsys.readouterr().out
    assert "Error: --bs: batch size 0 must be at least 1" in shown and "onnxruntime vs torch" in shown
    assert (tmp_path / "runs" / "a" / "results.json").is_file() and (tmp_path / "runs" / "scored").is_dir()
