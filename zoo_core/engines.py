"""Engines: where a run's timed loops and accuracy batches execute (this process, a Ray cluster, a plugin's
own), behind one protocol and chosen by name (``--engine``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .errors import UsageError

if TYPE_CHECKING:
    from .app import Zoo
    from .evaluate import EvaluationJob
    from .measure import Timing
    from .progress import Progress
    from .runtime import CompiledModel
    from .specs import BackendSpec, ModelSpec, RunOptions

LOCAL = "local"


class Engine(Protocol):
    """What the runner needs from an engine, for one run: entered before the export (an engine that joins a
    cluster checks it then, not after a long compile) and left when the run ends, failed or not."""

    name: str

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    def measure(self, model: ModelSpec, compiled: CompiledModel, options: RunOptions,
                progress: Progress) -> list[tuple[int, Timing]]:
        """Performance mode at ``compiled``'s batch size on every device the engine runs: each device's id and
        timing (the runner adds their throughputs up into one results row)."""
        ...

    def evaluate(self, job: EvaluationJob) -> float | None:
        """Run every image of ``job``'s shards still to do through the model, saving each shard with
        ``job.save`` once all of its images are in (unreadable ones through ``job.bad_image``); returns the
        ``time.perf_counter()`` at which streaming started (workers up, sessions warm), or ``None``."""
        ...

    def where(self) -> str:
        """Words that end a progress line, saying where the work runs (``" on 2 Ray actor(s)"``; ``""``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The results object's ``engine``: at least ``name``, then what the engine knows of where it ran."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    """A registered engine: its name, how to open it for a run, and which run options are its own."""

    name: str
    open: Callable[[Zoo, RunOptions, BackendSpec], Engine]  # called once per run, after the options are checked
    description: str = ""
    # RunOptions fields that only this engine reads (``address``): set with another engine, a usage error.
    options: tuple[str, ...] = ()
    check: Callable[[RunOptions], None] | None = None  # the engine's own checks of the options (raise UsageError)
    status: Callable[[], dict[str, Any]] | None = None  # for `zoo doctor`: available, version, reason
    plugin: str = ""  # filled in: the plugin that registered it ("builtin" for the core's)


class LocalEngine:
    """This process and its worker processes: one device timed here, several one process each; images decoded
    by a pool of workers and inferred here, batch by batch; on several devices, one process each, with its own
    workers, over its share of the shards (``local_devices``)."""

    name = LOCAL

    def __init__(self, zoo: Zoo, options: RunOptions) -> None:
        self.zoo, self.options = zoo, options

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def measure(self, model: ModelSpec, compiled: CompiledModel, options: RunOptions,
                progress: Progress) -> list[tuple[int, Timing]]:
        from .measure import measure_devices

        return measure_devices(self.zoo, model, compiled, options, progress)

    def evaluate(self, job: EvaluationJob) -> float | None:
        if len(job.options.devices) > 1:
            from .local_devices import evaluate_on_devices

            return evaluate_on_devices(job)
        from .evaluate import stream_here

        job.device = job.options.devices[0]
        ready = stream_here(job)
        job.evaluated_on[job.device] = list(job.todo)
        return ready

    def where(self) -> str:
        devices = self.options.devices
        return f" on devices {','.join(map(str, devices))}" if len(devices) > 1 else ""

    def describe(self) -> dict[str, Any]:
        return {"name": LOCAL, "workers": self.options.workers, "devices": list(self.options.devices)}


def _open_local(zoo: Zoo, options: RunOptions, backend: BackendSpec) -> Engine:
    return LocalEngine(zoo, options)


def _open_ray(zoo: Zoo, options: RunOptions, backend: BackendSpec) -> Engine:
    from .ray_engine import RayEngine

    return RayEngine(options, backend)


def _ray_status() -> dict[str, Any]:
    from .ray_engine import status

    return status()


def _check_ray(options: RunOptions) -> None:
    from .ray_engine import check_options

    check_options(options)


BUILTIN = (
    EngineSpec(LOCAL, _open_local, "this process, and worker processes that decode images", plugin="builtin",
               status=lambda: {"name": LOCAL, "available": True, "version": "", "reason": ""}),
    EngineSpec("ray", _open_ray, "the devices of a Ray cluster (pip install 'zoo[ray]')",
               options=("address", "actors", "actor_cpus"), check=_check_ray, status=_ray_status, plugin="builtin"),
)


def registered(zoo: Zoo) -> dict[str, EngineSpec]:
    """The core's engines, then those plugins register (``zoo_register_engines``); a name taken twice keeps
    the first, and the plugin that tried again is listed by ``zoo plugins`` with the reason."""
    from .plugins import PluginProblem, name_problem

    found = {spec.name: spec for spec in BUILTIN}
    for impl in zoo.pm.hook.zoo_register_engines.get_hookimpls():
        owner = impl.plugin_name

        def register(spec: EngineSpec, _owner: str = owner) -> None:
            if not isinstance(spec, EngineSpec):
                raise TypeError(f"register() takes an EngineSpec, got {type(spec).__name__}")
            problem = name_problem(spec.name) or (
                f"already registered by plugin {found[spec.name].plugin!r}" if spec.name in found else "")
            if problem:
                zoo.pm.problems.append(PluginProblem(_owner, f"engine {spec.name!r}: {problem}; this one is ignored"))
                return
            found[spec.name] = replace(spec, plugin=_owner)

        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 -- a broken plugin never breaks the run of another engine
            zoo.pm.problems.append(PluginProblem(owner, f"zoo_register_engines: {type(exc).__name__}: {exc}"))
    return found


def check_engine(zoo: Zoo, options: RunOptions) -> EngineSpec:
    """The engine ``options`` name, once the options fit it: a registered name, no option of another engine,
    and the engine's own checks. Every problem is a usage error, before any work."""
    table = registered(zoo)
    spec = table.get(options.engine)
    if spec is None:
        raise UsageError(f"--engine: unknown engine {options.engine!r}",
                         note=f"choose {' or '.join(table)} (`zoo doctor` lists the engines)")
    from .specs import DEFAULTS

    for other in table.values():
        given = [f"--{name.replace('_', '-')}" for name in other.options
                 if other is not spec and name not in spec.options and getattr(options, name) != DEFAULTS[name]]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --engine {other.name}",
                             note=f"add --engine {other.name}, or leave them out")
    if spec.check is not None:
        spec.check(options)
    return spec


def open_engine(zoo: Zoo, options: RunOptions, backend: BackendSpec) -> Engine:
    """The (not yet entered) engine of ``options.engine`` for a run on ``backend``."""
    return check_engine(zoo, options).open(zoo, options, backend)


def statuses(zoo: Zoo) -> list[dict[str, Any]]:
    """Whether each registered engine can run here, for ``zoo doctor``."""
    return [spec.status() if spec.status is not None else
            {"name": spec.name, "available": True, "version": "", "reason": ""} for spec in registered(zoo).values()]
