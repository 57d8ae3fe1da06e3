"""Datasets never mislabel an image: hidden and empty folders, class numbering (--classes, ImageNet-1k synsets,
sorted names), label files with a BOM, CRLF or spaces, and file names that are not UTF-8 or hold Unicode digits."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_bad_inputs import one_error
from zoo_core.datasets import natural_key, text_of
from zoo_core.errors import ZooError
from zoo_core.evaluate import load_dataset
from zoo_core.runner import Zoo
from zoo_core.specs import RunOptions
from zoo_datasets.classes import imagenet_synsets
from zoo_datasets.labels import read_labels
from zoo_tiny import TINY

IMAGENET_MODEL = replace(TINY, num_classes=1000)  # an ImageNet-1k classifier, for the synset numbering
NOT_UTF8 = os.fsdecode(b"img\xff")  # a name whose bytes are not UTF-8, as Python lists it (a lone surrogate)


@cache
def zoo() -> Zoo:
    """The registry and plugins `zoo run` uses, built once (the dataset stage needs no cache)."""
    return Zoo.create()


def load(data: Path, model=TINY, **options):
    """The dataset as `zoo run --data` loads it: the same function, kind guessed unless given."""
    return load_dataset(zoo(), model, RunOptions(model=model.name, data=data, **options))


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded while listing")
    return path


def class_tree(root: Path, tree: dict[str, list[str]]) -> Path:
    for folder, images in tree.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for image in images:
            touch(root / folder / image)
    return root


def labels_of(dataset) -> dict[str, int]:
    return {f"{s.path.parent.name}/{s.path.name}": s.label for s in dataset.samples}


# -------------------------------------------------------------------------
# Class folders: hidden and empty folders, and how classes are numbered
# -------------------------------------------------------------------------


def test_a_hidden_folder_does_not_renumber_the_classes(tmp_path: Path) -> None:
    class_tree(tmp_path, {"cat": ["a.png"], "dog": ["b.png"], ".ipynb_checkpoints": ["c.png"],
                          "fish": [".x.png", "d.png"]})
    touch(tmp_path / ".DS_Store")
    dataset = load(tmp_path)
    assert labels_of(dataset) == {"cat/a.png": 0, "dog/b.png": 1, "fish/d.png": 2}
    assert dataset.hidden == 3  # .ipynb_checkpoints, .DS_Store, fish/.x.png
    report = dataset.report()
    assert report["hidden"] == 3
    assert report["classes"] == {"source": "sorted", "file": None, "count": 3,
                                 "folders": {"cat": 0, "dog": 1, "fish": 2}, "warning": None}


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    class_tree(tmp_path, {"cat": ["a.png"], "dog": [".hidden.png", "notes.txt"], "fish": ["d.png"]})
    with pytest.raises(ZooError, match="class folder 'dog' holds no image"):
        load(tmp_path)


def test_images_beside_the_class_folders_are_reported_unlabeled(tmp_path: Path) -> None:
    class_tree(tmp_path, {"cat": ["a.png"]})
    touch(tmp_path / "stray.png")
    dataset = load(tmp_path)
    assert labels_of(dataset) == {"cat/a.png": 0} and dataset.unlabeled == ["stray"]


def test_a_folder_inside_a_class_folder_is_an_error(tmp_path: Path) -> None:
    class_tree(tmp_path, {"cat": ["a.png"], "cat/more": ["b.png"]})
    with pytest.raises(ZooError, match="class folder 'cat' holds a folder, 'more'"):
        load(tmp_path)


def test_only_hidden_folders_is_not_a_class_folder_dataset(tmp_path: Path) -> None:
    class_tree(tmp_path, {".ipynb_checkpoints": ["a.png"]})
    touch(tmp_path / "a.png")
    with pytest.raises(ZooError, match="cannot tell what kind of dataset"):
        load(tmp_path)


def test_imagenet_synset_folders_take_their_imagenet_index(tmp_path: Path) -> None:
    class_tree(tmp_path, {"n01443537": ["x.JPEG"], "n15075141": ["y.JPEG"]})  # goldfish, toilet tissue
    dataset = load(tmp_path, IMAGENET_MODEL)
    assert labels_of(dataset) == {"n01443537/x.JPEG": 1, "n15075141/y.JPEG": 999}
    assert dataset.report()["classes"]["source"] == "imagenet-1k"


def test_a_synset_id_outside_imagenet_1k_is_an_error(tmp_path: Path) -> None:
    class_tree(tmp_path, {"n01443537": ["x.JPEG"], "n00000001": ["y.JPEG"]})
    with pytest.raises(ZooError, match="class folder 'n00000001' looks like a WordNet id but is no ImageNet-1k"):
        load(tmp_path, IMAGENET_MODEL)


def test_sorted_numbering_for_an_imagenet_model_says_so(tmp_path: Path) -> None:
    class_tree(tmp_path, {"cat": ["a.png"], "dog": ["b.png"]})
    classes = load(tmp_path, IMAGENET_MODEL).report()["classes"]
    assert classes["source"] == "sorted" and "not ImageNet-1k synset ids" in classes["warning"]
    assert "--classes FILE" in classes["warning"]


def test_synset_folders_of_a_model_without_1000_classes_are_sorted(tmp_path: Path) -> None:
    class_tree(tmp_path, {"n01443537": ["x.JPEG"], "n01440764": ["y.JPEG"]})
    dataset = load(tmp_path)
    assert labels_of(dataset) == {"n01440764/y.JPEG": 0, "n01443537/x.JPEG": 1}


def test_the_shipped_synset_list() -> None:
    synsets = imagenet_synsets()
    assert len(synsets) == len(set(synsets)) == 1000 and list(synsets) == sorted(synsets)
    assert synsets[0] == "n01440764" and synsets[-1] == "n15075141"  # tench ... toilet tissue
    assert all(re.fullmatch(r"n[0-9]{8}", s) for s in synsets)


@pytest.mark.parametrize("encode", [lambda t: t.encode(), lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode()])
def test_a_classes_file_numbers_the_folders_by_line(tmp_path: Path, encode) -> None:
    class_tree(tmp_path / "data", {"dog": ["b.png"], "zebra": ["z.png"], "my cat": ["a.png"]})
    (tmp_path / "classes.txt").write_bytes(encode("zebra\nmy cat\nbird\ndog\n\n"))
    dataset = load(tmp_path / "data", classes=tmp_path / "classes.txt")
    assert labels_of(dataset) == {"zebra/z.png": 0, "my cat/a.png": 1, "dog/b.png": 3}
    assert dataset.report()["classes"]["source"] == "file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat\n", "class folder 'dog' is not in classes.txt"),
        ("cat\n\ndog\n", "classes.txt line 2 is blank, so class 1 has no name"),
        ("cat\ndog\ncat\n", "classes.txt line 3: 'cat' is listed twice (also line 1)"),
        ("".join(f"c{i}\n" for i in range(11)) + "cat\ndog\n", "classes.txt names 13 classes but resnest-tiny has 10"),
        ("\n\n", "names no class"),
    ],
)
def test_a_bad_classes_file_is_one_error(tmp_path: Path, text: str, message: str) -> None:
    class_tree(tmp_path / "data", {"cat": ["a.png"], "dog": ["b.png"]})
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(ZooError) as info:
        load(tmp_path / "data", classes=tmp_path / "classes.txt")
    assert message in info.value.message


def test_classes_with_a_label_file_dataset_is_a_usage_error(tmp_path: Path) -> None:
    touch(tmp_path / "data" / "a.png")
    (tmp_path / "data" / "val_label.txt").write_text("a.png 1\n")
    (tmp_path / "classes.txt").write_text("cat\n")
    with pytest.raises(ZooError, match="--classes numbers class folders") as info:
        load(tmp_path / "data", classes=tmp_path / "classes.txt", dataset="imagenet-val")
    assert info.value.exit_code == 2


# -------------------------------------------------------------------------
# Label files: BOM, CRLF, spaces in names, encodings
# -------------------------------------------------------------------------


def test_a_bom_does_not_drop_the_first_image(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbfa.JPEG 3\r\nb.JPEG 4\r\n")
    assert read_labels(tmp_path / "l.txt", 10) == {"a": 3, "b": 4}


def test_a_name_with_spaces_takes_the_last_field_as_its_class(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("my image 01.JPEG 3\nsecond  one.png\t4\rthird 5\n")
    assert read_labels(tmp_path / "l.txt", 10) == {"my image 01": 3, "second  one": 4, "third": 5}


def test_a_trailing_field_never_matches_an_image_by_a_shorter_stem(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("a.JPEG 1 2\n")  # not 'a' with class 2: no image is named 'a.JPEG 1'
    assert read_labels(tmp_path / "l.txt", 10) == {"a.JPEG 1": 2}


@pytest.mark.parametrize("value", ["٣", "３", "1_0", "+3", "²"])
def test_a_class_in_other_digits_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "l.txt").write_text(f"a.JPEG {value}\n")
    with pytest.raises(ZooError, match="is not a whole number"):
        read_labels(tmp_path / "l.txt", 10)


def test_a_label_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_bytes(b"a.JPEG 1\nb\xe9.JPEG 2\n")
    with pytest.raises(ZooError, match=r"label file l.txt line 2 is not UTF-8 text \(byte 0xe9\)"):
        read_labels(tmp_path / "l.txt", 10)


def test_a_path_in_a_label_file_is_still_refused_with_spaces(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("my dir/a b.JPEG 1\n")
    with pytest.raises(ZooError, match="is a path, not a file name"):
        read_labels(tmp_path / "l.txt", 10)


# -------------------------------------------------------------------------
# File names: not UTF-8, Unicode digits
# -------------------------------------------------------------------------


def test_natural_order_survives_unicode_digits_and_is_deterministic() -> None:
    names = ["img2²", "img\u0663", "img²", "img10", "img2", "img01", "img1", "img٣٣", "x"]
    orders = {tuple(sorted(perm, key=natural_key)) for perm in (names, names[::-1], names[3:] + names[:3])}
    assert len(orders) == 1
    order = orders.pop()
    assert order.index("img01") < order.index("img1") < order.index("img2") < order.index("img10")


def test_names_that_are_not_utf8_are_labelled_and_writable(tmp_path: Path) -> None:
    class_tree(tmp_path / "folders", {os.fsdecode(b"c\xff"): [NOT_UTF8 + ".png"], "d": ["b.png"]})
    dataset = load(tmp_path / "folders")
    assert {s.path.parent.name: s.label for s in dataset.samples} == {os.fsdecode(b"c\xff"): 0, "d": 1}
    assert [s.id for s in dataset.samples] == ["c\\xff/img\\xff", "d/b"]
    json.dumps(dataset.report(), ensure_ascii=False).encode("utf-8")  # no lone surrogate left to write

    touch(tmp_path / "val" / (NOT_UTF8 + ".JPEG"))
    touch(tmp_path / "val" / "b.JPEG")
    (tmp_path / "val" / "val_label.txt").write_text("b.JPEG 1\n")
    dataset = load(tmp_path / "val")
    assert [(s.id, s.label) for s in dataset.samples] == [("b", 1)] and dataset.unlabeled == ["img\\xff"]
    assert text_of(NOT_UTF8) == "img\\xff"


# -------------------------------------------------------------------------
# Through the real command
# -------------------------------------------------------------------------


def write_class_images(root: Path, tree: dict[str, list[str]]) -> None:
    rng = np.random.default_rng(0)
    for folder, names in tree.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(root / folder / name)


def run_args(data: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--warmup", "0", "--iterations", "1",
            "--workers", "1", "--data", str(data), "--out", str(out), *extra)


def test_zoo_run_with_classes_and_a_hidden_folder_records_the_mapping(zoo_cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_class_images(data, {"dog": ["b 1.png", "b 2.png"], "cat": ["a.png"], ".ipynb_checkpoints": ["c.png"]})
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbfbird\r\ncat\r\ndog\r\n")
    result = zoo_cli(*run_args(data, tmp_path / "out", "--classes", str(tmp_path / "classes.txt"), "--json"))
    assert result.code == 0, result
    dataset = result.json()["accuracy"]["dataset"]
    assert dataset["classes"]["folders"] == {"cat": 1, "dog": 2} and dataset["classes"]["source"] == "file"
    assert dataset["hidden"] == 1 and dataset["images"] == 3
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["accuracy"]["dataset"]["classes"] == dataset["classes"]
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        assert {row["id"]: int(row["label"]) for row in csv.DictReader(fh)} == {"cat/a": 1, "dog/b 1": 2, "dog/b 2": 2}


def test_zoo_run_prints_how_it_numbered_the_folders(zoo_cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_class_images(data, {"dog": ["b.png"], "cat": ["a.png"], os.fsdecode(b"f\xffsh"): [NOT_UTF8 + ".png"]})
    result = zoo_cli(*run_args(data, tmp_path / "out"))
    assert result.code == 0, result
    assert "classes: 3 folders numbered by sorted name: cat=0, dog=1, f\\xffsh=2" in result.stdout
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as fh:
        assert {row["id"]: int(row["label"]) for row in csv.DictReader(fh)}["f\\xffsh/img\\xff"] == 2
    assert "f\\\\xffsh" in (tmp_path / "out" / "results.json").read_text()


@pytest.mark.parametrize(
    ("tree", "extra", "code", "message"),
    [
        ({"cat": ["a.png"], "dog": []}, (), 3, "class folder 'dog' holds no image"),
        ({"cat": ["a.png"], "cat/more": ["b.png"]}, (), 3, "class folder 'cat' holds a folder, 'more'"),
        ({"cat": ["a.png"], "dog": ["b.png"]}, ("--classes", "cat\n"), 3, "class folder 'dog' is not in classes.txt"),
        ({"cat": ["a.png"]}, ("--classes", "cat\n\ndog\n"), 3, "classes.txt line 2 is blank, so class 1 has no name"),
        ({"cat": ["a.png"]}, ("--classes", "cat\ncat\n"), 3, "classes.txt line 2: 'cat' is listed twice (also line 1)"),
        ({"cat": ["a.png"]}, ("--classes", "".join(f"c{i}\n" for i in range(10)) + "cat\n"), 3,
         "classes.txt names 11 classes but resnest-tiny has 10"),
        ({"": ["a.png"]}, ("--classes", "cat\n", "--dataset", "imagenet-val", "--labels", "LABELS"), 2,
         "--classes numbers class folders, and the imagenet-val dataset has none"),
        ({"n01443537": ["a.png"], "n00000001": ["b.png"]}, ("MODEL", "resnest50"), 3,
         "class folder 'n00000001' looks like a WordNet id but is no ImageNet-1k class"),
    ],
    ids=["empty-folder", "folder-in-folder", "not-in-classes", "blank-line", "twice", "too-many", "not-folders",
         "unknown-synset"],
)
def test_zoo_run_refuses_folders_it_cannot_number(zoo_cli, tmp_path: Path, tree, extra, code, message) -> None:
    write_class_images(tmp_path / "data", tree)
    args, extra = list(run_args(tmp_path / "data", tmp_path / "out")), list(extra)
    if "--classes" in extra:  # the text of the class file
        at = extra.index("--classes") + 1
        extra[at] = str(write_text(tmp_path / "classes.txt", extra[at]))
    if "--labels" in extra:
        extra[extra.index("--labels") + 1] = str(write_text(tmp_path / "labels.txt", "a.png 1\n"))
    if "MODEL" in extra:  # another model: an ImageNet-1k one, whose weights are never needed
        args[1] = extra[1]
        extra = extra[2:]
    error, _ = one_error(zoo_cli(*args, *extra), code)
    assert message in error


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_zoo_run_refuses_a_label_file_that_is_not_utf8(zoo_cli, tmp_path: Path) -> None:
    write_class_images(tmp_path, {"val": ["a.JPEG"]})
    (tmp_path / "val" / "val_label.txt").write_bytes(b"a.JPEG 1\n\xff.JPEG 2\n")
    error, _ = one_error(zoo_cli(*run_args(tmp_path / "val", tmp_path / "out")), 3)
    assert "val_label.txt line 2 is not UTF-8 text" in error


def test_zoo_preprocess_refuses_two_images_that_would_write_one_bin(zoo_cli, tmp_path: Path) -> None:
    write_class_images(tmp_path, {"val": ["a.JPEG", "a.png"]})
    result = zoo_cli("preprocess", "resnest-tiny", "--data", str(tmp_path / "val"), "-o", str(tmp_path / "bins"))
    error, _ = one_error(result, 3)
    assert "share the stem 'a'" in error and not (tmp_path / "bins").exists()
