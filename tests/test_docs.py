"""docs/writing-plugins.md: every hook of hookspecs.py with its exact signature and calling mode, the example
plugins exactly as ``zoo new-plugin`` writes them (their tests pass once installed: tests/test_scaffold.py), and
every other plugin on the page registered in a zoo, its models' declared presets executed on an image."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Any, Callable

import pytest

from zoo_core import hookspecs
from zoo_core.engines import registered
from zoo_core.preprocessing import execute
from zoo_core.scaffold import render
from zoo_core.testing import make_zoo, preprocess, write_image_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
REFERENCE_HEADING = "## Hook reference"
# The example plugins on the page: name -> kind, and the files each must show in full.
EXAMPLES = {"mynet": "model", "csvlabels": "dataset", "mybackend": "backend"}
SHOWN = {
    "model": {"zoo_mynet/__init__.py", "zoo_mynet/model.py", "tests/test_zoo_mynet.py"},
    "dataset": {"zoo_csvlabels/__init__.py"},
    "backend": {"zoo_mybackend/__init__.py"},
}


def hook_specs() -> dict[str, Callable[..., Any]]:
    """Every function of hookspecs.py that pluggy's marker made a hook spec (it sets ``zoo_spec`` on it)."""
    return {
        name: fn for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and getattr(fn, f"{hookspecs.PROJECT}_spec", None) is not None
    }


def signature(fn: Callable[..., Any]) -> str:
    """``def name(param: annotation, ...) -> return``, annotations as written (hookspecs.py postpones them)."""
    parts = []
    for p in inspect.signature(fn).parameters.values():
        text = p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {p.annotation}"
        parts.append(text if p.default is inspect.Parameter.empty else f"{text} = {p.default!r}")
    result = inspect.signature(fn).return_annotation
    return f"def {fn.__name__}({', '.join(parts)})" + ("" if result is inspect.Signature.empty else f" -> {result}")


def one_line(code: str) -> str:
    """A signature as one line, however the page wraps it: no line breaks, no space inside the parentheses, no
    trailing comma."""
    text = " ".join(code.split())
    text = re.sub(r"\(\s+", "(", text)
    return re.sub(r",?\s+\)", ")", text)


def reference_sections() -> dict[str, str]:
    """Hook name -> the text of its ``#### zoo_...`` section in the Hook reference."""
    text = DOC.read_text()
    assert REFERENCE_HEADING in text, f"{DOC.name} has no '{REFERENCE_HEADING}' section"
    reference = text.split(REFERENCE_HEADING, 1)[1]
    return dict(re.findall(r"^#### (\w+)\n(.*?)(?=^#{2,4} |\Z)", reference, flags=re.M | re.S))


HOOKS = sorted(hook_specs())


def test_the_signature_format() -> None:
    assert signature(hookspecs.zoo_export) == (
        "def zoo_export(model: ModelSpec, weights: WeightsRef, path: Path, options: RunOptions) -> Path | None"
    )
    assert one_line("def f(\n    a: int,\n    b: str,\n) -> None") == "def f(a: int, b: str) -> None"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    sections = reference_sections()
    expected = signature(hook_specs()[hook])
    assert hook in sections, (
        f"hook {hook} is not documented: add to '{REFERENCE_HEADING}' in docs/{DOC.name} a section\n"
        f"#### {hook}\n```python\n{expected}\n```\n**Calling mode:** ...\nand its contract"
    )
    blocks = re.findall(r"```python\n(.*?)\n```", sections[hook], flags=re.S)
    assert blocks, f"the section of {hook} has no ```python block with its signature"
    assert one_line(blocks[0]) == expected, f"the documented signature of {hook} differs from hookspecs.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_states_its_calling_mode(hook: str) -> None:
    section = reference_sections().get(hook, "")
    firstresult = hook_specs()[hook].zoo_spec["firstresult"]
    stated = "**Calling mode:** first result" if firstresult else "**Calling mode:** every plugin"
    assert stated in section, f"the section of {hook} must say '{stated}' (firstresult={firstresult})"


def test_the_reference_documents_no_hook_that_does_not_exist() -> None:
    assert sorted(set(reference_sections()) - set(HOOKS)) == []


def test_the_example_plugins_are_what_zoo_new_plugin_writes() -> None:
    blocks = re.findall(r'```\w+ title="zoo-([\w-]+)/([^"]+)"\n(.*?)\n```', DOC.read_text(), flags=re.S)
    shown: dict[str, set[str]] = {kind: set() for kind in SHOWN}
    for name, path, code in blocks:
        assert name in EXAMPLES, f"an example file of an unknown plugin: zoo-{name}/{path}"
        files = render(name, EXAMPLES[name])
        assert path in files, f"`zoo new-plugin {name} --kind {EXAMPLES[name]}` writes no {path}"
        assert code == files[path].rstrip("\n"), f"zoo-{name}/{path} on the page is not what zoo new-plugin writes"
        shown[EXAMPLES[name]].add(path)
    assert shown == SHOWN


def plugin_blocks() -> list[tuple[int, str]]:
    """(line, code) of each untitled ```python block on the page that defines a plugin: hook implementations or
    ``declare_models``. Each is a complete module."""
    text = DOC.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"```python\n(.*?)\n```", text, flags=re.S)
            if "@hookimpl" in m.group(1) or "declare_models(" in m.group(1)]


def test_the_page_has_its_example_plugins() -> None:
    assert len(plugin_blocks()) >= 5


@pytest.mark.parametrize("line", [line for line, _ in plugin_blocks()])
def test_each_example_plugin_registers_and_its_declarations_run(line: int, tmp_path: Path) -> None:
    code = dict(plugin_blocks())[line]
    plugin = types.ModuleType(f"doc_example_line_{line}")
    exec(compile(code, f"{DOC.name}:{line}", "exec"), plugin.__dict__)
    zoo = make_zoo(plugin, cache_dir=tmp_path / "cache")
    models = [m for m in zoo.registry.models.values() if m.plugin == plugin.__name__]
    engines = [e for e in registered(zoo).values() if e.plugin == plugin.__name__]
    assert [p.error for p in zoo.pm.problems] == []
    assert zoo.pm.get_plugin(plugin.__name__) is plugin and zoo.pm.get_hookcallers(plugin)
    assert models or engines or "declare_models(" not in code and "zoo_register_engines" not in code
    image = tmp_path / next(iter(write_image_dataset(tmp_path, count=1)))
    for model in models:  # every preset prepares an image of the input its backend takes
        for preset in model.preset_names:
            sample = preprocess(zoo, model, image, preset)
            overrides = [b for b, given in model.backend_inputs.items() if given.get("preset") == preset]
            shape, dtype, _ = model.input_for(overrides[0] if overrides else "")
            assert (sample.shape, str(sample.dtype)) == (shape, dtype), (model.name, preset)
            declared = model.preprocessing(preset)
            if declared is not None and not zoo.registry.implements("zoo_preprocess", model):
                assert (execute(declared, model, image) == sample).all()
