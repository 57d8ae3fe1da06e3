"""The seed's label file, ``val_label.txt``: one ``<file name> <class>`` per line, matched to images by stem."""

from __future__ import annotations

from pathlib import Path, PurePath

from zoo_core.errors import ZooError


def read_labels(path: Path, num_classes: int) -> dict[str, int]:
    """Stem -> class. A malformed line, a duplicate, a path instead of a file name, or a class outside
    ``0..num_classes-1`` is a one-line error naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ZooError(f"label file not found: {path}",
                       note="put val_label.txt in the data folder, or pass --labels FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read label file {path}: {exc}", note="pass a text file with --labels") from None
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path.name} line {number}"
        if len(parts) != 2:
            raise ZooError(f"{where}: expected '<file name> <class>', got {line.strip()[:80]!r}",
                           note="each line holds an image's file name and its class, separated by a space")
        name, value = parts
        # A file name from a label file is only ever a key to match; a path in it is refused outright.
        if "/" in name or "\\" in name or name in (".", "..") or PurePath(name).name != name:
            raise ZooError(f"{where}: {name!r} is a path, not a file name",
                           note="label files name images in the data folder, without folders")
        try:
            label = int(value)
        except ValueError:
            raise ZooError(f"{where}: class {value!r} is not a whole number",
                           note="classes are numbered from 0") from None
        if not 0 <= label < num_classes:
            raise ZooError(f"{where}: class {label} is outside the model's classes 0..{num_classes - 1}",
                           note="check that the labels belong to this model's class list")
        stem = PurePath(name).stem
        if stem in labels:
            raise ZooError(f"{where}: {stem!r} is labelled twice (also line {lines[stem]})",
                           note="keep one line per image")
        labels[stem] = label
        lines[stem] = number
    if not labels:
        raise ZooError(f"label file {path} holds no labels", note="each line: '<file name> <class>'")
    return labels
