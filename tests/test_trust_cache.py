"""A cache that is never trusted blindly: every file is checked against its manifest's sha256 before it is used
(a damaged one is rebuilt with one warning), keys follow edits of plugin code, a build that wrote nothing is
never recorded, and `zoo cache clean` removes only what zoo made and nothing a running zoo uses."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_bad_inputs import one_error
from zoo_core import artifacts
from zoo_core.artifacts import ArtifactStore, verify
from zoo_core.cache_layout import clean

FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")


def only(cache: Path, stage: str) -> Path:
    """The one artifact folder of ``stage`` in ``cache``."""
    [folder] = [p for p in (cache / stage).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


def flip_a_byte(path: Path, offset: int | None = None) -> None:
    """A same-size edit that keeps the file's modification time, as a careless copy or a bit flip would."""
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning:")]


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -------------------------------------------------------------------------
# Verified before use
# -------------------------------------------------------------------------


def test_a_same_size_edit_of_a_cached_onnx_is_rebuilt_with_one_warning(zoo_cli, tmp_path: Path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    export = ("export", "resnest-tiny", "-o", str(tmp_path / "m.onnx"), "--weights", "random")
    assert zoo_cli(*export, env=env).code == 0
    reference = (tmp_path / "m.onnx").read_bytes()
    time.sleep(2.1)  # older than the racy window: this use records the file's stat as verified
    first = zoo_cli(*export, env=env)
    assert first.code == 0 and not warnings_of(first.stderr), first
    folder = only(tmp_path / "cache", "export")
    assert json.loads((folder / artifacts.VERIFIED).read_text())  # the next use trusts the stat, not a hash

    flip_a_byte(folder / "model.onnx")
    result = zoo_cli(*export, env=env)
    assert result.code == 0, result
    [line] = warnings_of(result.stderr)
    assert "export" in line and folder.name in line and "model.onnx" in line and "sha256" in line, line
    assert "built" in result.stderr and (tmp_path / "m.onnx").read_bytes() == reference  # rebuilt, the right file
    again = zoo_cli(*export, env=env)
    assert again.code == 0 and not warnings_of(again.stderr) and "cached" in again.stderr, again


def test_a_same_size_edit_of_compiled_json_never_times_another_batch(zoo_cli, tmp_path: Path) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    run = ("run", "resnest-tiny", "--bs", "2", *FAST, "--json", "--out", str(tmp_path / "out"))
    assert zoo_cli(*run, env=env).code == 0
    compiled = only(tmp_path / "cache", "compile") / "compiled.json"
    text = compiled.read_text()
    assert '"batch_size": 2' in text
    compiled.write_text(text.replace('"batch_size": 2', '"batch_size": 9'))  # same size, a batch-9 model

    result = zoo_cli(*run, env=env)
    assert result.code == 0, result
    [line] = warnings_of(result.stderr)
    assert "compile" in line and "compiled.json" in line, line
    assert [row["batch_size"] for row in result.json()["results"]] == [2]
    assert json.loads(compiled.read_text())["batch_size"] == 2  # rebuilt


@pytest.mark.parametrize("damage", ["garbage", "truncated", "manifest", "missing"])
def test_a_damaged_artifact_is_rebuilt_never_a_traceback(zoo_cli, tmp_path: Path, damage: str) -> None:
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    run = ("run", "resnest-tiny", "--bs", "2", *FAST, "--json", "--out", str(tmp_path / "out"))
    assert zoo_cli(*run, env=env).code == 0
    folder = only(tmp_path / "cache", "compile")
    onnx = next(p for p in folder.iterdir() if p.suffix == ".onnx")
    if damage == "garbage":
        onnx.write_bytes(b"\x00not an onnx file" * 10)
    elif damage == "truncated":
        onnx.write_bytes(onnx.read_bytes()[:100])
    elif damage == "manifest":
        (folder / "manifest.json").write_text("{ half a manifest")
    else:
        onnx.unlink()
    result = zoo_cli(*run, env=env)
    assert result.code == 0 and "Traceback" not in result.stderr, result
    [line] = warnings_of(result.stderr)
    assert "compile" in line and folder.name in line, line
    assert (onnx.name in line) if damage != "manifest" else ("manifest.json" in line), line
    assert verify("compile", folder.name, folder)[0] is not None


def test_the_verified_stat_is_trusted_only_while_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing every use costs more than 2 % of a cached run, so a file's stat is recorded once its sha256
    matched; an edit that keeps size and mtime still changes the ctime, and is hashed and caught."""
    monkeypatch.setattr(artifacts, "_RACY_NS", 0)
    store = ArtifactStore(tmp_path / "cache")
    built = store.get_or_build("export", {"x": 1}, lambda f: (f / "model.onnx").write_bytes(b"A" * 1000))
    assert verify("export", built.key, built.path)[0] is not None
    record = json.loads((built.path / artifacts.VERIFIED).read_text())
    assert list(record) == ["model.onnx"]

    hashed: list[Path] = []
    real = artifacts.file_sha256
    monkeypatch.setattr(artifacts, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert verify("export", built.key, built.path)[0] is not None and hashed == []  # the record holds: no hash
    time.sleep(0.01)
    flip_a_byte(built.path / "model.onnx")
    found, problem = verify("export", built.key, built.path)
    assert found is None and "model.onnx" in problem and "sha256" in problem and hashed


# -------------------------------------------------------------------------
# A build that wrote nothing is never recorded
# -------------------------------------------------------------------------

HOLLOW_PLUGIN = '''
from pathlib import Path
from dataclasses import replace

from zoo_core import hookimpl
from zoo_core.runtime import CompiledModel, compiled_inputs
from zoo_core.specs import BackendSpec
from zoo_tiny import TINY_RESNEST

@hookimpl
def zoo_register_models(register):
    register(replace(TINY_RESNEST, name="hollow", family="hollowtest"))

@hookimpl
def zoo_register_backends(register):
    register(BackendSpec(name="hollow-backend", description="writes nothing", available=True, priority=-200))

@hookimpl
def zoo_export(model, weights, path, options):
    if model.family != "hollowtest":
        return None
    return path  # says it exported, wrote nothing

@hookimpl
def zoo_compile(backend, model, onnx_path, batch_size, workdir, options):
    if backend.name != "hollow-backend":
        return None
    return CompiledModel(backend=backend.name, model=model.name, batch_size=batch_size, path=workdir / "model.om",
                         inputs=compiled_inputs(model, backend.name, batch_size), output_names=model.output_names)
'''


@pytest.mark.parametrize("case", ["export", "compile"])
def test_a_hook_that_writes_nothing_records_no_artifact(zoo_cli, tmp_path: Path, case: str) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "zoo_hollow.py").write_text(HOLLOW_PLUGIN)
    cache = tmp_path / "cache"
    env = {"ZOO_CACHE_DIR": str(cache), "ZOO_PLUGINS": "zoo_tiny,zoo_hollow",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), os.environ["PYTHONPATH"]])}
    model, backend = ("hollow", "onnxruntime") if case == "export" else ("resnest-tiny", "hollow-backend")
    result = zoo_cli("run", model, "--backend", backend, "--bs", "2", *FAST, "--out", str(tmp_path / "out"), env=env)
    assert result.code == 1, result  # a plugin bug: its traceback, and a last line that names it
    assert f"zoo_{case} of" in result.stderr and "'zoo_hollow'" in result.stderr, result
    assert "did not write its file" in result.stderr.strip().splitlines()[-1], result
    assert not list(cache.glob(f"{case}/*/manifest.json")) and not list(cache.glob(f"{case}/.*.tmp-*"))


def test_a_build_that_writes_no_file_is_not_recorded(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(RuntimeError, match="wrote no file"):
        store.get_or_build("compile", {"x": 1}, lambda folder: None)
    assert not [p for p in (tmp_path / "cache" / "compile").iterdir() if not p.name.endswith(".lock")]


# -------------------------------------------------------------------------
# Keys follow plugin code; a resumed evaluation says so
# -------------------------------------------------------------------------

# Channel c < 3 of a solid-colour image scores class c: red, green and blue images are classes 0, 1 and 2.
COLOUR_PLUGIN = '''
from pathlib import Path

from zoo_core import hookimpl
from zoo_core.specs import ModelSpec

COLOURS = ModelSpec(name="colours", family="colourtest", factory="zoo_colour:build", input_shape=(3, 8, 8),
                    num_classes=10, description="scores each channel's mean")

def build():
    import torch

    class ChannelMeans(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pad(x.mean(dim=(2, 3)), (0, 7), value=-1.0)

    return ChannelMeans()

@hookimpl
def zoo_register_models(register):
    register(COLOURS)

@hookimpl
def zoo_export(model, weights, path, options):
    if model.family != "colourtest":
        return None
    from zoo_core.export import export_onnx

    export_onnx(model, weights, path, opset=options.opset)
    return path

@hookimpl
def zoo_preprocess(model, preset, image_path):
    if model.family != "colourtest":
        return None
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(image_path).convert("RGB").resize((8, 8)), dtype=np.float32) / 255
    return np.ascontiguousarray(image.transpose(2, 0, 1)[::+1])
'''


def write_colours(folder: Path) -> None:
    folder.mkdir()
    lines = []
    for i, (rgb, label) in enumerate([((255, 0, 0), 0), ((0, 255, 0), 1), ((0, 0, 255), 2)] * 2):
        name = f"img_{i:04d}.png"
        Image.fromarray(np.full((12, 16, 3), rgb, np.uint8)).save(folder / name)
        lines.append(f"{name} {label}")
    (folder / "val_label.txt").write_text("\n".join(lines) + "\n")


def test_editing_a_plugins_preprocessing_invalidates_its_saved_shards(zoo_cli, tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "zoo_colour.py"
    plugin.parent.mkdir()
    plugin.write_text(COLOUR_PLUGIN)
    write_colours(tmp_path / "val")
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache"), "ZOO_PLUGINS": "zoo_colour",
           "PYTHONPATH": os.pathsep.join([str(plugin.parent), os.environ["PYTHONPATH"]])}
    run = ("run", "colours", "--bs", "2", *FAST, "--data", str(tmp_path / "val"), "--shard-images", "2", "--json",
           "--out", str(tmp_path / "out"))

    first = zoo_cli(*run, env=env)
    assert first.code == 0, first
    assert first.json()["accuracy"]["top1"] == 1.0 and first.json()["accuracy"]["resumed_images"] == 0
    assert "from saved shards" not in first.stderr

    again = zoo_cli(*run, env=env)  # nothing changed: every shard is read back, and the console says so
    assert again.code == 0, again
    assert "resumed 6 of 6 images from saved shards" in again.stderr, again
    assert again.json()["accuracy"]["resumed_images"] == 6 and again.json()["accuracy"]["top1"] == 1.0

    edited = COLOUR_PLUGIN.replace("[::+1]", "[::-1]")  # BGR: the same size, another preprocessing
    assert len(edited) == len(COLOUR_PLUGIN) and edited != COLOUR_PLUGIN
    plugin.write_text(edited)
    changed = zoo_cli(*run, env=env)
    assert changed.code == 0, changed
    assert "from saved shards" not in changed.stderr, changed
    accuracy = changed.json()["accuracy"]
    assert accuracy["resumed_images"] == 0 and accuracy["top1"] == pytest.approx(1 / 3)  # only green stays


def test_a_damaged_saved_shard_is_evaluated_again(zoo_cli, tmp_path: Path) -> None:
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "val", count=8)
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    run = ("run", "resnest-tiny", "--bs", "2", *FAST, "--data", str(tmp_path / "val"), "--shard-images", "4",
           "--json", "--out", str(tmp_path / "out"))
    first = zoo_cli(*run, env=env)
    assert first.code == 0, first
    shard = sorted((tmp_path / "cache" / "evaluations").glob("*/shard-000001.npz"))[0]
    flip_a_byte(shard, offset=len(shard.read_bytes()) // 3)
    result = zoo_cli(*run, env=env)
    assert result.code == 0 and "Traceback" not in result.stderr, result
    [line] = warnings_of(result.stderr)
    assert "shard-000001.npz" in line, line
    assert "resumed 4 of 8 images" in result.stderr
    assert {k: result.json()["accuracy"][k] for k in ("top1", "top5", "images")} == \
        {k: first.json()["accuracy"][k] for k in ("top1", "top5", "images")}


# -------------------------------------------------------------------------
# zoo cache clean: only what zoo made, nothing in use
# -------------------------------------------------------------------------


def users_documents(folder: Path) -> None:
    """A user's folder, two levels deep, with names that look like zoo's layout."""
    for relative in ["taxes/2023/return.pdf", "photos/summer/a.jpg", "export/old/report.txt",
                     "compile/0123456789abcdef01234567/notes.txt", "evaluations/0123456789abcdef01234567/x.csv",
                     "evaluations/summer/shard-000000.npz", "simplify/.0123456789abcdef01234567.lock/keep.txt",
                     "notes.txt"]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(f"the user's {relative}")
    old = time.time() - 30 * 86400
    for path in folder.rglob("*"):
        os.utime(path, (old, old))


@pytest.mark.parametrize("how", [("--yes",), ("--older-than", "1d")])
def test_clean_with_a_mistyped_cache_dir_leaves_every_file(zoo_cli, tmp_path: Path, how: tuple[str, ...]) -> None:
    documents = tmp_path / "Documents"
    users_documents(documents)
    before = all_files(documents)
    env = {"ZOO_CACHE_DIR": str(documents)}
    result = zoo_cli("cache", "clean", *how, "--json", env=env)
    assert result.code == 0, result
    assert result.json()["removed"] == 0 and result.json()["foreign"] >= 6
    assert all_files(documents) == before
    assert zoo_cli("cache", "ls", "--json", env=env).json() == []
    listing = zoo_cli("cache", "ls", env=env)
    assert "not zoo's, left alone" in listing.stdout, listing


def test_clean_leaves_results_written_with_out_inside_the_cache(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"ZOO_CACHE_DIR": str(cache)}
    for out in (cache / "results" / "run1", cache / "compile" / "run2"):
        assert zoo_cli("run", "resnest-tiny", "--bs", "2", *FAST, "--out", str(out), env=env).code == 0
    results = {out: all_files(out) for out in (cache / "results" / "run1", cache / "compile" / "run2")}
    assert all("results.json" in files for files in results.values())

    cleaned = zoo_cli("cache", "clean", "--yes", "--json", env=env).json()
    assert cleaned["removed"] == 3 and cleaned["foreign"] == 2, cleaned  # export, simplify, compile
    assert {out: all_files(out) for out in results} == results
    assert zoo_cli("cache", "ls", "--json", env=env).json() == []


def test_a_build_in_progress_is_never_cleaned(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key = "0123456789abcdef01234567"
    partial = cache / "compile" / f".{key}.tmp-12345-abcd1234"
    partial.mkdir(parents=True)
    (partial / "model.om").write_text("half")
    lock = cache / "compile" / f".{key}.lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the builder's lock
        assert clean(cache)["in_use"] == 1
        assert partial.is_dir() and lock.exists()
    assert clean(cache)["removed"] == 1  # its builder is gone: a crash's leftover, and its free lock file
    assert not partial.exists() and not lock.exists()


def test_a_clean_in_a_loop_does_not_break_a_running_build(tmp_path: Path) -> None:
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "val", count=12)
    command = [sys.executable, "-m", "zoo_core", "run", "tiny-slow", "--bs", "2", *FAST, "--data",
               str(tmp_path / "val"), "--shard-images", "4", "--json"]
    reference = subprocess.run([*command, "--out", str(tmp_path / "ref")], capture_output=True, text=True,
                               env={**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "ref-cache")}, timeout=600)
    assert reference.returncode == 0, reference.stderr

    cache = tmp_path / "cache"  # cold: the run exports, simplifies, compiles and evaluates while cleans run
    proc = subprocess.Popen([*command, "--out", str(tmp_path / "out")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "ZOO_CACHE_DIR": str(cache)})
    kept_in_use = 0
    stop = threading.Event()

    def cleaning() -> None:
        nonlocal kept_in_use
        while not stop.is_set():
            kept_in_use += clean(cache)["in_use"]
            time.sleep(0.02)

    cleaner = threading.Thread(target=cleaning)
    cleaner.start()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop.set()
        cleaner.join()
    assert proc.returncode == 0, err
    assert kept_in_use > 0  # the cleans did meet the build
    accuracy = {k: json.loads(out)["accuracy"][k] for k in ("top1", "top5", "images")}
    assert accuracy == {k: json.loads(reference.stdout)["accuracy"][k] for k in ("top1", "top5", "images")}


@pytest.mark.parametrize("age", ["-1d", "", "d", "abc", "nand", "infd", "1e3d", "0s", "5"])
def test_a_bad_age_is_a_usage_error(zoo_cli, tmp_path: Path, age: str) -> None:
    error, _ = one_error(zoo_cli("cache", "clean", "--older-than", age, env={"ZOO_CACHE_DIR": str(tmp_path)}), 2)
    assert "is not an age" in error


def test_cleaning_everything_asks_first(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache)}
    assert zoo_cli("export", "resnest-tiny", "-o", str(tmp_path / "m.onnx"), "--weights", "random",
                   env=env).code == 0
    command = [sys.executable, "-m", "zoo_core", "cache", "clean"]
    no_terminal = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    from conftest import Result

    error, note = one_error(Result(no_terminal), 2)
    assert "confirmation" in error and "--yes" in note
    assert list(cache.glob("export/*/manifest.json"))  # nothing removed

    for answer, removed in ((b"n\n", False), (b"y\n", True)):
        main, terminal = os.openpty()
        proc = subprocess.Popen(command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        os.write(main, answer)
        out, err = proc.communicate(timeout=120)
        os.close(main)
        os.close(terminal)
        assert proc.returncode == 0 and b"Remove every artifact" in err, err
        assert bool(list(cache.glob("export/*/manifest.json"))) is not removed
