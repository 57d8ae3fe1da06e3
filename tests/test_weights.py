"""Weights: torch hub's folder, a verified download from a local server, the cache, and safe loading."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import torch

from zoo_core import weights as W  # noqa: N812 -- the module under test, short: most lines call it
from zoo_core.errors import EXIT_CHECK, EXIT_ENV, CheckError, ZooError
from zoo_core.specs import ModelSpec, WeightsSpec

FILE_NAME = "tiny-0000.pth"


# ---------------------------------------------------------------------------------------------------------
# fixtures: an isolated cache and a local HTTP server


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, XDG_CACHE_HOME and TORCH_HOME under tmp_path; returns the hub checkpoints folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.release = threading.Event()  # lets a stalled handler finish at teardown
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path.startswith("/stall/"):  # headers, then nothing: a socket timeout
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.flush()
                    server.release.wait(10)
                    return
                if self.path.startswith("/short/"):  # promises more bytes than it sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    try:
        yield srv
    finally:
        srv.close()


def _tiny_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "module.conv.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "module.fc.bias": torch.randn(10, generator=gen),
    }


def _write_checkpoint(path: Path, state: dict | None = None) -> str:
    torch.save(_tiny_state() if state is None else state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(url: str = "http://127.0.0.1:9/none.pth", prefix: str = "00000000", file_name: str = FILE_NAME) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        family="test",
        factory="x:y",
        weights=WeightsSpec(url=url, sha256_prefix=prefix, file_name=file_name),
    )


def _assert_both_ways_out(err: ZooError, hub: Path) -> None:
    assert err.exit_code == EXIT_ENV
    assert err.note is not None
    assert FILE_NAME in err.note and str(hub) in err.note
    assert "--weights PATH" in err.note
    assert "--weights random" in err.note


class _Hostile:
    """A pickle that, if ever unpickled unsafely, creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---------------------------------------------------------------------------------------------------------
# torch hub's folder, the reference, the import cost


def _torch_hub_checkpoints(monkeypatch: pytest.MonkeyPatch) -> Path:
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # as if set_dir() was never called
    return Path(torch.hub.get_dir()) / "checkpoints"


def test_hub_dir_follows_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert W.hub_checkpoints_dir() == _torch_hub_checkpoints(monkeypatch) == tmp_path / "th" / "hub" / "checkpoints"


def test_hub_dir_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg2"))
    assert W.hub_checkpoints_dir() == _torch_hub_checkpoints(monkeypatch)
    assert W.hub_checkpoints_dir() == tmp_path / "xdg2" / "torch" / "hub" / "checkpoints"


def test_hub_dir_defaults_to_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert W.hub_checkpoints_dir() == _torch_hub_checkpoints(monkeypatch)
    assert W.hub_checkpoints_dir() == tmp_path / "home" / ".cache" / "torch" / "hub" / "checkpoints"


def test_hub_dir_expands_user_in_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", "~/th")
    expected = tmp_path / "home" / "th" / "hub" / "checkpoints"
    assert W.hub_checkpoints_dir() == _torch_hub_checkpoints(monkeypatch) == expected


def test_import_is_cheap() -> None:
    code = (
        "import sys, zoo_core.weights\n"
        "heavy = [m for m in ('torch', 'numpy', 'rich', 'urllib.request') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one chunk
    path.write_bytes(data)
    assert W.sha256_file(path) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# resolve_weights: random and a given path


def test_random_weights() -> None:
    ref = W.resolve_weights(_model(), "random", seed=7)
    assert ref == W.WeightsRef(kind="random", path=None, sha256=None, source="random", seed=7)
    assert ref.label == "random"
    assert ref.key == "random:7"


def test_given_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.pth"
    digest = _write_checkpoint(path)
    ref = W.resolve_weights(_model(), str(path))
    assert (ref.kind, ref.source, ref.path, ref.sha256) == ("file", "path", path.resolve(), digest)
    assert ref.label == f"sha256:{digest[:16]}"
    assert ref.key == digest


def test_missing_path_is_refused(tmp_path: Path) -> None:  # acceptance (5)
    missing = tmp_path / "nope.pth"
    with pytest.raises(ZooError) as info:
        W.resolve_weights(_model(), str(missing))
    assert str(info.value) == f"weights file not found: {missing}"
    assert "\n" not in str(info.value)
    assert info.value.exit_code == EXIT_ENV
    assert info.value.note and "--weights" in info.value.note


def test_folder_as_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ZooError) as info:
        W.resolve_weights(_model(), str(tmp_path))
    assert info.value.exit_code == EXIT_ENV
    assert "not a file" in str(info.value)


def test_model_without_weights_spec() -> None:
    model = ModelSpec(name="bare", family="test", factory="x:y")
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None)
    assert "--weights PATH" in info.value.note
    assert "--weights random" in info.value.note


# ---------------------------------------------------------------------------------------------------------
# resolve_weights: download and cache


def test_download_then_cache(server: _Server, isolated_cache: Path) -> None:  # acceptance (1)
    digest = _write_checkpoint(server.root / "tiny.pth")
    model = _model(server.url("tiny.pth"), prefix=digest[:8])

    first = W.resolve_weights(model, None, progress=False)
    cached = isolated_cache / FILE_NAME
    assert (first.source, first.path, first.sha256) == ("download", cached, digest)
    assert cached.read_bytes() == (server.root / "tiny.pth").read_bytes()
    assert sorted(p.name for p in isolated_cache.iterdir()) == [FILE_NAME]  # no temp file left
    assert len(server.requests) == 1

    second = W.resolve_weights(model, None, progress=False)
    assert (second.source, second.path, second.sha256) == ("cache", cached, digest)
    assert len(server.requests) == 1  # the cache answered, not the server

    state = W.load_state_dict(second.path)
    assert list(state) == ["conv.weight", "fc.bias"]
    for key, value in _tiny_state().items():
        assert torch.equal(state[key.removeprefix("module.")], value)


def test_prefix_mismatch_keeps_nothing(server: _Server, isolated_cache: Path) -> None:  # acceptance (2)
    digest = _write_checkpoint(server.root / "tiny.pth")
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    model = _model(server.url("tiny.pth"), prefix=wrong)
    with pytest.raises(CheckError) as info:
        W.resolve_weights(model, None, progress=False)
    assert info.value.exit_code == EXIT_CHECK
    assert str(info.value) == f"downloaded file for tiny has sha256 {digest[:8]}…, expected prefix {wrong}"
    assert "different file" in info.value.note
    assert list(isolated_cache.iterdir()) == []  # neither the file nor a temp file


def test_progress_bar_on_a_terminal(server: _Server, isolated_cache: Path, monkeypatch, capsys) -> None:
    data = os.urandom(3 * (1 << 20))  # a few chunks
    (server.root / "big.pth").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    ref = W.resolve_weights(_model(server.url("big.pth"), prefix=digest[:8]), None, progress=True)
    assert (ref.source, ref.sha256) == ("download", digest)
    assert capsys.readouterr().out == ""  # stdout stays clean for --json


def test_prefix_is_case_insensitive(server: _Server, isolated_cache: Path) -> None:
    digest = _write_checkpoint(server.root / "tiny.pth")
    ref = W.resolve_weights(_model(server.url("tiny.pth"), prefix=digest[:8].upper()), None, progress=False)
    assert ref.sha256 == digest


def test_http_404(server: _Server, isolated_cache: Path) -> None:  # acceptance (3)
    model = _model(server.url("missing.pth"))
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None, progress=False)
    assert str(info.value) == f"cannot download weights for tiny from {model.weights.url}: HTTP 404 File not found"
    _assert_both_ways_out(info.value, isolated_cache)
    assert list(isolated_cache.iterdir()) == []


def test_server_down(isolated_cache: Path) -> None:  # acceptance (3)
    srv = _Server(isolated_cache.parent)  # bind a free port, then close it: nothing listens there
    url = srv.url("tiny.pth")
    srv.close()
    model = _model(url)
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None, progress=False)
    assert str(info.value).startswith(f"cannot download weights for tiny from {url}: ")
    assert "refused" in str(info.value).lower()
    _assert_both_ways_out(info.value, isolated_cache)
    assert list(isolated_cache.iterdir()) == []


def test_connection_closed_early(server: _Server, isolated_cache: Path) -> None:
    model = _model(server.url("short/tiny.pth"))
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None, progress=False)
    assert str(info.value).startswith(f"cannot download weights for tiny from {model.weights.url}: ")
    _assert_both_ways_out(info.value, isolated_cache)
    assert list(isolated_cache.iterdir()) == []


def test_socket_timeout(server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "DOWNLOAD_TIMEOUT_S", 0.3)
    model = _model(server.url("stall/tiny.pth"))
    start = time.monotonic()
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None, progress=False)
    assert time.monotonic() - start < 5
    assert str(info.value).endswith(": timed out")
    _assert_both_ways_out(info.value, isolated_cache)
    assert list(isolated_cache.iterdir()) == []


@pytest.mark.parametrize("how", ["argument", "env"])
def test_offline_makes_no_request(how: str, server: _Server, isolated_cache: Path, monkeypatch) -> None:
    digest = _write_checkpoint(server.root / "tiny.pth")
    model = _model(server.url("tiny.pth"), prefix=digest[:8])
    if how == "env":
        monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(ZooError) as info:
        W.resolve_weights(model, None, offline=True if how == "argument" else None, progress=False)
    assert str(info.value) == f"cannot download weights for tiny from {model.weights.url}: offline"
    _assert_both_ways_out(info.value, isolated_cache)
    assert server.requests == []


def test_offline_still_uses_the_cache(server: _Server, isolated_cache: Path) -> None:
    isolated_cache.mkdir(parents=True)
    digest = _write_checkpoint(isolated_cache / FILE_NAME)
    ref = W.resolve_weights(_model(server.url("tiny.pth"), prefix=digest[:8]), None, offline=True)
    assert (ref.source, ref.sha256) == ("cache", digest)
    assert server.requests == []


def test_interrupt_removes_temp_file(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Response:
        length = 3 * (1 << 20)
        calls = 0

        def read(self, n: int) -> bytes:
            Response.calls += 1
            if Response.calls > 1:
                raise KeyboardInterrupt
            return b"x" * n

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(KeyboardInterrupt):
        W.resolve_weights(_model("http://127.0.0.1:9/tiny.pth"), None, progress=False)
    assert Response.calls == 2  # the temp file had data when the interrupt came
    assert list(isolated_cache.iterdir()) == []


def test_corrupt_cached_file(server: _Server, isolated_cache: Path) -> None:  # acceptance (6)
    isolated_cache.mkdir(parents=True)
    good = _write_checkpoint(server.root / "tiny.pth")
    cached = isolated_cache / FILE_NAME
    cached.write_bytes((server.root / "tiny.pth").read_bytes()[:100])  # a torn earlier download
    actual = hashlib.sha256(cached.read_bytes()).hexdigest()
    model = _model(server.url("tiny.pth"), prefix=good[:8])
    with pytest.raises(CheckError) as info:
        W.resolve_weights(model, None, progress=False)
    assert str(cached) in str(info.value)
    assert good[:8] in str(info.value) and actual[:8] in str(info.value)
    assert "delete" in info.value.note and str(cached) in info.value.note
    assert server.requests == []  # it does not silently re-download over the user's file
    assert cached.exists()


# ---------------------------------------------------------------------------------------------------------
# load_state_dict


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_load_unwraps_and_strips_module(tmp_path: Path, wrapper: str | None) -> None:
    state = _tiny_state()
    path = tmp_path / "ckpt.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    loaded = W.load_state_dict(path)
    assert list(loaded) == ["conv.weight", "fc.bias"]
    assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in state.items())


def test_truncated_file_is_refused(tmp_path: Path) -> None:  # acceptance (4)
    good = tmp_path / "good.pth"
    _write_checkpoint(good)
    path = tmp_path / "truncated.pth"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    ref = W.resolve_weights(_model(), str(path))  # it exists, so resolving works; loading does not
    with pytest.raises(ZooError) as info:
        W.load_state_dict(ref.path)
    assert str(info.value).startswith(f"cannot load weights from {ref.path}: ")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == EXIT_ENV
    assert info.value.note


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n"])
def test_not_a_checkpoint_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(ZooError) as info:
        W.load_state_dict(path)
    assert str(info.value).startswith(f"cannot load weights from {path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_hostile_pickle_is_refused(tmp_path: Path, writer: str) -> None:  # acceptance (4)
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pth"
    payload = {"fc.weight": _Hostile(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)

    ref = W.resolve_weights(_model(), str(path))
    with pytest.raises(ZooError) as info:
        W.load_state_dict(ref.path)
    assert not marker.exists()
    message = str(info.value)
    assert message.startswith(f"cannot load weights from {ref.path}: ")
    assert "\n" not in message and "\x1b" not in message
    assert len(message) < 300
    assert "trust" in info.value.note

    # The payload is real: a plain unpickler runs it.
    raw = path.read_bytes()
    if writer == "torch.save":
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    pickle.loads(raw)["fc.weight"].close()
    assert marker.exists()


def test_non_tensor_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"fc.weight": torch.zeros(2), "note": "hello"}, path)
    with pytest.raises(ZooError) as info:
        W.load_state_dict(path)
    assert "'note'" in str(info.value)
