"""zoo score: top-1/top-5 of a folder of ais_bench output files (TXT, NPY or BIN), scored as zoo run scores."""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ZooError
from .ais_bench_names import samples_by_output_key
from .ascend import NAME  # ais_bench's outputs are the Ascend backend's

DEVICE = "npu"

if TYPE_CHECKING:
    import numpy as np

    from ..app import Zoo
    from ..results import RunResults
    from ..specs import ModelSpec, RunOptions

# ais_bench's output name: the input file's name cut at its FIRST dot, then _<output index>.<format>
OUTPUT_NAME = re.compile(r"^(?P<stem>[^.]+)_(?P<index>\d+)\.(?P<ext>txt|npy|bin)$", re.IGNORECASE)
SCORED_OUTPUT = 0  # the model's first output holds the class scores


@dataclass
class Scored:
    """What ``zoo score`` found: the typed results (None without a summary: no throughput to report), the
    accuracy block, and the summary's path if there was one."""

    results: RunResults | None
    accuracy: dict[str, Any]
    summary: Path | None
    unmatched: list[str]


def score(zoo: Zoo, model: ModelSpec, folder: Path, options: RunOptions) -> Scored:
    """Score the outputs in ``folder`` against the labels of ``options.data``; write predictions.csv, and with a
    summary beside the folder, results.json, results.csv and report.md into ``options.out``."""
    import numpy as np

    from ..evaluate import PREDICTIONS_FILE, _save_shard, _score, load_dataset

    if not folder.is_dir():
        raise ZooError(f"{folder} is not a folder of ais_bench outputs",
                       note="pass the folder ais_bench wrote (--output OUT --output_dirname NAME: OUT/NAME)")
    dataset = load_dataset(zoo, model, options)
    files = _output_files(folder)
    summary_path = folder.with_name(folder.name + "_summary.json")
    summary = _read_summary(summary_path, folder) if summary_path.is_file() else None
    keys = samples_by_output_key(dataset.samples)
    scores = np.zeros((len(dataset.samples), model.num_classes), np.float32)
    for row, (key, sample) in enumerate(keys.items()):
        found = files.get((key, SCORED_OUTPUT))
        if found is None:
            raise ZooError(f"no ais_bench output for image {sample.path.name} in {folder} (expected {key}_0.npy, "
                           ".bin or .txt)", note="run ais_bench on every image's .bin file (zoo preprocess), or "
                           "pass --data the folder of the images that were run (--limit N for the first N)")
        scores[row] = _read_output(found, model.num_classes)
    unmatched = sorted(p.name for (key, _), p in files.items() if key not in keys)
    if unmatched:
        print(f"warning: {len(unmatched)} output file(s) in {folder} match no image of the dataset and are not "
              f"scored (first: {unmatched[0]})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="zoo-score-") as state:
        _save_shard(Path(state) / "shard-000000.npz", scores, list(range(len(scores))), [])
        bs = _batch_size(summary) or 1
        accuracy = _score(zoo, model, dataset, [dataset.samples], Path(state), options, bs, 0,
                          {"setup_seconds": 0.0, "seconds": 0.0}, PREDICTIONS_FILE)
    accuracy.pop("scored")
    accuracy["preset"] = options.preset
    results = _results(zoo, model, options, accuracy, summary, summary_path) if summary is not None else None
    if results is not None and options.out is not None:
        from ..runner import write_results

        write_results(results, options.out)
    return Scored(results, accuracy, summary_path if summary is not None else None, unmatched)


def _output_files(folder: Path) -> dict[tuple[str, int], Path]:
    files: dict[tuple[str, int], Path] = {}
    for path in sorted(folder.iterdir()):
        match = OUTPUT_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        key = (match["stem"], int(match["index"]))
        if key in files:
            raise ZooError(f"{folder} holds two outputs {files[key].name} and {path.name} of the same input",
                           note="keep one output format in the folder (ais_bench --outfmt writes one)")
        files[key] = path
    return files


def _read_output(path: Path, size: int) -> np.ndarray:
    """One image's scores from an ais_bench output file: ``size`` finite float32 values."""
    import numpy as np

    ext = path.suffix.lower()
    if ext == ".bin":
        if path.stat().st_size != 4 * size:
            raise ZooError(f"ais_bench output {path} holds {path.stat().st_size} bytes, not the {4 * size} of "
                           f"{size} float32 scores", note="score outputs of this model (ais_bench --outfmt BIN "
                           "writes raw float32)")
        values = np.fromfile(path, dtype=np.float32)
    elif ext == ".npy":
        try:
            values = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
        except (ValueError, OSError) as exc:
            raise ZooError(f"ais_bench output {path} is not a readable .npy file: {exc}",
                           note="run ais_bench again with --outfmt NPY") from None
    else:
        values = np.asarray(_read_txt(path), dtype=np.float32)
    if values.size != size:
        raise ZooError(f"ais_bench output {path} holds {values.size} values, not the model's {size} scores",
                       note="score outputs of this model, run on one image per input file")
    if not np.isfinite(values).all():
        raise ZooError(f"ais_bench output {path} holds NaN or infinity; it cannot be scored",
                       note="check the model on the device with `zoo compare`")
    return values


def _read_txt(path: Path) -> list[float]:
    values: list[float] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            values += [float(v) for v in line.split()]
        except ValueError:
            raise ZooError(f"ais_bench output {path}, line {number}: {line.strip()[:60]!r} is not a row of numbers",
                           note="run ais_bench again with --outfmt TXT (or NPY)") from None
    return values


def _read_summary(path: Path, folder: Path) -> dict[str, Any]:
    """The summary beside the folder, checked: every sample's output files exist in ``folder``. A padded
    sample (its input repeats an earlier one's) is listed but not written, and is never scored."""
    try:
        summary = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ZooError(f"cannot read the ais_bench summary {path}: {exc}",
                       note="remove it, or run ais_bench again") from None
    info = summary.get("filesinfo") if isinstance(summary, dict) else None
    if not isinstance(info, dict):
        raise ZooError(f"the ais_bench summary {path} has no filesinfo", note="remove it, or run ais_bench again")
    seen: set[str] = set()
    for sample, entry in sorted(info.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        inputs = tuple(str(f) for f in entry.get("infiles", ())) if isinstance(entry, dict) else ()
        if inputs and inputs[0] in seen:
            continue  # the padding of a last partial batch: its first input again, no output of its own
        seen.update(inputs[:1])
        for name in entry.get("outfiles", ()) if isinstance(entry, dict) else ():
            if not (folder / Path(str(name)).name).is_file():
                raise ZooError(f"the ais_bench summary {path} names output {Path(str(name)).name} of sample "
                               f"{sample}, which is not in {folder}",
                               note="score the folder that summary was written with, or remove the summary")
    return summary


def _batch_size(summary: dict[str, Any] | None) -> int | None:
    args = summary.get("args") if summary is not None else None
    value = args.get("batchsize") if isinstance(args, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def _latency(summary: dict[str, Any]) -> dict[str, float] | None:
    import numpy as np

    times = summary.get("npu_compute_time_list")
    if not isinstance(times, list) or not times or not all(isinstance(t, (int, float)) for t in times):
        return None
    data = np.asarray(times, dtype=np.float64)
    if not np.isfinite(data).all() or (data < 0).any():
        return None
    return {"mean": float(data.mean()), "p50": float(np.percentile(data, 50)), "p90": float(np.percentile(data, 90)),
            "p99": float(np.percentile(data, 99)), "min": float(data.min()), "max": float(data.max())}


def throughput_of(summary: dict[str, Any]) -> float | None:
    """The throughput ais_bench measured (1000 * batch / mean device ms), if the summary holds a usable one."""
    import math

    value = summary.get("throughput")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def _check_throughput(path: Path, throughput: float, batch_size: int, latency: dict[str, float]) -> None:
    """ais_bench's throughput is 1000 * batchsize / mean(npu_compute_time_list): a summary whose numbers disagree
    (edited, or of another run) is not a result zoo prints."""
    implied = 1000 * batch_size / latency["mean"] if latency["mean"] > 0 else math.inf
    if not math.isclose(throughput, implied, rel_tol=0.01):
        raise ZooError(f"the ais_bench summary {path} gives throughput {throughput:g}, but its batchsize "
                       f"{batch_size} and mean npu_compute_time {latency['mean']:g} ms give {implied:g}",
                       note="pass the summary of the run that wrote these outputs, unedited")


def _dynamic_batch(summary: dict[str, Any]) -> bool:
    """Whether ais_bench ran a dynamic-batch .om: its summary's args record ``--dymBatch`` (0 when not given)."""
    args = summary.get("args")
    value = args.get("dymBatch") if isinstance(args, dict) else None
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _results(zoo: Zoo, model: ModelSpec, options: RunOptions, accuracy: dict[str, Any],
             summary: dict[str, Any], path: Path) -> RunResults | None:
    from ..results import RunResults
    from ..runner import SCHEMA, environment
    from ..specs import DYNAMIC

    throughput, latency, bs = throughput_of(summary), _latency(summary), _batch_size(summary)
    if throughput is None or latency is None or bs is None:
        return None
    _check_throughput(path, throughput, bs, latency)
    row = {"batch_size": bs, "throughput": throughput, "throughput_device": throughput, "latency_ms": latency,
           "top1": accuracy.get("top1"), "top5": accuracy.get("top5"), "images": accuracy["images"],
           **({"batch_mode": DYNAMIC} if _dynamic_batch(summary) else {})}  # a static row says none, as zoo run's
    data = {"schema": SCHEMA, "model": model.name, "backend": NAME, "device": DEVICE, "weights": "unknown",
            "preset": options.preset, "env": environment(zoo),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "accuracy": accuracy, "results": [row]}
    return RunResults.from_json(data, "the results of zoo score")
