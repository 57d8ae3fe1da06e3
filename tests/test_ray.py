"""The Ray engine: placement, shipping the compiled artifact, errors, and a run that survives a killed actor.

The acceptance comparison on the self-consistent dataset (2 actors against one process) is in test_accuracy.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_reliability import accuracy_of, write_dataset
from zoo_core.errors import ZooError
from zoo_core.ray_engine import Placement, Shipped, _as_zoo_error, pack, placement, unpack
from zoo_core.runtime import CompiledModel, InputInfo, save_compiled
from zoo_core.specs import BackendSpec, RunOptions

pytestmark = pytest.mark.ray  # one Ray test at a time across workers (conftest.py)

FAKES = Path(__file__).resolve().parent / "fakes"
CPU = BackendSpec("onnxruntime", device="cpu")
NPU = BackendSpec("ascend", device="npu", ray_resource="NPU", device_env="ASCEND_RT_VISIBLE_DEVICES")


def options(**changes) -> RunOptions:
    return RunOptions(model="m", engine="ray", **{"workers": 2, **changes})


# -------------------------------------------------------------------------
# Placement: what each actor reserves, and a clear error when the cluster cannot hold the run
# -------------------------------------------------------------------------


def test_one_actor_per_npu_of_the_cluster_by_default() -> None:
    got = placement(NPU, options(), {"CPU": 8, "NPU": 4})
    assert got == Placement(4, "npu", 0.0, resources={"NPU": 1.0}, resource="NPU",
                            device_env="ASCEND_RT_VISIBLE_DEVICES")
    assert got.remote_args() == {"num_cpus": 0.0, "resources": {"NPU": 1.0}}


def test_actors_asked_for_within_the_npus() -> None:
    assert placement(NPU, options(actors=2, actor_cpus=1), {"CPU": 8, "NPU": 4}).actors == 2
    with pytest.raises(ZooError, match="--actors 5: the Ray cluster has 4 NPU"):
        placement(NPU, options(actors=5), {"CPU": 8, "NPU": 4})
    with pytest.raises(ZooError, match="has no NPU"):
        placement(NPU, options(), {"CPU": 8})


def test_gpu_backends_take_one_gpu_each() -> None:
    got = placement(BackendSpec("trt", device="cuda", ray_resource="GPU"), options(), {"CPU": 8, "GPU": 2})
    assert (got.actors, got.kind, got.remote_args()) == (2, "gpu", {"num_cpus": 0.0, "num_gpus": 1.0})


def test_cpu_actors_are_counted_with_the_decoding_workers() -> None:
    assert placement(CPU, options(), {"CPU": 3}) == Placement(1, "cpu", 1.0)
    assert placement(CPU, options(actors=2, actor_cpus=0.5), {"CPU": 3}).remote_args() == {"num_cpus": 0.5}
    with pytest.raises(ZooError, match=r"2 inference actor\(s\) of 1 CPU and 2 decoding worker\(s\) .* need 4 CPUs; "
                                       r"the Ray cluster has 3"):
        placement(CPU, options(actors=2), {"CPU": 3})


# -------------------------------------------------------------------------
# Shipping: the driver's compiled folder, rebuilt on a node from bytes
# -------------------------------------------------------------------------


def compiled_folder(tmp_path: Path) -> CompiledModel:
    folder = tmp_path / "cache" / "compile" / "0123abcd"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.om").write_bytes(b"\x00om" * 1000)
    (folder / "sub" / "aipp.cfg").write_text("aipp_op {}\n")
    compiled = CompiledModel("ascend", "m", 4, folder / "model.om", (InputInfo("x", (4, 3, 8, 8)),), ("y",), "npu",
                             {"soc": "Ascend310P3"})
    save_compiled(compiled, folder)
    return compiled


def test_a_shipped_artifact_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    compiled = compiled_folder(tmp_path)
    shipped = pack(compiled)
    assert shipped.key == "0123abcd" and set(shipped.files) == {"model.om", "sub/aipp.cfg", "compiled.json"}
    node = tmp_path / "node"
    got = unpack(shipped, node)
    assert got.path == node / "0123abcd" / "model.om"
    assert got.path.read_bytes() == compiled.path.read_bytes()
    assert (got.inputs, got.output_names, got.extra) == (compiled.inputs, compiled.output_names, compiled.extra)
    assert [p.name for p in node.iterdir()] == ["0123abcd"]  # no temporary folder left
    (got.path).write_bytes(b"kept")  # a second actor on the node reuses what the first wrote
    assert unpack(shipped, node).path.read_bytes() == b"kept"


def test_a_shipped_file_name_never_escapes_its_folder(tmp_path: Path) -> None:
    bad = Shipped("k", {"../../evil.sh": b"x", "compiled.json": b"{}"})
    with pytest.raises(ZooError, match="bad file name"):
        unpack(bad, tmp_path / "node")
    assert not (tmp_path / "evil.sh").exists()


def test_an_actor_error_reaches_the_user_as_its_own_line() -> None:
    class WrappedError(Exception):  # as Ray wraps a task's exception: the original in .cause
        def __init__(self, cause: BaseException) -> None:
            super().__init__("Traceback (most recent call last): ...")
            self.cause = cause

    error = _as_zoo_error(WrappedError(WrappedError(ZooError("cannot open m.om on NPU 0", note="check the device"))))
    assert (error.message, error.note) == ("cannot open m.om on NPU 0", "check the device")
    error = _as_zoo_error(WrappedError(RuntimeError("segfault")))
    assert error.message == "the Ray job failed: Traceback (most recent call last): ..."


# -------------------------------------------------------------------------
# The command line
# -------------------------------------------------------------------------


@pytest.mark.zoo_process("a fake on PYTHONPATH hides ray from a fresh interpreter; this one may have imported it")
def test_without_ray_installed_the_error_names_the_extra(zoo_cli) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(FAKES / "noray"), os.environ["PYTHONPATH"]])}
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--engine", "ray", env=env)
    assert result.code == 3, result
    assert "Error: --engine ray needs Ray Data, and 'ray' is not installed" in result.stderr
    assert "Note: install the extra: pip install 'zoo[ray]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "export" not in result.stderr  # nothing was built first


def test_doctor_says_whether_the_ray_engine_can_run(zoo_cli) -> None:
    from importlib.metadata import version

    engines = {e["name"]: e for e in zoo_cli("doctor", "--json").json()["engines"]}
    assert engines["local"]["available"]
    assert engines["ray"] == {"name": "ray", "available": True, "version": version("ray"), "reason": ""}
    text = zoo_cli("doctor").stdout
    assert f"available {version('ray')}" in text


@pytest.mark.parametrize("args, message", [
    (["--address", "10.0.0.1:6379"], "--address only apply to --engine ray"),
    (["--actors", "2"], "--actors only apply to --engine ray"),
    (["--engine", "ray", "--device", "0,1"],
     "--device picks devices of this host; with --engine ray, Ray assigns them"),
    (["--engine", "ray", "--actors", "0"], "--actors: 0 must be at least 1"),
    (["--engine", "ray", "--actor-cpus", "-1"], "--actor-cpus: -1 must be 0 or more"),
    (["--engine", "spark"], "--engine: unknown engine 'spark'"),
])
def test_engine_flags_that_do_not_fit_are_usage_errors(zoo_cli, args: list[str], message: str) -> None:
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", *args)
    assert result.code == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.zoo_process("starts a local Ray instance, which lives as long as its process")
def test_a_cluster_without_npus_is_a_clear_error_for_ascend(zoo_cli, ascend_env) -> None:
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--backend", "ascend", "--engine", "ray",
                     env=ascend_env)
    assert result.code == 3, result
    assert "Error: the Ray cluster has no NPU for the ascend backend" in result.stderr
    assert "compile" not in result.stderr  # checked before anything is built


@pytest.mark.slow
def test_a_failed_start_stops_the_local_instance_and_gives_stdout_back() -> None:
    import ray

    from zoo_core.ray_engine import RayEngine

    stdout = sys.stdout
    with pytest.raises(ZooError, match="has no NPU"):
        with RayEngine(options(workers=1), NPU):  # a local instance has no NPU: refused after it started
            pass
    assert sys.stdout is stdout and not ray.is_initialized()


# -------------------------------------------------------------------------
# A killed actor: restarted, its batches retried, the same results
# -------------------------------------------------------------------------


def run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zoo_core", "run", "tiny-slow", "--bs", "4", "--weights", "random", "--warmup", "1",
            "--iterations", "2", "--data", str(data), "--shard-images", "4", "--workers", "2", "--json",
            "--out", str(out), *extra]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the "(name)"


def inference_actors(ancestor: int | None = None) -> dict[int, str]:
    """pid -> process title of every live Ray inference actor on this machine (below ``ancestor``, if given:
    the run's own, never one of an instance another test left shutting down)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if not (title.startswith("ray::") and "RayInferenceActor" in title):
                continue
            pid = chain = int(entry.name)
            while ancestor is not None and chain not in (0, 1, ancestor):
                chain = _parent(chain)
            if ancestor is None or chain == ancestor:
                found[pid] = title
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the actor processes through /proc")
def test_a_killed_actor_is_restarted_and_the_run_gives_the_same_results(tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_dataset(data, 48)
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    local = subprocess.run(run_args(data, tmp_path / "local"), env=env, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr

    cache = tmp_path / "cache-ray"  # nothing shared with the single-process run
    env.update(ZOO_CACHE_DIR=str(cache), ZOO_SLOW_SECONDS="0.2")  # 48 images take 5 s on 2 decoders
    proc = subprocess.Popen(run_args(data, tmp_path / "ray", "--engine", "ray", "--actors", "2"), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while not list(cache.glob("evaluations/*/shard-*.npz")) or len(inference_actors(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        victim = min(inference_actors(proc.pid))  # an actor of this run's own local Ray instance
        os.kill(victim, signal.SIGKILL)
        saved_at_kill = len(list(cache.glob("evaluations/*/shard-*.npz")))
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("{"), (out[-3000:], err[-3000:])
    results = json.loads(out)
    assert results["accuracy"]["resumed_images"] == 0
    assert accuracy_of(tmp_path / "ray") == accuracy_of(tmp_path / "local")
    assert victim not in inference_actors()
    assert saved_at_kill < 12  # the kill landed mid-run: 48 images make 12 shards of 4
    engine = results["engine"]
    assert engine["actors"] == 2 and sum(w["images"] for w in engine["workers"]) == 48
    by_actor = {}
    for worker in engine["workers"]:
        by_actor.setdefault(worker["actor"], set()).add(worker["pid"])
    # A restarted actor keeps its id in a new process: counted when it went on to work after the restart.
    assert engine["restarts_seen"] == sum(len(pids) - 1 for pids in by_actor.values())


# -------------------------------------------------------------------------
# Joining a cluster (--address) whose nodes have NPUs: one actor per NPU, each on its own chip
# -------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.zoo_process("joins a Ray cluster: ray.init holds its process")
def test_ascend_on_a_joined_ray_cluster_uses_one_actor_per_npu(zoo_cli, ascend_env, tmp_path: Path) -> None:
    env = {**ascend_env, "FAKE_NPU_COUNT": "2"}  # npu-smi and ais_bench see two chips on this host
    data = tmp_path / "val"
    write_dataset(data, 24)
    common = ["run", "resnest-tiny", "--backend", "ascend", "--bs", "4", "--weights", "random", "--warmup", "1",
              "--iterations", "2", "--data", str(data), "--shard-images", "8", "--workers", "2", "--json"]
    # Without Ray, --device 0,1 times one process per chip and evaluates on the first.
    single = zoo_cli(*common, "--device", "0,1", "--out", str(tmp_path / "single"), env=env)
    assert single.code == 0, single
    assert [d["device"] for d in single.json()["results"][0]["devices"]] == [0, 1]

    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    # The head node as an operator starts it, with its NPUs declared; it inherits the fakes from this environment.
    started = subprocess.run([str(ray), "start", "--head", f"--port={port}", "--num-cpus=3", '--resources={"NPU": 2}',
                              "--include-dashboard=false", "--disable-usage-stats"],
                             env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        address = f"127.0.0.1:{port}"
        # `ray start` turns on Ray's token authentication; a driver joining it says so (the token is in ~/.ray).
        result = zoo_cli(*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--address", address,
                         env={**env, "ZOO_CACHE_DIR": str(tmp_path / "cache-ray"), "RAY_AUTH_MODE": "token"})
    finally:
        subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert result.code == 0, result
    assert accuracy_of(tmp_path / "ray") == accuracy_of(tmp_path / "single")
    engine = result.json()["engine"]
    assert (engine["address"], engine["actors"]) == (address, 2)
    assert engine["actor_resources"] == {"num_cpus": 0.0, "resources": {"NPU": 1.0}}
    # Each actor opened its own chip: Ray made it the only visible one, and the session opened it as device 0
    # (the fake ais_bench, like the ACL runtime, rejects the physical id of a chip it is not shown as).
    assert sorted(engine["timed_on"]) == ["npu:0", "npu:1"]
    assert {w["device"] for w in engine["workers"]} <= {"npu:0", "npu:1"}
    assert sum(w["images"] for w in engine["workers"]) == 24
    rows = result.json()["results"]
    assert sorted(d["device"] for d in rows[0]["devices"]) == [0, 1]  # both chips timed, their throughputs added
    assert all(w["stages"] == ["open_runner"] for w in engine["workers"])  # no actor compiled
