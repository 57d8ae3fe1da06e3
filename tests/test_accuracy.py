"""Accuracy runs end to end, against labels that are the model's own torch-eager predictions.

The dataset (tests/accuracy_data.py) holds JPEGs of varied sizes, some greyscale, labelled with the predictions
of a seeded random resnest50 (BatchNorm calibrated on the images, classifier standardised) under the
``modelzoo`` preset, keeping only images whose top-1 leads clearly. So ``zoo run --data`` must score exactly
1.0: a wrong image order, crop, resize, normalisation or label matching breaks it; the negative control shows
that the labels are not all alike. The label file is in random order, so matching by position fails too. The
mutation controls at the end show that the set catches a wrong preprocessing: a crop one pixel off, bicubic for
bilinear and BGR for RGB each lower top-1.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from accuracy_data import LABEL_FILE, MIN_CLASSES, MIN_IMAGES, SelfConsistent, make_selfconsistent_dataset
from accuracy_data import shifted_labels, write_labels

pytestmark = pytest.mark.slow

BATCH = 8  # the kept count is not a multiple of it in general: the last batch is padded


# ResNeSt-50 from the in-tree plugin; ResNet-50 from the third-party example plugin, whose Ascend input is a
# uint8 image that the chip crops and normalises through AIPP. Each model is a unit of work of its own for xdist
# (tests/scheduling.py): the two datasets and their runs go to two workers at once.
@pytest.fixture(scope="module", params=[pytest.param(m, marks=pytest.mark.xdist_group(f"accuracy-{m}"))
                                        for m in ("resnest50", "resnet50")])
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SelfConsistent:
    return make_selfconsistent_dataset(tmp_path_factory.mktemp("selfconsistent"), model=request.param)


def run_accuracy(zoo_cli, dataset: SelfConsistent, data: Path, out: Path, *extra: str, env=None):
    result = zoo_cli("run", dataset.model, "--bs", str(BATCH), "--data", str(data), "--weights", str(dataset.weights),
                     "--warmup", "0", "--iterations", "1", "--json", "--out", str(out), *extra, env=env)
    assert result.code == 0, result
    return result.json()


def predictions(out: Path) -> dict[str, tuple[int, int]]:
    """``predictions.csv``: id -> (top-1, label)."""
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["id", "top1", "top2", "top3", "top4", "top5", "label"]
    return {row["id"]: (int(row["top1"]), int(row["label"])) for row in rows}


def assert_self_consistent(data: dict, out: Path, dataset: SelfConsistent) -> None:
    kept = len(dataset.labels)
    accuracy = data["accuracy"]
    assert accuracy.get("resumed_images", 0) == 0  # really evaluated, not read back from an earlier run
    assert (accuracy["top1"], accuracy["top5"], accuracy["images"]) == (1.0, 1.0, kept), json.dumps(accuracy)
    (row,) = [r for r in data["results"] if r["batch_size"] == BATCH]
    assert (row["top1"], row["top5"], row["images"]) == (1.0, 1.0, kept)
    assert predictions(out) == {stem: (label, label) for stem, label in dataset.labels.items()}
    assert json.loads((out / "results.json").read_text())["accuracy"]["top1"] == 1.0


def test_the_dataset_is_a_discriminating_oracle(dataset: SelfConsistent) -> None:
    assert len(dataset.labels) >= MIN_IMAGES and len(dataset.classes) >= MIN_CLASSES
    assert min(dataset.margins.values()) >= dataset.min_margin > 0
    images = sorted(p.name for p in dataset.data.glob("*.JPEG"))
    assert images == dataset.names  # the low-margin images are gone
    lines = [line.split(" ") for line in (dataset.data / LABEL_FILE).read_text().splitlines()]
    assert sorted((name, int(label)) for name, label in lines) == sorted(
        (f"{stem}.JPEG", label) for stem, label in dataset.labels.items()
    )
    assert [name for name, _ in lines] != dataset.names  # not in natural order: matching must go by name
    # No class dominates: the shifted-labels control below can only match where neighbours agree.
    shifted = shifted_labels(dataset.labels)
    assert sum(shifted[s] == dataset.labels[s] for s in dataset.labels) / len(dataset.labels) < 0.5


def test_onnxruntime_scores_top1_one_on_its_own_predictions(zoo_cli, dataset, tmp_path) -> None:
    out = tmp_path / "out"
    data = run_accuracy(zoo_cli, dataset, dataset.data, out)
    assert data["backend"] == "onnxruntime"
    assert_self_consistent(data, out, dataset)


def test_negative_control_labels_shifted_by_one_image(zoo_cli, dataset, tmp_path) -> None:
    copy = tmp_path / "shifted"
    shutil.copytree(dataset.data, copy)
    shifted = shifted_labels(dataset.labels)
    write_labels(copy / LABEL_FILE, shifted, seed=1)
    expected = sum(shifted[s] == dataset.labels[s] for s in dataset.labels) / len(dataset.labels)

    out = tmp_path / "out"
    data = run_accuracy(zoo_cli, dataset, copy, out)
    assert data["accuracy"]["top1"] < 0.5
    assert data["accuracy"]["top1"] == pytest.approx(expected)
    assert data["accuracy"]["images"] == len(dataset.labels)
    assert data["accuracy"].get("resumed_images", 0) == 0
    assert predictions(out) == {stem: (dataset.labels[stem], shifted[stem]) for stem in dataset.labels}


def test_the_ascend_fakes_score_top1_one_on_the_same_predictions(zoo_cli, ascend_env, dataset, tmp_path) -> None:
    """Compiled with ATC's default precision mode, force_fp16, which the fakes compute in (float16 weights and
    activations): on these sets float16 moves no logit far enough to close a top-1 margin (>= 0.02)."""
    out = tmp_path / "out"
    data = run_accuracy(zoo_cli, dataset, dataset.data, out, "--backend", "ascend", env=ascend_env)
    assert data["backend"] == "ascend"
    assert_self_consistent(data, out, dataset)


@pytest.mark.ray
@pytest.mark.zoo_process("starts a local Ray instance, which lives as long as its process")
def test_ray_with_two_actors_gives_the_single_process_results(zoo_cli, dataset, tmp_path) -> None:
    single = run_accuracy(zoo_cli, dataset, dataset.data, tmp_path / "single")
    out = tmp_path / "ray"
    # A cache of its own: nothing of the single-process run (its saved shards above all) is reused.
    data = run_accuracy(zoo_cli, dataset, dataset.data, out, "--engine", "ray", "--actors", "2",
                        env={"ZOO_CACHE_DIR": str(tmp_path / "cache-ray")})
    assert_self_consistent(data, out, dataset)
    assert {k: data["accuracy"][k] for k in ("top1", "top5", "images")} == \
        {k: single["accuracy"][k] for k in ("top1", "top5", "images")}
    assert (out / "predictions.csv").read_bytes() == (tmp_path / "single" / "predictions.csv").read_bytes()
    engine = data["engine"]
    assert (engine["name"], engine["address"], engine["actors"]) == ("ray", "local", 2)
    assert {w["device"] for w in engine["workers"]} == {"cpu"}
    assert sum(w["images"] for w in engine["workers"]) == len(dataset.labels)
    # Decoded by CPU workers of their own, never in the processes that run the model.
    assert engine["decoders"] and not set(engine["decoders"]) & {w["pid"] for w in engine["workers"]}
    # Compiled once, on the driver: the actors only open a runner on what it shipped.
    assert len(data["stage_seconds"]["compile"]) == 1
    assert all(w["stages"] == ["open_runner"] for w in engine["workers"])
    assert single["engine"] == {"name": "local", "workers": single["engine"]["workers"], "devices": [0]}
    from zoo_core import reporting as report

    assert report.validation_errors(data) == [] and report.validation_errors(single) == []
    assert "Ran on Ray (local): 2 inference actor(s) on cpu" in (out / "report.md").read_text()


# Mutation controls: the same images, labels and weights through a deliberately wrong preprocessing must score
# less, or the oracle above could not catch that mistake. The presets are in tests/plugins/zoo_mutants.py (the
# modelzoo steps written out with one change; ``control`` with none). Measured top-1 on these sets (seed 0):
#   resnest50 (88 images): shift 0.955 (4 flips: smooth images barely move by one pixel), bicubic 0.864, bgr 0.148
#   resnet50 (85 images):  shift 0.624, bicubic 0.835, bgr 0.094
MUTATION_BOUNDS = {"shift": 0.97, "bicubic": 0.9, "bgr": 0.5}  # top-1 must be below these


@pytest.mark.parametrize("preset", ["control", *MUTATION_BOUNDS])
def test_mutation_control_wrong_preprocessing_lowers_top1(zoo_cli, dataset, tmp_path, preset) -> None:
    import os

    plugins = ",".join(filter(None, [os.environ.get("ZOO_PLUGINS"), "zoo_mutants"]))
    out = tmp_path / "out"
    result = zoo_cli("run", f"{dataset.model}-mutant", "--preset", preset, "--bs", str(BATCH), "--data",
                     str(dataset.data), "--weights", str(dataset.weights), "--warmup", "0", "--iterations", "1",
                     "--json", "--out", str(out), env={"ZOO_PLUGINS": plugins})
    assert result.code == 0, result
    accuracy = result.json()["accuracy"]
    assert accuracy["images"] == len(dataset.labels) and accuracy.get("resumed_images", 0) == 0
    if preset == "control":  # the plugin's own steps, unchanged: the labels' preprocessing exactly
        assert accuracy["top1"] == 1.0
        assert predictions(out) == {stem: (label, label) for stem, label in dataset.labels.items()}
    else:
        assert accuracy["top1"] < MUTATION_BOUNDS[preset], accuracy
