"""The ``zoo`` command line: thin click commands over plain functions; rich only renders."""

from __future__ import annotations

import errno
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import EXIT_ENV, EXIT_USAGE, ZooError
from .limits import check_path

if TYPE_CHECKING:
    from .results import CompareResult, RunComparison, RunResults

# Failures of the machine rather than of zoo: a full disk, a quota, a read-only or forbidden folder.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.ENAMETOOLONG}


def _zoo():  # noqa: ANN202
    """The application, made once per command (a command with plugin options made it to parse them)."""
    from .runner import Zoo

    ctx = click.get_current_context(silent=True)
    meta: dict[str, Any] = ctx.meta if ctx is not None else {}
    if "zoo.app" not in meta:
        meta["zoo.app"] = Zoo.create()
    return meta["zoo.app"]


def _emit_json(data: Any) -> None:
    """Strict JSON on stdout: a NaN or infinity that got this far is a bug, and raises rather than print `NaN`."""
    click.echo(json.dumps(data, indent=2, allow_nan=False))


def _console():  # noqa: ANN202
    from .console import make_console

    return make_console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zoo", prog_name="zoo")
def cli() -> None:
    """zoo: take a model through export, compile, inference and metrics on any backend, in one command."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def list_cmd(as_json: bool) -> None:
    """Registered models."""
    from .inventory import list_models

    rows = list_models(_zoo().registry)
    if as_json:
        return _emit_json(rows)
    from .console import make_table, plain

    table = make_table("model", "family", "input", "weights", "plugin", box=None, header_style="bold")
    for r in rows:
        kind, present = r["weights_kind"], r["weights_cached"]  # present: None for a loader, known once it runs
        weights = (kind or "-") + (" (cached)" if kind == "url" and present else " (missing)" if kind == "package"
                                   and not present else "")
        table.add_row(*map(plain, (r["name"], r["family"], "x".join(map(str, r["input_shape"])), weights,
                                   r["plugin"])))
    _console().print(table)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info_cmd(model: str, as_json: bool) -> None:
    """A model's full configuration."""
    from .inventory import model_info

    data = model_info(_zoo().registry, model)
    if as_json:
        return _emit_json(data)
    from .console import make_table, plain

    table = make_table("key", "value", show_header=False, box=None)
    for key, value in data.items():
        table.add_row(plain(key, "bold"), plain(_info_value(key, value)))
    _console().print(table)


def _info_value(key: str, value: Any) -> str:
    """A value of ``zoo info`` as readable lines: a preset as its name and what it does, a mapping as one
    ``field: value`` line per field that is set, a list of plain values as JSON on one line."""
    if key == "presets" and isinstance(value, list):
        return "\n".join(_preset_line(preset) for preset in value) or "-"
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                         for k, v in value.items() if v is not None) or "-"
    return json.dumps(value) if isinstance(value, list) else "-" if value in (None, "") else str(value)


def _preset_line(preset: Any) -> str:
    """A preset named by the model (a core preset) as its name; one it declares as its name and description
    (else its steps)."""
    if not isinstance(preset, dict):
        return str(preset)
    what = preset.get("description") or ", ".join(str(s.get("step")) for s in preset.get("steps") or [])
    return f"{preset.get('name')}: {what}" if what else str(preset.get("name"))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def plugins_cmd(as_json: bool) -> None:
    """Plugins with their hooks, versions and load errors; backends and whether they can run here."""
    from .inventory import plugins_info

    from .engines import registered

    zoo = _zoo()
    _plugin_options(zoo)  # so that a plugin's broken option is listed with its problems
    registered(zoo)  # and a plugin's broken engine
    data = plugins_info(zoo.registry)
    if as_json:
        return _emit_json(data)
    from .console import make_table, plain

    console = _console()
    table = make_table("plugin", "version", "source", "hooks / error", box=None, header_style="bold")
    for p in data["plugins"]:
        detail = plain(f"failed: {p['error']}", "red") if p["error"] else \
            plain(", ".join(h.removeprefix("zoo_") for h in p["hooks"]))
        table.add_row(plain(p["name"]), plain(p["version"]), plain(p["source"]), detail)
    console.print(table)
    console.print()
    console.print(_backends_table(data["backends"]))


def _backends_table(backends: list[dict[str, Any]]) -> Any:
    """Each backend with its device and whether it can run here (and why not)."""
    from rich.markup import escape

    from .console import make_table, plain

    table = make_table("backend", "device", "state", box=None, header_style="bold")
    for b in backends:
        state = "[green]available[/]" if b["available"] else f"[yellow]unavailable[/]: {escape(b['reason'])}"
        table.add_row(plain(b["name"]), plain(b["device"]), state)
    return table


def _run_flags(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


# -------------------------------------------------------------------------
# Options that plugins add for their backends and engines (zoo_add_options)
# -------------------------------------------------------------------------

_PLUGIN_PARAM = "plugin_option__"  # click's name of a plugin option: this prefix and its key


class _WithPluginOptions(click.Command):
    """A command that also takes the options plugins add for their backends and engines. They are loaded when
    the command is parsed or shows its help, never when ``zoo`` starts (``zoo list`` and ``zoo --help`` load no
    plugin for them); ``--help`` lists each under its backend's (or engine's) name."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return [*super().get_params(ctx), *_plugin_params(ctx)]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            for owner in getattr(param, "zoo_owners", None) or ["Options"]:
                sections.setdefault(owner if owner == "Options" else f"Options of {owner}", []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


def _plugin_options(zoo: Any) -> list[Any]:
    """The plugins' options, found once per command (``zoo_core.arguments.plugin_options``)."""
    from .arguments import plugin_options

    return plugin_options(zoo, click.get_current_context().meta, core_flags())


def core_flags() -> set[str]:
    """The flags of ``zoo run`` and ``zoo compare`` themselves: a plugin's option cannot take one."""
    return {o for command in (run_cmd, compare_cmd) for p in command.params for o in p.opts} | {"-h", "--help"}


def _plugin_params(ctx: click.Context) -> list[click.Option]:
    if "zoo.params" not in ctx.meta:
        params: dict[str, click.Option] = {}
        for spec in filter(lambda spec: spec.command_line, _plugin_options(_zoo())):
            if spec.key not in params:  # options of the same name (several backends' --precision-mode) share a flag
                params[spec.key] = click.Option(
                    [spec.flag, _PLUGIN_PARAM + spec.key], is_flag=spec.type is bool, multiple=spec.multiple,
                    default=None, help=spec.help,
                    metavar=spec.metavar or {int: "INTEGER", float: "FLOAT"}.get(spec.type, "TEXT"))
                params[spec.key].zoo_owners = []  # type: ignore[attr-defined]
            params[spec.key].zoo_owners.append(spec.owner)  # type: ignore[attr-defined]
        ctx.meta["zoo.params"] = list(params.values())
    return ctx.meta["zoo.params"]


def _pop_plugin_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The plugin options given (key -> value), taken out of click's ``flags``."""
    names = [name for name in flags if name.startswith(_PLUGIN_PARAM)]
    given = {name.removeprefix(_PLUGIN_PARAM): flags.pop(name) for name in names}
    return {key: value for key, value in given.items() if value not in (None, ())}


_BACKEND_OPT_HELP = ("An option of the run's backend, by key (its name, with _ for -); repeatable. The sections "
                     "below list each backend's options.")


@cli.command("run", cls=_WithPluginOptions)
@click.argument("model")
@click.option("--bs", "batch_sizes", default="8", show_default=True,
              help="Batch size, or a sweep: 1,4,8,16,32,64 (zoo export and zoo compare take one).")
@click.option("--backend", default=None, help="Backend name (default: the best available; see `zoo plugins`).")
@click.option("--weights", default=None, help="A checkpoint file, or `random` for seeded random weights.")
@click.option("--onnx", type=click.Path(path_type=Path), default=None,
              help="Use this ONNX file instead of exporting the model.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset folder for an accuracy run.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Label file (default DATA/val_label.txt).")
@click.option("--classes", type=click.Path(path_type=Path), default=None,
              help="Class folder names, one a line in class-index order (default: ImageNet-1k synsets, else sorted).")
@click.option("--dataset", default=None, help="Dataset kind: imagenet-val or folder (default: guessed).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images only (natural order).")
@click.option("--workers", type=int, default=None, help="Preprocessing processes, at least 1 (default: one per core).")
@click.option("--skip-bad", is_flag=True, default=None, help="Count and skip unreadable images instead of stopping.")
@click.option("--shard-images", type=int, default=None,
              help="Save accuracy outputs every N images, to resume from.  [default: 256]")
@click.option("--preset", default=None, help="Preprocessing preset (default: the model's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: zoo-runs/MODEL-BACKEND-TIME).")
@click.option("--warmup", type=int, default=None, help="Warm-up batches before timing.  [default: 5]")
@click.option("--iterations", "--loop", "iterations", type=int, default=None,
              help="Time exactly N batches (default: windows until the timing is stable).")
@click.option("--window", type=int, default=None, help="Batches per timing window.  [default: 10]")
@click.option("--agree", type=float, default=None,
              help="Stable when 3 consecutive windows agree within this share.  [default: 0.10]")
@click.option("--max-seconds", type=float, default=None,
              help="Per batch size, stop timing after this and mark the row unstable.  [default: 60]")
@click.option("--threads", type=int, default=None, help="Inference threads, at least 1 (default: one per core).")
@click.option("--opset", type=int, default=None, help="ONNX opset for export (default: the model's).")
@click.option("--seed", type=int, default=None, help="Seed of random weights and generated input.  [default: 0]")
@click.option("--device", "devices", default=None,
              help="Accelerator ids, e.g. 0 or 0,1,2,3 (one process each; several only where the backend has separate "
              "devices, not on the CPU).")
@click.option("--backend-opt", "backend_opts", multiple=True, metavar="KEY=VALUE", help=_BACKEND_OPT_HELP)
@click.option("--engine", default=None, metavar="NAME",
              help="local: this process; ray: the devices of a Ray cluster (pip install 'zoo[ray]'); a plugin may "
              "add others (`zoo doctor` lists them).  [default: local]")
@click.option("--address", default=None, help="Ray: the cluster to join, e.g. 10.0.0.1:6379 (default: a local Ray).")
@click.option("--actors", type=int, default=None,
              help="Ray: inference actors (default: one per NPU or GPU of the cluster; 1 on CPUs).")
@click.option("--actor-cpus", type=float, default=None,
              help="Ray: CPUs each inference actor reserves.  [default: 1 on CPUs, 0 beside an NPU or GPU]")
@click.option("--precision", "precisions", default=None, metavar="fp32|fp16|int8",
              help="What to compute in, or a comma list to sweep (fp32,int8: a row each, and with --data the "
              "accuracy int8 costs).  [default: the backend's own]")
@click.option("--calib", default=None, metavar="DIR|random",
              help="Images to calibrate int8 on (default: the first --calib-images of --data); `random`: noise, "
              "performance only.")
@click.option("--calib-images", type=int, default=None, help="Calibration images.  [default: 512]")
@click.option("--calib-method", default=None, metavar="minmax|entropy|percentile",
              help="How the quantizer sets ranges, where the backend offers a choice (default: its first).")
@click.option("--dynamic-batch", "dynamic_batch", is_flag=False, flag_value="only", default=None,
              type=click.Choice(["only", "both"]),
              help="Compile one model for all the --bs sizes (where the backend can: Ascend ATC's "
              "--dynamic_batch_size) and time each size on it; --dynamic-batch=both: the per-size models too, a row "
              "each, side by side.")
@click.option("--profile", is_flag=True,
              help="After the timed batches, profile more under the backend's profiler: the top 20 op types and "
              "nodes by time (terminal, profile.csv, results.json, report.md).")
@click.option("--profile-batches", type=int, default=None, help="Batches to profile.  [default: 10]")
@click.option("--json", "as_json", is_flag=True, help="Print only the results object on stdout.")
@click.option("--dry-run", is_flag=True, help="Print the commands that would do the same by hand; run nothing.")
def run_cmd(
    model: str, batch_sizes: str, devices: str | None, backend_opts: tuple[str, ...], as_json: bool, dry_run: bool,
    precisions: str | None, profile: bool, profile_batches: int | None, dynamic_batch: str | None, **flags: Any,
) -> None:
    """Export, compile and time MODEL on a backend: the recipe in one command."""
    from .progress import RichProgress
    from .python_api import run_options, run_with, with_default_out
    from .profiling import profile_batches as profile_batches_option
    from .runner import plan
    from .specs import parse_batch_sizes, parse_devices, parse_precisions

    zoo = _zoo()
    zoo.registry.model(model)  # an unknown model is the first thing said
    plugin_flags = _pop_plugin_flags(flags)
    options = run_options(zoo, model, _run_flags(
        batch_sizes=parse_batch_sizes(batch_sizes), devices=parse_devices(devices) if devices else None,
        precisions=parse_precisions(precisions) if precisions is not None else None,
        profile=profile_batches_option(profile, profile_batches),
        batch_modes={None: None, "only": ("dynamic",), "both": ("static", "dynamic")}[dynamic_batch], **flags,
    ), plugin_flags, backend_opts, click.get_current_context().meta)
    if dry_run:
        data = plan(zoo, options)
        if as_json:
            return _emit_json(data)
        for line in data["commands"]:
            click.echo(line)
        if data["note"]:
            click.echo(f"# {data['note']}", err=True)
        return None
    options = with_default_out(zoo, options)
    results = run_with(zoo, options, RichProgress())
    if as_json:
        return _emit_json(results.to_json())
    _print_results(results, options.out)


@cli.command("preprocess", cls=_WithPluginOptions)
@click.argument("model")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Folder of images.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder for the .bin files.")
@click.option("--preset", default=None, help="Preprocessing preset (default: the model's).")
@click.option("--limit", type=int, default=None, help="The first N images only (natural order).")
@click.option("--workers", type=int, default=None, help="Processes (default: one per core).")
@click.option("--skip-bad", is_flag=True, default=None, help="Count and skip unreadable images.")
@click.option("--backend", default=None,
              help="Write what this backend's compiled model takes, with its options (e.g. --aipp): as zoo run would "
              "feed it (default: the model's own input).")
@click.option("--backend-opt", "backend_opts", multiple=True, metavar="KEY=VALUE", help=_BACKEND_OPT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def preprocess_cmd(model: str, output: Path, as_json: bool, backend_opts: tuple[str, ...], **flags: Any) -> None:
    """Write the seed's <stem>.bin inputs (raw float32 CHW; with --backend, its compiled model's input), for
    running ais_bench by hand."""
    from .evaluate import write_bins
    from .progress import RichProgress
    from .specs import resolve_options

    check_path("-o", output)
    zoo = _zoo()
    spec = zoo.registry.model(model)
    plugin_flags = _pop_plugin_flags(flags)
    if flags.get("backend") is None and not plugin_flags and not backend_opts:
        options = resolve_options(spec, _run_flags(**flags))
    else:  # the input the backend's compiled model takes, with its options: the model as it runs it
        from .python_api import run_options
        from .runner import run_model

        options = run_options(zoo, model, _run_flags(**flags), plugin_flags, backend_opts,
                              click.get_current_context().meta)
        backend = zoo.registry.backend(options.backend, require_available=False)
        spec = run_model(zoo, backend, options)
        options = options.with_(preset=spec.preset_for(backend.name, options.preset))
    data = write_bins(zoo, spec, options, output, RichProgress())
    if as_json:
        return _emit_json(data)
    click.echo(f"wrote {data['written']} files to {data['folder']} (skipped {data['skipped']['count']})")


@cli.command("debug", cls=_WithPluginOptions)
@click.argument("model")
@click.option("--backends", required=True, metavar="REF,TARGET",
              help="The reference and the backend to check, e.g. torch,onnxruntime or onnxruntime,ascend.")
@click.option("--bs", "batch_size", default="1", show_default=True, help="Batch size of both backends.")
@click.option("--weights", default=None, help="A checkpoint file, or `random` for seeded random weights.")
@click.option("--onnx", type=click.Path(path_type=Path), default=None,
              help="Use this ONNX file instead of exporting (torch as the reference still uses its own export).")
@click.option("--precision", default=None, metavar="fp32|fp16|int8", help="The target's precision (as zoo run's).")
@click.option("--calib", default=None, metavar="DIR|random", help="Images to calibrate int8 on (as zoo run's).")
@click.option("--calib-images", type=int, default=None, help="Calibration images.  [default: 512]")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Use the first --samples images of this folder as inputs (default: seeded generated input).")
@click.option("--layers", default=None, metavar="REGEX",
              help="Compare only the tensors whose name, op type or node name matches (default: every tensor).")
@click.option("--every", type=int, default=None, help="Compare every Nth tensor (of those --layers selects).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance.  [default: 1e-4]")
@click.option("--rtol", type=float, default=None, help="Relative tolerance.  [default: 1e-3]")
@click.option("--samples", type=int, default=None, help="Inputs to run (default: one batch).")
@click.option("--group", type=int, default=None, help="Marked tensors per compile.  [default: 48]")
@click.option("--bisect", is_flag=True, help="Cut the graph and halve, even where the target returns tensors.")
@click.option("--seed", type=int, default=None, help="Seed of random weights and generated input.  [default: 0]")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for debug.csv and debug.json (default: zoo-runs/MODEL-debug-REF-TARGET-TIME).")
@click.option("--backend-opt", "backend_opts", multiple=True, metavar="KEY=VALUE",
              help="An option of one of the backends, by key; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def debug_cmd(
    model: str, backends: str, batch_size: str, precision: str | None, data: Path | None, layers: str | None,
    every: int | None, atol: float | None, rtol: float | None, samples: int | None, group: int | None,
    bisect: bool, out: Path | None, backend_opts: tuple[str, ...], as_json: bool, **flags: Any,
) -> None:
    """Find where two backends part: every intermediate tensor of the graph compared on the same inputs, in graph
    order, and the first one over the tolerance."""
    from .comparison import DEFAULT_ATOL, DEFAULT_RTOL, compare_options
    from .debug import GROUP, check_out, debug, one_precision, write_files
    from .progress import RichProgress

    zoo = _zoo()
    plugin_flags = _pop_plugin_flags(flags)
    options, names = compare_options(zoo, model, batch_size, backends, _run_flags(**flags), plugin_flags,
                                     backend_opts, click.get_current_context().meta)
    if out is not None:
        check_path("--out", out)
        check_out(out)
    asked = one_precision(precision) if precision is not None else None
    inputs = _debug_inputs(zoo, options, data, samples) if data is not None else None
    result = debug(zoo, options, names, layers=layers, every=every,
                   atol=DEFAULT_ATOL if atol is None else atol, rtol=DEFAULT_RTOL if rtol is None else rtol,
                   samples=samples, inputs=inputs, precision=asked, group=GROUP if group is None else group,
                   bisect=bisect, progress=RichProgress())
    if out is None:  # beside the runs: zoo-runs/MODEL-debug-REF-TARGET-TIME
        import time

        out = Path("zoo-runs") / f"{model}-debug-{'-'.join(names)}-{time.strftime('%Y%m%d-%H%M%S')}"
    written = write_files(result, out)
    if as_json:
        return _emit_json(result)
    _print_debug(result)
    for path in written:
        _console().print(f"wrote {path}", style="dim", markup=False, highlight=False)


def _debug_inputs(zoo: Any, options: Any, data: Path, samples: int | None) -> Any:
    """The first images of ``data``, preprocessed as the model's ONNX input."""
    from .datasets import Sample, text_of
    from .evaluate import preprocess_array
    from .precision import calibration_images

    model = zoo.registry.model(options.model)
    paths = calibration_images(data, samples or options.batch_sizes[0], flag="--data")
    return preprocess_array(zoo, model, options, [Sample(text_of(p.stem), p, None) for p in paths], None, "image",
                            "remove or replace the file")


def _print_debug(result: dict[str, Any]) -> None:
    from .console import make_table, plain
    from .debug import verdict

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    title = (f"{result['model']}: {result['target']} against {result['reference']}, batch {result['batch_size']}, "
             f"{result['samples']} samples, {result['mode']}")
    columns = ("#", "tensor", "op", "max abs", "max rel", "rel L2", "cosine", "result")
    table = make_table(*columns, right=("#", "max abs", "max rel", "rel L2", "cosine"), title=title,
                       header_style="bold")
    first = result["first_exceeding"]
    for row in [*result["rows"], *result["outputs"]]:
        mark = "[green]ok[/]" if row["passed"] else "[red]over[/]"
        if first is not None and row["tensor"] == first["tensor"]:
            mark = "[bold red]FIRST over[/]"
        table.add_row(str(row["index"] + 1), plain(row["tensor"]), plain(row["op_type"]), number(row["max_abs"]),
                      number(row["max_rel"]), number(row.get("rel_l2")),
                      "-" if row["cosine"] is None else f"{row['cosine']:.6f}", mark)
    console = _console()
    console.print(table)
    console.print(verdict(result), markup=False, highlight=False, soft_wrap=True)


@cli.command("score")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--model", "model", required=True, help="The model whose outputs these are.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Folder of the images that were run.")
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="Label file (default: the dataset's).")
@click.option("--limit", type=int, default=None, help="The first N images only (natural order), as zoo run --limit.")
@click.option("--preset", default=None,
              help="The preprocessing the inputs were made with (zoo preprocess --preset), for the results "
              "(default: the model's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for predictions.csv and the report (default: zoo-runs/MODEL-ascend-score-TIME).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def score_cmd(output_dir: Path, model: str, out: Path | None, as_json: bool, **flags: Any) -> None:
    """Score a folder of ais_bench outputs (TXT, NPY or BIN) against the dataset's labels, as zoo run scores."""
    from .backends.ais_bench_output import NAME, score
    from .specs import resolve_options

    if out is None:
        out = Path("zoo-runs") / f"{model}-{NAME}-score-{time.strftime('%Y%m%d-%H%M%S')}"
    check_path("--out", out)
    zoo = _zoo()
    spec = zoo.registry.model(model)
    scored = score(zoo, spec, output_dir, resolve_options(spec, _run_flags(out=out, **flags)))
    if scored.results is None:
        why = "no summary beside the folder" if scored.summary is None else "the summary holds no device times"
        click.echo(f"throughput: none ({why}); results.json not written", err=True)
    if as_json:
        return _emit_json(scored.results.to_json() if scored.results is not None else
                          {"model": spec.name, "backend": NAME, "throughput": None, "accuracy": scored.accuracy})
    accuracy = scored.accuracy
    line = f"{spec.name}: top-1 {accuracy['top1']:.4f}, top-5 {accuracy['top5']:.4f} over {accuracy['images']} images"
    if scored.results is not None:
        line += f", throughput {scored.results.results[0].throughput:.2f} images/s (ais_bench)"
    click.echo(line)
    click.echo(f"wrote {out}")


@cli.command("calibrate")
@click.argument("model")
@click.option("--calib", default=None, metavar="DIR|random", help="Images to calibrate on, or `random` (noise).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="A dataset folder whose first --calib-images images calibrate (when --calib is not given).")
@click.option("--bs", "batch_sizes", default="8", show_default=True, help="The batch size of each .bin file.")
@click.option("--calib-images", type=int, default=None, help="Calibration images.  [default: 512]")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder for the .bin files.")
@click.option("--preset", default=None, help="Preprocessing preset (default: the model's).")
@click.option("--workers", type=int, default=None, help="Processes (default: one per core).")
@click.option("--seed", type=int, default=None, help="Seed of --calib random.  [default: 0]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def calibrate_cmd(model: str, batch_sizes: str, output: Path, as_json: bool, **flags: Any) -> None:
    """Write the int8 calibration set, preprocessed as for evaluation, as whole-batch raw float32 .bin files
    (batch-000000.bin, ...): AMCT's --data_dir, for quantizing by hand what `zoo run --precision int8` does."""
    from .precision import calibrate, plan_precisions
    from .progress import RichProgress
    from .specs import BackendSpec, parse_batch_sizes, resolve_options

    check_path("-o", output)
    zoo = _zoo()
    spec = zoo.registry.model(model)
    sizes = parse_batch_sizes(batch_sizes, single="calibrate")
    options = resolve_options(spec, _run_flags(batch_sizes=sizes, precisions=("int8",), **flags))
    plan = plan_precisions(BackendSpec("bins", precisions=("int8",)), options)
    calibration = calibrate(zoo, spec, options, plan, RichProgress())
    try:
        written = calibration.write_bins(output, sizes[0])
    except OSError as exc:
        raise ZooError(f"cannot write to {output}: {exc.strerror or exc}", note="choose a writable folder with -o") \
            from None
    data = {"model": spec.name, "folder": str(output), "files": len(written), "batch_size": sizes[0],
            "calibration": calibration.describe()}
    if as_json:
        return _emit_json(data)
    click.echo(f"wrote {len(written)} batches of {sizes[0]} images to {output}")


def _print_results(results: RunResults, out: Path | None) -> None:
    from rich.markup import escape

    from . import reporting as report
    from .console import make_table
    from .datasets import classes_line, shown_name

    title = f"{results.model} on {results.backend} ({results.device}), weights {results.weights}"
    measurement = results.measurement
    if measurement is not None and measurement.mode == "throughput":
        title += ", throughput mode" + (f" ({measurement.streams} streams)" if measurement.streams else "")
    has_device = any(row.throughput_device is not None for row in results.results)
    several, modes = report.several_precisions(results), report.several_modes(results)
    cost = any(row.agreement is not None for row in results.results)
    columns = ["batch", *(["precision"] if several else []), *(["batch mode"] if modes else []), "throughput (img/s)",
               *(["end-to-end (img/s)"] if has_device else []), "mean ms", "p50 ms", "p90 ms", "p99 ms", "top-1",
               "top-5", *(["top-1 vs fp32", "agreement"] if cost else [])]
    table = make_table(*columns, right=tuple(columns), title=title, header_style="bold")
    for row in results.results:
        lat = row.latency_ms
        acc = [f"{value * 100:.2f} %" if value is not None else "-" for value in (row.top1, row.top5)]
        e2e = [_fixed(row.throughput_e2e)] if has_device else []
        mark = " [yellow]unstable[/]" if row.stable is False else ""
        costs = [f"{row.top1_points:+.2f} pts" if row.top1_points is not None else "-",
                 f"{row.agreement * 100:.2f} %" if row.agreement is not None else "-"] if cost else []
        table.add_row(str(row.batch_size), *([row.precision or "-"] if several else []),
                      *([row.batch_mode or "static"] if modes else []), f"{row.throughput:.2f}{mark}", *e2e,
                      *(f"{value:.2f}" for value in (lat.mean, lat.p50, lat.p90, lat.p99)), *acc, *costs)
    console = _console()
    console.print(table)
    for line in report.precision_lines(results):
        console.print(f"precision: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in report.batch_mode_lines(results):
        console.print(f"dynamic batch: {line}", markup=False, highlight=False, soft_wrap=True)
    unsettled = [str(row.batch_size) for row in results.results if row.stable is False]
    if unsettled and results.measurement is not None:
        console.print(f"[yellow]unstable[/]: the timing of batch {', '.join(unsettled)} did not settle within "
                      f"--max-seconds {results.measurement.max_seconds:g} s (3 windows never agreed within "
                      f"--agree {results.measurement.agree:g}); re-run on a quieter machine or allow more "
                      "--max-seconds", highlight=False)
    accuracy = results.accuracy
    if accuracy is not None:
        skipped = accuracy.skipped.count if accuracy.skipped is not None else 0
        dataset = accuracy.dataset
        console.print(f"accuracy on {accuracy.images} images at batch {accuracy.batch_size} "
                      f"({dataset.kind if dataset else '-'}, preset {accuracy.preset})"
                      + (f", {skipped} unreadable skipped" if skipped else ""), markup=False, highlight=False)
        for names, label in ((dataset and dataset.unlabeled, "images without a label"),
                             (dataset and dataset.labels_without_image, "labels without an image")):
            if names and names.count:
                console.print(f"[yellow]{names.count} {label}[/], "
                              f"e.g. {escape(', '.join(map(shown_name, names.first[:3])))}")
        if dataset and dataset.classes:  # how class folders were numbered: the labels the scores rest on
            console.print(f"classes: {classes_line(dataset.classes.to_json())}", markup=False, highlight=False,
                          soft_wrap=True)
        if dataset and dataset.hidden:
            console.print(f"[dim]{dataset.hidden} hidden entries (names starting with '.') ignored[/]")
    if results.weights == "random":
        console.print("[dim]weights: seeded random (performance only; accuracy would be meaningless)[/]")
    if results.profile is not None:
        _print_profile(results.profile)
    if out is not None:
        console.print(f"results: {out / 'results.json'}", style="dim", markup=False, highlight=False)
        console.print(_report_files_line(out), style="dim", markup=False, highlight=False, soft_wrap=True)


def _print_profile(profile: Any) -> None:
    from rich.markup import escape

    from .console import make_table
    from .profiling import headline, rows

    console = _console()
    for table in profile.tables:
        console.print(f"profile: {headline(table)}", markup=False, highlight=False, soft_wrap=True)
        for title, body in rows(table):
            if body:
                header = ("op type", "nodes") if title == "op types" else ("node", "op type")
                shown = make_table(*header, "ms", "share", right=("ms", "share"), title=f"top {title}")
                for row in body:
                    shown.add_row(*(escape(c) for c in row))
                console.print(shown)


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@cli.command("compare", cls=_WithPluginOptions)
@click.argument("model")
@click.option("--backends", required=True,
              help="Backends to compare, e.g. onnxruntime,torch; the reference is torch when named, else the first.")
@click.option("--bs", "batch_size", default="8", show_default=True,
              help="Batch size of every backend: one, not a sweep (that is zoo run's).")
@click.option("--weights", default=None, help="A checkpoint file, or `random` for seeded random weights.")
@click.option("--onnx", type=click.Path(path_type=Path), default=None,
              help="Use this ONNX file instead of exporting (the torch backend still runs the weights).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance.  [default: 1e-4]")
@click.option("--rtol", type=float, default=None, help="Relative tolerance.  [default: 1e-3]")
@click.option("--samples", type=int, default=None,
              help="Inputs to compare (default: 2 * bs + 1, so one batch is padded).")
@click.option("--seed", type=int, default=None, help="Seed of random weights and generated input.  [default: 0]")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Compare on these images (the model's preprocessing) instead of generated inputs; with labels, "
              "each backend's top-1/top-5 too.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Label file (default DATA/val_label.txt).")
@click.option("--limit", type=int, default=None, help="With --data: the first N images only (natural order).")
@click.option("--min-agreement", type=float, default=None, metavar="SHARE",
              help="Fail (exit 4) when a backend keeps the reference's top-1 class on fewer than this share of the "
              "samples, 0..1; without --atol/--rtol it is the only check.")
@click.option("--precision", default=None, metavar="fp32|fp16|int8",
              help="What the backends other than the reference compute in.  [default: each backend's own]")
@click.option("--calib", default=None, metavar="DIR|random",
              help="With --precision int8: images to calibrate on (default: the first images of --data).")
@click.option("--backend-opt", "backend_opts", multiple=True, metavar="KEY=VALUE",
              help="An option of one of the compared backends, by key; repeatable. The sections below list each "
              "backend's.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def compare_cmd(
    model: str, backends: str, batch_size: str, atol: float | None, rtol: float | None, samples: int | None,
    min_agreement: float | None, precision: str | None, backend_opts: tuple[str, ...], as_json: bool,
    **flags: Any,
) -> None:
    """Run the same inputs through several backends and check every output against the reference's, and the
    top-1 agreement of class scores."""
    from .progress import RichProgress
    from .comparison import compare_options, compare_with

    zoo = _zoo()
    plugin_flags = _pop_plugin_flags(flags)
    options, names = compare_options(zoo, model, batch_size, backends, _run_flags(**flags), plugin_flags,
                                     backend_opts, click.get_current_context().meta)
    result = compare_with(zoo, options, names, samples, atol, rtol, RichProgress(), min_agreement, precision)
    if as_json:
        _emit_json(result.to_json())
    else:
        _print_comparison(result)
    result.raise_if_failed()  # after the table: exit 4 with the tolerance that would have passed


def _print_comparison(result: CompareResult) -> None:
    from rich.markup import escape

    from .comparison import ceil_sig
    from .console import make_table, plain

    def number(value: float | None, round_up: bool = False) -> str:
        return "-" if value is None else f"{ceil_sig(value) if round_up else value:.3g}"

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    inputs = (f"{result.samples} images of {result.data}" if result.data is not None
              else f"{result.samples} samples (seed {result.seed})")
    title = (f"{result.model} at batch {result.batch_size}, {inputs}, weights {result.weights}"
             + (f", ONNX {result.onnx}" if result.onnx else "")
             + (f", {result.precision} on all but {result.reference}" if result.precision else ""))
    task = any(c.recorded("top1_agreement") for c in result.comparisons)
    scored = result.data is not None and any(c.top1 is not None for c in result.comparisons)
    columns = ("backend", "reference", "output", "max abs", "max rel", "needed atol", "needed rtol", "result",
               *(("top-1 agree", "top-5 overlap") if task else ()), *(("top-1", "top-5") if scored else ()))
    table = make_table(*columns, right=tuple(c for c in columns if c.startswith(("max", "needed", "top"))),
                       title=title, header_style="bold",
                       caption=f"needed atol: at --rtol {result.rtol:g}; needed rtol: at --atol {result.atol:g} "
                       "(rounded up)" + ("; top-1 agree: samples whose top-1 class is the reference's; top-5 "
                                         "overlap: shared top-5 classes / 5" if task else ""))
    for c in result.comparisons:
        verdict = ("[green]PASS[/]" if c.passed else "[red]FAIL[/]") if result.tolerances_judged else \
            ("pass" if c.passed else "fail") + " (not judged)"
        first = c.recorded("top1_agreement")
        table.add_row(plain(c.backend), plain(c.reference), plain(c.output), number(c.max_abs),
                      number(c.max_rel),
                      number(c.needed_atol, True), number(c.needed_rtol, True), verdict,
                      *((share(c.top1_agreement), share(c.top5_overlap)) if task and first else
                        ("", "") if task else ()),
                      *((share(c.top1), share(c.top5)) if scored and first else ("", "") if scored else ()))
    console = _console()
    console.print(table)
    if scored:
        console.print(f"{escape(result.reference)} (reference): top-1 {share(result.reference_top1)}, top-5 "
                      f"{share(result.reference_top5)} against the labels", highlight=False)
    if result.tolerances_judged:
        failed = sum(not c.passed for c in result.comparisons)
        verdict = (f"[green]PASS[/]: every output agrees with {escape(result.reference)} within" if not failed
                   else f"[red]FAIL[/]: {failed} of {len(result.comparisons)} output(s) differ from "
                   f"{escape(result.reference)} beyond")
        console.print(f"{verdict} --atol {result.atol:g} --rtol {result.rtol:g}", highlight=False)
    if result.min_agreement is not None:
        agreed = [c for c in result.comparisons if c.recorded("top1_agreement")]
        below = [c for c in agreed if c.top1_agreement is None or c.top1_agreement < result.min_agreement]
        verdict = (f"[green]PASS[/]: every backend keeps {escape(result.reference)}'s top-1 class on at least"
                   if not below else f"[red]FAIL[/]: {', '.join(escape(c.backend) for c in below)} keep "
                   f"{escape(result.reference)}'s top-1 class on less than")
        console.print(f"{verdict} --min-agreement {result.min_agreement:g} of the samples", highlight=False)


@cli.command("report")
@click.argument("run_a", metavar="A", type=click.Path(path_type=Path))
@click.argument("run_b", metavar="B", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--fail-below", type=float, default=None, metavar="RATIO",
              help="Exit 4 when a batch size's throughput ratio B/A is below RATIO (e.g. 0.95).")
@click.option("--unstable", type=click.Choice(["skip", "count"]), default=None,
              help="With --fail-below, a row whose timing did not settle in A or B: skip it (listed as not "
              "judged) or count it like any other.  [default: skip]")
def report_cmd(run_a: Path, run_b: Path, as_json: bool, fail_below: float | None, unstable: str | None) -> None:
    """Compare run B with run A (results.json files or their folders), row by row: throughput ratio, latency
    ratio, accuracy delta, and what differs between the runs, for regression checks."""
    from .python_api import report
    from .reporting import not_judged_line

    comparison = report(run_a, run_b, fail_below=fail_below, unstable=unstable)
    if as_json:
        _emit_json(comparison.to_json())
    else:
        _print_run_comparison(comparison, run_a, run_b)
    line = not_judged_line(comparison)
    if line:  # on stderr beside --json, whose stdout is the object alone
        click.echo(line, err=as_json)
    comparison.raise_if_regressed()


def _print_run_comparison(data: RunComparison, run_a: Path, run_b: Path) -> None:
    from .console import make_table, plain

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    def points(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:+.2f} pp"

    def img_s(value: float | None, stable: bool | None) -> str:
        return num(value, ".2f") + (" [yellow]unstable[/]" if stable is False else "")

    several = any(r.precision for r in data.rows)  # rows matched by batch size and precision: say which is which
    modes = any(r.batch_mode for r in data.rows)  # and by batch mode
    columns = ("batch", *(["precision"] if several else []), *(["batch mode"] if modes else []), "A img/s",
               "B img/s", "throughput B/A", "e2e B/A", "latency B/A", "p99 B/A", "top-1 delta", "top-5 delta")
    table = make_table(*columns, right=columns, title=f"B = {run_b} vs A = {run_a}", header_style="bold",
                       caption="ratio = B / A: throughput above 1 and latency below 1 mean B is faster; "
                       "top-1/top-5 delta = B - A in percentage points")
    for r in data.rows:
        table.add_row(str(r.batch_size), *([r.precision or "-"] if several else []),
                      *([r.batch_mode or "-"] if modes else []), img_s(r.throughput_a, r.stable_a),
                      img_s(r.throughput_b, r.stable_b),
                      num(r.throughput_ratio, ".3f"), num(r.throughput_e2e_ratio, ".3f"),
                      num(r.latency_ratio, ".3f"), num(r.latency_p99_ratio, ".3f"),
                      points(r.top1_delta), points(r.top5_delta))
    console = _console()
    console.print(table)
    if data.throughput_ratio_geomean is not None:
        console.print(f"geometric mean throughput ratio B/A: {data.throughput_ratio_geomean:.3f}")
    for sizes, label in ((data.only_in_a, "only in A"), (data.only_in_b, "only in B")):
        if sizes:
            console.print(f"[yellow]batch sizes {label}[/]: {', '.join(map(str, sizes))}")
    differences = {**data.differences, **{f"env.{k}": v for k, v in data.env.items()}}
    if differences:
        diff = make_table("differs", "A", "B", title="run and environment differences", header_style="bold")
        for key, pair in differences.items():
            diff.add_row(plain(key), *(plain(value if isinstance(value, str) else json.dumps(value))
                                       for value in (pair.a, pair.b)))
        console.print(diff)
    else:
        console.print("same model, backend, weights, measurement settings and environment")


def _report_files_line(out: Path) -> str:
    from .reporting import files_line

    return files_line(out)


@cli.group("cache")
def cache_group() -> None:
    """The artifact cache: exports, simplified models, compiled models, saved accuracy shards."""


@cache_group.command("path")
def cache_path_cmd() -> None:
    """Print the cache folder ($ZOO_CACHE_DIR, else the platform's user cache folder)."""
    from .artifacts import cache_root

    click.echo(str(cache_root()))


@cache_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def cache_ls_cmd(as_json: bool) -> None:
    """List the cached artifacts with their size and age."""
    from .artifacts import ArtifactStore

    rows = ArtifactStore().entries()
    if as_json:
        return _emit_json(rows)
    from rich.markup import escape

    from .console import make_table, plain

    table = make_table("model", "backend", "batch", "stage", "size", "modified", "state", "key", box=None,
                       header_style="bold")
    for r in rows:
        state = "ok" if r["complete"] else f"[yellow]damaged: it {escape(str(r['problem']))}[/]" if r.get("problem") \
            else "[yellow]incomplete (left by a crash)[/]"
        table.add_row(plain(r["model"] or "-"), plain(r["backend"] or "-"), str(r["batch_size"] or "-"),
                      plain(r["stage"]), _size(r["bytes"]),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r["modified"])), state, plain(r["key"]))
    console = _console()
    console.print(table)
    from .cache_layout import disk_bytes, foreign

    console.print(f"{len(rows)} artifacts, {_size(sum(r['bytes'] for r in rows))} in {ArtifactStore().root}; "
                  f"{_size(disk_bytes(ArtifactStore().root))} on disk (identical files are stored once)",
                  markup=False, highlight=False)

    others = foreign(ArtifactStore().root)
    if others:
        more = ", ..." if len(others) > 3 else ""
        console.print(f"{len(others)} not zoo's, left alone: {', '.join(others[:3])}{more}", markup=False,
                      highlight=False)


@cache_group.command("clean")
@click.option("--older-than", default=None, metavar="AGE", help="Only artifacts unused for AGE, e.g. 30m, 12h, 7d.")
@click.option("--yes", "-y", is_flag=True, help="Clean everything without asking (needed without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def cache_clean_cmd(older_than: str | None, yes: bool, as_json: bool) -> None:
    """Remove what zoo cached (and whatever a crash left half-written); never what zoo did not make, nor what a
    running zoo uses."""
    from .artifacts import ArtifactStore

    age = _parse_age(older_than) if older_than is not None else None
    store = ArtifactStore()
    if age is None and not yes:
        if not sys.stdin.isatty():
            raise ZooError("cleaning the whole cache needs a confirmation, and there is no terminal to ask on",
                           note="pass --yes to clean everything, or --older-than AGE", exit_code=EXIT_USAGE)
        if not click.confirm(f"Remove every artifact zoo cached in {store.root}?", default=False, err=True):
            click.echo("nothing removed", err=True)
            return None
    data = store.clean(age)
    if as_json:
        return _emit_json(data)
    click.echo(f"removed {data['removed']} artifacts, {_size(data['bytes'])}"
               + (f"; {data['in_use']} in use by a running zoo, kept" if data["in_use"] else "")
               + (f"; {data['foreign']} not zoo's, left in place" if data["foreign"] else ""))


def _parse_age(text: str) -> float:
    """``30m``, ``12h``, ``7d``: a positive number and a unit (s, m, h, d, w), as seconds."""
    import re

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])\s*", text)
    if not match or float(match[1]) <= 0:
        raise ZooError(f"--older-than: {text!r} is not an age",
                       note="write a positive number and a unit, e.g. 30m, 12h or 7d", exit_code=EXIT_USAGE)
    return float(match[1]) * units[match[2]]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["model", "dataset", "backend"]), default="model", show_default=True,
              help="What the plugin provides.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Where to create the zoo-NAME/ folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def new_plugin_cmd(name: str, kind: str, directory: Path, as_json: bool) -> None:
    """Write a plugin package skeleton, zoo-NAME/, whose tests pass after `pip install -e`."""
    from .scaffold import write_plugin

    skeleton = write_plugin(name, kind, directory)
    if as_json:
        return _emit_json({"root": str(skeleton.root), "kind": kind, "name": skeleton.names.name,
                           "package": skeleton.names.package, "files": [str(f) for f in skeleton.files]})
    click.echo(f"wrote {skeleton.root}/, a {kind} plugin '{skeleton.names.name}' (package {skeleton.names.package}):")
    for file in skeleton.files:
        click.echo(f"  {file}")
    where = skeleton.root if skeleton.root.is_absolute() else f"./{skeleton.root}"  # pip: a path, not a name
    click.echo(f"next: pip install -e '{where}[test]' && python -m pytest {where}")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def doctor_cmd(as_json: bool) -> None:
    """The environment: versions, CPU, accelerator chip and toolkit, and every backend's availability."""
    from .inventory import doctor

    data = doctor(_zoo())
    if as_json:
        return _emit_json(data)
    from rich.markup import escape

    from .console import make_table, plain

    console = _console()
    env = make_table("fact", "value", show_header=False, box=None)
    for key, value in data["env"].items():
        env.add_row(plain(key, "bold"), plain(json.dumps(value) if isinstance(value, dict) else value))
    console.print(env)
    console.print()
    console.print(_backends_table(data["backends"]))
    console.print(f"automatic choice: [bold]{escape(data['auto_backend'] or 'none')}[/]")
    console.print()
    engines = make_table("engine", "state", box=None, header_style="bold")
    for e in data["engines"]:
        state = (f"[green]available[/] {escape(str(e['version'] or ''))}".rstrip() if e["available"]
                 else f"[yellow]unavailable[/]: {escape(str(e['reason']))}")
        engines.add_row(plain(e["name"]), state)
    console.print(engines)
    if data["plugin_errors"]:  # a plugin that failed to load, or whose hook failed: what it does not provide here
        console.print()
        problems = make_table("plugin", "problem", box=None, header_style="bold")
        for p in data["plugin_errors"]:
            problems.add_row(plain(p["name"]), plain(p["error"], "red"))
        console.print(problems)


@cli.command("export")
@click.argument("model")
@click.option("--bs", "batch_size", default=None,
              help="Fix the batch at one size and simplify, not a sweep (default: dynamic batch).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the .onnx file.")
@click.option("--weights", default=None, help="A checkpoint file, or `random`.")
@click.option("--seed", type=int, default=None, help="Seed of --weights random (zoo run's --seed).  [default: 0]")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: the model's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def export_cmd(model: str, batch_size: str | None, output: Path, as_json: bool, **flags: Any) -> None:
    """Export MODEL to ONNX (checked against PyTorch), simplified at --bs if given."""
    from .progress import RichProgress
    from .runner import export_to_file
    from .specs import parse_batch_sizes, resolve_options

    size = parse_batch_sizes(batch_size, single="export")[0] if batch_size is not None else None
    check_path("-o", output)
    zoo = _zoo()
    options = resolve_options(zoo.registry.model(model), _run_flags(**flags))
    data = export_to_file(zoo, options, output, size, RichProgress())
    if as_json:
        return _emit_json(data)
    check = (f" (max |onnxruntime - torch| = {data['max_abs_diff']:.2g})" if "max_abs_diff" in data
             else " (exported by the model's plugin, not checked against PyTorch)")
    click.echo(f"wrote {data['path']}{check}")


def main(argv: list[str] | None = None) -> None:
    """The console script: runs the CLI and turns errors into one line and an exit code."""
    from . import signals

    handlers = signals.install()  # SIGTERM ends a run like Ctrl-C; a second signal is ignored while it winds down
    try:
        _main(argv)
    finally:
        signals.restore(handlers)


def _main(argv: list[str] | None) -> None:
    from .signals import describe

    try:
        code = cli.main(args=argv, prog_name="zoo", standalone_mode=False)
    except ZooError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        if exc.note:
            click.echo(f"Note: {exc.note}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:  # click turns a KeyboardInterrupt into Abort
        what, exit_code = describe(exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__)
        click.echo(f"Error: {what}", err=True)
        click.echo("Note: what was finished is kept in the cache; run the same command again to go on", err=True)
        sys.exit(exit_code)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise  # anything else is a bug, and keeps its traceback
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
        click.echo("Note: shorten that file or folder name (at most 255 bytes each)" if exc.errno == errno.ENAMETOOLONG
                   else "Note: free some disk space, or point --out and ZOO_CACHE_DIR at a writable folder", err=True)
        sys.exit(EXIT_ENV)
    except click.UsageError as exc:  # a bad flag or value: one line, like every other usage error
        command = exc.ctx.command_path if exc.ctx else "zoo"
        click.echo(f"Error: {exc.format_message()}", err=True)
        click.echo(f"Note: `{command} --help` lists the arguments and options", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
