"""Precision: int8 against fp32 throughput at bs 1 and 8, and OpenVINO against ONNX Runtime, with the top-1
agreement of int8 with fp32 on the self-consistent set (tests/accuracy_data.py: JPEGs labelled with the seeded
model's own predictions), all measured in one run on this machine.

Each backend's rows come from one ``zoo_core.run(..., precision=["fp32", "int8"])``: fp32 and int8 are timed one
after the other in the same process, each batch size until its timing windows agree; the agreement is zoo's own
(the share of images whose int8 top-1 class is fp32's), calibrated on the first ``--calib-images`` images of the
set as a user's default run would be.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from accuracy_data import make_selfconsistent_dataset

import zoo_core
from zoo_core.errors import ZooError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnest50")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per row, as zoo run --max-seconds")
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-precision-bench-"))
    print(f"generating the self-consistent set of {args.model} in {work} ...", file=sys.stderr, flush=True)
    dataset = make_selfconsistent_dataset(work / "set", model=args.model)
    rows, runs = [], {}
    for backend in args.backends.split(","):
        try:
            results = zoo_core.run(args.model, bs=[1, 8], backend=backend, weights=dataset.weights, data=dataset.data,
                                   precision=["fp32", "int8"], calib_images=args.calib_images,
                                   max_seconds=args.max_seconds, out=work / f"out-{backend}", progress=True)
        except ZooError as exc:
            print(f"{backend}: skipped: {exc.message}", file=sys.stderr)
            continue
        runs[backend] = results
        for row in results.results:
            rows.append({"backend": backend, "precision": row.precision, "batch_size": row.batch_size,
                         "throughput": row.throughput, "stable": row.stable, "top1": row.top1,
                         "agreement": row.agreement, "top1_points": row.top1_points})
    base = {(r["batch_size"]): r["throughput"] for r in rows
            if r["backend"] == "onnxruntime" and r["precision"] == "fp32"}
    fp32 = {(r["backend"], r["batch_size"]): r["throughput"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        r["vs_own_fp32"] = r["throughput"] / fp32[(r["backend"], r["batch_size"])]
        r["vs_onnxruntime_fp32"] = r["throughput"] / base[r["batch_size"]] if r["batch_size"] in base else None
    calibration = next(iter(runs.values())).precision if runs else None
    summary = {
        "model": args.model, "images": len(dataset.labels), "rows": rows,
        "calibration": calibration.calibration.to_json() if calibration and calibration.calibration else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.model}, self-consistent set of {len(dataset.labels)} images; calibrated on the first "
          f"{args.calib_images} of them (minmax where the backend offers a choice)")
    print(f"{'backend':<12} {'precision':<9} {'bs':>3} {'img/s':>9} {'x own fp32':>10} {'x ORT fp32':>10} "
          f"{'top-1':>7} {'agreement':>9}  stable")
    for r in rows:
        agreement = f"{r['agreement'] * 100:.1f} %" if r["agreement"] is not None else "-"
        top1 = f"{r['top1'] * 100:.1f} %" if r["top1"] is not None else "-"
        versus = f"{r['vs_onnxruntime_fp32']:.2f}" if r["vs_onnxruntime_fp32"] is not None else "-"
        print(f"{r['backend']:<12} {r['precision']:<9} {r['batch_size']:>3} {r['throughput']:>9.2f} "
              f"{r['vs_own_fp32']:>10.2f} {versus:>10} {top1:>7} {agreement:>9}  {r['stable']}")


if __name__ == "__main__":
    main()
