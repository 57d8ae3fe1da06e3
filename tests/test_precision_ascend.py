"""Ascend precision (#15): --precision to ATC's --precision_mode, INT8 through AMCT (the fake amct_onnx), the deploy
model compiled by ATC and run by ais_bench with INT8 numerics, and the dry-run's commands."""

from __future__ import annotations

from dataclasses import replace
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import zoo_datasets
import zoo_resnest
import zoo_tiny
from fakes.env import PYTHON
from test_bad_inputs import one_error
from zoo_core.backends import ascend
from zoo_core.errors import UsageError, ZooError
from zoo_core.onnx_shared import save_whole
from zoo_core.precision import Calibration
from zoo_core.runner import SIMPLIFIED_FILE, Zoo, prepare
from zoo_core.runtime import infer_batches
from zoo_core.specs import resolve_options
from zoo_core.testing import preprocess, write_image_dataset

BS = 2
INPUT = "actual_input_1"


def make_zoo(tmp_path: Path) -> Zoo:
    return Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_datasets, zoo_tiny], cache_dir=tmp_path / "cache")


def options_for(zoo: Zoo, **flags: object):
    flags = {"weights": "random", "warmup": 0, "iterations": 1, "backend": "ascend", "batch_sizes": (BS,), **flags}
    return resolve_options(zoo.registry.model("resnest-tiny"), flags)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """resnest-tiny simplified at batch 2 (one self-contained file, as the runner hands it to a stage), and a
    calibration set of 6 images of the generated dataset, preprocessed as for evaluation."""
    tmp = tmp_path_factory.mktemp("tiny")
    zoo = make_zoo(tmp)
    prepared = prepare(zoo, options_for(zoo, backend="onnxruntime"))
    simplified = next(a for a in prepared.artifacts if a.stage == "simplify" and a.file(SIMPLIFIED_FILE).exists())
    onnx_path = tmp / "model.sim.onnx"
    save_whole(simplified.file(SIMPLIFIED_FILE), onnx_path)
    write_image_dataset(tmp / "images", count=6)
    images = np.stack([preprocess(zoo, "resnest-tiny", p) for p in sorted((tmp / "images").glob("*.JPEG"))])
    calibration = Calibration.from_array(images, tmp / "calibration", INPUT)
    return {"model": zoo.registry.model("resnest-tiny"), "onnx": onnx_path, "calibration": calibration,
            "images": images}


def quantize(zoo: Zoo, tiny, workdir: Path, model=None, **flags: object) -> Path:
    workdir.mkdir(parents=True)
    backend = zoo.registry.backends["ascend"]
    return zoo.registry.call("zoo_quantize", backend, backend=backend, model=model or tiny["model"],
                                    onnx_path=tiny["onnx"], batch_size=BS, precision="int8",
                                    calibration=tiny["calibration"], workdir=workdir,
                                    options=options_for(zoo, precisions=("int8",), **flags))


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {INPUT: images[i:i + BS]})[0] for i in range(0, len(images), BS)])


def test_zoo_quantize_runs_amct_and_returns_the_deploy_model(ascend_env, tiny, tmp_path) -> None:
    zoo = make_zoo(tmp_path)
    work = tmp_path / "work"
    deploy = quantize(zoo, tiny, work)
    assert deploy == work / ascend.DEPLOY_FILE and deploy.is_file()
    # Both models, the quant record, AMCT's own log and zoo's record of the command stay in the artifact; the
    # calibration .bin files (the calibration artifact's copy) do not.
    assert (work / ascend.FAKE_QUANT_FILE).is_file() and (work / ascend.QUANT_JSON).is_file()
    assert (work / "amct_log").is_dir() and not (work / "calib").exists()
    command = (work / ascend.AMCT_LOG_FILE).read_text().splitlines()[0].split()
    assert command[:2] == ["amct_onnx", "calibration"]
    assert command[command.index("--input_shape") + 1] == f"{INPUT}:{BS},3,64,64"
    assert command[command.index("--batch_num") + 1] == "3"  # 6 images: 3 whole batches of 2
    # Really quantized: int8 weights, and the fake-quant model computes close to, but not exactly as, the float one.
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(deploy)).graph.node)
    float_out = run_onnx(tiny["onnx"], tiny["images"])
    quant_out = run_onnx(work / ascend.FAKE_QUANT_FILE, tiny["images"])
    assert not np.allclose(quant_out, float_out, atol=1e-6)
    assert np.abs(quant_out - float_out).max() < 0.1 * np.abs(float_out).max()


def test_int8_compiles_the_deploy_model_and_ais_bench_runs_int8_numerics(ascend_env, tiny, tmp_path) -> None:
    zoo = make_zoo(tmp_path)
    deploy = quantize(zoo, tiny, tmp_path / "quantized")
    (tmp_path / "compiled").mkdir()
    options = options_for(zoo, precisions=("int8",))
    backend = zoo.registry.backends["ascend"]
    compiled = zoo.registry.call("zoo_compile", backend, backend=backend, model=tiny["model"], weights=None,
                                       onnx_path=deploy, batch_size=BS, workdir=tmp_path / "compiled",
                                       options=options, precision="int8", batch_sizes=())
    assert compiled.extra["precision"] == "int8" and compiled.extra["precision_mode"] == "ATC default"
    assert compiled.extra["fake_quant_model"] == str((tmp_path / "quantized" / ascend.FAKE_QUANT_FILE).resolve())
    assert f"--model={deploy.resolve()}" in compiled.extra["atc"]
    with zoo.open_runner(compiled, tiny["model"], options) as runner:
        chip = infer_batches(runner, {INPUT: tiny["images"]})[0]
    fake_quant = run_onnx(tmp_path / "quantized" / ascend.FAKE_QUANT_FILE, tiny["images"])
    float_out = run_onnx(tiny["onnx"], tiny["images"])
    # The chip runs the deploy model under ATC's default force_fp16: exactly the fake's float16 emulation of it,
    # and the fake-quant numerics up to float16 rounding (an activation can move by a quantization step).
    sys.path.insert(0, str(PYTHON))
    try:
        from fake_precision import emulate
    finally:
        sys.path.remove(str(PYTHON))
    emulated = ort.InferenceSession(emulate(deploy.read_bytes(), "force_fp16"), providers=["CPUExecutionProvider"])
    expected = np.concatenate([emulated.run(None, {INPUT: tiny["images"][i:i + BS]})[0]
                               for i in range(0, len(tiny["images"]), BS)])
    np.testing.assert_allclose(chip, expected, atol=1e-6)
    scale = np.abs(float_out).max()
    np.testing.assert_allclose(chip, fake_quant, atol=0.05 * scale)
    assert not np.allclose(chip, float_out, atol=1e-4 * scale)


def test_a_failing_amct_is_one_error_with_its_last_lines_and_log(ascend_env, tiny, tmp_path) -> None:
    zoo = make_zoo(tmp_path)
    renamed = replace(tiny["model"], input_names=("images",))  # not the graph's input name: AMCT refuses it
    with pytest.raises(ZooError) as info:
        quantize(zoo, tiny, tmp_path / "work", model=renamed, out=tmp_path / "out")
    message = info.value.message
    assert message.startswith("amct_onnx calibration failed with exit code 1: ")
    assert "input 'images' is not an input of the model" in message
    log = Path(message.split("(log: ")[1].rstrip(")"))
    assert log.parent == tmp_path / "out" and "amct_onnx calibration --model" in log.read_text()


def test_amct_not_on_path(ascend_env, tiny, tmp_path, monkeypatch) -> None:
    zoo = make_zoo(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ZooError) as info:
        quantize(zoo, tiny, tmp_path / "work")
    assert info.value.message == "amct_onnx is not on PATH" and "amct_onnx wheel" in info.value.note
    assert not (tmp_path / "work" / "calib").exists()


def test_the_compiled_model_records_the_precision_it_computes_in(ascend_env, tiny, tmp_path) -> None:
    # No --precision, --precision-mode force_fp32: the run is native (fp16) by name, fp32 on the chip.
    zoo = make_zoo(tmp_path)
    backend = zoo.registry.backends["ascend"]
    for name, flags, expected in (("fp16", {}, "fp16"), ("fp16", {"precision_mode": "force_fp32"}, "fp32"),
                                  ("fp32", {}, "fp32")):
        (tmp_path / name / expected).mkdir(parents=True)
        compiled = zoo.registry.call("zoo_compile", backend, backend=backend, model=tiny["model"], weights=None,
                                     onnx_path=tiny["onnx"], batch_size=BS, workdir=tmp_path / name / expected,
                                     options=options_for(zoo, backend_options=flags), precision=name,
                                     batch_sizes=())
        assert compiled.extra["precision"] == expected


# --precision -> ATC's --precision_mode


def atc_flags(tmp_path: Path, precision: str, **flags: object) -> dict[str, str]:
    zoo = make_zoo(tmp_path)
    args = ascend.atc_arguments(zoo.registry.model("resnest-tiny"), Path("m.onnx"), Path("out"), BS, "Ascend310P3",
                                options_for(zoo, **flags), precision)
    return dict(a[2:].split("=", 1) for a in args[1:])


@pytest.mark.parametrize(("precision", "mode"), [("fp16", None), ("fp32", "force_fp32"), ("int8", None)])
def test_each_precision_maps_to_its_precision_mode(tmp_path, precision, mode) -> None:
    assert atc_flags(tmp_path, precision, precisions=(precision,)).get("precision_mode") == mode


@pytest.mark.parametrize(("precision", "mode"), [("fp16", "allow_mix_precision"), ("fp32", "must_keep_origin_dtype"),
                                                 ("int8", "allow_fp32_to_fp16")])
def test_a_precision_mode_that_agrees_is_kept(tmp_path, precision, mode) -> None:
    flags = atc_flags(tmp_path, precision, precisions=(precision,), backend_options={"precision_mode": mode})
    assert flags["precision_mode"] == mode


def test_without_precision_the_precision_mode_is_used_as_today(tmp_path) -> None:
    flags = atc_flags(tmp_path, "fp16", backend_options={"precision_mode": "force_fp32"})
    assert flags["precision_mode"] == "force_fp32"


@pytest.mark.parametrize(("precision", "options", "needle"), [
    ("fp32", {"precision_mode": "force_fp16"}, "--precision fp32 contradicts --precision-mode=force_fp16"),
    ("fp16", {"precision_mode": "force_fp32"}, "--precision fp16 contradicts --precision-mode=force_fp32"),
    ("int8", {"precision_mode": "force_fp32"}, "ATC does not compile AMCT's INT8 deploy model in it"),
    ("int8", {"atc_arg": ("precision_mode=must_keep_origin_dtype",)},
     "contradicts --atc-arg precision_mode=must_keep_origin_dtype"),
    ("int8", {"atc_arg": ("input_shape=actual_input_1:-1,3,64,64", "dynamic_batch_size=1,2")},
     "static shapes only"),
])
def test_a_contradicting_precision_mode_is_a_usage_error(tmp_path, precision, options, needle) -> None:
    with pytest.raises(UsageError) as info:
        atc_flags(tmp_path, precision, precisions=(precision,), backend_options=options)
    assert needle in info.value.message


# --dry-run: the commands to paste


def commands(tmp_path: Path, precision: str, calibration_dir: Path | None) -> list[list[str]]:
    zoo = make_zoo(tmp_path)
    options = options_for(zoo, precisions=(precision,), calib_images=8, backend_options={"soc": "Ascend310P3"})
    backend = zoo.registry.backends["ascend"]
    return zoo.registry.call("zoo_commands", backend, backend=backend, model=zoo.registry.model("resnest-tiny"),
                                    onnx_path=Path("resnest-tiny_bs2.sim.onnx"), batch_size=BS, options=options,
                                    precision=precision, calibration_dir=calibration_dir, inputs=None,
                                    batch_sizes=())


def test_int8_dry_run_commands_are_amct_then_atc_on_its_deploy_model(tmp_path) -> None:
    amct, atc, bench = commands(tmp_path, "int8", Path("calib/bs2"))
    assert amct == ["amct_onnx", "calibration", "--model", "resnest-tiny_bs2.sim.onnx",
                    "--save_path", "amct/resnest-tiny_bs2", "--input_shape", f"{INPUT}:2,3,64,64",
                    "--data_dir", "calib/bs2", "--data_types", "float32", "--batch_num", "4"]
    assert atc[0] == "atc" and "--model=amct/resnest-tiny_bs2_deploy_model.onnx" in atc
    assert not any(a.startswith("--precision_mode") for a in atc)
    assert bench[:3] == ["python3", "-m", "ais_bench"]


def test_fp32_dry_run_compiles_with_force_fp32(tmp_path) -> None:
    atc, _ = commands(tmp_path, "fp32", None)
    assert "--precision_mode=force_fp32" in atc and "--model=resnest-tiny_bs2.sim.onnx" in atc


# End to end through `zoo run` (AMCT -> ATC -> ais_bench on the fakes)

FAST = ["--weights", "random", "--warmup", "0", "--iterations", "1"]


def test_int8_runs_end_to_end_on_the_fakes_with_its_accuracy_cost(zoo_cli, ascend_env, tmp_path) -> None:
    images = tmp_path / "val"
    write_image_dataset(images, count=8)
    cache = tmp_path / "cache"
    result = zoo_cli("run", "resnest-tiny", "--bs", str(BS), *FAST, "--backend", "ascend", "--precision", "fp32,int8",
                     "--data", str(images), "--calib-images", "6", "--json", "--out", str(tmp_path / "out"),
                     env={**ascend_env, "ZOO_CACHE_DIR": str(cache)})
    assert result.code == 0, result
    data = result.json()
    assert [(r["batch_size"], r["precision"]) for r in data["results"]] == [(BS, "fp32"), (BS, "int8")]
    assert data["results"][1]["agreement"] is not None and data["results"][1]["images"] == 8
    assert f"quantize to int8 for ascend at batch {BS} (built)" in result.stderr
    # The quantize artifact keeps both of AMCT's models; the compile of int8 is ATC on the deploy model.
    assert len(list(cache.rglob(Path(ascend.FAKE_QUANT_FILE).name))) == 1
    atc_logs = [p.read_text().split("\n", 1)[0] for p in cache.rglob(ascend.LOG_FILE)]
    assert sum("_deploy_model.onnx" in line and "--precision_mode" not in line for line in atc_logs) == 1
    assert sum("--precision_mode=force_fp32" in line for line in atc_logs) == 1


def test_int8_dry_run_prints_the_amct_and_atc_commands_in_order(zoo_cli, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", str(BS), *FAST, "--backend", "ascend", "--precision", "int8",
                     "--calib", "random", "--calib-images", "8", "--soc", "Ascend310P3", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    tools = [words[0] for words in lines]
    amct, atc = tools.index("amct_onnx"), tools.index("atc")
    calibrate = next(i for i, words in enumerate(lines) if words[:2] == ["zoo", "calibrate"])
    assert calibrate < amct < atc
    calib_dir = lines[calibrate][lines[calibrate].index("-o") + 1]
    assert lines[amct][lines[amct].index("--data_dir") + 1] == calib_dir
    deploy = lines[amct][lines[amct].index("--save_path") + 1] + "_deploy_model.onnx"
    assert f"--model={deploy}" in lines[atc]


def test_a_contradicting_precision_mode_stops_the_run_in_one_line(zoo_cli, ascend_env, tmp_path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", str(BS), *FAST, "--backend", "ascend", "--precision", "fp32",
                     "--precision-mode", "force_fp16", env=ascend_env)
    one_error(result, 2)
    assert "--precision fp32 contradicts --precision-mode=force_fp16" in result.stderr
    assert "export" not in result.stderr  # refused before any work (zoo_check_run), not by the compile
