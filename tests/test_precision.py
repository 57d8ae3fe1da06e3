"""Precision as a stage (the core): --precision sweeps, the calibration set and the quantize stage as cached
artifacts, the accuracy a precision costs, and the usage errors of what a backend cannot do.

The backends' own quantizers are tested in test_precision_onnxruntime.py, test_precision_ascend.py and
test_openvino.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_inputs import one_error
from zoo_core.testing import write_image_dataset

TINY = "resnest-tiny"
FAST = ["--weights", "random", "--warmup", "0", "--iterations", "1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images") / "val"
    write_image_dataset(folder, count=12)
    return folder


def run(zoo_cli, *args: str, env=None):
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, "--json", *args, env=env)
    assert result.code == 0, result
    return result.json()


def top1_of(path: Path) -> dict[str, int]:
    with path.open(newline="") as f:
        return {row["id"]: int(row["top1"]) for row in csv.DictReader(f)}


def test_a_sweep_gives_a_row_per_precision_and_the_accuracy_int8_costs(zoo_cli, images, tmp_path) -> None:
    out = tmp_path / "out"
    data = run(zoo_cli, "--precision", "fp32,int8", "--data", str(images), "--calib-images", "8", "--out", str(out))
    assert [(r["batch_size"], r["precision"]) for r in data["results"]] == [(4, "fp32"), (4, "int8")]
    assert data["precision"]["precisions"] == ["fp32", "int8"] and data["precision"]["reference"] == "fp32"
    calibration = data["precision"]["calibration"]
    assert (calibration["source"], calibration["images"], calibration["method"]) == (str(images), 8, "minmax")
    assert data["export"]["opset"] == 13  # raised to what the quantizer needs
    assert (data["measurement"]["mode"], data["measurement"]["streams"]) == ("latency", None)
    fp32, int8 = data["results"]
    # The cost, recomputed here from the two predictions files the run wrote.
    ref, got = top1_of(out / "predictions.csv"), top1_of(out / "predictions-int8.csv")
    assert sorted(ref) == sorted(got) and len(ref) == 12
    assert int8["agreement"] == pytest.approx(sum(ref[k] == got[k] for k in ref) / len(ref))
    assert int8["top1_points"] == pytest.approx(100 * (int8["top1"] - fp32["top1"]))
    assert int8["top5_points"] == pytest.approx(100 * (int8["top5"] - fp32["top5"]))
    assert "agreement" not in fp32 and "top1_points" not in fp32  # the reference has no cost
    assert data["accuracy"]["top1"] == fp32["top1"]  # `accuracy` stays the first precision's
    report = (out / "report.md").read_text()
    assert "| 4 int8 |" in report and "int8 against fp32" in report
    assert "top-1 agreement" in report


def test_the_terminal_table_shows_the_cost(zoo_cli, images, tmp_path) -> None:
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, "--precision", "fp32,int8", "--data", str(images),
                     "--calib-images", "8", "--out", str(tmp_path / "out"))
    assert result.code == 0, result
    assert "agreement" in result.stdout and "top-1 vs fp32" in result.stdout
    assert "precision: int8 against fp32" in result.stdout
    assert "calibrated on 8 images from" in result.stdout


def test_a_quantized_model_is_built_once_and_reused(zoo_cli, images, tmp_path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--precision", "int8", "--calib", str(images), "--calib-images", "8"]
    first = zoo_cli("run", TINY, "--bs", "4", *FAST, *args, "--out", str(tmp_path / "a"), env=env)
    second = zoo_cli("run", TINY, "--bs", "4", *FAST, *args, "--out", str(tmp_path / "b"), env=env)
    assert first.code == 0 and second.code == 0, (first, second)
    assert "quantize to int8 for onnxruntime at batch 4 (minmax) (built)" in first.stderr
    assert "quantize to int8 for onnxruntime at batch 4 (minmax) (cached)" in second.stderr
    assert "calibration set: 8 images" in second.stderr and "(cached)" in second.stderr
    assert len([p for p in (tmp_path / "cache" / "quantize").iterdir() if not p.name.startswith(".")]) == 1


def test_another_calibration_set_or_method_is_another_quantized_model(zoo_cli, images, tmp_path) -> None:
    cache = tmp_path / "cache"
    env = {"ZOO_CACHE_DIR": str(cache)}

    def keys() -> set[str]:
        return {p.name for p in (cache / "quantize").iterdir() if not p.name.startswith(".")}

    run(zoo_cli, "--precision", "int8", "--calib", str(images), "--calib-images", "8", env=env)
    first = keys()
    # The same images under other names: the same content, the same quantized model.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, path in enumerate(sorted(images.glob("*.JPEG"))[:8]):
        shutil.copy(path, renamed / f"copy_{i:02d}.JPEG")
    run(zoo_cli, "--precision", "int8", "--calib", str(renamed), "--calib-images", "8", env=env)
    assert keys() == first
    # Other images: another calibration set, another key.
    run(zoo_cli, "--precision", "int8", "--calib", str(images), "--calib-images", "12", env=env)
    assert len(keys()) == 2
    run(zoo_cli, "--precision", "int8", "--calib", str(images), "--calib-images", "8", "--calib-method", "entropy",
        env=env)
    assert len(keys()) == 3


def test_random_calibration_is_marked_performance_only(zoo_cli, tmp_path) -> None:
    out = tmp_path / "out"
    data = run(zoo_cli, "--precision", "int8", "--calib", "random", "--calib-images", "8", "--out", str(out))
    assert data["precision"]["performance_only"] is True
    assert data["precision"]["calibration"]["source"] == "random"
    assert [r["precision"] for r in data["results"]] == ["int8"]
    assert "noise, performance only" in (out / "report.md").read_text()


@pytest.mark.parametrize("args, message, code", [
    (["--precision", "fp16"], "--precision fp16: backend 'onnxruntime' computes in fp32, int8 only", 2),
    (["--precision", "int4"], "--precision: 'int4' is not a precision zoo knows", 2),
    (["--precision", "int8"], "--precision int8 needs images to calibrate on, and this run has none", 2),
    (["--calib", "random"], "--calib is for a quantized precision, and this run asks for fp32", 2),
    (["--calib-images", "64"], "--calib-images is for a quantized precision, and this run asks for fp32", 2),
    (["--precision", "int8", "--calib", "random", "--calib-method", "magic"],
     "--calib-method magic: the quantizer of backend 'onnxruntime' offers minmax, entropy, percentile", 2),
    (["--precision", "int8", "--calib", "random", "--calib-images", "2"],
     "--calib-images 2 is fewer than batch size 4", 2),
    (["--precision", "int8", "--calib", "random", "--calib-images", "0"], "--calib-images: 0 must be at least 1", 2),
    (["--precision", "int8", "--calib", "no-such-folder"], "data folder not found: no-such-folder", 3),
])
def test_what_cannot_be_done_is_one_line_before_any_work(zoo_cli, args, message, code) -> None:
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, *args)
    one_error(result, code)
    assert message in result.stderr
    assert "export" not in result.stderr  # said before anything is built


def test_a_calibration_folder_without_images_is_one_line(zoo_cli, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, "--precision", "int8", "--calib", str(tmp_path / "empty"))
    one_error(result, 3)
    assert "no image to calibrate on in" in result.stderr


def test_an_unreadable_calibration_image_is_one_line(zoo_cli, images, tmp_path) -> None:
    folder = tmp_path / "calib"
    shutil.copytree(images, folder)
    (folder / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"not a jpeg")
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, "--precision", "int8", "--calib", str(folder),
                     "--calib-images", "8", env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    one_error(result, 3)
    assert "cannot read calibration image" in result.stderr and "ILSVRC2012_val_00000002.JPEG" in result.stderr


def test_zoo_report_compares_runs_of_several_precisions_row_by_row(zoo_cli, images, tmp_path) -> None:
    for name in ("a", "b"):
        run(zoo_cli, "--precision", "fp32,int8", "--calib", "random", "--calib-images", "8", "--out",
            str(tmp_path / name))
    result = zoo_cli("report", str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json"), "--json")
    assert result.code == 0, result
    rows = result.json()["rows"]
    assert [(r["batch_size"], r["precision"]) for r in rows] == [(4, "fp32"), (4, "int8")]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_run_killed_while_it_quantizes_reruns_cleanly(tmp_path: Path) -> None:
    cache, mark = tmp_path / "cache", tmp_path / "quantizing"
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache), "ZOO_PLUGINS": "zoo_tiny,zoo_slowquant",
           "ZOO_SLOWQ_MARK": str(mark), "ZOO_SLOWQ_SECONDS": "60"}
    args = [sys.executable, "-m", "zoo_core", "run", TINY, "--backend", "slowq-cpu", "--bs", "4", *FAST,
            "--precision", "int8", "--calib", "random", "--calib-images", "8", "--json"]
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert list((cache / "quantize").glob(".*.tmp-*")), "the kill landed in the quantize stage"
    env["ZOO_SLOWQ_SECONDS"] = "0"
    again = subprocess.run([*args, "--out", str(tmp_path / "again")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "quantize to int8 for slowq-cpu at batch 4 (minmax) (built)" in again.stderr
    assert not list((cache / "quantize").glob(".*.tmp-*"))  # the killed build's folder is gone
    (built,) = [p for p in (cache / "quantize").iterdir() if p.is_dir()]
    assert (built / "manifest.json").is_file()
    assert json.loads(again.stdout)["results"][0]["precision"] == "int8"


def test_a_row_says_what_its_compiled_model_computes_in(zoo_cli, ascend_env, tmp_path) -> None:
    """No --precision, but an fp32 precision mode: the .om computes in fp32, and the row says so (not the
    backend's native fp16)."""
    env = {**ascend_env, "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    forced = run(zoo_cli, "--backend", "ascend", "--precision-mode", "force_fp32", env=env)
    assert [r["precision"] for r in forced["results"]] == ["fp32"]
    assert forced["precision"]["precisions"] == ["fp32"]
    native = run(zoo_cli, "--backend", "ascend", env=env)
    assert [r["precision"] for r in native["results"]] == ["fp16"]


def test_fail_below_names_the_precision_that_regressed(zoo_cli, tmp_path) -> None:
    """Two runs of fp32 and int8: only B's int8 row is slower. The regression names batch 4 int8, once, with its
    ratio; before, it read 'batch 4, 4' and judged the pair by batch size alone."""
    data = run(zoo_cli, "--precision", "fp32,int8", "--calib", "random", "--calib-images", "8")
    slower = json.loads(json.dumps(data))
    for row in slower["results"]:
        if row["precision"] == "int8":
            row["throughput"] /= 2
            row["latency_ms"] = {k: v * 2 for k, v in row["latency_ms"].items()}
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "b.json").write_text(json.dumps(slower))
    result = zoo_cli("report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--fail-below", "0.9")
    assert result.code == 4 and "Traceback" not in result.stderr, result
    assert "throughput regressed at batch 4 int8: B/A down to 0.500 at batch 4 int8" in result.stderr, result
