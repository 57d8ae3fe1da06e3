"""How class folders are numbered: by a ``--classes`` file, by the ImageNet-1k synset list, or by sorted name."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from zoo_core.api import Classes, ZooError, shown_name, text_of

from .labels import read_lines

if TYPE_CHECKING:
    from zoo_core.api import ModelSpec

# The 1000 WordNet ids of ImageNet-1k, one a line, sorted, which is the standard class-index order (n01440764
# "tench" is class 0, n15075141 "toilet tissue" class 999). Copied from timm (pytorch-image-models, Apache-2.0),
# timm/data/_info/imagenet_synsets.txt; tests/test_trust_datasets.py checks its shape.
SYNSETS_FILE = "imagenet_synsets.txt"
SYNSET = re.compile(r"n[0-9]{8}")
IMAGENET_CLASSES = 1000
CLASSES_NOTE = "write one class folder name per line, in class-index order (line 1 is class 0), nothing else"


@cache
def imagenet_synsets() -> tuple[str, ...]:
    """The ImageNet-1k synset ids in class-index order."""
    return tuple(files(__package__).joinpath(SYNSETS_FILE).read_text(encoding="ascii").split())


def read_classes(path: Path, model: ModelSpec) -> dict[str, int]:
    """Name -> class index from a ``--classes`` file. A blank line between names, a name twice, or more names
    than the model has classes is a one-line error; blank lines at the end are fine."""
    lines = read_lines(path, "class file", note="pass --classes FILE with one class folder name per line")
    while lines and not lines[-1].strip():
        lines.pop()
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name, where = line.strip(), f"{shown_name(path.name)} line {number}"
        if not name:
            raise ZooError(f"{where} is blank, so class {number - 1} has no name", note=CLASSES_NOTE)
        if name in names:
            raise ZooError(f"{where}: {name!r} is listed twice (also line {names[name] + 1})", note=CLASSES_NOTE)
        names[name] = number - 1
    if not names:
        raise ZooError(f"class file {shown_name(str(path))} names no class", note=CLASSES_NOTE)
    if len(names) > model.num_classes:
        raise ZooError(f"{shown_name(path.name)} names {len(names)} classes but {model.name} has {model.num_classes}",
                       note="pass the class list this model was trained with")
    return names


def number_folders(folders: list[str], model: ModelSpec, classes_file: Path | None) -> Classes:
    """Each class folder's index: from ``classes_file`` when given; else from the ImageNet-1k synset list when
    every folder is a synset id and the model has 1000 classes; else by sorted name (code points, as
    torchvision's ImageFolder)."""
    if classes_file is not None:
        index = read_classes(classes_file, model)
        for name in folders:
            if name not in index:
                raise ZooError(f"class folder {name!r} is not in {shown_name(classes_file.name)}", note=CLASSES_NOTE)
        return _classes(folders, index, "file", file=classes_file)
    if model.num_classes == IMAGENET_CLASSES and all(SYNSET.fullmatch(name) for name in folders):
        index = {synset: i for i, synset in enumerate(imagenet_synsets())}
        for name in folders:
            if name not in index:
                raise ZooError(f"class folder {name!r} looks like a WordNet id but is no ImageNet-1k class",
                               note="pass --classes FILE to number the folders")
        return _classes(folders, index, "imagenet-1k")
    if len(folders) > model.num_classes:
        raise ZooError(f"{len(folders)} class folders but {model.name} has {model.num_classes} classes",
                       note="remove the extra folders, or use a label file (--dataset imagenet-val --labels FILE)")
    warning = None
    if model.num_classes == IMAGENET_CLASSES:  # scored as ImageNet indices, but numbered by folder name
        warning = "not ImageNet-1k synset ids; if they are not the model's classes in this order, pass --classes FILE"
    return _classes(folders, {name: i for i, name in enumerate(sorted(folders))}, "sorted", warning=warning)


def _classes(folders: list[str], index: dict[str, int], source: str, **extra: object) -> Classes:
    shown = {text_of(name): index[name] for name in folders}
    if len(shown) != len(folders):  # 'a\xff' (not UTF-8) and a folder named with a backslash, 'a\\xff'
        raise ZooError("two class folders show as the same name", note="rename the folder whose name is not UTF-8")
    return Classes(shown, source, **extra)  # type: ignore[arg-type]
