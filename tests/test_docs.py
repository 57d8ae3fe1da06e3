"""docs/writing-plugins.md: every hook of hookspecs.py with its exact signature and calling mode, and the example
plugins exactly as ``zoo new-plugin`` writes them (their tests pass once installed: tests/test_scaffold.py)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from zoo_core import hookspecs
from zoo_core.scaffold import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
REFERENCE_HEADING = "## Hook reference"
# The example plugins on the page: name -> kind, and the files each must show in full.
EXAMPLES = {"mynet": "model", "csvlabels": "dataset", "mybackend": "backend"}
SHOWN = {
    "model": {"pyproject.toml", "tests/conftest.py", "zoo_mynet/__init__.py", "zoo_mynet/model.py",
              "tests/test_zoo_mynet.py"},
    "dataset": {"zoo_csvlabels/__init__.py", "tests/test_zoo_csvlabels.py"},
    "backend": {"zoo_mybackend/__init__.py", "tests/test_zoo_mybackend.py"},
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
