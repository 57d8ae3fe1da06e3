"""The options plugins add for their backends and engines (``zoo_add_options``): collected once per plugin manager,
checked, and turned into a run's ``backend_options`` and ``engine_options``."""

from __future__ import annotations

import json
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NoReturn, Sequence

from .errors import UsageError
from .options import OptionSpec, OptionValues, key_value
from .plugins import PluginProblem, Registry

if TYPE_CHECKING:
    from .specs import BackendSpec

_declared: weakref.WeakKeyDictionary[Any, tuple[OptionSpec, ...]] = weakref.WeakKeyDictionary()


def declared(registry: Registry) -> tuple[OptionSpec, ...]:
    """Every plugin's options, in registration order, collected once per plugin manager.

    Each ``zoo_add_options`` implementation is called on its own, so the core knows who registered what. An
    option that is not an :class:`OptionSpec`, that names a backend its plugin does not register, or that clashes
    with another of the same name (the same owner twice, or another owner's with another type) is recorded in
    ``pm.problems`` (``zoo plugins`` shows it) and left out; the plugin's other options still count.
    """
    pm = registry.pm
    if pm in _declared:
        return _declared[pm]
    found: list[OptionSpec] = []
    for impl in pm.hook.zoo_add_options.get_hookimpls():
        owner = impl.plugin_name

        def register(spec: OptionSpec, _owner: str = owner) -> None:
            if not isinstance(spec, OptionSpec):
                raise TypeError(f"register() takes an OptionSpec, got {type(spec).__name__}")
            spec = replace(spec, plugin=_owner)
            problem = _problem(registry, spec, found)
            if problem:
                pm.problems.append(PluginProblem(_owner, f"option {spec.flag} of {spec.owner}: {problem}; "
                                                 "it is ignored"))
            else:
                found.append(spec)

        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 -- a broken plugin never breaks the CLI
            pm.problems.append(PluginProblem(owner, f"zoo_add_options: {type(exc).__name__}: {exc}"))
    _declared[pm] = tuple(found)
    return _declared[pm]


def _problem(registry: Registry, spec: OptionSpec, found: list[OptionSpec]) -> str:
    if spec.backend:
        backend = registry.backends.get(spec.backend)
        if backend is None or backend.plugin != spec.plugin:
            return f"plugin {spec.plugin!r} registers no backend {spec.backend!r}"
    for other in found:
        if other.key != spec.key:
            continue
        if (other.backend, other.engine) == (spec.backend, spec.engine):
            return f"{spec.owner} already has it (plugin {other.plugin!r})"
        if (other.type, other.multiple, other.command_line) != (spec.type, spec.multiple, spec.command_line):
            return (f"{other.owner} declares {spec.flag} too, with another type, repeatability or flag "
                    "(options of the same name share one flag)")
    return ""


def resolve(specs: Sequence[OptionSpec], backends: Sequence[BackendSpec], engine: str, given: Mapping[str, Any],
            generic: Iterable[str] = ()) -> tuple[OptionValues, OptionValues]:
    """A run's ``(backend_options, engine_options)``.

    :param specs: The options plugins declared (:func:`declared`, less any the command line refused).
    :param backends: The backends the run uses (one for ``zoo run``, several for ``zoo compare``).
    :param engine: The run's engine.
    :param given: The plugin options given on the command line, by key: the text (a tuple of texts for a
        repeatable option, ``True`` for a flag). Options not given are left out.
    :param generic: Every ``--backend-opt KEY=VALUE``, in order.
    :raises UsageError: For an option of a backend or engine the run does not use, a ``--backend-opt`` key that
        none of its backends declares, or a value given twice.
    """
    names = [b.name for b in backends]
    mine = [s for s in specs if (s.backend in names) or (s.engine and s.engine == engine)]
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, raw in given.items():
        spec = next((s for s in mine if s.key == key), None)
        if spec is None:
            owners = [s for s in specs if s.key == key]
            if not owners:  # the command line refuses an unknown flag itself; the Python API passes any key
                raise UsageError(f"no plugin declares the option {key!r}",
                                 note="`zoo run --help` lists the options of each backend and engine")
            _refuse_misplaced(owners, names, engine)
        texts = raw if isinstance(raw, tuple) else (raw,)
        for text in texts:
            value = True if text is True else spec.convert(text, spec.flag)
            _store(values, origin, spec, value, spec.flag + ("" if text is True else f" {text}"))
    for pair in generic:
        key, text = key_value(pair, "--backend-opt", "KEY=VALUE; `zoo run --help` lists each backend's options")
        spec = next((s for s in mine if s.backend and s.key == key), None)
        if spec is None:
            _refuse_unknown_key(key, pair, [s for s in mine if s.backend], names)
        _store(values, origin, spec, spec.convert(text, f"--backend-opt {pair}"), f"--backend-opt {pair}")
    backend_keys = {s.key for s in mine if s.backend}
    return (OptionValues({k: v for k, v in values.items() if k in backend_keys}),
            OptionValues({k: v for k, v in values.items() if k not in backend_keys}))


def _store(values: dict[str, Any], origin: dict[str, str], spec: OptionSpec, value: Any, given_as: str) -> None:
    if spec.multiple:
        values[spec.key] = (*values.get(spec.key, ()), value)
        return
    if spec.key in values:
        raise UsageError(f"{spec.flag} is given twice: {origin[spec.key]} and {given_as}", note="give it once")
    values[spec.key], origin[spec.key] = value, given_as


def _refuse_misplaced(owners: list[OptionSpec], backends: list[str], engine: str) -> NoReturn:
    flag = owners[0].flag
    where = " or ".join(s.owner for s in owners)
    if owners[0].backend:
        uses = f"backend {backends[0]}" if len(backends) == 1 else f"backends {', '.join(backends)}"
        names = [s.backend for s in owners if s.backend]
        add = (" or ".join(f"--backend {n}" for n in names) if len(backends) == 1
               else f"{' or '.join(names)} to --backends")
    else:
        uses = f"engine {engine}"
        add = " or ".join(f"--engine {s.engine}" for s in owners if s.engine)
    raise UsageError(f"{flag} is an option of {where}, and this run uses {uses}",
                     note=f"leave {flag} out, or add {add}")


def _refuse_unknown_key(key: str, pair: str, known: list[OptionSpec], backends: list[str]) -> NoReturn:
    keys = sorted({s.key for s in known})
    if len(backends) == 1:
        whose, have = f"backend {backends[0]} has no", f"backend {backends[0]} takes"
    else:
        whose, have = f"none of backends {', '.join(backends)} has an", "they take"
    raise UsageError(f"--backend-opt {pair}: {whose} option {key!r}",
                     note=f"{have} {', '.join(keys)} (`zoo run --help` describes them)" if keys
                     else f"{have} no options")


def cache_pairs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A run's option values as (key, text) pairs for a cache key. A text ``K=V`` (a pass-through argument, e.g.
    ``insert_op_conf=aipp.cfg``) adds ``("key:K", V)`` too, so that a file V names gets its hash in the key."""
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        for item in value if isinstance(value, tuple) else (value,):
            text = item if isinstance(item, str) else json.dumps(item)
            pairs.append((key, text))
            name, sep, rest = text.partition("=")
            if sep:
                pairs.append((f"{key}:{name}", rest))
    return pairs
