"""The shape of the core, checked from its source: no import cycle among zoo_core modules, and a core that
names no backend, dataset kind, device or model of the plugins.

**Imports.** Every ``import``/``from ... import`` of every module under ``zoo_core/`` is read with ``ast``:
top-level ones and function-local ones alike (a function-local import that closes a cycle is still a cycle, only
a lazier one). Imports under ``if TYPE_CHECKING:`` are left out: they never run, and type annotations may point
both ways. ``from .x import y`` depends on ``zoo_core.x``, and on ``zoo_core.x.y`` when that is a module. The
package ``zoo_core`` itself (``from . import hookimpl``) is a node like the others.

**Names.** The core (``zoo_core/`` outside ``backends/``, the built-in backend plugins, and ``templates/``, the
scaffold's files for new plugins) holds no string literal that *is* (whole string, any case) a name a plugin owns:

- the built-in backends' names (``onnxruntime``, ``torch``, ``ascend``, read from their ``NAME``),
- the device names of the backends' chips (``npu``),
- the in-tree dataset kind ``imagenet-val`` (not ``folder``: the word is also the key of
  every path-valued result field, ``{"folder": str(target)}``, and no rule on literals tells the two apart), and
- the in-tree models and their family (a whole literal ``resnest``, ``resnest50``, ``resnest-tiny``, ...).

A string that *contains* such a name in prose (a message or note saying "max |onnxruntime - torch|", a help
text's example) is not a violation: the rule catches names the core would act on (a comparison, a dict key, a
default), which is where a backend or model leaks into behaviour. Narrow exceptions, each a package rather than
a backend:

- ``export.py``: the core's export toolchain is torch -> ONNX, checked with onnxruntime against torch: the
  packages ``torch``/``onnxruntime`` it imports and names (``import_quietly("torch")``);
- ``environment.py``: the versions of the toolchain packages in every results object;
- ``runner.py``'s export cache key (``package_version("torch")``): the exporter's version, not a backend;
- ``limits.py``: the opsets that torch.onnx, onnx and onnxruntime (the toolchain, again) support;
- ``onnx_input.py``: an ``--onnx`` file is checked by loading it in onnxruntime, the toolchain's checker;
- ``weights.py``: torch hub's checkpoints folder (``$TORCH_HOME``, default ``~/.cache/torch``), where
  downloaded weights live.

The exceptions are listed as (file, literal) pairs below, so a new use elsewhere fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from zoo_core import hookimpl

CORE = Path(__file__).resolve().parent.parent / "zoo_core"

# (file under zoo_core/, literal): the toolchain packages the core itself runs, never a backend choice.
TOOLCHAIN_PACKAGES = {
    ("export.py", "torch"), ("export.py", "onnxruntime"),
    ("environment.py", "torch"), ("environment.py", "onnxruntime"),
    ("runner.py", "torch"),
    ("limits.py", "torch"), ("limits.py", "onnxruntime"),
    ("onnx_input.py", "onnxruntime"),
    ("weights.py", "torch"),
}
# (file, literal) -> why it is still there: to remove, never to grow.


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "templates" not in p.relative_to(CORE).parts)


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The zoo_core modules ``path`` imports anywhere in its code, ``if TYPE_CHECKING:`` blocks left out."""
    name = module_name(path)
    return imports_in(path.read_text(), name, name if path.name == "__init__.py" else name.rpartition(".")[0],
                      modules)


def imports_in(source: str, name: str, package: str, modules: set[str]) -> set[str]:
    """The ``modules`` that the code of module ``name`` (in ``package``) imports."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source, name))
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = core_files()
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_function_local_imports_count_and_type_checking_imports_do_not() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
              "def f():\n    from .c import g\n    from . import d\n    from ..x import y\n")
    modules = {"zoo_core.b", "zoo_core.c", "zoo_core.d", "zoo_core", "zoo_core.x"}
    assert imports_in(source, "zoo_core.a", "zoo_core", modules) == {"zoo_core.c", "zoo_core.d", "zoo_core"}
    assert imports_in(source, "zoo_core.sub.a", "zoo_core.sub", modules) == {"zoo_core.x"}


def test_no_import_cycle_among_zoo_core_modules() -> None:
    graph = import_graph()
    assert "zoo_core.runner" in graph and graph["zoo_core.runner"], "the walk found no imports: the test is broken"
    found = cycles(graph)
    assert not found, "import cycles among zoo_core modules: " + "; ".join(" <-> ".join(c) for c in found)


def _owned_names() -> dict[str, str]:
    """Literal (lower case) -> what owns it, from the built-in backends and the in-tree plugins."""
    import importlib

    from zoo_core.plugins import DEFAULT_PLUGINS

    names: dict[str, str] = {}
    for module_path in DEFAULT_PLUGINS.values():
        if module_path.startswith("zoo_core.backends."):
            names[importlib.import_module(module_path).NAME.lower()] = "a built-in backend"
    names["npu"] = "a backend's device"
    for kind in ("imagenet-val",):
        names[kind] = "a dataset kind of plugins/datasets"
    return names


def name_violations() -> list[str]:
    owned = _owned_names()
    found = []
    for path in core_files():
        relative = path.relative_to(CORE)
        if relative.parts[0] == "backends":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value.lower()
            owner = owned.get(text) or ("a model of plugins/resnest" if re.fullmatch(r"resnest[\w.-]*", text) else None)
            if owner and (relative.as_posix(), node.value) not in TOOLCHAIN_PACKAGES:
                found.append(f"{relative}:{node.lineno}: {node.value!r} ({owner})")
    return found


def test_the_owned_names_are_read_from_the_backends() -> None:
    assert {"onnxruntime", "torch", "ascend", "npu"} <= set(_owned_names())


def test_the_core_names_no_backend_dataset_kind_device_or_model() -> None:
    found = name_violations()
    assert not found, "the core names what a plugin owns:\n" + "\n".join(found)


@pytest.mark.parametrize("literal", ["ascend", "NPU", "imagenet-val", "resnest50", "torch"])
def test_a_named_backend_or_model_is_caught(literal: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        text = real(self, *args, **kwargs)
        return text + f"\nPROBE = {literal!r}\n" if self.name == "measure.py" and self.parent == CORE else text

    monkeypatch.setattr(Path, "read_text", read_text)
    assert any(v.startswith("measure.py:") and repr(literal) in v for v in name_violations())


# -------------------------------------------------------------------------
# Engines: one protocol, chosen by name, registered by plugins too
# -------------------------------------------------------------------------


class InlineEngine:
    """A plugin's engine: the local engine's work, under its own name, counting what the runner asked of it."""

    name = "inline"

    def __init__(self, zoo, options) -> None:
        from zoo_core.engines import LocalEngine

        self.local = LocalEngine(zoo, options)
        self.asked: list[str] = []

    def __enter__(self) -> "InlineEngine":
        self.asked.append("enter")
        return self

    def __exit__(self, *exc: object) -> None:
        self.asked.append("exit")

    def measure(self, model, compiled, options, progress):
        self.asked.append(f"measure {compiled.batch_size}")
        return self.local.measure(model, compiled, options, progress)

    def evaluate(self, job):
        self.asked.append("evaluate")
        return self.local.evaluate(job)

    def where(self) -> str:
        return " inline"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "asked": list(self.asked)}


class InlineEnginePlugin:
    plugin_name = "inline-engine"

    def __init__(self) -> None:
        self.opened: list[InlineEngine] = []

    def _open(self, zoo, options, backend) -> InlineEngine:
        self.opened.append(InlineEngine(zoo, options))
        return self.opened[-1]

    @hookimpl
    def zoo_register_engines(self, register) -> None:
        from zoo_core.engines import EngineSpec

        register(EngineSpec("inline", self._open, "the local engine, under another name"))
        register(EngineSpec("local", self._open, "a second 'local': refused"))


def _zoo(tmp_path: Path, *plugins: object):
    import zoo_datasets
    import zoo_resnest

    from zoo_core.runner import Zoo

    return Zoo.create(autoload=False, plugins=[zoo_resnest, zoo_datasets, *plugins], cache_dir=tmp_path / "cache")


def test_a_plugin_engine_is_chosen_by_name_and_runs_the_measurement(tmp_path: Path) -> None:
    from zoo_core.runner import run
    from zoo_core.specs import resolve_options

    plugin = InlineEnginePlugin()
    zoo = _zoo(tmp_path, plugin)
    options = resolve_options(zoo.registry.model("resnest-tiny"), {
        "weights": "random", "warmup": 0, "iterations": 1, "batch_sizes": (1, 2), "engine": "inline",
        "backend": "onnxruntime"})
    results = run(zoo, options)
    assert results["engine"] == {"name": "inline", "asked": ["enter", "measure 1", "measure 2"]}
    assert plugin.opened[0].asked[-1] == "exit"
    assert [r["batch_size"] for r in results["results"]] == [1, 2] and results["results"][0]["throughput"] > 0
    from zoo_core.reporting import validate

    validate(results)  # the shipped schema takes an engine a plugin registered (results.json is written after it)


def test_a_plugin_cannot_take_the_name_of_a_core_engine(tmp_path: Path) -> None:
    from zoo_core.engines import registered

    zoo = _zoo(tmp_path, InlineEnginePlugin())
    engines = registered(zoo)
    assert list(engines) == ["local", "ray", "inline"]
    assert engines["local"].plugin == "builtin" and engines["inline"].plugin == "inline-engine"
    assert any(p.plugin == "inline-engine" and "engine 'local'" in p.error for p in zoo.pm.problems)


def test_the_local_engine_describes_its_workers_and_devices(tmp_path: Path) -> None:
    from zoo_core.engines import LocalEngine
    from zoo_core.specs import RunOptions

    engine = LocalEngine(_zoo(tmp_path), RunOptions(model="m", workers=3, devices=(0,)))
    with engine as entered:
        assert entered is engine and engine.where() == ""
    assert engine.describe() == {"name": "local", "workers": 3, "devices": [0]}


def test_an_unknown_engine_is_a_usage_error_listing_the_registered_ones(zoo_cli) -> None:
    from test_bad_inputs import one_error

    error, note = one_error(zoo_cli("run", "resnest-tiny", "--weights", "random", "--engine", "spark"), 2)
    assert "--engine: unknown engine 'spark'" in error
    assert "choose local or ray" in note


def test_an_option_of_another_engine_is_a_usage_error_before_any_output_folder(zoo_cli, tmp_path: Path) -> None:
    from test_bad_inputs import one_error

    out = tmp_path / "out"
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--actors", "2", "--out", str(out))
    error, note = one_error(result, 2)
    assert "--actors only apply to --engine ray" in error and not out.exists()


def test_the_builtin_backends_declare_what_engines_and_compare_need(tmp_path: Path) -> None:
    backends = _zoo(tmp_path).registry.backends
    assert [name for name, b in backends.items() if b.reference] == ["torch"]
    assert (backends["ascend"].ray_resource, backends["ascend"].device_env) == ("NPU", "ASCEND_RT_VISIBLE_DEVICES")
    assert backends["onnxruntime"].ray_resource is None and backends["onnxruntime"].device_env is None
