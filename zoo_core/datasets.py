"""Datasets as the core sees them: labelled image samples, listed in natural order, and their problems."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ZooError

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

    def limited(self, limit: int | None) -> "Dataset":
        """The first ``limit`` samples by natural order (all when ``None``)."""
        if limit is None:
            return self
        if limit < 1:
            raise ZooError(f"--limit {limit} must be at least 1", exit_code=2)
        return Dataset(self.kind, self.root, self.samples[:limit], self.unlabeled, self.missing, self.ignored)

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
        }


def natural_key(text: str) -> list[Any]:
    """Sort key that puts ``img2`` before ``img10``, as ais_bench sorts its inputs."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> tuple[list[Path], int]:
    """The image files directly in ``folder``, natural-sorted, and how many other files were skipped."""
    images, other = [], 0
    for entry in folder.iterdir():
        if entry.is_file():
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                images.append(entry)
            else:
                other += 1
    images.sort(key=lambda p: natural_key(p.name))
    return images, other


def check_folder(path: Path) -> Path:
    """``path`` as an existing folder, or a one-line error."""
    if not path.exists():
        raise ZooError(f"data folder not found: {path}", note="pass the folder of images with --data")
    if not path.is_dir():
        raise ZooError(f"--data must be a folder: {path}", note="pass the folder that holds the images")
    return path
