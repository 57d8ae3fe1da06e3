"""Bad inputs, through the real CLI: each case is one ``Error:`` line and one ``Note:`` line with the exit code
documented in the "Bad inputs" table of docs/errors.md, and never a traceback. Two plugin cases are not errors at all:
zoo records them and goes on, and those tests check exactly that."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_core.errors import EXIT_ENV, EXIT_USAGE

FAST = ("--warmup", "0", "--iterations", "1")  # the timing is not what these tests are about


def one_error(result, code: int) -> tuple[str, str]:
    """The exit code, no traceback, nothing on stdout, and stderr ending in exactly one Error and one Note line
    (progress lines of the stages that did run may come before them)."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2 and lines[-2].startswith("Error: ") and lines[-1].startswith("Note: "), result
    assert sum(line.startswith("Error") for line in lines) == 1, result
    assert sum(line.startswith("Note") for line in lines) == 1, result
    assert result.stdout == "", result
    return lines[-2], lines[-1]


# -------------------------------------------------------------------------
# The command line (exit 2)
# -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "note"),
    [
        pytest.param(("run", "resnest5", "--weights", "random"), "Error: unknown model 'resnest5'",
                     "Note: did you mean 'resnest50'", id="unknown-model"),
        pytest.param(("run", "resnest-tiny", "--bs", "0", "--weights", "random"),
                     "Error: --bs: batch size 0 must be at least 1", "Note: write e.g. --bs 8 or --bs 1,4,8",
                     id="bs-0"),
        pytest.param(("run", "resnest-tiny", "--bs", "-1", "--weights", "random"),
                     "Error: --bs: batch size -1 must be at least 1", "Note: write e.g. --bs 8 or --bs 1,4,8",
                     id="bs-negative"),
        pytest.param(("run", "resnest-tiny", "--bs", "a", "--weights", "random"),
                     "Error: --bs: 'a' is not a whole number", "Note: write e.g. --bs 8 or --bs 1,4,8", id="bs-a"),
        pytest.param(("export", "resnest-tiny", "--bs", "0", "-o", "x.onnx"),
                     "Error: --bs: batch size 0 must be at least 1", "Note: write e.g. --bs 8", id="export-bs-0"),
        pytest.param(("export", "resnest-tiny", "--bs", "a", "-o", "x.onnx"),
                     "Error: --bs: 'a' is not a whole number", "Note: write e.g. --bs 8", id="export-bs-a"),
        pytest.param(("run", "resnest-tiny", "--limit", "a"),
                     "Error: Invalid value for '--limit': 'a' is not a valid integer.",
                     "Note: `zoo run --help` lists the arguments and options", id="bad-flag-value"),
        pytest.param(("run",), "Error: Missing argument 'MODEL'.",
                     "Note: `zoo run --help` lists the arguments and options", id="missing-argument"),
        pytest.param(("run", "resnest-tiny", "--frobnicate"), "Error: No such option '--frobnicate'.",
                     "Note: `zoo run --help` lists the arguments and options", id="unknown-option"),
        pytest.param(("run", "resnest-tiny", "--backend", "tensorrt", "--weights", "random"),
                     "Error: unknown backend 'tensorrt'", "Note: `zoo plugins` shows every registered backend",
                     id="unknown-backend"),
    ],
)
def test_command_line_errors(zoo_cli, tmp_path: Path, args: tuple[str, ...], error: str, note: str) -> None:
    got_error, got_note = one_error(zoo_cli(*args, cwd=tmp_path), EXIT_USAGE)
    assert got_error == error
    assert got_note.startswith(note)
    assert not (tmp_path / "x.onnx").exists()


# -------------------------------------------------------------------------
# Backends and weights (exit 3)
# -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("atc") is not None, reason="a real Ascend toolkit is on PATH")
def test_backend_unavailable_names_what_is_missing(zoo_cli) -> None:
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--backend", "ascend", "--weights", "random"), EXIT_ENV)
    assert error.startswith("Error: backend 'ascend' is not available here: atc is not on PATH")
    assert "npu-smi is not on PATH" in error and "ais_bench" in error
    assert note == "Note: run `zoo plugins` for every backend's state, or choose another with --backend"


def test_offline_without_weights(zoo_cli) -> None:
    error, note = one_error(zoo_cli("run", "resnest50", "--bs", "1"), EXIT_ENV)
    assert error == ("Error: cannot download weights for resnest50 from https://github.com/zhanghang1989/ResNeSt/"
                     "releases/download/weights_step1/resnest50-528c19ca.pth: offline")
    assert "resnest50-528c19ca.pth" in note and "--weights PATH" in note and "--weights random" in note


def test_no_published_weights_and_none_given(zoo_cli) -> None:
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2"), EXIT_ENV)
    assert error == "Error: model 'resnest-tiny' declares no published weights"
    assert "--weights PATH" in note and "--weights random" in note


def test_missing_weights_file(zoo_cli, tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    error, _ = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", str(path)), EXIT_ENV)
    assert error == f"Error: weights file not found: {path}"


def _tiny_state_dict(num_classes: int = 10) -> dict:
    from zoo_resnest.model import build_resnest
    from zoo_tiny import TINY

    return build_resnest(**{**TINY.factory_kwargs, "num_classes": num_classes}).state_dict()


@pytest.mark.parametrize(
    ("weights", "detail"),
    [
        pytest.param(lambda: {"fc.weight": __import__("torch").zeros(3, 3)},
                     "keys 151 missing (e.g. conv1.0.weight, conv1.1.weight, conv1.1.bias), "
                     "1 of another shape (e.g. fc.weight: (3, 3) != (10, 256))",
                     id="another-architecture"),
        pytest.param(lambda: _tiny_state_dict(num_classes=5),
                     "keys 2 of another shape (e.g. fc.weight: (5, 256) != (10, 256))", id="another-head"),
    ],
)
def test_weights_of_another_model(zoo_cli, tmp_path: Path, weights, detail: str) -> None:
    import torch

    path = tmp_path / "other.pth"
    torch.save(weights(), path)
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", str(path), *FAST,
                                    "--out", str(tmp_path / "o")), EXIT_ENV)
    assert error == f"Error: weights {path} do not fit model 'resnest-tiny': {detail}"
    assert note == "Note: these weights belong to another model; pass the right file with --weights"


def test_truncated_weights(zoo_cli, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "tiny.pth"
    torch.save(_tiny_state_dict(), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", str(path), *FAST,
                                    "--out", str(tmp_path / "o")), EXIT_ENV)
    assert error.startswith(f"Error: cannot load weights from {path}: ")
    assert "PytorchStreamReader" in error
    assert note.startswith(f"Note: check that {path} is a PyTorch state_dict saved with torch.save")


# -------------------------------------------------------------------------
# Data (exit 3)
# -------------------------------------------------------------------------


def _images(folder: Path, count: int = 4, labels: bool = True) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(folder / f"img{i}.JPEG", quality=90)
    if labels:
        (folder / "val_label.txt").write_text("".join(f"img{i}.JPEG {i % 10}\n" for i in range(1, count + 1)))


def _data_run(data: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST, "--data", str(data),
            "--out", str(out), "--json", "--workers", "1", *extra)


def _empty(folder: Path) -> tuple[str, ...]:
    folder.mkdir()
    return ()


def _labels_only(folder: Path) -> tuple[str, ...]:
    folder.mkdir()
    (folder / "val_label.txt").write_text("img1.JPEG 1\n")
    return ()


def _no_label_file(folder: Path) -> tuple[str, ...]:
    _images(folder, labels=False)
    return ("--dataset", "imagenet-val")


def _malformed_labels(folder: Path) -> tuple[str, ...]:
    _images(folder)
    (folder / "val_label.txt").write_text("img1.JPEG 1\nimg2.JPEG one\n")
    return ()


def _corrupt_image(folder: Path) -> tuple[str, ...]:
    _images(folder)
    image = folder / "img3.JPEG"
    image.write_bytes(image.read_bytes()[:300])
    return ()


@pytest.mark.parametrize(
    ("make", "error", "note"),
    [
        pytest.param(lambda d: (), "Error: data folder not found: {data}",
                     "Note: pass the folder of images with --data",
                     id="missing-folder"),
        pytest.param(_empty, "Error: cannot tell what kind of dataset {data} is: no dataset plugin recognises it",
                     "Note: pass --dataset imagenet-val|folder (`zoo plugins` describes each kind)", id="empty-folder"),
        pytest.param(_labels_only, "Error: no labelled image in {data}",
                     "Note: the folder needs images whose file stems appear in the label file", id="no-images"),
        pytest.param(_no_label_file, "Error: label file not found: {data}/val_label.txt",
                     "Note: put val_label.txt in the data folder, or pass --labels FILE", id="missing-label-file"),
        pytest.param(_malformed_labels, "Error: val_label.txt line 2: class 'one' is not a whole number",
                     "Note: classes are numbered from 0", id="malformed-label-file"),
        pytest.param(_corrupt_image, "Error: cannot read image {data}/img3.JPEG: OSError: ",
                     "Note: remove or replace the file, or pass --skip-bad to count and skip it", id="corrupt-image"),
    ],
)
def test_bad_data(zoo_cli, tmp_path: Path, make, error: str, note: str) -> None:
    data = tmp_path / "val"
    extra = make(data)
    got_error, got_note = one_error(zoo_cli(*_data_run(data, tmp_path / "o", *extra)), EXIT_ENV)
    assert got_error.startswith(error.format(data=data)), got_error
    assert got_note == note


# -------------------------------------------------------------------------
# Folders and disk (exit 3). Tests run as root, where a chmod'ed folder is still writable: a path under a
# regular file fails for everyone (NotADirectoryError), and RLIMIT_FSIZE makes a write fail with EFBIG.
# -------------------------------------------------------------------------


def test_unwritable_output_folder(zoo_cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST,
                                    "--out", str(out)), EXIT_ENV)
    assert error == f"Error: cannot write results to {out}: Not a directory"
    assert note == "Note: choose a writable folder with --out"


def test_unwritable_cache_folder(zoo_cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"
    error, note = one_error(zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST,
                                    "--out", str(tmp_path / "o"), env={"ZOO_CACHE_DIR": str(cache)}), EXIT_ENV)
    assert error == f"Error: cannot write to the cache {cache}: Not a directory"
    assert note == "Note: set ZOO_CACHE_DIR to a writable folder with free space"


def test_full_disk_simulated(tmp_path: Path) -> None:
    limit = 64 * 1024  # the tiny model's ONNX export is about 600 KiB

    def small_files() -> None:  # Python ignores SIGXFSZ, so a write past the limit raises OSError(EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cache = tmp_path / "fresh-cache"  # nothing cached: the export has to be written
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_core", "run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST,
         "--out", str(tmp_path / "o")],
        env={**os.environ, "ZOO_CACHE_DIR": str(cache)}, capture_output=True, text=True, timeout=600,
        preexec_fn=small_files,
    )

    class Result:
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr

    error, note = one_error(Result, EXIT_ENV)
    assert error.startswith(f"Error: File too large: {cache}/export/") and error.endswith("/model.onnx"), error
    assert note == "Note: free some disk space, or point --out and ZOO_CACHE_DIR at a writable folder"
    assert not list(cache.rglob("*.onnx")), "a half-written export was left in the cache"


# -------------------------------------------------------------------------
# Plugins: recorded, never fatal (exit 0), except that a failed plugin's models do not exist (exit 2)
# -------------------------------------------------------------------------


def _plugin_env(tmp_path: Path, module: str, source: str) -> dict[str, str]:
    (tmp_path / f"{module}.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]),
            "ZOO_PLUGINS": f"{os.environ['ZOO_PLUGINS']},{module}"}


def test_plugin_import_error(zoo_cli, tmp_path: Path) -> None:
    env = _plugin_env(tmp_path, "zoo_broken", "raise ImportError('this plugin is broken on purpose')\n")

    error, note = one_error(zoo_cli("run", "brokennet", "--weights", "random", env=env), EXIT_USAGE)
    assert error == "Error: unknown model 'brokennet'" and "`zoo list` shows every registered model" in note

    plugins = zoo_cli("plugins", "--json", env=env)
    assert plugins.code == 0 and plugins.stderr == "", plugins
    broken = [p for p in plugins.json()["plugins"] if p["name"] == "zoo_broken"]
    assert broken == [{"name": "zoo_broken", "source": "$ZOO_PLUGINS", "version": "", "hooks": [],
                       "error": "ImportError: this plugin is broken on purpose"}]
    human = zoo_cli("plugins", env=env)
    assert human.code == 0 and "failed: ImportError: this plugin is broken on purpose" in human.stdout

    listing = zoo_cli("list", "--json", env=env)
    assert listing.code == 0 and "resnest-tiny" in {m["name"] for m in listing.json()}, listing


DUPLICATE = """\
from dataclasses import replace

from zoo_core import hookimpl
from zoo_tiny import TINY


@hookimpl
def zoo_register_models(register):
    register(replace(TINY, num_classes=5, description="a second resnest-tiny"))
"""


def test_duplicate_model_name_from_two_plugins(zoo_cli, tmp_path: Path) -> None:
    env = _plugin_env(tmp_path, "zoo_dup", DUPLICATE)

    plugins = zoo_cli("plugins", "--json", env=env)
    assert plugins.code == 0, plugins
    errors = [p["error"] for p in plugins.json()["plugins"] if p["name"] == "zoo_dup" and p["error"]]
    assert errors == ["duplicate model name 'resnest-tiny': already registered by plugin 'zoo_tiny'; "
                      "this one is ignored"]

    info = zoo_cli("info", "resnest-tiny", "--json", env=env).json()
    assert info["plugin"] == "zoo_tiny" and info["num_classes"] == 10  # the first registration is kept

    run = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST, "--json",
                  "--out", str(tmp_path / "o"), env=env)
    assert run.code == 0 and "Error" not in run.stderr and "Traceback" not in run.stderr, run
    assert run.json()["model"] == "resnest-tiny"
