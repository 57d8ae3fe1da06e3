"""zoo run --dynamic-batch: one Ascend .om compiled with ATC --dynamic_batch_size for every batch size, each row run
on it with mode="dymbatch" (the fakes refuse anything else), and static beside dynamic with their ratio."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from test_bad_inputs import one_error
from test_score import made, score, write_outputs  # noqa: F401 -- made: zoo score's fixture of outputs
from zoo_core.reporting import validation_errors
from zoo_core.testing import write_image_dataset

TIMING = ("--weights", "random", "--warmup", "0", "--iterations", "2")


def run_json(zoo_cli, env, out: Path, *args: str) -> dict:
    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", *TIMING, "--out", str(out), "--json", *args, env=env)
    assert result.code == 0, result
    data = result.json()
    assert validation_errors(data) == []
    return data


def compile_logs(cache: Path) -> list[str]:
    """The ATC command line of every compiled model in ``cache``."""
    return [log.read_text().splitlines()[0] for log in sorted(cache.rglob("atc.log"))]


def test_one_om_serves_every_batch_size(zoo_cli, ascend_env, tmp_path) -> None:
    # Both ais_bench generations: the newer refuses mode="static" on a dynamic-batch .om and a batch not listed, the
    # older needs set_dynamic_batchsize(n) before each size; a row that ran any other way would fail the run.
    env = {**ascend_env, "ZOO_CACHE_DIR": str(tmp_path / "cache")}  # a cache of its own: what was compiled
    data = run_json(zoo_cli, env, tmp_path / "out", "--bs", "1,2,4", "--dynamic-batch")
    assert [(r["batch_size"], r["batch_mode"]) for r in data["results"]] == [(1, "dynamic"), (2, "dynamic"),
                                                                            (4, "dynamic")]
    assert all(r["throughput"] > 0 and r["throughput_device"] > 0 for r in data["results"])
    (command,) = compile_logs(tmp_path / "cache")  # one ATC run for the three batch sizes
    assert "--input_shape=actual_input_1:-1,3,64,64" in command.split()
    assert "--dynamic_batch_size=1,2,4" in command.split()


def test_static_and_dynamic_side_by_side_with_their_ratio(zoo_cli, ascend_env, tmp_path) -> None:
    data = run_json(zoo_cli, ascend_env, tmp_path / "both", "--bs", "1,4", "--dynamic-batch=both")
    rows = {(r["batch_size"], r["batch_mode"]): r for r in data["results"]}
    assert sorted(rows) == [(1, "dynamic"), (1, "static"), (4, "dynamic"), (4, "static")]
    report = (tmp_path / "both" / "report.md").read_text()
    for bs in (1, 4):
        ratio = rows[(bs, "dynamic")]["throughput"] / rows[(bs, "static")]["throughput"]
        assert f"batch {bs}: dynamic {rows[(bs, 'dynamic')]['throughput']:.2f} img/s, static " in report
        assert f"dynamic/static {ratio:.3f}" in report
        assert f"| {bs} static |" in report and f"| {bs} dynamic |" in report
    with open(tmp_path / "both" / "results.csv", newline="") as fh:
        assert [(r["batch_size"], r["batch_mode"]) for r in csv.DictReader(fh)] == [
            ("1", "static"), ("1", "dynamic"), ("4", "static"), ("4", "dynamic")]


def test_zoo_report_gives_dynamic_over_static(zoo_cli, ascend_env, tmp_path) -> None:
    static = run_json(zoo_cli, ascend_env, tmp_path / "static", "--bs", "1,4")
    dynamic = run_json(zoo_cli, ascend_env, tmp_path / "dynamic", "--bs", "1,4", "--dynamic-batch")
    assert all("batch_mode" not in r for r in static["results"])  # a run without --dynamic-batch is as before
    result = zoo_cli("report", str(tmp_path / "static"), str(tmp_path / "dynamic"), "--json")
    assert result.code == 0, result
    report = result.json()
    assert report["differences"]["batch_mode"] == {"a": "static", "b": "dynamic"}
    for row, a, b in zip(report["rows"], static["results"], dynamic["results"], strict=True):
        assert row["batch_size"] == a["batch_size"] == b["batch_size"]
        assert row["throughput_ratio"] == pytest.approx(b["throughput"] / a["throughput"], rel=1e-12)
    both = run_json(zoo_cli, ascend_env, tmp_path / "both", "--bs", "1,4", "--dynamic-batch=both")
    result = zoo_cli("report", str(tmp_path / "both"), str(tmp_path / "both"), "--json")
    assert result.code == 0, result  # rows of the same batch size in two modes are not a repeated row
    assert sorted((r["batch_size"], r["batch_mode"]) for r in result.json()["rows"]) == sorted(
        (r["batch_size"], r["batch_mode"]) for r in both["results"])


def test_zoo_report_of_both_modes_against_one_says_no_batch_size_is_missing(zoo_cli, ascend_env, tmp_path) -> None:
    run_json(zoo_cli, ascend_env, tmp_path / "both", "--bs", "1,4", "--dynamic-batch=both")
    run_json(zoo_cli, ascend_env, tmp_path / "static", "--bs", "1,4")
    for a, b in (("both", "static"), ("static", "both")):
        result = zoo_cli("report", str(tmp_path / a), str(tmp_path / b), "--json")
        assert result.code == 0, result
        report = result.json()
        # the static rows match; batch sizes 1 and 4 are in both runs, the modes among the differences
        assert [(r["batch_size"], r["batch_mode"]) for r in report["rows"]] == [(1, "static"), (4, "static")]
        assert (report["only_in_a"], report["only_in_b"]) == ([], [])
        assert report["differences"]["batch_mode"]["a" if a == "both" else "b"] == "static,dynamic"
        text = zoo_cli("report", str(tmp_path / a), str(tmp_path / b))
        assert text.code == 0 and "only in" not in text.stdout, text
    run_json(zoo_cli, ascend_env, tmp_path / "four", "--bs", "2,4", "--dynamic-batch=both")
    report = zoo_cli("report", str(tmp_path / "both"), str(tmp_path / "four"), "--json").json()
    assert (report["only_in_a"], report["only_in_b"]) == ([1], [2])  # a batch size one run lacks is still named


def test_accuracy_on_the_dynamic_om_equals_the_static_ones(zoo_cli, ascend_env, tmp_path) -> None:
    write_image_dataset(tmp_path / "val", 7)  # at batch 4: a padded last batch
    runs = {}
    for mode, extra in (("static", ()), ("dynamic", ("--dynamic-batch",))):
        runs[mode] = run_json(zoo_cli, ascend_env, tmp_path / mode, "--bs", "2,4", "--data", str(tmp_path / "val"),
                              *extra)
    assert runs["dynamic"]["accuracy"]["images"] == 7
    for key in ("top1", "top5"):
        assert runs["dynamic"]["accuracy"][key] == runs["static"]["accuracy"][key]
    predictions = {mode: (tmp_path / mode / "predictions.csv").read_text() for mode in runs}
    assert predictions["dynamic"] == predictions["static"]


@pytest.mark.parametrize(("args", "message"), [
    (("--backend", "onnxruntime", "--bs", "1,4"), "backend 'onnxruntime' compiles one model per batch size"),
    (("--backend", "ascend", "--bs", "4"), "with the one batch size 4"),
    (("--backend", "ascend", "--bs", "1,4", "--precision", "int8", "--calib", "random"),
     "--dynamic-batch with --precision int8"),
])
def test_what_cannot_be_compiled_dynamically_is_one_line(zoo_cli, ascend_env, tmp_path, args, message) -> None:
    result = zoo_cli("run", "resnest-tiny", *TIMING, "--dynamic-batch", *args, "--out", str(tmp_path / "o"),
                     env=ascend_env)
    one_error(result, 2)
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_dry_run_refuses_what_the_run_refuses(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "onnxruntime", "--bs", "1,4", "--dynamic-batch", "--dry-run")
    one_error(result, 2)
    assert "compiles one model per batch size" in result.stderr


def test_the_mode_is_a_choice(zoo_cli) -> None:
    result = zoo_cli("run", "resnest-tiny", "--dynamic-batch=sometimes", "--dry-run")
    assert result.code == 2 and "sometimes" in result.stderr


def test_compiled_model_records_its_batch_sizes(zoo_cli, ascend_env, tmp_path) -> None:
    env = {**ascend_env, "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    run_json(zoo_cli, env, tmp_path / "out", "--bs", "4,1", "--dynamic-batch")
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("compiled.json")]
    assert record["extra"]["dynamic_batch_sizes"] == [1, 4]  # sorted, as ATC lists them
    assert record["batch_size"] == 4


def test_an_onnx_that_fixes_its_batch_cannot_be_compiled_dynamically(zoo_cli, ascend_env, tmp_path) -> None:
    fixed = tmp_path / "bs4.onnx"
    assert zoo_cli("export", "resnest-tiny", "--weights", "random", "--bs", "4", "-o", str(fixed)).code == 0
    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", *TIMING, "--onnx", str(fixed), "--bs", "1,4",
                     "--dynamic-batch", "--out", str(tmp_path / "o"), env=ascend_env)
    one_error(result, 2)
    assert "fixes the batch at 4, so it cannot serve --dynamic-batch" in result.stderr


def test_the_python_api_takes_dynamic_batch(ascend_env, tmp_path) -> None:
    import zoo_core
    from zoo_core.errors import UsageError

    results = zoo_core.run("resnest-tiny", bs=[1, 2], backend="ascend", weights="random", warmup=0, iterations=1,
                           dynamic_batch="both", out=tmp_path / "o")
    assert [(r.batch_size, r.batch_mode) for r in results.results] == [(1, "static"), (1, "dynamic"),
                                                                      (2, "static"), (2, "dynamic")]
    with pytest.raises(UsageError, match="dynamic_batch='sometimes'"):
        zoo_core.run("resnest-tiny", bs=[1, 2], backend="ascend", weights="random", dynamic_batch="sometimes")


@pytest.mark.parametrize("dym_batch", [4, 0])
def test_zoo_score_of_a_dynamic_batch_om_says_so(zoo_cli, made, tmp_path, dym_batch) -> None:  # noqa: F811
    """ais_bench records --dymBatch in its summary's args: zoo score's row is a dynamic one then (it said nothing, and
    zoo report of zoo run --dynamic-batch against the printed recipe's zoo score named batch_mode a difference)."""
    folder = write_outputs(made, tmp_path / "ais", "NPY")
    summary = folder.with_name("result_summary.json")
    data = json.loads(summary.read_text())
    data["args"]["dymBatch"] = dym_batch  # 0: ais_bench's default, a static .om
    summary.write_text(json.dumps(data))
    result = score(zoo_cli, made, folder, tmp_path / "o", "--json")
    assert result.code == 0, result
    (row,) = result.json()["results"]
    assert row.get("batch_mode") == ("dynamic" if dym_batch else None)
    assert validation_errors(json.loads((tmp_path / "o" / "results.json").read_text())) == []
