"""``ZOO_TRACE_PLUGINS=1``: one stderr line per hook call, with its arguments, the plugin that answered and how long
it took."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from zoo_core import hookimpl
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_tiny import TINY_RESNEST
from zoo_core.trace import HookTracer

LINE = re.compile(
    r"zoo-trace: (?P<hook>zoo_\w+)\((?P<args>.*)\) "
    r"(?:answered by (?P<who>.+?)|raised in (?P<raiser>\S+)) -> (?P<result>.*) in (?P<ms>\d+\.\d\d) ms"
)


def _parse(lines: list[str]) -> dict[str, list[re.Match[str]]]:
    by_hook: dict[str, list[re.Match[str]]] = {}
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not a trace line: {line!r}"
        by_hook.setdefault(match["hook"], []).append(match)
    return by_hook


def test_a_run_traces_each_hook_call_with_who_answered_and_how_long(zoo_cli, tmp_path: Path) -> None:
    env = {"ZOO_TRACE_PLUGINS": "1", "ZOO_CACHE_DIR": str(tmp_path / "cache")}  # a new cache: every stage runs
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--iterations", "2", "--warmup", "1",
                     "--out", tmp_path / "run", "--json", env=env)
    assert result.code == 0, result
    assert result.json()["model"] == "resnest-tiny"  # stdout is still the results object alone
    calls = _parse([line for line in result.stderr.splitlines() if line.startswith("zoo-trace:")])

    # The registry calls each registration hook on its own plugin: one line each, with what it registered.
    registered = {m["who"]: m["result"] for m in calls["zoo_register_models"]}
    assert registered["zoo_tiny"] == "registered ['resnest-tiny']"
    assert "'resnest50'" in registered["resnest"]
    assert all(m["args"] == "register=<function register>" for m in calls["zoo_register_models"])

    # A model stage reaches the model's plugin alone: zoo_tiny registered the tiny model and implements no zoo_export,
    # so nobody answers (the ResNeSt plugin, of the same family, is not asked) and the core's generic export runs.
    [export] = calls["zoo_export"]
    assert export["who"] == "nobody" and export["result"] == "None"
    assert export["args"].startswith("model=ModelSpec(name='resnest-tiny', family='resnest', …), weights=WeightsRef(")
    assert "options=RunOptions(model='resnest-tiny', batch_sizes=(2,), …)" in export["args"]
    [compiled] = calls["zoo_compile"]
    assert compiled["who"] == "builtin:onnxruntime"
    assert compiled["result"] == "CompiledModel(backend='onnxruntime', model='resnest-tiny', …)"
    [infer] = calls["zoo_infer"]
    assert infer["who"] == "builtin:onnxruntime" and infer["result"] == "<OnnxRuntimeRunner object>"
    assert calls["zoo_environment"]  # an every-plugin hook is traced too, answered or not


@pytest.mark.parametrize("value", [None, "0", ""])
def test_no_trace_unless_asked(zoo_cli, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.delenv("ZOO_TRACE_PLUGINS", raising=False)
    result = zoo_cli("list", env={} if value is None else {"ZOO_TRACE_PLUGINS": value})
    assert result.code == 0, result
    assert "zoo-trace" not in result.stderr


class Exports:
    plugin_name = "exports"

    @hookimpl
    def zoo_export(self, model, path):
        return path


class Declines:
    plugin_name = "declines"

    @hookimpl
    def zoo_export(self, model):
        return None


class Raises:
    plugin_name = "raises"

    @hookimpl
    def zoo_export(self, model):
        raise RuntimeError("boom")


class Scores:
    plugin_name = "scores"

    @hookimpl
    def zoo_metrics(self, outputs):
        return {"mean": float(outputs.mean())}


def _traced(*plugins: object) -> tuple[object, list[str]]:
    pm = get_plugin_manager(autoload=False, plugins=plugins)
    lines: list[str] = []
    HookTracer(write=lines.append).install(pm)
    return pm, lines


def test_the_plugin_that_answered_is_the_one_whose_result_came_back_not_the_first_called() -> None:
    pm, lines = _traced(Exports(), Declines())  # pluggy calls the last registered first: `declines`, then `exports`
    assert pm.hook.zoo_export(model=TINY_RESNEST, weights=None, path=Path("m.onnx"), options=None) == Path("m.onnx")
    [line] = _parse(lines)["zoo_export"]
    assert line["who"] == "exports" and line["result"] == "PosixPath('m.onnx')"
    assert line["args"] == "model=ModelSpec(name='resnest-tiny', family='resnest', …), weights=None, " \
                           "path=PosixPath('m.onnx'), options=None"


def test_nobody_answers_when_every_plugin_declines() -> None:
    pm, lines = _traced(Declines())
    assert pm.hook.zoo_export(model=TINY_RESNEST, weights=None, path=Path("m.onnx"), options=None) is None
    assert _parse(lines)["zoo_export"][0]["who"] == "nobody"


def test_a_raising_plugin_is_named_and_the_error_still_raised() -> None:
    pm, lines = _traced(Exports(), Raises())
    with pytest.raises(RuntimeError, match="boom"):
        pm.hook.zoo_export(model=TINY_RESNEST, weights=None, path=Path("m.onnx"), options=None)
    [line] = _parse(lines)["zoo_export"]
    assert line["raiser"] == "raises" and line["result"] == "RuntimeError('boom')"


def test_every_contributor_of_a_one_to_many_hook_is_named_and_arrays_are_abbreviated() -> None:
    pm, lines = _traced(Scores())
    outputs = np.zeros((4, 10), dtype=np.float32)
    pm.hook.zoo_metrics(model=TINY_RESNEST, outputs=outputs, labels=np.zeros(4, dtype=np.int64))
    [line] = _parse(lines)["zoo_metrics"]
    assert set(line["who"].split(", ")) == {"scores", "builtin:metrics"}
    assert "outputs=ndarray(float32, shape=(4, 10)), labels=ndarray(int64, shape=(4,))" in line["args"]


def test_a_plugin_registered_after_tracing_began_is_traced() -> None:
    pm, lines = _traced()
    pm.register(Exports(), name="exports")
    pm.hook.zoo_export(model=TINY_RESNEST, weights=None, path=Path("m.onnx"), options=None)
    assert _parse(lines)["zoo_export"][0]["who"] == "exports"


def test_registration_through_the_registry_is_one_line_per_plugin() -> None:
    pm, lines = _traced()
    assert "onnxruntime" in Registry(pm).backends
    who = {m["who"]: m["result"] for m in _parse(lines)["zoo_register_backends"]}
    assert who["builtin:onnxruntime"] == "registered ['onnxruntime']"
