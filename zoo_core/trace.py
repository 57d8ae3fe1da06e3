"""``ZOO_TRACE_PLUGINS=1``: one stderr line per hook call, with its arguments, the plugin that answered and its
duration.

How the answering plugin is found: pluggy's :meth:`~pluggy.PluginManager.add_hookcall_monitoring` gives the
``before``/``after`` of every ``pm.hook.NAME(...)`` call with the implementations and the outcome, but not which
implementation returned what. So every (non-wrapper) implementation's ``function`` is wrapped once to record, in
the innermost call of its hook on this thread, its plugin when it returns something other than ``None``. For a
``firstresult`` hook that plugin is the one whose result was returned (the call stops there); for the other hooks
it is every plugin that contributed. An implementation called directly instead of through ``pm.hook`` (the
registry calls each registration hook on its own, to know who registered what) is traced as a call of its own,
with the names it registered.

Lines look like (the arguments cut short here)::

    zoo-trace: zoo_register_models(register=<function …>) answered by zoo_core.testing -> registered […] in 0.02 ms
    zoo-trace: zoo_compile(backend=BackendSpec(…), …) answered by builtin:onnxruntime -> CompiledModel(…) in 31.33 ms
    zoo-trace: zoo_export(model=ModelSpec(name='tiny-cnn', …), …) answered by nobody -> None in 0.02 ms

A stage hook reaches the plugin that owns the model, dataset or backend alone; ``nobody`` there means that plugin
left the stage to the core (its generic export, the model's declared preprocessing).
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pluggy

TRACE_ENV = "ZOO_TRACE_PLUGINS"
PREFIX = "zoo-trace:"
_WRAPPED = "__zoo_traced__"

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether ``$ZOO_TRACE_PLUGINS`` asks for tracing (anything but empty, ``0``, ``false`` or ``no``)."""
    return environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def short(value: Any, depth: int = 0) -> str:
    """An abbreviated repr: a dataclass by its first two fields, an array by dtype and shape, a function by name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = [f"{f.name}={short(getattr(value, f.name), depth + 1)}" for f in dataclasses.fields(value)[:2]]
        more = ", …" if len(dataclasses.fields(value)) > 2 else ""
        return f"{type(value).__name__}({', '.join(shown)}{more})" if depth < 2 else f"{type(value).__name__}(…)"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__}({value.dtype}, shape={tuple(value.shape)})"
    if callable(value) and hasattr(value, "__name__") and not isinstance(value, type):
        return f"<function {value.__name__}>"
    text = _repr.repr(value)
    if text.startswith("<") and " object at 0x" in text:  # the default repr: the class says enough
        return f"<{type(value).__name__} object>"
    return text


@dataclass
class _Call:
    """One ``pm.hook.NAME(...)`` call in progress: which implementations it runs and which answered."""

    hook: str
    impls: set[int]
    start: float
    answered: list[str] = field(default_factory=list)
    raised: str | None = None


class HookTracer:
    """Writes a ``zoo-trace:`` line for every hook call of one plugin manager."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or _to_stderr
        self._local = threading.local()

    def install(self, pm: pluggy.PluginManager) -> Callable[[], None]:
        """Trace ``pm`` from now on; returns the undo function of the monitoring."""
        for caller in vars(pm.hook).values():
            if isinstance(caller, pluggy.HookCaller):
                for impl in caller.get_hookimpls():
                    self._wrap(impl, caller.name)
        firstresult = {name: bool(c.spec and c.spec.opts.get("firstresult")) for name, c in vars(pm.hook).items()
                       if isinstance(c, pluggy.HookCaller)}

        def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
            for impl in impls:  # a plugin registered after install
                self._wrap(impl, hook_name)
            self._stack().append(_Call(hook_name, {id(i) for i in impls}, time.perf_counter()))

        def after(outcome: Any, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
            call = self._stack().pop()
            ms = (time.perf_counter() - call.start) * 1000.0
            if outcome.exception is not None:
                self._line(hook_name, kwargs, f"raised in {call.raised or '?'}", repr(outcome.exception), ms)
                return
            result = outcome.get_result()
            if firstresult.get(hook_name, False):
                who = call.answered[0] if call.answered else "nobody"
            else:
                who = ", ".join(call.answered) or "nobody"
            self._line(hook_name, kwargs, f"answered by {who}", short(result), ms)

        return pm.add_hookcall_monitoring(before, after)

    def _stack(self) -> list[_Call]:
        if not hasattr(self._local, "calls"):
            self._local.calls = []
        return self._local.calls

    def _wrap(self, impl: pluggy.HookImpl, hook_name: str) -> None:
        if impl.wrapper or impl.hookwrapper or getattr(impl.function, _WRAPPED, False):
            return
        original, plugin, key = impl.function, impl.plugin_name, id(impl)
        argnames = impl.argnames

        def traced(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack()
            call = stack[-1] if stack and key in stack[-1].impls else None
            if call is None:  # called directly, not through pm.hook: a call of its own
                return self._direct(hook_name, plugin, original, {**dict(zip(argnames, args, strict=False)), **kwargs})
            try:
                result = original(*args, **kwargs)
            except BaseException:
                call.raised = plugin
                raise
            if result is not None:
                call.answered.append(plugin)
            return result

        setattr(traced, _WRAPPED, True)
        traced.__wrapped__ = original  # type: ignore[attr-defined]  # inspect.unwrap finds the plugin's function
        impl.function = traced  # type: ignore[misc]  # a documented attribute; pluggy calls it as is

    def _direct(self, hook_name: str, plugin: str, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        registered: list[str] = []
        call_kwargs = dict(kwargs)
        if callable(kwargs.get("register")):
            register = kwargs["register"]

            def recording(spec: Any) -> None:
                register(spec)
                registered.append(getattr(spec, "name", "?"))

            recording.__name__ = getattr(register, "__name__", "register")
            call_kwargs["register"] = recording
        start = time.perf_counter()
        try:
            result = function(**call_kwargs)
        except BaseException as exc:
            self._line(hook_name, kwargs, f"raised in {plugin}", repr(exc), (time.perf_counter() - start) * 1000.0)
            raise
        shown = f"registered {registered}" if "register" in kwargs else short(result)
        self._line(hook_name, kwargs, f"answered by {plugin}", shown, (time.perf_counter() - start) * 1000.0)
        return result

    def _line(self, hook_name: str, kwargs: Mapping[str, Any], who: str, result: str, ms: float) -> None:
        args = ", ".join(f"{k}={short(v)}" for k, v in kwargs.items())
        self.write(f"{PREFIX} {hook_name}({args}) {who} -> {result} in {ms:.2f} ms")


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def trace_hooks(pm: pluggy.PluginManager) -> Callable[[], None]:
    """Trace every hook call of ``pm`` to stderr; returns the undo function."""
    return HookTracer().install(pm)
