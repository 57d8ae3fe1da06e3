"""``zoo compare``'s task-level agreement (#16): the top-1 agreement and top-5 overlap of class scores against the
reference, recomputed here from the outputs; ``--min-agreement`` (exit 4); ``--data`` on real images with each
backend's accuracy; ``--precision`` on the backends other than the reference; and bad requests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from accuracy_data import SelfConsistent, make_selfconsistent_dataset, shifted_labels, write_labels
from test_bad_inputs import one_error

import zoo_core
from zoo_core.agreement import agreement
from zoo_core.errors import EXIT_CHECK, EXIT_USAGE

TINY = ("resnest-tiny", "--weights", "random")


@pytest.fixture
def perturbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The ``perturbed-cpu`` backend loaded (tests/plugins/zoo_perturbed.py); the folder its batches go to."""
    dump = tmp_path / "dump"
    dump.mkdir()
    monkeypatch.setenv("ZOO_PLUGINS", f"{os.environ['ZOO_PLUGINS']},zoo_perturbed")
    monkeypatch.setenv("ZOO_PERTURBED_DUMP", str(dump))
    return dump


def dumped(folder: Path, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The perturbed backend's clean and perturbed first output, padding dropped."""
    batches = [np.load(p) for p in sorted(folder.glob("batch-*.npz"))]
    clean = np.concatenate([b["clean"] for b in batches])[:samples]
    perturbed = np.concatenate([b["perturbed"] for b in batches])[:samples]
    return clean, perturbed


def recomputed(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement and top-5 overlap, written out row by row (no ties in these float scores)."""
    same, overlap = 0, 0.0
    for a, b in zip(actual, expected, strict=True):
        same += int(a.argmax() == b.argmax())
        overlap += len(set(np.argsort(a)[-5:].tolist()) & set(np.argsort(b)[-5:].tolist())) / 5
    return same / len(actual), overlap / len(actual)


def check_line(result) -> str:
    """The exit 4 of a failed comparison: the table on stdout, then exactly one Error and one Note line."""
    assert result.code == EXIT_CHECK, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("Error: ") and lines[-1].startswith("Note: "), result
    assert sum(line.startswith(("Error", "Note")) for line in lines) == 2, result
    return lines[-2]


# ---------------------------------------------------------------- the math


def test_agreement_counts_top1_matches_and_shared_top5_classes() -> None:
    expected = np.array([[9.0, 8, 7, 6, 5, 4, 0], [0, 1, 2, 3, 4, 5, 6]])
    actual = np.array([[8.0, 9, 7, 6, 5, 4, 0],  # top-1 1 against 0; the same top-5 {0..4}
                       [6, 1, 2, 3, 4, 5, 0]])  # top-1 0 against 6; top-5 {0,5,4,3,2} against {6,5,4,3,2}: 4 shared
    assert agreement(actual, expected) == (0.0, pytest.approx((5 / 5 + 4 / 5) / 2))
    assert agreement(expected, expected) == (1.0, 1.0)
    nan = expected.copy()
    nan[1, 3] = np.nan
    assert agreement(nan, expected) == (None, None)  # NaN ranks arbitrarily: no number answers


def test_ties_rank_by_class_index_as_the_accuracy_does() -> None:
    tied = np.array([[1.0, 1.0, 0.0]])
    assert agreement(tied, np.array([[2.0, 1.0, 0.0]]))[0] == 1.0  # class 0 ranks first among equals
    assert agreement(tied, np.array([[1.0, 2.0, 0.0]]))[0] == 0.0


# ---------------------------------------------------------------- agreement reported, recomputed from the outputs


def test_compare_reports_the_agreement_of_each_backend_recomputed_from_its_outputs(zoo_cli, perturbed) -> None:
    result = zoo_cli("compare", *TINY, "--bs", "4", "--samples", "9", "--backends", "onnxruntime,perturbed-cpu",
                     "--atol", "1e6", "--json")
    assert result.code == 0, result
    data = result.json()
    clean, flipped = dumped(perturbed, 9)
    top1, top5 = recomputed(flipped, clean)
    assert top1 == pytest.approx(6 / 9)  # the first sample of each of the 3 batches flipped
    (row,) = data["comparisons"]
    assert (row["backend"], row["reference"]) == ("perturbed-cpu", "onnxruntime")
    assert row["top1_agreement"] == pytest.approx(top1) and row["top5_overlap"] == pytest.approx(top5)
    assert row["max_abs"] == pytest.approx(float(np.abs(flipped - clean).max()), rel=1e-6)  # the same reference
    assert "top1" not in row and "reference_top1" not in data  # no labels without --data

    human = zoo_cli("compare", *TINY, "--bs", "4", "--samples", "9", "--backends", "onnxruntime,perturbed-cpu",
                    "--atol", "1e6")
    assert human.code == 0, human
    assert "top-1 agree" in human.stdout and f"{100 * top1:.2f}%" in human.stdout
    assert f"{100 * top5:.2f}%" in human.stdout


# ---------------------------------------------------------------- --min-agreement


def test_min_agreement_fails_with_exit_4_naming_the_backend_its_agreement_and_the_bound(zoo_cli, perturbed) -> None:
    args = ("compare", *TINY, "--bs", "4", "--samples", "9", "--backends", "onnxruntime,perturbed-cpu")
    failed = zoo_cli(*args, "--min-agreement", "0.9", "--json")
    error = check_line(failed)
    assert failed.json()["passed"] is False and failed.json()["min_agreement"] == 0.9
    assert ("perturbed-cpu keeps onnxruntime's top-1 class on 6 of 9 samples (agreement 0.6667" in error
            and "below --min-agreement 0.9" in error), error

    human = zoo_cli(*args, "--min-agreement", "0.9")
    assert check_line(human) == error
    assert "FAIL: perturbed-cpu keep onnxruntime's top-1 class on less than --min-agreement 0.9" in human.stdout

    # Without --atol/--rtol, the agreement alone is judged: the flipped scores fail the fp32 tolerances, and pass.
    passed = zoo_cli(*args, "--min-agreement", "0.6", "--json")
    assert passed.code == 0, passed
    data = passed.json()
    assert data["passed"] is True and data["tolerances_judged"] is False
    assert data["comparisons"][0]["passed"] is False  # still reported
    # Given a tolerance too, both are judged: the tolerance fails.
    both = zoo_cli(*args, "--min-agreement", "0.6", "--atol", "1e-4")
    assert "beyond --atol 0.0001" in check_line(both)


def test_the_python_api_takes_min_agreement_and_says_the_same(perturbed) -> None:
    result = zoo_core.compare("resnest-tiny", backends="onnxruntime,perturbed-cpu", bs=4, samples=9,
                              weights="random", min_agreement=0.9)
    assert not result.passed and result.min_agreement == 0.9
    assert result.comparisons[0].top1_agreement == pytest.approx(6 / 9)
    with pytest.raises(zoo_core.errors.CheckError, match=r"6 of 9 samples .* below --min-agreement 0\.9"):
        result.raise_if_failed()


@pytest.mark.parametrize(("extra", "message"), [
    (("--min-agreement", "1.5"), "--min-agreement: 1.5 is not a share from 0 to 1"),
    (("--min-agreement", "-0.1"), "--min-agreement: -0.1 is not a share from 0 to 1"),
    (("--min-agreement", "nan"), "--min-agreement: nan is not a share from 0 to 1"),
    (("--min-agreement", "most"), "'most' is not a valid float"),
    (("--limit", "3"), "--limit is for --data"),
    (("--labels", "val.txt"), "--labels is for --data"),
    (("--precision", "fp32,int8"), "zoo compare takes one precision"),
    (("--precision", "fp16"), "--precision fp16: backend 'onnxruntime' computes in fp32, int8 only"),
])
def test_bad_requests_are_usage_errors_before_any_work(zoo_cli, extra: tuple[str, ...], message: str) -> None:
    result = zoo_cli("compare", *TINY, "--bs", "2", "--backends", "torch,onnxruntime", *extra)
    error, _ = one_error(result, EXIT_USAGE)
    assert message in error, result
    assert "export" not in result.stderr  # nothing was exported


def test_min_agreement_from_python_is_checked_as_on_the_command_line() -> None:
    with pytest.raises(zoo_core.errors.UsageError, match=r"--min-agreement: 2 is not a share from 0 to 1"):
        zoo_core.compare("resnest-tiny", backends="torch,onnxruntime", bs=2, weights="random", min_agreement=2)


# ---------------------------------------------------------------- --data: real images, and their labels


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> SelfConsistent:
    """JPEGs labelled with resnest-tiny's own predictions under its weights (tests/accuracy_data.py)."""
    with pytest.MonkeyPatch.context() as mp:  # a module fixture runs before `isolated` sets the test plugins
        mp.setenv("ZOO_PLUGINS", "zoo_tiny")
        return make_selfconsistent_dataset(tmp_path_factory.mktemp("agreement"), model="resnest-tiny", count=24,
                                           min_images=12, min_classes=4)


def test_data_compares_the_images_and_scores_each_backend_against_the_labels(zoo_cli, images, perturbed,
                                                                             tmp_path) -> None:
    args = ("compare", "resnest-tiny", "--weights", str(images.weights), "--bs", "4",
            "--backends", "onnxruntime,perturbed-cpu", "--atol", "1e6", "--json")
    result = zoo_cli(*args, "--data", str(images.data))
    assert result.code == 0, result
    data = result.json()
    count = len(images.labels)
    assert data["samples"] == count and data["data"] == str(images.data)
    # The images, preprocessed as for evaluation: the reference scores the labels it predicted itself.
    assert data["reference_top1"] == 1.0 and data["reference_top5"] == 1.0
    clean, flipped = dumped(perturbed, count)
    labels = np.array(list(images.labels.values()))  # natural order, as compared
    assert (clean.argmax(axis=1) == labels).all()
    (row,) = data["comparisons"]
    assert row["top1"] == pytest.approx(float(np.mean(flipped.argmax(axis=1) == labels)))
    assert row["top1"] == pytest.approx(1 - (count + 3) // 4 / count)  # one flipped sample per batch
    assert row["top1_agreement"] == pytest.approx(recomputed(flipped, clean)[0])

    # The labels are read: the next image's label for each one scores the reference near 0.
    shifted = tmp_path / "shifted.txt"
    write_labels(shifted, shifted_labels(images.labels))
    again = zoo_cli(*args, "--data", str(images.data), "--labels", str(shifted))
    assert again.code == 0, again
    assert again.json()["reference_top1"] < 0.5
    assert again.json()["comparisons"][0]["top1_agreement"] == row["top1_agreement"]  # the same images

    limited = zoo_cli(*args, "--data", str(images.data), "--limit", "5")
    assert limited.code == 0 and limited.json()["samples"] == 5, limited


def test_data_with_samples_is_a_usage_error(zoo_cli, images) -> None:
    result = zoo_cli("compare", *TINY, "--backends", "torch,onnxruntime", "--data", str(images.data),
                     "--samples", "4")
    error, _ = one_error(result, EXIT_USAGE)
    assert "--samples counts generated inputs" in error


# ---------------------------------------------------------------- --precision on the compared backends


def test_precision_applies_to_the_backends_other_than_the_reference(zoo_cli, images) -> None:
    result = zoo_cli("compare", "resnest-tiny", "--weights", str(images.weights), "--bs", "4",
                     "--backends", "torch,onnxruntime", "--precision", "int8", "--data", str(images.data),
                     "--min-agreement", "0.5", "--json")
    assert result.code == 0, result
    data = result.json()
    assert data["precision"] == "int8" and data["reference"] == "torch"
    assert data["reference_top1"] == 1.0  # torch in fp32
    (row,) = data["comparisons"]
    assert row["max_abs"] > 1e-3  # int8, not the fp32 session (which agrees to ~1e-6)
    assert 0.5 <= row["top1_agreement"] <= 1.0 and row["top1"] == row["top1_agreement"]  # labels = torch's top-1
    assert "int8" in result.stderr  # the quantize stage ran


# ---------------------------------------------------------------- Ascend's fp16 (the fakes' emulation)


def test_ascend_fp16_agreement_on_images_is_its_accuracy_against_the_fp32_labels(zoo_cli, images, ascend_env) -> None:
    result = zoo_cli("compare", "resnest-tiny", "--weights", str(images.weights), "--bs", "4",
                     "--backends", "onnxruntime,ascend", "--data", str(images.data), "--min-agreement", "0.5",
                     "--json", env=ascend_env)
    assert result.code == 0, result
    data = result.json()
    assert data["reference_top1"] == 1.0  # ONNX Runtime in fp32 predicts the labels
    (row,) = data["comparisons"]
    assert row["max_abs"] > 1e-4  # computed in float16 (force_fp16, ATC's default), not float32
    # The labels are the fp32 top-1: the share of images fp16 keeps it on is its top-1 against them.
    assert row["top1_agreement"] == row["top1"] and 0.5 <= row["top1_agreement"] <= 1.0
    assert 0.5 <= row["top5_overlap"] <= 1.0
