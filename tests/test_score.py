"""zoo score: a folder of ais_bench outputs (TXT, NPY, BIN, with its summary) scored as zoo run scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_bad_inputs import one_error
from zoo_core.errors import EXIT_ENV
from zoo_core.reporting import validation_errors
from zoo_core.testing import write_image_dataset

IMAGES = 7  # at batch 4: a last batch of 3 real samples and 1 padded one
BATCH = 4
_made: dict[str, Any] = {}


@pytest.fixture
def made(zoo_cli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Images, their `zoo preprocess` .bin files, each image's logits from ONNX Runtime on its .bin, and the
    top-1/top-5 of `zoo run --data` on the same images: made once for the module."""
    if not _made:
        import onnxruntime as ort

        root = tmp_path_factory.mktemp("score")
        write_image_dataset(root / "val", IMAGES)
        assert zoo_cli("preprocess", "resnest-tiny", "--data", str(root / "val"), "-o", str(root / "bins")).code == 0
        onnx = root / "tiny.onnx"
        result = zoo_cli("export", "resnest-tiny", "--bs", "1", "-o", str(onnx), "--weights", "random")
        assert result.code == 0, result
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        shape = [1, *session.get_inputs()[0].shape[1:]]
        logits = {}
        for path in sorted((root / "bins").glob("*.bin")):
            logits[path.name] = session.run(None, {name: np.fromfile(path, np.float32).reshape(shape)})[0][0]
        run = zoo_cli("run", "resnest-tiny", "--data", str(root / "val"), "--weights", "random", "--bs", "1",
                      "--warmup", "0", "--iterations", "1", "--out", str(root / "run"), "--json")
        assert run.code == 0, run
        row = run.json()["results"][0]
        _made.update(root=root, logits=logits, top1=row["top1"], top5=row["top5"])
    return _made


def write_outputs(made: dict[str, Any], out: Path, fmt: str, summary: bool = True) -> Path:
    """The folder `python -m ais_bench --input bins --output OUT --output_dirname NAME --outfmt FMT --batchsize 4`
    writes: `<input name cut at its first dot>_0.<fmt>`, and OUT/NAME_summary.json listing the padded sample."""
    folder = out / "result"
    folder.mkdir(parents=True)
    bins = sorted(made["logits"])
    info: dict[str, Any] = {}
    for index, name in enumerate(bins):
        logits = made["logits"][name].reshape(1, -1).astype(np.float32)
        target = folder / f"{name.split('.', 1)[0]}_0.{fmt.lower()}"
        if fmt == "BIN":
            logits.tofile(target)
        elif fmt == "NPY":
            np.save(target, logits)
        else:
            target.write_text("".join("".join("%f" % v + " " for v in row) + "\n" for row in logits))
        info[str(index)] = {"infiles": [str(made["root"] / "bins" / name)], "outfiles": [str(target)]}
    first_of_last = bins[(len(bins) // BATCH) * BATCH]
    for index in range(len(bins), -(-len(bins) // BATCH) * BATCH):  # padding: the last batch's first file again
        info[str(index)] = {"infiles": [str(made["root"] / "bins" / first_of_last)],
                            "outfiles": [str(folder / f"{first_of_last.split('.', 1)[0]}_0.{fmt.lower()}")]}
    if summary:
        times = [0.5, 0.6, 0.55]
        (out / "result_summary.json").write_text(json.dumps({
            "args": {"batchsize": BATCH, "outfmt": fmt}, "filesinfo": info, "npu_compute_time_list": times,
            "NPU_compute_time": {"min": 0.5, "max": 0.6, "mean": 0.55, "median": 0.55, "percentile(99%)": 0.6,
                                 "count": 3},
            "throughput": 1000 * BATCH / 0.55, "pid": 1}, indent=4))
    return folder


def score(zoo_cli, made: dict[str, Any], folder: Path, out: Path, *extra: str):
    return zoo_cli("score", str(folder), "--model", "resnest-tiny", "--data", str(made["root"] / "val"),
                   "--out", str(out), *extra)


@pytest.mark.parametrize("fmt", ["TXT", "NPY", "BIN"])
def test_each_format_scores_as_zoo_run(zoo_cli, made, tmp_path: Path, fmt: str) -> None:
    folder = write_outputs(made, tmp_path / "ais", fmt)
    result = score(zoo_cli, made, folder, tmp_path / "o", "--json")
    assert result.code == 0, result
    data = result.json()
    row = data["results"][0]
    assert (row["top1"], row["top5"], row["images"]) == (made["top1"], made["top5"], IMAGES)  # padding not twice
    assert data["backend"] == "ascend" and row["batch_size"] == BATCH
    assert row["throughput"] == pytest.approx(1000 * BATCH / 0.55)
    written = json.loads((tmp_path / "o" / "results.json").read_text())
    assert validation_errors(written) == []
    for name in ("results.csv", "report.md"):
        assert (tmp_path / "o" / name).is_file()
    predictions = (tmp_path / "o" / "predictions.csv").read_text().splitlines()
    assert predictions == (made["root"] / "run" / "predictions.csv").read_text().splitlines()


def test_without_a_summary_there_is_no_throughput(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "NPY", summary=False)
    result = score(zoo_cli, made, folder, tmp_path / "o", "--json")
    assert result.code == 0, result
    data = result.json()
    assert data["throughput"] is None and data["accuracy"]["top1"] == made["top1"]
    assert "throughput: none" in result.stderr
    assert not (tmp_path / "o" / "results.json").exists() and (tmp_path / "o" / "predictions.csv").is_file()


def _first(folder: Path, ext: str) -> Path:
    return sorted(folder.glob(f"*_0.{ext}"))[0]


def test_a_missing_output_is_named(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "NPY", summary=False)
    gone = _first(folder, "npy")
    gone.unlink()
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert "no ais_bench output for image" in error and gone.name.split("_0")[0] in error


def test_an_output_of_the_wrong_size_is_named(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "BIN", summary=False)
    bad = _first(folder, "bin")
    bad.write_bytes(bad.read_bytes() + b"\0\0\0\0")
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert bad.name in error and "bytes" in error


def test_an_unparsable_txt_row_is_named(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "TXT", summary=False)
    bad = _first(folder, "txt")
    bad.write_text(bad.read_text().replace(" ", " x", 1))
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert bad.name in error and "line 1" in error


def test_nan_in_an_output_is_named(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "NPY", summary=False)
    bad = _first(folder, "npy")
    values = np.load(bad)
    values[0, 1] = np.nan
    np.save(bad, values)
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert bad.name in error and "NaN" in error


def test_an_output_matching_no_image_is_a_warning(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "NPY", summary=False)
    shutil.copy(_first(folder, "npy"), folder / "stranger_0.npy")
    result = score(zoo_cli, made, folder, tmp_path / "o", "--json")
    assert result.code == 0, result
    assert "match no image" in result.stderr and "stranger_0.npy" in result.stderr
    assert result.json()["accuracy"]["images"] == IMAGES


def test_a_summary_naming_missing_files_is_named(zoo_cli, made, tmp_path: Path) -> None:
    folder = write_outputs(made, tmp_path / "ais", "NPY")
    summary = tmp_path / "ais" / "result_summary.json"
    data = json.loads(summary.read_text())
    data["filesinfo"]["2"]["outfiles"] = [str(folder / "elsewhere_0.npy")]
    summary.write_text(json.dumps(data))
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert "elsewhere_0.npy" in error and "summary" in error


def test_a_summary_whose_throughput_disagrees_with_its_times_is_named(zoo_cli, made, tmp_path: Path) -> None:
    """ais_bench's throughput is 1000 * batchsize / mean(npu_compute_time_list): an edited summary (or another
    run's) giving 10 times that is not printed as the throughput."""
    folder = write_outputs(made, tmp_path / "ais", "NPY")
    summary = tmp_path / "ais" / "result_summary.json"
    data = json.loads(summary.read_text())
    data["throughput"] *= 10
    summary.write_text(json.dumps(data))
    error, _ = one_error(score(zoo_cli, made, folder, tmp_path / "o"), EXIT_ENV)
    assert "gives throughput" in error and "mean npu_compute_time 0.55 ms give" in error
