"""Reports of a results object: ``results.csv``, ``report.md`` (the seed's table, then the details), the
``throughput.png`` chart, validation against the shipped JSON Schema, and the comparison of two runs.

Everything here reads the results object only (``zoo_core.runner.run``), so a report can be rebuilt from a
``results.json`` alone. Rows may carry fields that older runs lack (``stable``, ``windows``); all are optional.
matplotlib (the ``plot`` extra) and jsonschema are imported lazily.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import CheckError, UsageError, ZooError
from .files import atomic_write as _atomic
from .specs import DYNAMIC, STATIC
from .results import (AccuracyResult, DatasetFacts, Difference, Judgement, NotJudged, Row, RowComparison,
                      RunComparison, RunResults)

CSV_FILE = "results.csv"
MARKDOWN_FILE = "report.md"
CHART_FILE = "throughput.png"
SCHEMA_FILE = "results.schema.json"
NO_CHART = "matplotlib is not installed (pip install 'zoo[plot]'): no chart"

# The columns of the seed README's table (模型推理性能&精度), with an English gloss where the seed has none.
SEED_COLUMNS = ("芯片型号 (chip)", "Batch Size", "数据集 (dataset)", "精度(top1)", "性能 (images/s)")

CSV_COLUMNS = (
    "model", "backend", "device", "chip", "batch_size", "devices",
    "throughput", "throughput_device", "throughput_e2e",
    "latency_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_min_ms", "latency_max_ms",
    "latency_e2e_mean_ms", "top1", "top5", "images", "weights", "timed_batches", "stable",
    "precision", "top1_points", "top5_points", "agreement", "batch_mode",
)
LATENCY_KEYS = ("mean", "p50", "p90", "p99", "min", "max")

FORMULAS = (
    ("throughput (性能)", "1000 * batch_size / mean(latency_ms) images/s: ais_bench's formula "
     "(`1000*batchsize/NPU_compute_time.mean`); with several devices, the sum of each device's"),
    ("throughput_device", "1000 * batch_size / mean(device compute ms per batch), timed by the backend itself "
     "(ais_bench's NPU_compute_time); `-` where the backend has no such timer, and then throughput = throughput_e2e"),
    ("throughput_e2e", "1000 * batch_size / mean(latency_e2e_ms), where latency_e2e_ms is the wall time of each "
     "inference call (input copy, compute, output copy)"),
    ("latency mean/p50/p90/p99/min/max", "over the timed batches (after the warm-up batches) of one batch each; "
     "percentiles interpolated linearly between the closest ranks (numpy's default)"),
    ("top-1 / top-5 (精度)", "the fraction of scored images whose label is the highest-scoring class / is among "
     "the five highest-scoring classes"),
)


# ---------------------------------------------------------------------------------------------- helpers


def typed(results: RunResults | Mapping[str, Any]) -> RunResults:
    """A results object as :class:`~zoo_core.results.RunResults` (a dict, as read from results.json, is read)."""
    return results if isinstance(results, RunResults) else RunResults.from_json(dict(results))


def rows(results: RunResults | Mapping[str, Any]) -> list[Row]:
    """The results rows, by batch size (a batch size's precisions in the run's order)."""
    return sorted(typed(results).results, key=lambda r: r.batch_size)


def several_precisions(results: RunResults) -> bool:
    """Whether the rows differ in precision: then every table names each row's."""
    return len({r.precision for r in results.results}) > 1


def several_modes(results: RunResults) -> bool:
    """Whether the rows differ in batch mode (``--dynamic-batch=both``): then every table names each row's."""
    return len({r.batch_mode or STATIC for r in results.results}) > 1


def row_label(row: Row, precisions: bool, modes: bool) -> str:
    """A row's name in a table: its batch size, then its precision and its batch mode where the rows differ in it."""
    return str(row.batch_size) + (f" {row.precision or '-'}" if precisions else "") + (
        f" {row.batch_mode or STATIC}" if modes else "")


def batch_mode_lines(results: RunResults) -> list[str]:
    """Dynamic against static batch, in words: one line per batch size (and precision) timed both ways, with the
    throughput ratio dynamic / static; empty unless the run has both."""
    if not several_modes(results):
        return []
    static = {(r.batch_size, r.precision): r for r in results.results if (r.batch_mode or STATIC) == STATIC}
    lines = []
    for row in results.results:
        base = static.get((row.batch_size, row.precision))
        if row.batch_mode == DYNAMIC and base is not None:
            ratio = _ratio(row.throughput, base.throughput)
            lines.append(f"batch {row.batch_size}" + (f" {row.precision}" if several_precisions(results) else "")
                         + f": dynamic {row.throughput:.2f} img/s, static {base.throughput:.2f} img/s, "
                         + f"dynamic/static {_num(ratio, '.3f')}"
                         + (" (a row did not settle)" if False in (row.stable, base.stable) else ""))
    return lines


def precision_lines(results: RunResults) -> list[str]:
    """What a run's precisions cost, in words: one line per precision measured against the reference, and the
    calibration; empty for a run of one precision."""
    facts = results.precision
    if facts is None:
        return []
    lines = []
    for row in results.results:
        if row.agreement is not None:
            lines.append(f"{row.precision} against {facts.reference}: top-1 {_points(row.top1_points)}, "
                         f"top-5 {_points(row.top5_points)}, top-1 agreement {row.agreement * 100:.2f} % "
                         f"of {row.images} images")
    calibration = facts.calibration
    if calibration is not None:
        from .datasets import shown_name

        count = f"{calibration.images} image{'s' if calibration.images != 1 else ''}"
        lines.append(f"calibrated on {count} from {shown_name(calibration.source)}"
                     + (f" ({calibration.method})" if calibration.method else "")
                     + (": noise, performance only; accuracy would be meaningless" if facts.performance_only else ""))
    return lines


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} points"


def chip(results: RunResults | Mapping[str, Any]) -> str:
    """The seed's 芯片型号: the results' ``device_name``, which the backend's plugin named when the run was made
    (e.g. ``Ascend310P3``; the CPU model by default). An older results object has none: the backend's plugin, if
    installed here, names it from the object's ``env`` now."""
    results = typed(results)
    if results.device_name:
        return results.device_name
    backend = _installed_backends().get(results.backend)
    return device_name(backend, results.env.to_json()) if backend is not None else (
        results.env.cpu or results.device or "-")


def device_name(backend: Any, env: dict[str, Any], registry: Any = None) -> str:
    """What a run on ``backend`` (a ``BackendSpec``) measured, in the backend's plugin's words
    (``zoo_device_name``), else the CPU model of ``env``, else the backend's device kind."""
    registry = registry or _installed_registry()
    named = registry.call("zoo_device_name", backend, backend=backend, env=env)
    return str(named or env.get("cpu") or backend.device or "-")


@functools.lru_cache(maxsize=1)
def _installed_registry() -> Any:
    """The plugins installed here, once per process: only a results object without ``device_name`` needs them."""
    from .plugins import Registry, get_plugin_manager

    return Registry(get_plugin_manager())


def _installed_backends() -> dict[str, Any]:
    return _installed_registry().backends


def _device_count(row: Row) -> int:
    return len(row.devices or ()) or 1


def _num(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _windows(row: Row) -> int | None:
    """How many timing windows a row's statistics came from (the row's or its devices' ``windows``)."""
    if row.windows is not None:
        return len(row.windows)
    counts = [len(d.windows_ms) for d in row.devices or () if d.windows_ms is not None]
    return sum(counts) if any(counts) else None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else ("-" if value is None else str(value))
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], body: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    return [f"| {' | '.join(header)} |", f"| {' | '.join(align)} |", *(f"| {' | '.join(r)} |" for r in body)]


# ------------------------------------------------------------------------------------------------- CSV


def csv_rows(results: RunResults | Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per batch size, full precision, ``None`` for what was not measured."""
    results = typed(results)
    out = []
    for row in rows(results):
        latency, e2e = row.latency_ms, row.latency_e2e_ms
        out.append({
            "model": results.model, "backend": results.backend, "device": results.device,
            "chip": chip(results), "batch_size": row.batch_size, "devices": _device_count(row),
            "throughput": row.throughput, "throughput_device": row.throughput_device,
            "throughput_e2e": row.throughput_e2e,
            **{f"latency_{k}_ms": getattr(latency, k) for k in LATENCY_KEYS},
            "latency_e2e_mean_ms": e2e.mean if e2e is not None else None,
            "top1": row.top1, "top5": row.top5, "images": row.images,
            "weights": results.weights, "timed_batches": row.timed_batches,
            "stable": row.stable,
            "precision": row.precision, "top1_points": row.top1_points, "top5_points": row.top5_points,
            "agreement": row.agreement, "batch_mode": row.batch_mode,
        })
    return out


def write_csv(results: RunResults | Mapping[str, Any], path: Path) -> Path:
    """``results.csv``: one row per batch size (an empty cell for what was not measured), written atomically."""
    with _atomic(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in csv_rows(results):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return Path(path)


# -------------------------------------------------------------------------------------------- Markdown


def markdown(results: RunResults | Mapping[str, Any], chart: bool | None = None) -> str:
    """``report.md``'s text. ``chart``: whether ``throughput.png`` lies beside it (``None``: not mentioned)."""
    results = typed(results)
    table = rows(results)
    accuracy = results.accuracy
    dataset = accuracy.dataset if accuracy is not None else None
    random_weights = results.weights == "random"
    lines = [f"# {results.model} on {results.backend} ({results.device})", ""]
    lines += [f"Weights `{results.weights}`, preset `{results.preset or '-'}`, "
              f"created {results.created or '-'}, zoo {results.env.zoo or '-'}."
              + (f" Precision {', '.join(results.precision.precisions)}." if results.precision else ""), ""]
    several, modes = several_precisions(results), several_modes(results)

    # 1. The seed's table: chip x batch size x dataset x top-1 x throughput.
    body = []
    for row in table:
        name = chip(results) + (f" x{_device_count(row)}" if _device_count(row) > 1 else "")
        scored = row.top1 is not None
        batch = row_label(row, several, modes)
        body.append([name, batch, _cell(dataset.kind if dataset else None) if scored else "-",
                     _pct(row.top1), _num(row.throughput, ".1f") + (" (unstable)" if row.stable is False else "")])
    lines += _md_table(list(SEED_COLUMNS), body, ["---", "---:", "---", "---:", "---:"])
    lines.append("")
    notes = ["性能 is `throughput` in images/s = 1000 * batch_size / mean batch latency in ms (formulas below)."]
    if accuracy:
        others = sorted({row.batch_size for row in table if row.batch_size != accuracy.batch_size})
        notes.append(f"精度(top1) was measured {'in each precision' if several else 'once'}, at batch "
                     f"{accuracy.batch_size} on {accuracy.images} "
                     + (f"images; batch size{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} "
                        f"{'were' if len(others) > 1 else 'was'} timed only." if others else "images."))
    else:
        notes.append("No dataset was given (`--data`): accuracy was not measured; "
                     "throughput is timed on generated input.")
    if random_weights:
        notes.append("**Seeded random weights: the timings are real, but any accuracy figure is meaningless.**")
    notes += [f"Precision: {line}." for line in precision_lines(results)]
    notes += [f"Dynamic batch (one model compiled for every batch size), {line}." for line in batch_mode_lines(results)]
    engine = results.engine
    if engine is not None and engine.name == "ray":
        workers = engine.workers if isinstance(engine.workers, tuple) else ()
        devices = sorted({w.device or "?" for w in workers})
        notes.append(f"Ran on Ray ({engine.address}): {engine.actors} inference actor(s) on "
                     f"{', '.join(devices) or '-'}, {len(engine.decoders or ())} decoding worker(s), "
                     f"{engine.restarts_seen or 0} actor restart(s) seen.")
    lines += [*notes, ""]

    # 2. The details.
    lines += ["## Throughput and latency", ""]
    has_stable = any(r.recorded("stable") for r in table)
    has_windows = any(_windows(r) is not None for r in table)
    has_timed = any(r.recorded("timed_batches") for r in table)
    header = ["batch", "devices", "throughput (img/s)", "throughput_device", "throughput_e2e",
              *(f"{k} ms" for k in LATENCY_KEYS), "e2e mean ms", "top-1", "top-5", "images",
              *(["timed batches"] if has_timed else []), *(["windows timed"] if has_windows else []),
              *(["stable"] if has_stable else [])]
    body = []
    for row in table:
        stable = row.stable
        body.append([
            row_label(row, several, modes), str(_device_count(row)),
            _num(row.throughput, ".2f"),
            _num(row.throughput_device, ".2f"), _num(row.throughput_e2e, ".2f"),
            *(_num(getattr(row.latency_ms, k), ".3f") for k in LATENCY_KEYS),
            _num(row.latency_e2e_ms.mean if row.latency_e2e_ms is not None else None, ".3f"),
            _pct(row.top1), _pct(row.top5), _num(row.images, "d"),
            *([_num(row.timed_batches, "d")] if has_timed else []),
            *([_num(_windows(row), "d")] if has_windows else []),
            *([("-" if stable is None else "yes" if stable else "**no**")] if has_stable else []),
        ])
    lines += _md_table(header, body, ["---:"] * len(header))
    if any(r.stable is False for r in table):
        lines += ["", "A row marked **no** under stable did not settle: its timing windows disagreed until the time "
                      "limit (the window means are in results.json); re-run it on a quieter machine."]
    elif has_stable and all(r.stable is None for r in table):
        lines += ["", "stable `-`: a fixed `--iterations` count was timed, so stability was not judged."]
    lines.append("")

    lines += ["## Formulas", ""]
    lines += [f"- **{name}** = {text}." for name, text in FORMULAS]
    measurement = results.measurement
    if measurement is not None and measurement.formula:
        lines.append(f"- As recorded by the run: {measurement.formula}.")
    lines.append("")

    lines += ["## Measurement", ""]
    # every setting the run recorded, as it recorded them (a newer zoo's too)
    settings = {k: v for k, v in (measurement.to_json() if measurement else {}).items() if k != "formula"}
    if settings:
        lines += [", ".join(f"{k} {_cell(v)}" for k, v in settings.items()) + ".", ""]
    stages = results.stage_seconds or {}
    if stages:
        lines += ["Seconds in each stage that ran (a cached stage runs none): " + ", ".join(
            f"{k} {sum(v) if isinstance(v, tuple) else v:.2f}" for k, v in stages.items()) + ".", ""]

    lines += ["## Export check", ""]
    export = results.export.to_json() if results.export is not None else {}
    if export:
        lines += _md_table(["key", "value"], [[k, _cell(v)] for k, v in export.items()])
        if "max_abs_diff" in export:
            lines += ["", "max_abs_diff = max |ONNX Runtime output - PyTorch output| on the same input; "
                          "above `tolerance` the run stops."]
    else:
        lines.append("No export check recorded.")
    lines.append("")

    lines += ["## Weights", ""]
    if random_weights:
        lines.append("Seeded random weights (`--weights random`), the real architecture: performance only. "
                     "Any accuracy from them is meaningless.")
    else:
        lines.append(f"`{results.weights}`: the checkpoint's sha256.")
    lines.append("")

    if accuracy:
        lines += _accuracy_section(accuracy)

    if results.profile is not None:  # zoo run --profile
        from .profiling import markdown_lines

        lines += markdown_lines(results.profile, _md_table)

    if chart is not None:
        lines += ["## Chart", ""]
        lines.append(f"![throughput and latency versus batch size]({CHART_FILE})" if chart else NO_CHART + ".")
        lines.append("")

    lines += ["## Environment", ""]
    env = _flatten(results.env.to_json())
    lines += _md_table(["key", "value"], [[k, _cell(v)] for k, v in env.items()]) if env else ["-"]
    lines.append("")
    return "\n".join(lines)


def _accuracy_section(accuracy: AccuracyResult) -> list[str]:
    dataset = accuracy.dataset or DatasetFacts()
    skipped = accuracy.skipped
    lines = ["## Accuracy", ""]
    facts = [
        ["top-1", _pct(accuracy.top1)], ["top-5", _pct(accuracy.top5)],
        ["images scored", _cell(accuracy.images)], ["batch size", _cell(accuracy.batch_size)],
        ["dataset", f"{_cell(dataset.kind)} at {_cell(dataset.root)}"],
        ["preset", _cell(accuracy.preset)],
        ["images/s while streaming", _num(accuracy.images_per_s, ".1f")],
        ["unreadable images skipped", _cell(skipped.count if skipped is not None else 0)],
    ]
    lines += _md_table(["", ""], facts)
    problems = []
    if skipped is not None and skipped.count:
        problems.append(f"- {skipped.count} unreadable images skipped (`--skip-bad`), e.g. "
                        + ", ".join(f"`{_cell(i if isinstance(i, str) else i.to_json())}`" for i in skipped.images[:5]))
    for entry, label in ((dataset.unlabeled, "images without a label (not scored)"),
                         (dataset.labels_without_image, "labels without an image")):
        if entry is not None and entry.count:
            problems.append(f"- {entry.count} {label}, e.g. " + ", ".join(f"`{f}`" for f in entry.first[:5]))
    if dataset.ignored_files:
        problems.append(f"- {dataset.ignored_files} files in the folder that are not images, ignored")
    if problems:
        lines += ["", "Dataset problems:", "", *problems]
    lines.append("")
    return lines


def write_markdown(results: RunResults | Mapping[str, Any], path: Path, chart: bool | None = None) -> Path:
    """``report.md``: the seed's table, then latency, formulas, environment, export check, weights, accuracy.
    ``chart``: whether the chart was drawn; ``None`` looks for ``throughput.png`` beside ``path``."""
    path = Path(path)
    if chart is None:
        chart = (path.parent / CHART_FILE).is_file()
    with _atomic(path) as fh:
        fh.write(markdown(results, chart))
    return path


# ----------------------------------------------------------------------------------------------- chart


def write_chart(results: RunResults | Mapping[str, Any], path: Path) -> bool:
    """``throughput.png``: throughput, and mean and p99 latency, versus batch size, in two panels.
    False (and no file) without matplotlib. Uses the Agg canvas directly: no pyplot, no global backend switch."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    results = typed(results)
    table = rows(results)
    batch = [r.batch_size for r in table]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.plot(batch, [r.throughput for r in table], "o-", label="throughput")
    shaky = [r for r in table if r.stable is False]
    if shaky:
        left.plot([r.batch_size for r in shaky], [r.throughput for r in shaky], "x", color="red",
                  markersize=12, label="unstable: did not settle")
    if any(r.throughput_device is not None for r in table):
        left.plot(batch, [r.throughput_e2e for r in table], "s--", label="throughput_e2e")
    left.set(title="throughput = 1000 * batch / mean ms", xlabel="batch size", ylabel="images/s")
    left.set_ylim(bottom=0)
    for key, style in (("mean", "o-"), ("p99", "^--")):
        right.plot(batch, [getattr(r.latency_ms, key) for r in table], style, label=key)
    right.set(title="latency per batch", xlabel="batch size", ylabel="ms")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        if len(batch) > 1 and min(batch) >= 1 and max(batch) / min(batch) >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(batch, [str(b) for b in batch])
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"{results.model} on {results.backend}, {chip(results)}, weights {results.weights}")
    with _atomic(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return True


def files_line(out: Path) -> str:
    """One line naming the report files in ``out``, and saying so when there is no chart."""
    out = Path(out)
    names = [n for n in (CSV_FILE, MARKDOWN_FILE, CHART_FILE) if (out / n).is_file()]
    line = "report: " + ", ".join(str(out / n) for n in names)
    return line if CHART_FILE in names else f"{line}; {NO_CHART}"


# ---------------------------------------------------------------------------------------------- schema


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the results object, shipped in the package."""
    from importlib.resources import files

    return json.loads(files("zoo_core").joinpath("schema").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def validation_errors(results: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every way ``results`` breaks the schema (the shipped one unless ``schema`` is given), as ``path: message``
    lines; empty when it is valid."""
    try:
        import jsonschema
    except ImportError:
        raise ZooError("validating results needs jsonschema", note="pip install 'jsonschema>=4'") from None
    validator = jsonschema.Draft202012Validator(schema or load_schema())
    errors = sorted(validator.iter_errors(results), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def validate(results: Any) -> None:
    """Raise a CheckError naming the first problem when ``results`` does not match the shipped schema."""
    errors = validation_errors(results)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CheckError(f"results do not match the schema: {errors[0]}{more}",
                         note=f"the schema is zoo_core/schema/{SCHEMA_FILE}")


# --------------------------------------------------------------------------------------------- compare


def load_results(path: Path) -> RunResults:
    """The results object of ``results.json`` (or of a run's output folder holding one), with a clear ZooError
    for a missing file or one that is not a zoo results object (naming the field that is wrong)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    note = "pass the results.json that `zoo run` wrote in its --out folder, or that folder"
    if not path.is_file():
        raise ZooError(f"results file not found: {path}", note=note)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ZooError(f"cannot read {path}: {exc.strerror or exc}", note=note) from None
    except UnicodeDecodeError:
        raise ZooError(f"{path} is not a zoo results file: not JSON", note=note) from None
    return parse_results(text, str(path), note)


def parse_results(text: str, source: str, note: str) -> RunResults:
    """The results object in the JSON ``text``, checked as a results.json is: strict JSON (no NaN, no number
    beyond a float), the shipped schema, then the typed read; a ZooError naming ``source`` when it is not one."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_number, parse_int=_finite_number)
    except json.JSONDecodeError as exc:
        raise ZooError(f"{source} is not a zoo results file: not JSON ({exc.msg}, line {exc.lineno})",
                       note=note) from None
    except _BeyondFloatError as exc:
        raise ZooError(f"{source} holds {exc}, a number beyond any float: its figures cannot be compared",
                       note="no run measures it: compare the results.json that `zoo run` wrote, unedited") from None
    except _NotANumberError as exc:
        raise ZooError(f"{source} holds {exc}, which is not a number and not JSON: its figures cannot be compared",
                       note="run it again with this zoo, which stops instead of writing NaN") from None
    problem = _results_problem(data)
    if problem:
        raise ZooError(f"{source} is not a zoo results file: {problem}", note=note)
    return RunResults.from_json(data, source)


class _NotANumberError(ValueError):
    """``NaN`` or ``Infinity`` in a results file: Python's json reads them, strict JSON does not."""


def _no_constant(name: str) -> Any:
    raise _NotANumberError(name)


class _BeyondFloatError(ValueError):
    """A JSON number such as ``1e999`` that Python would read as infinity, or an integer no float holds."""


def _finite_number(text: str) -> int | float:
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
        finite = math.isfinite(value)
    except (OverflowError, ValueError):  # an int beyond float's range, or beyond the digits int() reads
        finite = False
    if not finite:
        raise _BeyondFloatError(text if len(text) <= 24 else f"{text[:22]}…")
    return value


def _results_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if "schema" not in data or not isinstance(data.get("results"), list):
        return "no `schema` and `results` keys"
    if data["schema"] != 1:
        return f"schema {data['schema']!r}, this zoo reads schema 1"
    seen = set()
    for i, row in enumerate(data["results"]):
        if not isinstance(row, dict) or not isinstance(row.get("batch_size"), int) \
                or not isinstance(row.get("throughput"), (int, float)):
            return f"results[{i}] has no integer batch_size and numeric throughput"
        key = (row["batch_size"], row.get("precision"), row.get("batch_mode") or STATIC)
        if key in seen:
            return f"results[{i}] repeats batch_size {row['batch_size']}" + (
                f" in {row['precision']}" if row.get("precision") else "") + (
                f" ({row['batch_mode']})" if row.get("batch_mode") else "")
        seen.add(key)
    errors = _row_errors(data["results"])
    return errors[0] if errors else None


def _row_errors(rows: list[Any]) -> list[str]:
    """How ``rows`` break the schema's bounds (a throughput above 0, a latency not negative, a top-1 from 0 to 1,
    a number that is not a boolean) for the figures they hold; a figure left out is not asked for."""
    defs = {name: {k: v for k, v in spec.items() if k != "required"} for name, spec in load_schema()["$defs"].items()}
    return [f"results/{error}" for error in
            validation_errors(rows, {"$defs": defs, "type": "array", "items": {"$ref": "#/$defs/row"}})]


def _ratio(b: float | None, a: float | None) -> float | None:
    return b / a if a and b is not None else None


def _delta(b: float | None, a: float | None) -> float | None:
    return b - a if a is not None and b is not None else None


def compare_runs(a: RunResults | Mapping[str, Any], b: RunResults | Mapping[str, Any], a_name: str | None = None,
                 b_name: str | None = None) -> RunComparison:
    """Run B against run A, row by row (matched by batch size): ratios are B / A (throughput above 1 and
    latency below 1 mean B is faster), top-1/top-5 deltas are B - A; then what differs between the runs.
    ``a_name``/``b_name``: what each was read from."""
    a, b = typed(a), typed(b)
    # One precision each (an fp32 run against an int8 one, say): rows match by batch size, and a precision that
    # differs is among the differences. A run of several precisions: rows match by batch size and precision.
    # The same for batch modes: a static run against a dynamic one matches by batch size, the mode among the
    # differences; a run of both modes (--dynamic-batch=both) matches by mode too.
    by_precision = any(len({r.precision for r in x.results}) > 1 for x in (a, b))
    by_mode = any(several_modes(x) for x in (a, b))

    def match_key(r: Row) -> tuple[int, str | None, str | None]:
        return r.batch_size, r.precision if by_precision else None, (r.batch_mode or STATIC) if by_mode else None

    rows_a = {match_key(r): r for r in a.results}
    rows_b = {match_key(r): r for r in b.results}
    matched = []
    for pair in sorted(set(rows_a) & set(rows_b), key=lambda k: (k[0], k[1] or "", k[2] or "")):
        ra, rb = rows_a[pair], rows_b[pair]
        e2e_a, e2e_b = ra.throughput_e2e, rb.throughput_e2e
        matched.append(RowComparison(
            batch_size=pair[0], precision=pair[1], batch_mode=pair[2],
            throughput_a=ra.throughput, throughput_b=rb.throughput,
            throughput_ratio=_ratio(rb.throughput, ra.throughput),
            throughput_e2e_ratio=_ratio(e2e_b, e2e_a),
            latency_ratio=_ratio(rb.latency_ms.mean, ra.latency_ms.mean),
            latency_p99_ratio=_ratio(rb.latency_ms.p99, ra.latency_ms.p99),
            top1_a=ra.top1, top1_b=rb.top1, top1_delta=_delta(rb.top1, ra.top1),
            top5_a=ra.top5, top5_b=rb.top5, top5_delta=_delta(rb.top5, ra.top5),
            stable_a=ra.stable, stable_b=rb.stable,
        ))
    ratios = [r.throughput_ratio for r in matched if r.throughput_ratio]
    run_keys: dict[str, tuple[Any, Any]] = {
        k: (getattr(a, k), getattr(b, k)) for k in ("model", "backend", "device", "weights", "preset")}
    precision_a, precision_b = (",".join(dict.fromkeys(r.precision or "-" for r in x.results)) for x in (a, b))
    run_keys["precision"] = (precision_a, precision_b)
    mode_a, mode_b = (",".join(dict.fromkeys(r.batch_mode or STATIC for r in x.results)) for x in (a, b))
    run_keys["batch_mode"] = (mode_a, mode_b)
    # every measurement setting each run recorded, as recorded (a newer zoo's too)
    measurement_a, measurement_b = ({k: v for k, v in (r.measurement.to_json() if r.measurement else {}).items()
                                     if k != "formula"} for r in (a, b))
    for key in sorted(set(measurement_a) | set(measurement_b)):
        run_keys[f"measurement.{key}"] = (measurement_a.get(key), measurement_b.get(key))
    env_a, env_b = _flatten(a.env.to_json()), _flatten(b.env.to_json())
    return RunComparison(
        a=a_name, b=b_name,
        rows=tuple(matched),
        # batch sizes the other run has no row of (a mode or precision it lacks is among the differences)
        only_in_a=tuple(sorted({k[0] for k in rows_a} - {k[0] for k in rows_b})),
        only_in_b=tuple(sorted({k[0] for k in rows_b} - {k[0] for k in rows_a})),
        throughput_ratio_geomean=math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
        differences={k: Difference(a=va, b=vb) for k, (va, vb) in run_keys.items() if va != vb},
        env={k: Difference(a=env_a.get(k), b=env_b.get(k))
             for k in sorted(set(env_a) | set(env_b)) if env_a.get(k) != env_b.get(k)},
    )


UNSTABLE_CHOICES = ("skip", "count")


def check_judgement(fail_below: float | None, unstable: str | None) -> None:
    """``--fail-below`` and ``--unstable`` as ``zoo report`` takes them: a usage error otherwise."""
    if fail_below is None and unstable is not None:
        raise UsageError("--unstable only applies with --fail-below", note="add --fail-below RATIO, or leave it out")
    if fail_below is not None and not 0 < fail_below < math.inf:  # NaN would judge nothing
        raise UsageError(f"--fail-below: {fail_below:g} is not a ratio above 0", note="write e.g. --fail-below 0.95")
    if unstable is not None and unstable not in UNSTABLE_CHOICES:
        raise UsageError(f"--unstable: {unstable!r} is not one of {', '.join(UNSTABLE_CHOICES)}",
                         note="write --unstable skip or --unstable count")


def judge(rows_: Sequence[RowComparison], fail_below: float, unstable: str = "skip") -> Judgement:
    """Which compared rows ``--fail-below`` judges, and which of those regressed (throughput ratio B/A below
    ``fail_below``). A row whose timing did not settle in A or B (``stable`` false) is noise, not a regression:
    ``unstable="skip"`` leaves it unjudged, with the reason; ``"count"`` judges it like any other row."""
    if unstable not in UNSTABLE_CHOICES:
        raise ValueError(f"unstable must be one of {UNSTABLE_CHOICES}, not {unstable!r}")
    judged, not_judged, regressed, precisions = [], [], [], []
    for r in rows_:
        shaky = [side for side, stable in (("A", r.stable_a), ("B", r.stable_b)) if stable is False]
        if r.throughput_ratio is None:
            not_judged.append(NotJudged(batch_size=r.batch_size, precision=r.precision,
                                        reason="no throughput ratio (A's throughput is 0)"))
        elif shaky and unstable == "skip":
            not_judged.append(NotJudged(batch_size=r.batch_size, precision=r.precision,
                                        reason=f"unstable in {' and '.join(shaky)}: the timing did not settle"))
        else:
            judged.append(r.batch_size)
            if r.throughput_ratio < fail_below:
                regressed.append(r.batch_size)
                precisions.append(r.precision)
    by_precision = any(p is not None for p in precisions)
    return Judgement(fail_below=fail_below, unstable=unstable, judged=tuple(judged), not_judged=tuple(not_judged),
                     regressed=tuple(regressed), regressed_precisions=tuple(precisions) if by_precision else None)


def not_judged_line(comparison: RunComparison) -> str | None:
    """The line saying which rows ``--fail-below`` did not judge, and why; ``None`` when it judged them all."""
    judgement = comparison.judgement
    if judgement is None or not judgement.not_judged:
        return None
    named = (f"batch {r.batch_size}{' ' + r.precision if r.precision else ''} ({r.reason})"
             for r in judgement.not_judged)
    return "not judged by --fail-below: " + "; ".join(named) + (
        "; --unstable count judges unstable rows too" if any(
            r.reason.startswith("unstable") for r in judgement.not_judged) else "")


def compare_two(a: str | Path | RunResults | Mapping[str, Any], b: str | Path | RunResults | Mapping[str, Any], *,
                fail_below: float | None = None, unstable: str | None = None) -> RunComparison:
    """``zoo report A B`` (and ``zoo_core.report(a, b)``): the flags checked, each side read (a results.json, a
    run's folder, a results object or its JSON), then the comparison, judged with ``fail_below``."""
    from dataclasses import replace

    from .limits import check_path

    check_judgement(fail_below, unstable)
    for label, side in (("A", a), ("B", b)):  # both paths checked before either file is read, as the CLI does
        if isinstance(side, (str, Path)):
            check_path(label, side)
    sides: list[RunResults] = []
    names: list[str | None] = []
    for label, side in (("A", a), ("B", b)):
        if isinstance(side, (str, Path)):
            sides.append(load_results(Path(side)))
            names.append(str(side))
        elif isinstance(side, (RunResults, Mapping)):  # checked as a results.json is: these are numbers to compare
            data = side.to_json() if isinstance(side, RunResults) else side
            try:
                text = json.dumps(data, allow_nan=False)
            except (TypeError, ValueError) as exc:  # NaN, infinity, or what JSON cannot hold
                raise ZooError(f"{label} is not a zoo results object: {exc}",
                               note="pass the results of zoo_core.run, or what it wrote, unedited") from None
            sides.append(parse_results(text, label, "pass the results of zoo_core.run, or what it wrote, unedited"))
            names.append(None)
        else:
            raise UsageError(f"{label}: a {type(side).__name__} is not a run",
                             note="pass a results.json, a run's folder, or the results of zoo_core.run")
    comparison = compare_runs(sides[0], sides[1], names[0], names[1])
    if fail_below is None:
        return comparison
    return replace(comparison, judgement=judge(comparison.rows, fail_below, unstable or "skip"))
