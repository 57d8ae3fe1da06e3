"""Scale-out overhead: an accuracy run on Ray with 1 and 2 inference actors against the single-process run.

Each configuration runs the real command (``zoo run MODEL --data ... [--engine ray --actors K]``) on the same
generated JPEGs, interleaved round by round so that load on this shared machine falls on all of them alike.
The evaluation's saved shards are removed before every run (the compiled artifacts are kept: each
configuration compiles once, before the first round). Reported per configuration, as medians:

* ``images/s``: images / the evaluation's seconds (for Ray this includes starting the actor pools),
* ``steady images/s``: after the first batch is back (Ray only: its pools are up),
* ``wall s``: the whole command, Ray's start and shutdown included;

and the ratios of each Ray configuration against the single-process run. On a 2-core machine expect no
speed-up from compute: the ratios show the cost of the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_run import make_images


def run(config: list[str], args: argparse.Namespace, data: Path, cache: Path, out: Path) -> dict:
    shutil.rmtree(cache / "evaluations", ignore_errors=True)
    cmd = [sys.executable, "-m", "zoo_core", "run", args.model, "--bs", str(args.bs), "--weights", "random",
           "--data", str(data), "--labels", str(data.parent / "val_label.txt"), "--warmup", "1", "--iterations", "2",
           "--workers", str(args.workers), "--json", "--out", str(out), *config]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "ZOO_CACHE_DIR": str(cache)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(config) or 'single process'} failed:\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout)
    accuracy, engine = results["accuracy"], results["engine"]
    images, seconds = accuracy["images"], accuracy["seconds"]
    steady = None
    if engine["name"] == "ray" and engine.get("first_rows_seconds") is not None:
        first = engine["first_rows_seconds"]
        steady = (images - args.bs) / (seconds - first) if seconds > first else None
    return {"images_per_s": images / seconds, "steady_images_per_s": steady, "wall_s": wall,
            "top1": accuracy["top1"], "predictions": (out / "predictions.csv").read_text()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="decoding workers of every configuration")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    # An actor of 1 CPU runs 1 inference thread, where the single process runs one per core: the third
    # configuration gives one actor every core, to separate the engine's cost from the thread count.
    configs = {"single process": [], "ray, 1 actor": ["--engine", "ray", "--actors", "1"],
               "ray, 2 actors": ["--engine", "ray", "--actors", "2"],
               "ray, 1 actor x2": ["--engine", "ray", "--actors", "1", "--actor-cpus", str(os.cpu_count() or 1)]}
    work = Path(tempfile.mkdtemp(prefix="zoo-scale-bench-"))
    try:
        data = work / "images" / "val"
        make_images(data, args.images)
        cache = work / "cache"
        for config in configs.values():  # export and compile once per configuration, outside the timing
            run(config, args, data, cache, work / "warm")
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, config in configs.items():
                runs[name].append(run(config, args, data, cache, work / name.replace(" ", "-").replace(",", "")))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    predictions = {r["predictions"] for rs in runs.values() for r in rs}
    summary = {}
    for name, rs in runs.items():
        steady = [r["steady_images_per_s"] for r in rs if r["steady_images_per_s"] is not None]
        summary[name] = {"images_per_s": statistics.median(r["images_per_s"] for r in rs),
                         "steady_images_per_s": statistics.median(steady) if steady else None,
                         "wall_s": statistics.median(r["wall_s"] for r in rs)}
    base = summary["single process"]
    for row in summary.values():
        row["ratio_vs_single"] = row["images_per_s"] / base["images_per_s"]
        row["wall_ratio_vs_single"] = row["wall_s"] / base["wall_s"]
    report = {"model": args.model, "images": args.images, "bs": args.bs, "rounds": args.rounds,
              "cores": os.cpu_count(), "same_predictions_everywhere": len(predictions) == 1, "configs": summary}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.model}, {args.images} images, batch {args.bs}, {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} cores; medians")
    print(f"{'configuration':<16}{'images/s':>10}{'steady':>10}{'wall s':>9}{'ratio':>8}{'wall ratio':>12}")
    for name, row in summary.items():
        steady = f"{row['steady_images_per_s']:.1f}" if row["steady_images_per_s"] else "-"
        print(f"{name:<16}{row['images_per_s']:>10.1f}{steady:>10}{row['wall_s']:>9.1f}"
              f"{row['ratio_vs_single']:>8.3f}{row['wall_ratio_vs_single']:>12.3f}")
    print(f"same predictions file in every run: {report['same_predictions_everywhere']}")


if __name__ == "__main__":
    main()
