"""The artifact cache: each stage's output in a folder keyed by a hash of everything that produced it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import ZooError

CACHE_ENV = "ZOO_CACHE_DIR"
MANIFEST = "manifest.json"


def cache_root() -> Path:
    """``$ZOO_CACHE_DIR``, else the platform's user cache folder (``$XDG_CACHE_HOME/zoo``, ``~/.cache/zoo``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoo"


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-ready mapping: the artifact's key."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A finished artifact: a folder holding the stage's files and a complete manifest."""

    stage: str
    key: str
    path: Path
    cached: bool  # True when it was found, False when this call built it
    manifest: Mapping[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


class ArtifactStore:
    """Builds each artifact once: written to a temporary folder, given a manifest, then renamed into place.

    A folder without a complete manifest is never used; a lock file makes a second process wait for the
    first one's build instead of doing it again.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()

    def get_or_build(self, stage: str, inputs: Mapping[str, Any], build: Callable[[Path], Any]) -> Artifact:
        """The artifact of ``stage`` for ``inputs``; ``build(folder)`` writes its files when it is missing."""
        key = fingerprint({"stage": stage, **inputs})
        stage_dir = self.root / stage
        final = stage_dir / key
        found = self._load(stage, key, final)
        if found is not None:
            return found
        lock = stage_dir / f".{key}.lock"
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            lock.touch()
        except OSError as exc:
            raise ZooError(f"cannot write to the cache {self.root}: {exc.strerror or exc}",
                           note=f"set {CACHE_ENV} to a writable folder with free space") from None
        with _locked(lock):
            found = self._load(stage, key, final)
            if found is not None:
                return found
            # Holding the lock, no one else builds this key: a temporary folder of it was left by a killed run.
            for stale in stage_dir.glob(f".{key}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = stage_dir / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                build(tmp)
                manifest = {
                    "stage": stage,
                    "key": key,
                    "inputs": json.loads(json.dumps(inputs, default=str)),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "files": {
                        p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                        for p in sorted(tmp.iterdir())
                        if p.is_file()
                    },
                }
                _write_json_atomic(tmp / MANIFEST, manifest)
                if final.exists():  # a folder left without a manifest by an older crash
                    shutil.rmtree(final)
                os.rename(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return Artifact(stage, key, final, cached=False, manifest=manifest)

    def entries(self) -> list[dict[str, Any]]:
        """Every artifact in the cache: stage, key, size, creation time, and whether its manifest is whole."""
        rows = []
        if not self.root.is_dir():
            return rows
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for folder in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                complete = folder.name.startswith(".") is False and self._load(stage_dir.name, folder.name, folder)
                rows.append({
                    "stage": stage_dir.name, "key": folder.name, "path": str(folder), "bytes": size,
                    "modified": folder.stat().st_mtime, "complete": bool(complete) or stage_dir.name == "evaluations",
                })
        return rows

    def clean(self, older_than_s: float | None = None) -> dict[str, int]:
        """Remove artifacts (all, or those not modified for ``older_than_s`` seconds) and every leftover
        temporary folder; returns how many folders and bytes went."""
        removed, freed = 0, 0
        now = time.time()
        for row in self.entries():
            leftover = Path(row["path"]).name.startswith(".") or not row["complete"]
            if leftover or older_than_s is None or now - row["modified"] > older_than_s:
                shutil.rmtree(row["path"], ignore_errors=True)
                removed += 1
                freed += row["bytes"]
        return {"removed": removed, "bytes": freed}

    @staticmethod
    def _load(stage: str, key: str, folder: Path) -> Artifact | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("key") != key:
            return None
        for name, meta in manifest.get("files", {}).items():
            try:
                if (folder / name).stat().st_size != meta["size"]:
                    return None
            except OSError:
                return None
        return Artifact(stage, key, folder, cached=True, manifest=manifest)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
