"""The fake Ascend tools (tests/fakes) honour the contract in shared/ascend-tools.md, rejections included."""

from __future__ import annotations

import inspect
import json
import os
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fakes.env import GENERATIONS, PYTHON, fake_ascend_env
from zoo_core.backends.ascend import parse_npu_smi

FAILED = "ATC run failed, Please check the detail log, Try 'atc --help' for more information"
SUCCESS = "ATC run success, welcome to the next use."
INPUT = "actual_input_1"
SHAPE = (3, 8, 8)


def tiny_onnx(path: Path, *, opset: int = 11, batch: int | str = "batch") -> Path:
    """Conv+Relu+GlobalAveragePool+Flatten+Softmax: ``actual_input_1`` [batch,3,8,8] -> ``output1`` [batch,4]."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")]
    nodes = [
        helper.make_node("Conv", [INPUT, "W", "B"], ["conv"], name="Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="Relu_1"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="GlobalAveragePool_2"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="Flatten_3"),
        helper.make_node("Softmax", ["flat"], ["output1"], name="Softmax_4", axis=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, *SHAPE])],
                              [helper.make_tensor_value_info("output1", TensorProto.FLOAT, [batch, 4])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def reference(model: Path, batch: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {INPUT: batch})[0]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return fake_ascend_env(os.environ)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    tiny_onnx(folder / "tiny.onnx")
    tiny_onnx(folder / "tiny_opset17.onnx", opset=17)
    tiny_onnx(folder / "tiny_fixed1.onnx", batch=1)
    return folder


def run(args: list[str], env: dict[str, str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env={**env, **extra}, cwd=cwd, capture_output=True, text=True, timeout=120)


def atc(env: dict[str, str], cwd: Path, *flags: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return run(["atc", *flags], env, cwd, **extra)


def base_flags(models: Path, output: str = "out/tiny_bs4", shape: str = f"{INPUT}:4,3,8,8") -> list[str]:
    return ["--framework=5", f"--model={models / 'tiny.onnx'}", f"--output={output}", "--input_format=NCHW",
            f"--input_shape={shape}", "--soc_version=Ascend310P3", "--log=error"]


@pytest.fixture(scope="module")
def om_bs4(env: dict[str, str], models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled in float32: the tests that use it are about shapes, order and files, and compare with ONNX
    Runtime to 1e-6 (tests/test_trust_precision.py tests what ATC's default, float16, does to the numbers)."""
    scratch = tmp_path_factory.mktemp("atc")
    proc = atc(env, scratch, *base_flags(models), "--precision_mode=force_fp32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return scratch / "out" / "tiny_bs4.om"


def assert_failed(proc: subprocess.CompletedProcess[str], code: str, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert FAILED in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if line.startswith(f"{code}: "))
    for needle in needles:
        assert needle in line


# -------------------------------------------------------------------------
# atc
# -------------------------------------------------------------------------


def test_atc_without_the_cann_environment_cannot_load_its_libraries(env, models, tmp_path):
    bare = {k: v for k, v in env.items() if k != "ASCEND_TOOLKIT_HOME"}
    proc = atc(bare, tmp_path, *base_flags(models))
    assert proc.returncode == 127
    assert "error while loading shared libraries: libascend_hal.so" in proc.stderr


@pytest.mark.parametrize(("change", "code", "needle"), [
    ({"soc_version": None}, "E10054", "[--soc_version]"),
    ({"soc_version": ""}, "E10054", "[--soc_version]"),
    ({"output": None}, "E10054", "[--output]"),
    ({"framework": "3"}, "E10007", "[--framework]"),
    ({"framework": None}, "E10007", "[--framework]"),
    ({"log": "verbose"}, "E10010", "[verbose]"),
    ({"soc_version": "310P3"}, "E10001", "[--soc_version]"),
    ({"precision_mode": "fp16"}, "E10001", "[--precision_mode]"),
    ({"input_format": "NC1HWC0"}, "E10001", "[--input_format]"),
    ({"no_such_flag": "1"}, "E10001", "[--no_such_flag]"),
    ({"insert_op_conf": "missing.cfg"}, "E19000", "missing.cfg"),
])
def test_atc_rejects_bad_parameters(env, models, tmp_path, change, code, needle):
    flags = dict(flag[2:].split("=", 1) for flag in base_flags(models))
    for key, value in change.items():
        if value is None:
            del flags[key]
        else:
            flags[key] = value
    proc = atc(env, tmp_path, *(f"--{k}={v}" for k, v in flags.items()))
    assert_failed(proc, code, needle)
    assert not list(tmp_path.rglob("*.om"))


@pytest.mark.parametrize(("model", "shape", "code", "needle"), [
    ("tiny.onnx", "image:4,3,8,8", "E10016", "opname [image] is not exist in model"),
    ("tiny.onnx", None, "E10001", "dynamic dims"),
    ("tiny.onnx", f"{INPUT}:4,3,8,9", "E10002", "fixed to 8"),
    ("tiny.onnx", f"{INPUT}:4,3,8", "E10002", "rank 4"),
    ("tiny.onnx", f"{INPUT}:-1,3,8,8", "E10002", "--dynamic_batch_size"),
    ("tiny_fixed1.onnx", f"{INPUT}:4,3,8,8", "E10002", "fixed to 1"),  # onnxsim folded batch 1, compiled at 4
    ("tiny_opset17.onnx", f"{INPUT}:4,3,8,8", "E19010", "No parser is registered for Op [Conv_0, optype "
                                                        "[ai.onnx::17::Conv]]."),
])
def test_atc_checks_the_model(env, models, tmp_path, model, shape, code, needle):
    flags = ["--framework=5", f"--model={models / model}", "--output=out/m", "--soc_version=Ascend310P3"]
    proc = atc(env, tmp_path, *flags, *([f"--input_shape={shape}"] if shape else []))
    assert_failed(proc, code, needle)


def test_atc_reports_ops_without_a_kernel(env, models, tmp_path):
    proc = atc(env, tmp_path, *base_flags(models), FAKE_ATC_UNSUPPORTED_OPS="Softmax,Erf")
    assert_failed(proc, "EZ3003", "No supported Ops kernel and engine are found for [Softmax_4], optype [Softmax].")


def test_atc_can_die_on_a_signal_with_no_message(env, models, tmp_path):
    proc = atc(env, tmp_path, *base_flags(models), FAKE_ATC_CRASH="1")
    assert proc.returncode == -signal.SIGSEGV
    assert "ATC run" not in proc.stdout and not proc.stderr
    assert not list(tmp_path.rglob("*.om"))


def test_atc_success_writes_the_om_and_its_side_files(env, models, tmp_path):
    proc = atc(env, tmp_path, "--framework", "5", "--model", str(models / "tiny.onnx"), "--output", "out/tiny_bs4",
               "--input-shape", f"{INPUT}:4,3,8,8", "--soc-version", "Ascend310P3")  # the other spellings
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines()[-1] == SUCCESS
    assert (tmp_path / "out" / "tiny_bs4.om").read_bytes().startswith(b"FAKEOM")
    assert (tmp_path / "fusion_result.json").is_file()


def test_atc_may_name_the_om_after_the_os(env, models, tmp_path):
    proc = atc(env, tmp_path, *base_flags(models), FAKE_ATC_OS_SUFFIX="1")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == SUCCESS
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"tiny_bs4_linux_{platform.machine().lower()}.om"]


# -------------------------------------------------------------------------
# ais_bench's InferSession, in this process
# -------------------------------------------------------------------------


def import_interface(env, monkeypatch, generation: str):
    """``ais_bench.infer.interface`` of ``generation``, imported under the fake environment."""
    for key in ("ASCEND_TOOLKIT_HOME", "FAKE_NPU_CHIP", "FAKE_NPU_COUNT"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("FAKE_AIS_BENCH_GENERATION", generation)
    monkeypatch.syspath_prepend(str(PYTHON))
    forget_interface()
    from ais_bench.infer import interface

    return interface


def forget_interface() -> None:
    for name in [m for m in sys.modules if m == "fake_om" or m.split(".")[0] == "ais_bench"]:
        del sys.modules[name]


@pytest.fixture(params=GENERATIONS)
def ais(env, monkeypatch, request):
    """``ais_bench.infer.interface`` of each generation, and forgotten afterwards."""
    yield import_interface(env, monkeypatch, request.param)
    forget_interface()


@pytest.fixture
def older(env, monkeypatch):
    yield import_interface(env, monkeypatch, "older")
    forget_interface()


@pytest.fixture
def newer(env, monkeypatch):
    yield import_interface(env, monkeypatch, "newer")
    forget_interface()


def device_times(session) -> list[float]:
    """Each inference's device time in ms, whatever the generation."""
    if hasattr(session, "summary"):
        return [end - start for start, end in session.summary().exec_time_list]
    return list(session.sumary().exec_time_list)


def reset_times(session) -> None:
    (getattr(session, "reset_summaryinfo", None) or session.reset_sumaryinfo)()


def release(session) -> None:
    (getattr(session, "free_resource", None) or session.finalize)()


def test_ais_bench_does_not_import_without_the_cann_environment(env, tmp_path):
    bare = {k: v for k, v in env.items() if k != "ASCEND_TOOLKIT_HOME"}
    proc = run([sys.executable, "-c", "import ais_bench.infer.interface"], bare, tmp_path)
    assert proc.returncode != 0 and "libascendcl.so" in proc.stderr


def test_infer_session_runs_the_exact_shape_and_nothing_else(ais, om_bs4, models):
    session = ais.InferSession(0, str(om_bs4))
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, str(inp.datatype), inp.size) == (INPUT, [4, *SHAPE], "dtype.float32", 4 * 192 * 4)
    assert (inp.realsize, inp.format) == (inp.size, 0)  # NCHW
    assert (out.name, out.shape, out.size) == ("output1", [4, 4], 64)
    batch = np.random.default_rng(1).standard_normal((4, *SHAPE)).astype(np.float32)
    for bad in (batch[:3], batch.astype(np.float64), batch.reshape(4, 3, 64)):
        with pytest.raises(RuntimeError):
            session.infer([bad], mode="static")
    (result,) = session.infer([batch], mode="static")
    np.testing.assert_allclose(result, reference(models / "tiny.onnx", batch), rtol=0, atol=1e-6)
    session.infer([batch])
    times = device_times(session)
    assert len(times) == 2 and all(t > 0 for t in times)
    reset_times(session)
    assert device_times(session) == []
    release(session)
    with pytest.raises(RuntimeError):
        session.infer([batch])


def test_an_unknown_generation_fails_the_import(env, tmp_path):
    bad = {**env, "FAKE_AIS_BENCH_GENERATION": "2024"}
    proc = run([sys.executable, "-c", "import ais_bench.infer.interface"], bad, tmp_path)
    assert proc.returncode != 0 and "FAKE_AIS_BENCH_GENERATION='2024'" in proc.stderr
    with pytest.raises(ValueError):
        fake_ascend_env(os.environ, generation="2024")
    assert fake_ascend_env(os.environ)["FAKE_AIS_BENCH_GENERATION"] == "newer"
    assert fake_ascend_env(os.environ, generation="older")["FAKE_AIS_BENCH_GENERATION"] == "older"


def test_older_generation_api(older, om_bs4):
    session = older.InferSession(0, str(om_bs4))
    for name in ("summary", "reset_summaryinfo", "free_resource"):
        assert not hasattr(session, name), name
    batch = np.ones((4, *SHAPE), np.float32)
    session.infer([batch], mode="dymbatch")  # the mode is ignored
    session.infer([batch], mode="no such mode")
    (first, _) = session.sumary().exec_time_list
    assert type(first) is float and first > 0
    other = older.InferSession(0, str(om_bs4))
    session.finalize()  # this session only
    with pytest.raises(RuntimeError):
        session.infer([batch])
    assert other.infer([batch])[0].shape == (4, 4)


def test_newer_generation_api(newer, om_bs4):
    session = newer.InferSession(0, str(om_bs4))
    for name in ("sumary", "reset_sumaryinfo"):
        assert not hasattr(session, name), name
    assert isinstance(inspect.getattr_static(newer.InferSession, "finalize"), staticmethod)
    batch = np.ones((4, *SHAPE), np.float32)
    for mode in ("dymbatch", "no such mode"):
        with pytest.raises(RuntimeError):
            session.infer([batch], mode=mode)
    session.infer([batch], mode="static")
    ((start, end),) = session.summary().exec_time_list
    assert type(start) is float and type(end) is float and end > start
    kept = newer.InferSession(0, str(om_bs4))
    session.free_resource()  # this session only
    with pytest.raises(RuntimeError):
        session.infer([batch])
    assert kept.infer([batch])[0].shape == (4, 4)


def test_newer_finalize_invalidates_every_open_session_of_the_process(newer, om_bs4):
    batch = np.ones((4, *SHAPE), np.float32)
    first, second = newer.InferSession(0, str(om_bs4)), newer.InferSession(0, str(om_bs4))
    first.infer([batch])
    newer.InferSession.finalize()
    for session in (first, second):
        with pytest.raises(RuntimeError, match="finalize"):
            session.infer([batch])
        with pytest.raises(RuntimeError):
            session.get_inputs()
    fresh = newer.InferSession(0, str(om_bs4))  # ACL is initialised again
    assert fresh.infer([batch])[0].shape == (4, 4)
    with pytest.raises(RuntimeError):
        first.infer([batch])  # the old ones stay dead


def test_infer_session_rejects_bad_devices_files_and_chips(ais, om_bs4, models, monkeypatch):
    with pytest.raises(RuntimeError):
        ais.InferSession(1, str(om_bs4))  # one NPU: device 1 does not exist
    with pytest.raises(RuntimeError):
        ais.InferSession(0, str(models / "tiny.onnx"))  # not an .om
    monkeypatch.setenv("FAKE_NPU_CHIP", "910B3")
    with pytest.raises(RuntimeError, match="Ascend310P3"):
        ais.InferSession(0, str(om_bs4))  # built for another chip


def test_infer_session_sees_only_the_visible_devices_renumbered_from_0(ais, om_bs4, monkeypatch):
    monkeypatch.setenv("FAKE_NPU_COUNT", "4")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "3")  # as Ray sets it for an actor given NPU 3
    ais.InferSession(0, str(om_bs4)).finalize()
    with pytest.raises(RuntimeError):
        ais.InferSession(3, str(om_bs4))  # the physical id is not what the process sees
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "1,2")
    ais.InferSession(1, str(om_bs4)).finalize()
    with pytest.raises(RuntimeError):
        ais.InferSession(2, str(om_bs4))


@pytest.fixture(scope="module")
def om_dyn(env, models, tmp_path_factory) -> Path:
    """Batches 2 and 8 of the tiny model, in float32."""
    scratch = tmp_path_factory.mktemp("atc_dyn")
    proc = atc(env, scratch, *base_flags(models, "dyn", f"{INPUT}:-1,3,8,8"), "--dynamic_batch_size=2,8",
               "--precision_mode=force_fp32")
    assert proc.returncode == 0, proc.stdout
    return scratch / "dyn.om"


def test_a_dynamic_batch_model_describes_minus_one_and_the_largest_size(ais, om_dyn):
    session = ais.InferSession(0, str(om_dyn))
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.shape, inp.size, inp.realsize) == ([-1, *SHAPE], 8 * 192 * 4, 8 * 192 * 4)
    assert (out.shape, out.size) == ([-1, 4], 8 * 4 * 4)


def test_set_dynamic_batchsize_then_dymbatch_works_on_both_generations(ais, om_dyn, models):
    session = ais.InferSession(0, str(om_dyn))
    batch = np.random.default_rng(2).standard_normal((2, *SHAPE)).astype(np.float32)
    for wrong in (4, 1):
        with pytest.raises(RuntimeError):
            session.set_dynamic_batchsize(wrong)
    session.set_dynamic_batchsize(2)
    (got,) = session.infer([batch], mode="dymbatch")
    np.testing.assert_allclose(got, reference(models / "tiny.onnx", batch), rtol=0, atol=1e-6)


def test_a_static_model_has_no_dynamic_batch(ais, om_bs4):
    with pytest.raises(RuntimeError):
        ais.InferSession(0, str(om_bs4)).set_dynamic_batchsize(4)


def test_older_needs_set_dynamic_batchsize_and_exactly_that_batch(older, om_dyn):
    session = older.InferSession(0, str(om_dyn))
    batch = np.ones((8, *SHAPE), np.float32)
    with pytest.raises(RuntimeError, match="set_dynamic_batchsize"):
        session.infer([batch], mode="dymbatch")  # the mode does not set the batch
    session.set_dynamic_batchsize(2)
    with pytest.raises(RuntimeError):
        session.infer([batch], mode="dymbatch")  # 8 is a listed size, but not the one set
    assert session.infer([batch[:2]], mode="static")[0].shape == (2, 4)  # the mode is ignored
    session.set_dynamic_batchsize(8)
    assert session.infer([batch])[0].shape == (8, 4)


def test_newer_dymbatch_takes_the_batch_from_the_array(newer, om_dyn):
    session = newer.InferSession(0, str(om_dyn))
    batch = np.ones((8, *SHAPE), np.float32)
    with pytest.raises(RuntimeError):
        session.infer([batch], mode="static")
    with pytest.raises(RuntimeError):
        session.infer([batch[:4]], mode="dymbatch")  # not a listed size
    assert session.infer([batch[:2]], mode="dymbatch")[0].shape == (2, 4)
    assert session.infer([batch], mode="dymbatch")[0].shape == (8, 4)


# -------------------------------------------------------------------------
# python -m ais_bench
# -------------------------------------------------------------------------

COMPUTE = re.compile(r"^\[INFO\] NPU_compute_time \(ms\): min = [\d.]+, max = [\d.]+, mean = ([\d.]+), "
                     r"median = [\d.]+, percentile\(99%\) = [\d.]+$")
THROUGHPUT = re.compile(r"^\[INFO\] throughput 1000\*batchsize\.mean\((\d+)\)/NPU_compute_time\.mean\(([\d.]+)\): "
                        r"([\d.]+)$")


def bench(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "ais_bench", *args], env, cwd)


def test_ais_bench_infers_a_folder_in_natural_order_and_pads_the_last_batch(env, om_bs4, models, tmp_path):
    prep = tmp_path / "prep"
    prep.mkdir()
    samples = {}
    for number in (10, 2, 1, 11, 3, 9):
        samples[f"img{number}"] = np.random.default_rng(number).standard_normal(SHAPE).astype(np.float32)
        samples[f"img{number}"].tofile(prep / f"img{number}.bin")
    (prep / "notes.txt").write_text("not an input")
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--input=./prep", "--output=./", "--output_dirname=./result",
                 "--batchsize=4", "--outfmt", "TXT")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    *_, compute, throughput = proc.stdout.splitlines()
    assert COMPUTE.match(compute) and THROUGHPUT.match(throughput)
    assert THROUGHPUT.match(throughput).group(1) == "4"

    summary = json.loads((tmp_path / "result_summary.json").read_text())
    order = ["img1", "img2", "img3", "img9", "img10", "img11"]
    assert [Path(f).stem for b in ("0", "1") for f in summary["filesinfo"][b]["infiles"]] == order
    assert [Path(f).name for f in summary["filesinfo"]["1"]["outfiles"]] == ["img10_0.txt", "img11_0.txt"]
    assert sorted(p.name for p in (tmp_path / "result").iterdir()) == sorted(f"{s}_0.txt" for s in order)
    times = summary["NPU_compute_time"]
    assert times["count"] == 2 and set(times) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert summary["throughput"] == pytest.approx(1000 * 4 / times["mean"])
    assert {"H2D_latency", "D2H_latency"} <= set(summary)

    expected = reference(models / "tiny.onnx", np.stack([samples[s] for s in order]))
    for row, stem in zip(expected, order):
        written = np.loadtxt(tmp_path / "result" / f"{stem}_0.txt", ndmin=2)
        np.testing.assert_allclose(written, row[None], rtol=0, atol=1e-6)


def test_ais_bench_pure_performance_mode(env, om_bs4, tmp_path):
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--loop=5", "--batchsize=4", "--display_all_summary", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[INFO] H2D_latency (ms): ") for line in lines)
    mean = float(COMPUTE.match(lines[-2]).group(1))
    batch, shown_mean, value = THROUGHPUT.match(lines[-1]).groups()
    assert batch == "4" and float(shown_mean) == mean
    assert not list(tmp_path.iterdir())  # no --output: no files


def test_ais_bench_rejects_a_wrong_batch_size_or_input_size(env, om_bs4, tmp_path):
    assert bench(env, tmp_path, f"--model={om_bs4}", "--batchsize=8").returncode == 1
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "a.bin").write_bytes(bytes(100))  # 100 bytes do not divide 4*3*8*8*4
    proc = bench(env, tmp_path, f"--model={om_bs4}", f"--input={odd}", "--output=out", "--batchsize=4")
    assert proc.returncode == 1 and "does not divide" in proc.stderr


# -------------------------------------------------------------------------
# npu-smi
# -------------------------------------------------------------------------


def test_npu_smi_info_shows_the_chip_and_devices(tmp_path):
    env = fake_ascend_env(os.environ, chip="910B3", devices=2)
    proc = run(["npu-smi", "info"], env, tmp_path)
    assert proc.returncode == 0
    assert "npu-smi 23.0.rc2" in proc.stdout and "Version: 23.0.rc2" in proc.stdout
    info = parse_npu_smi(proc.stdout)
    assert [d["chip"] for d in info["devices"]] == ["910B3", "910B3"] and info["driver"] == "23.0.rc2"
    assert run(["npu-smi"], env, tmp_path).returncode != 0
    assert run(["npu-smi", "reset"], env, tmp_path).returncode != 0
