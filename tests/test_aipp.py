"""Ascend --aipp: a static AIPP config derived from any model's declared preprocessing, the host sending uint8
images; against the fakes, which execute static AIPP (tests/fakes/bin/atc parse_aipp and the fake InferSession)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zoo_aipp_cases
import zoo_resnest
import zoo_tiny
from test_bad_inputs import one_error
from zoo_core.backends.ascend_aipp import aipp_model, derive, parse_aipp_config
from zoo_core.preprocessing import execute
from zoo_core.runner import Zoo, prepare
from zoo_core.runtime import infer_batches
from zoo_core.specs import resolve_options
from zoo_core.testing import write_image_dataset

HAND_WRITTEN = Path(__file__).resolve().parents[1] / "examples/zoo-resnet/zoo_resnet/aipp_resnet50.cfg"
CASES = "zoo_tiny,zoo_aipp_cases"


def _resnest50() -> Any:
    from zoo_resnest.config import MODELS

    return next(m for m in MODELS if m.name == "resnest50")


def test_the_modelzoo_config_equals_the_hand_written_resnet50_one() -> None:
    derived = parse_aipp_config(derive(_resnest50(), "modelzoo").config)
    written = parse_aipp_config(HAND_WRITTEN.read_text())
    assert derived.keys() == written.keys()
    for key, value in written.items():
        try:
            number = float(value)
        except ValueError:
            assert derived[key] == value, key
        else:
            assert float(derived[key]) == pytest.approx(number, rel=1e-12, abs=0), key


def test_the_host_side_is_the_declaration_without_its_crop_in_uint8(tmp_path: Path) -> None:
    # The derived host preset, cropped and normalised as the config says, is the float32 modelzoo sample, bit for bit.
    write_image_dataset(tmp_path, 3)
    model = zoo_tiny.TINY
    derived = derive(model, "modelzoo")
    config = {k: float(v) for k, v in parse_aipp_config(derived.config).items() if k[0] in "lscmv" and k != "crop"}
    top, left = int(config["load_start_pos_h"]), int(config["load_start_pos_w"])
    for image in sorted(tmp_path.glob("*.JPEG")):
        host = execute(derived.host, model, image)
        assert host.dtype == np.uint8 and host.shape == derived.image == (73, 73, 3)
        crop = host[top : top + 64, left : left + 64].astype(np.float32)
        expected = execute(model.preprocessing("modelzoo"), model, image)
        mean, std = np.asarray(model.mean, np.float32), np.asarray(model.std, np.float32)
        np.testing.assert_array_equal(((crop / np.float32(255) - mean) / std).transpose(2, 0, 1), expected)


def _run(zoo_cli, model: str, data: Path, out: Path, *extra: str, env: dict[str, str]) -> dict[str, Any]:
    result = zoo_cli("run", model, "--backend", "ascend", "--weights", "random", "--bs", "4", "--warmup", "0",
                     "--iterations", "1", "--data", str(data), "--out", str(out), "--json", *extra, env=env)
    assert result.code == 0, result
    return result.json()


def _predictions(out: Path) -> list[dict[str, str]]:
    with open(out / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_accuracy_with_and_without(zoo_cli, model: str, tmp_path: Path, images: int, env: dict[str, str]) -> None:
    write_image_dataset(tmp_path / "val", images)
    plain = _run(zoo_cli, model, tmp_path / "val", tmp_path / "plain", env=env)
    aipp = _run(zoo_cli, model, tmp_path / "val", tmp_path / "aipp", "--aipp", env=env)
    assert aipp["accuracy"]["preset"] == "modelzoo-aipp" and plain["accuracy"]["preset"] == "modelzoo"
    for key in ("top1", "top5", "images"):
        assert aipp["results"][0][key] == plain["results"][0][key], key
    # Every image's five best classes, in order: random weights give the same top-1 to most images, not this.
    assert _predictions(tmp_path / "aipp") == _predictions(tmp_path / "plain")
    assert len({tuple(row.values())[1:6] for row in _predictions(tmp_path / "plain")}) > 1


def test_aipp_gives_the_same_top1_top5_and_predictions_as_float32(zoo_cli, ascend_env, tmp_path: Path) -> None:
    _same_accuracy_with_and_without(zoo_cli, "resnest-tiny", tmp_path, 12, ascend_env)


@pytest.mark.slow
@pytest.mark.parametrize("ascend_env", ["newer"], indirect=True)  # one generation: 30 to 60 s
def test_resnest50_with_aipp_gives_the_same_top1_top5_and_predictions(zoo_cli, ascend_env, tmp_path: Path) -> None:
    _same_accuracy_with_and_without(zoo_cli, "resnest50", tmp_path, 6, ascend_env)


def _prepared(tmp_path: Path, aipp: bool, preset: str = "modelzoo", model: str = "resnest-tiny") -> Any:
    zoo = Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_tiny, zoo_aipp_cases], cache_dir=tmp_path / "cache")
    flags = {"weights": "random", "warmup": 0, "iterations": 1, "backend": "ascend", "batch_sizes": (4,),
             "preset": preset, **({"backend_options": {"aipp": True}} if aipp else {})}
    options = resolve_options(zoo.registry.model(model), flags)
    return zoo, options, prepare(zoo, options)


def test_the_compiled_model_takes_uint8_images_and_its_outputs_match_float32(ascend_env, tmp_path: Path) -> None:
    from ais_bench.infer.interface import InferSession

    write_image_dataset(tmp_path / "val", 5)
    images = sorted((tmp_path / "val").glob("*.JPEG"))
    outputs = {}
    for aipp in (False, True):
        zoo, options, prepared = _prepared(tmp_path, aipp)
        compiled = prepared.compiled[4]
        session = InferSession(0, str(compiled.path))  # the .om itself says what it takes
        taken = session.get_inputs()[0]
        if hasattr(session, "free_resource"):
            session.free_resource()
        assert (str(taken.datatype), list(taken.shape)) == (
            ("dtype.uint8", [4, 73, 73, 3]) if aipp else ("dtype.float32", [4, 3, 64, 64]))
        assert compiled.inputs[0].dtype == ("uint8" if aipp else "float32")
        atc = (compiled.path.parent / "atc.log").read_text().splitlines()[0]
        assert ("--insert_op_conf=" in atc) == aipp
        if aipp:
            assert (compiled.path.parent / "aipp.cfg").read_text() == derive(zoo_tiny.TINY, "modelzoo").config
        preset = prepared.model.preset_for("ascend", "modelzoo")
        samples = np.stack([execute(prepared.model.preprocessing(preset), prepared.model, i) for i in images])
        with zoo.open_runner(compiled, prepared.model, options) as runner:
            outputs[aipp] = infer_batches(runner, {"actual_input_1": samples})[0]
    # The chip's (x - min) * var_reci and the host's (x / 255 - mean) / std differ in the last float32 bits only.
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=0, atol=1e-4)


def test_the_config_is_part_of_the_compile_key(ascend_env, tmp_path: Path) -> None:
    # Two presets of one model with different configs: two compiled models, each with its own config.
    squash, wide = (_prepared(tmp_path, True, preset, "aipp-two")[2].compiled[4] for preset in ("modelzoo", "wide"))
    assert squash.path.parent != wide.path.parent
    assert parse_aipp_config((wide.path.parent / "aipp.cfg").read_text())["src_image_size_w"] == "80"
    assert parse_aipp_config((squash.path.parent / "aipp.cfg").read_text())["src_image_size_w"] == "73"
    assert [i.shape for i in wide.inputs] == [(4, 80, 80, 3)]


@pytest.mark.parametrize("model", sorted(zoo_aipp_cases.REFUSED))
def test_each_declaration_aipp_cannot_express_is_one_line(zoo_cli, ascend_env, model: str) -> None:
    preset, why = zoo_aipp_cases.REFUSED[model]
    name = preset if isinstance(preset, str) else preset.name
    result = zoo_cli("run", model, "--backend", "ascend", "--aipp", "--weights", "random",
                     env={**ascend_env, "ZOO_PLUGINS": CASES})
    one_error(result, 2)
    assert f"model {model}'s preset {name!r} {why}" in result.stderr
    assert "export" not in result.stderr  # refused before any work


@pytest.mark.parametrize(("model", "args", "note"), [
    ("aipp-bgr", (), "Note: run it without --aipp (the host prepares float32 input): no preset of model aipp-bgr "
     "resizes to a fixed size and then centre-crops a fixed size"),  # it has no modelzoo preset to suggest
    ("resnest-tiny", ("--preset", "reference"), "Note: run it without --aipp (the host prepares float32 input), or "
     "choose a preset static AIPP can express: --preset modelzoo"),
], ids=["none-other", "another"])
def test_the_refusal_suggests_only_a_preset_the_model_has_and_aipp_expresses(zoo_cli, ascend_env, model, args,
                                                                              note) -> None:
    result = zoo_cli("run", model, "--backend", "ascend", "--aipp", *args, "--weights", "random",
                     env={**ascend_env, "ZOO_PLUGINS": CASES})
    _, printed = one_error(result, 2)
    assert printed == note


def test_the_reference_preset_with_aipp_is_one_line(zoo_cli, ascend_env) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--aipp", "--preset", "reference",
                     "--weights", "random", env=ascend_env)
    one_error(result, 2)
    assert "preset 'reference' does not end in a centre crop" in result.stderr


def test_a_model_with_its_own_aipp_is_one_line() -> None:
    from zoo_resnet.config import MODELS

    from zoo_core.errors import UsageError

    with pytest.raises(UsageError, match="model resnet50 declares its own ascend input"):
        aipp_model(MODELS[0], "modelzoo", "ascend", {})


def test_a_model_with_its_own_aipp_is_one_line_on_the_command_line(zoo_cli, ascend_env) -> None:
    plugins = f"{os.environ.get('ZOO_PLUGINS')},zoo_resnet"
    result = zoo_cli("run", "resnet50", "--backend", "ascend", "--aipp", "--weights", "random",
                     env={**ascend_env, "ZOO_PLUGINS": plugins})
    one_error(result, 2)
    assert "model resnet50 declares its own ascend input" in result.stderr


def test_aipp_with_an_insert_op_conf_of_its_own_is_one_line(zoo_cli, ascend_env) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--aipp", "--atc-arg", "insert_op_conf=a.cfg",
                     "--weights", "random", env=ascend_env)
    one_error(result, 2)
    assert "--aipp and --atc-arg insert_op_conf" in result.stderr


def test_aipp_on_another_backend_is_one_line(zoo_cli) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "onnxruntime", "--aipp", "--weights", "random")
    one_error(result, 2)
    assert "--aipp is an option of backend ascend" in result.stderr


@pytest.mark.parametrize("command", ["compare", "debug"])
def test_commands_feeding_every_backend_one_input_refuse_aipp_in_one_line(zoo_cli, ascend_env, command: str) -> None:
    # They feed ONNX Runtime and the .om the same float32 samples: the uint8 .om would get the wrong input.
    result = zoo_cli(command, "resnest-tiny", "--backends", "onnxruntime,ascend", "--aipp", "--weights", "random",
                     env=ascend_env)
    one_error(result, 2)
    assert f"zoo {command} feeds every backend resnest-tiny's input, float32[3, 64, 64], and on ascend it takes " \
        "uint8[73, 73, 3]" in result.stderr


def test_the_dry_run_compiles_with_the_config_a_run_would_write(zoo_cli, ascend_env) -> None:
    from zoo_core.backends.ascend_aipp import config_for_run

    result = zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--aipp", "--dry-run", "--bs", "4",
                     "--weights", "random", env=ascend_env)
    assert result.code == 0, result
    atc = next(line for line in result.stdout.splitlines() if line.startswith("atc "))
    assert atc.endswith(" --insert_op_conf=aipp.cfg")
    options = resolve_options(zoo_tiny.TINY, {"backend": "ascend", "backend_options": {"aipp": True}})
    assert config_for_run(zoo_tiny.TINY, options) == derive(zoo_tiny.TINY, "modelzoo").config
    assert config_for_run(zoo_tiny.TINY, resolve_options(zoo_tiny.TINY, {"backend": "ascend"})) is None


def test_the_hand_recipe_with_aipp_scores_as_zoo_run(zoo_cli, ascend_env, tmp_path: Path) -> None:
    # The dry-run's export, onnxsim and atc lines (with the aipp.cfg it names), `zoo preprocess --aipp`'s uint8
    # .bin files through `python -m ais_bench`, then `zoo score`: the same accuracy and predictions as zoo run --aipp.
    import shlex
    import subprocess
    import sys

    write_image_dataset(tmp_path / "val", 7)  # at batch 4 the last batch is padded
    run = _run(zoo_cli, "resnest-tiny", tmp_path / "val", tmp_path / "run", "--aipp", env=ascend_env)
    dry = zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--aipp", "--dry-run", "--bs", "4", "--weights",
                  "random", env=ascend_env)
    assert dry.code == 0, dry
    hand = tmp_path / "hand"
    hand.mkdir()
    (hand / "aipp.cfg").write_text(derive(zoo_tiny.TINY, "modelzoo").config)
    python = {"zoo": [sys.executable, "-m", "zoo_core"], "python3": [sys.executable]}
    for line in dry.stdout.splitlines():
        if not line.startswith(("zoo export ", "python3 -m onnxsim ", "atc ")):  # the config's here-document too
            continue
        words = shlex.split(line)
        if words[:2] == ["zoo", "export"] or words[:3] == ["python3", "-m", "onnxsim"] or words[0] == "atc":
            proc = subprocess.run([*python.get(words[0], words[:1]), *words[1:]], cwd=hand, env=ascend_env,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
    bins = zoo_cli("preprocess", "resnest-tiny", "--data", str(tmp_path / "val"), "-o", str(hand / "bins"),
                   "--backend", "ascend", "--aipp", "--json", env=ascend_env)
    assert bins.code == 0 and bins.json()["preset"] == "modelzoo-aipp", bins
    assert {p.stat().st_size for p in (hand / "bins").glob("*.bin")} == {73 * 73 * 3}  # uint8 HWC, no crop
    proc = subprocess.run([sys.executable, "-m", "ais_bench", "--model", "resnest-tiny_bs4.om", "--input", "bins",
                           "--output", "out", "--output_dirname", "result", "--outfmt", "NPY", "--batchsize", "4"],
                          cwd=hand, env=ascend_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    scored = zoo_cli("score", str(hand / "out" / "result"), "--model", "resnest-tiny", "--data", str(tmp_path / "val"),
                     "--out", str(hand / "scored"), "--json", env=ascend_env)
    assert scored.code == 0, scored
    for key in ("top1", "top5", "images"):
        assert scored.json()["results"][0][key] == run["results"][0][key], key
    assert _predictions(hand / "scored") == _predictions(tmp_path / "run")
