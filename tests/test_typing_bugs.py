"""Bugs that mypy found (ruff and mypy run in CI): each fixed, and tested here."""

from __future__ import annotations

import subprocess
import sys

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


NAMES_AFTER_IMPORTS = """
import inspect
import zoo_core
import zoo_core.comparison, zoo_core.reporting, zoo_core.python_api, zoo_core.cli  # every submodule the CLI uses
print([inspect.isfunction(getattr(zoo_core, name)) for name in ("run", "compare", "report", "load")])
"""


def test_the_api_functions_stay_functions_after_the_cli_modules_are_imported() -> None:
    """``zoo_core.compare`` and ``zoo_core.report`` were also submodules: importing one (any CLI command does)
    replaced the package's function of that name by the module, so ``zoo_core.compare(...)`` failed after a run."""
    proc = subprocess.run([sys.executable, "-c", NAMES_AFTER_IMPORTS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True, True, True, True]"
