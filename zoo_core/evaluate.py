"""Accuracy runs: images decoded in worker processes, streamed as batches to the backend, saved per shard."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .artifacts import fingerprint
from .datasets import Dataset, Sample, check_folder
from .errors import EXIT_BUG, CheckError, ZooError
from .files import atomic_write
from .samples import expected_sample, fits, preprocess_one, wrong_sample
from .signals import as_worker, blocked, deliver, describe, held_back

if TYPE_CHECKING:
    import numpy as np

    from .app import Zoo
    from .engines import Engine
    from .progress import Progress
    from .runner import Prepared
    from .runtime import CompiledModel
    from .specs import ModelSpec, RunOptions

PREDICTIONS_FILE = "predictions.csv"
PREDICTIONS_OF = "predictions-{}.csv"  # a run's second and further precisions
FIRST_SAMPLE_TRIES = 16  # unreadable images skipped (--skip-bad) before the early check gives up


def load_dataset(zoo: Zoo, model: ModelSpec, options: RunOptions) -> Dataset:
    """The dataset under ``--data`` as the dataset plugins read it; ``--limit`` applied."""
    assert options.data is not None
    path = check_folder(Path(options.data))
    name = options.dataset or _guess_kind(zoo, path, options)
    spec = zoo.registry.dataset(name)
    dataset = zoo.registry.call("zoo_load_dataset", spec, dataset=spec, path=path, labels=options.labels,
                                classes=options.classes, model=model)
    if dataset is None:
        readable = [k for k, d in zoo.registry.datasets.items() if zoo.registry.implements("zoo_load_dataset", d)
                    and k != name]
        raise ZooError(f"dataset kind {name!r} cannot be read from a folder",
                       note=f"choose --dataset {' or '.join(readable) or 'KIND'} (`zoo plugins` lists the kinds)")
    if options.classes is not None and dataset.classes is None:
        raise ZooError(f"--classes numbers class folders, and the {name} dataset has none",
                       note="drop --classes, or pass a folder of class subfolders (--dataset folder)", exit_code=2)
    if options.labels is not None and dataset.classes is not None:  # never a label file silently unused
        raise ZooError(f"--labels labels a folder of images, and the {name} dataset is labelled by its class folders",
                       note="drop --labels, or pass the folder the label file describes (--dataset imagenet-val)",
                       exit_code=2)
    dataset = dataset.limited(options.limit)
    if not dataset.samples:
        raise ZooError(f"no labelled image in {path}",
                       note="the folder needs images whose file stems appear in the label file")
    return dataset


def check_first_sample(zoo: Zoo, model: ModelSpec, backend: str, options: RunOptions, dataset: Dataset) -> None:
    """Preprocess the first readable image here, before any export: a model that no plugin preprocesses, a
    plugin that raises, or a sample of another shape or dtype than ``backend``'s input stops the run now, not
    after compile and timing."""
    preset = model.preset_for(backend, options.preset)
    expected = model.input_for(backend)[:2]
    for sample in dataset.samples[:FIRST_SAMPLE_TRIES]:
        array, error = preprocess_one(zoo.pm, model, preset, sample.path)
        if error is not None:
            _bad_image(sample, error, options)  # stops here, unless --skip-bad
            continue
        if not fits(array, expected):
            raise wrong_sample(zoo.pm, model, preset, sample.path, array, expected)
        return


def _guess_kind(zoo: Zoo, path: Path, options: RunOptions) -> str:
    """The first dataset kind (in registration order) whose plugin says the folder is one of it."""
    for name, spec in zoo.registry.datasets.items():
        if zoo.registry.call("zoo_dataset_matches", spec, dataset=spec, path=path, labels=options.labels,
                             classes=options.classes):
            return name
    kinds = [k for k, d in zoo.registry.datasets.items() if zoo.registry.implements("zoo_load_dataset", d)]
    raise ZooError(f"cannot tell what kind of dataset {path} is: no dataset plugin recognises it",
                   note=f"pass --dataset {'|'.join(kinds) or 'KIND'} (`zoo plugins` describes each kind)")


# -------------------------------------------------------------------------
# Worker processes: decode and preprocess one image
# -------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(model: ModelSpec, preset: str, slots: Any, sample: tuple[tuple[int, ...], str]) -> None:
    as_worker()  # the parent handles Ctrl-C and SIGTERM, and ends the pool
    if "pm" not in _worker:  # a spawned worker: load the plugins anew (a forked one inherited them)
        from .plugins import get_plugin_manager

        _worker["pm"] = get_plugin_manager()
    _worker.update(model=model, preset=preset, slots=slots, sample=sample)


def _slot(buffer: Any, sample: tuple[tuple[int, ...], str], slot: int) -> np.ndarray:
    """Slot ``slot`` of the shared buffer, as an array of one input sample (shape, dtype)."""
    import numpy as np

    shape, dtype = sample[0], np.dtype(sample[1])
    count = int(np.prod(shape))
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=slot * count * dtype.itemsize).reshape(shape)


def _preprocess(task: tuple[int, str, str | None, int]) -> tuple[int, Any, str | None]:
    """Preprocess one image into its slot of the shared buffer (only a tiny reply crosses the pipe); with a
    target path, write it there (``<id>.bin``) instead."""
    index, path, target, slot = task
    array, error = preprocess_one(_worker["pm"], _worker["model"], _worker["preset"], Path(path))
    if error is not None:
        return index, None, error
    if not fits(array, _worker["sample"]):
        return index, array, None  # not what the model takes: sent whole (never written), and the parent stops
    if target is not None:
        with atomic_write(target, "wb") as fh:
            array.tofile(fh)
        return index, None, None
    _slot(_worker["slots"], _worker["sample"], slot)[...] = array
    return index, slot, None


TERMINATE_GRACE_SECONDS = 10.0  # how long a terminated worker may take to end before it is killed


def _kill_alive(workers: list[Any]) -> None:
    for worker in workers:
        if worker.exitcode is None:
            worker.kill()


@dataclass
class Preprocessor:
    """A pool of worker processes that turn image files into model inputs, in order, a bounded way ahead.

    Each result lands in one of ``ahead`` slots of a shared buffer; an image is only decoded once the one
    ``ahead`` places before it has been taken, so a slot is never overwritten before it is read.
    """

    model: ModelSpec
    preset: str
    workers: int
    pm: Any = None  # the parent's plugin manager, inherited by forked workers
    sample: tuple[tuple[int, ...], str] | None = None  # one input's shape and dtype (default: the model's)
    ahead: int = 32  # images decoded ahead of the consumer, at most

    def __enter__(self) -> "Preprocessor":
        import sys
        from multiprocessing import get_context

        import numpy as np

        # Forked workers start in milliseconds, where spawned ones spend a second importing. The workers only
        # decode images (Pillow, numpy), never touch the parent's framework threads, and the pool is made
        # before the backend opens its session.
        method = "fork" if sys.platform == "linux" else "spawn"
        context = get_context(method)
        if self.sample is None:
            self.sample = (tuple(self.model.input_shape), self.model.input_dtype)
        size = int(np.prod(self.sample[0])) * np.dtype(self.sample[1]).itemsize
        self.slots = context.RawArray("b", self.ahead * size)
        self._closed = threading.Event()
        _worker.clear()
        if method == "fork" and self.pm is not None:
            _worker["pm"] = self.pm
        try:
            # Ctrl-C and SIGTERM are held back while the pool forks: a KeyboardInterrupt raised inside the fork's
            # own handlers (in ``logging``, say) is printed and dropped by Python, and the run would go on.
            # The signals are also blocked at the kernel meanwhile, so that a worker still starting cannot lose
            # the SIGTERM of a pool terminated early (see ``signals.blocked``).
            with held_back() as interrupted, blocked():
                self.pool = context.Pool(self.workers, _init_worker, (self.model, self.preset, self.slots, self.sample))
        finally:
            _worker.clear()
        if interrupted:
            self.__exit__()
            deliver(interrupted)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()  # a task feeder waiting for room gives up, so the pool can end
        # terminate() sends each worker SIGTERM and then waits for it without a limit: a worker that somehow
        # outlives its SIGTERM would hang the run for ever, so after a grace period it is killed.
        workers = list(getattr(self.pool, "_pool", ()))
        watchdog = threading.Timer(TERMINATE_GRACE_SECONDS, _kill_alive, (workers,))
        watchdog.daemon = True
        watchdog.start()
        try:
            self.pool.terminate()
            self.pool.join()
        finally:
            watchdog.cancel()

    def map(self, samples: list[Sample], targets: list[Path] | None = None) -> Iterator[tuple[int, Any, str | None]]:
        """``(index in samples, array or None, error or None)`` for each sample, in order; the array is the
        caller's own. With ``targets``, each worker writes its file and ``None`` comes back instead."""
        room = threading.Semaphore(self.ahead)

        def tasks() -> Iterable[tuple[int, str, str | None, int]]:
            for index, sample in enumerate(samples):
                while not room.acquire(timeout=0.1):
                    if self._closed.is_set():
                        return
                yield index, str(sample.path), str(targets[index]) if targets else None, index % self.ahead

        results = self.pool.imap(_preprocess, tasks(), chunksize=2)  # the workers start now, not on first next()
        expected = self.sample
        assert expected is not None  # __enter__ sets it

        def drain() -> Iterator[tuple[int, Any, str | None]]:
            for index, value, error in results:
                if isinstance(value, int):
                    value = _slot(self.slots, expected, value).copy()
                elif value is not None:  # a sample of another shape or dtype than the model takes
                    raise wrong_sample(self.pm, self.model, self.preset, samples[index].path, value, expected)
                room.release()  # the slot is read: the image `ahead` places on may be decoded into it
                yield index, value, error

        return drain()


# -------------------------------------------------------------------------
# The run
# -------------------------------------------------------------------------


@dataclass
class EvaluationJob:
    """What an engine evaluates: the shards still to do of one dataset, and where each finished one goes."""

    zoo: Zoo
    model: ModelSpec
    compiled: CompiledModel
    preset: str
    options: RunOptions
    shards: list[list[Sample]]
    todo: list[int]  # the indices of the shards to evaluate (the others are saved already)
    state: Path  # the evaluation's folder of saved shards
    advance: Callable[[], None]  # one image done, for the progress bar
    device: int | None = None  # the device whose process saves the shards (recorded in them), where one does
    evaluated_on: dict[int, list[int]] = field(default_factory=dict)  # device -> the shards it evaluated

    def save(self, shard: int, scores: np.ndarray, kept: list[int], skipped: list[dict[str, str]]) -> None:
        """Shard ``shard`` is whole: the scores of its ``kept`` positions, and the images ``skipped``."""
        _save_shard(self.state / f"shard-{shard:06d}.npz", scores, kept, skipped, self.device)

    def bad_image(self, sample: Sample, error: str) -> dict[str, str]:
        """An unreadable image: its skip record with --skip-bad, else the run stops on it."""
        return _bad_image(sample, error, self.options)


def evaluate(zoo: Zoo, prepared: Prepared, options: RunOptions, progress: Progress, engine: Engine,
             first: bool = True, several: bool = False) -> dict[str, Any]:
    """Top-1/top-5 of the model on the dataset at the largest batch size, resumable shard by shard, on
    ``engine`` (this process and its decoding workers, a Ray cluster, ...). The run's ``first`` precision writes
    predictions.csv, another predictions-<precision>.csv; ``several``: the run has more than one precision. The
    result's ``scored`` (ids and top-1 classes, in order) is for the runner's accuracy cost, not for results.json."""
    model = prepared.model
    dataset = load_dataset(zoo, model, options)
    bs = max(options.batch_sizes)
    compiled = prepared.compiled[bs]
    per_shard = bs * max(1, -(-options.shard_images // bs))  # rounded up to whole batches
    shards = [dataset.samples[i : i + per_shard] for i in range(0, len(dataset.samples), per_shard)]
    preset = model.preset_for(compiled.backend, options.preset)  # e.g. uint8 images for an AIPP-normalising chip
    state = zoo.store.root / "evaluations" / fingerprint({
        "compiled": compiled.path.parent.name, "preset": preset, "dataset": dataset.signature(),
        "preprocess": _preprocessing_versions(zoo, model),
        "skip_bad": options.skip_bad, "per_shard": per_shard,
        **({"engine": engine.name} if engine.name != "local" else {}),  # each engine's shards stand on their own
    })
    state = zoo.store.evaluation_folder(state.name)  # held: `zoo cache clean` leaves it while this run lives
    for leftover in state.glob(".*.tmp"):  # a shard a killed run was writing
        leftover.unlink(missing_ok=True)
    done = {i for i in range(len(shards)) if _saved_shard(state / f"shard-{i:06d}.npz", len(shards[i]))}
    todo = [i for i in range(len(shards)) if i not in done]
    fresh = sum(len(shards[i]) for i in todo)
    if done:
        resumed = sum(len(shards[i]) for i in done)
        print(f"resumed {resumed} of {len(dataset.samples)} images from saved shards", file=sys.stderr, flush=True)
    start = ready = time.perf_counter()
    evaluated_on: dict[int, list[int]] = {}  # filled by an engine that runs on this host's devices
    if todo:
        label = f"evaluate {fresh} images at batch {bs}" + (f" in {prepared.precision}" if several else "") + (
            f" ({len(done)} shards resumed)" if done else "")
        try:
            with progress.loop(label + engine.where(), fresh) as advance:
                job = EvaluationJob(zoo, model, compiled, preset, options, shards, todo, state, advance,
                                    evaluated_on=evaluated_on)
                ready = engine.evaluate(job) or ready
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
            what, exit_code = describe(exc)
            finished = sum(1 for i in range(len(shards)) if (state / f"shard-{i:06d}.npz").exists())
            raise ZooError(f"{what}: {finished} of {len(shards)} shards are saved",
                           note="run the same command again to resume from them", exit_code=exit_code) from None
    end = time.perf_counter()
    timing = {"setup_seconds": ready - start, "seconds": end - ready}
    predictions = PREDICTIONS_FILE if first else PREDICTIONS_OF.format(prepared.precision)
    devices = [{"device": d, "shards": len(evaluated_on[d]), "images": sum(len(shards[i]) for i in evaluated_on[d])}
               for d in sorted(evaluated_on)]  # which devices evaluated the shards of this run
    return {**_score(zoo, model, dataset, shards, state, options, bs, fresh, timing, predictions), "preset": preset,
            **({"devices": devices} if devices else {})}


def stream_here(job: EvaluationJob) -> float:
    """The single-host loop: worker processes decode, this process infers batch by batch and saves each
    shard. Returns when the streaming started (workers up, session open and warm)."""
    import numpy as np

    from .runtime import infer_batches

    zoo, model, compiled, preset, options = job.zoo, job.model, job.compiled, job.preset, job.options
    shards, todo, advance = job.shards, job.todo, job.advance

    bs = compiled.batch_size
    sample = (tuple(compiled.inputs[0].shape[1:]), compiled.inputs[0].dtype)
    # The workers start (and import) while the backend opens its session.
    with Preprocessor(model, preset, options.workers, zoo.pm, sample) as pre, \
            _open_runner(zoo, compiled, model, options) as runner:
        stream = pre.map([s for i in todo for s in shards[i]])
        name = compiled.inputs[0].name
        # A new session's first call is slow (allocations, kernel choice): make it on zeros while
        # the workers decode the first images, as performance mode warms up before it times.
        runner.infer({i.name: np.zeros(i.shape, i.dtype) for i in compiled.inputs})
        ready = time.perf_counter()
        for i in todo:
            batch, outputs, kept, skipped = [], [], [], []
            for position, sample_ in enumerate(shards[i]):
                _, array, error = next(stream)
                advance()
                if error is None:
                    batch.append(array)
                    kept.append(position)
                else:
                    skipped.append(_bad_image(sample_, error, options))
                if len(batch) == bs:  # a full batch goes to the backend while the workers decode on
                    outputs.append(runner.infer({name: np.stack(batch)})[0])
                    batch = []
            if batch:  # the dataset's last, partial batch: padded, and the padding dropped
                outputs.append(infer_batches(runner, {name: np.stack(batch)})[0])
            scores = np.concatenate(outputs) if outputs else np.zeros((0, model.num_classes), np.float32)
            job.save(i, scores, kept, skipped)
    return ready


def _bad_image(sample: Sample, error: str, options: RunOptions) -> dict[str, str]:
    """An unreadable image: counted and skipped with --skip-bad, else the run stops on it."""
    if not options.skip_bad:
        raise ZooError(f"cannot read image {sample.path}: {error}",
                       note="remove or replace the file, or pass --skip-bad to count and skip it")
    return {"id": sample.id, "reason": error}


def _preprocessing_versions(zoo: Zoo, model: ModelSpec) -> list[str]:
    """The code that preprocesses ``model``: its plugin, with its version and a hash of its source, and the core's
    declared preprocessing: a new release, or an edit without one, invalidates saved shards."""
    from .plugins import plugin_source, plugin_version, source_hash

    return [f"{model.plugin}=={plugin_version(zoo.pm, model.plugin)} source {plugin_source(zoo.pm, model.plugin)}",
            f"declared source {source_hash('zoo_core.preprocessing')}"]


def _saved_shard(path: Path, images: int) -> bool:
    """Whether ``path`` is a whole saved shard of ``images`` images; a damaged one is removed (with a warning)
    and evaluated again."""
    import zipfile

    import numpy as np

    from .artifacts import warn

    if not path.exists():
        return False
    try:
        with np.load(path) as data:
            kept, outputs = data["kept"], data["outputs"]
            skipped = json.loads(str(data["skipped"]))
        whole = len(kept) == len(outputs) and len(kept) + len(skipped) == images
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        whole = False
    if not whole:
        warn(f"the saved shard {path} is damaged; evaluating its images again")
        path.unlink(missing_ok=True)
    return whole


def _open_runner(zoo: Zoo, compiled: Any, model: ModelSpec, options: RunOptions) -> Any:
    return zoo.open_runner(compiled, model, options)


def _save_shard(path: Path, outputs: np.ndarray, kept: list[int], skipped: list[dict[str, str]],
                device: int | None = None) -> None:
    import os

    import numpy as np

    # With a device: the device and the process that evaluated the shard, as it recorded them.
    saved_by: dict[str, Any] = {"device": device, "pid": os.getpid()} if device is not None else {}
    with atomic_write(path, "wb", fsync=True) as fh:
        np.savez(fh, outputs=outputs, kept=np.asarray(kept, dtype=np.int64), skipped=json.dumps(skipped), **saved_by)


def _score(
    zoo: Zoo, model: ModelSpec, dataset: Dataset, shards: list[list[Sample]], state: Path, options: RunOptions,
    bs: int, fresh: int, timing: dict[str, float], predictions: str = "predictions.csv",
) -> dict[str, Any]:
    import numpy as np

    outputs, samples, skipped = [], [], []
    for i, shard in enumerate(shards):
        with np.load(state / f"shard-{i:06d}.npz") as data:
            outputs.append(data["outputs"])
            samples += [shard[k] for k in data["kept"]]
            skipped += json.loads(str(data["skipped"]))
    scores = np.concatenate(outputs) if outputs else np.zeros((0, model.num_classes), np.float32)
    _check_scored(samples, skipped, scores)
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    metrics: dict[str, Any] = {}
    for contribution in zoo.pm.hook.zoo_metrics(model=model, outputs=scores, labels=labels):
        for key, value in (contribution or {}).items():
            if key in metrics:
                raise ZooError(f"two metrics plugins both report {key!r}", note="uninstall one of them")
            metrics[key] = value
    _check_metrics(zoo, metrics)
    if options.out is not None:
        _write_predictions(options.out / predictions, samples, scores, labels)
    predicted = np.argmax(scores.reshape(len(scores), -1), axis=1) if len(scores) else np.zeros(0, np.int64)
    return {
        "scored": {"ids": [s.id for s in samples], "predicted": predicted,
                   "top1": metrics.get("top1"), "top5": metrics.get("top5")},
        **metrics,
        "images": len(samples),
        "batch_size": bs,
        "skipped": {"count": len(skipped), "images": skipped},
        "dataset": dataset.report(),
        **timing,  # setup: starting the workers and opening the session; then the streaming itself
        "images_per_s": fresh / timing["seconds"] if fresh and timing["seconds"] > 0 else None,
        "resumed_images": len(samples) + len(skipped) - fresh,
        "workers": options.workers,
    }


def _check_scored(samples: list[Sample], skipped: list[dict[str, str]], scores: np.ndarray) -> None:
    """Stop unless there is something to score and every score is a number: an accuracy over no image, or over
    outputs holding NaN or infinity (which rank arbitrarily), is not a result."""
    import numpy as np

    if not samples:
        example = f", e.g. {skipped[0]['id']}: {skipped[0]['reason']}" if skipped else ""
        raise ZooError(f"no image was scored: all {len(skipped)} images were skipped as unreadable{example}",
                       note="replace the unreadable images, or point --data at a folder of readable ones")
    finite = np.isfinite(scores.reshape(len(scores), -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise CheckError(f"the model's outputs hold NaN or infinity for {len(bad)} of {len(samples)} images "
                         f"(first: {samples[int(bad[0])].id}); they cannot be scored",
                         note="the weights or the ONNX file hold NaN or infinity, or overflow float32 on these "
                         "images; check them with `zoo compare`")


def _check_metrics(zoo: Zoo, metrics: dict[str, Any]) -> None:
    """Every number in the metrics is finite; a NaN or infinity is the metrics plugin's bug, said in one line
    rather than written as a result."""
    import math
    import numbers

    def bad(value: Any) -> Any:
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            return value
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        return next((found for found in map(bad, items) if found is not None), None)

    for key, value in metrics.items():
        found = bad(value)
        if found is not None:
            plugins = sorted({impl.plugin_name for impl in zoo.pm.hook.zoo_metrics.get_hookimpls()})
            raise ZooError(f"metric {key!r} holds {found!r}, not a finite number (zoo_metrics of plugin(s) "
                           f"{', '.join(plugins)})", note="report it to the authors of the plugin that computes it",
                           exit_code=EXIT_BUG)


def _write_predictions(path: Path, samples: list[Sample], scores: np.ndarray, labels: np.ndarray) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    k = min(5, scores.shape[1]) if scores.ndim == 2 else 0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k] if len(scores) else np.zeros((0, k), np.int64)
    with atomic_write(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *(f"top{j + 1}" for j in range(k)), "label"])
        for sample, row, label in zip(samples, top, labels, strict=True):
            writer.writerow([sample.id, *map(int, row), int(label)])


# -------------------------------------------------------------------------
# zoo preprocess: the seed's .bin files, for running ais_bench by hand
# -------------------------------------------------------------------------


def preprocess_array(zoo: Zoo, model: ModelSpec, options: RunOptions, samples: list[Sample], target: Path | None,
                     what: str, note: str, progress: Progress | None = None) -> np.ndarray:
    """``samples`` preprocessed as for evaluation with the run's preset (the ONNX model's own input), in order: one
    array, memory-mapped into the .npy ``target`` (or in memory without one). An unreadable image stops it in one
    line: ``cannot read {what} PATH: why``, with ``note``."""
    import numpy as np

    from .datasets import shown_name
    from .progress import Progress

    expected = expected_sample(model, options.preset)
    shape, dtype = (len(samples), *expected[0]), np.dtype(expected[1])
    array: Any = (np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=shape) if target is not None
                  else np.zeros(shape, dtype))
    progress = progress or Progress()
    with Preprocessor(model, options.preset, options.workers, zoo.pm, expected) as pre, \
            progress.loop(f"preprocess {len(samples)} {what}s", len(samples)) as advance:
        for index, value, error in pre.map(samples):
            if error is not None:
                raise ZooError(shown_name(f"cannot read {what} {samples[index].path}: {error}"), note=note)
            array[index] = value
            advance()
    if target is not None:
        array.flush()
    return array


def write_bins(zoo: Zoo, model: ModelSpec, options: RunOptions, target: Path, progress: Progress) -> dict[str, Any]:
    """Every image under ``--data`` preprocessed to ``<id>.bin`` (raw float32, no batch axis) in ``target``."""
    from collections import Counter

    from .datasets import list_images, text_of

    assert options.data is not None  # `zoo preprocess` requires --data
    path = check_folder(Path(options.data))
    images, _ = list_images(path)
    shared = sorted(stem for stem, count in Counter(p.stem for p in images).items() if count > 1)
    if shared:  # a.JPEG and a.png would both become a.bin, the second over the first
        raise ZooError(f"two images in {path} share the stem {shared[0]!r}", note="rename one of them")
    samples = [Sample(text_of(p.stem), p, None) for p in images][: options.limit]
    if not samples:
        raise ZooError(f"no image in {path}", note="pass the folder of images with --data")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot create {target}: {exc.strerror or exc}",
                       note="choose a writable folder with -o") from None
    written, skipped = 0, []
    label = f"preprocess {len(samples)} images"
    expected = expected_sample(model, options.preset)  # checked before any file is written
    with Preprocessor(model, options.preset, options.workers, zoo.pm, expected) as pre, \
            progress.loop(label, len(samples)) as advance:
        for (_, _, error), sample in zip(pre.map(samples, [target / f"{s.path.stem}.bin" for s in samples]), samples,
                                     strict=True):
            advance()
            if error is not None:
                if not options.skip_bad:
                    raise ZooError(f"cannot read image {sample.path}: {error}",
                                   note="remove or replace the file, or pass --skip-bad to count and skip it")
                skipped.append({"id": sample.id, "reason": error})
                continue
            written += 1
    return {"model": model.name, "preset": options.preset, "written": written, "folder": str(target),
            "skipped": {"count": len(skipped), "images": skipped}}
