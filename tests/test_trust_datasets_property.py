"""Property: over random dataset trees (hidden and empty folders, odd names, BOMs, CRLF, non-image files), every
image is either a sample under its true class or reported (an error, unlabeled, ignored), never mislabelled."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_trust_datasets import IMAGENET_MODEL, load, touch
from zoo_core.errors import ZooError
from zoo_datasets.classes import imagenet_synsets
from zoo_tiny import TINY

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Letters, ASCII and Unicode digits (superscript two, Arabic-Indic three, fullwidth one), spaces inside, marks.
ALPHABET = "abcXYZ019²٣１ .é猫_-()[]#'"
SUFFIXES = [".png", ".JPEG", ".jpg"]
NOT_UTF8 = [os.fsdecode(b"x\xff"), os.fsdecode(b"\xc3(")]


def names(min_size: int = 1) -> st.SearchStrategy[str]:
    """A file or folder name: no '/', not hidden, no space at either end (a label line is stripped)."""
    text = st.text(ALPHABET, min_size=min_size, max_size=10).map(str.strip).filter(lambda t: t and t[0] != ".")
    return st.one_of(text, st.sampled_from(NOT_UTF8))


@st.composite
def class_trees(draw: st.DrawFn) -> dict:
    imagenet = draw(st.booleans())
    pool = st.sampled_from(imagenet_synsets()[:50]) if imagenet and draw(st.booleans()) else names()
    folders = draw(st.lists(pool, min_size=1, max_size=5, unique=True))
    tree = {f: draw(st.lists(names(), max_size=3, unique=True)) for f in folders}  # [] is an empty class folder
    listed = None
    if draw(st.booleans()):  # a --classes file: the folders (maybe one short) in a random order, plus extra names
        utf8 = [f for f in folders if f not in NOT_UTF8]
        extra = draw(st.lists(st.text("qrs", min_size=1, max_size=3), max_size=2, unique=True))
        listed = draw(st.permutations([*utf8, *[e for e in extra if e not in utf8]]))
        if listed and draw(st.booleans()):
            listed = listed[1:]
    return {"model": IMAGENET_MODEL if imagenet else TINY, "tree": tree, "classes": listed,
            "bom": draw(st.booleans()), "eol": draw(st.sampled_from(["\n", "\r\n", "\r"])),
            "suffix": draw(st.sampled_from(SUFFIXES)), "hidden": draw(st.booleans()), "stray": draw(st.booleans())}


def write_text(path: Path, lines: list[str], bom: bool, eol: str) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + eol.join([*lines, ""]).encode())
    return path


def true_classes(case: dict) -> dict[str, int] | None:
    """Folder -> class as the user means it, or None when the tree cannot be numbered without guessing."""
    folders, model = list(case["tree"]), case["model"]
    if any(not images for images in case["tree"].values()):
        return None  # an empty class folder
    if case["classes"] is not None:
        index = {name: i for i, name in enumerate(case["classes"])}
        if any(f not in index for f in folders) or len(index) > model.num_classes:
            return None
        return {f: index[f] for f in folders}
    synsets = imagenet_synsets()
    if model.num_classes == 1000 and all(f in synsets for f in folders):
        return {f: synsets.index(f) for f in folders}
    if len(folders) > model.num_classes:
        return None
    return {f: i for i, f in enumerate(sorted(folders))}


@SETTINGS
@given(class_trees())
def test_class_folders_are_never_mislabelled(case: dict) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        data, truth = root / "data", {}
        for folder, images in case["tree"].items():
            (data / folder).mkdir(parents=True)
            for image in images:
                truth[touch(data / folder / (image + case["suffix"]))] = folder
            touch(data / folder / "notes.txt")  # not an image
            if case["hidden"]:
                touch(data / folder / (".hidden" + case["suffix"]))
        if case["hidden"]:
            touch(data / ".ipynb_checkpoints" / ("x" + case["suffix"]))
        if case["stray"]:
            touch(data / ("stray" + case["suffix"]))
        options = {}
        if case["classes"] is not None:
            options["classes"] = write_text(root / "classes.txt", case["classes"], case["bom"], case["eol"])
        expected = true_classes(case)
        try:
            dataset = load(data, case["model"], dataset="folder", **options)
        except ZooError:
            assert expected is None, case  # refused only when the tree cannot be numbered
            return
        assert expected is not None, case
        assert {s.path: s.label for s in dataset.samples} == {p: expected[f] for p, f in truth.items()}
        assert dataset.unlabeled == (["stray"] if case["stray"] else [])
        assert dataset.hidden == (len(case["tree"]) + 1 if case["hidden"] else 0)
        assert dataset.ignored == len(case["tree"])  # one notes.txt per class
        assert sorted(dataset.report()["classes"]["folders"].values()) == sorted(expected.values())
    finally:
        shutil.rmtree(root)


@st.composite
def label_folders(draw: st.DrawFn) -> dict:
    stems = draw(st.lists(names(), min_size=1, max_size=6, unique=True))
    images = {stem: draw(st.sampled_from(SUFFIXES)) for stem in stems}
    labelled = {stem: draw(st.integers(0, 9)) for stem in stems if stem not in NOT_UTF8 and draw(st.booleans())}
    return {"images": images, "labels": labelled, "with_suffix": draw(st.booleans()),
            "sep": draw(st.sampled_from([" ", "  ", "\t"])), "bom": draw(st.booleans()),
            "eol": draw(st.sampled_from(["\n", "\r\n", "\r"])), "hidden": draw(st.booleans()),
            "missing": draw(st.booleans()), "order": draw(st.randoms(use_true_random=False))}


@SETTINGS
@given(label_folders())
def test_label_files_are_never_mislabelled(case: dict) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        data = root / "val"
        for stem, suffix in case["images"].items():
            touch(data / (stem + suffix))
        labels = dict(case["labels"])
        if case["hidden"]:  # a hidden image, even labelled, is never read
            touch(data / ".hidden.png")
            labels[".hidden"] = 1
        if case["missing"]:
            labels["gone"] = 2
        lines = [f"{stem}{case['images'].get(stem, '.png') if case['with_suffix'] else ''}{case['sep']}{label}"
                 for stem, label in labels.items()]
        case["order"].shuffle(lines)
        if not lines:
            lines = ["gone.png 2"]
        write_text(data / "val_label.txt", lines, case["bom"], case["eol"])
        try:
            dataset = load(data)
        except ZooError as exc:
            assert "no labelled image" in exc.message and not case["labels"], case
            return
        assert {s.path.name: s.label for s in dataset.samples} == {
            stem + case["images"][stem]: label for stem, label in case["labels"].items()}
        reported = set(dataset.unlabeled) | {s.id for s in dataset.samples}
        assert len(dataset.unlabeled) + len(dataset.samples) == len(case["images"])
        assert len(reported) == len(case["images"])  # each image once, as a sample or unlabeled
        assert dataset.hidden == (1 if case["hidden"] else 0)
        assert (".hidden" in dataset.missing) == case["hidden"] and ("gone" in dataset.missing) == case["missing"]
    finally:
        shutil.rmtree(root)
