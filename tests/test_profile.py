"""``zoo run --profile`` (#16): per-operator time tables from ONNX Runtime's and torch's profilers, in the terminal,
results.json, profile.csv and report.md; ais_bench's --profiler on Ascend; what cannot be profiled, refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from test_bad_inputs import one_error
from zoo_core.backends.onnxruntime import trace_operators

TINY = "resnest-tiny"
FAST = ["--weights", "random", "--warmup", "0", "--iterations", "2"]


def profiled(zoo_cli, out: Path, *args: str) -> dict:
    result = zoo_cli("run", TINY, "--bs", "2", *FAST, "--profile", "--profile-batches", "3", "--out", str(out), *args)
    assert result.code == 0, result
    assert "profile: batch 2 (fp32)" in result.stdout and "top op types" in result.stdout
    return json.loads((out / "results.json").read_text())


def test_onnxruntime_profile_goes_to_results_csv_and_report(zoo_cli, tmp_path) -> None:
    out = tmp_path / "run"
    data = profiled(zoo_cli, out)
    assert data["results"][0]["timed_batches"] == 2  # the profiled batches are extra, not timed
    block = data["profile"]
    assert block["batches"] == 3 and len(block["tables"]) == 1
    table = block["tables"][0]
    assert (table["batch_size"], table["precision"]) == (2, "fp32") and table["source"].startswith("onnxruntime")
    assert 0 < len(table["op_types"]) <= 20 and 0 < len(table["nodes"]) <= 20
    times = [t["ms"] for t in table["op_types"]]
    assert times == sorted(times, reverse=True)
    assert sum(t["ms"] for t in table["op_types"]) == pytest.approx(table["operator_ms"])  # every op type shown
    assert sum(t["share"] for t in table["op_types"]) == pytest.approx(1.0)
    assert "Conv" in {t["op_type"] for t in table["op_types"]}
    assert table["coverage"] == pytest.approx(table["operator_ms"] / table["wall_ms"])
    assert 0 < table["coverage"] <= 1.05
    trace = list((out / "profile" / "bs2-fp32").glob("onnxruntime-trace*.json"))
    assert len(trace) == 1  # ONNX Runtime's own trace, kept for chrome://tracing
    with (out / "profile.csv").open(newline="") as f:
        lines = list(csv.DictReader(f))
    assert {line["table"] for line in lines} == {"op_type", "node"}
    assert [line["name"] for line in lines if line["table"] == "node"] == [n["node"] for n in table["nodes"]]
    report = (out / "report.md").read_text()
    assert "## Operator profile" in report and f"| {table['nodes'][0]['node']} |" in report


def test_trace_counts_only_the_profiled_runs() -> None:
    """ONNX Runtime's trace also holds the warm-up run: its kernels stay out of the table."""
    def run(ts: float, dur: float) -> list[dict]:
        return [{"cat": "Session", "name": "model_run", "ts": ts, "dur": dur},
                {"cat": "Node", "name": "conv_fence_before", "ts": ts + 1, "dur": 0, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "conv_kernel_time", "ts": ts + 1, "dur": dur - 2, "args": {"op_name": "Conv"}}]

    events = run(0, 1000) + run(2000, 100) + run(3000, 110)
    assert trace_operators(events, 2) == (("conv", "Conv", 98.0), ("conv", "Conv", 108.0))


def test_torch_profile_attributes_operators_to_modules(zoo_cli, tmp_path) -> None:
    table = profiled(zoo_cli, tmp_path / "run", "--backend", "torch")["profile"]["tables"][0]
    assert table["source"].startswith("torch")
    assert "Conv2d" in {t["op_type"] for t in table["op_types"]}
    assert any(n["node"].startswith("layer") for n in table["nodes"])  # module names, as named_modules() gives
    assert 0.8 < table["coverage"] <= 1.05


def test_a_backend_without_a_profiler_is_refused_before_any_work(zoo_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_PLUGINS", "zoo_tiny,zoo_core.testing")  # the test backend 'fake': no zoo_profile
    result = zoo_cli("run", TINY, "--backend", "fake", *FAST, "--profile", "--out", str(tmp_path / "run"))
    one_error(result, 2)
    assert "--profile: backend 'fake' has no profiler" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "said"), [(["--profile-batches", "3"], "only applies with --profile"),
                                            (["--profile", "--profile-batches", "0"], "must be at least 1")])
def test_bad_profile_flags(zoo_cli, args, said) -> None:
    result = zoo_cli("run", TINY, *FAST, *args)
    one_error(result, 2)
    assert said in result.stderr


def test_ascend_dry_run_shows_the_profiler_command(zoo_cli, ascend_env) -> None:
    result = zoo_cli("run", TINY, "--backend", "ascend", "--bs", "2", "--profile", "--profile-batches", "4",
                     "--dry-run", "--soc", "Ascend310P3", env=ascend_env)
    assert result.code == 0, result
    assert ("python3 -m ais_bench --model=resnest-tiny_bs2.om --loop=4 --batchsize=2 --device=0 "
            "--output=profile_bs2 --profiler=1") in result.stdout


def test_ascend_profile_on_the_fakes_says_it_needs_real_hardware(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", TINY, "--backend", "ascend", "--bs", "2", *FAST, "--profile", "--profile-batches", "2",
                     "--out", str(tmp_path / "run"), env=ascend_env)
    one_error(result, 3)
    assert "ais_bench --profiler 1 failed" in result.stderr and "real Ascend NPU" in result.stderr
    assert (tmp_path / "run" / "profile" / "bs2-fp16" / "ais_bench-profiler.log").is_file()


@pytest.mark.slow
def test_the_profile_sums_to_the_measured_inference_time(zoo_cli, tmp_path) -> None:
    """Acceptance (#16): ResNeSt-50 at batch 1, where kernel time dominates: the operators' time over the profiled
    batches is the wall time of those batches within 10 %."""
    result = zoo_cli("run", "resnest50", "--bs", "1", *FAST, "--profile", "--profile-batches", "5", "--json",
                     "--out", str(tmp_path / "run"))
    assert result.code == 0, result
    table = result.json()["profile"]["tables"][0]
    assert table["coverage"] == pytest.approx(1.0, abs=0.10), table
