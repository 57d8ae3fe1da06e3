"""`zoo run --backend ascend --dry-run` prints a script that runs as printed (`bash -e`): the toolkit's set_env.sh
first, the chip resolved or read from npu-smi, and with --data the ModelZoo accuracy recipe (zoo preprocess, ATC,
ais_bench over the .bin files, zoo score) giving what `zoo run --data` gives."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.env import BIN, TOOLKIT, fake_ascend_env
from test_bad_inputs import one_error
from zoo_core.backends.ascend import NO_CHIP, NPU_SMI_CHIP, SET_ENV, parse_npu_smi
from zoo_core.testing import write_image_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = "resnest-tiny"
IMAGES = 7  # at batch 4: a last batch of 3 images, padded by ais_bench
FAST = ("--warmup", "0", "--iterations", "1")


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees no Ascend tool and no toolkit (the dry run then prints the chip line)."""
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME", raising=False)
    assert shutil.which("npu-smi") is None and shutil.which("atc") is None


def dry_run(zoo_cli, *args: str, env: dict[str, str] | None = None) -> list[str]:
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", *args, "--dry-run", env=env)
    assert result.code == 0, result
    return result.stdout.splitlines()


def script_env(**extra: str) -> dict[str, str]:
    """Where the printed script runs: this venv's python3 and zoo (this checkout's zoo_core) on PATH, the fakes'
    settings, and no fake tool: the script's own `source set_env.sh` line brings them in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASCEND_", "FAKE_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update({"FAKE_NPU_CHIP": "310P3", "FAKE_NPU_COUNT": "1", "FAKE_AIS_BENCH_GENERATION": "newer", **extra})
    assert shutil.which("npu-smi", path=env["PATH"]) is None
    return env


def run_script(lines: list[str], folder: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    script = folder.parent / f"{folder.name}.sh"
    script.write_text("\n".join(lines) + "\n")
    folder.mkdir()
    return subprocess.run(["bash", "-e", str(script)], cwd=folder, env=script_env(**extra), capture_output=True,
                          text=True, timeout=600)


def evaluated(zoo_process, tmp_path: Path, *args: str) -> dict:
    """`zoo run --data` on the fakes (in a process of its own: the fake ais_bench comes from PYTHONPATH)."""
    result = zoo_process("run", TINY, "--backend", "ascend", "--weights", "random", *args, *FAST, "--out",
                         str(tmp_path / "run"), "--json", env=fake_ascend_env(os.environ))
    assert result.code == 0, result
    return result.json()


def assert_script_scores_as_zoo_run(zoo_process, lines: list[str], tmp_path: Path, args: tuple[str, ...],
                                    score_folder: str, images: int) -> None:
    """The printed script runs, and its zoo score gives zoo run's one row: top-1, top-5, images, predictions."""
    ran = run_script(lines, tmp_path / "work")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    (row,) = evaluated(zoo_process, tmp_path, *args)["results"]
    written = tmp_path / "work" / score_folder
    mine = json.loads((written / "results.json").read_text())["results"][0]
    assert (mine["top1"], mine["top5"], mine["images"]) == (row["top1"], row["top5"], images)
    assert (written / "predictions.csv").read_text() == (tmp_path / "run" / "predictions.csv").read_text()


# -------------------------------------------------------------------------
# The accuracy recipe, run as printed
# -------------------------------------------------------------------------


def test_the_printed_script_runs_as_printed_and_scores_as_zoo_run(zoo_cli, zoo_process, no_tools, tmp_path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    args = ("--bs", "1,4", "--seed", "3", "--data", str(data), "--labels", str(data / "val_label.txt"),
            "--preset", "reference")  # not the model's: zoo preprocess and zoo score are told
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    assert lines[0] == f"source {TOOLKIT / 'set_env.sh'}" and lines[1] == NPU_SMI_CHIP and lines[2] == NO_CHIP
    assert lines[3].startswith("zoo preprocess ") and lines[4] == f"zoo export {TINY} -o {TINY}.onnx --weights " \
        "random --seed 3"
    assert sum(line.endswith("--loop=100 --batchsize=1 --device=0") for line in lines) == 1  # every batch size timed

    ran = run_script(lines, tmp_path / "work")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    run = evaluated(zoo_process, tmp_path, *args)
    row = next(r for r in run["results"] if r["batch_size"] == 4)  # zoo run evaluates at the largest batch size
    assert row["images"] == IMAGES

    folder = tmp_path / "work" / f"{TINY}_out" / "bs4"
    rescored = zoo_cli("score", str(folder), "--model", TINY, "--data", str(data), "--json", "--out",
                       str(tmp_path / "rescore"))
    assert rescored.code == 0, rescored
    scored = rescored.json()["results"][0]
    assert (scored["top1"], scored["top5"], scored["images"], scored["batch_size"]) == \
        (row["top1"], row["top5"], IMAGES, 4)
    written = tmp_path / "work" / f"{TINY}_score_bs4"  # the script's own zoo score
    mine = json.loads((written / "results.json").read_text())["results"][0]
    assert (mine["top1"], mine["top5"]) == (row["top1"], row["top5"])
    assert json.loads((written / "results.json").read_text())["preset"] == run["preset"] == "reference"
    predictions = (written / "predictions.csv").read_text().splitlines()
    assert len(predictions) == IMAGES + 1
    assert predictions == (tmp_path / "run" / "predictions.csv").read_text().splitlines()


def test_the_int8_recipe_calibrates_then_compiles_the_deploy_model_and_scores_as_zoo_run(
        zoo_cli, zoo_process, no_tools, tmp_path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    args = ("--bs", "4", "--precision", "int8", "--calib-images", "4", "--data", str(data), "--limit", "6")
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    tools = [line.split()[:2] for line in lines]
    calibrate, amct = tools.index(["zoo", "calibrate"]), tools.index(["amct_onnx", "calibration"])
    atc = tools.index(["atc", "--framework=5"])
    bench = next(i for i, line in enumerate(lines) if line.startswith("python3 -m ais_bench "))
    score = tools.index(["zoo", "score"])
    assert calibrate < amct < atc < bench < score
    save = lines[amct].split()[lines[amct].split().index("--save_path") + 1]
    assert f"--model={save}_deploy_model.onnx" in lines[atc].split()
    assert lines[tools.index(["zoo", "preprocess"])].endswith("--limit 6") and lines[score].count("--limit 6") == 1

    ran = run_script(lines, tmp_path / "work")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    run = evaluated(zoo_process, tmp_path, *args)
    (row,) = run["results"]
    assert row["precision"] == "int8" and row["images"] == 6
    written = tmp_path / "work" / f"{TINY}_score_bs4"
    mine = json.loads((written / "results.json").read_text())["results"][0]
    assert (mine["top1"], mine["top5"], mine["images"]) == (row["top1"], row["top5"], 6)
    assert (written / "predictions.csv").read_text() == (tmp_path / "run" / "predictions.csv").read_text()


def test_the_dynamic_batch_recipe_compiles_one_om_and_scores_as_zoo_run(zoo_cli, zoo_process, no_tools,
                                                                       tmp_path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    args = ("--bs", "4,1", "--dynamic-batch", "--data", str(data), "--labels", str(data / "val_label.txt"))
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    (atc,) = [line for line in lines if line.startswith("atc ")]  # one compile for both batch sizes
    assert "--input_shape=actual_input_1:-1,3,64,64" in atc.split() and "--dynamic_batch_size=1,4" in atc.split()
    assert f"python3 -m onnxsim {TINY}.onnx {TINY}_dynamic_sim.onnx" in lines  # the batch axis left dynamic
    for bs in (1, 4):  # each size timed on the one .om, at its --dymBatch
        assert f"python3 -m ais_bench --model={TINY}_bs1_4.om --loop=100 --batchsize={bs} --dymBatch={bs} " \
            "--device=0" in lines

    ran = run_script(lines, tmp_path / "work")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    run = evaluated(zoo_process, tmp_path, *args)
    row = next(r for r in run["results"] if r["batch_size"] == 4)
    assert row["batch_mode"] == "dynamic" and row["images"] == IMAGES
    written = tmp_path / "work" / f"{TINY}_score_bs4_dynamic"
    mine = json.loads((written / "results.json").read_text())["results"][0]
    assert (mine["top1"], mine["top5"], mine["images"]) == (row["top1"], row["top5"], IMAGES)
    assert (written / "predictions.csv").read_text() == (tmp_path / "run" / "predictions.csv").read_text()


def test_the_recipe_of_a_given_onnx_compiles_that_file_and_scores_as_zoo_run(zoo_cli, zoo_process, no_tools,
                                                                             tmp_path) -> None:
    """--onnx FILE: zoo run compiles the user's file, so the script does too (it printed `zoo export` of the model,
    another network: a different top-1 with nothing said)."""
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    given = tmp_path / "my model $v.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "--seed", "5", "-o", str(given)).code == 0
    args = ("--bs", "4", "--onnx", str(given), "--data", str(data))
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    assert not any(line.startswith("zoo export ") for line in lines)
    assert_script_scores_as_zoo_run(zoo_process, lines, tmp_path, args, f"{TINY}_score_bs4", IMAGES)
    # and a file the run would refuse (it fixes batch 4) is refused by the dry run too, in one line
    fixed = tmp_path / "bs4.onnx"
    assert zoo_cli("export", TINY, "--weights", "random", "--bs", "4", "-o", str(fixed)).code == 0
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--onnx", str(fixed), "--bs", "1,4",
                     "--dry-run", env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    error, _ = one_error(result, 2)
    assert "fixes the batch at 4, so it cannot serve --bs 1,4" in error


def test_the_recipe_with_limit_and_a_label_file_for_some_images_scores_as_zoo_run(zoo_cli, zoo_process, no_tools,
                                                                                   tmp_path) -> None:
    """--limit N counts labelled images (zoo run, zoo score) but zoo preprocess counts every image: with images 2 and
    3 unlabelled, `zoo preprocess --limit 3` converted images 1-3 and zoo score found no output for image 4."""
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(line + "\n" for line in (data / "val_label.txt").read_text().splitlines()
                              if not line.startswith(("ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003"))))
    args = ("--bs", "2", "--data", str(data), "--labels", str(labels), "--limit", "3")
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    (preprocess,) = [line for line in lines if line.startswith("zoo preprocess ")]
    assert preprocess.endswith("--limit 5")  # images 1 to 5 hold the first three labelled ones: 1, 4, 5
    assert_script_scores_as_zoo_run(zoo_process, lines, tmp_path, args, f"{TINY}_score_bs2", 3)


@pytest.mark.parametrize("mode", [(), ("--dynamic-batch",)])
def test_the_aipp_recipe_writes_its_config_and_uint8_inputs_and_scores_as_zoo_run(zoo_cli, zoo_process, no_tools,
                                                                                  tmp_path, mode) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, IMAGES)
    args = ("--bs", "1,4", "--aipp", *mode, "--data", str(data), "--labels", str(data / "val_label.txt"))
    lines = dry_run(zoo_cli, *args, env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    start = lines.index("cat > aipp.cfg <<'EOF'")  # the config the atc lines name, as a here-document
    assert "aipp_op {" in lines[start:lines.index("EOF")]
    assert all("--insert_op_conf=aipp.cfg" in line.split() for line in lines if line.startswith("atc "))
    assert any(line.startswith("zoo preprocess ") and line.endswith("--backend ascend --aipp") for line in lines)

    ran = run_script(lines, tmp_path / "work")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    assert {p.stat().st_size for p in (tmp_path / "work" / f"{TINY}_prep").iterdir()} == {73 * 73 * 3}  # uint8 HWC
    run = evaluated(zoo_process, tmp_path, *args)
    row = next(r for r in run["results"] if r["batch_size"] == 4)
    written = tmp_path / "work" / f"{TINY}_score_bs4{'_dynamic' if mode else ''}"
    mine = json.loads((written / "results.json").read_text())["results"][0]
    assert (mine["top1"], mine["top5"], mine["images"]) == (row["top1"], row["top5"], IMAGES)
    assert (written / "predictions.csv").read_text() == (tmp_path / "run" / "predictions.csv").read_text()


# -------------------------------------------------------------------------
# The chip, and the environment
# -------------------------------------------------------------------------


@pytest.mark.parametrize("npu_smi, soc, expected", [
    ("910B", None, "Ascend910B"),  # npu-smi answers at dry-run time: its chip, literally
    (None, "310P3", "Ascend310P3"),  # --soc, without npu-smi
    ("910B", "Ascend310P3", "Ascend310P3"),  # --soc wins, as the run compiles for it
    (None, None, "Ascend${chip}"),  # neither: the script reads the chip where it runs
], ids=["npu-smi", "soc", "soc-over-npu-smi", "neither"])
def test_the_chip(zoo_cli, no_tools, npu_smi, soc, expected) -> None:
    env = fake_ascend_env(os.environ, chip=npu_smi) if npu_smi else {"ASCEND_TOOLKIT_HOME": str(TOOLKIT)}
    lines = dry_run(zoo_cli, "--bs", "2", *(["--soc", soc] if soc else []), env=env)
    assert lines[0] == f"source {TOOLKIT / 'set_env.sh'}"
    (atc,) = [line for line in lines if line.startswith("atc ")]
    assert f"--soc_version={expected}" in atc.split()
    if expected.endswith("${chip}"):
        assert lines[1:3] == [NPU_SMI_CHIP, NO_CHIP]
    else:
        assert not any("chip" in line for line in lines)


def _npu_smi(chip: str, count: int) -> str:
    return subprocess.run([sys.executable, str(BIN / "npu-smi"), "info"], capture_output=True, text=True, check=True,
                          env={**os.environ, "FAKE_NPU_CHIP": chip, "FAKE_NPU_COUNT": str(count)}).stdout


TABLES = {
    "fake 310P3": lambda: _npu_smi("310P3", 1),
    "fake 910B x2": lambda: _npu_smi("910B", 2),
    "fake, no device": lambda: _npu_smi("310P3", 0),
    "NPU column 24": lambda: "| NPU  Name | Health |\n| 24      310P3     | OK  | NA 41 |\n| 0       0  | 0000:3B |\n",
    "910B spacing": lambda: "| 0     910B   | OK   |\n",
    "Chip/Device row first": lambda: "| 0       0   | 0000:3B:00.0 |\n| 1   Ascend910B4 | OK |\n",
    "indented": lambda: "   | 3   310B1 | OK |\n",
    "no cell after": lambda: "| 0       310P3\n",
    "three words": lambda: "| 0  310P3 extra | OK |\n| 1  910B | OK |\n",
    "nothing": lambda: "",
}


@pytest.mark.parametrize("table", TABLES)
def test_the_chip_line_reads_npu_smi_as_parse_npu_smi_does(tmp_path: Path, table: str) -> None:
    text = TABLES[table]()
    (tmp_path / "table.txt").write_text(text)
    stub = tmp_path / "bin" / "npu-smi"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\ncat '{tmp_path / 'table.txt'}'\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(stub.parent), os.environ.get("PATH", "")])}
    got = subprocess.run(["bash", "-e", "-c", f'{NPU_SMI_CHIP}\nprintf %s "$chip"'], env=env, capture_output=True,
                         text=True, check=True).stdout
    devices = parse_npu_smi(text)["devices"]
    assert got == (devices[0]["chip"] if devices else "")


def test_a_script_that_finds_no_chip_stops_before_anything_runs(zoo_cli, no_tools, tmp_path) -> None:
    lines = dry_run(zoo_cli, "--bs", "2", env={"ASCEND_TOOLKIT_HOME": str(TOOLKIT)})
    ran = run_script(lines, tmp_path / "work", FAKE_NPU_COUNT="0")
    assert ran.returncode == 1 and "no chip in npu-smi info" in ran.stderr, ran
    assert not list((tmp_path / "work").iterdir())  # nothing exported or compiled


def test_set_env_comes_from_the_toolkit_home_or_beside_it_or_the_default(zoo_cli, no_tools, tmp_path) -> None:
    # CANN's layout: ASCEND_TOOLKIT_HOME is .../ascend-toolkit/latest, the script .../ascend-toolkit/set_env.sh
    home = tmp_path / "Ascend here" / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    (home.parent / "set_env.sh").write_text("export SOURCED=yes\n")
    lines = dry_run(zoo_cli, "--bs", "2", "--soc", "310P3", env={"ASCEND_TOOLKIT_HOME": str(home)})
    assert lines[0] == f"source '{home.parent / 'set_env.sh'}'"  # quoted: the path holds a space
    assert subprocess.run(["bash", "-e", "-c", f"{lines[0]}\necho $SOURCED"], capture_output=True, text=True,
                          check=True).stdout == "yes\n"
    (home / "set_env.sh").write_text("export SOURCED=inside\n")  # one in the home itself comes first
    assert dry_run(zoo_cli, "--bs", "2", "--soc", "310P3",
                   env={"ASCEND_TOOLKIT_HOME": str(home)})[0] == f"source '{home / 'set_env.sh'}'"
    assert dry_run(zoo_cli, "--bs", "2", "--soc", "310P3")[0] == f"source {SET_ENV}"  # no toolkit: the default


# -------------------------------------------------------------------------
# What the dry run printed before, and its JSON
# -------------------------------------------------------------------------


def test_json_lists_the_same_lines(zoo_cli, no_tools, tmp_path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 3)
    args = ("run", TINY, "--backend", "ascend", "--weights", "random", "--bs", "2", "--data", str(data), "--dry-run")
    printed = zoo_cli(*args)
    as_json = zoo_cli(*args, "--json")
    assert printed.code == as_json.code == 0
    commands = as_json.json()["commands"]
    assert commands == printed.stdout.splitlines()
    assert commands[:3] == [f"source {SET_ENV}", NPU_SMI_CHIP, NO_CHIP] and commands[-1].startswith("zoo score ")
    assert as_json.json()["note"] is None


def test_a_backend_without_commands_prints_no_recipe_and_its_note(zoo_cli, tmp_path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 3)
    result = zoo_cli("run", TINY, "--weights", "random", "--bs", "2", "--seed", "5", "--data", str(data), "--dry-run")
    assert result.code == 0, result
    assert result.stdout.splitlines() == [
        f"zoo export {TINY} -o {TINY}.onnx --weights random --seed 5",
        f"python3 -m onnxsim {TINY}.onnx {TINY}_bs2_sim.onnx --overwrite-input-shape actual_input_1:2,3,64,64"]
    assert "onnxruntime has no standalone commands" in result.stderr


def test_the_default_seed_is_not_printed(zoo_cli, no_tools) -> None:
    (export,) = [line for line in dry_run(zoo_cli, "--bs", "2", "--seed", "0") if line.startswith("zoo export")]
    assert export == f"zoo export {TINY} -o {TINY}.onnx --weights random"


def test_a_missing_data_folder_is_refused_as_the_run_refuses_it(zoo_cli, tmp_path) -> None:
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--data", str(tmp_path / "nowhere"),
                     "--dry-run")
    error, _ = one_error(result, 3)
    assert error == f"Error: data folder not found: {tmp_path / 'nowhere'}"


def test_the_script_in_the_docs_is_what_the_dry_run_prints(zoo_cli, no_tools, tmp_path) -> None:
    section = (ROOT / "docs" / "ascend.md").read_text().split("## The recipe by hand", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, re.M | re.S)
    assert block is not None
    write_image_dataset(tmp_path / "imagenet" / "val", 2)  # the dry run reads the labels, as the run would
    (tmp_path / "imagenet" / "val" / "val_label.txt").rename(tmp_path / "imagenet" / "val_label.txt")
    result = zoo_cli("run", "resnest50", "--backend", "ascend", "--bs", "1,8", "--data", "imagenet/val", "--labels",
                     "imagenet/val_label.txt", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result
    assert result.stdout == block.group(1)


def test_a_dataset_the_recipe_cannot_score_is_refused_in_one_line(zoo_cli, no_tools, tmp_path) -> None:
    for name in ("cats", "dogs"):  # class folders: zoo preprocess converts the images directly in --data only
        write_image_dataset(tmp_path / "classes" / name, 2)
        (tmp_path / "classes" / name / "val_label.txt").unlink()
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--data", str(tmp_path / "classes"),
                     "--dry-run")
    error, _ = one_error(result, 2)
    assert error.endswith("and this folder dataset keeps its images in subfolders")
    # Without a recipe to print (onnxruntime), the same folder is fine.
    assert zoo_cli("run", TINY, "--weights", "random", "--data", str(tmp_path / "classes"), "--dry-run").code == 0

    write_image_dataset(tmp_path / "val", 2)
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--data", str(tmp_path / "val"),
                     "--skip-bad", "--dry-run")
    error, _ = one_error(result, 2)
    assert error == "Error: --skip-bad: the printed recipe cannot skip unreadable images (zoo score scores every image)"


def test_images_whose_outputs_would_share_a_name_are_refused_before_the_recipe_runs(zoo_cli, no_tools,
                                                                                    tmp_path) -> None:
    """ais_bench names an input's outputs by its name cut at the first dot: the printed recipe would compile and run
    every image, then zoo score would refuse img.a.JPEG and img.b.JPEG (both img_0.npy); the dry run says so first."""
    data = tmp_path / "val"
    labels = write_image_dataset(data, 3)
    names = {old: new for old, new in zip(sorted(labels), ("img.a.JPEG", "img.b.JPEG", "other.JPEG"), strict=True)}
    for old, new in names.items():
        (data / old).rename(data / new)
    (data / "val_label.txt").write_text("".join(f"{names[old]} {label}\n" for old, label in labels.items()))
    result = zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--bs", "2", "--data", str(data),
                     "--dry-run")
    error, _ = one_error(result, 3)
    assert error == "Error: images img.a.JPEG and img.b.JPEG both give ais_bench outputs named img_0"
    # As zoo score does, --limit 1 leaves one of them: nothing to refuse.
    assert zoo_cli("run", TINY, "--backend", "ascend", "--weights", "random", "--bs", "2", "--data", str(data),
                   "--limit", "1", "--dry-run").code == 0


def test_a_dollar_in_a_path_is_quoted_and_only_the_chip_is_left_to_the_shell(zoo_cli, no_tools, tmp_path) -> None:
    data = tmp_path / "v$HOME{x}"  # no space: the old quoting left it bare, and bash expanded it
    write_image_dataset(data, 2)
    lines = dry_run(zoo_cli, "--bs", "2", "--data", str(data))
    (preprocess,) = [line for line in lines if line.startswith("zoo preprocess ")]
    echoed = subprocess.run(["bash", "-e", "-c", preprocess.replace("zoo preprocess", "printf '%s\\n'", 1)],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert echoed[echoed.index("--data") + 1] == str(data)
    (atc,) = [line for line in lines if line.startswith("atc ")]
    assert "--soc_version=Ascend${chip}" in atc.split()
