"""The artifact cache: each stage's output in a folder keyed by a hash of everything that produced it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .cache_layout import (BLOBS, EVALUATIONS, MANIFEST, SHARE_MIN_BYTES, STAGES, clean, entries, file_sha256,
                           open_folder)
from .errors import ZooError

CACHE_ENV = "ZOO_CACHE_DIR"
VERIFIED = ".verified.json"  # beside the manifest: each file's stat when its sha256 last matched the manifest
# A file changed this recently may change again within its timestamps' resolution, unseen by stat: it is
# hashed on every use until it is older (git's "racily clean" rule).
_RACY_NS = 2_000_000_000


def cache_root() -> Path:
    """``$ZOO_CACHE_DIR``, else the platform's user cache folder (platformdirs: ``$XDG_CACHE_HOME/zoo`` or
    ``~/.cache/zoo`` on Linux, ``~/Library/Caches/zoo`` on macOS, ``%LOCALAPPDATA%\\zoo\\Cache`` on Windows)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("zoo", appauthor=False))


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-ready mapping: the artifact's key."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def warn(message: str) -> None:
    """One warning line on stderr: something was wrong and zoo repaired it; the run goes on."""
    sys.stderr.write(f"Warning: {message}\n")
    sys.stderr.flush()


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

    A folder is used only when its manifest is whole and every file it lists matches its size and sha256 (a
    file is re-hashed only when its stat changed since it last matched); one that does not match is built again,
    with a warning. A lock file makes a second process wait for the first one's build instead of doing it
    again, and every folder this process uses stays under a shared lock until it exits, so that `zoo cache
    clean` leaves it alone.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self._held: dict[Path, int] = {}  # folder -> an open descriptor holding its shared lock

    def get_or_build(self, stage: str, inputs: Mapping[str, Any], build: Callable[[Path], Any]) -> Artifact:
        """The artifact of ``stage`` for ``inputs``; ``build(folder)`` writes its files when it is missing."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: the cache's stages are {', '.join(STAGES)}")
        key = fingerprint({"stage": stage, **inputs})
        stage_dir = self.root / stage
        final = stage_dir / key
        found, problem = self._use(stage, key, final)
        if found is not None:
            return found
        if problem:
            warn(f"the cached {stage} artifact {key} {problem}; building it again")
        lock = stage_dir / f".{key}.lock"
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            lock.touch()
        except OSError as exc:
            raise ZooError(f"cannot write to the cache {self.root}: {exc.strerror or exc}",
                           note=f"set {CACHE_ENV} to a writable folder with free space") from None
        with _locked(lock):
            found, _ = self._use(stage, key, final)  # built by another process while this one waited
            if found is not None:
                return found
            # Holding the lock, no one else builds this key: a temporary folder of it was left by a killed run.
            for stale in stage_dir.glob(f".{key}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = stage_dir / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                build(tmp)
                files = _file_table(tmp)
                if not files:
                    raise RuntimeError(f"the {stage} stage wrote no file: there is nothing to cache")
                _share(tmp, files, self.root / BLOBS)
                manifest = {
                    "stage": stage,
                    "key": key,
                    "inputs": json.loads(json.dumps(inputs, default=str)),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "files": files,
                }
                _write_json_atomic(tmp / MANIFEST, manifest)
                if final.exists():  # a damaged artifact, or a folder left without a manifest by an older crash
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except OSError as exc:  # a full disk: name the artifact's file, not the temporary folder that goes now
                if exc.filename is None or not Path(exc.filename).is_relative_to(tmp):
                    raise
                raise OSError(exc.errno, exc.strerror, str(final / Path(exc.filename).relative_to(tmp))) from None
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            self._hold(final)
        return Artifact(stage, key, final, cached=False, manifest=manifest)

    def evaluation_folder(self, key: str) -> Path:
        """The folder of an evaluation's saved shards, created if needed and held until this process exits."""
        folder = self.root / EVALUATIONS / key
        self._hold(folder, create=True)
        return folder

    def entries(self) -> list[dict[str, Any]]:
        """Every artifact zoo made in the cache: stage, key, size, modification time, whether it is whole."""
        return entries(self.root, lambda stage, key, folder: verify(stage, key, folder)[1])

    def clean(self, older_than_s: float | None = None) -> dict[str, Any]:
        """Remove what zoo made (all, or what was not modified for ``older_than_s`` seconds) and what a crash
        left; nothing in use and nothing zoo did not make. Returns what went and what stayed."""
        return clean(self.root, older_than_s)

    def _use(self, stage: str, key: str, folder: Path) -> tuple[Artifact | None, str | None]:
        """The artifact in ``folder``, held; else ``None`` and what is wrong with it (``None`` when absent)."""
        if not self._hold(folder):
            return None, None
        found, problem = verify(stage, key, folder)
        if found is None:
            self._release(folder)
        return found, problem

    def _hold(self, folder: Path, *, create: bool = False) -> bool:
        """Take a shared lock on ``folder`` (waiting while a clean removes it) and keep it; False when the
        folder is not there."""
        self._release(folder)
        while True:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            try:
                fd = open_folder(folder)
            except (FileNotFoundError, NotADirectoryError):
                if create:
                    continue
                return False
            if fd is None:  # Windows: no folder lock (see open_folder)
                return folder.is_dir()
            _lock_shared(fd)
            if _same_file(fd, folder):
                self._held[folder] = fd
                return True
            os.close(fd)  # removed while this process waited for the lock
            if not create:
                return False

    def _release(self, folder: Path) -> None:
        fd = self._held.pop(folder, None)
        if fd is not None:
            os.close(fd)


def verify(stage: str, key: str, folder: Path) -> tuple[Artifact | None, str | None]:
    """The artifact in ``folder`` when its manifest is this key's and every file matches it; else ``None`` and
    what is wrong, as words that follow "the artifact" (``None`` too when there is no folder)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None, (f"has no {MANIFEST}" if folder.is_dir() else None)
    except (OSError, ValueError):
        return None, f"has an unreadable {MANIFEST}"
    if not isinstance(manifest, dict):
        manifest = {}
    files = manifest.get("files")
    if manifest.get("key") != key or not isinstance(files, dict) or not files \
            or not all(_valid_entry(name, meta) for name, meta in files.items()):
        return None, f"has a {MANIFEST} that is not this artifact's"
    known = _read_verified(folder)
    verified = {}
    for name, meta in sorted(files.items()):
        try:
            st = os.stat(folder / name)
        except OSError:
            return None, f"is missing its file {name}"
        if not stat.S_ISREG(st.st_mode) or st.st_size != meta["size"]:
            return None, f"has {name} of {st.st_size} bytes where its manifest says {meta['size']}"
        signature = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        if known.get(name) != signature:
            try:
                digest = file_sha256(folder / name)
            except OSError as exc:
                return None, f"cannot read its file {name}: {exc.strerror or exc}"
            if digest != meta["sha256"]:
                return None, f"has {name} that does not match the sha256 in its manifest"
            if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
                continue  # matched, but too fresh to trust its stat next time
        verified[name] = signature
    if verified != known:
        with contextlib.suppress(OSError):  # a read-only cache is still used, hashed each time
            _write_json_atomic(folder / VERIFIED, verified)
    return Artifact(stage, key, folder, cached=True, manifest=manifest), None


def _valid_entry(name: Any, meta: Any) -> bool:
    return (isinstance(name, str) and bool(name) and not name.startswith("/") and ".." not in name.split("/")
            and isinstance(meta, dict) and isinstance(meta.get("size"), int) and isinstance(meta.get("sha256"), str))


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (subfolders too): relative path -> size and sha256."""
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _share(folder: Path, files: Mapping[str, Mapping[str, Any]], blobs: Path) -> None:
    """Store identical content once: each file of at least ``SHARE_MIN_BYTES`` in the finished build ``folder``
    becomes a hard link of ``blobs/SHA256`` (made from it when missing), so that every artifact still holds
    whole files. A blob that no longer matches its name (edited in place through another artifact) is replaced,
    never linked; where links cannot be made (another disk, a file system without them) the copy stays."""
    for name, meta in files.items():
        if meta["size"] < SHARE_MIN_BYTES:
            continue
        path, blob = folder / name, blobs / meta["sha256"]
        with contextlib.suppress(OSError):
            blobs.mkdir(exist_ok=True)
            for _ in range(3):  # a clean may remove the blob between two steps: try again
                try:
                    os.link(path, blob)  # the first copy of this content: it is the blob
                    break
                except FileExistsError:
                    pass
                link = path.with_name(f".{path.name}.link-{uuid.uuid4().hex[:8]}")
                try:
                    if os.path.samefile(blob, path):
                        break
                    if file_sha256(blob) != meta["sha256"]:  # damaged: this build's file takes its name
                        os.link(path, link)
                        os.replace(link, blob)
                        break
                    os.link(blob, link)
                    os.replace(link, path)
                    break
                except FileNotFoundError:
                    with contextlib.suppress(OSError):
                        link.unlink()


def _read_verified(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced meanwhile)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the lock file ``path``; a lock file a clean removed while this process waited for
    it is made again (two builders never hold two different files)."""
    from filelock import lock_descriptor, unlock_descriptor

    while True:
        fh = open(path, "a+")
        lock_descriptor(fh.fileno())
        if _same_file(fh.fileno(), path):
            break
        fh.close()
    try:
        yield
    finally:
        unlock_descriptor(fh.fileno())
        fh.close()


def _lock_shared(fd: int) -> None:
    """A shared lock on the folder open as ``fd`` (POSIX ``flock``, the primitive filelock uses there): many runs
    hold it, and a clean's exclusive try fails while any does. filelock has no shared lock."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_SH)


@contextlib.contextmanager
def scratch_beside(build_folder: Path) -> Iterator[Path]:
    """A temporary folder beside a build's folder, named as one of its key's builds (so that a crash's leftover
    is cleaned like one), removed afterwards: for files a build needs but does not keep."""
    key = build_folder.name.split(".tmp-")[0]
    scratch = build_folder.with_name(f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: no temporary file is left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
