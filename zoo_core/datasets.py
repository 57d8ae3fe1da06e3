"""Datasets as the core sees them: labelled image samples, listed in natural order, and their problems."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ZooError
from .files import natural_key

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif"})


@dataclass(frozen=True)
class Sample:
    """One image: its id (the file stem, or ``class/stem`` in a class-folder dataset), file and label."""

    id: str
    path: Path
    label: int | None


@dataclass
class Dataset:
    """What a dataset plugin found under a folder."""

    kind: str
    root: Path
    samples: list[Sample]  # labelled images, in natural order of their ids
    unlabeled: list[str] = field(default_factory=list)  # image ids that have no label
    missing: list[str] = field(default_factory=list)  # labels whose image is not there
    ignored: int = 0  # files that are not images
    hidden: int = 0  # entries whose name starts with '.' (.ipynb_checkpoints, .DS_Store): never read
    classes: Classes | None = None  # how class folders were numbered; None where labels are numbers already

    def limited(self, limit: int | None) -> "Dataset":
        """The first ``limit`` samples by natural order (all when ``None``)."""
        if limit is None:
            return self
        if limit < 1:
            raise ZooError(f"--limit {limit} must be at least 1", exit_code=2)
        return replace(self, samples=self.samples[:limit])

    def signature(self) -> str:
        """A hash of every sample's id, label, size and modification time: a changed file changes it."""
        digest = hashlib.sha256()
        for s in self.samples:
            stat = s.path.stat()
            digest.update(f"{s.id}\0{s.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def report(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "root": str(self.root),
            "images": len(self.samples),
            "unlabeled": {"count": len(self.unlabeled), "first": self.unlabeled[:10]},
            "labels_without_image": {"count": len(self.missing), "first": self.missing[:10]},
            "ignored_files": self.ignored,
            "hidden": self.hidden,
            "classes": self.classes.report() if self.classes is not None else None,
        }


@dataclass(frozen=True)
class Classes:
    """How a class-folder dataset numbered its folders: folder name -> class index, and by what."""

    index: dict[str, int]  # folder name (as text_of shows it) -> class index
    source: str  # "sorted": by folder name; "imagenet-1k": the ImageNet-1k synset list; "file": --classes FILE
    file: Path | None = None  # the --classes file
    warning: str | None = None  # what the user should check about this numbering

    def report(self) -> dict[str, Any]:
        return {"source": self.source, "file": text_of(str(self.file)) if self.file else None,
                "count": len(self.index), "folders": dict(self.index), "warning": self.warning}


CLASS_SOURCES = {"sorted": "sorted name", "imagenet-1k": "the ImageNet-1k synset list", "file": "{file}"}


def classes_line(classes: dict[str, Any], shown: int = 10) -> str:
    """One line for a run's output: ``3 folders numbered by sorted name: cat=0, dog=1, fish=2``."""
    pairs = sorted(classes["folders"].items(), key=lambda pair: pair[1])
    listed = ", ".join(f"{shown_name(name)}={index}" for name, index in pairs[:shown])
    more = f", ... ({len(pairs) - shown} more)" if len(pairs) > shown else ""
    source = CLASS_SOURCES[classes["source"]].format(file=Path(classes["file"] or "").name)
    warning = f" ({classes['warning']})" if classes.get("warning") else ""
    return f"{classes['count']} folders numbered by {source}: {listed}{more}{warning}"


def text_of(name: str) -> str:
    """``name`` as text that can be written anywhere: a file name that is not valid UTF-8 (Python keeps its
    bytes as lone surrogates) shows them escaped, ``img\\xff.jpg``; any other name is returned as it is."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return name.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_name(name: str) -> str:
    """A name for a one-line message: as it is when printable, else as ``repr`` shows it (escapes, no quotes)."""
    return name if name.isprintable() else repr(name)[1:-1]


@dataclass
class Listing:
    """What is directly in a folder: image files and subfolders in order, and what was skipped."""

    images: list[Path]  # natural order of their names
    folders: list[Path]  # sorted by name (code points, as torchvision's ImageFolder numbers classes)
    other: int  # files that are not images
    hidden: int  # entries whose name starts with '.'


def scan(folder: Path) -> Listing:
    """List ``folder`` one level deep; hidden entries (``.ipynb_checkpoints``, ``.DS_Store``) are only counted."""
    images, folders, other, hidden = [], [], 0, 0
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            hidden += 1
        elif entry.is_dir():
            folders.append(entry)
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            other += 1
    images.sort(key=lambda p: natural_key(p.name))
    folders.sort(key=lambda p: p.name)
    return Listing(images, folders, other, hidden)


def list_images(folder: Path) -> tuple[list[Path], int]:
    """The image files directly in ``folder``, natural-sorted, and how many other files were skipped (hidden
    entries are neither listed nor counted here: see :func:`scan`)."""
    listing = scan(folder)
    return listing.images, listing.other


def check_folder(path: Path) -> Path:
    """``path`` as an existing folder, or a one-line error."""
    if not path.exists():
        raise ZooError(f"data folder not found: {path}", note="pass the folder of images with --data")
    if not path.is_dir():
        raise ZooError(f"--data must be a folder: {path}", note="pass the folder that holds the images")
    return path
