"""The seed's label file, ``val_label.txt``: one ``<file name> <class>`` per line, matched to images by stem."""

from __future__ import annotations

import re
from pathlib import Path, PurePath

from zoo_core.api import IMAGE_SUFFIXES, ZooError, shown_name

CLASS = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also take '٣', '１' or '1_0'


def read_lines(path: Path, what: str, note: str) -> list[str]:
    """The lines of a UTF-8 text file: a BOM dropped, CRLF, CR or LF line ends. A file that is missing,
    unreadable or not UTF-8 is a one-line error (the line of the first bad byte)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ZooError(f"{what} not found: {shown_name(str(path))}", note=note) from None
    except OSError as exc:
        raise ZooError(f"cannot read {what} {shown_name(str(path))}: {exc.strerror or exc}", note=note) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        raise ZooError(f"{what} {shown_name(path.name)} line {line} is not UTF-8 text (byte 0x{data[start]:02x})",
                       note="save the file as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def label_stem(name: str) -> str:
    """The stem an image must have to take this name's label: ``my image 01.JPEG`` -> ``my image 01``. Only an
    image suffix is dropped: ``a.b`` names the image ``a.b.png``, never ``a.png``, and ``a.JPEG 1`` no image."""
    path = PurePath(name)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else name


def read_labels(path: Path, num_classes: int) -> dict[str, int]:
    """Stem -> class. A malformed line, a duplicate, a path instead of a file name, or a class outside
    ``0..num_classes-1`` is a one-line error naming the line. The class is the last field of a line, so a
    file name may hold spaces."""
    text_lines = read_lines(path, "label file", note="put val_label.txt in the data folder, or pass --labels FILE")
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text_lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        where = f"{shown_name(path.name)} line {number}"
        if len(parts) != 2:
            raise ZooError(f"{where}: expected '<file name> <class>', got {line.strip()[:80]!r}",
                           note="each line holds an image's file name and its class, separated by a space")
        name, value = parts
        # A file name from a label file is only ever a key to match; a path in it is refused outright.
        if "/" in name or "\\" in name or name in (".", "..") or PurePath(name).name != name:
            raise ZooError(f"{where}: {name!r} is a path, not a file name",
                           note="label files name images in the data folder, without folders")
        if not CLASS.fullmatch(value):
            raise ZooError(f"{where}: class {value!r} is not a whole number",
                           note="classes are numbered from 0")
        label = int(value)
        if not 0 <= label < num_classes:
            raise ZooError(f"{where}: class {label} is outside the model's classes 0..{num_classes - 1}",
                           note="check that the labels belong to this model's class list")
        stem = label_stem(name)
        if stem in labels:
            raise ZooError(f"{where}: {stem!r} is labelled twice (also line {lines[stem]})",
                           note="keep one line per image")
        labels[stem] = label
        lines[stem] = number
    if not labels:
        raise ZooError(f"label file {shown_name(str(path))} holds no labels", note="each line: '<file name> <class>'")
    return labels
