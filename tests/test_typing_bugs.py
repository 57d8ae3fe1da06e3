"""Bugs that mypy found (ruff and mypy run in CI): each fixed, and tested here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo_core.errors import UsageError
from zoo_core.options import OptionSpec
from zoo_core.plugin_options import resolve
from zoo_core.specs import BackendSpec


def test_an_option_no_plugin_declares_is_a_usage_error_not_an_index_error() -> None:
    """Only the Python API can pass a key no plugin declares (click refuses an unknown flag): resolve() took the
    first of its owners, of which there are none, and raised IndexError."""
    specs = [OptionSpec(name="soc", help="the chip", backend="npu-x")]
    with pytest.raises(UsageError) as info:
        resolve(specs, [BackendSpec(name="onnxruntime")], "local", {"bogus": "1"})
    assert str(info.value) == "no plugin declares the option 'bogus'"
    assert info.value.note == "`zoo run --help` lists the options of each backend and engine"


COMPARE_WITH_FIRST = """
import sys
from zoo_core import python_api
from zoo_core.specs import resolve_options
zoo = python_api._app()
options = resolve_options(zoo.registry.model("resnest-tiny"), {"weights": "random", "batch_sizes": (1,)})
assert "zoo_core.compare" not in sys.modules
print(type(python_api.compare_with(zoo, options, ["onnxruntime", "torch"], samples=1)).__name__)
"""


def test_compare_with_works_before_the_compare_module_is_imported(tmp_path: Path) -> None:
    """``from . import compare`` inside python_api gave zoo_core's lazy ``compare`` function, not the module, until
    something had imported zoo_core.compare: compare_with in a new process raised AttributeError."""
    env = {**os.environ, "ZOO_PLUGINS": "zoo_tiny", "ZOO_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent / "plugins"),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", COMPARE_WITH_FIRST], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "CompareResult"
