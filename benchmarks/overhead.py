"""Zoo's timed throughput against a bare onnxruntime loop on the same ONNX file, batch and input."""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from zoo_core.backends.onnxruntime import session_options
from zoo_core.environment import fingerprint
from zoo_core.export import sample_input
from zoo_core.measure import latency_stats, throughput
from zoo_core.progress import Progress
from zoo_core.measure import measure
from zoo_core.runner import SIMPLIFIED_FILE, Prepared, Zoo, prepare
from zoo_core.specs import ModelSpec, RunOptions, parse_batch_sizes, resolve_options

SIDES = ("zoo", "bare", "bare_sim")
LABELS = {
    "zoo": "zoo's measure() on its compiled file (model.optimized.onnx)",
    "bare": "bare ORT loop on the same file zoo runs (model.optimized.onnx)",
    "bare_sim": "bare ORT loop on the simplified, uncompiled file (model.sim.onnx)",
}
REFS = ("bare", "bare_sim")
Stats = dict  # one side in one round: latency_stats() of its timed batches, in ms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--bs", default="1,8", help="batch sizes, e.g. 1,8")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--iterations", type=int, default=10, help="timed batches per side per round (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per side per round (default 3)")
    parser.add_argument("--weights", default="random", help="random (default) or a weights file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.iterations < 1 or args.warmup < 0:
        parser.error("--rounds and --iterations must be at least 1, --warmup at least 0")
    return args


def zoo_prepare(args: argparse.Namespace) -> tuple[Zoo, ModelSpec, RunOptions, Prepared]:
    """Export, simplify and compile through zoo itself (cached artifacts are reused)."""
    zoo = Zoo.create()
    spec = zoo.registry.model(args.model)
    options = resolve_options(spec, {
        "batch_sizes": parse_batch_sizes(args.bs), "weights": args.weights, "warmup": args.warmup,
        "iterations": args.iterations, "backend": "onnxruntime",
    })
    return zoo, spec, options, prepare(zoo, options)


def simplified_file(prepared: Prepared, bs: int) -> Path:
    """The simplified ONNX file that zoo compiled for batch ``bs``."""
    for artifact in prepared.artifacts:
        if artifact.stage == "simplify" and artifact.manifest["inputs"]["batch_size"] == bs:
            return artifact.file(SIMPLIFIED_FILE)
    raise LookupError(f"no simplify artifact for batch {bs}")


def bare_loop(path: Path, spec: ModelSpec, bs: int, options: RunOptions) -> Stats:
    """A plain session on ``path`` with zoo's session options: warm-up, then timed ``session.run`` calls."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(options.threads, "all"),
                                   providers=["CPUExecutionProvider"])
    feed = {name: sample_input(spec, bs, seed=options.seed) for name in spec.input_names}
    for _ in range(options.warmup):
        session.run(None, feed)
    times: list[float] = []
    for _ in range(options.iterations):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return latency_stats(times)


def sides(
    zoo: Zoo, spec: ModelSpec, options: RunOptions, prepared: Prepared, bs: int
) -> dict[str, Callable[[], Stats]]:
    """One callable per measured side, each returning its batch latency stats (ms)."""
    compiled = prepared.compiled[bs]
    sim = simplified_file(prepared, bs)
    return {
        "zoo": lambda: measure(zoo, spec, compiled, options, Progress())["latency_ms"],
        "bare": lambda: bare_loop(compiled.path, spec, bs, options),
        "bare_sim": lambda: bare_loop(sim, spec, bs, options),
    }


def run_rounds(
    zoo: Zoo, spec: ModelSpec, options: RunOptions, prepared: Prepared, rounds: int
) -> dict[int, dict[str, list[Stats]]]:
    """Interleave: each round, each batch size, every side once; the order reverses every other round."""
    runs = {bs: sides(zoo, spec, options, prepared, bs) for bs in options.batch_sizes}
    stats: dict[int, dict[str, list[Stats]]] = {bs: {s: [] for s in SIDES} for bs in options.batch_sizes}
    for r in range(rounds):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for bs in options.batch_sizes:
            for side in order:
                stats[bs][side].append(runs[bs][side]())
            got = "  ".join(f"{s} {throughput(bs, stats[bs][s][-1]['mean']):6.2f}" for s in SIDES)
            print(f"round {r + 1}/{rounds} bs {bs}: {got} img/s", file=sys.stderr, flush=True)
    return stats


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "per_round": values}


def summarize(bs: int, per_side: dict[str, list[Stats]]) -> dict[str, Any]:
    """Per side, throughput by round (from the mean batch ms, as zoo reports it); zoo/ref ratios by round."""
    tput = {s: [throughput(bs, st["mean"]) for st in per_side[s]] for s in SIDES}
    tput_p50 = {s: [throughput(bs, st["p50"]) for st in per_side[s]] for s in SIDES}
    row: dict[str, Any] = {"batch_size": bs}
    row["throughput"] = {s: spread(tput[s]) for s in SIDES}
    for ref in REFS:
        row[f"zoo/{ref}"] = spread([z / b for z, b in zip(tput["zoo"], tput[ref], strict=True)])
        row[f"zoo/{ref} (p50)"] = spread([z / b for z, b in zip(tput_p50["zoo"], tput_p50[ref], strict=True)])
    row["latency_ms"] = per_side
    return row


def header(env: dict[str, Any], options: RunOptions, rounds: int, command: str) -> list[str]:
    return [
        f"command: {command}",
        f"model {options.model}, weights {options.weights}; {rounds} interleaved rounds, each side per round: "
        f"new session, {options.warmup} warm-up + {options.iterations} timed batches",
        f"onnxruntime {env['onnxruntime']}, CPUExecutionProvider, intra-op threads {options.threads}, "
        f"CPU {env['cpu']} ({env['cores']} cores)",
        "throughput = 1000 * bs / mean batch ms (images/s), median over rounds;",
        "ratio = median (min..max) over rounds of that round's zoo/ref throughput; p50: the same from median batch ms",
    ]


def ratio_cell(r: dict[str, Any]) -> str:
    return f"{r['median']:.3f} ({r['min']:.3f}..{r['max']:.3f})"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'bs':>3}  {'zoo':>8}  {'bare':>8}  {'bare_sim':>8}  {'zoo/bare':>21}  {'zoo/bare p50':>12}  "
             f"{'zoo/bare_sim':>21}"]
    for row in rows:
        cells = "  ".join(f"{row['throughput'][s]['median']:8.2f}" for s in SIDES)
        lines.append(f"{row['batch_size']:>3}  {cells}  {ratio_cell(row['zoo/bare']):>21}  "
                     f"{row['zoo/bare (p50)']['median']:>12.3f}  {ratio_cell(row['zoo/bare_sim']):>21}")
    return lines + [f"  {s}: {LABELS[s]}" for s in SIDES]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(shlex.quote(a) for a in ("python", sys.argv[0], *given))
    zoo, spec, options, prepared = zoo_prepare(args)
    stats = run_rounds(zoo, spec, options, prepared, args.rounds)
    rows = [summarize(bs, per_side) for bs, per_side in stats.items()]
    env = fingerprint()
    if args.json:
        files = {bs: {"optimized": str(prepared.compiled[bs].path), "simplified": str(simplified_file(prepared, bs))}
                 for bs in options.batch_sizes}
        print(json.dumps({"command": command, "model": options.model, "weights": options.weights,
                          "rounds": args.rounds, "warmup": options.warmup, "iterations": options.iterations,
                          "threads": options.threads, "env": env, "sides": LABELS, "files": files,
                          "results": rows}, indent=2))
    else:
        print("\n".join([*header(env, options, args.rounds, command), "", *table(rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
