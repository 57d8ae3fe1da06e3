"""Timing: the timed loop on generated input, latency statistics, and throughput by the ais_bench formula
``1000 * batch / mean batch ms``, as one results row."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .app import Zoo
    from .progress import Progress
    from .runtime import CompiledModel
    from .specs import ModelSpec, RunOptions


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, interpolated linearly as numpy's default does."""
    if not sorted_ms:
        return float("nan")
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, min and max of per-batch latencies in milliseconds."""
    values = sorted(ms)
    if not values:
        raise ValueError("no latencies measured")
    return {
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": values[0],
        "max": values[-1],
    }


def throughput(batch_size: int, mean_ms: float) -> float:
    """Images per second: ``1000 * batch_size / mean_ms``."""
    return 1000.0 * batch_size / mean_ms


def windows_agree(window_means: Sequence[float], tolerance: float = 0.10, count: int = 3) -> bool:
    """Whether the last ``count`` windows' mean latencies agree within ``tolerance`` of the smallest."""
    if len(window_means) < count:
        return False
    last = window_means[-count:]
    return (max(last) - min(last)) <= tolerance * min(last)


@dataclass
class Timing:
    """One device's timed batches: wall and device milliseconds, and how the timing settled."""

    wall: list[float]
    device: list[float]  # empty when the backend does not measure its own compute time
    windows: list[float] = field(default_factory=list)  # mean ms of each timing window
    stable: bool | None = None  # None: a fixed --iterations count, nothing to judge
    seconds: float | None = None  # how long the timing windows ran (what --max-seconds caps); None: --iterations


def loop_label(compiled: CompiledModel, options: RunOptions) -> tuple[str, int | None]:
    """The progress line of a batch size's timing, and its number of batches when it is fixed."""
    bs = compiled.batch_size
    if options.iterations is not None:
        return f"time batch {bs}: {options.warmup} warm-up + {options.iterations} timed", \
            options.warmup + options.iterations
    return f"time batch {bs}: windows of {options.window} until 3 agree within {options.agree * 100:g}%", None


def measure(
    zoo: Zoo, model: ModelSpec, compiled: CompiledModel, options: RunOptions, progress: Progress
) -> dict[str, Any]:
    """Performance mode on every device of ``options.devices``, in this process and its own: one results row."""
    return results_row(compiled.batch_size, measure_devices(zoo, model, compiled, options, progress))


def measure_devices(
    zoo: Zoo, model: ModelSpec, compiled: CompiledModel, options: RunOptions, progress: Progress
) -> list[tuple[int, Timing]]:
    """Each device's timing: one device runs here; several run one process each over the same loop, as
    ais_bench does (their throughputs add up in :func:`results_row`)."""
    label, total = loop_label(compiled, options)
    if len(options.devices) == 1:
        with progress.loop(label, total, options.max_seconds if total is None else None) as advance:
            timing = timed_loop(zoo, model, compiled, options, advance)
            if timing.seconds is not None:
                progress.note(timing_note(timing, options))
            warn_unsettled(progress, [(options.devices[0], timing)], options)
        return [(options.devices[0], timing)]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from .signals import as_worker

    with progress.stage(f"{label}, on devices {','.join(map(str, options.devices))}") as done:
        pool = ProcessPoolExecutor(len(options.devices), mp_context=get_context("spawn"), initializer=as_worker)
        try:
            jobs = [pool.submit(_device_worker, model, compiled, options.with_(devices=(d,))) for d in options.devices]
            per_device = [(d, job.result()) for d, job in zip(options.devices, jobs, strict=True)]
        except BaseException:  # Ctrl-C, SIGTERM, a failed device: end the other loops now, not after max_seconds
            for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        timed = [t for _, t in per_device if t.seconds is not None]  # by windows: the longest against the cap
        longest = max(timed, key=lambda t: t.seconds or 0.0) if timed else None
        done(f"{len(per_device)} processes" + (f"; the longest: {timing_note(longest, options)}" if longest else ""))
        warn_unsettled(progress, per_device, options)
    return per_device


def timing_note(timing: Timing, options: RunOptions) -> str:
    """How a timing by windows went, against its cap: ``12 windows, 41 s of --max-seconds 60``."""
    from .progress import duration

    return (f"{len(timing.windows)} window{'s' if len(timing.windows) != 1 else ''}, "
            f"{duration(timing.seconds or 0.0)} of --max-seconds {options.max_seconds:g}")


def warn_unsettled(progress: Progress, per_device: list[tuple[Any, Timing]], options: RunOptions) -> None:
    """The timing's progress line ends in a warning, not ✓, when a device's windows never agreed."""
    unsettled = [d for d, t in per_device if t.stable is False]
    if unsettled:
        which = f"device {', '.join(map(str, unsettled))} " if len(per_device) > 1 else ""
        progress.warn(f"{which}did not settle within --max-seconds {options.max_seconds:g} s: "
                      "the throughput is unstable")


def timed_loop(
    zoo: Zoo, model: ModelSpec, compiled: CompiledModel, options: RunOptions, advance: Any = lambda: None
) -> Timing:
    """Warm-up, then timed batches of generated input: a fixed count, or windows until three agree."""
    from .export import sample_batch

    runner = zoo.open_runner(compiled, model, options)
    feed = {i.name: sample_batch(i.shape, i.dtype, seed=options.seed) for i in compiled.inputs}

    def batches(count: int) -> tuple[list[float], list[float]]:
        wall, device = [], []
        for _ in range(count):
            runner.infer(feed)
            wall.append(runner.last_ms)
            if runner.last_device_ms is not None:
                device.append(runner.last_device_ms)
            advance()
        return wall, device if len(device) == len(wall) else []

    with runner:
        for _ in range(options.warmup):
            runner.infer(feed)
            advance()
        if options.iterations is not None:
            return Timing(*batches(options.iterations))
        start = time.perf_counter()
        windows: list[tuple[list[float], list[float]]] = []
        means: list[float] = []
        while True:
            wall, device = batches(options.window)
            windows.append((wall, device))
            means.append(sum(device or wall) / len(device or wall))
            seconds = time.perf_counter() - start
            if windows_agree(means, options.agree):
                kept, stable = windows[-3:], True  # the statistics of the settled windows
                break
            if seconds > options.max_seconds:
                kept, stable = windows, False
                break
    wall = [ms for w, _ in kept for ms in w]
    device = [ms for _, d in kept for ms in d]
    return Timing(wall, device if len(device) == len(wall) else [], means, stable, seconds)


def _device_worker(model: ModelSpec, compiled: CompiledModel, options: RunOptions) -> Timing:
    """One device's loop, in its own process (the plugins are loaded anew there)."""
    from .app import Zoo

    return timed_loop(Zoo.create(), model, compiled, options)


def results_row(batch_size: int, per_device: list[tuple[int, Timing]]) -> dict[str, Any]:
    """A results row from each device's timings: device throughput where the backend measures it (the
    ais_bench number), end-to-end throughput from wall time, both summed over devices."""
    measured_on_device = all(t.device for _, t in per_device)
    devices: list[dict[str, Any]] = [
        {
            "device": d,
            "throughput_e2e": throughput(batch_size, latency_stats(t.wall)["mean"]),
            "throughput_device": (throughput(batch_size, latency_stats(t.device)["mean"]) if measured_on_device
                                  else None),
            "windows_ms": t.windows,
            "stable": t.stable,
        }
        for d, t in per_device
    ]
    e2e = sum(d["throughput_e2e"] for d in devices)
    on_device = sum(d["throughput_device"] for d in devices) if measured_on_device else None
    wall_all = [ms for _, t in per_device for ms in t.wall]
    device_all = [ms for _, t in per_device for ms in t.device]
    judged = [t.stable for _, t in per_device if t.stable is not None]
    return {
        "batch_size": batch_size,
        "throughput": on_device if on_device is not None else e2e,
        "throughput_device": on_device,
        "throughput_e2e": e2e,
        "latency_ms": latency_stats(device_all if measured_on_device else wall_all),
        "latency_e2e_ms": latency_stats(wall_all),
        "devices": devices,
        "stable": all(judged) if judged else None,  # None: a fixed --iterations count was timed
        "timed_batches": len(wall_all),
        "top1": None,
        "top5": None,
        "images": None,
    }
