"""Model weights: a given file, a declared source (a verified download, a file in a package, a loader), and safe
loading with the declared key map."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Mapping

from .errors import CheckError, ZooError
from .files import sha256_file

if TYPE_CHECKING:
    import torch

    from .specs import ModelSpec, WeightsSpec

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, not for the whole file
_CHUNK = 1 << 20
_USER_AGENT = "zoo (model-zoo adapter)"


@dataclass(frozen=True)
class WeightsRef:
    """Resolved weights: a file on disk with its digest, or seeded random initialisation."""

    kind: str  # "file" or "random"
    path: Path | None
    sha256: str | None  # full hex digest of the file
    source: str  # "path", "cache", "download", "package", "loader", "random"
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
    model's declared weights (:class:`~zoo_core.specs.WeightsSpec`): a URL's file in torch hub's cache, downloaded
    and verified if absent (``offline``, default env ``ZOO_OFFLINE``, forbids the download); the file inside an
    installed package; or the path a loader returns. A declared sha256 is checked every time.
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
    if spec.kind == "package":
        return _package_file(model, spec)
    if spec.kind == "loader":
        return _loader_file(model, spec)
    cached = hub_checkpoints_dir() / spec.file_name
    if cached.is_file():
        digest = sha256_file(cached)
        mismatch = _mismatch(digest, spec)
        if mismatch:
            raise CheckError(
                f"cached weights {cached} have {mismatch}",
                note=f"the file is corrupt or not the published one: delete {cached} to re-download it",
            )
        return WeightsRef(kind="file", path=cached, sha256=digest, source="cache")

    if offline is None:
        offline = os.environ.get("ZOO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    if offline:
        raise _download_error(model, "offline")
    digest = _download(model, cached, progress=progress)
    return WeightsRef(kind="file", path=cached, sha256=digest, source="download")


def weights_present(spec: WeightsSpec) -> bool | None:
    """Whether declared weights are on this machine, for listings: a URL's file in torch hub's cache, a package's
    file; ``None`` for a loader (known only once it runs). Imports no package of the declaration (a dotted
    package's parents excepted), hashes nothing."""
    from importlib.util import find_spec

    if spec.kind == "url":
        return (hub_checkpoints_dir() / spec.file_name).is_file()
    if spec.kind == "loader":
        return None
    assert spec.package is not None and spec.resource is not None
    try:
        found = find_spec(spec.package)
    except (ImportError, ValueError):
        return False
    locations = (found.submodule_search_locations or []) if found is not None else []
    return any((Path(location) / spec.resource).is_file() for location in locations)


def load_state_dict(path: Path, key_map: Mapping[str, str] | str | None = None) -> dict[str, "torch.Tensor"]:
    """Load a checkpoint file as a state dict, by these rules, in this order:

    1. ``torch.load(path, map_location="cpu", weights_only=True)``: only tensors and plain containers load; a
       pickle that asks for anything else (code, a whole ``nn.Module``) is refused, as is a file torch cannot
       read (empty, truncated, not a checkpoint): one line each.
    2. Unwrapping, one level: when the loaded object is a dict whose ``"state_dict"`` entry is a dict, that entry
       is the state dict; else when its ``"model"`` entry is a dict, that one (``"state_dict"`` wins when both
       are there; other entries such as ``"epoch"`` or ``"optimizer"`` are dropped). A wrapper inside a wrapper
       is not unwrapped.
    3. The result must be a dict of string keys to tensors; any other entry is refused by its name.
    4. Each key loses one leading ``"module."`` (what ``DataParallel`` and ``DistributedDataParallel`` add);
       ``"module.module.x"`` becomes ``"module.x"``.
    5. ``key_map`` (the model's :attr:`WeightsSpec.key_map`), when given, renames the keys: a prefix table
       ``{"old.": "new."}`` replaces the longest matching prefix of each key and leaves keys that match none as
       they are (``{"": "model."}`` prefixes every key); ``"package.module:function"`` is called with the state
       dict and returns the renamed one. Two keys renamed to one name are refused.

    The caller then loads the result strictly (:func:`zoo_core.export.build_module`): every key of the model
    present, none left over, every shape equal, or one line naming a few missing and unexpected keys.
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
    return state if key_map is None else map_keys(state, key_map, path)


def map_keys(state: dict[str, "torch.Tensor"], key_map: Mapping[str, str] | str,
             path: Path) -> dict[str, "torch.Tensor"]:
    """``state`` renamed by a key map (rule 5 of :func:`load_state_dict`)."""
    import torch

    if isinstance(key_map, str):
        mapped = import_callable(key_map, "key_map")(dict(state))
        if not isinstance(mapped, Mapping) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapped.items()):
            raise TypeError(f"key_map {key_map!r} returned a {type(mapped).__name__}, not a state dict of tensors "
                            "(a bug in the plugin)")
        return dict(mapped)
    prefixes = sorted(key_map, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for name, value in state.items():
        old = next((p for p in prefixes if name.startswith(p)), None)
        new = name if old is None else key_map[old] + name[len(old):]
        if new in out:
            raise ZooError(f"the key map renames both {origin[new]!r} and {name!r} of {path} to {new!r}",
                           note="fix key_map in the model's WeightsSpec: two tensors cannot share a name")
        out[new], origin[new] = value, name
    return out


def import_callable(path: str, what: str) -> Any:
    """The function named by ``"package.module:function"`` (a declaration's ``what``), or one line saying why not."""
    import importlib

    module_name, _, attr = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ZooError(f"cannot import the weights {what} {path!r}: {exc}",
                       note="reinstall the plugin that declares it") from None
    if not callable(function):
        raise ZooError(f"the weights {what} {path!r} is a {type(function).__name__}, not a function",
                       note="fix the plugin's WeightsSpec")
    return function


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


def _package_file(model: ModelSpec, spec: WeightsSpec) -> WeightsRef:
    """The declared file inside an installed package, found through importlib.resources and verified."""
    from importlib import resources

    assert spec.package is not None and spec.resource is not None
    where = f"{spec.resource} in package {spec.package}"
    note = (f"reinstall the plugin {model.plugin!r} that declares {model.name!r} (its weights ship inside it), "
            "or pass --weights PATH or --weights random")
    try:
        root = resources.files(spec.package)
    except (ImportError, TypeError) as exc:  # TypeError: a module, not a package
        raise ZooError(f"cannot find the weights of {model.name}: {where}: {exc}", note=note) from None
    file = root.joinpath(*spec.resource.split("/"))
    if not isinstance(root, Path) or not isinstance(file, Path):
        raise ZooError(f"cannot read the weights of {model.name}: package {spec.package} is not installed as "
                       "plain files (zipped, or a namespace package)", note=note)
    if not file.is_file():
        raise ZooError(f"cannot find the weights of {model.name}: no file {where} ({file})", note=note)
    path = file.resolve()
    if not path.is_relative_to(root.resolve()):  # a link out of the package
        raise ZooError(f"the weights of {model.name}, {where}, lead outside the package to {path}",
                       note="only files inside the package are read; fix the plugin's WeightsSpec")
    return _verified(model, spec, path, "package", where)


def _loader_file(model: ModelSpec, spec: WeightsSpec) -> WeightsRef:
    """The file that the declared loader returns, verified when a digest is declared."""
    assert spec.loader is not None
    result = import_callable(spec.loader, "loader")(model)
    if not isinstance(result, (str, os.PathLike)):
        raise TypeError(f"the weights loader {spec.loader!r} of {model.name!r} returned a {type(result).__name__}, "
                        "not a path (a bug in the plugin: a loader torch.save-s a state dict and returns its file)")
    path = Path(result).expanduser()
    if not path.is_file():
        raise ZooError(f"the weights loader {spec.loader!r} of {model.name} returned {path}, which is not a file",
                       note=f"report it to the authors of the plugin {model.plugin!r}; meanwhile pass --weights PATH "
                       "or --weights random")
    return _verified(model, spec, path.resolve(), "loader", f"the file {path} from {spec.loader}")


def _verified(model: ModelSpec, spec: WeightsSpec, path: Path, source: str, what: str) -> WeightsRef:
    digest = sha256_file(path)
    mismatch = _mismatch(digest, spec)
    if mismatch:
        raise CheckError(f"the weights of {model.name}, {what}, have {mismatch}",
                         note=f"the file is not the one the plugin {model.plugin!r} declares: reinstall the plugin, "
                         "or pass --weights PATH")
    return WeightsRef(kind="file", path=path, sha256=digest, source=source)


def _mismatch(digest: str, spec: WeightsSpec) -> str:
    """``""`` when ``digest`` is the declared one (or none is declared), else how they differ, for a message."""
    expected = spec.expected_sha256
    if digest.lower().startswith(expected):
        return ""
    if spec.sha256_prefix:
        return f"sha256 {digest[: len(expected)]}…, expected prefix {spec.sha256_prefix}"
    return f"sha256 {digest[:16]}…, expected {expected[:16]}…"


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
    assert spec is not None and spec.url is not None  # resolve_weights downloads a url's file only
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
        mismatch = _mismatch(digest, spec)
        if mismatch:
            raise CheckError(
                f"downloaded file for {model.name} has {mismatch}",
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
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from .console import make_console

        self._progress = Progress(
            TextColumn("downloading {task.description}", markup=False),  # a file name, shown as written
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=make_console(stderr=True),
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
