"""Datasets: labels matched by stem, problems reported, bad data refused or skipped, runs resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_datasets
from zoo_core.datasets import natural_key
from zoo_core.errors import ZooError
from zoo_core.specs import DatasetSpec
from zoo_datasets.labels import read_labels
from zoo_tiny import TINY

EXIT_ENV = 3


def write_images(folder: Path, count: int, seed: int = 0, labelled: int | None = None) -> list[str]:
    """``count`` JPEGs of varied sizes and a val_label.txt for the first ``labelled`` of them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(1, count + 1):
        pixels = (rng.random((int(rng.integers(60, 200)), int(rng.integers(60, 200)), 3)) * 255).astype(np.uint8)
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        Image.fromarray(pixels).save(folder / name, quality=90)
        names.append(name)
    lines = [f"{n} {i % 10}" for i, n in enumerate(names[: count if labelled is None else labelled])]
    (folder / "val_label.txt").write_text("\n".join(lines) + "\n")
    return names


def run_args(data: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "resnest-tiny", "--bs", "4", "--weights", "random", "--warmup", "0", "--iterations", "1",
            "--data", str(data), "--out", str(out), "--json", *extra)


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines and lines[-2].startswith("Error: "), result
    assert lines[-1].startswith("Note: ")
    return lines[-2]


# -------------------------------------------------------------------------
# Labels and listings
# -------------------------------------------------------------------------


def test_labels_are_read_by_stem(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\n\nb.png 0\n")
    assert read_labels(tmp_path / "l.txt", 1000) == {"ILSVRC2012_val_00000001": 65, "b": 0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.JPEG 1\nb.JPEG\n", "line 2: expected '<file name> <class>'"),
        ("a.JPEG 1\nb.JPEG x\n", "line 2: class 'x' is not a whole number"),
        ("a.JPEG 10\n", "line 1: class 10 is outside the model's classes 0..9"),
        ("a.JPEG -1\n", "line 1: class -1 is outside"),
        ("a.JPEG 1\na.png 2\n", "line 2: 'a' is labelled twice (also line 1)"),
        ("../../etc/passwd 1\n", "line 1: '../../etc/passwd' is a path, not a file name"),
        ("sub\\\\a.JPEG 1\n", "is a path, not a file name"),
        ("\n\n", "holds no labels"),
    ],
)
def test_malformed_label_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "val_label.txt").write_text(text)
    with pytest.raises(ZooError, match=None) as info:
        read_labels(tmp_path / "val_label.txt", 10)
    assert message in info.value.message


def test_natural_order() -> None:
    assert sorted(["img10", "img2", "img1"], key=natural_key) == ["img1", "img2", "img10"]


def load(path: Path, kind: str = "imagenet-val", labels: Path | None = None):
    return zoo_datasets.zoo_load_dataset(dataset=DatasetSpec(kind), path=path, labels=labels, classes=None, model=TINY)


def test_unlabelled_images_and_labels_without_images_are_reported(tmp_path: Path) -> None:
    names = write_images(tmp_path, 5, labelled=4)
    with open(tmp_path / "val_label.txt", "a") as fh:
        fh.write("ILSVRC2012_val_00000099.JPEG 3\n")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load(tmp_path)
    assert [s.id for s in dataset.samples] == [Path(n).stem for n in names[:4]]
    assert dataset.unlabeled == ["ILSVRC2012_val_00000005"]
    assert dataset.missing == ["ILSVRC2012_val_00000099"]
    assert dataset.ignored == 2  # notes.txt and val_label.txt itself


def test_limit_takes_the_first_by_natural_order(tmp_path: Path) -> None:
    for name in ("img10.png", "img2.png", "img1.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "val_label.txt").write_text("img10.png 1\nimg2.png 2\nimg1.png 3\n")
    dataset = load(tmp_path).limited(2)
    assert [(s.id, s.label) for s in dataset.samples] == [("img1", 3), ("img2", 2)]


def test_class_folders(tmp_path: Path) -> None:
    for cls in ("cat", "ant"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / cls / "x.png")
    dataset = load(tmp_path, "folder")
    assert [(s.id, s.label) for s in dataset.samples] == [("ant/x", 0), ("cat/x", 1)]


# -------------------------------------------------------------------------
# Bad data, through the CLI: one line and an exit code, or a counted skip
# -------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    write_images(folder, 10)
    return folder


def test_a_corrupt_jpeg_stops_the_run_with_its_name(zoo_cli, data: Path, tmp_path: Path) -> None:
    (data / "ILSVRC2012_val_00000003.JPEG").write_bytes((data / "ILSVRC2012_val_00000003.JPEG").read_bytes()[:300])
    result = zoo_cli(*run_args(data, tmp_path / "o"))
    assert result.code == EXIT_ENV
    assert "cannot read image" in one_line(result) and "ILSVRC2012_val_00000003.JPEG" in result.stderr
    assert "--skip-bad" in result.stderr


def test_skip_bad_counts_and_lists_the_bad_images(zoo_cli, data: Path, tmp_path: Path) -> None:
    (data / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (data / "ILSVRC2012_val_00000007.JPEG").write_text("this is a text file, not an image")  # a non-image file
    result = zoo_cli(*run_args(data, tmp_path / "o", "--skip-bad"))
    assert result.code == 0, result
    accuracy = result.json()["accuracy"]
    assert accuracy["images"] == 8 and accuracy["skipped"]["count"] == 2
    assert [s["id"] for s in accuracy["skipped"]["images"]] == ["ILSVRC2012_val_00000003", "ILSVRC2012_val_00000007"]
    rows = (tmp_path / "o" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 and not any("00000003" in r for r in rows)


def test_a_missing_label_file(zoo_cli, data: Path, tmp_path: Path) -> None:
    (data / "val_label.txt").unlink()
    result = zoo_cli(*run_args(data, tmp_path / "o", "--dataset", "imagenet-val"))
    assert result.code == EXIT_ENV and "label file not found" in one_line(result)


def test_a_malformed_label_file_names_the_line(zoo_cli, data: Path, tmp_path: Path) -> None:
    (data / "val_label.txt").write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000002.JPEG one\n")
    result = zoo_cli(*run_args(data, tmp_path / "o"))
    assert result.code == EXIT_ENV and "val_label.txt line 2: class 'one'" in one_line(result)


def test_a_label_outside_the_models_classes(zoo_cli, data: Path, tmp_path: Path) -> None:
    (data / "val_label.txt").write_text("ILSVRC2012_val_00000001.JPEG 10\n")  # resnest-tiny has 10 classes
    result = zoo_cli(*run_args(data, tmp_path / "o"))
    assert result.code == EXIT_ENV and "class 10 is outside the model's classes 0..9" in one_line(result)


def test_a_missing_data_folder(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli(*run_args(tmp_path / "nowhere", tmp_path / "o"))
    assert result.code == EXIT_ENV and "data folder not found" in one_line(result)


def test_preprocess_writes_the_seed_bins(zoo_cli, data: Path, tmp_path: Path) -> None:
    from zoo_core.preprocessing import apply

    result = zoo_cli("preprocess", "resnest-tiny", "--data", str(data), "-o", str(tmp_path / "bins"), "--json")
    assert result.code == 0, result
    assert result.json()["written"] == 10
    first = tmp_path / "bins" / "ILSVRC2012_val_00000001.bin"
    expected = apply(TINY, "modelzoo", data / "ILSVRC2012_val_00000001.JPEG")
    assert first.stat().st_size == expected.nbytes
    np.testing.assert_array_equal(np.fromfile(first, dtype=np.float32).reshape(expected.shape), expected)


# -------------------------------------------------------------------------
# Resuming an interrupted run
# -------------------------------------------------------------------------


def _interrupt_after_first_shard(args: tuple[str, ...], cache: Path, sig: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "zoo_core", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(cache.glob("evaluations/*/shard-*.npz")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_resumes_and_ends_with_the_same_numbers(zoo_cli, tmp_path: Path, sig: int) -> None:
    data = tmp_path / "val"
    write_images(data, 48, seed=1)
    args = ("run", "tiny-slow", "--bs", "4", "--weights", "random", "--warmup", "0", "--iterations", "1",
            "--data", str(data), "--shard-images", "8", "--json")
    whole = zoo_cli(*args, "--out", str(tmp_path / "whole"), env={"ZOO_CACHE_DIR": str(tmp_path / "c1")})
    assert whole.code == 0, whole

    cache = tmp_path / "c2"
    stopped = _interrupt_after_first_shard((*args, "--out", str(tmp_path / "part")), cache, sig)
    if sig == signal.SIGINT:
        assert stopped.returncode == 130 and "interrupted:" in stopped.stderr and "resume" in stopped.stderr
        assert "Traceback" not in stopped.stderr
    else:
        assert stopped.returncode == -signal.SIGKILL
    saved = len(list(cache.glob("evaluations/*/shard-*.npz")))
    assert 1 <= saved < 6

    resumed = zoo_cli(*args, "--out", str(tmp_path / "part"), env={"ZOO_CACHE_DIR": str(cache)})
    assert resumed.code == 0, resumed
    a, b = whole.json()["accuracy"], resumed.json()["accuracy"]
    assert b["resumed_images"] == 8 * saved and a["resumed_images"] == 0
    assert (a["top1"], a["top5"], a["images"]) == (b["top1"], b["top5"], b["images"]) and a["images"] == 48
    assert (tmp_path / "whole" / "predictions.csv").read_text() == (tmp_path / "part" / "predictions.csv").read_text()
    assert not list(cache.glob("evaluations/*/.*.tmp"))
