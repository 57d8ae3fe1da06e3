"""The built-in dataset plugin: an ImageNet-style validation folder, class folders, and generated input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo_core.api import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    from zoo_core.api import Dataset, DatasetSpec, ModelSpec

__version__ = "0.1.0"

LABEL_FILE = "val_label.txt"


@hookimpl
def zoo_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    from zoo_core.api import DatasetSpec

    register(DatasetSpec("imagenet-val", f"a folder of images plus {LABEL_FILE} ('<file name> <class>' per line)"))
    register(DatasetSpec("folder", "one subfolder of images per class, numbered by --classes FILE, the ImageNet-1k "
                                   "synsets, or sorted name"))


@hookimpl
def zoo_dataset_matches(dataset: DatasetSpec, path: Path, labels: Path | None, classes: Path | None) -> bool:
    """A label file (given, or ``val_label.txt`` in the folder) makes an imagenet-val folder; a class list, or a
    subfolder that is not hidden, a class-folder one."""
    if dataset.name == "imagenet-val":
        return labels is not None or (path / LABEL_FILE).exists()
    if dataset.name == "folder":
        return classes is not None or any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
    return False


@hookimpl
def zoo_load_dataset(
    dataset: DatasetSpec, path: Path, labels: Path | None, classes: Path | None, model: ModelSpec
) -> Dataset | None:
    if dataset.name == "imagenet-val":
        return _imagenet_val(path, labels or path / LABEL_FILE, model)
    if dataset.name == "folder":
        return _class_folders(path, model, classes)
    return None


def _imagenet_val(path: Path, label_file: Path, model: ModelSpec) -> Dataset:
    from zoo_core.api import Dataset, Sample, scan, text_of

    from .labels import read_labels

    labels = read_labels(label_file, model.num_classes)
    listing = scan(path)
    samples, unlabeled, seen = [], [], set()
    for image in listing.images:
        stem = image.stem
        if stem in seen:  # a.JPEG and a.png: the label cannot tell them apart
            from zoo_core.api import ZooError

            raise ZooError(f"two images in {path} share the stem {stem!r}", note="rename one of them")
        seen.add(stem)
        if stem in labels:
            samples.append(Sample(text_of(stem), image, labels[stem]))
        else:
            unlabeled.append(text_of(stem))  # a name that is not UTF-8 cannot be in a label file
    missing = sorted(set(labels) - seen)
    return Dataset("imagenet-val", path, samples, unlabeled, missing, listing.other, hidden=listing.hidden)


def _class_folders(path: Path, model: ModelSpec, classes: Path | None) -> Dataset:
    """Each non-hidden subfolder is a class; images beside them belong to none and are reported unlabeled."""
    from zoo_core.api import Dataset, Sample, ZooError, scan, text_of

    from .classes import number_folders

    top = scan(path)
    if not top.folders:
        hidden = f" ({top.hidden} hidden entries ignored)" if top.hidden else ""
        raise ZooError(f"{path} has no class subfolders{hidden}",
                       note="a 'folder' dataset holds one subfolder per class")
    numbering = number_folders([folder.name for folder in top.folders], model, classes)
    samples, ignored, hidden = [], top.other, top.hidden
    for folder in top.folders:
        inside = scan(folder)
        if inside.folders:
            raise ZooError(f"class folder {folder.name!r} holds a folder, {inside.folders[0].name!r}",
                           note="keep each class's images directly in its folder")
        if not inside.images:
            raise ZooError(f"class folder {folder.name!r} holds no image",
                           note="remove the empty folder, or put its class's images in it")
        ignored += inside.other
        hidden += inside.hidden
        name = text_of(folder.name)
        samples += [Sample(f"{name}/{text_of(image.stem)}", image, numbering.index[name]) for image in inside.images]
    unlabeled = [text_of(image.stem) for image in top.images]  # beside the class folders: in no class
    return Dataset("folder", path, samples, unlabeled, ignored=ignored, hidden=hidden, classes=numbering)
