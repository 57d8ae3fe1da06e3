"""A lean cache: identical content stored once (tensors as files named by content, hard-linked to one blob),
every artifact still whole and verified; `zoo cache ls` says what each entry is; a core that imports without
fcntl and finds the platform's cache folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo_core.artifacts import verify
from zoo_core.cache_layout import BLOBS, disk_bytes

FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")


def run_tiny(zoo_cli, cache: Path, out: Path, *batches: str):
    result = zoo_cli("run", "resnest-tiny", "--bs", ",".join(batches), *FAST, "--json", "--out", str(out),
                     env={"ZOO_CACHE_DIR": str(cache)})
    assert result.code == 0, result
    return result


def artifact_folders(cache: Path) -> list[Path]:
    return [p.parent for stage in ("export", "simplify", "compile") for p in (cache / stage).glob("*/manifest.json")]


def tensors(cache: Path) -> list[Path]:
    return sorted(p for folder in artifact_folders(cache) for p in folder.glob("*.tensor"))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))  # in place: every link of this file sees it


def test_the_weights_are_stored_once_for_export_simplify_and_compile(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_tiny(zoo_cli, cache, tmp_path / "out", "1", "2", "4")
    rows = zoo_cli("cache", "ls", "--json", env={"ZOO_CACHE_DIR": str(cache)}).json()
    assert sorted(r["stage"] for r in rows) == ["compile"] * 3 + ["export"] + ["simplify"] * 3
    listed = sum(r["bytes"] for r in rows)
    assert disk_bytes(cache) < listed / 4, (disk_bytes(cache), listed)  # 7 copies of the weights: about 1 on disk

    shared = tensors(cache)
    assert len(shared) >= 7 * 10  # each artifact keeps its weights as tensor files
    blobs = {p.name: p for p in (cache / BLOBS).iterdir()}
    for path in shared:
        blob = blobs[path.stem]  # stored once: the artifact's file is the blob named by its sha256
        assert os.path.samefile(path, blob), path
    assert all(verify(f.parent.name, f.name, f)[0] is not None for f in artifact_folders(cache))

    again = run_tiny(zoo_cli, cache, tmp_path / "again", "1", "2", "4")  # read back from the shared files
    assert "Warning" not in again.stderr and again.stderr.count("cached") >= 7, again
    assert [r["batch_size"] for r in again.json()["results"]] == [1, 2, 4]
    assert first.json()["weights"] == again.json()["weights"]


def test_a_tensor_damaged_through_one_artifact_is_rebuilt_and_never_linked_again(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_tiny(zoo_cli, cache, tmp_path / "out", "2")
    compiled = next((cache / "compile").glob("*/manifest.json")).parent
    victim = max(compiled.glob("*.tensor"), key=lambda p: p.stat().st_size)
    flip_a_byte(victim)  # the blob and every artifact linking it now hold a wrong byte

    result = run_tiny(zoo_cli, cache, tmp_path / "again", "2")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings and all(victim.name in line and "sha256" in line for line in warnings), result
    assert all(verify(f.parent.name, f.name, f)[0] is not None for f in artifact_folders(cache))
    blob = cache / BLOBS / victim.stem
    from zoo_core.cache_layout import file_sha256

    assert file_sha256(blob) == victim.stem  # the damaged blob was replaced, not linked into the rebuilt ones
    clean = run_tiny(zoo_cli, cache, tmp_path / "third", "2")
    assert "Warning" not in clean.stderr, clean


def test_clean_removes_blobs_no_artifact_links_and_nothing_else(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_tiny(zoo_cli, cache, tmp_path / "out", "2")
    theirs = {cache / BLOBS / "notes.txt": b"mine", cache / BLOBS / ("0" * 64): b"not what its name says"}
    for path, data in theirs.items():
        path.write_bytes(data)
    on_disk = disk_bytes(cache)

    cleaned = zoo_cli("cache", "clean", "--yes", "--json", env={"ZOO_CACHE_DIR": str(cache)}).json()
    assert cleaned["removed"] == 3 and cleaned["bytes"] >= on_disk * 0.9, (cleaned, on_disk)
    assert sorted(p.name for p in (cache / BLOBS).iterdir()) == sorted(p.name for p in theirs)
    assert all(path.read_bytes() == data for path, data in theirs.items())


def test_cache_ls_names_model_backend_batch_size_and_stage(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_tiny(zoo_cli, cache, tmp_path / "out", "2", "4")
    env = {"ZOO_CACHE_DIR": str(cache)}
    rows = zoo_cli("cache", "ls", "--json", env=env).json()
    described = sorted(((r["model"], r["backend"], r["batch_size"], r["stage"]) for r in rows), key=str)
    assert described == sorted([("resnest-tiny", None, None, "export"),
                                ("resnest-tiny", None, 2, "simplify"), ("resnest-tiny", None, 4, "simplify"),
                                ("resnest-tiny", "onnxruntime", 2, "compile"),
                                ("resnest-tiny", "onnxruntime", 4, "compile")], key=str)
    assert all(r["bytes"] > 0 for r in rows)
    listing = zoo_cli("cache", "ls", env=env)
    assert listing.code == 0, listing
    lines = [line.split() for line in listing.stdout.splitlines()]
    assert lines[0][:5] == ["model", "backend", "batch", "stage", "size"]
    assert ["resnest-tiny", "onnxruntime", "4", "compile"] in [line[:4] for line in lines]
    assert "on disk" in listing.stdout


def test_zoo_export_writes_one_self_contained_file(zoo_cli, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    target = tmp_path / "given" / "m.onnx"
    result = zoo_cli("export", "resnest-tiny", "--bs", "2", "-o", str(target), "--weights", "random",
                     env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    assert result.code == 0, result
    assert [p.name for p in target.parent.iterdir()] == ["m.onnx"]
    proto = onnx.load(str(target), load_external_data=False)
    assert not [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    [given] = session.get_inputs()
    [out] = session.run(None, {given.name: np.zeros(given.shape, np.float32)})  # batch fixed at 2
    assert out.shape[0] == 2


def test_the_core_imports_without_fcntl(tmp_path: Path) -> None:
    """Windows has no fcntl: the cache's modules and the CLI import, and the cache folder is the platform's."""
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import zoo_core.artifacts, zoo_core.cache_layout, zoo_core.cli, zoo_core.runner\n"
            "print(zoo_core.artifacts.cache_root())")
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_CACHE_DIR", "XDG_CACHE_HOME")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / ".cache" / "zoo")


def test_the_cache_folder_follows_the_platform(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_CACHE_DIR", "XDG_CACHE_HOME")}
    macos = "import sys; sys.platform = 'darwin'\nfrom zoo_core.artifacts import cache_root; print(cache_root())"
    result = subprocess.run([sys.executable, "-c", macos], capture_output=True, text=True,
                            env={**env, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "Library" / "Caches" / "zoo")
    linux = "from zoo_core.artifacts import cache_root; print(cache_root())"
    for extra, expected in (({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "zoo"),
                            ({"ZOO_CACHE_DIR": str(tmp_path / "mine")}, tmp_path / "mine")):
        result = subprocess.run([sys.executable, "-c", linux], capture_output=True, text=True,
                                env={**env, "HOME": str(tmp_path), **extra})
        assert result.stdout.strip() == str(expected), result.stderr


def test_a_failed_write_of_the_verified_stats_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    """`.verified.json` is rewritten while an artifact is used; a full disk then (the error is ignored: the cache
    is still used) must not leave its temporary file in the cache. Found by the in-process test runner, whose
    faster first run left the stats too fresh to trust, so the second run rewrote them under a file-size limit."""
    import errno

    from zoo_core import artifacts

    def full(fd: int) -> None:
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(artifacts.os, "fsync", full)
    with pytest.raises(OSError, match="File too large"):
        artifacts._write_json_atomic(tmp_path / artifacts.VERIFIED, {"model.onnx": [1, 2, 3, 4]})
    assert list(tmp_path.iterdir()) == []
