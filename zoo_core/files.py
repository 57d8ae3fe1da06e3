"""File helpers the core shares: atomic writes, file hashing, natural order, and output folders zoo made."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: str = "w", *, fsync: bool = False) -> Iterator[Any]:
    """A file object on a hidden temporary sibling of ``path`` (``.NAME.PID.tmp``), moved over ``path`` only when
    the block succeeds; on any failure the temporary file is removed, ``path`` is left as it was, and an OSError
    without a file name (a full disk inside a library's write) is given ``path``'s (:func:`limits.writing`). Text
    is written as UTF-8 with newlines untranslated; ``fsync`` flushes the data to the disk before the move."""
    from .limits import writing

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, tmp):
        text: dict[str, Any] = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
        with open(tmp, mode, **text) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)


def sha256_file(path: Path | str) -> str:
    """The full hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def natural_key(text: str) -> tuple[list[Any], str]:
    """Sort key that puts ``img2`` before ``img10`` (and ``resnest50`` before ``resnest101``), as ais_bench sorts
    its inputs. Only ASCII digit runs count as numbers (``int('\u00b2')`` fails); names that compare equal as
    numbers (``img01``, ``img1``) fall back to their text, so the order never depends on how a folder was listed."""
    parts = re.split(r"([0-9]+)", text)
    return [int(part) if i % 2 else part for i, part in enumerate(parts)], text


def make_folder(path: Path) -> list[Path]:
    """Create the folder ``path`` and any missing parents; returns the folders this call created, outermost
    first (none when ``path`` was there), for :func:`remove_if_empty`."""
    missing = [p for p in (path, *path.parents) if not p.exists()][::-1]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def remove_if_empty(created: list[Path]) -> None:
    """Remove the folders :func:`make_folder` created, innermost first, as long as each is empty: never a folder
    that holds a file, nor one zoo did not create (``os.rmdir`` refuses a folder that is not empty)."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # something was written into it (or it is gone): kept, and so are its parents
            return
