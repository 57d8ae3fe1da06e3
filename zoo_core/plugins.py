"""The plugin manager factory and the registry of models, datasets and backends built from it."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, TypeVar

import pluggy

from . import hookspecs
from .errors import EXIT_BUG, UsageError, ZooError, first_line
from .specs import BackendSpec, DatasetSpec, ModelSpec

ENTRY_POINT_GROUP = "zoo"
# Set to 1 to load no plugin from entry points (tests register exactly what they need).
DISABLE_AUTOLOAD_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"
# Comma-separated modules to register as plugins as well, without installing them (like pytest's -p).
EXTRA_PLUGINS_ENV = "ZOO_PLUGINS"

# Built-ins are plugins too, registered after the entry points, in this order.
DEFAULT_PLUGINS = {
    "builtin:onnxruntime": "zoo_core.backends.onnxruntime",
    "builtin:torch": "zoo_core.backends.torch",
    "builtin:ascend": "zoo_core.backends.ascend",
    "builtin:openvino": "zoo_core.backends.openvino",  # optional: available when openvino is installed
    "builtin:metrics": "zoo_core.metrics",
}


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded or that registered something invalid."""

    plugin: str
    error: str
    source: str = ""


class ZooPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which plugins failed to load, and why."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.problems: list[PluginProblem] = []
        self.sources: dict[str, str] = {}  # plugin name -> where it came from
        self.versions: dict[str, str] = {}  # plugin name -> its distribution's version
        self._owner_callers: dict[tuple[str, str, int], Any] = {}


def owner_hook(pm: pluggy.PluginManager, hook_name: str, owner: str) -> Any:
    """Hook ``hook_name`` as plugin ``owner`` alone implements it: the core calls a stage on the plugin that
    registered the model, dataset or backend, never on the others (so no implementation filters by name).

    Built on pluggy's ``subset_hook_caller``: hook-call monitoring (``ZOO_TRACE_PLUGINS``) still sees every call,
    and other plugins' wrappers (``@hookimpl(wrapper=True)``) still wrap it.
    """
    cache: dict[tuple[str, str, int], Any] = getattr(pm, "_owner_callers", {})
    key = (hook_name, owner, len(pm.get_plugins()))  # a plugin registered later makes a new caller
    caller = cache.get(key)
    if caller is None:  # wrappers of other plugins still wrap the call (they answer nothing themselves)
        others = [impl.plugin for impl in getattr(pm.hook, hook_name).get_hookimpls()
                  if impl.plugin_name != owner and not (impl.wrapper or impl.hookwrapper)]
        caller = cache[key] = pm.subset_hook_caller(hook_name, remove_plugins=others)
    return caller


def implements(pm: pluggy.PluginManager, hook_name: str, owner: str) -> bool:
    """Whether plugin ``owner`` implements ``hook_name``."""
    return any(impl.plugin_name == owner for impl in getattr(pm.hook, hook_name).get_hookimpls())


def call_owner(pm: pluggy.PluginManager, hook_name: str, owner: str, **kwargs: Any) -> Any:
    """Call ``hook_name`` on plugin ``owner`` only; ``None`` when it does not implement it (or answers nothing)."""
    return owner_hook(pm, hook_name, owner)(**kwargs)


def get_plugin_manager(*, autoload: bool | None = None, plugins: Iterable[Any] = ()) -> ZooPluginManager:
    """Build the plugin manager: specs, entry points of group ``zoo``, default plugins, the modules named in
    ``$ZOO_PLUGINS``, then ``plugins``.

    A plugin that fails to import, or that implements a hook the specs do not define, is recorded in
    ``pm.problems`` and left out; every other plugin still works.
    """
    pm = ZooPluginManager()
    pm.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("1", "true", "yes")
    if autoload:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            source = f"{ep.dist.name} (entry point)" if ep.dist else "entry point"
            if ep.dist:
                pm.versions[ep.name] = ep.dist.version
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 -- a broken plugin never breaks the CLI
                pm.problems.append(PluginProblem(ep.name, first_line(exc), source))
                continue
            _register_checked(pm, plugin, ep.name, source)
    for name, module_name in DEFAULT_PLUGINS.items():
        _register_checked(pm, importlib.import_module(module_name), name, "built-in")
    for module_name in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 -- nor does a broken plugin named in the environment
            pm.problems.append(PluginProblem(module_name, first_line(exc), f"${EXTRA_PLUGINS_ENV}"))
            continue
        _register_checked(pm, module, module_name, f"${EXTRA_PLUGINS_ENV}")
    for plugin in plugins:
        name = getattr(plugin, "plugin_name", None) or getattr(plugin, "__name__", None) or type(plugin).__name__
        _register_checked(pm, plugin, name, "given")
    pm.check_pending()
    if os.environ.get("ZOO_TRACE_PLUGINS"):  # one stderr line per hook call: arguments, who answered, duration
        from .trace import enabled, trace_hooks

        if enabled(os.environ):
            trace_hooks(pm)
    return pm


def _register_checked(pm: ZooPluginManager, plugin: Any, name: str, source: str) -> None:
    if pm.get_plugin(name) is not None or pm.is_registered(plugin):
        return
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        pm.problems.append(PluginProblem(name, first_line(exc), source))
        return
    pm.sources[name] = source


def name_problem(name: Any) -> str:
    """Why ``name`` cannot name a model, dataset or backend (it becomes part of file names, cache keys and
    terminal lines), or ``""`` when it can."""
    import unicodedata

    if not isinstance(name, str) or not name:
        return "it is empty" if name == "" else f"it is a {type(name).__name__}, not a string"
    for part, why in (("/", "a '/'"), ("\\", "a '\\'"), ("..", "'..'")):
        if part in name:
            return f"it holds {why}"
    if name.startswith("."):
        return "it starts with '.'"
    for char in name:
        if char.isspace() or unicodedata.category(char).startswith("C"):
            return f"it holds the {'whitespace' if char.isspace() else 'control'} character {char!r}"
    return ""


S = TypeVar("S", ModelSpec, DatasetSpec, BackendSpec)


class Registry:
    """Models, datasets and backends, as the plugins registered them; built on first use."""

    def __init__(self, pm: ZooPluginManager) -> None:
        self.pm = pm
        self._models: dict[str, ModelSpec] | None = None
        self._datasets: dict[str, DatasetSpec] | None = None
        self._backends: dict[str, BackendSpec] | None = None

    @property
    def models(self) -> dict[str, ModelSpec]:
        if self._models is None:
            self._models = self._collect("zoo_register_models", ModelSpec, "model")
        return self._models

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        if self._datasets is None:
            self._datasets = self._collect("zoo_register_datasets", DatasetSpec, "dataset")
        return self._datasets

    @property
    def backends(self) -> dict[str, BackendSpec]:
        if self._backends is None:
            self._backends = self._collect("zoo_register_backends", BackendSpec, "backend")
        return self._backends

    def _collect(self, hook_name: str, kind: type[S], noun: str) -> dict[str, S]:
        found: dict[str, S] = {}
        hook = getattr(self.pm.hook, hook_name)
        # Each implementation is called on its own so that the core knows who registered what,
        # and so that one plugin raising does not hide the others' registrations.
        for impl in hook.get_hookimpls():  # registration order: the first to claim a name keeps it
            owner: str = impl.plugin_name

            def register(spec: S, _owner: str = owner) -> None:
                if not isinstance(spec, kind):
                    raise TypeError(f"register() takes a {kind.__name__}, got {type(spec).__name__}")
                problem = name_problem(spec.name)
                if problem:  # refused alone: the plugin's other names still register
                    self.pm.problems.append(
                        PluginProblem(_owner, f"invalid {noun} name {spec.name!r}: {problem}; this one is ignored"))
                    return
                if spec.name in found:
                    self.pm.problems.append(
                        PluginProblem(
                            _owner,
                            f"duplicate {noun} name {spec.name!r}: already registered by plugin "
                            f"{found[spec.name].plugin!r}; this one is ignored",
                        )
                    )
                    return
                found[spec.name] = replace(spec, plugin=_owner)

            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001 -- nor does one whose registration raises
                self.pm.problems.append(PluginProblem(owner, f"{hook_name}: {first_line(exc)}"))
        return found

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``, or a usage error that suggests close matches."""
        return self._lookup(self.models, name, "model", "zoo list")

    def backend(self, name: str, *, require_available: bool = True) -> BackendSpec:
        """The backend called ``name``; ``"auto"`` takes the available backend of highest priority."""
        if name == "auto":
            ready = [b for b in self.backends.values() if b.available]
            if not ready:
                raise ZooError("no backend is available on this machine", note="run `zoo plugins` to see why")
            return max(ready, key=lambda b: b.priority)
        spec = self._lookup(self.backends, name, "backend", "zoo plugins")
        if require_available and not spec.available:
            raise ZooError(f"backend {name!r} is not available here: {spec.unavailable_reason}",
                           note="run `zoo plugins` for every backend's state, or choose another with --backend")
        if not self.implements("zoo_compile", spec):  # found now, before the export, not as "compiled nothing"
            raise self.stage_missing("zoo_compile", spec)
        return spec

    def stage_missing(self, hook_name: str, spec: BackendSpec) -> ZooError:
        """The one-line error for a backend whose plugin does not implement stage ``hook_name`` (exit 1)."""
        return ZooError(f"the plugin {spec.plugin!r} registers backend {spec.name!r} but implements no {hook_name}",
                        note="a bug in that plugin: report it to its authors", exit_code=EXIT_BUG)

    def dataset(self, name: str) -> DatasetSpec:
        return self._lookup(self.datasets, name, "dataset", "zoo plugins")

    def call(self, hook_name: str, spec: ModelSpec | DatasetSpec | BackendSpec, **kwargs: Any) -> Any:
        """Stage ``hook_name`` for ``spec``, answered by the plugin that registered it (``spec.plugin``) alone."""
        return call_owner(self.pm, hook_name, spec.plugin, **kwargs)

    def implements(self, hook_name: str, spec: ModelSpec | DatasetSpec | BackendSpec) -> bool:
        """Whether the plugin that registered ``spec`` implements ``hook_name`` (else the core's default runs)."""
        return implements(self.pm, hook_name, spec.plugin)

    def backend_of(self, name: str) -> BackendSpec:
        """The registered backend ``name`` (a compiled model's), available here or not."""
        return self.backend(name, require_available=False)

    def _lookup(self, table: dict[str, S], name: str, noun: str, listing: str) -> S:
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        failed = sorted({p.plugin for p in self.pm.problems})  # the name may be one a broken plugin did not register
        broken = (f"; plugin{'s' * (len(failed) > 1)} {', '.join(map(repr, failed))} failed (`zoo plugins` says why)"
                  if failed else "")
        raise UsageError(f"unknown {noun} {name!r}", note=f"{hint}`{listing}` shows every registered {noun}{broken}")


def hook_owners(pm: ZooPluginManager) -> dict[str, list[str]]:
    """Plugin name -> the hooks it implements, for ``zoo plugins``."""
    owners: dict[str, list[str]] = {}
    for name, plugin in pm.list_name_plugin():
        impls = pm.get_hookcallers(plugin) or []
        owners[name] = sorted(caller.name for caller in impls)
    return owners


def plugin_version(pm: ZooPluginManager, name: str) -> str:
    """The version of the distribution a plugin comes from, else its package's ``__version__``."""
    if name in pm.versions:
        return pm.versions[name]
    module = getattr(pm.get_plugin(name), "__name__", "")
    top = sys.modules.get(module.split(".")[0]) if module else None
    return str(getattr(top, "__version__", ""))


_source_hashes: dict[str, str] = {}


def plugin_source(pm: ZooPluginManager, name: str) -> str:
    """A hash of plugin ``name``'s source (see :func:`source_hash`): cache keys of the stages that run its code
    follow an edit that came without a new version (an editable install)."""
    plugin = pm.get_plugin(name)
    if plugin is None:
        return ""
    return source_hash(plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__)


def source_hash(module_name: str) -> str:
    """The sha256 (24 hex digits) of every ``.py`` file of ``module_name``'s top-level package, sorted by path,
    computed once per process, without importing it. A module of ``zoo_core`` itself (a built-in plugin) is
    hashed alone: every edit of the core would otherwise invalidate every cached artifact."""
    import hashlib
    from importlib.util import find_spec

    name = module_name if module_name.startswith("zoo_core.") else module_name.split(".")[0]
    if name not in _source_hashes:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            spec = None
        files: list[tuple[str, Path]] = []
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                files += sorted((p.relative_to(location).as_posix(), p) for p in Path(location).rglob("*.py"))
        elif spec is not None and spec.origin and spec.origin.endswith(".py"):
            files.append((Path(spec.origin).name, Path(spec.origin)))
        digest = hashlib.sha256()
        for relative, path in files:
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
        _source_hashes[name] = digest.hexdigest()[:24] if files else ""
    return _source_hashes[name]
