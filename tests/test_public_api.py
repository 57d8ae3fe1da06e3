"""zoo_core.api, the one public API for plugins: every name it exports resolves without torch or numpy, and what a
plugin author reads or copies (docs/writing-plugins.md, the ``zoo new-plugin`` skeletons, the in-tree and example
plugins) imports from ``zoo_core`` nothing else: ``zoo_core.api``, the package's ``hookimpl``, and in tests the
test kit ``zoo_core.testing``."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core.api
from zoo_core.scaffold import KINDS, render

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing-plugins.md"
PUBLIC = "zoo_core.api"
TEST_KIT = "zoo_core.testing"


def private_imports(source: str, where: str, tests: bool = False) -> list[str]:
    """Each import of a ``zoo_core`` module other than the public API: ``where:line: the import``."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module, names = node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            module, names = "", [alias.name for alias in node.names]
        else:
            continue
        modules = [module] if module else names
        for name in modules:
            if name != "zoo_core" and not name.startswith("zoo_core."):
                continue
            allowed = name == PUBLIC or (tests and name == TEST_KIT) or (
                name == "zoo_core" and module == "zoo_core" and names == ["hookimpl"])
            if not allowed:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def doc_blocks() -> list[tuple[str, str]]:
    """(where, code) of each ```python block of the plugin guide, but the hook reference's bare signatures."""
    blocks = []
    text = DOC.read_text()
    for match in re.finditer(r'```python( title="([^"]+)")?\n(.*?)\n```', text, flags=re.S):
        code = match.group(3)
        if re.fullmatch(r"def zoo_\w+\(.*\)( -> .*)?", " ".join(code.split()), flags=re.S):
            continue  # a signature, not code
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((f"{DOC.name}:{line} {match.group(2) or ''}".strip(), code))
    return blocks


def sources() -> list[tuple[str, str, bool]]:
    """(where, source, is a test) of everything a plugin author reads or copies."""
    found = [(where, code, "tests/" in where) for where, code in doc_blocks()]
    for kind in KINDS:
        for path, text in render("demo", kind).items():
            if path.endswith(".py"):
                found.append((f"zoo new-plugin --kind {kind}: {path}", text, path.startswith("tests/")))
    for folder in ("plugins", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            found.append((relative.as_posix(), path.read_text(encoding="utf-8"), "tests" in relative.parts))
    return found


def test_every_exported_name_resolves() -> None:
    assert len(zoo_core.api.__all__) > 30 and sorted(dir(zoo_core.api)) == sorted(zoo_core.api.__all__)
    missing = [name for name in zoo_core.api.__all__ if getattr(zoo_core.api, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError, match="no attribute 'NotExported'"):
        zoo_core.api.NotExported  # noqa: B018


def test_the_import_check_finds_a_private_import() -> None:
    source = ("from zoo_core.specs import ModelSpec\nimport zoo_core.export\nfrom zoo_core import hookimpl, errors\n"
              "from zoo_core.api import ModelSpec\nfrom zoo_core import hookimpl\n"
              "from zoo_core.testing import run_cli\n"
              "from .config import MODELS\nimport zoo_resnest\n")
    assert private_imports(source, "x.py") == [
        "x.py:1: from zoo_core.specs import ModelSpec", "x.py:2: import zoo_core.export",
        "x.py:3: from zoo_core import hookimpl, errors", "x.py:6: from zoo_core.testing import run_cli"]
    assert private_imports(source, "x.py", tests=True)[-1] == "x.py:3: from zoo_core import hookimpl, errors"


def test_what_plugin_authors_read_imports_only_the_public_api() -> None:
    found = sources()
    assert any(where.startswith("plugins/datasets") for where, _, _ in found)
    assert len([1 for where, _, _ in found if where.startswith(DOC.name)]) >= 10, "the guide's blocks were not found"
    private = [line for where, code, tests in found for line in private_imports(code, where, tests)]
    assert private == [], "import these through zoo_core.api (add what is missing to its _EXPORTS):\n" + "\n".join(
        private)


def test_the_public_api_imports_neither_torch_nor_numpy() -> None:
    code = ("import json, sys, zoo_core.api as api\n"
            "imported = [m for m in ('torch', 'numpy') if m in sys.modules]\n"
            "for name in api.__all__: getattr(api, name)\n"
            "print(json.dumps([imported, [m for m in ('torch', 'numpy') if m in sys.modules]]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[], []]  # neither on import, nor once every name is resolved
