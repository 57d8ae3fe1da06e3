"""Typed, frozen specs: what a model, a dataset and a backend declare, and the resolved options of a run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError
from .options import OptionValues
from .preprocessing import PRESETS, DeclarationError, Preprocessing, check_mean_std


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from and how to recognise them: exactly one source of three.

    - ``url``: downloaded once into torch hub's checkpoints folder (as ``file_name``, by default the URL's last
      part) and verified; a hash is required, ``sha256`` (the full digest) or ``sha256_prefix`` (its leading hex
      digits, as in published file names such as ``resnest50-528c19ca.pth``).
    - ``package`` + ``resource``: a file inside an installed package (e.g. shipped in the plugin's wheel), read
      through ``importlib.resources``; ``resource`` is a relative path inside the package (no ``..``).
    - ``loader``: ``"package.module:function"``, called with the :class:`ModelSpec` at run time (never by
      ``zoo list``); it returns the path (``str`` or ``os.PathLike``) of a checkpoint file. A state dict built in
      memory is ``torch.save``-d to a file by the loader: the cache key is always the sha256 of the file loaded.

    For a package or a loader a hash is optional; when declared it is checked on every run. ``key_map`` renames
    checkpoint keys after loading (see :func:`zoo_core.weights.load_state_dict`): a prefix table
    ``{"old.prefix.": "new.prefix."}`` (the longest matching prefix wins; other keys stay as they are) or
    ``"package.module:function"`` taking and returning a state dict. It applies to every checkpoint loaded for the
    model, ``--weights PATH`` included. A bad declaration raises ``ValueError`` when the spec is made.
    """

    url: str | None = None
    sha256_prefix: str = ""  # the leading hex digits (8 or more) of the file's sha256
    file_name: str = ""  # a URL's file name in torch hub's checkpoints folder; default: the URL's last part
    sha256: str | None = None  # the full hex sha256 of the file
    package: str | None = None  # an importable package that holds the file ...
    resource: str | None = None  # ... at this relative path inside it, e.g. "weights/tiny.pth"
    loader: str | None = None  # "package.module:function" returning the checkpoint's path
    key_map: Mapping[str, str] | str | None = None  # a prefix table, or "package.module:function"

    def __post_init__(self) -> None:
        sources = [name for name in ("url", "package", "loader") if getattr(self, name) is not None]
        if self.resource is not None and self.package is None:
            raise ValueError("WeightsSpec: resource= needs package=, the package that holds the file")
        if len(sources) != 1:
            got = f"got {' and '.join(sources)}" if sources else "got none"
            raise ValueError("WeightsSpec declares exactly one source, url=, package= (with resource=) or loader=; "
                             f"{got}")
        for name in ("url", "package", "resource", "loader", "sha256", "file_name", "sha256_prefix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"WeightsSpec: {name}= takes a string, got {type(value).__name__}")
        self._check_hashes()
        if self.url is not None:
            self._check_url()
        elif self.file_name:
            raise ValueError("WeightsSpec: file_name= names a downloaded file; it goes with url=")
        if self.package is not None:
            self._check_package()
        if self.loader is not None:
            _check_import_path("loader", self.loader)
        self._check_key_map()

    @property
    def kind(self) -> str:
        """``"url"``, ``"package"`` or ``"loader"``: where the weights come from."""
        return "url" if self.url is not None else "package" if self.package is not None else "loader"

    @property
    def where(self) -> str:
        """Where the weights come from, in words (a dry run's plan)."""
        if self.kind == "url":
            return f"{self.file_name} (cache, else download)"
        if self.kind == "package":
            return f"{self.resource} in package {self.package}"
        return f"the file {self.loader} returns"

    @property
    def expected_sha256(self) -> str:
        """The declared digest, full or a prefix, lower case; ``""`` when none is declared."""
        return (self.sha256 or self.sha256_prefix).lower()

    def _check_hashes(self) -> None:
        if self.sha256 is not None and self.sha256_prefix:
            raise ValueError("WeightsSpec: declare sha256= (the full digest) or sha256_prefix=, not both")
        if self.sha256 is not None and not _is_hex(self.sha256, 64, 64):
            raise ValueError(f"WeightsSpec: sha256={self.sha256!r} is not a full sha256 (64 hex digits)")
        if self.sha256_prefix and not _is_hex(self.sha256_prefix, 8, 64):
            raise ValueError(f"WeightsSpec: sha256_prefix={self.sha256_prefix!r} is not 8 to 64 hex digits")

    def _check_url(self) -> None:
        assert self.url is not None
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"WeightsSpec: url={self.url!r} is not an http(s) URL")
        if not self.expected_sha256:
            raise ValueError("WeightsSpec: url= needs sha256= (or sha256_prefix=) to verify the download")
        from urllib.parse import urlsplit

        name = self.file_name or urlsplit(self.url).path.rpartition("/")[2]
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"WeightsSpec: {name!r} is not a file name; give file_name=")
        object.__setattr__(self, "file_name", name)

    def _check_package(self) -> None:
        assert self.package is not None
        if not all(part.isidentifier() for part in self.package.split(".")):
            raise ValueError(f"WeightsSpec: package={self.package!r} is not an importable package name")
        if self.resource is None:
            raise ValueError("WeightsSpec: package= needs resource=, the file's path inside the package")
        parts = self.resource.split("/")
        if self.resource.startswith("/") or "\\" in self.resource or any(
                part in ("", ".", "..") for part in parts):
            raise ValueError(f"WeightsSpec: resource={self.resource!r} is not a relative path inside the package "
                             "(write e.g. resource=\"weights/model.pth\"; no '..', no leading '/')")

    def _check_key_map(self) -> None:
        key_map = self.key_map
        if key_map is None or isinstance(key_map, str):
            if key_map is not None:
                _check_import_path("key_map", key_map)
            return
        if not isinstance(key_map, Mapping) or not key_map:
            raise ValueError("WeightsSpec: key_map= takes a non-empty prefix table {\"old.\": \"new.\"} "
                             "or \"package.module:function\"")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in key_map.items()):
            raise ValueError("WeightsSpec: key_map= prefixes are strings, e.g. {\"backbone.\": \"\"}")
        object.__setattr__(self, "key_map", dict(key_map))


def _is_hex(text: str, shortest: int, longest: int) -> bool:
    return shortest <= len(text) <= longest and all(c in "0123456789abcdefABCDEF" for c in text)


def _check_import_path(name: str, path: str) -> None:
    """``"package.module:function"``, or a ValueError naming the field."""
    module, sep, attr = path.partition(":")
    if not sep or not attr.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"WeightsSpec: {name}={path!r} is not an import path \"package.module:function\"")


@dataclass(frozen=True)
class Accuracy:
    """A published accuracy, with where it comes from."""

    top1: float
    top5: float | None = None
    source: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it, what goes in and out, and how its input is prepared.

    ``factory`` is an import path ``"package.module:function"`` so that listing models never imports torch.
    """

    name: str
    family: str
    factory: str
    factory_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_names: tuple[str, ...] = ("input",)
    input_shape: tuple[int, ...] = (3, 224, 224)  # per sample, without the batch axis
    input_dtype: str = "float32"
    input_format: str = "NCHW"
    output_names: tuple[str, ...] = ("output",)
    num_classes: int = 1000
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    # How input images are prepared: each entry a core preset's name (zoo_core.preprocessing.PRESETS), a
    # Preprocessing declaration, or a name the model's plugin prepares in its own zoo_preprocess; ``preset`` is
    # the default one's name.
    preset: str = "modelzoo"
    presets: tuple[str | Preprocessing, ...] = ("modelzoo", "reference")
    opset: int = 11
    # Extra arguments per backend, e.g. {"ascend": {"insert_op_conf": "/path/aipp.cfg", "input_fp16_nodes": "x"}}
    backend_args: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Where a backend's compiled model takes another input than the ONNX (e.g. uint8 images that the chip
    # normalises through AIPP): {"ascend": {"shape": (256, 256, 3), "dtype": "uint8", "format": "NHWC",
    # "preset": "aipp"}}; images for that backend are preprocessed with that preset.
    backend_inputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    weights: WeightsSpec | None = None
    license: str = ""
    reference_accuracy: Accuracy | None = None
    description: str = ""
    plugin: str = ""  # filled in by the registry: the plugin that registered it

    def __post_init__(self) -> None:
        presets = tuple(self.presets) if isinstance(self.presets, list) else self.presets
        if not isinstance(presets, tuple) or not presets or not all(
                isinstance(p, (str, Preprocessing)) for p in presets):
            raise DeclarationError(f"model {self.name!r}: presets={self.presets!r} must be a non-empty tuple of "
                                   "preset names and Preprocessing declarations")
        object.__setattr__(self, "presets", presets)
        check_mean_std(self, f"model {self.name!r}")  # what a declaration without its own mean/std divides by
        names = self.preset_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DeclarationError(f"model {self.name!r}: preset {twice[0]!r} is declared twice")
        if self.preset not in names:
            raise DeclarationError(f"model {self.name!r}: the default preset {self.preset!r} is not one of its "
                                   f"presets ({', '.join(names)})")

    @property
    def preset_names(self) -> tuple[str, ...]:
        """The names of the model's presets, in declaration order."""
        return tuple(p.name if isinstance(p, Preprocessing) else p for p in self.presets)

    def preprocessing(self, preset: str) -> Preprocessing | None:
        """The declaration of ``preset``: the model's own, else the core preset of that name; ``None`` when the
        model lists the name without a declaration (its plugin's ``zoo_preprocess`` prepares it). A usage error
        when the model has no such preset."""
        for entry in self.presets:
            if isinstance(entry, Preprocessing) and entry.name == preset:
                return entry
            if entry == preset:
                return PRESETS.get(preset)
        raise UsageError(f"model {self.name!r} has no preprocessing preset {preset!r}",
                         note=f"choose one of: {', '.join(self.preset_names)}")

    def input_for(self, backend: str) -> tuple[tuple[int, ...], str, str]:
        """The per-sample input shape, dtype and format of this model compiled for ``backend``."""
        override = self.backend_inputs.get(backend, {})
        return (tuple(override.get("shape", self.input_shape)), str(override.get("dtype", self.input_dtype)),
                str(override.get("format", self.input_format)))

    def preset_for(self, backend: str, preset: str) -> str:
        """The preprocessing preset for ``backend``: its input override's, else ``preset``."""
        return str(self.backend_inputs.get(backend, {}).get("preset", preset))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the spec."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (WeightsSpec, Accuracy)):
                value = {g.name: getattr(value, g.name) for g in fields(value)}
            elif isinstance(value, tuple):
                value = [_plain(v) for v in value]
            elif isinstance(value, Mapping):
                value = {k: _plain(v) for k, v in value.items()}
            out[f.name] = value
        return out


def _plain(value: Any) -> Any:
    """Mappings and tuples as dicts and lists, declarations as their dicts, for JSON."""
    if isinstance(value, Preprocessing):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset kind (an image folder with labels, generated input, ...)."""

    name: str
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: a name, whether it can run here, and why not if it cannot; and what an engine needs
    to place it (the Ray resource of one device, the variable that narrows the visible devices)."""

    name: str
    description: str = ""
    available: bool = True
    unavailable_reason: str = ""  # one line, with how to make it available
    priority: int = 0  # automatic choice takes the available backend with the highest priority
    device: str = "cpu"
    plugin: str = ""
    # The Ray resource of one of its devices ("NPU", "GPU"): one inference actor per device, each reserving one;
    # None: the backend computes on CPUs.
    ray_resource: str | None = None
    # The environment variable that narrows the devices a process sees (set to the assigned one by Ray, e.g.
    # ASCEND_RT_VISIBLE_DEVICES): where it is set, the backend opens device 0. None: device ids are global.
    device_env: str | None = None
    reference: bool = False  # `zoo compare` checks the other backends against this one when it is named
    # What --precision may ask of it; the first is what it computes in when none is asked (its native precision).
    # A precision other than the native float ones ("int8") goes through its zoo_quantize before zoo_compile.
    precisions: tuple[str, ...] = ("fp32",)
    # --calib-method values its quantizer offers; the first is the default. Empty: its quantizer takes none.
    calib_methods: tuple[str, ...] = ()
    # The lowest ONNX opset its quantizer needs: a run asking for int8 exports at least at this opset.
    quantize_opset: int | None = None
    # Whether its zoo_compile honours RunOptions.extra_outputs (intermediate tensors returned after the outputs):
    # `zoo debug` compares such a backend layer by layer; another is bisected (compiled on cut graphs).
    exposes_tensors: bool = False
    # Whether its zoo_compile can compile one model that serves several batch sizes (``batch_sizes``), for
    # ``--dynamic-batch`` (Ascend ATC's --dynamic_batch_size); without it, one model per batch size.
    dynamic_batch: bool = False


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs, resolved in one place: command-line flag > model config > default."""

    model: str
    batch_sizes: tuple[int, ...] = (8,)
    backend: str = "auto"
    weights: str | None = None  # a path, "random", or None for cache-then-download
    onnx: Path | None = None  # an ONNX file to use instead of exporting (dynamic or at each batch size)
    data: Path | None = None
    labels: Path | None = None
    classes: Path | None = None  # a folder dataset's class list: one class folder name per line, in index order
    dataset: str | None = None  # the dataset kind; None: guessed from the folder
    limit: int | None = None
    workers: int = 0  # preprocessing processes; 0: one per core
    skip_bad: bool = False  # count and skip unreadable images instead of stopping
    shard_images: int = 256  # an accuracy run saves its outputs every this many images (whole batches)
    preset: str = "modelzoo"
    out: Path | None = None
    opset: int = 11
    warmup: int = 5
    iterations: int | None = None  # a fixed number of timed batches; None: windows until the timing is stable
    window: int = 10  # batches per timing window
    agree: float = 0.10  # 3 consecutive windows whose mean latencies agree within this share are stable
    max_seconds: float = 60.0  # per batch size: past this, the row is marked unstable
    seed: int = 0
    threads: int = 0  # 0: one per core
    export_atol: float = 1e-4  # max |onnxruntime - torch| allowed after export, scaled by max(1, max|torch|)
    devices: tuple[int, ...] = (0,)  # accelerator ids; several run one process each and add up throughput
    # The values of the options the run's backend declares (zoo_add_options), by key, and of --backend-opt KEY=VALUE
    backend_options: Mapping[str, Any] = OptionValues()
    engine: str = "local"  # "local": this process and its workers; "ray": the devices of a Ray cluster
    address: str | None = None  # a Ray cluster to join; None: start a local Ray instance
    actors: int | None = None  # Ray inference actors; None: one per NPU/GPU of the cluster, or 1 on CPUs
    actor_cpus: float | None = None  # CPUs each Ray inference actor reserves; None: 1 on CPUs, 0 beside a device
    engine_options: Mapping[str, Any] = OptionValues()  # the values of the options the run's engine declares
    # Precisions to run, in order (a row per precision and batch size); empty: the backend's native one.
    precisions: tuple[str, ...] = ()
    calib: str | None = None  # a folder of images to calibrate on, or "random"; None: the first images of --data
    calib_images: int = 512  # how many images calibrate (the first ones of the calibration folder)
    calib_method: str | None = None  # minmax | entropy | percentile where the backend offers them; None: its default
    # Tensors of the simplified ONNX graph the compiled model also returns, after the model's outputs, in this order
    # (`zoo debug`; a backend that declares exposes_tensors honours it); empty for every other run.
    extra_outputs: tuple[str, ...] = ()
    profile: int = 0  # `zoo run --profile`: batches profiled after the timed ones, through zoo_profile; 0: none
    # How the batch sizes are compiled, in order (a row per mode and batch size): "static", one model per batch size;
    # "dynamic", one model for all of them (`--dynamic-batch`, where the backend declares dynamic_batch).
    batch_modes: tuple[str, ...] = ("static",)

    def __post_init__(self) -> None:
        for name in ("backend_options", "engine_options"):  # immutable, hashable, picklable, whatever was given
            if not isinstance(getattr(self, name), OptionValues):
                object.__setattr__(self, name, OptionValues(getattr(self, name) or {}))

    def with_(self, **changes: Any) -> "RunOptions":
        return replace(self, **changes)


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunOptions) if f.name != "model"}


def resolve_options(model: ModelSpec, flags: Mapping[str, Any]) -> RunOptions:
    """Resolve a run's options: a flag that was given wins, then the model's config, then the default.

    ``flags`` holds only what the user set (``None`` means "not given").
    """
    from_model = {"preset": model.preset, "opset": model.opset}
    values: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        given = flags.get(name)
        values[name] = given if given is not None else from_model.get(name, default)
    unknown = set(flags) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    options = RunOptions(model=model.name, **values)
    if options.preset not in model.preset_names:
        raise UsageError(
            f"model {model.name!r} has no preprocessing preset {options.preset!r}",
            note=f"choose one of: {', '.join(model.preset_names)}",
        )
    if options.data is not None:
        options = options.with_(data=Path(options.data))
    if options.labels is not None:
        options = options.with_(labels=Path(options.labels))
    from .limits import check_path

    for name in ("data", "labels", "weights", "onnx", "out"):  # a name too long for any file system: ENAMETOOLONG
        check_path(f"--{name}", getattr(options, name))
    for name in ("threads", "workers"):  # 0 is the default's "one per core", never a value to give
        if flags.get(name) is not None and flags[name] < 1:
            raise UsageError(f"--{name}: {flags[name]} must be at least 1", note=f"leave --{name} out for one per core")
    if options.threads == 0:  # a Ray actor's share of the CPUs, else every core of this host
        share = options.actor_cpus if options.actor_cpus is not None and math.isfinite(options.actor_cpus) else 1
        threads = max(1, int(share)) if options.engine == "ray" else cpu_count()  # a bad share: the engine's error
        options = options.with_(threads=threads)
    if options.workers == 0:
        options = options.with_(workers=cpu_count())
    if options.workers < 1 or options.threads < 1:
        raise UsageError("--workers and --threads must be at least 1", note="leave them out for one per core")
    if options.warmup < 0 or (options.iterations is not None and options.iterations < 1) or options.window < 1:
        raise UsageError("--warmup must be at least 0, and --iterations and --window at least 1",
                         note="e.g. --warmup 5 --window 10, or --iterations 100 for a fixed count")
    if not 0 < options.max_seconds < math.inf or not 0 < options.agree < 1:  # NaN fails both comparisons
        raise UsageError("--max-seconds must be positive and --agree between 0 and 1",
                         note="e.g. --max-seconds 60 --agree 0.1")
    if options.shard_images < 1:
        raise UsageError(f"--shard-images: {options.shard_images} must be at least 1",
                         note="leave it out for 256 images a shard")
    if options.profile < 0:  # 0: no profile
        raise UsageError(f"--profile-batches: {options.profile} must be at least 1", note="e.g. --profile-batches 10")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit {options.limit} must be at least 1", note="leave it out for every image")
    if not 0 <= options.seed < 2**64:  # what both numpy's and torch's generators take
        raise UsageError(f"--seed: {options.seed} is not a seed; seeds go from 0 to 2**64 - 1",
                         note="write e.g. --seed 0")
    return options


def parse_devices(text: str) -> tuple[int, ...]:
    """Parse ``"0"`` or ``"0,1,2,3"`` into device ids."""
    devices: list[int] = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise UsageError(f"--device: {part.strip()!r} is not a device id",
                             note="write e.g. --device 0 or --device 0,1") from None
        if value < 0:
            raise UsageError(f"--device: {value} is not a device id", note="device ids start at 0")
        if value in devices:
            raise UsageError(f"--device: device {value} is named twice",
                             note="name each device once, e.g. --device 0,1")
        devices.append(value)
    return tuple(devices)


def parse_batch_sizes(text: str, single: str | None = None) -> tuple[int, ...]:
    """Parse ``"8"`` or ``"1,4,8"`` into a tuple of positive batch sizes, keeping the order given: ``--bs`` of
    every command. ``single`` names a command that takes one batch size (``export``, ``compare``): a sweep is a
    usage error there (:func:`one_batch_size`)."""
    note = "write e.g. --bs 8" if single else "write e.g. --bs 8 or --bs 1,4,8"
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise UsageError(f"--bs: {part!r} is not a whole number", note=note) from None
        if value < 1:
            raise UsageError(f"--bs: batch size {value} must be at least 1", note=note)
        if value not in sizes:
            sizes.append(value)
    if single:
        one_batch_size(tuple(sizes), single)
    return tuple(sizes)


def one_batch_size(sizes: tuple[int, ...], command: str) -> int:
    """The one batch size of ``zoo COMMAND`` (export, compare); a sweep is a usage error, worded alike for each."""
    if len(sizes) != 1:
        raise UsageError(f"--bs: zoo {command} takes one batch size, not a sweep ({','.join(map(str, sizes))})",
                         note="write e.g. --bs 8; a sweep such as --bs 1,4,8 is for zoo run")
    return sizes[0]


PRECISIONS = ("fp32", "fp16", "int8")  # what --precision names
QUANTIZED = ("int8",)  # the precisions made by a zoo_quantize stage from calibration data
STATIC, DYNAMIC = "static", "dynamic"  # RunOptions.batch_modes: a model per batch size, or one for all of them


def parse_precisions(text: str) -> tuple[str, ...]:
    """Parse ``"int8"`` or ``"fp32,int8"`` into precisions, keeping the order given."""
    found: list[str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part not in PRECISIONS:
            raise UsageError(f"--precision: {part!r} is not a precision zoo knows",
                             note=f"choose from {', '.join(PRECISIONS)}, or a comma list such as fp32,int8")
        if part not in found:
            found.append(part)
    return tuple(found)


def cpu_count() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
