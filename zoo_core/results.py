"""Typed results: what ``zoo run``, ``zoo compare`` and ``zoo report`` produce, as frozen dataclasses that
serialise to exactly the JSON the command writes (``to_json``) and read it back (``from_json``).

Every record keeps what it read: a key this zoo does not know stays in ``extra``, and a key the JSON left out
stays out of ``to_json()`` (``from_json(d).to_json() == d``). A value that was not measured is ``None``, never a
number made up. A malformed object is one :class:`~zoo_core.errors.ZooError` naming its source and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

from .errors import CheckError, ZooError

if TYPE_CHECKING:
    from typing import TypeAlias

    #: A JSON value, for what zoo records without a fixed shape (environment facts plugins add, say).
    JSON: TypeAlias = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
else:
    class JSON:
        """At run time, the marker of a field that holds any JSON value (the type checker sees the union)."""


R = TypeVar("R", bound="Record")
__all__ = [
    "JSON", "Record", "RunResults", "Row", "Latency", "DeviceTiming", "Environment", "PluginRef", "RunPlugins",
    "ExportFacts", "Measurement", "EngineFacts", "RayWorker", "AccuracyResult", "DatasetFacts", "NameList",
    "ClassNumbering", "SkippedImage", "Skipped", "EvaluatedOn", "CompareResult", "OutputComparison", "RunComparison",
    "RowComparison", "Difference", "Judgement", "NotJudged", "ProfileBlock", "ProfileTable", "ProfiledOpType",
    "ProfiledNode",
]


class _MismatchError(Exception):
    """A value of the wrong shape at ``where`` (a field path such as ``results[0].latency_ms.mean``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where or '(top)'}: {problem}")


@dataclass(frozen=True, kw_only=True)
class Record:
    """The base of every typed result: ``to_json`` and ``from_json``, and what the JSON held beyond the fields."""

    #: The keys this zoo does not know, with their values as read (a newer zoo's, a plugin's).
    extra: Mapping[str, JSON] = field(default_factory=dict, repr=False)
    #: The keys of the JSON this was read from, in their order; ``None`` for a record made in code.
    _keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    #: What the top-level JSON is, for an error message: "... is not a zoo results file".
    WHAT: ClassVar[str] = "a zoo results file"

    def to_json(self) -> dict[str, JSON]:
        """The JSON object, as the CLI prints it with ``--json`` (and ``zoo run`` writes it to results.json)."""
        known = [f.name for f in _fields(type(self))]
        order = list(self._keys) if self._keys is not None else known
        out: dict[str, JSON] = {}
        for key in [*order, *known, *self.extra]:
            if key in out:
                continue
            if key in known:
                value = getattr(self, key)
                if key in order or value is not None:  # a key the JSON left out stays out, unless set since
                    out[key] = _dump(value)
            elif key in self.extra:
                out[key] = self.extra[key]
        return out

    @classmethod
    def from_json(cls: type[R], data: object, source: str = "the results object") -> R:
        """The record of a JSON object (as ``json.load`` reads it); a ``ZooError`` naming ``source`` and the
        field when it is not one."""
        try:
            return _record(cls, data, "")
        except _MismatchError as exc:
            raise ZooError(f"{source} is not {cls.WHAT}: {exc}",
                           note="pass what zoo wrote, unedited (`zoo run --json` or its results.json)") from None

    def recorded(self, name: str) -> bool:
        """Whether the JSON this was read from held the key ``name`` (a record made in code holds every field):
        an older run's row has no ``stable``, which is not the same as a ``stable`` that was not judged."""
        return name in self._keys if self._keys is not None else (name in self.extra or name in _names(type(self)))

    def to_text(self) -> str:
        """The JSON as the CLI prints it: strict (a NaN raises rather than print ``NaN``), indented."""
        return json.dumps(self.to_json(), indent=2, allow_nan=False)


def _fields(cls: type) -> list[dataclasses.Field[object]]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "_keys")]


def _names(cls: type) -> set[str]:
    return {f.name for f in _fields(cls)}


def _dump(value: object) -> JSON:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    return typing.cast("JSON", value)


def _record(cls: type[R], data: object, where: str) -> R:
    if not isinstance(data, dict):
        raise _MismatchError(where, f"expected an object, found {_shown(data)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    for f in _fields(cls):
        inner = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name], inner)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _MismatchError(inner, "missing")
    names = {f.name for f in _fields(cls)}
    extra = {str(k): v for k, v in data.items() if k not in names}
    for key, value in extra.items():
        _value(JSON, value, f"{where}.{key}" if where else key)
    return cls(**values, extra=extra, _keys=tuple(data))


def _value(tp: object, value: object, where: str) -> object:  # one branch per kind of type
    origin = typing.get_origin(tp)
    if tp is JSON:
        if not _is_json(value):
            raise _MismatchError(where, f"{_shown(value)} is not JSON")
        return value
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(arms) < len(typing.get_args(tp)):
            return None
        for arm in arms:
            try:
                return _value(arm, value, where)
            except _MismatchError as exc:
                last = exc
        raise last if len(arms) == 1 else _MismatchError(where, f"expected {_kind(tp)}, found {_shown(value)}")
    if isinstance(tp, type) and issubclass(tp, Record):
        return _record(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _MismatchError(where, f"expected a list, found {_shown(value)}")
        item = typing.get_args(tp)[0]
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _MismatchError(where, f"expected an object, found {_shown(value)}")
        item = typing.get_args(tp)[1]
        return {k: _value(item, v, f"{where}.{k}") for k, v in value.items()}
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}[typing.cast(type, tp)]
    if not isinstance(value, expected) or (tp is not bool and isinstance(value, bool)):
        raise _MismatchError(where, f"expected {_kind(tp)}, found {_shown(value)}")
    return value


def _kind(tp: object) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_kind(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list"
    return names.get(typing.cast(type, tp), "an object")


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(map(_is_json, value))
    return isinstance(value, dict) and all(isinstance(k, str) and _is_json(v) for k, v in value.items())


def _shown(value: object) -> str:
    text = "null" if value is None else json.dumps(value, default=repr) if _is_json(value) else repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


# ---------------------------------------------------------------------------------------------- zoo run


@dataclass(frozen=True, kw_only=True)
class Latency(Record):
    """Milliseconds per batch over the timed batches; percentiles interpolated linearly."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float


@dataclass(frozen=True, kw_only=True)
class DeviceTiming(Record):
    """One device's share of a row (one process each with ``--device 0,1``)."""

    device: int | None = None
    throughput_e2e: float | None = None
    throughput_device: float | None = None  # None: the backend has no timer of its own
    windows_ms: tuple[float, ...] | None = None  # the mean of each timing window
    stable: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Row(Record):
    """One batch size: throughput in images/s = 1000 * batch_size / mean batch ms (summed over devices)."""

    batch_size: int
    throughput: float
    throughput_device: float | None = None  # the backend's own compute time (ais_bench's number), where it has one
    throughput_e2e: float | None = None  # the wall time of each call
    latency_ms: Latency
    latency_e2e_ms: Latency | None = None
    devices: tuple[DeviceTiming, ...] | None = None
    stable: bool | None = None  # None: a fixed --iterations count, or a run older than the judgement
    timed_batches: int | None = None
    windows: tuple[JSON, ...] | None = None  # an older run's timing windows
    top1: float | None = None  # at the accuracy run's batch size only
    top5: float | None = None
    images: int | None = None
    precision: str | None = None  # what the row computed in (fp32, fp16, int8); older results lack it
    # Against the run's fp32 row of the same images (a run of several precisions with --data), on the scored row:
    top1_points: float | None = None  # top-1 difference in percentage points (negative: this precision loses)
    top5_points: float | None = None
    agreement: float | None = None  # the share of images whose top-1 class is fp32's
    # "dynamic": timed on the one model compiled for every batch size of the run (--dynamic-batch); "static" beside
    # such rows; None (older results, and runs without --dynamic-batch): a model compiled for this batch size.
    batch_mode: str | None = None


@dataclass(frozen=True, kw_only=True)
class Calibrated(Record):
    """The calibration set a quantized precision was made with."""

    source: str  # the folder, or "random"
    images: int
    method: str | None = None
    sha256: str


@dataclass(frozen=True, kw_only=True)
class PrecisionFacts(Record):
    """The run's precisions, and what the quantized ones were calibrated on."""

    precisions: tuple[str, ...]
    reference: str | None = None  # the precision the accuracy cost is measured against
    calibration: Calibrated | None = None
    performance_only: bool = False  # calibrated on noise (--calib random)


@dataclass(frozen=True, kw_only=True)
class PluginRef(Record):
    name: str
    version: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunPlugins(Record):
    """The plugins that own the run's model and backend."""

    model: PluginRef | None = None
    backend: PluginRef | None = None


@dataclass(frozen=True, kw_only=True)
class Environment(Record):
    """The environment fingerprint; what plugins add (``ascend``, say) is in ``extra``."""

    zoo: str | None = None
    python: str | None = None
    platform: str | None = None
    cpu: str | None = None
    cores: int | None = None
    torch: str | None = None
    onnx: str | None = None
    onnxruntime: str | None = None
    onnxsim: str | None = None
    numpy: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportFacts(Record):
    """The export's opset and how closely ONNX Runtime reproduced PyTorch (absent for a given --onnx file)."""

    opset: int | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    batch_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class Measurement(Record):
    warmup: int | None = None
    iterations: int | None = None  # None: windows until the timing settles
    window: int | None = None
    agree: float | None = None
    max_seconds: float | None = None
    stability: str | None = None
    threads: int | None = None
    mode: str | None = None  # latency: one synchronous request at a time; throughput: parallel requests (streams)
    streams: int | None = None
    formula: str | None = None


@dataclass(frozen=True, kw_only=True)
class RayWorker(Record):
    """A Ray actor process that ran batches."""

    actor: str
    node: str | None = None
    device: str | None = None
    pid: int | None = None
    images: int | None = None
    stages: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class EngineFacts(Record):
    """Where the run ran: ``local`` (workers: decoding processes), ``ray`` (workers: its actor processes), or a
    plugin's engine (whose own facts are in ``extra``)."""

    name: str
    workers: int | tuple[RayWorker, ...] | None = None
    devices: tuple[int, ...] | None = None
    address: str | None = None
    actors: int | None = None
    actor_resources: Mapping[str, JSON] | None = None
    restarts_seen: int | None = None
    decoders: tuple[int, ...] | None = None
    timed_on: tuple[str, ...] | None = None
    setup_seconds: float | None = None
    first_rows_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class NameList(Record):
    """How many, and the first few names."""

    count: int
    first: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ClassNumbering(Record):
    """How class folders were numbered: the labels the scores rest on."""

    source: str  # sorted, imagenet-1k or file
    file: str | None = None
    count: int
    folders: Mapping[str, int]
    warning: str | None = None


@dataclass(frozen=True, kw_only=True)
class DatasetFacts(Record):
    """What the dataset plugin found under --data."""

    kind: str | None = None
    root: str | None = None
    images: int | None = None
    unlabeled: NameList | None = None
    labels_without_image: NameList | None = None
    ignored_files: int | None = None
    hidden: int | None = None
    classes: ClassNumbering | None = None


@dataclass(frozen=True, kw_only=True)
class SkippedImage(Record):
    id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Skipped(Record):
    count: int
    images: tuple[SkippedImage | str, ...] = ()  # a name alone: what a hand-made or older object may hold


@dataclass(frozen=True, kw_only=True)
class EvaluatedOn(Record):
    """A device that evaluated shards of the accuracy run (the local engine): how many, of how many images."""

    device: int
    shards: int
    images: int


@dataclass(frozen=True, kw_only=True)
class AccuracyResult(Record):
    """The accuracy run (``--data``): at one batch size; metrics beyond top-1/top-5 (a plugin's) are in ``extra``."""

    top1: float | None = None
    top5: float | None = None
    images: int
    batch_size: int
    skipped: Skipped | None = None
    dataset: DatasetFacts | None = None
    setup_seconds: float | None = None
    seconds: float | None = None
    images_per_s: float | None = None
    resumed_images: int | None = None
    workers: int | None = None
    preset: str | None = None
    devices: tuple[EvaluatedOn, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class ProfiledOpType(Record):
    op_type: str
    nodes: int
    ms: float  # per profiled batch
    share: float  # of all operator time


@dataclass(frozen=True, kw_only=True)
class ProfiledNode(Record):
    node: str
    op_type: str
    ms: float  # per profiled batch
    share: float  # of all operator time


@dataclass(frozen=True, kw_only=True)
class ProfileTable(Record):
    """One batch size and precision, profiled (``zoo run --profile``): the top op types and nodes by time."""

    batch_size: int
    precision: str | None = None
    source: str
    batches: int
    wall_ms: float | None = None  # the profiled batches' mean wall time
    operator_ms: float | None = None  # their operators' time per batch; None: the tool kept its own profile
    coverage: float | None = None  # operator_ms / wall_ms
    nodes_total: int | None = None
    op_types_total: int | None = None
    op_types: tuple[ProfiledOpType, ...] = ()
    nodes: tuple[ProfiledNode, ...] = ()
    folder: str | None = None  # the profiler's own folder (ais_bench --profiler 1)


@dataclass(frozen=True, kw_only=True)
class ProfileBlock(Record):
    """``zoo run --profile``: extra batches after the timed ones, through the backend's profiler."""

    batches: int
    top: int | None = None
    tables: tuple[ProfileTable, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RunResults(Record):
    """What ``zoo run`` prints with ``--json`` and writes to results.json (schema 1)."""

    schema: int
    model: str
    backend: str
    device: str
    device_name: str | None = None  # the chip as the backend's plugin names it; older results lack it
    plugins: RunPlugins | None = None
    weights: str  # sha256:<hex> of the checkpoint, or random
    preset: str | None = None
    env: Environment
    export: ExportFacts | None = None
    measurement: Measurement | None = None
    engine: EngineFacts | None = None
    stage_seconds: Mapping[str, tuple[float, ...] | float] | None = None
    created: str | None = None
    accuracy: AccuracyResult | None = None  # the run's first precision's
    precision: PrecisionFacts | None = None  # older results lack it
    profile: ProfileBlock | None = None  # zoo run --profile only
    results: tuple[Row, ...]

    def row(self, batch_size: int, precision: str | None = None) -> Row:
        """The row of ``batch_size`` (in ``precision``: default the run's first); a ``KeyError`` naming the rows
        there are."""
        for row in self.results:
            if row.batch_size == batch_size and (precision is None or row.precision == precision):
                return row
        there = ", ".join(f"{r.batch_size}" + (f" {r.precision}" if r.precision else "") for r in self.results)
        raise KeyError(f"no row of batch size {batch_size}{' in ' + precision if precision else ''}: {there}")


# ------------------------------------------------------------------------------------------ zoo compare


@dataclass(frozen=True, kw_only=True)
class OutputComparison(Record):
    """One output of one backend against the reference's, under numpy.allclose's rule; ``None`` where no number
    answers (NaN or infinity in an output; no rtol covers a difference where the reference is 0)."""

    backend: str
    reference: str
    output: str
    shape: tuple[int, ...]
    max_abs: float | None = None
    max_rel: float | None = None
    needed_atol: float | None = None
    needed_rtol: float | None = None
    passed: bool
    nonfinite: int = 0
    reference_nonfinite: int = 0
    # The model's first output, when it holds class scores (N, classes); None where no number answers (NaN):
    top1_agreement: float | None = None  # the share of samples whose top-1 class is the reference's
    top5_overlap: float | None = None  # mean |top5(backend) & top5(reference)| / 5
    top1: float | None = None  # with --data: the backend's top-1 and top-5 accuracy against the labels
    top5: float | None = None


@dataclass(frozen=True, kw_only=True)
class CompareResult(Record):
    """What ``zoo compare --json`` prints. ``passed`` False is an outcome here; ``raise_if_failed`` makes it the
    CheckError the CLI exits 4 with."""

    WHAT: ClassVar[str] = "a zoo compare result"

    model: str
    weights: str
    onnx: str | None = None
    batch_size: int
    samples: int
    seed: int
    backends: tuple[str, ...]
    reference: str
    atol: float
    rtol: float
    rule: str
    passed: bool
    needed_atol: float | None = None
    needed_rtol: float | None = None
    comparisons: tuple[OutputComparison, ...]
    tolerances_judged: bool = True  # False: --min-agreement without --atol/--rtol judges the agreement alone
    min_agreement: float | None = None  # the least top-1 agreement that passes
    precision: str | None = None  # what the backends other than the reference compute in, when asked
    data: str | None = None  # the images compared (None: seeded generated inputs)
    reference_top1: float | None = None  # with --data: the reference's accuracy against the labels
    reference_top5: float | None = None

    def raise_if_failed(self) -> None:
        """A CheckError naming the worst failing output and the tolerance it needed; nothing when all passed."""
        raise_if_failed(self.to_json())


# ------------------------------------------------------------------------------------------- zoo report


@dataclass(frozen=True, kw_only=True)
class RowComparison(Record):
    """One batch size in both runs: ratios B / A, deltas B - A; ``None`` where either side has no figure."""

    batch_size: int
    precision: str | None = None  # set when a run has several precisions: rows are matched by both
    batch_mode: str | None = None  # set when a run has several batch modes (--dynamic-batch=both): matched by it too
    throughput_a: float | None = None
    throughput_b: float | None = None
    throughput_ratio: float | None = None
    throughput_e2e_ratio: float | None = None
    latency_ratio: float | None = None
    latency_p99_ratio: float | None = None
    top1_a: float | None = None
    top1_b: float | None = None
    top1_delta: float | None = None
    top5_a: float | None = None
    top5_b: float | None = None
    top5_delta: float | None = None
    stable_a: bool | None = None
    stable_b: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Difference(Record):
    """A setting or environment value that differs: A's and B's (``None`` where one lacks it)."""

    a: JSON = None
    b: JSON = None


@dataclass(frozen=True, kw_only=True)
class NotJudged(Record):
    batch_size: int
    reason: str
    precision: str | None = None  # when rows were matched by batch size and precision


@dataclass(frozen=True, kw_only=True)
class Judgement(Record):
    """What ``fail_below`` judged: the rows it judged, those it left (and why), and those that regressed."""

    fail_below: float
    unstable: str  # skip or count
    judged: tuple[int, ...] = ()
    not_judged: tuple[NotJudged, ...] = ()
    regressed: tuple[int, ...] = ()
    # When rows were matched by batch size and precision: the precision of each regressed batch size, in order.
    regressed_precisions: tuple[str | None, ...] | None = None

    def regressed_rows(self) -> list[tuple[int, str | None]]:
        """(batch size, precision or None) of each regressed row."""
        precisions = self.regressed_precisions or (None,) * len(self.regressed)
        return list(zip(self.regressed, precisions, strict=True))


@dataclass(frozen=True, kw_only=True)
class RunComparison(Record):
    """What ``zoo report A B --json`` prints: run B against run A, row by row (matched by batch size)."""

    WHAT: ClassVar[str] = "a zoo report comparison"

    a: str | None = None  # what A was read from (None: a results object given in code)
    b: str | None = None
    rows: tuple[RowComparison, ...]
    only_in_a: tuple[int, ...] = ()
    only_in_b: tuple[int, ...] = ()
    throughput_ratio_geomean: float | None = None
    differences: Mapping[str, Difference] = field(default_factory=dict)
    env: Mapping[str, Difference] = field(default_factory=dict)  # flattened keys: ascend.chip
    judgement: Judgement | None = None

    def raise_if_regressed(self) -> None:
        """A CheckError naming the batch sizes whose throughput ratio fell below ``fail_below``, as
        ``zoo report --fail-below`` exits 4; nothing without a judgement or a regression."""
        judgement = self.judgement
        if judgement is None:
            return
        keys = judgement.regressed_rows()
        slow = [r for r in self.rows if (r.batch_size, r.precision) in keys
                or (r.batch_size, None) in keys and judgement.regressed_precisions is None]
        if not slow:
            return

        def name(r: RowComparison) -> str:
            return f"{r.batch_size}" + (f" {r.precision}" if r.precision else "")

        worst = min(slow, key=lambda r: r.throughput_ratio if r.throughput_ratio is not None else math.inf)
        raise CheckError(f"throughput regressed at batch {', '.join(map(name, slow))}: "
                         f"B/A down to {worst.throughput_ratio:.3f} at batch {name(worst)}, "
                         f"below --fail-below {judgement.fail_below:g}",
                         note="check the environment differences above, or re-run both on a quiet machine")


# ------------------------------------------------------------------------- the check of a compare result


def ceil_sig(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits: a tolerance to pass on the command line."""
    if value <= 0 or not math.isfinite(value):
        return value
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    up = float(f"{math.ceil(value / step) * step:.{digits}g}")
    return up if up >= value else float(f"{up + step:.{digits}g}")


def raise_if_failed(result: Mapping[str, Any]) -> None:
    """A :class:`CheckError` naming the worst failing output of a compare result (its JSON) and the tolerance it
    would have needed; or, under ``min_agreement``, the backend whose top-1 agreement is below it."""
    bound = result.get("min_agreement")
    if bound is not None:
        _raise_if_disagrees(result, bound)
    failed = [c for c in result["comparisons"] if not c["passed"]] if result.get("tolerances_judged", True) else []
    if not failed:
        return
    worst = max(failed, key=lambda c: math.inf if c["needed_atol"] is None else c["needed_atol"])
    atol, rtol = result["atol"], result["rtol"]
    where = f"{worst['backend']} differs from {worst['reference']} on {worst['output']}"
    if worst["max_abs"] is None:
        size = math.prod(worst["shape"])
        sides = ", ".join(f"{n} of {size} values from {who}" for who, n in (
            (worst["backend"], worst["nonfinite"]), (worst["reference"], worst["reference_nonfinite"])) if n)
        raise CheckError(f"{where}: NaN or infinity in the outputs, {sides}",
                         note="no tolerance covers it; check the weights or ONNX file, the backend's precision mode "
                         "and the model's inputs")
    rtol_hint = (f" or --rtol {ceil_sig(result['needed_rtol']):.3g} (at --atol {atol:g})"
                 if result["needed_rtol"] is not None else "")
    raise CheckError(
        f"{where} beyond --atol {atol:g} --rtol {rtol:g} ({len(failed)} of {len(result['comparisons'])} "
        f"output(s) fail): max abs {worst['max_abs']:.3g}, max rel {worst['max_rel']:.3g}",
        note=f"needed --atol {ceil_sig(result['needed_atol']):.3g} (at --rtol {rtol:g}){rtol_hint}; "
        "an fp16 backend needs looser tolerances than the fp32 defaults",
    )


def _raise_if_disagrees(result: Mapping[str, Any], bound: float) -> None:
    """A :class:`CheckError` naming the backend with the lowest top-1 agreement below ``bound``."""
    agreed = [c for c in result["comparisons"] if "top1_agreement" in c]
    unknown = next((c for c in agreed if c["top1_agreement"] is None), None)
    if unknown is not None:
        raise CheckError(f"{unknown['backend']}'s top-1 agreement with {unknown['reference']} cannot be measured: "
                         f"NaN or infinity in {unknown['output']}",
                         note="no class ranks among NaN; check the weights or ONNX file and the backend's precision")
    below = [c for c in agreed if c["top1_agreement"] < bound]
    if not below:
        return
    worst = min(below, key=lambda c: c["top1_agreement"])
    samples = result["samples"]
    same = round(worst["top1_agreement"] * samples)
    raise CheckError(
        f"{worst['backend']} keeps {worst['reference']}'s top-1 class on {same} of {samples} samples "
        f"(agreement {worst['top1_agreement']:.4g}, top-5 overlap {worst['top5_overlap']:.4g}), below "
        f"--min-agreement {bound:g}",
        note="`zoo debug` finds the first layer that goes wrong; or lower --min-agreement")
