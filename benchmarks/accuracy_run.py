"""Accuracy-run speed: streaming end-to-end images/s against pure inference, and preprocessing against the seed."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_preprocess import seed_preprocess

from zoo_core.engines import LocalEngine
from zoo_core.environment import fingerprint
from zoo_core.evaluate import evaluate, write_bins
from zoo_core.measure import latency_stats, throughput, timed_loop
from zoo_core.progress import Progress
from zoo_core.runner import Zoo, prepare
from zoo_core.specs import resolve_options


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """ImageNet-like JPEGs: about 500x375 (varied), smooth colour fields with some texture, and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines = []
    for i in range(1, count + 1):
        w, h = int(rng.integers(400, 640)), int(rng.integers(300, 480))
        coarse = rng.random((6, 8, 3)) * 255
        field = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(field + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        Image.fromarray(pixels).save(folder / name, quality=90)
        lines.append(f"{name} {int(rng.integers(0, 1000))}")
    # Beside the image folder, as in the seed (its script lists the folder unfiltered).
    (folder.parent / "val_label.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-accuracy-bench-"))
    try:
        data = work / "val"
        make_images(data, args.images)
        zoo = Zoo.create(cache_dir=work / "cache")
        spec = zoo.registry.model(args.model)
        options = resolve_options(spec, {
            "batch_sizes": (args.bs,), "weights": "random", "data": data, "labels": work / "val_label.txt", "warmup": 3,
            "iterations": max(3, args.images // args.bs), "workers": args.workers, "out": work / "out",
        })
        prepared = prepare(zoo, options)
        compiled = prepared.compiled[args.bs]
        rounds = []
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            wall = timed_loop(zoo, spec, compiled, options).wall
            pure = throughput(args.bs, latency_stats(wall)["mean"])
            shutil.rmtree(zoo.store.root / "evaluations", ignore_errors=True)  # no resuming: a whole run
            e2e = evaluate(zoo, prepared, options, Progress(), LocalEngine(zoo, options))["images_per_s"]

            seed_dir = work / f"seed-bins-{r}"
            start = time.perf_counter()
            seed_preprocess(data, seed_dir)
            seed_rate = args.images / (time.perf_counter() - start)
            zoo_dir = work / f"zoo-bins-{r}"
            start = time.perf_counter()
            write_bins(zoo, spec, options, zoo_dir, Progress())
            zoo_rate = args.images / (time.perf_counter() - start)
            shutil.rmtree(seed_dir)
            shutil.rmtree(zoo_dir)
            rounds.append({"pure": pure, "e2e": e2e, "seed_pre": seed_rate, "zoo_pre": zoo_rate})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratios = {
        "e2e_over_pure": statistics.median(r["e2e"] / r["pure"] for r in rounds),
        "zoo_pre_over_seed": statistics.median(r["zoo_pre"] / r["seed_pre"] for r in rounds),
    }
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    if args.json:
        print(json.dumps({"command": command, "rounds": rounds, "median": med, "ratios": ratios,
                          "env": fingerprint()}, indent=2))
        return
    env = fingerprint()
    print(f"command: {command}")
    print(f"{args.model}, batch {args.bs}, {args.images} generated JPEGs (~500x375), {args.workers} preprocessing "
          f"workers, {args.rounds} interleaved rounds; CPU {env['cpu']} ({env['cores']} cores), "
          f"onnxruntime {env['onnxruntime']}")
    print()
    print(f"{'images/s (median)':<46} {'value':>8}")
    print(f"{'pure inference (timed batches, generated input)':<46} {med['pure']:>8.2f}")
    print(f"{'accuracy run, end to end (decode+infer+save)':<46} {med['e2e']:>8.2f}")
    print(f"{'seed script, preprocessing, 1 process':<46} {med['seed_pre']:>8.2f}")
    print(f"{f'zoo preprocess, {args.workers} workers':<46} {med['zoo_pre']:>8.2f}")
    print()
    print(f"accuracy run / pure inference = {ratios['e2e_over_pure']:.3f}   (median of per-round ratios; goal >= 0.9)")
    print(f"zoo preprocess / seed script  = {ratios['zoo_pre_over_seed']:.3f}   "
          "(median of per-round ratios; goal >= 1.8)")


if __name__ == "__main__":
    main()
