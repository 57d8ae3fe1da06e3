"""The plugin manager: entry points, built-ins, recorded load errors, registration rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import zoo_resnest
from zoo_core import hookimpl
from zoo_core.errors import UsageError, ZooError
from zoo_core.plugins import Registry, get_plugin_manager
from zoo_core.specs import BackendSpec, ModelSpec


def test_builtin_and_entry_point_plugins_are_registered() -> None:
    pm = get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    # The in-tree model and dataset plugins come through the `zoo` entry-point group, like a third party's.
    assert {"resnest", "datasets"} <= names
    assert pm.sources["resnest"].endswith("(entry point)")
    assert {"builtin:onnxruntime", "builtin:torch", "builtin:metrics"} <= names
    assert not pm.problems


def test_autoload_off_loads_only_builtins() -> None:
    pm = get_plugin_manager(autoload=False)
    assert pm.get_plugin("resnest") is None
    registry = Registry(pm)
    assert "resnest50" not in registry.models  # zoo_tiny from $ZOO_PLUGINS is there, the entry points are not
    assert "onnxruntime" in registry.backends


def test_four_resnest_models_with_their_configs() -> None:
    registry = Registry(get_plugin_manager(autoload=False, plugins=[zoo_resnest]))
    models = {n: m for n, m in registry.models.items() if m.family == "resnest" and n != "resnest-tiny"}
    assert sorted(models) == ["resnest101", "resnest200", "resnest269", "resnest50"]
    r50 = models["resnest50"]
    assert r50.input_names == ("actual_input_1",) and r50.output_names == ("output1",)
    assert r50.input_shape == (3, 224, 224) and r50.opset == 11 and r50.preset == "modelzoo"
    assert r50.weights.file_name == "resnest50-528c19ca.pth" and r50.weights.sha256_prefix == "528c19ca"
    assert r50.weights.url.endswith("/weights_step1/resnest50-528c19ca.pth")
    assert r50.plugin == "zoo_resnest"


class Misspelled:
    @hookimpl
    def zoo_register_modles(self, register):  # a typo the specs do not know
        pass


def test_a_misspelled_hook_is_recorded_not_fatal() -> None:
    pm = get_plugin_manager(autoload=False, plugins=[Misspelled()])
    assert [p.plugin for p in pm.problems] == ["Misspelled"]
    assert "zoo_register_modles" in pm.problems[0].error
    assert "onnxruntime" in Registry(pm).backends


class Duplicate:
    @hookimpl
    def zoo_register_models(self, register):
        register(ModelSpec(name="resnest50", family="other", factory="x:y"))


def test_a_duplicate_model_name_keeps_the_first_and_records_the_second() -> None:
    pm = get_plugin_manager(autoload=False, plugins=[zoo_resnest, Duplicate()])
    registry = Registry(pm)
    assert registry.models["resnest50"].family == "resnest"
    assert any("duplicate model name 'resnest50'" in p.error for p in pm.problems)


class Raising:
    @hookimpl
    def zoo_register_models(self, register):
        raise RuntimeError("boom")


def test_a_raising_registration_hides_no_other_plugin() -> None:
    pm = get_plugin_manager(autoload=False, plugins=[zoo_resnest, Raising()])
    assert "resnest50" in Registry(pm).models
    assert any("boom" in p.error for p in pm.problems)


def test_unknown_model_suggests_close_matches() -> None:
    registry = Registry(get_plugin_manager(autoload=False, plugins=[zoo_resnest]))
    with pytest.raises(UsageError) as info:
        registry.model("resnet50")
    assert "resnest50" in info.value.note


class Unavailable:
    @hookimpl
    def zoo_register_backends(self, register):
        register(BackendSpec(name="npu", available=False, unavailable_reason="atc not on PATH", priority=100))


def test_auto_backend_skips_unavailable_ones_and_naming_one_says_why() -> None:
    registry = Registry(get_plugin_manager(autoload=False, plugins=[Unavailable()]))
    assert registry.backend("auto").name == "onnxruntime"
    with pytest.raises(ZooError, match="atc not on PATH"):
        registry.backend("npu")


def _broken_distribution(root: Path) -> None:
    """A pip-installed-looking plugin whose module raises on import."""
    (root / "zoo_broken.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    info = root / "zoo_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [zoo]
        broken = zoo_broken
        """))


def test_a_plugin_that_raises_on_import_is_shown_and_list_still_works(zoo_cli, tmp_path: Path, monkeypatch) -> None:
    _broken_distribution(tmp_path)
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]])}
    plugins = zoo_cli("plugins", "--json", env=env)
    assert plugins.code == 0, plugins
    broken = [p for p in plugins.json()["plugins"] if p["name"] == "broken"]
    assert broken and "this plugin is broken on purpose" in broken[0]["error"]
    assert broken[0]["source"] == "zoo-broken (entry point)"

    listing = zoo_cli("list", "--json", env=env)
    assert listing.code == 0, listing
    assert "resnest50" in {m["name"] for m in listing.json()}
    human = zoo_cli("plugins", env=env)
    assert "this plugin is broken on purpose" in human.stdout
