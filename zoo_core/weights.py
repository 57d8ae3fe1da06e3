"""Model weights: a given file, torch hub's cache, or a verified download; and safe loading."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import CheckError, ZooError

if TYPE_CHECKING:
    import torch

    from .specs import ModelSpec

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, not for the whole file
_CHUNK = 1 << 20
_USER_AGENT = "zoo (model-zoo adapter)"


@dataclass(frozen=True)
class WeightsRef:
    """Resolved weights: a file on disk with its digest, or seeded random initialisation."""

    kind: str  # "file" or "random"
    path: Path | None
    sha256: str | None  # full hex digest of the file
    source: str  # "path", "cache", "download", "random"
    seed: int | None = None

    @property
    def label(self) -> str:
        """Short name for results JSON and reports: ``sha256:<16 hex>`` or ``random``."""
        if self.kind == "random":
            return "random"
        assert self.sha256 is not None
        return f"sha256:{self.sha256[:16]}"

    @property
    def key(self) -> str:
        """What artifact cache keys hash: the full digest, or ``random:<seed>``."""
        if self.kind == "random":
            return f"random:{self.seed}"
        assert self.sha256 is not None
        return self.sha256


def hub_checkpoints_dir() -> Path:
    """Torch hub's checkpoints folder, by the rule of ``torch.hub.get_dir()`` but without importing torch.

    ``$TORCH_HOME/hub/checkpoints``; ``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and
    ``XDG_CACHE_HOME`` to ``~/.cache``. (``torch.hub.set_dir()`` inside another process cannot be seen.)
    """
    xdg = os.getenv("XDG_CACHE_HOME", "~/.cache")
    torch_home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(torch_home) / "hub" / "checkpoints"


def sha256_file(path: Path | str) -> str:
    """The full hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(
    model: ModelSpec,
    choice: str | None,
    *,
    seed: int = 0,
    offline: bool | None = None,
    progress: bool = True,
) -> WeightsRef:
    """Find the weights a run uses.

    ``choice`` is ``"random"`` (seeded random weights, performance only), a file path, or ``None``: then the
    file named by the model's weights spec in torch hub's cache, downloaded and verified if absent.
    ``offline`` (default: env ``ZOO_OFFLINE``) forbids the download.
    """
    if choice == "random":
        return WeightsRef(kind="random", path=None, sha256=None, source="random", seed=seed)
    if choice is not None:
        return _given_file(Path(choice).expanduser())

    spec = model.weights
    if spec is None:
        raise ZooError(
            f"model {model.name!r} declares no published weights",
            note="pass --weights PATH for a state_dict file, or --weights random for a performance-only run",
        )
    cached = hub_checkpoints_dir() / spec.file_name
    if cached.is_file():
        digest = sha256_file(cached)
        if not _matches(digest, spec.sha256_prefix):
            raise CheckError(
                f"cached weights {cached} have sha256 {digest[: len(spec.sha256_prefix)]}…, "
                f"expected prefix {spec.sha256_prefix}",
                note=f"the file is corrupt or not the published one: delete {cached} to re-download it",
            )
        return WeightsRef(kind="file", path=cached, sha256=digest, source="cache")

    if offline is None:
        offline = os.environ.get("ZOO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    if offline:
        raise _download_error(model, "offline")
    digest = _download(model, cached, progress=progress)
    return WeightsRef(kind="file", path=cached, sha256=digest, source="download")


def load_state_dict(path: Path) -> dict[str, "torch.Tensor"]:
    """Load a state_dict safely (``weights_only=True``, on the CPU), unwrapped and without ``module.`` prefixes.

    A checkpoint that holds ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped. A file torch cannot
    load, or one whose pickle asks for anything but tensors and plain containers, raises a ZooError.
    """
    import pickle
    import warnings

    import torch

    path = Path(path)
    note = (
        f"check that {path} is a PyTorch state_dict saved with torch.save; "
        "if it came from the cache or a download, delete it and download it again"
    )
    try:
        with warnings.catch_warnings():
            # Raised for pickles not written by torch.save; the load is refused or succeeds on its own merits.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ZooError(
            f"cannot load weights from {path}: {_load_reason(exc)}",
            note="only plain tensors are loaded, never pickled code; get the weights from a source you trust "
            "or re-save them as a plain state_dict",
        ) from exc
    except Exception as exc:  # whatever the file holds, the user sees one line
        raise ZooError(f"cannot load weights from {path}: {_load_reason(exc)}", note=note) from exc

    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise ZooError(f"cannot load weights from {path}: it holds a {type(obj).__name__}, not a state_dict", note=note)
    state: dict[str, torch.Tensor] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ZooError(
                f"cannot load weights from {path}: entry {name!r} is a {type(value).__name__}, not a tensor",
                note=note,
            )
        state[name.removeprefix("module.")] = value
    return state


# ---------------------------------------------------------------------------------------------------------
# internals


def _given_file(path: Path) -> WeightsRef:
    if not path.exists():
        raise ZooError(
            f"weights file not found: {path}",
            note="pass --weights with the path of an existing state_dict file, --weights random for a "
            "performance-only run, or leave --weights out to use the model's published weights",
        )
    if not path.is_file():
        raise ZooError(f"weights path is not a file: {path}", note="pass --weights with the path of a state_dict file")
    return WeightsRef(kind="file", path=path.resolve(), sha256=sha256_file(path), source="path")


def _matches(digest: str, prefix: str) -> bool:
    return digest.lower().startswith(prefix.strip().lower())


def _download_error(model: ModelSpec, reason: str) -> ZooError:
    assert model.weights is not None
    return ZooError(
        f"cannot download weights for {model.name} from {model.weights.url}: {reason}",
        note=f"put {model.weights.file_name} in {hub_checkpoints_dir()} or pass --weights PATH; "
        "for a performance-only run use --weights random",
    )


def _download(model: ModelSpec, dest: Path, *, progress: bool) -> str:
    """Stream the model's weights into ``dest`` through a temporary file; return the verified sha256."""
    import http.client
    import urllib.error
    import urllib.request

    spec = model.weights
    assert spec is not None
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.part"
    stage = "disk"  # which side an OSError comes from: the cache folder or the network
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            stage = "network"
            request = urllib.request.Request(spec.url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
                total = response.length  # None without a Content-Length
                digest, received = _stream(response, out, total, spec.file_name, progress=progress)
            stage = "disk"
        if total is not None and received != total:
            raise _download_error(model, f"the connection closed after {received} of {total} bytes")
        if not _matches(digest, spec.sha256_prefix):
            raise CheckError(
                f"downloaded file for {model.name} has sha256 {digest[:8]}…, expected prefix {spec.sha256_prefix}",
                note="the server returned a different file; nothing was kept. Check the model's weights URL, "
                "or download the file yourself and pass --weights PATH",
            )
        os.replace(tmp, dest)
        return digest
    except _WriteError as exc:
        _remove(tmp)
        raise _write_error(dest.parent, exc.error) from exc.error
    except (OSError, http.client.HTTPException) as exc:
        _remove(tmp)
        if stage == "disk" and isinstance(exc, OSError):
            raise _write_error(dest.parent, exc) from exc
        raise _download_error(model, _network_reason(exc, urllib.error)) from exc
    except BaseException:  # a mismatch, Ctrl-C, anything: never leave a partial file behind
        _remove(tmp)
        raise


class _WriteError(Exception):
    """An OSError from writing the temporary file, told apart from the network's OSErrors."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _write_error(folder: Path, exc: OSError) -> ZooError:
    return ZooError(
        f"cannot write weights to {folder}: {exc.strerror or exc}",
        note="make the folder writable, set TORCH_HOME to a writable folder, or pass --weights PATH",
    )


def _stream(response: BinaryIO, out: BinaryIO, total: int | None, name: str, *, progress: bool) -> tuple[str, int]:
    """Copy the response into ``out``, hashing as it goes; show a progress bar on a terminal."""
    digest = hashlib.sha256()
    received = 0
    bar = _ProgressBar(name, total) if progress and sys.stderr.isatty() else None
    try:
        while chunk := response.read(_CHUNK):
            try:
                out.write(chunk)
            except OSError as exc:
                raise _WriteError(exc) from exc
            digest.update(chunk)
            received += len(chunk)
            if bar is not None:
                bar.advance(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest(), received


class _ProgressBar:
    """A rich download bar on stderr; rich is imported only when one is shown."""

    def __init__(self, name: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("downloading {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        self._progress.update(self._task, advance=n)

    def close(self) -> None:
        self._progress.stop()


def _network_reason(exc: BaseException, urllib_error: Any) -> str:
    """One short line for why a download failed."""
    if isinstance(exc, urllib_error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    if isinstance(exc, urllib_error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _load_reason(exc: BaseException) -> str:
    """One short line for why torch refused a file."""
    import pickle

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip()
        detail = detail.splitlines()[0].split(". ")[0].rstrip(".") if detail else ""
        return f"it holds pickled objects that safe loading refuses ({detail})"
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, KeyError) or "invalid load key" in text:
        return "not a PyTorch checkpoint"
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(exc).__name__)
    line = line.split(". ")[0].rstrip(".")
    return line if len(line) <= 160 else line[:157] + "..."


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
