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
from zoo_core.progress import Progress
from zoo_core.runner import SIMPLIFIED_FILE, Prepared, Zoo, measure, prepare
from zoo_core.specs import ModelSpec, RunOptions, parse_batch_sizes, resolve_options

SIDES = ("zoo", "bare", "bare_sim")
LABELS = {
    "zoo": "zoo measure() on its compiled file",
    "bare": "bare ORT loop, same optimized file zoo runs",
    "bare_sim": "bare ORT loop, simplified (uncompiled) file",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--bs", default="1,8", help="batch sizes, e.g. 1,8")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per batch size")
    parser.add_argument("--iterations", type=int, default=20, help="timed batches per side per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per side per round")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser.parse_args(argv)


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


def bare_throughput(path: Path, spec: ModelSpec, bs: int, options: RunOptions) -> float:
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
    return 1000.0 * bs / statistics.fmean(times)


def sides(zoo: Zoo, spec: ModelSpec, options: RunOptions, prepared: Prepared, bs: int) -> dict[str, Callable[[], float]]:
    """One callable per measured side, each returning images/s."""
    compiled = prepared.compiled[bs]
    sim = simplified_file(prepared, bs)
    return {
        "zoo": lambda: measure(zoo, spec, compiled, options, Progress())["throughput"],
        "bare": lambda: bare_throughput(compiled.path, spec, bs, options),
        "bare_sim": lambda: bare_throughput(sim, spec, bs, options),
    }


def run_rounds(zoo: Zoo, spec: ModelSpec, options: RunOptions, prepared: Prepared, rounds: int) -> dict[int, dict[str, list[float]]]:
    """Interleave: each round, each batch size, every side once; the order flips each round."""
    runs = {bs: sides(zoo, spec, options, prepared, bs) for bs in options.batch_sizes}
    figures = {bs: {side: [] for side in SIDES} for bs in options.batch_sizes}
    for r in range(rounds):
        order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
        for bs in options.batch_sizes:
            for side in order:
                figures[bs][side].append(runs[bs][side]())
            got = "  ".join(f"{s} {figures[bs][s][-1]:.2f}" for s in SIDES)
            print(f"round {r + 1}/{rounds} bs {bs}: {got} img/s", file=sys.stderr, flush=True)
    return figures


def summarize(per_round: dict[str, list[float]]) -> dict[str, Any]:
    """Medians per side, and zoo/bare and zoo/bare_sim as per-round ratios (median, min, max)."""
    out: dict[str, Any] = {f"{s}_median": statistics.median(v) for s, v in per_round.items()}
    for ref in ("bare", "bare_sim"):
        ratios = [z / b for z, b in zip(per_round["zoo"], per_round[ref])]
        out[f"ratio_vs_{ref}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                  "per_round": ratios}
    out["per_round"] = per_round
    return out


def header(env: dict[str, Any], options: RunOptions, command: str) -> list[str]:
    return [
        f"command: {command}",
        f"model {options.model}, weights {options.weights}, {options.warmup} warm-up + {options.iterations} timed"
        " batches per side per round",
        f"onnxruntime {env['onnxruntime']}, CPUExecutionProvider, intra-op threads {options.threads}, "
        f"CPU {env['cpu']} ({env['cores']} cores)",
        "throughput = 1000 * bs / mean batch ms, images/s; medians over rounds; ratio = median (min..max) of per-round zoo/ref",
    ]


def table(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [f"{'bs':>3}  {'zoo':>8}  {'bare':>8}  {'bare_sim':>8}  {'zoo/bare':>22}  {'zoo/bare_sim':>22}"]
    for bs, row in results.items():
        cells = [f"{row[f'{s}_median']:8.2f}" for s in SIDES]
        ratios = [row[f"ratio_vs_{ref}"] for ref in ("bare", "bare_sim")]
        spans = [f"{r['median']:.3f} ({r['min']:.3f}..{r['max']:.3f})" for r in ratios]
        lines.append(f"{bs:>3}  {'  '.join(cells)}  {spans[0]:>22}  {spans[1]:>22}")
    lines += [f"  {s}: {LABELS[s]}" for s in SIDES]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in ([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    zoo, spec, options, prepared = zoo_prepare(args)
    figures = run_rounds(zoo, spec, options, prepared, args.rounds)
    results = {bs: summarize(per_round) for bs, per_round in figures.items()}
    env = fingerprint()
    if args.json:
        print(json.dumps({"command": command, "model": options.model, "weights": options.weights,
                          "warmup": options.warmup, "iterations": options.iterations, "rounds": args.rounds,
                          "threads": options.threads, "env": env, "sides": LABELS,
                          "results": [{"batch_size": bs, **row} for bs, row in results.items()]}, indent=2))
    else:
        print("\n".join([*header(env, options, command), "", *table(results)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
