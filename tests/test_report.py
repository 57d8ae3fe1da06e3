"""Reports: results.json / results.csv / report.md / throughput.png of a run, the shipped JSON Schema, and
``zoo report A B`` comparing two runs."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
from pathlib import Path

import pytest

from zoo_core import reporting as report
from zoo_core.errors import CheckError, ZooError
from zoo_core.runner import write_results

SWEEP = (1, 4, 8, 16)
SEED_HEADERS = ("芯片型号", "Batch Size", "数据集", "精度(top1)", "性能")


def latency(mean: float) -> dict[str, float]:
    return {"mean": mean, "p50": mean, "p90": mean * 1.1, "p99": mean * 1.2, "min": mean * 0.9, "max": mean * 1.3}


def make_results(throughputs: dict[int, float], *, top1: dict[int, float] | None = None, **over) -> dict:
    """A results object by hand: latency consistent with each throughput (1000 * bs / mean ms)."""
    rows = []
    for bs, tp in throughputs.items():
        mean = 1000.0 * bs / tp
        rows.append({"batch_size": bs, "throughput": tp, "throughput_device": None, "throughput_e2e": tp,
                     "latency_ms": latency(mean), "latency_e2e_ms": latency(mean),
                     "devices": [{"device": 0, "throughput_e2e": tp, "throughput_device": None}],
                     "top1": (top1 or {}).get(bs), "top5": None if bs not in (top1 or {}) else 0.95,
                     "images": 1000 if bs in (top1 or {}) else None})
    results = {
        "schema": 1, "model": "resnest50", "backend": "onnxruntime", "device": "cpu", "weights": "random",
        "preset": "modelzoo",
        "env": {"zoo": "0.1.0", "python": "3.11.7", "cpu": "Test CPU", "cores": 8, "onnxruntime": "1.18.0"},
        "export": {"opset": 11, "max_abs_diff": 1e-6, "tolerance": 1e-4},
        "measurement": {"warmup": 5, "iterations": 20, "threads": 8, "formula": "throughput = 1000 * bs / mean ms"},
        "stage_seconds": {}, "created": "2025-01-01T00:00:00+0000", "accuracy": None, "results": rows,
    }
    results.update(over)
    return results


# ------------------------------------------------------------------------------ the acceptance sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> tuple[Path, str]:
    """``zoo run resnest-tiny --bs 1,4,8,16 --weights random`` on onnxruntime, once for the module."""
    import subprocess

    out = tmp_path_factory.mktemp("sweep") / "out"
    env = {**os.environ, "ZOO_CACHE_DIR": str(session_cache), "ZOO_PLUGINS": "zoo_tiny,zoo_slow", "ZOO_OFFLINE": "1",
           "COLUMNS": "200", "TORCH_HOME": str(out.parent / "torch-home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent / "plugins"),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_core", "run", "resnest-tiny", "--bs", ",".join(map(str, SWEEP)),
         "--backend", "onnxruntime", "--weights", "random", "--warmup", "0", "--iterations", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_sweep_writes_all_four_files(sweep) -> None:
    out, stdout = sweep
    for name in ("results.json", "results.csv", "report.md", "throughput.png"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"report: {out / 'results.csv'}, {out / 'report.md'}, {out / 'throughput.png'}" in stdout


def test_sweep_results_json_validates_against_the_shipped_schema(sweep) -> None:
    out, _ = sweep
    results = json.loads((out / "results.json").read_text())
    assert [r["batch_size"] for r in results["results"]] == list(SWEEP)
    assert report.validation_errors(results) == []
    report.validate(results)


def test_sweep_report_md_has_the_seed_table_and_the_formulas(sweep) -> None:
    out, _ = sweep
    results = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| 芯片型号"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert len(cells) == len(SEED_HEADERS)
    assert all(c.startswith(h) for c, h in zip(cells, SEED_HEADERS, strict=True)), cells
    lines = text.splitlines()
    start = lines.index(header) + 2
    seed_rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:start + len(SWEEP)]]
    cpu = results["env"]["cpu"]
    assert [(r[0], int(r[1]), r[3], float(r[4])) for r in seed_rows] == [
        (cpu, row["batch_size"], "-", round(row["throughput"], 1)) for row in results["results"]
    ]
    assert results["measurement"]["formula"] in text
    assert "1000 * batch_size / mean(latency_ms)" in text and "throughput_e2e" in text
    assert "accuracy from them is meaningless" in text
    assert "![throughput and latency versus batch size](throughput.png)" in text
    for key in ("p50 ms", "p90 ms", "p99 ms", "## Environment", "## Export check", "max_abs_diff"):
        assert key in text


def test_sweep_results_csv_has_one_row_per_batch_size(sweep) -> None:
    out, _ = sweep
    results = json.loads((out / "results.json").read_text())
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert [int(r["batch_size"]) for r in rows] == list(SWEEP)
    for row, expected in zip(rows, results["results"], strict=True):
        assert float(row["throughput"]) == pytest.approx(expected["throughput"], rel=1e-12)
        assert float(row["latency_p99_ms"]) == pytest.approx(expected["latency_ms"]["p99"], rel=1e-12)
        assert (row["model"], row["backend"], row["weights"], row["top1"]) == ("resnest-tiny", "onnxruntime",
                                                                             "random", "")


# ------------------------------------------------------------------------------------------- schema


def test_schema_ships_in_the_package_and_is_a_valid_draft_2020_12_schema() -> None:
    import jsonschema
    from importlib.resources import files

    assert files("zoo_core").joinpath("schema", "results.schema.json").is_file()
    schema = report.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("break_it, where", [
    (lambda r: r.pop("env"), "(top)"),
    (lambda r: r.update(schema=2), "schema"),
    (lambda r: r.update(results=[]), "results"),
    (lambda r: r["results"][0].update(batch_size=0), "results/0/batch_size"),
    (lambda r: r["results"][0].update(batch_size=1.5), "results/0/batch_size"),
    (lambda r: r["results"][0].update(throughput=0), "results/0/throughput"),
    (lambda r: r["results"][0]["latency_ms"].pop("p99"), "results/0/latency_ms"),
    (lambda r: r["results"][0].update(top1="80%"), "results/0/top1"),
    (lambda r: r["results"][0].update(images=1.5), "results/0/images"),
    (lambda r: r["results"][0].pop("top5"), "results/0"),
])
def test_a_broken_results_object_fails_validation(break_it, where) -> None:
    good = make_results({1: 100.0, 8: 400.0}, top1={8: 0.8098})
    assert report.validation_errors(good) == []
    bad = copy.deepcopy(good)
    break_it(bad)
    errors = report.validation_errors(bad)
    assert errors and errors[0].startswith(f"{where}:"), errors
    with pytest.raises(CheckError, match="results do not match the schema"):
        report.validate(bad)


def test_schema_allows_new_keys_and_the_stability_fields() -> None:
    results = make_results({8: 400.0}, future_key={"anything": 1})
    results["results"][0].update(stable=False, windows=[1.0, 2.0], timed_batches=30, another=None)
    assert report.validation_errors(results) == []


# -------------------------------------------------------------------------------------- the writers


def test_markdown_uses_the_ascend_chip_and_shows_accuracy_and_dataset_problems(tmp_path: Path) -> None:
    accuracy = {"top1": 0.8098, "top5": 0.953, "images": 1000, "batch_size": 8, "preset": "modelzoo",
                "images_per_s": 250.0, "skipped": {"count": 1, "images": ["bad.JPEG"]},
                "dataset": {"kind": "imagenet-val", "root": "/data/val", "images": 1001,
                            "unlabeled": {"count": 2, "first": ["x1.JPEG", "x2.JPEG"]},
                            "labels_without_image": {"count": 0, "first": []}, "ignored_files": 0}}
    results = make_results({1: 435.0, 8: 1630.0}, top1={8: 0.8098}, backend="ascend", device="npu",
                           weights="sha256:528c19ca", accuracy=accuracy)
    results["env"]["ascend"] = {"chip": "310P3", "devices": 2, "cann": "7.0"}
    results["results"][1]["devices"].append({"device": 1, "throughput_e2e": 800.0, "throughput_device": 815.0})
    results["results"][1]["stable"] = False
    path = report.write_markdown(results, tmp_path / "report.md", chart=False)
    text = path.read_text(encoding="utf-8")
    assert "| Ascend310P3 | 1 | - | - | 435.0 |" in text
    assert "| Ascend310P3 x2 | 8 | imagenet-val | 80.98% | 1630.0 (unstable) |" in text  # its stable is False
    assert "measured once, at batch 8 on 1000 images" in text
    assert "meaningless" not in text  # real weights
    assert "2 images without a label" in text and "`x1.JPEG`" in text and "1 unreadable images skipped" in text
    assert "| ascend.chip | 310P3 |" in text and "| ascend.cann | 7.0 |" in text
    assert "**no**" in text and "did not settle" in text
    assert report.NO_CHART in text


def test_writers_handle_a_minimal_results_object(tmp_path: Path) -> None:
    results = {"schema": 1, "model": "m", "backend": "b", "device": "cpu", "weights": "random", "env": {},
               "results": [{"batch_size": 2, "throughput": 50.0, "latency_ms": latency(40.0),
                            "top1": None, "top5": None, "images": None}]}
    report.write_csv(results, tmp_path / "results.csv")
    report.write_markdown(results, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| cpu | 2 | - | - | 50.0 |" in text
    with (tmp_path / "results.csv").open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["throughput_e2e"], row["stable"], row["devices"]) == ("", "", "1")


def test_chart_is_drawn_with_matplotlib(tmp_path: Path) -> None:
    assert report.write_chart(make_results({1: 100.0, 4: 300.0, 8: 350.0}), tmp_path / "t.png") is True
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_without_matplotlib_no_chart_and_one_line_saying_so(tmp_path: Path, no_matplotlib) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "throughput.png").write_bytes(b"stale chart of an earlier run")
    assert report.write_chart(make_results({1: 100.0}), out / "other.png") is False
    write_results(make_results({1: 100.0, 8: 400.0}), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.csv", "results.json"]
    assert report.NO_CHART in (out / "report.md").read_text(encoding="utf-8")
    assert report.files_line(out) == f"report: {out / 'results.csv'}, {out / 'report.md'}; {report.NO_CHART}"


@pytest.mark.zoo_process("a package on PYTHONPATH hides matplotlib from a fresh interpreter; this one may have it")
def test_run_without_matplotlib_prints_the_line(zoo_cli, tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    out = tmp_path / "out"
    result = zoo_cli("run", "resnest-tiny", "--bs", "1", "--backend", "onnxruntime", "--weights", "random",
                     "--warmup", "0", "--iterations", "1", "--out", str(out),
                     env={"PYTHONPATH": os.pathsep.join([str(hidden), os.environ["PYTHONPATH"]])})
    assert result.code == 0, result
    assert "matplotlib is not installed (pip install 'zoo[plot]'): no chart" in result.stdout
    assert not (out / "throughput.png").exists() and (out / "report.md").is_file()


def test_write_results_to_an_unwritable_folder_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ZooError, match="cannot write results to") as info:
        write_results(make_results({1: 100.0}), tmp_path / "file" / "out")
    assert info.value.note == "choose a writable folder with --out"


def test_a_report_write_failure_is_the_same_error_and_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(results, path, chart=None):
        with report._atomic(path) as fh:
            fh.write("half")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_markdown", fail)
    with pytest.raises(ZooError, match="cannot write results to .*: No space left on device"):
        write_results(make_results({1: 100.0}), tmp_path)
    assert not (tmp_path / "report.md").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------- compare


def two_runs() -> tuple[dict, dict]:
    a = make_results({1: 100.0, 8: 400.0}, top1={8: 0.8098})
    b = make_results({1: 150.0, 8: 300.0, 16: 500.0}, top1={8: 0.8198}, weights="sha256:528c19ca")
    b["env"]["onnxruntime"] = "1.19.2"
    b["env"]["ascend"] = {"chip": "310P3"}
    return a, b


def test_compare_runs_matches_rows_by_batch_size() -> None:
    a, b = two_runs()
    data = report.compare_runs(a, b).to_json()  # the typed comparison, as `zoo report --json` prints it
    assert [r["batch_size"] for r in data["rows"]] == [1, 8]
    one, eight = data["rows"]
    assert one["throughput_ratio"] == pytest.approx(1.5) and eight["throughput_ratio"] == pytest.approx(0.75)
    assert one["throughput_e2e_ratio"] == pytest.approx(1.5)
    assert one["latency_ratio"] == pytest.approx(100 / 150) and eight["latency_p99_ratio"] == pytest.approx(400 / 300)
    assert eight["top1_delta"] == pytest.approx(0.01) and one["top1_delta"] is None
    assert eight["top5_delta"] == pytest.approx(0.0)
    assert data["only_in_a"] == [] and data["only_in_b"] == [16]
    assert data["throughput_ratio_geomean"] == pytest.approx(math.sqrt(1.5 * 0.75))
    assert data["differences"] == {"weights": {"a": "random", "b": "sha256:528c19ca"}}
    assert data["env"] == {"onnxruntime": {"a": "1.18.0", "b": "1.19.2"}, "ascend.chip": {"a": None, "b": "310P3"}}


def write_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = two_runs()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    return tmp_path / "a" / "results.json", tmp_path / "b.json"


def test_zoo_report_prints_the_ratio_table(zoo_cli, tmp_path: Path) -> None:
    path_a, path_b = write_runs(tmp_path)
    result = zoo_cli("report", str(path_a.parent), str(path_b))  # a run's folder or its results.json
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    row = {int(cells[0]): cells[1:] for cells in
           ([c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│"))
           if cells[0].isdigit()}
    assert row[1][:5] == ["100.00", "150.00", "1.500", "1.500", "0.667"]
    assert row[8][:3] == ["400.00", "300.00", "0.750"] and row[8][6] == "+1.00 pp"
    assert "only in B: 16" in result.stdout
    assert "geometric mean throughput ratio B/A: 1.061" in result.stdout
    for text in ("env.onnxruntime", "1.18.0", "1.19.2", "env.ascend.chip", "310P3", "weights", "sha256:528c19ca"):
        assert text in result.stdout
    assert result.stderr == ""


def test_zoo_report_json_and_fail_below(zoo_cli, tmp_path: Path) -> None:
    path_a, path_b = write_runs(tmp_path)
    result = zoo_cli("report", str(path_a), str(path_b), "--json")
    assert result.code == 0, result
    data = result.json()
    assert (data["a"], data["b"]) == (str(path_a), str(path_b))
    assert [r["throughput_ratio"] for r in data["rows"]] == pytest.approx([1.5, 0.75])
    assert zoo_cli("report", str(path_a), str(path_b), "--fail-below", "0.7").code == 0
    failed = zoo_cli("report", str(path_a), str(path_b), "--json", "--fail-below", "0.9")
    assert failed.code == 4 and failed.json()["rows"]
    assert "Error: throughput regressed at batch 8: B/A down to 0.750" in failed.stderr


@pytest.mark.parametrize("content, message", [
    (None, "results file not found"),
    ("not json", "is not a zoo results file: not JSON"),
    (json.dumps([1, 2]), "is not a zoo results file: a JSON list"),
    (json.dumps({"model": "m"}), "is not a zoo results file: no `schema` and `results` keys"),
    (json.dumps({"schema": 1, "results": [{"batch_size": "8"}]}), "results[0] has no integer batch_size"),
])
def test_zoo_report_on_a_missing_or_foreign_file_is_one_error(zoo_cli, tmp_path: Path, content, message) -> None:
    path_a, _ = write_runs(tmp_path)
    other = tmp_path / "other.json"
    if content is not None:
        other.write_text(content)
    result = zoo_cli("report", str(path_a), str(other))
    assert result.code == 3, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert lines[1].startswith("Note: ") and "Traceback" not in result.stderr
