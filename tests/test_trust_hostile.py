"""Values that pass a plain ``<``/``>`` check but would yield a wrong or unprintable number (NaN and infinity
fail every comparison), and options that were silently ignored: each is one line and a usage error now.
Found trying the finished trust work as a hostile user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_bad_inputs import one_error
from zoo_core.errors import EXIT_BUG, EXIT_ENV, EXIT_USAGE
from zoo_core.testing import write_image_dataset

FAST = ("--warmup", "0", "--iterations", "1")
RUN = ("run", "resnest-tiny", "--bs", "2", "--weights", "random")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param((*RUN, "--max-seconds", "nan"),
                     "Error: --max-seconds must be positive and --agree between 0 and 1",
                     id="max-seconds-nan"),
        pytest.param((*RUN, "--max-seconds", "inf"),
                     "Error: --max-seconds must be positive and --agree between 0 and 1",
                     id="max-seconds-inf"),
        pytest.param((*RUN, *FAST, "--shard-images", "0"), "Error: --shard-images: 0 must be at least 1",
                     id="shard-images-0"),
        pytest.param((*RUN, *FAST, "--shard-images", "-5"), "Error: --shard-images: -5 must be at least 1",
                     id="shard-images-negative"),
        pytest.param((*RUN, *FAST, "--limit", "0"), "Error: --limit 0 must be at least 1", id="limit-0-without-data"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--atol", "nan"), "Error: --atol and --rtol must be finite and not negative", id="atol-nan"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--atol", "inf"), "Error: --atol and --rtol must be finite and not negative", id="atol-inf"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--rtol", "nan"), "Error: --atol and --rtol must be finite and not negative", id="rtol-nan"),
        pytest.param((*RUN, "--device", "0,1", "--dry-run"),
                     "Error: --device 0,1: backend 'onnxruntime' runs on the CPU", id="dry-run-devices-on-cpu"),
        pytest.param(("report", "a", "b", "--unstable", "count"), "Error: --unstable only applies with --fail-below",
                     id="unstable-without-fail-below"),
        pytest.param(("report", "a", "b", "--fail-below", "nan"), "Error: --fail-below: nan is not a ratio above 0",
                     id="fail-below-nan"),
        pytest.param(("report", "a", "b", "--fail-below", "0"), "Error: --fail-below: 0 is not a ratio above 0",
                     id="fail-below-0"),
    ],
)
def test_values_no_comparison_can_judge_are_usage_errors(zoo_cli, tmp_path: Path, args: tuple[str, ...],
                                                          error: str) -> None:
    got, _ = one_error(zoo_cli(*args, "--out" if args[0] == "run" and "--dry-run" not in args else "--json",
                               *([str(tmp_path / "o")] if args[0] == "run" and "--dry-run" not in args else []),
                               cwd=tmp_path), EXIT_USAGE)
    assert got.startswith(error), got
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_metrics_plugin_returning_nan_is_one_line_naming_it(zoo_cli, tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 3)
    result = zoo_cli(*RUN, *FAST, "--data", str(data), "--workers", "1", "--out", str(tmp_path / "o"),
                     env={"ZOO_PLUGINS": "zoo_tiny,zoo_nanmetric"})
    error, note = one_error(result, EXIT_BUG)
    assert error == ("Error: metric 'mean_confidence' holds nan, not a finite number (zoo_metrics of plugin(s) "
                     "builtin:metrics, zoo_nanmetric)"), error
    assert note == "Note: report it to the authors of the plugin that computes it"
    assert not (tmp_path / "o" / "results.json").exists()



# -------------------------------------------------------------------------
# zoo report on an edited results.json: a figure no run can measure is one line, never a traceback or a ratio
# -------------------------------------------------------------------------


def _edited(row: dict, edit: str) -> str:
    """A results file whose first row (batch 2) is ``row`` with ``edit`` applied, as JSON text."""
    rows = [row, {**row, "batch_size": 4}]
    if edit == "duplicate":
        rows[1]["batch_size"] = 2
    elif edit == "bool":
        rows[0]["throughput"] = True
    elif edit == "negative":
        rows[0]["throughput"] = -5.0
    elif edit == "zero":
        rows[0]["throughput"] = 0
    elif edit == "latency":
        rows[0]["latency_ms"] = {**row["latency_ms"], "mean": -1.0}
    elif edit == "top1":
        rows[0]["top1"] = 1.5
    text = json.dumps({"schema": 1, "model": "m", "backend": "onnxruntime", "device": "cpu", "weights": "random",
                       "env": {}, "results": rows})
    if edit == "infinite":  # valid JSON that Python reads as float('inf')
        text = text.replace('"throughput": 10.0', '"throughput": 1e999', 1)
    elif edit.startswith("huge-int"):  # an integer no float holds, or one past int()'s 4300 digits
        text = text.replace('"throughput": 10.0', '"throughput": 1' + "0" * (5000 if "5000" in edit else 400), 1)
    return text


@pytest.mark.parametrize(("edit", "message"), [
    ("negative", "results/0/throughput: -5.0 is less than or equal to the minimum of 0"),
    ("zero", "results/0/throughput: 0 is less than or equal to the minimum of 0"),
    ("bool", "results/0/throughput: True is not of type 'number'"),
    ("duplicate", "results[1] repeats batch_size 2"),
    ("latency", "results/0/latency_ms/mean: -1.0 is less than the minimum of 0"),
    ("top1", "results/0/top1: 1.5 is greater than the maximum of 1"),
    ("infinite", "holds 1e999, a number beyond any float: its figures cannot be compared"),
    ("huge-int", "holds 1000000000000000000000…, a number beyond any float: its figures cannot be compared"),
    ("huge-int-5000", "holds 1000000000000000000000…, a number beyond any float: its figures cannot be compared"),
])
def test_zoo_report_refuses_a_results_file_with_a_figure_no_run_measures(zoo_cli, tmp_path: Path, edit: str,
                                                                          message: str) -> None:
    latency = dict.fromkeys(("mean", "p50", "p90", "p99", "min", "max"), 200.0)
    row = {"batch_size": 2, "throughput": 10.0, "throughput_e2e": 10.0, "latency_ms": latency, "top1": None,
           "top5": None, "images": None}
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(_edited(row, "none"))
    bad.write_text(_edited(row, edit))
    assert zoo_cli("report", str(good), str(good)).code == 0
    for args in ((str(good), str(bad)), (str(bad), str(good), "--json", "--fail-below", "0.9")):
        error, note = one_error(zoo_cli("report", *args), EXIT_ENV)
        assert error.startswith(f"Error: {bad} ") and error.endswith(message), error
        assert note.startswith("Note: "), note


def test_a_label_file_a_folder_dataset_would_not_use_is_a_usage_error(zoo_cli, tmp_path: Path) -> None:
    data, val = tmp_path / "cls", tmp_path / "val"
    write_image_dataset(val, 2)
    for name in ("a", "b"):
        write_image_dataset(data / name, 1)
        (data / name / "val_label.txt").unlink()
    error, note = one_error(zoo_cli(*RUN, *FAST, "--data", str(data), "--dataset", "folder", "--labels",
                                    str(val / "val_label.txt"), "--workers", "1", "--out", str(tmp_path / "o")),
                            EXIT_USAGE)
    assert error == ("Error: --labels labels a folder of images, and the folder dataset is labelled by its class "
                     "folders"), error
    assert note.startswith("Note: drop --labels")
    assert not (tmp_path / "o" / "results.json").exists()


HANG_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
import zoo_core.evaluate as ev
from zoo_core.datasets import Sample
from zoo_core.plugins import get_plugin_manager
from zoo_core.testing import TINY, write_image_dataset
ev.TERMINATE_GRACE_SECONDS = 1.0
folder = Path(sys.argv[1])
write_image_dataset(folder, 1)
image = next(folder.glob("*.JPEG"))
with ev.Preprocessor(TINY, "modelzoo", 1, get_plugin_manager()) as pre:
    list(pre.map([Sample("a", image, 0)]))
    pre.pool.apply(signal.signal, (signal.SIGTERM, signal.SIG_IGN))  # the worker now outlives its SIGTERM
    pre.pool.apply_async(time.sleep, (20,))  # and is busy when the pool is terminated
    time.sleep(0.5)
    workers = list(pre.pool._pool)
    start = time.monotonic()
print("ended", round(time.monotonic() - start, 1), [w.exitcode for w in workers])
"""


def test_a_worker_that_outlives_its_sigterm_cannot_hang_the_run(tmp_path: Path) -> None:
    """Found in CI: a `zoo preprocess` of 2 images hung for ever in the pool's terminate(), waiting for a worker
    that was still starting when the job ended and never got its SIGTERM. Workers are now forked with the stop
    signals blocked (unblocked once they set their own handling), and a worker still alive after a grace period
    is killed. This test makes a worker ignore SIGTERM outright: the pool must still end, and soon."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", HANG_SCRIPT, str(tmp_path / "img")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ended"), proc.stdout
    seconds, codes = proc.stdout.split(" ", 2)[1:]
    assert float(seconds) < 5, proc.stdout  # the grace period (1 s here), not the worker's 20 s task
    assert "None" not in codes, proc.stdout  # every worker has an exit code: none is left running
