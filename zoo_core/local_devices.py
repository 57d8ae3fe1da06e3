"""The local engine's accuracy run on several devices of this host: one spawned process per device, each with its
own runner and decoding workers, the shards still to do dealt out among them; each shard is saved by the one
process that evaluated it, and the run scores them all in dataset order as a single-device run does."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .errors import EXIT_TERMINATED, ZooError
from .evaluate import EvaluationJob

if TYPE_CHECKING:
    import numpy as np
    from multiprocessing.connection import Connection

    from .specs import RunOptions

TERMINATE_GRACE_SECONDS = 10.0  # how long a device process may take to end on SIGTERM before it is killed
LIVENESS_SECONDS = 0.1  # how often the parent checks that every device process still lives


def deal(todo: list[int], devices: tuple[int, ...]) -> dict[int, list[int]]:
    """The shards ``todo`` dealt out in turn, as cards: the k-th to device ``devices[k % n]``."""
    return {device: todo[k::len(devices)] for k, device in enumerate(devices)}


def device_options(options: RunOptions, device: int) -> RunOptions:
    """One device's process: that device alone, and its share of the ``--workers`` decoding processes."""
    return options.with_(devices=(device,), workers=max(1, options.workers // len(options.devices)))


def evaluate_on_devices(job: EvaluationJob) -> float | None:
    """Evaluate ``job``'s shards on every device of its options at once, one process each; returns when the first
    device started streaming. A device process that fails stops the others and the run, in one line naming it."""
    from multiprocessing import connection, get_context

    from .signals import blocked, deliver, held_back

    context = get_context("spawn")  # a fresh process per device: no session or runtime state inherited
    running: dict[Any, tuple[int, Any]] = {}  # each process's end of its pipe -> (device, process)
    started: list[float] = []
    try:
        # Ctrl-C and SIGTERM wait until every process is started and known here (held back, as other threads of this
        # process may take them), and the processes start with them blocked until they handle them (_device_main).
        with held_back() as interrupted, blocked():
            for device, share in deal(job.todo, job.options.devices).items():
                if not share:
                    continue
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=_device_main, name=f"zoo-evaluate-device-{device}", daemon=False,
                    args=(device, _Work(job.model, job.compiled, job.preset, device_options(job.options, device),
                                        job.shards, share, job.state), writer))
                process.start()
                writer.close()  # only the process (and the workers it forks) write to it
                running[reader] = (device, process)
        deliver(interrupted)
        while running:
            # Each process's pipe, and every so often whether it still lives: the decoding workers it forked hold
            # its pipe open, so a process that was killed shows no end of file while they linger.
            ready = cast("list[Connection]", connection.wait(list(running), timeout=LIVENESS_SECONDS))
            for end in [end for end in running if end in ready or running[end][1].exitcode is not None]:
                device, process = running[end]
                while end.poll():
                    try:
                        message = end.recv()
                    except EOFError:  # it closed its pipe: it is ending, or has ended
                        process.join()
                        break
                    if _received(job, device, message, started):
                        del running[end]
                        end.close()
                        process.join()
                        break
                if end in running and process.exitcode is not None:  # it ended without saying it was done
                    raise _ended(device, process.exitcode, job)
    finally:  # done, failed, Ctrl-C or SIGTERM: every process still running is ended before the run goes on
        _end([process for _, process in running.values()])
    return min(started, default=None)


def _received(job: EvaluationJob, device: int, message: tuple[Any, ...], started: list[float]) -> bool:
    """One message of ``device``'s process: a shard saved, or the end of its work (True); its failure raises."""
    kind, *detail = message
    if kind == "saved":
        shard = int(detail[0])
        job.evaluated_on.setdefault(device, []).append(shard)
        for _ in job.shards[shard]:
            job.advance()
        return False
    if kind == "done":
        started.append(time.perf_counter() - float(detail[0]))
        return True
    if kind == "error":
        text, note, exit_code = detail
        raise ZooError(f"device {device}: {text}", note=note, exit_code=exit_code)
    raise RuntimeError(f"the evaluation process of device {device} failed:\n{detail[0]}")  # a bug there


def _ended(device: int, exit_code: int | None, job: EvaluationJob) -> ZooError:
    how = (f"was killed by {signal.Signals(-exit_code).name}" if exit_code is not None and exit_code < 0
           else f"ended with exit code {exit_code}")
    saved = sum(len(shards) for shards in job.evaluated_on.values())
    return ZooError(f"device {device}: its evaluation process {how} before its shards were done "
                    f"({saved} of the {len(job.todo)} shards to do are saved)",
                    note="run the same command again to resume from the saved shards; if it happens again, "
                         "check the device and the system log (an out-of-memory kill, a driver fault)")


def _end(processes: list[Any]) -> None:
    """SIGTERM to each process still running (each ends its decoding workers and its runner), then SIGKILL to any
    that outlives the grace period; last, SIGTERM to what is left of each one's process group: the decoding workers
    of a process that was killed (they end quietly on it)."""
    import contextlib

    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()
        with contextlib.suppress(ProcessLookupError, PermissionError):  # none left, or it never made its group
            os.killpg(process.pid, signal.SIGTERM)


# -------------------------------------------------------------------------
# In each device's process
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    """What one device's process evaluates (pickled to it)."""

    model: Any
    compiled: Any
    preset: str
    options: RunOptions
    shards: list[list[Any]]
    todo: list[int]
    state: Any


@dataclass
class _DeviceJob(EvaluationJob):
    """The device process's job: each shard it saves is reported to the parent, which counts it in."""

    pipe: Any = None

    def save(self, shard: int, scores: np.ndarray, kept: list[int], skipped: list[dict[str, str]]) -> None:
        super().save(shard, scores, kept, skipped)
        self.pipe.send(("saved", shard))


def _device_main(device: int, work: _Work, pipe: Connection) -> None:
    """One device's evaluation: its own runner and decoding workers over its shards. Ctrl-C is the parent's to
    handle (it ends this process with SIGTERM, which unwinds here: workers ended, runner closed)."""
    from . import signals

    os.setpgid(0, 0)  # a group of its own, with its decoding workers: the parent ends them all if this one dies
    signals.install()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals.STOP_SIGNALS)  # blocked since the parent started it
        from .app import Zoo
        from .evaluate import stream_here

        job = _DeviceJob(Zoo.create(), work.model, work.compiled, work.preset, work.options, work.shards,
                         work.todo, work.state, lambda: None, device=device, pipe=pipe)
        ready = stream_here(job)
        pipe.send(("done", time.perf_counter() - ready))
    except KeyboardInterrupt:  # the parent's SIGTERM
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:  # the parent is gone (killed): nobody to evaluate for
        sys.exit(EXIT_TERMINATED)
    except ZooError as exc:
        # Once the parent has the failure it ends the processes: this one is ending anyway, and must not be
        # interrupted inside its last send (ignored, not blocked: the runtime's threads would still take it).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pipe.send(("error", exc.message, exc.note, exc.exit_code))
    except BaseException:  # noqa: BLE001 -- a bug: the parent raises it, with this traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pipe.send(("bug", f"(process {os.getpid()})\n{traceback.format_exc()}"))
    finally:
        pipe.close()
