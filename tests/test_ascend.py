"""The Ascend backend driving ATC and ais_bench, against the strict fakes in tests/fakes."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import zoo_datasets
import zoo_resnest
import zoo_tiny
from test_bad_inputs import one_error
from zoo_core import hookimpl
from zoo_core.backends import ascend
from zoo_core.errors import ZooError
from zoo_core.export import sample_input
from zoo_core.runner import Zoo, prepare
from zoo_core.runtime import infer_batches
from zoo_core.specs import resolve_options


def make_zoo(tmp_path: Path) -> Zoo:
    return Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_datasets], cache_dir=tmp_path / "cache")


def options_for(zoo: Zoo, **flags: object):
    flags = {"weights": "random", "warmup": 0, "iterations": 2, "backend": "ascend", **flags}
    return resolve_options(zoo.registry.model(flags.pop("model", "resnest-tiny")), flags)


def test_resnest50_sweep_on_the_fakes_prints_the_table(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest50", "--bs", "1,4,8", "--backend", "ascend", "--weights", "random",
                     "--warmup", "1", "--iterations", "2", "--out", str(tmp_path / "out"), env=ascend_env)
    assert result.code == 0, result
    assert "resnest50 on ascend (npu)" in result.stdout
    assert "end-to-end (img/s)" in result.stdout
    for bs in (1, 4, 8):
        assert f"compile for ascend at batch {bs}" in result.stderr


@pytest.mark.parametrize(("model", "count", "classes"), [("resnest-tiny", 10, 10), ("resnest50", 6, 1000)])
def test_outputs_equal_onnxruntime_for_a_batch_that_needs_padding(ascend_env, tmp_path, model, count, classes) -> None:
    zoo = make_zoo(tmp_path)
    samples = sample_input(zoo.registry.model(model), count, seed=4)  # the last batch of 4 is padded
    outputs = {}
    # Compiled in float32: this test is about the padded batch (test_trust_precision.py is about float16).
    for backend, flags in (("ascend", {"backend_options": {"precision_mode": "force_fp32"}}), ("onnxruntime", {})):
        options = options_for(zoo, model=model, backend=backend, batch_sizes=(4,), **flags)
        prepared = prepare(zoo, options)
        with zoo.open_runner(prepared.compiled[4], prepared.model, options) as runner:
            outputs[backend] = infer_batches(runner, {"actual_input_1": samples})[0]
    assert outputs["ascend"].shape == (count, classes)
    np.testing.assert_allclose(outputs["ascend"], outputs["onnxruntime"], atol=1e-5)


class Fp16Input:
    """A model whose config carries extra ATC arguments, as a plugin's would (fp16 input nodes, a log level)."""

    @hookimpl
    def zoo_register_models(self, register):
        register(replace(zoo_tiny.TINY, name="tiny-fp16",
                         backend_args={"ascend": {"input_fp16_nodes": "actual_input_1", "log": "warning"}}))


def test_model_config_and_command_line_atc_arguments_reach_atc(ascend_env, tmp_path) -> None:
    zoo = Zoo.create(autoload=False, plugins=[zoo_resnest, Fp16Input()], cache_dir=tmp_path / "cache")
    options = options_for(zoo, model="tiny-fp16", batch_sizes=(1,), backend_options={"atc_arg": ("log=info",)})
    prepared = prepare(zoo, options)
    command = (prepared.compiled[1].path.parent / "atc.log").read_text().splitlines()[0].split()
    assert "--input_fp16_nodes=actual_input_1" in command  # from the model's config
    assert "--log=info" in command and "--log=warning" not in command  # the command line wins


def test_results_carry_device_and_end_to_end_throughput(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--iterations", "3",
                     "--warmup", "0", "--json", "--out", str(tmp_path / "o"), env=ascend_env)
    assert result.code == 0, result
    data = result.json()
    assert data["backend"] == "ascend"  # the automatic choice where Ascend is available
    row = data["results"][0]
    assert row["throughput"] == row["throughput_device"] == pytest.approx(2000 / row["latency_ms"]["mean"])
    assert row["throughput_e2e"] == pytest.approx(2000 / row["latency_e2e_ms"]["mean"])
    assert row["latency_ms"]["mean"] <= row["latency_e2e_ms"]["mean"]  # device time is part of the wall time
    assert data["env"]["ascend"] == {"chip": "310P3", "devices": 1, "driver": "23.0.rc2", "cann": "7.0.RC1",
                                     "atc": data["env"]["ascend"]["atc"],
                                     "ais_bench": ascend_env["FAKE_AIS_BENCH_GENERATION"]}


def test_several_devices_run_one_process_each_and_add_up(zoo_cli, ascend_env, tmp_path) -> None:
    env = {**ascend_env, "FAKE_NPU_COUNT": "2"}
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--iterations", "3",
                     "--warmup", "0", "--device", "0,1", "--json", "--out", str(tmp_path / "o"), env=env)
    assert result.code == 0, result
    row = result.json()["results"][0]
    assert [d["device"] for d in row["devices"]] == [0, 1]
    assert row["throughput"] == pytest.approx(sum(d["throughput_device"] for d in row["devices"]))
    assert row["throughput_e2e"] == pytest.approx(sum(d["throughput_e2e"] for d in row["devices"]))


def test_a_device_that_does_not_exist(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--iterations", "1",
                     "--device", "3", "--out", str(tmp_path / "o"), env=ascend_env)
    error, note = one_error(result, 3)
    assert "cannot open" in error and "on NPU 3" in error
    # The ids are ACL ids counted from 0, never npu-smi's NPU column.
    assert "npu-smi info lists 1 NPU(s), so --device takes 0 " in note and "NPU column is not that id" in note


def test_dry_run_prints_the_seed_commands_and_runs_nothing(zoo_cli, tmp_path) -> None:
    # No fakes on PATH: the commands are printed for pasting elsewhere, with the chip as a placeholder.
    result = zoo_cli("run", "resnest50", "--bs", "8", "--backend", "ascend", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result
    lines = result.stdout.strip().splitlines()[3:]  # after the source line and the chip's (tests/test_dry_run_script)
    assert lines[0] == "zoo export resnest50 -o resnest50.onnx"
    assert lines[1] == ("python3 -m onnxsim resnest50.onnx resnest50_bs8_sim.onnx "
                        "--overwrite-input-shape actual_input_1:8,3,224,224")
    assert lines[2] == ("atc --framework=5 --model=resnest50_bs8_sim.onnx --output=resnest50_bs8 --input_format=NCHW "
                        "--input_shape=actual_input_1:8,3,224,224 --soc_version=Ascend${chip} --log=error")
    assert lines[3] == "python3 -m ais_bench --model=resnest50_bs8.om --loop=100 --batchsize=8 --device=0"
    assert not list(tmp_path.iterdir())  # nothing ran, nothing was written


def test_dry_run_asks_npu_smi_for_the_chip(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest50", "--bs", "1", "--dry-run", "--precision-mode", "allow_mix_precision",
                     env={**ascend_env, "FAKE_NPU_CHIP": "910B"}, cwd=tmp_path)
    assert "--soc_version=Ascend910B" in result.stdout and "--precision_mode=allow_mix_precision" in result.stdout


def test_the_om_and_the_atc_log_are_kept_and_no_side_files_leak(ascend_env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    zoo = make_zoo(tmp_path)
    prepared = prepare(zoo, options_for(zoo, batch_sizes=(2,)))
    folder = prepared.compiled[2].path.parent
    assert {p.name for p in folder.iterdir()} == {"model.om", "atc.log", "compiled.json", "manifest.json"}
    assert "ATC run success" in (folder / "atc.log").read_text()
    assert not (tmp_path / "fusion_result.json").exists() and not (tmp_path / "kernel_meta").exists()


def test_the_suffixed_om_name_is_found(ascend_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_OS_SUFFIX", "1")
    zoo = make_zoo(tmp_path)
    prepared = prepare(zoo, options_for(zoo, batch_sizes=(1,)))
    assert prepared.compiled[1].path.name == "model.om" and prepared.compiled[1].path.is_file()


# One test per ATC failure class: the ZooError names the code, gives its hint and the log's path.


def _compile_error(tmp_path: Path, **flags: object) -> ZooError:
    zoo = make_zoo(tmp_path)
    with pytest.raises(ZooError) as info:
        prepare(zoo, options_for(zoo, batch_sizes=(2,), out=tmp_path / "out", **flags))
    return info.value


def _log_of(error: ZooError, out: Path) -> Path:
    log = Path(error.message.split("(log: ")[1].rstrip(")"))
    assert log.is_file() and log.parent == out  # kept in the run's output folder, where the message says
    return log


def test_e10007_wrong_framework(ascend_env, tmp_path) -> None:
    error = _compile_error(tmp_path, backend_options={"atc_arg": ("framework=3",)})
    assert "E10007" in error.message and "--framework" in error.note
    assert "E10007" in _log_of(error, tmp_path / "out").read_text()


def test_e10054_missing_required_parameter(ascend_env, tmp_path) -> None:
    error = _compile_error(tmp_path, backend_options={"atc_arg": ("soc_version=",)})
    assert "E10054" in error.message and "required ATC parameter" in error.note
    _log_of(error, tmp_path / "out")


def test_e19010_operator_without_a_parser_at_this_opset(ascend_env, tmp_path) -> None:
    error = _compile_error(tmp_path, opset=17)  # a real export at opset 17, which ATC's parsers do not know
    assert "E19010" in error.message and "lower opset" in error.note


def test_ez3003_operator_without_a_kernel_on_this_chip(ascend_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_UNSUPPORTED_OPS", "Softmax")  # ResNeSt's radix softmax
    error = _compile_error(tmp_path)
    assert "EZ3003" in error.message and "--soc" in error.note


def test_atc_dying_on_a_signal(ascend_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_CRASH", "1")
    error = _compile_error(tmp_path)
    assert "signal SIGSEGV" in error.message and "log=debug" in error.note


def test_missing_cann_environment(ascend_env, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME")
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,))
    prepared = prepare(zoo, options.with_(backend="onnxruntime"))  # the simplified ONNX, made without ATC
    simplified = next(a for a in prepared.artifacts if a.stage == "simplify")
    (tmp_path / "work").mkdir()
    with pytest.raises(ZooError) as info:
        backend = zoo.registry.backends["ascend"]
        zoo.registry.call("zoo_compile", backend, backend=backend, model=prepared.model, weights=prepared.weights,
                          onnx_path=simplified.file("model.sim.onnx"), batch_size=2, workdir=tmp_path / "work",
                          options=options, precision=backend.precisions[0], batch_sizes=())
    assert "CANN environment is not set" in info.value.message and "set_env.sh" in info.value.note
    # set_env.sh alone can leave the driver's library out of reach: the note says where it must be.
    assert "libascend_hal.so" in info.value.message
    assert "LD_LIBRARY_PATH" in info.value.note and "lib64" in info.value.note and "devlib" in info.value.note


def test_signal_and_unknown_code_explanations() -> None:
    assert "SIGSEGV" in ascend.explain_atc_failure(128 + signal.SIGSEGV, "", None).message
    unknown = ascend.explain_atc_failure(1, "E99999: something new", None)
    assert "E99999" in unknown.message and "error reference" in unknown.note


def test_missing_atc_gives_the_availability_message(zoo_cli, tmp_path) -> None:
    plugins = zoo_cli("plugins", "--json").json()
    state = next(b for b in plugins["backends"] if b["name"] == "ascend")
    assert state["available"] is False
    assert "atc is not on PATH (source /usr/local/Ascend/ascend-toolkit/set_env.sh)" in state["reason"]
    assert "pip install the ais_bench and aclruntime wheels" in state["reason"]
    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--weights", "random")
    assert result.code == 3 and "backend 'ascend' is not available here: atc is not on PATH" in result.stderr


def test_doctor_shows_the_chip_cann_and_driver(zoo_cli, ascend_env) -> None:
    data = zoo_cli("doctor", "--json", env=ascend_env).json()
    assert data["env"]["ascend"]["chip"] == "310P3" and data["env"]["ascend"]["cann"] == "7.0.RC1"
    assert data["auto_backend"] == "ascend"
    assert os.path.basename(data["env"]["ascend"]["atc"]) == "atc"


# -------------------------------------------------------------------------
# Both ais_bench generations (#12): every test above runs against each (the ascend_env fixture); these name
# what differs between them.
# -------------------------------------------------------------------------


def _generation(env: dict[str, str]) -> str:
    return env["FAKE_AIS_BENCH_GENERATION"]


def _runner_for(zoo: Zoo, compiled, options):
    return zoo.open_runner(compiled, zoo.registry.model(compiled.model), options)


def test_a_timed_call_reads_the_device_time_of_either_generation(ascend_env, tmp_path) -> None:
    # Older: sumary()/reset_sumaryinfo() and float entries; newer: summary()/reset_summaryinfo() and
    # (start, end) pairs. The runner looks the methods up and takes end - start of a pair.
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,))
    compiled = prepare(zoo, options).compiled[2]
    with _runner_for(zoo, compiled, options) as runner:
        for _ in range(3):
            runner.infer({"actual_input_1": np.zeros((2, 3, 64, 64), np.float32)})
            assert isinstance(runner.last_device_ms, float)
            assert 0 < runner.last_device_ms <= runner.last_ms  # the device time is part of the call's wall time


def test_an_exec_time_entry_is_a_number_or_a_start_end_pair() -> None:
    from zoo_core.backends.ascend_session import call_ms

    assert call_ms(1.25) == 1.25 and call_ms(3) == 3.0
    assert call_ms((1000.5, 1002.0)) == pytest.approx(1.5) and call_ms([7.0, 7.25]) == pytest.approx(0.25)


# Prints FINALIZE each time InferSession.finalize() runs, then runs `zoo` with the given arguments.
_SPY_FINALIZE = """
import inspect, sys
from ais_bench.infer.interface import InferSession
real = inspect.getattr_static(InferSession, "finalize")
if isinstance(real, staticmethod):
    def spy():
        print("FINALIZE", flush=True)
        real.__func__()
    InferSession.finalize = staticmethod(spy)
else:
    def spy(self):
        print("FINALIZE", flush=True)
        real(self)
    InferSession.finalize = spy
from zoo_core.cli import main
main(sys.argv[1:])
"""


def test_a_sweep_of_three_batch_sizes_finalizes_only_at_exit(ascend_env, tmp_path) -> None:
    # Newer: finalize() is static and releases every ACL resource of the process, so no runner may call it: once,
    # at exit. Older: finalize() releases its own session, once per runner; nothing is left for the exit.
    import json
    import subprocess
    import sys

    args = ["run", "resnest-tiny", "--bs", "1,2,4", "--backend", "ascend", "--weights", "random",
            "--warmup", "1", "--iterations", "2", "--json", "--out", str(tmp_path / "o")]
    proc = subprocess.run([sys.executable, "-c", _SPY_FINALIZE, *args], capture_output=True, text=True,
                          env=ascend_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if _generation(ascend_env) == "newer":
        document, after = proc.stdout.rsplit("}\n", 1)
        assert "FINALIZE" not in document  # no runner of the sweep released the process's resources
        assert after == "FINALIZE\n"  # once, at exit
        data = json.loads(document + "}")
    else:
        assert proc.stdout.startswith("FINALIZE\n" * 3) and proc.stdout.count("FINALIZE") == 3
        data = json.loads(proc.stdout.replace("FINALIZE\n", ""))
    assert [row["batch_size"] for row in data["results"]] == [1, 2, 4]
    assert all(row["throughput_device"] > 0 for row in data["results"])


def test_runners_open_side_by_side_keep_their_sessions(ascend_env, tmp_path) -> None:
    # Closing one runner releases its own session only (free_resource or the older per-session finalize).
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(1, 2))
    prepared = prepare(zoo, options)
    first = _runner_for(zoo, prepared.compiled[1], options)
    with _runner_for(zoo, prepared.compiled[2], options) as second:
        second.infer({"actual_input_1": np.zeros((2, 3, 64, 64), np.float32)})
    first.infer({"actual_input_1": np.zeros((1, 3, 64, 64), np.float32)})
    first.close()


def test_a_dynamic_batch_om_serves_each_listed_batch(ascend_env, tmp_path) -> None:
    # ATC with -1 in the batch axis and --dynamic_batch_size: the descriptor keeps -1; the runner sets the batch
    # (set_dynamic_batchsize, which the older generation needs) and infers with mode="dymbatch".
    from zoo_core.onnx_shared import save_whole
    from zoo_core.runner import EXPORT_FILE
    from zoo_core.runtime import compiled_inputs

    zoo = make_zoo(tmp_path)
    options = options_for(zoo, batch_sizes=(2,), backend_options={"precision_mode": "force_fp32", "atc_arg": (
        "input_shape=actual_input_1:-1,3,64,64", "dynamic_batch_size=1,2,4")})
    prepared = prepare(zoo, options.with_(backend="onnxruntime", backend_options={}))  # the dynamic export, no ATC
    cached = next(a for a in prepared.artifacts if a.stage == "export").file(EXPORT_FILE)
    exported = tmp_path / "exported.onnx"
    save_whole(cached, exported)  # one file, as the runner gives zoo_compile (the cache keeps tensors beside it)
    (tmp_path / "work").mkdir()
    backend = zoo.registry.backends["ascend"]
    compiled = zoo.registry.call("zoo_compile", backend, backend=backend, model=prepared.model,
                                 weights=prepared.weights, onnx_path=exported, batch_size=2,
                                 workdir=tmp_path / "work", options=options, precision=backend.precisions[0],
                                 batch_sizes=())
    samples = sample_input(prepared.model, 4, seed=3)
    with zoo.open_runner(prepared.compiled[2], prepared.model, options) as reference:
        expected = infer_batches(reference, {"actual_input_1": samples})[0]
    for batch in (1, 2, 4):
        at_batch = replace(compiled, batch_size=batch, inputs=compiled_inputs(prepared.model, "ascend", batch))
        with _runner_for(zoo, at_batch, options) as runner:
            outputs = infer_batches(runner, {"actual_input_1": samples})[0]
            assert runner.last_device_ms is not None and runner.last_device_ms > 0
        np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_the_success_line_may_be_followed_by_warnings(ascend_env, tmp_path) -> None:
    # The fake atc always prints a W11001 line after its success line, as the real one often does.
    zoo = make_zoo(tmp_path)
    prepared = prepare(zoo, options_for(zoo, batch_sizes=(1,)))
    log = (prepared.compiled[1].path.parent / "atc.log").read_text()
    lines = log.strip().splitlines()
    assert any(line.startswith("ATC run success") for line in lines) and not lines[-1].startswith("ATC run success")


class NhwcModel:
    """A model whose declaration gives ATC a layout it refuses for ONNX models."""

    def __init__(self, **declared: object) -> None:
        self.declared = declared

    @hookimpl
    def zoo_register_models(self, register):
        register(replace(zoo_tiny.TINY, name="tiny-nhwc", **self.declared))


@pytest.mark.parametrize("declared", [{"input_format": "NHWC"}, {"backend_args": {"ascend": {"input_format": "NHWC"}}}])
def test_an_nhwc_declaration_is_one_line_before_atc_runs(ascend_env, tmp_path, declared) -> None:
    zoo = Zoo.create(autoload=False, plugins=[zoo_resnest, NhwcModel(**declared)], cache_dir=tmp_path / "cache")
    with pytest.raises(ZooError) as info:
        prepare(zoo, options_for(zoo, model="tiny-nhwc", batch_sizes=(2,), out=tmp_path / "out"))
    assert "model tiny-nhwc declares" in info.value.message and "NHWC" in info.value.message
    assert "NCHW, ND or NCDHW" in info.value.message and "backend_inputs" in info.value.note
    assert info.value.exit_code == 3
    assert not (tmp_path / "out").exists()  # ATC never ran: no failure log


def test_an_nhwc_atc_argument_is_a_usage_error(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--atc-arg", "input_format=NHWC",
                     "--out", str(tmp_path / "o"), env=ascend_env)
    error, note = one_error(result, 2)
    assert error == "Error: --atc-arg input_format=NHWC: ATC takes NCHW, ND or NCDHW for an ONNX model"
    assert not list(tmp_path.glob("o/atc-*.log"))  # refused before ATC ran: no failure log


def test_an_aipp_model_gives_atc_the_onnx_layout_not_the_image_layout() -> None:
    # The resnet50 example feeds the .om NHWC uint8 images (backend_inputs) that its AIPP turns into the ONNX
    # graph's NCHW float input: ATC's --input_format is the graph's, NCHW; AIPP's own input_format is RGB888_U8.
    import zoo_resnet

    from zoo_core.plugins import Registry, get_plugin_manager

    model = Registry(get_plugin_manager(autoload=False, plugins=[zoo_resnet])).models["resnet50"]
    assert model.input_for("ascend")[2] == "NHWC"
    options = resolve_options(model, {"weights": "random", "backend": "ascend",
                                      "backend_options": {"soc": "Ascend310P3"}})
    args = ascend.atc_arguments(model, Path("m.onnx"), Path("out"), 8, "Ascend310P3", options)
    assert "--input_format=NCHW" in args and "--input_shape=actual_input_1:8,3,224,224" in args


def test_ec0010_is_a_python_environment_mismatch_inside_atc() -> None:
    error = ascend.explain_atc_failure(1, "ATC run failed\nEC0010: Failed to import Python module [AttributeError: "
                                       "`np.float_` was removed in the NumPy 2.0 release].", None)
    assert "EC0010" in error.message
    assert "NumPy 2" in error.note and "import" in error.note and "numpy<2" in error.note


_NPU_SMI_24 = """\
+------------------------------------------------------------------------------------------------------+
| npu-smi 23.0.rc2                 Version: 23.0.rc2                                                    |
+-------------------------------+-----------------+----------------------------------------------------+
| NPU     Name                  | Health          | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip    Device                | Bus-Id          | AICore(%)   Memory-Usage(MB)                        |
+===============================+=================+====================================================+
| 24      310P3                 | OK              | NA          41                0    / 0             |
| 0       0                     | 0000:3B:00.0    | 0           1782 / 21527                            |
+===============================+=================+====================================================+
"""


def test_npu_smi_devices_are_counted_never_numbered_by_their_npu_column() -> None:
    info = ascend.parse_npu_smi(_NPU_SMI_24)
    assert info["devices"] == [{"chip": "310P3"}] and info["driver"] == "23.0.rc2"
    assert list(ascend.acl_device_ids(info)) == [0]  # the first usable id is 0, not 24


def test_doctor_reports_the_ais_bench_generation(zoo_cli, ascend_env) -> None:
    generation = _generation(ascend_env)
    data = zoo_cli("doctor", "--json", env=ascend_env).json()
    assert data["env"]["ascend"]["ais_bench"] == generation
    table = zoo_cli("doctor", env=ascend_env)
    assert table.code == 0, table
    assert f'"ais_bench": "{generation}"' in table.stdout


def _stub_atc(folder: Path, stdout: str, stderr: str, code: int) -> dict[str, str]:
    """An ``atc`` that only prints what a real one printed in a broken environment, first on PATH."""
    folder.mkdir()
    (folder / "out.txt").write_text(stdout)
    (folder / "err.txt").write_text(stderr)
    atc = folder / "atc"
    atc.write_text(f'#!/bin/sh\ncat "{folder}/out.txt"\ncat "{folder}/err.txt" >&2\nexit {code}\n')
    atc.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize(("stdout", "stderr", "code", "message", "hint"), [
    ("", "atc: error while loading shared libraries: libascend_hal.so: cannot open shared object file: No such "
     "file or directory\n", 127, "libascend_hal.so is not found", "LD_LIBRARY_PATH"),
    ("ATC start working now, please wait for a moment.\nATC run failed, Please check the detail log, Try 'atc "
     "--help' for more information\nEC0010: Failed to import Python module [AttributeError: `np.float_` was "
     "removed in the NumPy 2.0 release. Use `np.float64` instead.].\n", "", 1, "atc failed with EC0010", "numpy<2"),
])
def test_a_broken_atc_environment_is_one_line_with_its_fix(zoo_cli, ascend_env, tmp_path, stdout, stderr, code,
                                                           message, hint) -> None:
    env = {**ascend_env, **_stub_atc(tmp_path / "bin", stdout, stderr, code)}
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--backend", "ascend",
                     "--out", str(tmp_path / "o"), env=env)
    error, note = one_error(result, 3)
    assert message in error and hint in note


def test_a_model_declaring_nhwc_is_one_line_from_the_command(zoo_cli, ascend_env, tmp_path) -> None:
    (tmp_path / "tiny_nhwc.py").write_text(
        "from dataclasses import replace\nfrom zoo_core import hookimpl\nfrom zoo_tiny import TINY_RESNEST\n"
        "@hookimpl\ndef zoo_register_models(register):\n"
        "    register(replace(TINY_RESNEST, name='tiny-nhwc', input_format='NHWC'))\n")
    env = {**ascend_env, "ZOO_PLUGINS": "zoo_tiny,tiny_nhwc",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{ascend_env['PYTHONPATH']}"}
    result = zoo_cli("run", "tiny-nhwc", "--bs", "2", "--weights", "random", "--out", str(tmp_path / "o"), env=env)
    error, note = one_error(result, 3)
    assert error == ("Error: model tiny-nhwc declares input_format='NHWC', but ATC takes NCHW, ND or NCDHW for an "
                     "ONNX model")
    assert "backend_inputs" in note and not list(tmp_path.glob("o/atc-*.log"))  # ATC never ran
