"""Crash safety and concurrency: killed runs re-run to the same results; two runs build each artifact once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

STAGES = ("export", "simplify", "compile")


def write_dataset(folder: Path, count: int = 16) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir()
    lines = []
    for i in range(1, count + 1):
        name = f"img_{i:04d}.JPEG"
        Image.fromarray((rng.random((72, 96, 3)) * 255).astype(np.uint8)).save(folder / name)
        lines.append(f"{name} {i % 10}")
    (folder / "val_label.txt").write_text("\n".join(lines) + "\n")


def args(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "zoo_core", "run", "tiny-slow", "--bs", "4", "--weights", "random", "--warmup", "1",
            "--iterations", "3", "--data", str(data), "--shard-images", "4", "--json", "--out", str(out)]


def start(cmd: list[str], cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache)}
    return subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def accuracy_of(out: Path) -> tuple[dict, str]:
    results = json.loads((out / "results.json").read_text())
    return {k: results["accuracy"][k] for k in ("top1", "top5", "images")}, (out / "predictions.csv").read_text()


def assert_cache_whole(cache: Path) -> None:
    """Every artifact folder has its manifest, and nothing half-written is left."""
    for stage in STAGES:
        for folder in (cache / stage).iterdir():
            if folder.is_dir():
                assert not folder.name.startswith("."), f"leftover temporary folder {folder}"
                assert (folder / "manifest.json").is_file(), f"{folder} has no manifest"
    assert not list(cache.glob("evaluations/*/.*.tmp"))


def kill_after_stages(proc: subprocess.Popen[str], stages: int, delay: float) -> str:
    """SIGKILL ``proc`` ``delay`` seconds after its ``stages``-th finished stage (a ``✓`` line on stderr), or after
    ``delay`` from its start for 0; the stderr read meanwhile."""
    assert proc.stderr is not None
    read = []
    finished = 0
    while finished < stages:
        line = proc.stderr.readline()
        if not line:  # it ended first
            break
        read.append(line)
        finished += line.startswith("✓")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return "".join(read)


def test_runs_killed_at_random_points_rerun_to_the_same_results(tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_dataset(data)
    began = time.monotonic()
    code, _, err = finish(start(args(data, tmp_path / "reference"), tmp_path / "reference-cache"))
    assert code == 0, err
    whole = time.monotonic() - began
    expected = accuracy_of(tmp_path / "reference")

    rng = random.Random(11)
    interrupted_after: list[str] = []
    for i in range(20):
        cache = tmp_path / f"cache-{i}"
        if i % 4 == 3:  # every fourth run starts from the previous cache: the kill lands in inference
            cache = tmp_path / f"cache-{i - 1}"
        out = tmp_path / f"out-{i}"
        proc = start(args(data, out), cache)
        # Spread over the run stage by stage: after the (i % 4)-th finished stage, at a random moment of the next.
        # Counted by the run's own progress lines, not by the clock: a busy machine slows the run, not the spread.
        seen = kill_after_stages(proc, i % 4, rng.random() * whole / 4)
        _, _, killed_err = finish(proc)
        done = [line for line in (seen + killed_err).splitlines() if line.startswith("✓")]
        interrupted_after.append(done[-1].split()[1] if done else "start")

        code, _, err = finish(start(args(data, out), cache))
        assert code == 0, f"re-run {i} failed: {err[-2000:]}"
        assert accuracy_of(out) == expected, f"re-run {i} differs"
        assert_cache_whole(cache)
    # The kills landed in different places of the pipeline, not all in one.
    assert len(set(interrupted_after)) >= 3, interrupted_after


def test_two_runs_at_once_build_each_artifact_once(tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_dataset(data, 8)
    cache = tmp_path / "cache"
    procs = [start(args(data, tmp_path / f"out-{n}"), cache) for n in range(2)]
    finished = [finish(p) for p in procs]
    for code, _, err in finished:
        assert code == 0, err
    seconds = [json.loads(out)["stage_seconds"] for _, out, _ in finished]
    # stage_seconds lists the hooks that ran in that process: one export and one compile between the two.
    assert sum(len(s.get("export", [])) for s in seconds) == 1
    assert sum(len(s.get("compile", [])) for s in seconds) == 1
    assert accuracy_of(tmp_path / "out-0") == accuracy_of(tmp_path / "out-1")
    assert_cache_whole(cache)


def test_ctrl_c_exits_130_and_keeps_what_was_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "val"
    write_dataset(data, 48)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_SLOW_SECONDS", "0.25")  # 48 images take 6 s on 2 workers: room to interrupt
    proc = start(args(data, tmp_path / "out"), cache)
    deadline = time.monotonic() + 120
    while not list(cache.glob("evaluations/*/shard-*.npz")):  # wait until a first shard of 4 images is saved
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130 and "Traceback" not in err, err
    assert "Error: interrupted:" in err and "shards are saved" in err, err
    assert_cache_whole(cache)
    monkeypatch.setenv("ZOO_SLOW_SECONDS", "0")
    code, _, err = finish(start(args(data, tmp_path / "out"), cache))
    assert code == 0, err
    assert "(built" not in err and err.count("(cached") == 3, err  # nothing finished was redone
    assert "shards resumed)" in err, err


_interrupt_on_fork = {"armed": False}


def _sigint_after_fork_in_parent() -> None:
    if _interrupt_on_fork["armed"]:
        _interrupt_on_fork["armed"] = False
        os.kill(os.getpid(), signal.SIGINT)  # runs among the fork's handlers, where Python drops exceptions


@pytest.mark.skipif(sys.platform != "linux", reason="the pool forks only on Linux")
def test_ctrl_c_while_the_preprocessing_pool_forks_is_not_lost() -> None:
    # The race CI once hit: Ctrl-C landed inside os.fork's handlers, Python printed and dropped the
    # KeyboardInterrupt, and the run finished with exit code 0.
    from zoo_core.evaluate import Preprocessor
    from zoo_core.runner import Zoo

    zoo = Zoo.create()
    model = zoo.registry.model("resnest-tiny")
    os.register_at_fork(after_in_parent=_sigint_after_fork_in_parent)
    _interrupt_on_fork["armed"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            with Preprocessor(model, "modelzoo", 1, zoo.pm):
                pass
    finally:
        _interrupt_on_fork["armed"] = False
