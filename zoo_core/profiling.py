"""``zoo run --profile``: per-operator time tables from a backend's profiler (its ``zoo_profile``), over extra
batches after the timed ones, as the results' ``profile`` block, ``profile.csv``, the terminal and report.md."""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .errors import EXIT_BUG, UsageError, ZooError

if TYPE_CHECKING:
    from .app import Zoo
    from .progress import Progress
    from .runtime import CompiledModel
    from .specs import BackendSpec, ModelSpec, RunOptions

TOP = 20  # rows of each table: op types, nodes
CSV_FILE = "profile.csv"
FOLDER = "profile"  # under the run's output folder: what the profilers write (a trace, ais_bench's folder)
DEFAULT_BATCHES = 10


@dataclass(frozen=True)
class Profile:
    """What a backend's profiler measured over the profiled batches (its ``zoo_profile``'s answer).

    ``operators``: (node, op type, microseconds summed over the profiled batches), a node listed once or more (its
    times are added); ``wall_ms``: each profiled batch's wall time, measured around the call that ran it. A backend
    whose tool keeps its own profile (ais_bench ``--profiler 1``) gives its ``folder`` and may give no operators."""

    source: str
    wall_ms: tuple[float, ...] = ()
    operators: tuple[tuple[str, str, float], ...] = ()
    folder: Path | None = None


def timed_calls(call: Callable[[], object], batches: int) -> tuple[float, ...]:
    """Run ``call`` ``batches`` times; each call's wall time in milliseconds."""
    wall = []
    for _ in range(batches):
        start = time.perf_counter()
        call()
        wall.append((time.perf_counter() - start) * 1000.0)
    return tuple(wall)


def check_profile(zoo: Zoo, backend: BackendSpec, options: RunOptions) -> None:
    """``--profile`` that this run cannot do, refused before any work: a backend without a profiler, or an engine
    other than this process (the profiled batches run here, beside the timed ones)."""
    if not options.profile:
        return
    if not zoo.registry.implements("zoo_profile", backend):
        raise UsageError(f"--profile: backend {backend.name!r} has no profiler (its plugin {backend.plugin!r} "
                         "implements no zoo_profile)",
                         note="leave --profile out, or profile on onnxruntime, torch or ascend")
    if options.engine != "local":
        raise UsageError(f"--profile runs its batches in this process, not on --engine {options.engine}",
                         note="leave --engine out to profile, or --profile out to run on the engine")


def profile_compiled(zoo: Zoo, model: ModelSpec, compiled: CompiledModel, options: RunOptions, precision: str,
                     progress: Progress) -> dict[str, Any]:
    """Profile ``options.profile`` batches of generated input on ``compiled`` (after its timed batches): one table
    of the results' ``profile`` block."""
    from .export import sample_batch

    backend = zoo.registry.backend_of(compiled.backend)
    feed = {i.name: sample_batch(i.shape, i.dtype, seed=options.seed) for i in compiled.inputs}
    workdir = _workdir(options, compiled.batch_size, precision)
    batches = options.profile
    keep = options.out is not None  # a temporary folder (no --out) goes, unless the profile is the folder itself
    try:
        with progress.stage(f"profile batch {compiled.batch_size}: {batches} batches") as done:
            got = zoo.registry.call("zoo_profile", backend, compiled=compiled, model=model, options=options,
                                    feed=feed, batches=batches, workdir=workdir)
            table = summarize(_checked(got, backend, batches), compiled.batch_size, precision, batches)
            done(f"operators {table['coverage'] * 100:.0f}% of the wall time" if table["coverage"] is not None
                 else f"profile in {table['folder']}")
        keep = keep or table.get("folder") is not None
    finally:
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)  # zoo's own mkdtemp folder
    return table


def _workdir(options: RunOptions, batch_size: int, precision: str) -> Path:
    if options.out is not None:
        folder = Path(options.out) / FOLDER / f"bs{batch_size}-{precision}"
    else:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="zoo-profile-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot write the profile to {folder}: {exc.strerror or exc}",
                       note="choose a writable folder with --out") from None
    return folder


def _checked(got: object, backend: BackendSpec, batches: int) -> Profile:
    """A plugin bug in one line: anything but a Profile of ``batches`` finite wall times and finite, non-negative
    operator times (or a folder)."""
    wrong = ""
    if not isinstance(got, Profile):
        wrong = f"a {type(got).__name__}, not a Profile"
    elif got.operators and len(got.wall_ms) != batches:
        wrong = f"{len(got.wall_ms)} wall times for {batches} profiled batches"
    elif not all(isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0 for ms in got.wall_ms):
        wrong = "a wall time that is not a positive number"
    elif not all(isinstance(us, (int, float)) and math.isfinite(us) and us >= 0 for _, _, us in got.operators):
        wrong = "an operator time that is not a finite number of microseconds"
    elif not got.operators and got.folder is None:
        wrong = "no operator times and no folder"
    if wrong:
        raise ZooError(f"the zoo_profile of plugin {backend.plugin!r} (backend {backend.name!r}) returned {wrong}",
                       note="a bug in that plugin: report it to its authors", exit_code=EXIT_BUG)
    assert isinstance(got, Profile)
    return got


def summarize(profile: Profile, batch_size: int, precision: str, batches: int) -> dict[str, Any]:
    """The JSON table: the top op types and nodes by time, in ms per batch and as a share of all operator time,
    beside the wall time of the same batches (``coverage``: operator time / wall time)."""
    per_node: dict[str, list[Any]] = {}
    per_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for node, op_type, us in profile.operators:
        entry = per_node.setdefault(node, [op_type, 0.0])
        entry[1] += us
    for _node, (op_type, us) in per_node.items():
        per_type[op_type][0] += 1
        per_type[op_type][1] += us
    total_us = sum(us for _, us in per_node.values())
    share = (lambda us: us / total_us) if total_us > 0 else (lambda us: 0.0)
    ms = lambda us: us / 1000.0 / batches  # noqa: E731 -- per batch
    nodes = sorted(per_node.items(), key=lambda kv: -kv[1][1])
    types = sorted(per_type.items(), key=lambda kv: -kv[1][1])
    wall = sum(profile.wall_ms) / len(profile.wall_ms) if profile.wall_ms else None
    operator_ms = ms(total_us) if profile.operators else None
    return {
        "batch_size": batch_size,
        "precision": precision,
        "source": profile.source,
        "batches": batches,
        "wall_ms": wall,
        "operator_ms": operator_ms,
        "coverage": operator_ms / wall if operator_ms is not None and wall else None,
        "nodes_total": len(per_node),
        "op_types_total": len(per_type),
        "op_types": [{"op_type": t, "nodes": int(n), "ms": ms(us), "share": share(us)} for t, (n, us) in types[:TOP]],
        "nodes": [{"node": n, "op_type": t, "ms": ms(us), "share": share(us)} for n, (t, us) in nodes[:TOP]],
        "folder": str(profile.folder) if profile.folder is not None else None,
    }


def block(tables: list[dict[str, Any]], batches: int) -> dict[str, Any]:
    """The results' ``profile`` block."""
    return {"batches": batches, "top": TOP, "tables": tables}


def write_csv(profile: Any, path: Path) -> None:
    """``profile.csv``: one line per row of every table (``table``: op_type or node)."""
    from .files import atomic_write

    with atomic_write(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["batch_size", "precision", "table", "rank", "name", "op_type", "nodes", "ms_per_batch",
                         "share"])
        for table in profile.tables:
            for rank, row in enumerate(table.op_types, 1):
                writer.writerow([table.batch_size, table.precision, "op_type", rank, row.op_type, row.op_type,
                                 row.nodes, f"{row.ms:.6g}", f"{row.share:.6g}"])
            for rank, row in enumerate(table.nodes, 1):
                writer.writerow([table.batch_size, table.precision, "node", rank, row.node, row.op_type, "",
                                 f"{row.ms:.6g}", f"{row.share:.6g}"])


def headline(table: Any) -> str:
    """One line above a table: what profiled it, and how its operator time compares with the wall time."""
    what = f"batch {table.batch_size} ({table.precision}), {table.source}, {table.batches} batches"
    if table.coverage is None:
        return f"{what}: no operator times; the profiler's folder: {table.folder}"
    return (f"{what}: operators {table.operator_ms:.3f} ms of {table.wall_ms:.3f} ms a batch "
            f"({table.coverage * 100:.1f}% of the wall time)")


def rows(table: Any) -> Iterable[tuple[str, Sequence[list[str]]]]:
    """The two tables as text rows: ("op types", [[op type, nodes, ms, share], ...]), ("nodes", [...])."""
    yield "op types", [[r.op_type, str(r.nodes), f"{r.ms:.3f}", f"{r.share * 100:.1f}%"] for r in table.op_types]
    yield "nodes", [[r.node, r.op_type, f"{r.ms:.3f}", f"{r.share * 100:.1f}%"] for r in table.nodes]


def profile_batches(profile: bool, batches: int | None) -> int | None:
    """``--profile`` and ``--profile-batches N`` as ``RunOptions.profile`` (``None``: not given)."""
    if batches is not None and batches < 1:
        raise UsageError(f"--profile-batches: {batches} must be at least 1", note="e.g. --profile-batches 10")
    if batches is not None and not profile:
        raise UsageError("--profile-batches only applies with --profile", note="add --profile, or leave it out")
    return (batches or DEFAULT_BATCHES) if profile else None


def markdown_lines(profile: Any, md_table: Callable[..., list[str]]) -> list[str]:
    """report.md's section: each table's headline, then its op types and nodes."""
    lines = ["## Operator profile", "",
             f"`--profile`: {profile.batches} batches after the timed ones, under the backend's profiler (the timed "
             f"numbers above ran without it). The top {profile.top or TOP} op types and nodes by time, in ms per batch "
             "and as a share of all operator time; also in profile.csv.", ""]
    for table in profile.tables:
        lines += [f"### Batch {table.batch_size} ({table.precision})", "", headline(table) + ".", ""]
        for title, body in rows(table):
            if not body:
                continue
            header = ["op type", "nodes", "ms", "share"] if title == "op types" else ["node", "op type", "ms", "share"]
            cells = [[c.replace("|", "\\|") for c in row] for row in body]
            lines += [f"Top {title}:", "", *md_table(header, cells, ["---", "---", "---:", "---:"]), ""]
    return lines
