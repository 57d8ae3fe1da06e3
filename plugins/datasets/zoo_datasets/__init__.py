"""The built-in dataset plugin: an ImageNet-style validation folder, class folders, and generated input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo_core import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    from zoo_core.datasets import Dataset
    from zoo_core.specs import DatasetSpec, ModelSpec

__version__ = "0.1.0"

LABEL_FILE = "val_label.txt"


@hookimpl
def zoo_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    from zoo_core.specs import DatasetSpec

    register(DatasetSpec("imagenet-val", f"a folder of images plus {LABEL_FILE} ('<file name> <class>' per line)"))
    register(DatasetSpec("folder", "one subfolder of images per class, classes numbered in sorted order"))
    register(DatasetSpec("synthetic", "seeded random input of the model's shape, for performance runs"))


@hookimpl
def zoo_load_dataset(dataset: DatasetSpec, path: Path, labels: Path | None, model: ModelSpec) -> Dataset | None:
    if dataset.name == "imagenet-val":
        return _imagenet_val(path, labels or path / LABEL_FILE, model)
    if dataset.name == "folder":
        return _class_folders(path, model)
    return None


def _imagenet_val(path: Path, label_file: Path, model: ModelSpec) -> Dataset:
    from zoo_core.datasets import Dataset, Sample, list_images

    from .labels import read_labels

    labels = read_labels(label_file, model.num_classes)
    images, ignored = list_images(path)
    samples, unlabeled, seen = [], [], set()
    for image in images:
        stem = image.stem
        if stem in seen:  # a.JPEG and a.png: the label cannot tell them apart
            from zoo_core.errors import ZooError

            raise ZooError(f"two images in {path} share the stem {stem!r}", note="rename one of them")
        seen.add(stem)
        if stem in labels:
            samples.append(Sample(stem, image, labels[stem]))
        else:
            unlabeled.append(stem)
    missing = sorted(set(labels) - seen)
    return Dataset("imagenet-val", path, samples, unlabeled, missing, ignored)


def _class_folders(path: Path, model: ModelSpec) -> Dataset:
    from zoo_core.datasets import Dataset, Sample, list_images
    from zoo_core.errors import ZooError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise ZooError(f"{path} has no class subfolders", note="a 'folder' dataset holds one subfolder per class")
    if len(classes) > model.num_classes:
        raise ZooError(f"{path} has {len(classes)} class folders but {model.name} has {model.num_classes} classes",
                       note="use a label file instead (--dataset imagenet-val --labels FILE)")
    samples, ignored = [], 0
    for index, name in enumerate(classes):
        images, other = list_images(path / name)
        ignored += other
        samples += [Sample(f"{name}/{image.stem}", image, index) for image in images]
    return Dataset("folder", path, samples, ignored=ignored)
