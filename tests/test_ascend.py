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
from zoo_core import hookimpl
from zoo_core.backends import ascend
from zoo_core.errors import ZooError
from zoo_core.export import sample_input
from zoo_core.runner import Zoo, prepare
from zoo_core.runtime import infer_batches
from zoo_core.specs import resolve_options


def make_zoo(tmp_path: Path) -> Zoo:
    return Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_datasets], cache_dir=tmp_path / "cache")


def options_for(zoo: Zoo, **flags: object):  # noqa: ANN201
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
    for backend, flags in (("ascend", {"precision_mode": "force_fp32"}), ("onnxruntime", {})):
        options = options_for(zoo, model=model, backend=backend, batch_sizes=(4,), **flags)
        prepared = prepare(zoo, options)
        with zoo.pm.hook.zoo_infer(compiled=prepared.compiled[4], model=prepared.model, options=options) as runner:
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
    options = options_for(zoo, model="tiny-fp16", batch_sizes=(1,), backend_args=("log=info",))
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
                                     "atc": data["env"]["ascend"]["atc"]}


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
    assert result.code == 3, result
    assert "cannot open" in result.stderr and "on NPU 3" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_prints_the_seed_commands_and_runs_nothing(zoo_cli, tmp_path) -> None:
    # No fakes on PATH: the commands are printed for pasting elsewhere, with the chip as a placeholder.
    result = zoo_cli("run", "resnest50", "--bs", "8", "--backend", "ascend", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result
    lines = result.stdout.strip().splitlines()
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
    error = _compile_error(tmp_path, backend_args=("framework=3",))
    assert "E10007" in error.message and "--framework" in error.note
    assert "E10007" in _log_of(error, tmp_path / "out").read_text()


def test_e10054_missing_required_parameter(ascend_env, tmp_path) -> None:
    error = _compile_error(tmp_path, backend_args=("soc_version=",))
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
        zoo.pm.hook.zoo_compile(backend=zoo.registry.backends["ascend"], model=prepared.model,
                                weights=prepared.weights, onnx_path=simplified.file("model.sim.onnx"), batch_size=2,
                                workdir=tmp_path / "work", options=options)
    assert "CANN environment is not set" in info.value.message and "set_env.sh" in info.value.note


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
