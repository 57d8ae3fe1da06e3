"""What in the cache folder zoo made, told by name and manifest: listing and cleaning touch nothing else."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

MANIFEST = "manifest.json"  # in every artifact's folder: its key, and each file's size and sha256
# The stage folders; `zoo cache clean` touches no other.
STAGES = ("export", "simplify", "calibrate", "quantize", "compile")
EVALUATIONS = "evaluations"  # saved accuracy shards, one folder per evaluation key
BLOBS = "blobs"  # identical files stored once: each named by its sha256, hard-linked from the artifacts holding it
SHARE_MIN_BYTES = 4096  # smaller files are not worth a link
LOGS = "logs"  # ATC's logs of failed compiles (the Ascend backend): zoo's, but neither listed nor cleaned
_KEY = re.compile(r"[0-9a-f]{24}")
_TMP = re.compile(r"\.([0-9a-f]{24})\.tmp-\d+-[0-9a-f]+")  # a build in progress, or one a crash left
_LOCK = re.compile(r"\.([0-9a-f]{24})\.lock")
_BLOB = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"shard-\d{6}\.npz|\.shard-\d{6}\.npz\.\d+\.tmp")


@dataclass(frozen=True)
class Entry:
    """One thing in the cache folder, and what it is."""

    kind: str  # "artifact", "partial" (a build's temporary folder), "lock", "evaluation", "blob", or "foreign"
    stage: str
    key: str
    path: Path


def try_lock(fd: int) -> bool:
    """An exclusive lock on the open file (or, where the system allows, folder) ``fd`` if no one holds any
    lock on it; False otherwise. filelock's primitive: ``flock`` on POSIX, ``LockFileEx`` on Windows."""
    from filelock import lock_descriptor

    return lock_descriptor(fd, blocking=False)


def open_folder(folder: Path) -> int | None:
    """A descriptor of ``folder`` to lock, or None where folders cannot be opened (Windows): there a folder in
    use is not locked, and only the build lock of its key keeps a clean away."""
    if not hasattr(os, "O_DIRECTORY"):
        return None
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan(root: Path) -> list[Entry]:
    """Everything directly in ``root`` and in its stage folders, each recognised as zoo's or "foreign"; links
    are never followed."""
    found: list[Entry] = []
    if not root.is_dir():
        return found
    for top in _listing(root):
        if top.name in STAGES and top.is_dir(follow_symlinks=False):
            found += [_stage_entry(top.name, e) for e in _listing(Path(top.path))]
        elif top.name == EVALUATIONS and top.is_dir(follow_symlinks=False):
            found += [_evaluation_entry(e) for e in _listing(Path(top.path))]
        elif top.name == BLOBS and top.is_dir(follow_symlinks=False):
            found += [_blob_entry(e) for e in _listing(Path(top.path))]
        elif not (top.name == LOGS and top.is_dir(follow_symlinks=False)):
            found.append(Entry("foreign", "", "", Path(top.path)))
    return found


def entries(root: Path, problem_of: Callable[[str, str, Path], str | None]) -> list[dict[str, Any]]:
    """Rows for ``zoo cache ls``: zoo's artifacts, evaluations and crash leftovers (nothing foreign); an
    artifact's ``problem`` is what ``problem_of(stage, key, folder)`` finds wrong with it (``None``: whole)."""
    rows = []
    found = scan(root)
    about = _about([e for e in found if e.kind == "artifact"])
    for entry in found:
        if entry.kind not in ("artifact", "partial", "evaluation"):
            continue
        problem = None
        if entry.kind == "artifact":
            problem = problem_of(entry.stage, entry.key, entry.path)
        rows.append({
            **about.get((entry.stage, entry.key), {"model": None, "backend": None, "batch_size": None}),
            "stage": entry.stage, "key": entry.key, "path": str(entry.path),
            "bytes": _bytes(entry.path), "modified": _mtime(entry.path),
            "complete": entry.kind != "partial" and problem is None, "problem": problem,
        })
    order = {stage: i for i, stage in enumerate((*STAGES, EVALUATIONS))}
    return sorted(rows, key=lambda r: (r["model"] or "~", order[r["stage"]], r["batch_size"] or 0, r["key"]))


def disk_bytes(root: Path) -> int:
    """What the cache's files take on disk: a file linked from several artifacts (and its blob) counted once."""
    files: dict[tuple[int, int], int] = {}
    for entry in scan(root):
        if entry.kind == "foreign":
            continue
        walk = os.walk(entry.path) if entry.path.is_dir() else [(str(entry.path.parent), [], [entry.path.name])]
        for base, _, names in walk:
            for name in names:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(base, name))
                    files[(st.st_dev, st.st_ino)] = st.st_size
    return sum(files.values())


def _about(artifacts: list[Entry]) -> dict[tuple[str, str], dict[str, Any]]:
    """Model, backend and batch size of each artifact, from the inputs in the manifests: an export names its
    model, a simplified model its batch size and export, a compiled model its backend and simplified model."""
    inputs = {}
    for entry in artifacts:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            inputs[(entry.stage, entry.key)] = dict(json.loads((entry.path / MANIFEST).read_text())["inputs"])
    about: dict[tuple[str, str], dict[str, Any]] = {}
    for (stage, key), given in sorted(inputs.items(), key=lambda item: STAGES.index(item[0][0])):
        model = given.get("model")
        row = {"model": model.get("name") if isinstance(model, dict) else None, "backend": None, "batch_size": None}
        if stage == "simplify":
            row = {**about.get(("export", given.get("export", "")), row), "batch_size": given.get("batch_size")}
        elif stage in ("quantize", "compile"):
            row = {**about.get(("simplify", given.get("simplified", "")), row), "backend": given.get("backend")}
        about[(stage, key)] = row
    return about


def foreign(root: Path) -> list[str]:
    """The paths in the cache folder that zoo did not make: left in place by ``zoo cache clean``."""
    return [str(e.path) for e in scan(root) if e.kind == "foreign"]


def clean(root: Path, older_than_s: float | None = None) -> dict[str, Any]:
    """Remove zoo's artifacts and evaluations (all, or those not modified for ``older_than_s`` seconds), every
    temporary folder of a build that is not running and every free lock file; skip what a running zoo holds;
    leave whatever zoo did not make."""
    removed = freed = in_use = 0
    now = time.time()
    found = scan(root)
    order = {"blob": 1, "lock": 2}  # blobs once the artifacts linking them went; lock files last: they guard
    for entry in sorted(found, key=lambda e: order.get(e.kind, 0)):
        if entry.kind == "foreign":
            continue
        if entry.kind == "blob":
            gone = _remove_unlinked_blob(entry.path)
            freed += gone
            continue
        if entry.kind == "lock":
            _remove_free_lock(entry.path)
            continue
        if entry.kind != "partial" and older_than_s is not None and now - _mtime(entry.path) <= older_than_s:
            continue
        size = _bytes(entry.path, own_only=True)
        with _unused(entry) as free:
            if free:
                shutil.rmtree(entry.path, ignore_errors=True)
        if not free:
            in_use += 1
        elif not entry.path.exists():
            removed += 1
            freed += size
    not_zoos = [str(e.path) for e in found if e.kind == "foreign"]
    return {"removed": removed, "bytes": freed, "in_use": in_use, "foreign": len(not_zoos), "left": not_zoos}


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _stage_entry(stage: str, e: os.DirEntry[str]) -> Entry:
    path = Path(e.path)
    if e.is_dir(follow_symlinks=False):
        if _KEY.fullmatch(e.name) and _manifest_names(path, stage, e.name):
            return Entry("artifact", stage, e.name, path)
        if match := _TMP.fullmatch(e.name):
            return Entry("partial", stage, match[1], path)
    elif e.is_file(follow_symlinks=False) and (match := _LOCK.fullmatch(e.name)):
        return Entry("lock", stage, match[1], path)
    return Entry("foreign", stage, "", path)


def _blob_entry(e: os.DirEntry[str]) -> Entry:
    if e.is_file(follow_symlinks=False) and _BLOB.fullmatch(e.name):
        return Entry("blob", BLOBS, e.name, Path(e.path))
    return Entry("foreign", BLOBS, "", Path(e.path))


def _remove_unlinked_blob(path: Path) -> int:
    """Remove a blob no artifact links any more (and whose content still is what its name says: zoo's); the
    bytes freed. A builder that links it meanwhile keeps its own link: its artifact stays whole."""
    try:
        st = path.stat()
        if st.st_nlink != 1 or file_sha256(path) != path.name:
            return 0
        path.unlink()
    except OSError:
        return 0
    return st.st_size


def _evaluation_entry(e: os.DirEntry[str]) -> Entry:
    path = Path(e.path)
    if e.is_dir(follow_symlinks=False) and _KEY.fullmatch(e.name):
        if all(f.is_file(follow_symlinks=False) and _SHARD.fullmatch(f.name) for f in _listing(path)):
            return Entry("evaluation", EVALUATIONS, e.name, path)
    return Entry("foreign", EVALUATIONS, "", path)


def _manifest_names(folder: Path, stage: str, key: str) -> bool:
    """Whether ``folder`` holds zoo's manifest of this stage and key."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("stage") == stage and manifest.get("key") == key


@contextlib.contextmanager
def _unused(entry: Entry) -> Iterator[bool]:
    """True, holding what keeps zoo away from ``entry`` while it goes: its folder's lock (a run uses it) and its
    key's build lock (a build writes it); False when either is held."""
    with contextlib.ExitStack() as held:
        build_lock = entry.path.parent / f".{entry.key}.lock"
        locks = [build_lock] if entry.kind == "partial" else [entry.path, build_lock]
        for path in locks:
            try:
                fd = open_folder(path) if path == entry.path else os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # no lock file: no build of this key is running
            if fd is None:
                continue
            held.callback(os.close, fd)
            if not try_lock(fd):
                yield False
                return
        yield True


def _remove_free_lock(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        if try_lock(fd):
            os.close(fd)  # Windows removes no open file
            fd = -1
            path.unlink()  # a builder that opened it before is told by its inode check to make a new one
    except OSError:
        pass  # held: a build is running
    finally:
        if fd >= 0:
            os.close(fd)


def _bytes(folder: Path, own_only: bool = False) -> int:
    """The size of the files under ``folder``; ``own_only``: only those linked nowhere else (what removing it
    frees)."""
    total = 0
    for base, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(base, name))
                if not own_only or st.st_nlink == 1:
                    total += st.st_size
    return total


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0
