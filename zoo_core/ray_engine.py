"""The Ray engine: one run spread over the devices of a Ray cluster, with the results of one process.

The driver exports, simplifies and compiles once (the artifact cache), then ships each compiled artifact's
files to the cluster through the object store. Ray Data holds the image list, cut into blocks; CPU tasks decode
and preprocess the images; an actor pool with one actor per device (of the Ray resource the backend declares,
e.g. ``NPU`` or ``GPU``; else a number of CPUs) runs the model. The driver gathers the scores row by row onto one
progress bar, saves each shard as the single-process run does, and scores them with the same code: the same metrics
and the same predictions file.

Ray is optional (``pip install 'zoo[ray]'``), imported only when ``--engine ray`` is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import UsageError, ZooError, first_line
from .runtime import COMPILED_FILE, CompiledModel, infer_batches, load_compiled

if TYPE_CHECKING:
    import numpy as np

    from .datasets import Sample
    from .evaluate import EvaluationJob
    from .measure import Timing
    from .progress import Progress
    from .specs import BackendSpec, ModelSpec, RunOptions

EXTRA_NOTE = "install the extra: pip install 'zoo[ray]'"
MAX_RESTARTS = 3  # a dead actor is restarted, and its batches retried, this many times before the run fails
MAX_BLOCKS = 4096  # Ray Data blocks of the image list, at most


def import_ray() -> Any:
    """``ray`` with Ray Data, or a one-line error naming the extra that installs them."""
    try:
        import ray
        import ray.data  # pyarrow and pandas come with the [data] extra
    except ImportError as exc:
        missing = exc.name or "ray"
        raise ZooError(f"--engine ray needs Ray Data, and {missing!r} is not installed", note=EXTRA_NOTE) from None
    return ray


def check_options(options: RunOptions) -> None:
    """The Ray engine's own checks of a run's options, before any work: usage errors."""
    if options.devices != (0,):
        raise UsageError("--device picks devices of this host; with --engine ray, Ray assigns them",
                         note="leave --device out, and set the number of inference actors with --actors N")
    if options.actors is not None and options.actors < 1:
        raise UsageError(f"--actors: {options.actors} must be at least 1", note="write e.g. --actors 2")
    if options.actor_cpus is not None and not options.actor_cpus >= 0:
        raise UsageError(f"--actor-cpus: {options.actor_cpus:g} must be 0 or more", note="write e.g. --actor-cpus 1")


def status() -> dict[str, Any]:
    """Whether ``--engine ray`` can run here, from the installed distributions (Ray itself is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for dist in ("ray", "pyarrow", "pandas"):  # Ray Data needs the two others ([data] extra)
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    missing = [d for d, v in found.items() if v is None]
    return {"name": "ray", "available": not missing, "version": found["ray"] or "",
            "reason": f"not installed: {', '.join(missing)}; {EXTRA_NOTE}" if missing else ""}


# -------------------------------------------------------------------------
# Placement: how many inference actors, and what each one reserves
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    actors: int
    kind: str  # the device's Ray resource in lower case ("npu", "gpu"), or "cpu"
    num_cpus: float
    num_gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    resource: str | None = None  # the Ray resource of one device, as the backend declares it; None: CPUs
    device_env: str | None = None  # the variable that Ray narrows to the actor's device, as the backend declares it

    def remote_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        if self.resources:
            args["resources"] = dict(self.resources)
        return args


def device_kind(backend: BackendSpec) -> str:
    """The backend's device as placements name it: its declared Ray resource in lower case, else ``cpu``."""
    return backend.ray_resource.lower() if backend.ray_resource else "cpu"


def cpus_per_actor(options: RunOptions, kind: str) -> float:
    """``--actor-cpus``, else 1 for an actor that computes on CPUs and 0 for one that drives a device."""
    return options.actor_cpus if options.actor_cpus is not None else (1.0 if kind == "cpu" else 0.0)


def placement(backend: BackendSpec, options: RunOptions, cluster: dict[str, float]) -> Placement:
    """One actor per NPU or GPU of the cluster (or ``--actors`` of them), each with ``--actor-cpus`` (default 0:
    the device does the work); or ``--actors`` CPU actors (default 1) of ``--actor-cpus`` (default 1). A cluster
    too small for the request is a one-line error, not a hang."""
    kind = device_kind(backend)
    resource = backend.ray_resource or None
    cpus = float(cluster.get("CPU", 0))
    if resource is not None:
        have = int(cluster.get(resource, 0))
        actors = options.actors or have
        if have < 1:
            raise ZooError(f"the Ray cluster has no {resource} for the {backend.name} backend",
                           note=f"start the Ray nodes on machines with {resource}s (or `ray start --resources`)")
        if actors > have:
            raise ZooError(f"--actors {actors}: the Ray cluster has {have} {resource}(s)",
                           note=f"ask for at most {have} actors, or leave --actors out for one per {resource}")
    else:
        actors = options.actors or 1
    actor_cpus = cpus_per_actor(options, kind)
    needed = actors * actor_cpus + options.workers
    if needed > cpus:  # else Ray Data would wait for CPUs that never come
        raise ZooError(f"{actors} inference actor(s) of {actor_cpus:g} CPU and {options.workers} decoding "
                       f"worker(s) of 1 CPU need {needed:g} CPUs; the Ray cluster has {cpus:g}",
                       note="lower --actors, --actor-cpus or --workers, or add nodes to the cluster")
    if resource is None:
        return Placement(actors, kind, actor_cpus)
    if resource == "GPU":  # Ray's own accelerator, reserved through num_gpus rather than a custom resource
        return Placement(actors, kind, actor_cpus, num_gpus=1.0, resource=resource, device_env=backend.device_env)
    return Placement(actors, kind, actor_cpus, resources={resource: 1.0}, resource=resource,
                     device_env=backend.device_env)


# -------------------------------------------------------------------------
# Shipping a compiled artifact: its files through the object store, written once per node
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shipped:
    """A compiled artifact's folder as bytes: what an actor on any node needs to load it."""

    key: str  # the artifact's cache key: the same key is the same content
    files: dict[str, bytes]


def pack(compiled: CompiledModel) -> Shipped:
    folder = Path(compiled.path).parent
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return Shipped(folder.name, files)


def unpack(shipped: Shipped, root: Path | None = None) -> CompiledModel:
    """The shipped artifact, written under ``root`` (a node-local temporary folder) unless already there."""
    root = root or Path(tempfile.gettempdir()) / f"zoo-ray-{os.getuid()}"
    target = root / shipped.key
    if not (target / COMPILED_FILE).is_file():
        tmp = root / f".{shipped.key}.{os.getpid()}.tmp"
        for name, data in shipped.files.items():
            path = (tmp / name).resolve()
            if tmp.resolve() not in path.parents:  # a name that climbs out of the folder is never written
                raise ZooError(f"the shipped artifact {shipped.key} holds a bad file name {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            os.replace(tmp, target)
        except OSError:  # another actor on this node wrote it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return load_compiled(target)


# -------------------------------------------------------------------------
# What runs on the cluster
# -------------------------------------------------------------------------

_process: dict[str, Any] = {}


def _zoo() -> Any:
    """This worker process's application (plugins loaded once per process, not once per batch)."""
    if "zoo" not in _process:
        from .app import Zoo

        _process["zoo"] = Zoo.create()
    return _process["zoo"]


def _device(placement: Placement) -> tuple[str, int]:
    """This actor's device, as the results name it (``npu:3``), and the id its backend opens: where Ray makes the
    assigned device the only visible one (the backend's ``device_env``, set in this process), id 0."""
    import ray

    if placement.resource is None:
        return "cpu", 0
    ids = ray.get_runtime_context().get_accelerator_ids().get(placement.resource) or ["0"]
    narrowed = placement.device_env is not None and os.environ.get(placement.device_env)
    return f"{placement.kind}:{ids[0]}", 0 if narrowed else int(ids[0])


def _actor_options(options: RunOptions, device_id: int) -> RunOptions:
    return options.with_(devices=(device_id,))


class RayDecoder:
    """A CPU worker of the cluster: decodes and preprocesses batches of image paths into model inputs.

    An actor pool of its own, so that Ray Data never fuses the decoding into the actors that hold a device.
    An unreadable image gives a row with an error and zeros; the driver decides (``--skip-bad``)."""

    def __init__(self, model: ModelSpec, preset: str, shape: tuple[int, ...], dtype: str) -> None:
        self.pm = _zoo().pm
        self.model, self.preset, self.shape, self.dtype = model, preset, tuple(shape), dtype

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        from .samples import preprocess_one

        count = len(batch["path"])
        inputs = np.zeros((count, *self.shape), dtype=self.dtype)
        errors = [""] * count
        for k, path in enumerate(batch["path"]):
            array, error = preprocess_one(self.pm, self.model, self.preset, Path(str(path)))
            if error is None and (array.shape != self.shape or array.dtype != np.dtype(self.dtype)):
                error = (f"preprocessing gave {array.dtype}{list(array.shape)}, "
                         f"the model takes {self.dtype}{list(self.shape)}")
            if error is not None:
                errors[k] = error
                continue
            inputs[k] = array
        return {"shard": batch["shard"], "pos": batch["pos"], "input": inputs,
                "error": np.asarray(errors, dtype=object), "decoder": np.full(count, os.getpid(), dtype=np.int64)}


class RayInferenceActor:
    """One device's inference: loads the shipped artifact once, then runs each batch Ray Data hands it."""

    def __init__(self, shipped: Any, model: ModelSpec, options: RunOptions, placement: Placement) -> None:
        import numpy as np
        import ray

        compiled = unpack(ray.get(shipped) if isinstance(shipped, ray.ObjectRef) else shipped)
        self.device, device_id = _device(placement)
        zoo = _zoo()
        self.runner = zoo.open_runner(compiled, model, _actor_options(options, device_id))
        self.input = compiled.inputs[0].name
        self.classes = model.num_classes
        self.runner.infer({i.name: np.zeros(i.shape, i.dtype) for i in compiled.inputs})  # warm, as the driver does
        context = ray.get_runtime_context()
        # The stage hooks this process ran: opening the runner, never an export or a compile.
        self.stages = ",".join(sorted(zoo.timer.seconds))
        self.who = (context.get_actor_id() or "", ray.util.get_node_ip_address(), self.device, os.getpid())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        count = len(batch["pos"])
        good = [k for k in range(count) if not batch["error"][k]]
        scores = np.zeros((count, self.classes), dtype=np.float32)
        if good:
            out = infer_batches(self.runner, {self.input: batch["input"][good]})[0]
            if out.shape[1:] != scores.shape[1:] or out.dtype != scores.dtype:
                scores = np.zeros((count, *out.shape[1:]), dtype=out.dtype)
            scores[good] = out
        actor, node, device, pid = self.who
        return {"shard": batch["shard"], "pos": batch["pos"], "scores": scores, "error": batch["error"],
                "decoder": batch["decoder"], "actor": np.full(count, actor, dtype=object),
                "node": np.full(count, node, dtype=object), "device": np.full(count, device, dtype=object),
                "stages": np.full(count, self.stages, dtype=object),
                "pid": np.full(count, pid, dtype=np.int64)}


def _timed_loop_remote(shipped: Any, model: ModelSpec, options: RunOptions, placement: Placement) -> tuple[str, Any]:
    """Performance mode on one device of the cluster: (device, Timing)."""
    import ray

    from .measure import timed_loop

    compiled = unpack(ray.get(shipped) if isinstance(shipped, ray.ObjectRef) else shipped)
    device, device_id = _device(placement)
    return device, timed_loop(_zoo(), model, compiled, _actor_options(options, device_id))


# -------------------------------------------------------------------------
# The driver
# -------------------------------------------------------------------------


class RayEngine:
    """A Ray session for one run: started (or joined, with ``--address``) on enter, left on exit. An
    :class:`~zoo_core.engines.Engine`."""

    name = "ray"

    def __init__(self, options: RunOptions, backend: BackendSpec) -> None:
        self.options = options
        self.backend = backend
        self.ray = import_ray()
        self.started = False
        self.placement: Placement | None = None
        self.shipped: dict[str, Any] = {}
        self.workers: dict[tuple[str, int], dict[str, Any]] = {}  # (actor, pid) -> what it did
        self.decoders: set[int] = set()
        self.timed_on: list[str] = []
        self.setup_seconds = 0.0
        self.first_rows_seconds: float | None = None

    def __enter__(self) -> "RayEngine":
        ray, options = self.ray, self.options
        start = time.perf_counter()
        # Ray's driver prints cluster events ("(raylet) A worker died ...") on stdout, which belongs to --json:
        # while the session lasts they go to stderr, with the rest of the progress.
        self._stdout = contextlib.redirect_stdout(sys.stderr)
        self._stdout.__enter__()
        try:
            self._start()
            import ray.data

            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # zoo draws one bar for the whole cluster
            for name in ("ray.data", "ray"):
                logging.getLogger(name).setLevel(logging.ERROR)
            self.placement = placement(self.backend, options, ray.cluster_resources())
        except BaseException:
            self.__exit__()  # a local instance stops, and stdout is given back
            raise
        self.setup_seconds = time.perf_counter() - start
        return self

    def _start(self) -> None:
        """Join ``--address``, or start a local instance, or use the session the caller already holds."""
        ray, options = self.ray, self.options
        env = {k: v for k, v in os.environ.items() if k.startswith("ZOO_") and k != "ZOO_CACHE_DIR"}
        common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                      runtime_env={"env_vars": env})
        if ray.is_initialized():
            return  # a caller (a notebook, a test) already holds a session: use it, and leave it as it is
        if options.address:
            try:
                ray.init(address=options.address, **common)
            except Exception as exc:  # noqa: BLE001  # Ray raises ConnectionError, RuntimeError, ValueError, ...
                root: BaseException = exc
                while root.__cause__ is not None:  # Ray's own reason is at the bottom of the chain
                    root = root.__cause__
                note = "check the address (`ray status` on the head node prints it)"
                if "Authentication" in type(root).__name__:
                    note = ("the cluster uses Ray's token authentication: set RAY_AUTH_MODE=token, with the cluster's "
                            "token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
                raise ZooError(f"cannot join the Ray cluster at {options.address}: {first_line(root, with_type=False)}",
                               note=note) from None
        else:
            # The local instance holds what the run reserves: the decoding workers and the CPU actors.
            per_actor = cpus_per_actor(options, device_kind(self.backend))
            cpus = options.workers + math.ceil((options.actors or 1) * per_actor)
            ray.init(address="local", num_cpus=cpus, **common)
        self.started = True

    def __exit__(self, *exc: object) -> None:
        try:
            if self.started:
                self.ray.shutdown()
                self.started = False
        finally:
            self._stdout.__exit__(None, None, None)

    def ship(self, compiled: CompiledModel) -> Any:
        """The compiled artifact in the object store, put there once per run."""
        key = str(compiled.path)
        if key not in self.shipped:
            self.shipped[key] = self.ray.put(pack(compiled))
        return self.shipped[key]

    def measure(self, model: ModelSpec, compiled: CompiledModel, options: RunOptions,
                progress: Progress) -> list[tuple[int, Timing]]:
        """Performance mode on every actor's device at once, as ais_bench runs one process per device."""
        assert self.placement is not None
        ray, placement = self.ray, self.placement
        remote = ray.remote(max_retries=MAX_RESTARTS)(_timed_loop_remote).options(**placement.remote_args())
        shipped = self.ship(compiled)
        with progress.stage(f"time batch {compiled.batch_size} on {placement.actors} Ray actor(s)") as done:
            refs = [remote.remote(shipped, model, options, placement) for _ in range(placement.actors)]
            try:
                timed = ray.get(refs)
            except Exception as exc:  # noqa: BLE001
                raise _as_zoo_error(exc) from None
            done(", ".join(device for device, _ in timed))
            from .measure import warn_unsettled

            warn_unsettled(progress, timed, options)
        self.timed_on = [device for device, _ in timed]
        # The rows name each device by its id on its node (npu:3 -> 3); CPU actors by their index.
        return [(int(device.split(":")[1]) if ":" in device else i, timing) for i, (device, timing) in enumerate(timed)]

    def where(self) -> str:
        assert self.placement is not None
        return f" on {self.placement.actors} Ray actor(s)"

    def evaluate(self, job: EvaluationJob) -> float | None:
        """The cluster: rows come back in any order; a shard is saved once all of its rows are in."""
        import numpy as np

        shards = job.shards
        pending: dict[int, dict[str, Any]] = {i: {"scores": None, "errors": {}, "left": len(shards[i])}
                                              for i in job.todo}

        def on_rows(rows: dict[str, np.ndarray]) -> None:
            for shard, position, scores, error in zip(rows["shard"], rows["pos"], rows["scores"], rows["error"],
                                                           strict=True):
                entry = pending[int(shard)]
                if entry["scores"] is None:
                    entry["scores"] = np.zeros((len(shards[int(shard)]), *scores.shape), dtype=scores.dtype)
                if error:
                    entry["errors"][int(position)] = job.bad_image(shards[int(shard)][int(position)], str(error))
                else:
                    entry["scores"][int(position)] = scores
                entry["left"] -= 1
                job.advance()
                if entry["left"] == 0:
                    kept = [p for p in range(len(shards[int(shard)])) if p not in entry["errors"]]
                    skipped = [entry["errors"][p] for p in sorted(entry["errors"])]
                    job.save(int(shard), entry["scores"][kept], kept, skipped)
                    del pending[int(shard)]

        self.infer(job.model, job.compiled, job.preset, list(iter_work(shards, job.todo)), on_rows)
        if pending:  # every row is accounted for, or the engine is wrong: never a silently short result
            raise ZooError(f"the Ray engine returned no result for {sum(e['left'] for e in pending.values())} images")
        return None

    def infer(self, model: ModelSpec, compiled: CompiledModel, preset: str,
              work: list[tuple[int, int, Sample]], on_rows: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Run every ``(shard, position, sample)`` of ``work`` through decode tasks and the actor pool, handing
        each finished batch of rows to ``on_rows`` on the driver, in whatever order they finish."""
        assert self.placement is not None
        ray, placement = self.ray, self.placement
        bs = compiled.batch_size
        first = compiled.inputs[0]
        items = [{"shard": shard, "pos": pos, "path": str(sample.path)} for shard, pos, sample in work]
        # A block per batch (up to MAX_BLOCKS): rows reach the driver, and shards are saved, as batches finish,
        # not when a large block is done.
        blocks = max(1, min(-(-len(items) // bs), MAX_BLOCKS))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(RayDecoder, batch_size=bs, batch_format="numpy", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=self.options.workers),
                            fn_constructor_kwargs={"model": model, "preset": preset,
                                                   "shape": tuple(first.shape[1:]), "dtype": first.dtype})
        with warnings.catch_warnings():
            # Ray 2.60 flags max_restarts as a deprecated pass-through; without it an actor that crashes on every
            # batch is restarted for ever. The extra pins Ray below the release that removes it.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(RayInferenceActor, batch_size=bs, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=placement.actors),
                                fn_constructor_kwargs={"shipped": self.ship(compiled), "model": model,
                                                       "options": self.options, "placement": placement},
                                max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, **placement.remote_args())
        start = time.perf_counter()
        try:
            for rows in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if self.first_rows_seconds is None:  # actors and decoders started, the first batch through
                    self.first_rows_seconds = time.perf_counter() - start
                self._note_workers(rows)
                on_rows(rows)
        except Exception as exc:  # noqa: BLE001  # a task or actor that failed past its retries
            raise _as_zoo_error(exc) from None

    def _note_workers(self, rows: dict[str, np.ndarray]) -> None:
        self.decoders.update(int(p) for p in set(rows["decoder"].tolist()))
        for actor, node, device, pid, stages in zip(rows["actor"], rows["node"], rows["device"], rows["pid"],
                                                    rows["stages"], strict=True):
            worker = self.workers.setdefault((str(actor), int(pid)), {
                "actor": str(actor), "node": str(node), "device": str(device), "pid": int(pid), "images": 0,
                "stages": [s for s in str(stages).split(",") if s]})
            worker["images"] += 1

    def describe(self) -> dict[str, Any]:
        """What the results object records of the engine: where it ran, and each worker and its device."""
        assert self.placement is not None
        workers = sorted(self.workers.values(), key=lambda w: (w["actor"], w["pid"]))
        actors = {w["actor"] for w in workers}
        return {
            "name": "ray",
            "address": self.options.address or "local",
            "actors": self.placement.actors,
            "actor_resources": self.placement.remote_args(),
            "workers": workers,
            # A restarted actor keeps its id in a new process; one that died and got no work after is not seen.
            "restarts_seen": len(workers) - len(actors),
            "decoders": sorted(self.decoders),  # the processes that decoded: never one that holds a device
            "timed_on": self.timed_on,
            "setup_seconds": round(self.setup_seconds, 3),  # starting or joining Ray, checking the cluster
            "first_rows_seconds": None if self.first_rows_seconds is None else round(self.first_rows_seconds, 3),
        }


def _as_zoo_error(exc: BaseException) -> ZooError:
    """A failure on the cluster as one line: a ZooError raised by an actor keeps its message and note."""
    cause: BaseException = exc
    for _ in range(10):  # Ray wraps the worker's exception (``.cause``), Ray Data may wrap that again
        inner = getattr(cause, "cause", None)
        if isinstance(inner, BaseException) and inner is not cause:
            cause = inner
        elif isinstance(cause, ZooError) and hasattr(cause, "message"):
            return ZooError(cause.message, cause.note, cause.exit_code)
        elif cause.__cause__ is not None:
            cause = cause.__cause__
        else:
            break
    return ZooError(f"the Ray job failed: {first_line(exc, with_type=False)}",
                    note=f"a worker fails past {MAX_RESTARTS} restarts; the Ray logs (/tmp/ray/session_latest/logs) "
                         "tell why")


def iter_work(shards: list[list[Sample]], todo: list[int]) -> Iterator[tuple[int, int, Sample]]:
    for i in todo:
        for position, sample in enumerate(shards[i]):
            yield i, position, sample
