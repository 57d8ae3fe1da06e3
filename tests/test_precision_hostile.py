"""#15's precision feature tried as a hostile user would: odd calibration folders, a dry-run's calibrate command,
the Python API's path arguments and zoo report between runs of several precisions."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from test_bad_inputs import one_error
from zoo_core.testing import write_image_dataset

TINY = "resnest-tiny"
FAST = ["--weights", "random", "--warmup", "0", "--iterations", "1"]
INT8 = ["--precision", "int8"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images") / "val"
    write_image_dataset(folder, count=8)
    return folder


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fewer_calibration_images_than_one_batch_is_one_line_before_quantizing(zoo_cli, images, tmp_path,
                                                                             backend) -> None:
    """--calib-images 8 at --bs 8, but the folder holds one image: no whole batch to calibrate on. Was ONNX
    Runtime's AttributeError dressed as a quantizer failure, and NNCF's ValidationError traceback (exit 1)."""
    if backend == "openvino":
        pytest.importorskip("nncf")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(images.iterdir())[0], one)
    result = zoo_cli("run", TINY, "--bs", "8", *FAST, "--backend", backend, *INT8, "--calib", str(one),
                     "--calib-images", "8", env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    error, note = one_error(result, 3)
    assert f"--calib {one} has 1 image, fewer than batch size 8" in error, error
    assert "--bs" in note
    assert "quantize" not in result.stderr.replace(error, "")  # said before the quantizer ran


def test_zoo_calibrate_refuses_a_folder_smaller_than_its_batch(zoo_cli, images, tmp_path) -> None:
    """zoo calibrate wrote no .bin file at all (0 batches) and said it had written them."""
    out = tmp_path / "bins"
    result = zoo_cli("calibrate", TINY, "--calib", str(images), "--calib-images", "16", "--bs", "16", "-o", str(out),
                     env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    error, _ = one_error(result, 3)
    assert f"--calib {images} has 8 images, fewer than batch size 16" in error
    assert not out.exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"\xff\xd8 a file"), "--calib must be a folder: "),
    (lambda p: None, "calibration data folder not found: "),
])
def test_a_calibration_path_that_is_no_folder_names_calib(zoo_cli, tmp_path, make, message) -> None:
    """It said '--data must be a folder' (note: pass it with --data) for a run that has no --data."""
    path = tmp_path / "calib.jpg"
    make(path)
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, *INT8, "--calib", str(path))
    error, note = one_error(result, 3)
    assert error == f"Error: {message}{path}"
    assert "--calib" in note and "--data" not in error + note


def test_a_calibration_folder_named_with_a_newline_stays_on_one_line(zoo_cli, images, tmp_path) -> None:
    empty = tmp_path / "e\nmpty"
    empty.mkdir()
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, *INT8, "--calib", str(empty))
    error, _ = one_error(result, 3)
    assert error.endswith("e\\nmpty")
    named = tmp_path / "cal\nib"
    shutil.copytree(images, named)
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, *INT8, "--calib", str(named), "--calib-images", "4",
                     "--out", str(tmp_path / "out"), env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    assert result.code == 0, result
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("precision: calibrated on")]
    assert line.endswith("cal\\nib (minmax)"), line
    assert "cal\\nib" in result.stderr and "cal\nib" not in result.stderr  # the progress line too
    report = (tmp_path / "out" / "report.md").read_text()
    assert "cal\\nib (minmax)" in report
    assert json.loads((tmp_path / "out" / "results.json").read_text())["precision"]["calibration"]["source"] == \
        str(named)  # the record keeps the name as it is
    (named / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"not a jpeg")
    result = zoo_cli("run", TINY, "--bs", "4", *FAST, *INT8, "--calib", str(named), "--calib-images", "4",
                     env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    error, _ = one_error(result, 3)
    assert "cannot read calibration image" in error and "cal\\nib" in error


@pytest.mark.parametrize("calib", ["images", "random"])
def test_the_dry_runs_calibrate_command_makes_the_runs_calibration_set(zoo_cli, images, tmp_path, calib) -> None:
    """--preset and --seed change the calibration set; the dry-run's `zoo calibrate` dropped both, so the set it
    wrote for AMCT was not the one the run quantizes with."""
    source = str(images) if calib == "images" else "random"
    args = ["--bs", "4", *FAST, *INT8, "--calib", source, "--calib-images", "4", "--preset", "reference",
            "--seed", "7"]
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    ran = zoo_cli("run", TINY, *args, "--json", "--out", str(tmp_path / "out"), env=env)
    assert ran.code == 0, ran
    dry = zoo_cli("run", TINY, *args, "--dry-run", cwd=tmp_path)
    assert dry.code == 0, dry
    (line,) = [x for x in dry.stdout.splitlines() if x.startswith("zoo calibrate ")]
    written = zoo_cli(*shlex.split(line)[1:], "--json", cwd=tmp_path, env=env)
    assert written.code == 0, written
    assert written.json()["calibration"]["sha256"] == ran.json()["precision"]["calibration"]["sha256"]


def test_the_python_api_takes_a_path_for_calib(images, tmp_path, monkeypatch) -> None:
    """calib is typed PathLike, and a pathlib.Path was refused as '--calib: PosixPath(...) is not a name'."""
    import zoo_core

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    results = zoo_core.run(TINY, bs=4, weights="random", warmup=0, iterations=1, precision="int8", calib=images,
                           calib_images=4, out=tmp_path / "out")
    assert results.precision is not None and results.precision.calibration is not None
    assert results.precision.calibration.source == str(images)
    assert [r.precision for r in results.results] == ["int8"]


def test_zoo_report_names_the_precision_of_each_row(zoo_cli, tmp_path) -> None:
    """Two rows of batch 4 (fp32 and int8) showed as two rows '4' in zoo report's table."""
    out = tmp_path / "a"
    ran = zoo_cli("run", TINY, "--bs", "4", *FAST, "--precision", "fp32,int8", "--calib", "random",
                  "--calib-images", "4", "--out", str(out))
    assert ran.code == 0, ran
    result = zoo_cli("report", str(out), str(out))
    assert result.code == 0, result
    header = next(x for x in result.stdout.splitlines() if "A img/s" in x)
    assert "precision" in header
    rows = [x for x in result.stdout.splitlines() if x.strip("│ ").startswith("4 ")]
    assert len(rows) == 2 and "fp32" in rows[0] and "int8" in rows[1], result.stdout


def test_an_onnx_file_below_the_quantizers_opset_is_one_line(zoo_cli, tmp_path) -> None:
    """--onnx bypasses the export that int8 raises to opset 13: ONNX Runtime's quantizer then wrote an invalid
    graph (DequantizeLinear's axis at opset 11) and the run ended in an InvalidGraph traceback (exit 1)."""
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    onnx_file = tmp_path / "tiny-opset11.onnx"
    made = zoo_cli("export", TINY, "--bs", "4", "-o", str(onnx_file), "--weights", "random", "--opset", "11", env=env)
    assert made.code == 0, made
    result = zoo_cli("run", TINY, "--onnx", str(onnx_file), "--bs", "4", *FAST, *INT8, "--calib", "random",
                     "--calib-images", "4", env=env)
    error, note = one_error(result, 3)
    assert f"--onnx {onnx_file} is ONNX opset 11" in error and "needs opset 13" in error
    assert "--opset 13" in note
