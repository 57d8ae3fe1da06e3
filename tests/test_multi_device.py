"""The local engine's accuracy run on several devices (``--device 0,1``): one process per device, the shards dealt
out among them and merged in dataset order, against the strict Ascend fakes with two devices."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_runner import Result
from test_bad_inputs import one_error
from zoo_core.progress import Progress
from zoo_core.reporting import validation_errors
from zoo_core.testing import write_image_dataset

IMAGES = 12  # at --bs 2 and --shard-images 2: six shards, three for each device


def run_args(data: Path, out: Path, devices: str, *extra: str, model: str = "resnest-tiny") -> list[str]:
    """``--shard-images 2`` unless ``extra`` says otherwise (a later option wins)."""
    return ["run", model, "--backend", "ascend", "--bs", "2", "--weights", "random", "--warmup", "0",
            "--iterations", "1", "--device", devices, "--data", str(data), "--shard-images", "2", "--json",
            "--out", str(out), *extra]


def saved_shards(cache: Path) -> dict[str, dict[str, int]]:
    """Each saved shard of the cache's evaluations: the device and the process that saved it, as it recorded."""
    found = {}
    for path in sorted(cache.glob("evaluations/*/shard-*.npz")):
        try:
            with np.load(path) as data:
                found[path.name] = {"device": int(data["device"]), "pid": int(data["pid"]), "images": len(data["kept"])}
        except (OSError, ValueError, KeyError, EOFError):  # being written, or written by a single-device run
            continue
    return found


def resumed(result) -> int:
    return result.json()["accuracy"]["resumed_images"]


@pytest.fixture
def two_devices(ascend_env: dict[str, str]) -> dict[str, str]:
    return {**ascend_env, "FAKE_NPU_COUNT": "2"}


def test_two_devices_give_the_accuracy_and_predictions_of_one(zoo_cli, two_devices, tmp_path: Path) -> None:
    write_image_dataset(tmp_path / "val", IMAGES)
    cache = tmp_path / "cache"
    env = {**two_devices, "ZOO_CACHE_DIR": str(cache)}
    one = zoo_cli(*run_args(tmp_path / "val", tmp_path / "one", "0"), env=env)
    assert one.code == 0, one
    # The compiled model stays cached; the saved shards go, so that the second run evaluates every image again.
    (cache / "evaluations").rename(tmp_path / "evaluations-one")
    two = zoo_cli(*run_args(tmp_path / "val", tmp_path / "two", "0,1"), env=env)
    assert two.code == 0, two
    assert resumed(two) == 0 and "cached" in two.stderr
    a, b = one.json()["accuracy"], two.json()["accuracy"]
    assert (b["top1"], b["top5"], b["images"]) == (a["top1"], a["top5"], a["images"]) and b["images"] == IMAGES
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()
    written = json.loads((tmp_path / "two" / "results.json").read_text())
    assert validation_errors(written) == []
    # Both devices evaluated, each in a process of its own (not this one, where the CLI ran): as the shards that
    # the run saved record it, and as its results say.
    shards = saved_shards(cache)
    assert len(shards) == IMAGES // 2
    assert {s["device"] for s in shards.values()} == {0, 1}
    by_device = {d: {s["pid"] for s in shards.values() if s["device"] == d} for d in (0, 1)}
    assert len(by_device[0]) == len(by_device[1]) == 1 and by_device[0] != by_device[1]
    assert os.getpid() not in by_device[0] | by_device[1]
    assert written["accuracy"]["devices"] == [
        {"device": d, "shards": sum(s["device"] == d for s in shards.values()),
         "images": sum(s["images"] for s in shards.values() if s["device"] == d)} for d in (0, 1)]
    assert a["devices"] == [{"device": 0, "shards": IMAGES // 2, "images": IMAGES}]


def test_an_image_that_fails_on_the_second_device_is_one_line_naming_it(zoo_cli, two_devices, tmp_path) -> None:
    write_image_dataset(tmp_path / "val", IMAGES)
    # The third image is in the second shard, which is the second device's (the first image stays readable, so the
    # early check before the export passes).
    (tmp_path / "val" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"not an image")
    result = zoo_cli(*run_args(tmp_path / "val", tmp_path / "out", "0,1"),
                     env={**two_devices, "ZOO_CACHE_DIR": str(tmp_path / "cache")})
    error, note = one_error(result, 3)
    assert error.startswith("Error: device 1: cannot read image ") and "ILSVRC2012_val_00000003" in error, error
    assert "--skip-bad" in note


def test_a_device_the_host_does_not_have_is_one_line(zoo_cli, two_devices, tmp_path) -> None:
    write_image_dataset(tmp_path / "val", 4)
    result = zoo_cli(*run_args(tmp_path / "val", tmp_path / "out", "0,2"), env=two_devices)
    error, note = one_error(result, 3)
    assert "on NPU 2" in error and "lists 2 NPU(s), so --device takes 0..1" in note, (error, note)


def test_the_evaluation_opens_every_device_in_its_own_process(two_devices, tmp_path, monkeypatch) -> None:
    """The evaluation itself (no timing before it) on a device the host does not have: the process of that device
    fails, named, and the other one is ended."""
    from zoo_core.app import Zoo
    from zoo_core.engines import LocalEngine
    from zoo_core.errors import ZooError
    from zoo_core.evaluate import evaluate
    from zoo_core.runner import prepare
    from zoo_core.specs import resolve_options

    monkeypatch.setenv("FAKE_NPU_COUNT", "2")  # for the processes this test starts
    write_image_dataset(tmp_path / "val", 8)
    zoo = Zoo.create(cache_dir=tmp_path / "cache")
    flags = {"weights": "random", "backend": "ascend", "batch_sizes": (2,), "data": str(tmp_path / "val"),
             "shard_images": 2, "devices": (0,)}
    options = resolve_options(zoo.registry.model("resnest-tiny"), flags)
    prepared = prepare(zoo, options)
    bad = options.with_(devices=(0, 2))
    with pytest.raises(ZooError) as caught:
        evaluate(zoo, prepared, bad, Progress(), LocalEngine(zoo, bad))
    assert caught.value.message.startswith("device 2: cannot open ") and "on NPU 2" in caught.value.message
    assert multiprocessing.active_children() == []  # device 0's process was ended, not left running
    # Device 0 may have saved shards before device 2's failure stopped it: put them aside, so that all 8 images
    # are evaluated again.
    (tmp_path / "cache" / "evaluations").rename(tmp_path / "evaluations-bad")
    good = options.with_(devices=(1, 0))
    progress = Counting()
    scored = evaluate(zoo, prepared, good, progress, LocalEngine(zoo, good))
    assert [d["device"] for d in scored["devices"]] == [0, 1] and scored["images"] == 8
    # The progress bar went by whole shards (2 images each) to all 8 images, the last label saying where.
    assert progress.loops == [("evaluate 8 images at batch 2 on devices 1,0", 8, 8)]


class Counting(Progress):
    """A progress reporter that counts each loop's steps: (label, total, advances)."""

    def __init__(self) -> None:
        self.loops: list[tuple[str, int | None, int]] = []

    @contextlib.contextmanager
    def loop(self, description: str, total: int | None, max_seconds: float | None = None):
        self.loops.append((description, total, 0))

        def advance() -> None:
            label, count, done = self.loops[-1]
            self.loops[-1] = (label, count, done + 1)

        yield advance


def test_the_shards_are_dealt_out_in_turn_and_the_workers_shared() -> None:
    from zoo_core.local_devices import deal, device_options
    from zoo_core.specs import RunOptions

    assert deal([0, 2, 3, 5, 6], (3, 1)) == {3: [0, 3, 6], 1: [2, 5]}  # the shards still to do, in turn
    assert deal([4], (0, 1)) == {0: [4], 1: []}
    assert device_options(RunOptions(model="m", devices=(0, 1), workers=5), 1).devices == (1,)
    assert [device_options(RunOptions(model="m", devices=(0, 1, 2), workers=w), 0).workers for w in (1, 3, 7)] \
        == [1, 1, 2]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the processes left behind")
def test_ctrl_c_stops_every_process_and_the_rerun_resumes_from_both_devices(tmp_path: Path) -> None:
    from fakes.env import fake_ascend_env

    count, per_shard = 48, 8  # six shards, three for each device; one decoding worker each (--workers 2)
    write_image_dataset(tmp_path / "val", count)
    env = fake_ascend_env(os.environ, devices=2)
    extra = ("--shard-images", str(per_shard), "--workers", "2")
    reference = subprocess.run([sys.executable, "-m", "zoo_core",
                                *run_args(tmp_path / "val", tmp_path / "ref", "0", *extra, model="tiny-slow")],
                               env={**env, "ZOO_CACHE_DIR": str(tmp_path / "cache-ref"), "ZOO_SLOW_SECONDS": "0"},
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "zoo_core", *run_args(tmp_path / "val", tmp_path / "out", "0,1", *extra,
                                                            model="tiny-slow")]
    # An image takes 0.15 s to decode, a shard 1.2 s on each device.
    slow = {**env, "ZOO_CACHE_DIR": str(cache), "ZOO_SLOW_SECONDS": "0.15"}
    # A session of its own, so that Ctrl-C can go to the whole process group as a terminal sends it.
    proc = subprocess.Popen(command, env=slow, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while devices_of(at_interrupt := saved_shards(cache)) != {0, 1}:  # both saved one
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-2].startswith("Error: interrupted: "), err
    # Every process of the run has ended at once: the device processes and their decoding workers (all of them
    # carry the run's cache folder in their environment), none going on to save the shard it was on.
    assert processes_of(cache) == []
    saved = saved_shards(cache)
    assert saved == at_interrupt and len(saved) < count // per_shard
    rerun = subprocess.run(command, env={**slow, "ZOO_SLOW_SECONDS": "0"}, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    accuracy, expected = json.loads(rerun.stdout)["accuracy"], json.loads(reference.stdout)["accuracy"]
    assert accuracy["resumed_images"] == sum(s["images"] for s in saved.values())
    assert (accuracy["top1"], accuracy["top5"], accuracy["images"]) == \
        (expected["top1"], expected["top5"], expected["images"])
    assert (tmp_path / "out" / "predictions.csv").read_text() == (tmp_path / "ref" / "predictions.csv").read_text()
    assert sum(d["shards"] for d in accuracy["devices"]) == count // per_shard - len(saved)


def devices_of(shards: dict[str, dict[str, int]]) -> set[int]:
    return {s["device"] for s in shards.values()}


def processes_of(cache: Path) -> list[str]:
    """The processes still alive that carry ``cache`` in their environment: every process of a run using it."""
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"ZOO_CACHE_DIR={cache}\0".encode() in (entry / "environ").read_bytes():
                left.append(entry.name)
        except OSError:
            continue
    return left


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the processes left behind")
def test_a_device_process_killed_midway_is_one_line_naming_the_device(tmp_path: Path) -> None:
    from fakes.env import fake_ascend_env

    write_image_dataset(tmp_path / "val", 16)
    cache = tmp_path / "cache"
    # An image takes 0.6 s: the killed process's decoding worker is still on its image when the run (which looks
    # at its device processes every 0.1 s) ends it, rather than failing to hand the image to a dead process.
    env = {**fake_ascend_env(os.environ, devices=2), "ZOO_CACHE_DIR": str(cache), "ZOO_SLOW_SECONDS": "0.6"}
    proc = subprocess.Popen([sys.executable, "-m", "zoo_core",
                             *run_args(tmp_path / "val", tmp_path / "out", "0,1", model="tiny-slow")],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (victims := {s["pid"] for s in saved_shards(cache).values() if s["device"] == 1}):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.kill(victims.pop(), signal.SIGKILL)  # the process of device 1, as an out-of-memory kill would
    out, err = proc.communicate(timeout=120)
    error, note = one_error(Result(proc.returncode, out, err), 3)
    assert error.startswith("Error: device 1: its evaluation process was killed by SIGKILL before its shards were "
                            "done ("), error
    assert "run the same command again to resume" in note
    assert processes_of(cache) == []  # device 0's process and every decoding worker ended too
