"""Bugs that mypy found (ruff and mypy run in CI): each fixed, and tested here."""

from __future__ import annotations

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
