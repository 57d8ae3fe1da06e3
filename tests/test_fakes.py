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


def assert_succeeded(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit code 0, the success line, and after it only warning lines."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert SUCCESS in lines, proc.stdout
    assert all(re.match(r"W\d{5}: ", line) for line in lines[lines.index(SUCCESS) + 1:]), proc.stdout


def test_atc_success_writes_the_om_and_its_side_files(env, models, tmp_path):
    proc = atc(env, tmp_path, "--framework", "5", "--model", str(models / "tiny.onnx"), "--output", "out/tiny_bs4",
               "--input-shape", f"{INPUT}:4,3,8,8", "--soc-version", "Ascend310P3")  # the other spellings
    assert_succeeded(proc)
    assert (tmp_path / "out" / "tiny_bs4.om").read_bytes().startswith(b"FAKEOM")
    assert (tmp_path / "fusion_result.json").is_file()


def test_atc_may_name_the_om_after_the_os(env, models, tmp_path):
    proc = atc(env, tmp_path, *base_flags(models), FAKE_ATC_OS_SUFFIX="1")
    assert_succeeded(proc)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"tiny_bs4_linux_{platform.machine().lower()}.om"]


def test_atc_prints_warning_lines_after_the_success_line(env, models, tmp_path):
    """As the real tool often does (W11001 for an op outside the high-priority library): a consumer that looks for
    the success line as the LAST line would call a good build a failure."""
    lines = atc(env, tmp_path, *base_flags(models)).stdout.splitlines()
    assert SUCCESS in lines and lines[-1].startswith("W11001: ")


@pytest.mark.parametrize("fmt", ["NHWC", "NC1HWC0"])
def test_atc_refuses_nhwc_for_onnx_models(env, models, tmp_path, fmt):
    flags = [f for f in base_flags(models) if not f.startswith("--input_format")]
    assert_failed(atc(env, tmp_path, *flags, f"--input_format={fmt}"), "E10001", "[--input_format]")
    assert not list(tmp_path.rglob("*.om"))


@pytest.mark.parametrize("fmt", ["NCHW", "ND"])
def test_atc_accepts_the_onnx_input_formats(env, models, tmp_path, fmt):
    flags = [f for f in base_flags(models) if not f.startswith("--input_format")]
    assert_succeeded(atc(env, tmp_path, *flags, f"--input_format={fmt}"))


def intermediate(model: Path, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """ONNX Runtime's values of the tensors ``names`` of ``model``."""
    proto = onnx.load(model)
    proto.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names
                              if n not in {o.name for o in proto.graph.output})
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {INPUT: batch})


@pytest.mark.parametrize(("out_nodes", "tensors"), [
    ("Relu_1:0;Softmax_4:0", ["relu", "output1"]),  # node:index, the original output listed too
    ("Flatten_3:0", ["flat"]),  # the original output is gone
    ("pool;relu", ["pool", "relu"]),  # ONNX tensor names, in the order given
    ("relu:0;output1", ["relu", "output1"]),  # a tensor name with index 0, the graph output's name
])
def test_atc_out_nodes_become_the_models_outputs(ais, env, models, tmp_path, out_nodes, tensors):
    proc = atc(env, tmp_path, *base_flags(models, "out/cut"), "--precision_mode=force_fp32",
               f"--out_nodes={out_nodes}")
    assert_succeeded(proc)
    session = ais.InferSession(0, str(tmp_path / "out" / "cut.om"))
    assert [o.name for o in session.get_outputs()] == tensors
    batch = np.random.default_rng(3).standard_normal((4, *SHAPE)).astype(np.float32)
    got = session.infer([batch])
    assert len(got) == len(tensors)
    for value, expected in zip(got, intermediate(models / "tiny.onnx", batch, tensors), strict=True):
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("out_nodes", "code", "needle"), [
    ("Nope_9:0", "E10016", "opname [Nope_9]"),
    ("nope", "E10016", "opname [nope]"),
    ("relu:1", "E10016", "opname [relu]"),  # a tensor has one "output"
    ("Relu_1:2", "E10001", "has 1 output(s)"),
    (";", "E10001", "empty"),
])
def test_atc_out_nodes_must_name_the_models_nodes_or_tensors(env, models, tmp_path, out_nodes, code, needle):
    proc = atc(env, tmp_path, *base_flags(models), f"--out_nodes={out_nodes}")
    assert_failed(proc, code, needle)
    assert not list(tmp_path.rglob("*.om"))


@pytest.mark.parametrize("out_nodes", ["relu:0;Relu_1:0", "Softmax_4:0;Relu_1:0;Softmax_4:0"])
def test_atc_out_nodes_refuses_a_tensor_listed_twice(env, models, tmp_path, out_nodes):
    """What ATC does with a repeated item is not documented: the fake refuses it, so zoo lists each tensor once."""
    proc = atc(env, tmp_path, *base_flags(models), f"--out_nodes={out_nodes}")
    assert_failed(proc, "E10001", "is listed twice", "[--out_nodes]")
    assert not list(tmp_path.rglob("*.om"))


def test_atc_out_nodes_without_the_original_output_drops_it_in_every_generation(ais, env, models, tmp_path):
    """--out_nodes replaces the outputs: the .om returns exactly the listed tensors, in that order, and the model's
    own output only where it is listed (here last)."""
    for out_nodes, tensors in (("Flatten_3:0;Relu_1:0", ["flat", "relu"]),
                               ("Flatten_3:0;Relu_1:0;Softmax_4:0", ["flat", "relu", "output1"])):
        target = tmp_path / str(len(tensors))
        target.mkdir()
        assert_succeeded(atc(env, target, *base_flags(models, "out/cut"), "--precision_mode=force_fp32",
                             f"--out_nodes={out_nodes}"))
        session = ais.InferSession(0, str(target / "out" / "cut.om"))
        assert [o.name for o in session.get_outputs()] == tensors
        batch = np.random.default_rng(5).standard_normal((4, *SHAPE)).astype(np.float32)
        got = session.infer([batch])
        assert [g.shape for g in got] == [e.shape for e in intermediate(models / "tiny.onnx", batch, tensors)]


def test_atc_out_nodes_in_float16_return_the_chips_values_and_change_nothing_else(ais, env, models, tmp_path):
    """Under ATC's default precision mode the marked tensors come back as float16 values near ONNX Runtime's, and the
    model's output is bit for bit the one of the same model compiled without --out_nodes."""
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    for folder, extra in ((plain, []), (marked, ["--out_nodes=Softmax_4:0;Conv_0:0;pool"])):
        folder.mkdir()
        assert_succeeded(atc(env, folder, *base_flags(models, "out/m"), *extra))
    batch = np.random.default_rng(6).standard_normal((4, *SHAPE)).astype(np.float32)
    (alone,) = ais.InferSession(0, str(plain / "out" / "m.om")).infer([batch])
    output, conv, pool = ais.InferSession(0, str(marked / "out" / "m.om")).infer([batch])
    np.testing.assert_array_equal(output, alone)
    for got, want in zip((output, conv, pool), intermediate(models / "tiny.onnx", batch, ["output1", "conv", "pool"]),
                         strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))  # float16 values
        assert not np.array_equal(got, want)  # not the float32 ones
        assert np.abs(got - want).max() <= 2e-3 * max(1.0, float(np.abs(want).max()))  # float16's error


def aipp_cfg(path: Path, **fields: object) -> Path:
    lines = ["aipp_op {", "    aipp_mode : static", "    input_format : RGB888_U8",
             *(f"    {key} : {value}" for key, value in fields.items()), "}"]
    path.write_text("\n".join(lines) + "\n")
    return path


NORMALISE = {"min_chn_0": 10.0, "min_chn_1": 20.0, "min_chn_2": 30.0,
             "var_reci_chn_0": 0.5, "var_reci_chn_1": 0.25, "var_reci_chn_2": 0.125}


@pytest.mark.parametrize("source", [{}, {"src_image_size_w": 0, "src_image_size_h": 0}])
def test_atc_aipp_without_a_source_size_takes_the_input_shape(ais, env, models, tmp_path, source):
    cfg = aipp_cfg(tmp_path / "aipp.cfg", **source, **NORMALISE)
    proc = atc(env, tmp_path, *base_flags(models), "--precision_mode=force_fp32", f"--insert_op_conf={cfg}")
    assert_succeeded(proc)
    session = ais.InferSession(0, str(tmp_path / "out" / "tiny_bs4.om"))
    (inp,) = session.get_inputs()
    assert (inp.shape, str(inp.datatype)) == ([4, 8, 8, 3], "dtype.uint8")
    pixels = np.random.default_rng(4).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    minimum = np.array([NORMALISE[f"min_chn_{c}"] for c in range(3)], np.float32)
    scale = np.array([NORMALISE[f"var_reci_chn_{c}"] for c in range(3)], np.float32)
    expected = reference(models / "tiny.onnx", ((pixels - minimum) * scale).transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(session.infer([pixels])[0], expected, rtol=0, atol=1e-6)


def test_atc_aipp_crop_must_stay_inside_the_source(env, models, tmp_path):
    cfg = aipp_cfg(tmp_path / "aipp.cfg", crop="true", load_start_pos_h=1, crop_size_h=8, crop_size_w=8)
    proc = atc(env, tmp_path, *base_flags(models), f"--insert_op_conf={cfg}")  # the source is the 8x8 input
    assert_failed(proc, "E10001", "crop leaves the source image")


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

NUMBER = r"[\d.]+(?:e[+-]?\d+)?"  # a float as Python prints it, unrounded
COMPUTE = re.compile(rf"^\[INFO\] NPU_compute_time \(ms\): min = {NUMBER}, max = {NUMBER}, mean = ({NUMBER}), "
                     rf"median = {NUMBER}, percentile\(99%\) = {NUMBER}$")
THROUGHPUT = re.compile(rf"^\[INFO\] throughput 1000\*batchsize\.mean\((\d+)\)/NPU_compute_time\.mean\(({NUMBER})\): "
                        rf"({NUMBER})$")


def bench(env: dict[str, str], cwd: Path, *args: str, generation: str = "newer") -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "ais_bench", *args], env, cwd, FAKE_AIS_BENCH_GENERATION=generation)


def write_samples(folder: Path, names: list[str], shape: tuple[int, ...] = SHAPE) -> dict[str, np.ndarray]:
    """One float32 sample per name, written as ``folder/<name>``; returned by name."""
    folder.mkdir(exist_ok=True)
    samples = {}
    for number, name in enumerate(names):
        samples[name] = np.random.default_rng(number).standard_normal(shape).astype(np.float32)
        samples[name].tofile(folder / name)
    return samples


@pytest.mark.parametrize("generation", GENERATIONS)
def test_ais_bench_infers_a_folder_in_natural_order_and_pads_the_last_batch(env, om_bs4, models, tmp_path,
                                                                            generation):
    names = [f"img{number}.bin" for number in (10, 2, 1, 11, 3, 9)]
    samples = write_samples(tmp_path / "prep", names)
    (tmp_path / "prep" / "notes.txt").write_text("not an input")
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--input=./prep", "--output=./", "--output_dirname=./result",
                 "--batchsize=4", "--outfmt", "TXT", generation=generation)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    *_, compute, throughput = proc.stdout.splitlines()
    assert COMPUTE.match(compute) and THROUGHPUT.match(throughput)
    assert THROUGHPUT.match(throughput).group(1) == "4"

    summary = json.loads((tmp_path / "result_summary.json").read_text())
    order = ["img1", "img2", "img3", "img9", "img10", "img11"]
    assert sorted(p.name for p in (tmp_path / "result").iterdir()) == sorted(f"{s}_0.txt" for s in order)
    times = summary["NPU_compute_time"]
    assert times["count"] == 2 and set(times) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert summary["throughput"] == pytest.approx(1000 * 4 / times["mean"])
    assert {"H2D_latency", "D2H_latency"} <= set(summary)

    expected = reference(models / "tiny.onnx", np.stack([samples[f"{s}.bin"] for s in order]))
    for row, stem in zip(expected, order, strict=True):
        written = np.loadtxt(tmp_path / "result" / f"{stem}_0.txt", ndmin=2)
        np.testing.assert_allclose(written, row[None], rtol=0, atol=1e-6)


def test_ais_bench_summary_keys_filesinfo_per_sample_and_has_args_times_and_pid(env, om_bs4, tmp_path):
    write_samples(tmp_path / "prep", [f"img{number}.bin" for number in range(1, 7)])
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--input=prep", "--output=out", "--output_dirname=result",
                 "--batchsize=4", "--loop=2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "result_summary.json").read_text())
    infos = summary["filesinfo"]
    assert sorted(infos, key=int) == ["0", "1", "2", "3", "4", "5"]  # sample_id = batch * 4 + j, padding not kept
    for sample, info in infos.items():
        assert [Path(f).name for f in info["infiles"]] == [f"img{int(sample) + 1}.bin"]
        assert [Path(f).name for f in info["outfiles"]] == [f"img{int(sample) + 1}_0.bin"]
    assert summary["args"]["model"] == str(om_bs4) and summary["args"]["batchsize"] == 4
    assert isinstance(summary["pid"], int) and summary["pid"] != os.getpid()
    times = summary["npu_compute_time_list"]
    assert len(times) == 2 * 2 and all(isinstance(t, float) and t > 0 for t in times)  # 2 batches x --loop 2
    assert summary["NPU_compute_time"]["mean"] == pytest.approx(np.mean(times))


def test_ais_bench_cuts_output_names_at_the_first_dot(env, om_bs4, tmp_path):
    write_samples(tmp_path / "prep", ["cat.0001.bin", "dog.v2.npy.bin", "eel.bin", "fox.1.bin"])
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--input=prep", "--output=out", "--output_dirname=r")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "r").iterdir()) == ["cat_0.bin", "dog_0.bin", "eel_0.bin",
                                                                         "fox_0.bin"]


def batch_mixing_onnx(path: Path) -> Path:
    """``x`` [4,3] -> ``y = x - mean(x over the batch)``: each row's output depends on the whole batch."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], name="ReduceMean_0", axes=[0], keepdims=1),
             helper.make_node("Sub", ["x", "mean"], ["y"], name="Sub_1")]
    graph = helper.make_graph(nodes, "mix", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_ais_bench_pads_the_last_batch_with_its_first_file(env, tmp_path):
    model = batch_mixing_onnx(tmp_path / "mix.onnx")
    proc = atc(env, tmp_path, "--framework=5", f"--model={model}", "--output=mix", "--input_shape=x:4,3",
               "--soc_version=Ascend310P3", "--precision_mode=force_fp32")
    assert_succeeded(proc)
    samples = write_samples(tmp_path / "prep", [f"s{number}.bin" for number in range(1, 7)], shape=(3,))
    proc = bench(env, tmp_path, "--model=mix.om", "--input=prep", "--output=out", "--output_dirname=r")
    assert proc.returncode == 0, proc.stderr
    last = np.stack([samples[name] for name in ("s5.bin", "s6.bin", "s5.bin", "s5.bin")])  # padded with s5
    expected = last - last.mean(axis=0, keepdims=True)
    for row, stem in zip(expected, ("s5", "s6"), strict=False):  # the padded rows are not written
        np.testing.assert_allclose(np.fromfile(tmp_path / "out" / "r" / f"{stem}_0.bin", np.float32), row,
                                   rtol=0, atol=1e-6)
    assert not (tmp_path / "out" / "r" / "s7_0.bin").exists()


def test_ais_bench_txt_writes_integers_with_d_and_a_trailing_space(env, models, tmp_path):
    model = onnx.load(tiny_onnx(tmp_path / "tiny.onnx"))
    model.graph.node.append(helper.make_node("ArgMax", ["output1"], ["label"], name="ArgMax_5", axis=1, keepdims=0))
    model.graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    onnx.save(model, tmp_path / "labels.onnx")
    flags = [f"--model={tmp_path / 'labels.onnx'}" if f.startswith("--model=") else f
             for f in base_flags(models, "lab")]
    assert_succeeded(atc(env, tmp_path, *flags, "--precision_mode=force_fp32"))
    samples = write_samples(tmp_path / "prep", [f"s{number}.bin" for number in range(1, 5)])
    proc = bench(env, tmp_path, "--model=lab.om", "--input=prep", "--output=out", "--output_dirname=r", "--outfmt=TXT")
    assert proc.returncode == 0, proc.stderr
    probabilities = reference(tmp_path / "tiny.onnx", np.stack([samples[f"s{n}.bin"] for n in range(1, 5)]))
    for number, row in enumerate(probabilities, start=1):
        floats = (tmp_path / "out" / "r" / f"s{number}_0.txt").read_text()
        assert floats == "".join(f"{value:f} " for value in row) + "\n"
        assert (tmp_path / "out" / "r" / f"s{number}_1.txt").read_text() == f"{int(row.argmax())} \n"


def test_ais_bench_pure_performance_mode(env, om_bs4, tmp_path):
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--loop=5", "--batchsize=4", "--display_all_summary", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[INFO] H2D_latency (ms): ") for line in lines)
    mean = float(COMPUTE.match(lines[-2]).group(1))
    batch, shown_mean, value = THROUGHPUT.match(lines[-1]).groups()
    assert batch == "4" and float(shown_mean) == mean
    assert not list(tmp_path.iterdir())  # no --output: no files


def test_ais_bench_throughput_is_not_rounded(env, om_bs4, tmp_path):
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--loop=3", "--batchsize=4")
    assert proc.returncode == 0, proc.stderr
    batch, shown_mean, value = THROUGHPUT.match(proc.stdout.splitlines()[-1]).groups()
    assert float(value) == 1000 * int(batch) / float(shown_mean)  # exact: both printed in full
    assert float(shown_mean) == float(COMPUTE.match(proc.stdout.splitlines()[-2]).group(1))


def test_ais_bench_batchsize_only_feeds_the_throughput(env, om_bs4, tmp_path):
    proc = bench(env, tmp_path, f"--model={om_bs4}", "--batchsize=8")  # the model's batch is 4
    assert proc.returncode == 0, proc.stderr
    batch, shown_mean, value = THROUGHPUT.match(proc.stdout.splitlines()[-1]).groups()
    assert batch == "8" and float(value) == pytest.approx(8000 / float(shown_mean))


def test_ais_bench_rejects_an_input_size_that_does_not_divide_the_models(env, om_bs4, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "a.bin").write_bytes(bytes(100))  # 100 bytes do not divide 4*3*8*8*4
    proc = bench(env, tmp_path, f"--model={om_bs4}", f"--input={odd}", "--output=out", "--batchsize=4")
    assert proc.returncode == 1 and "does not divide" in proc.stderr


@pytest.mark.parametrize("generation", GENERATIONS)
def test_ais_bench_runs_a_dynamic_batch_model_at_dymbatch(env, om_dyn, models, tmp_path, generation):
    samples = write_samples(tmp_path / "prep", ["a.bin", "b.bin", "c.bin"])
    proc = bench(env, tmp_path, f"--model={om_dyn}", "--input=prep", "--output=out", "--output_dirname=r",
                 "--dymBatch", "2", generation=generation)
    assert proc.returncode == 0, proc.stderr
    assert THROUGHPUT.match(proc.stdout.splitlines()[-1]).group(1) == "2"
    expected = reference(models / "tiny.onnx", np.stack([samples[n] for n in ("a.bin", "b.bin", "c.bin", "c.bin")]))
    for row, stem in zip(expected, "abc", strict=False):  # the padded row is not written
        np.testing.assert_allclose(np.fromfile(tmp_path / "out" / "r" / f"{stem}_0.bin", np.float32), row,
                                   rtol=0, atol=1e-6)
    for wrong in ([], ["--dymBatch", "4"]):  # none, or not one of the .om's batch sizes
        proc = bench(env, tmp_path, f"--model={om_dyn}", "--loop=1", *wrong, generation=generation)
        assert proc.returncode == 1 and "dynamic batch sizes [2, 8]" in proc.stderr


# -------------------------------------------------------------------------
# amct_onnx (ascend-tools.md §6)
# -------------------------------------------------------------------------

AMCT_SHAPE = f"{INPUT}:4,3,8,8"


def write_batches(folder: Path, count: int, *, high: float = 1.0, shape: tuple[int, ...] = (4, *SHAPE),
                  first: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    for i in range(first, first + count):
        (rng.random(shape, dtype=np.float32) * high).tofile(folder / f"batch-{i:06d}.bin")


def amct_flags(models: Path, **change: str | None) -> list[str]:
    flags = {"model": str(models / "tiny.onnx"), "save_path": "result/tiny", "input_shape": AMCT_SHAPE,
             "data_dir": "calib", "data_types": "float32", "batch_num": "2", **change}
    return ["calibration", *(item for key, value in flags.items() if value is not None for item in (f"--{key}", value))]


def amct(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["amct_onnx", *args], env, cwd)


def test_amct_calibration_writes_both_models_the_record_and_its_log(env, models, tmp_path):
    write_batches(tmp_path / "calib", 1, high=1.0)
    write_batches(tmp_path / "calib", 1, high=10.0, first=1)  # sorted second: not read with --batch_num 1
    proc = amct(env, tmp_path, *amct_flags(models, batch_num="1"))
    assert proc.returncode == 0, proc.stderr
    result = tmp_path / "result"
    assert {p.name for p in result.iterdir()} == {"tiny_deploy_model.onnx", "tiny_fake_quant_model.onnx",
                                                 "tiny_quant.json"}
    assert (tmp_path / "amct_log").is_dir()
    deploy = onnx.load(str(result / "tiny_deploy_model.onnx"))
    assert {p.key: p.value for p in deploy.metadata_props} == {"amct_model": "deploy"}
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in deploy.graph.node}
    # The input's scale comes from the first file alone (values in [0, 1): about 1/255), not the second's [0, 10).
    record = json.loads((result / "tiny_quant.json").read_text())
    assert record[INPUT]["scale_d"] == pytest.approx(1 / 255, rel=0.01)
    batch = np.random.default_rng(7).random((4, *SHAPE), dtype=np.float32)
    quantized = reference(result / "tiny_fake_quant_model.onnx", batch)
    np.testing.assert_allclose(quantized, reference(models / "tiny.onnx", batch), atol=0.05)


@pytest.mark.parametrize(("args", "needle"), [
    (lambda m: amct_flags(m)[1:], "the first argument must be the subcommand 'calibration'"),
    (lambda m: amct_flags(m, data_types=None), "the following argument is required: --data_types"),
    (lambda m: amct_flags(m, input_shape=None), "the following argument is required: --input_shape"),
    (lambda m: [*amct_flags(m), "--calibration_config", "x"], "unknown argument --calibration_config"),
    (lambda m: amct_flags(m, input_shape="images:4,3,8,8"), "input 'images' is not an input of the model"),
    (lambda m: amct_flags(m, input_shape=f"{INPUT}:4,3,8"), "has rank 4 in the model, 3 given"),
    (lambda m: amct_flags(m, input_shape=f"{INPUT}:2,3,8,8"), "batch-000000.bin has 3072 bytes; one batch"),
    (lambda m: amct_flags(m, input_shape=f"{INPUT}:4,3,16,16"), "dim 2 of 'actual_input_1' is 8 in the model"),
    (lambda m: amct_flags(m, batch_num="3"), "2 .bin file(s), --batch_num 3 needs 3"),
    (lambda m: amct_flags(m, data_types="float16"), "'float16' is not supported"),
    (lambda m: amct_flags(m, data_dir="nowhere"), "--data_dir nowhere: no such folder"),
    (lambda m: amct_flags(m, model=str(m / "missing.onnx")), "no such file"),
])
def test_amct_refuses_what_the_tool_refuses(env, models, tmp_path, args, needle):
    write_batches(tmp_path / "calib", 2)
    proc = amct(env, tmp_path, *args(models))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("[ERROR] AMCT ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert not (tmp_path / "result").exists()


def test_amct_checks_every_bin_file_size(env, models, tmp_path):
    write_batches(tmp_path / "calib", 2)
    (tmp_path / "calib" / "batch-000002.bin").write_bytes(b"\0" * 100)  # not used, still refused
    proc = amct(env, tmp_path, *amct_flags(models))
    assert proc.returncode == 1 and "batch-000002.bin has 100 bytes" in proc.stderr


@pytest.fixture(scope="module")
def amct_models(env, models, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("amct")
    write_batches(folder / "calib", 2)
    proc = amct(env, folder, *amct_flags(models))
    assert proc.returncode == 0, proc.stderr
    return folder / "result"


def test_atc_compiles_the_deploy_model_statically_in_a_float16_mode(env, amct_models, tmp_path):
    deploy = f"--model={amct_models / 'tiny_deploy_model.onnx'}"
    assert_succeeded(atc(env, tmp_path, *base_flags(amct_models), deploy))
    for wrong, needle in (("--precision_mode=force_fp32", "force_fp32 or must_keep_origin_dtype"),
                          ("--precision_mode=must_keep_origin_dtype", "force_fp32 or must_keep_origin_dtype"),
                          ("--dynamic_batch_size=2,4", "static shapes only")):
        flags = [*base_flags(amct_models, shape=f"{INPUT}:-1,3,8,8" if "dynamic" in wrong else AMCT_SHAPE), deploy]
        assert_failed(atc(env, tmp_path, *flags, wrong), "E10001", needle)
    fake_quant = f"--model={amct_models / 'tiny_fake_quant_model.onnx'}"
    assert_failed(atc(env, tmp_path, *base_flags(amct_models), fake_quant), "E19010", "fake-quant model")


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
