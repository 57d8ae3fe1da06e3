"""The in-process runner (tests/cli_runner.py, the ``zoo_cli`` default) reports what ``python -m zoo_core`` would:
the same exit code, stdout and stderr for a usage error, a --json command, a plugin's bug with its traceback, and
a test plugin that reads the environment at import time, and it leaves this process as it found it."""

from __future__ import annotations

import os
import re
import signal
import sys
import warnings
from pathlib import Path

import pytest
from cli_runner import run_in_process, run_process
from test_bad_inputs import one_error

# Frames only one of the two has: the interpreter's runpy and __main__ (a process), the runner's call (here).
_OWN_FRAME = re.compile(r'  File "(<frozen runpy>|.*zoo_core[/\\]__main__\.py|.*tests[/\\]cli_runner\.py)"')


def _without_launcher_frames(stderr: str) -> str:
    """stderr with the frames that only say how zoo was started (each frame: its File line and the indented
    source and caret lines after it)."""
    kept, skipping = [], False
    for line in stderr.splitlines():
        if line.startswith("  File "):
            skipping = bool(_OWN_FRAME.match(line))
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def _both(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return run_process(*args, env=env, cwd=cwd), run_in_process(*args, env=env, cwd=cwd)


def test_a_usage_error_is_reported_alike(tmp_path: Path) -> None:
    process, here = _both("run", "resnest-tiny", "--bs", "0", "--out", str(tmp_path / "out"))
    one_error(here, 2)
    assert (here.code, here.stdout, here.stderr) == (process.code, process.stdout, process.stderr)


def test_a_json_command_is_reported_alike() -> None:
    process, here = _both("list", "--json")
    assert here.code == process.code == 0
    assert here.stdout == process.stdout and here.stderr == process.stderr == ""
    assert "resnest-tiny" in {row["name"] for row in here.json()}


def test_a_plugins_bug_keeps_its_traceback_alike(tmp_path: Path) -> None:
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile"}
    process, here = _both("run", "resnest-tiny", "--backend", "hostile-cpu", "--knob", "x", "--weights", "random",
                          "--out", str(tmp_path / "out"), env=env)
    assert here.code == process.code == 1
    assert here.stdout == process.stdout == ""
    assert here.stderr.count("Traceback (most recent call last):") == 2, here  # the KeyError, then the PluginError
    assert here.stderr.splitlines()[-1].startswith("zoo_core.errors.PluginError: plugin 'zoo_hostile'"), here
    assert _without_launcher_frames(here.stderr) == _without_launcher_frames(process.stderr)


def test_a_test_plugin_is_imported_afresh_with_each_calls_environment(tmp_path: Path) -> None:
    """zoo_hostile reads $ZOO_HOSTILE when imported: a second call with another value must see it, as a new
    process would."""
    args = ("run", "resnest-tiny", "--backend", "hostile-cpu", "--weights", "random", "--warmup", "0",
            "--iterations", "1", "--out", str(tmp_path / "out"))
    for mode in ("register-raises", "no-stages"):
        env = {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile", "ZOO_HOSTILE": mode}
        process, here = _both(*args, env=env)
        one_error(here, process.code)
        assert (here.code, here.stdout, here.stderr) == (process.code, process.stdout, process.stderr)
    assert "zoo_hostile" not in sys.modules


def test_the_environment_and_folder_given_apply_to_the_call_only(tmp_path: Path) -> None:
    """``env`` and ``cwd`` are the command's, and everything the call changed in this process is put back."""
    state = (dict(os.environ), os.getcwd(), list(sys.path), sys.argv, sys.stdout, sys.stderr,
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), list(warnings.filters))
    folder = tmp_path / "here"
    folder.mkdir()
    extra = tmp_path / "on-path"
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join([str(extra),
                                                                                  os.environ["PYTHONPATH"]])}
    result = run_in_process("run", "resnest-tiny", "--weights", "random", "--warmup", "0", "--iterations", "1",
                            "--json", env=env, cwd=folder)
    assert result.code == 0, result
    assert (folder / "zoo-runs").is_dir()  # no --out: the run's folder is under the command's folder
    assert list((tmp_path / "cache").iterdir())  # the command's cache
    after = (dict(os.environ), os.getcwd(), list(sys.path), sys.argv, sys.stdout, sys.stderr,
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), list(warnings.filters))
    assert after == state


@pytest.mark.zoo_process("the mark itself is under test")
def test_the_mark_runs_zoo_cli_in_a_new_process(zoo_cli) -> None:
    result = zoo_cli("--help")
    assert result.code == 0 and "Usage: zoo" in result.stdout
    assert zoo_cli is run_process


def test_without_the_mark_zoo_cli_runs_in_this_process(zoo_cli) -> None:
    """Unless ZOO_TEST_CLI=process asks for a process everywhere (to check the suite both ways)."""
    assert zoo_cli is (run_process if os.environ.get("ZOO_TEST_CLI") == "process" else run_in_process)
