"""Every stage reaches the plugin that owns its model, dataset kind or backend, and no implementation filters by name.

The registry keeps the first registration of a name and ``zoo plugins`` reports later ones as ignored; the core
then calls the stage hooks of that first plugin only. (Before plugins v2 the core called every implementation in
pluggy's order, last registered first, and each filtered by name: the ignored duplicate compiled.)
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from zoo_core.scaffold import write_plugin

ROOT = Path(__file__).resolve().parents[1]
FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")
STAGES = {"zoo_export", "zoo_preprocess", "zoo_compile", "zoo_infer", "zoo_commands", "zoo_commands_setup",
          "zoo_load_dataset", "zoo_dataset_matches"}


def _owners(zoo_cli, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    result = zoo_cli("plugins", "--json", env=env)
    assert result.code == 0, result
    data = json.loads(result.stdout)
    return {b["name"]: b["plugin"] for b in data["backends"]}, [p["error"] for p in data["plugins"] if p["error"]]


@pytest.mark.parametrize("backend, owner", [("dup-cpu", "zoo_dup_first"), ("onnxruntime", None)])
def test_the_reported_owner_of_a_backend_name_compiles_and_infers(zoo_cli, tmp_path: Path, backend, owner) -> None:
    log = tmp_path / "stages.log"
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_dup_first,zoo_dup_second", "ZOO_DUP_LOG": str(log)}
    owners, problems = _owners(zoo_cli, env)
    expected_owner = owner or "builtin:onnxruntime"
    assert owners[backend] == expected_owner
    assert (f"duplicate backend name {backend!r}: already registered by plugin {expected_owner!r}; "
            "this one is ignored") in problems

    result = zoo_cli("run", "resnest-tiny", "--backend", backend, *FAST, "--out", str(tmp_path / "out"), env=env)
    assert result.code == 0, result
    stages = log.read_text().splitlines() if log.exists() else []
    # The ignored zoo_dup_second never runs; the owner does (the built-in logs nothing).
    assert not [line for line in stages if line.startswith("zoo_dup_second")], stages
    if owner:
        assert stages == [f"{owner} compile {backend}", f"{owner} infer {backend}"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["backend"] == backend
    assert results["plugins"]["backend"]["name"] == expected_owner  # the results name who measured
    assert results["plugins"]["model"] == {"name": "zoo_tiny", "version": ""}


def _stage_guards(path: Path, source: str) -> list[str]:
    """The v1 guard in a stage implementation: ``if <x>.name|family|backend|plugin != ... : return None`` (or
    ``not in``), "not mine, let another plugin answer". (A plugin telling its own models apart with ``==`` is not
    one: it is only ever asked about its own.)"""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name not in STAGES:
            continue
        for stmt in ast.walk(node):
            if not isinstance(stmt, ast.If):
                continue
            names = {n.attr for n in ast.walk(stmt.test) if isinstance(n, ast.Attribute)}
            negative = any(isinstance(op, (ast.NotEq, ast.NotIn, ast.IsNot)) for n in ast.walk(stmt.test)
                           if isinstance(n, ast.Compare) for op in n.ops)
            returns_none = any(isinstance(s, ast.Return) and (s.value is None or (
                isinstance(s.value, ast.Constant) and s.value.value is None)) for s in stmt.body)
            if returns_none and negative and names & {"name", "family", "backend", "plugin"}:
                found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{stmt.lineno} "
                             f"in {node.name}")
    return found


def test_no_stage_implementation_filters_by_name(tmp_path: Path) -> None:
    files = [p for folder in ("zoo_core", "plugins", "examples", "tests/plugins")
             for p in (ROOT / folder).rglob("*.py")]
    for kind in ("model", "dataset", "backend"):  # the scaffold's templates, rendered
        target = tmp_path / kind
        write_plugin(f"guard-{kind}", kind, target)
        files += list(target.rglob("*.py"))
    assert len(files) > 40
    guards = [g for path in files for g in _stage_guards(path, path.read_text(encoding="utf-8"))]
    assert guards == []


def test_the_guard_finder_finds_a_guard() -> None:
    """The check above can fail: the old form of a stage implementation is caught."""
    old = "def zoo_compile(backend, model):\n    if backend.name != NAME:\n        return None\n    return 1\n"
    assert _stage_guards(ROOT / "x.py", old) == ["x.py:2 in zoo_compile"]
    old_family = "def zoo_export(model):\n    if model.family not in FAMILIES:\n        return\n"
    assert _stage_guards(ROOT / "x.py", old_family) == ["x.py:2 in zoo_export"]
    own = "def zoo_preprocess(model):\n    if model.name == SPECIAL:\n        return None\n"
    assert _stage_guards(ROOT / "x.py", own) == []
