"""Small consistencies: one --bs parser and message for every command, --threads/--workers 0 refused, an
interrupted run leaves no empty output folder, the suite leaves nothing in the checkout, one helper each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_inputs import FAST, one_error
from zoo_core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, UsageError

ROOT = Path(__file__).resolve().parents[1]
SWEEP_ERROR = "Error: --bs: zoo {command} takes one batch size, not a sweep (1,4)"
SWEEP_NOTE = "Note: write e.g. --bs 8; a sweep such as --bs 1,4,8 is for zoo run"


# ------------------------------------------------------------------------------------------------ --bs


@pytest.mark.parametrize("command", [
    pytest.param(("export", "resnest-tiny", "-o", "x.onnx"), id="export"),
    pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--weights", "random"), id="compare"),
])
def test_a_sweep_is_the_same_usage_error_in_export_and_compare(zoo_cli, tmp_path: Path,
                                                               command: tuple[str, ...]) -> None:
    error, note = one_error(zoo_cli(*command, "--bs", "1,4", cwd=tmp_path), EXIT_USAGE)
    assert (error, note) == (SWEEP_ERROR.format(command=command[0]), SWEEP_NOTE)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(("value", "error"), [
    ("a", "Error: --bs: 'a' is not a whole number"),
    ("0", "Error: --bs: batch size 0 must be at least 1"),
])
@pytest.mark.parametrize("command", [
    pytest.param(("run", "resnest-tiny", "--weights", "random"), id="run"),
    pytest.param(("export", "resnest-tiny", "-o", "x.onnx"), id="export"),
    pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--weights", "random"), id="compare"),
])
def test_a_bad_batch_size_reads_the_same_in_every_command(zoo_cli, tmp_path: Path, command: tuple[str, ...],
                                                          value: str, error: str) -> None:
    got_error, note = one_error(zoo_cli(*command, "--bs", value, cwd=tmp_path), EXIT_USAGE)
    assert got_error == error
    assert note == ("Note: write e.g. --bs 8 or --bs 1,4,8" if command[0] == "run" else "Note: write e.g. --bs 8")


def test_the_one_batch_size_parser() -> None:
    from zoo_core.specs import one_batch_size, parse_batch_sizes

    assert parse_batch_sizes(" 1, 4,8,4") == (1, 4, 8)
    assert parse_batch_sizes("8", single="export") == (8,)
    with pytest.raises(UsageError, match=r"^--bs: zoo compare takes one batch size, not a sweep \(1,4\)$"):
        parse_batch_sizes("1,4", single="compare")
    with pytest.raises(UsageError, match=r"^--bs: zoo compare takes one batch size, not a sweep \(2,8\)$"):
        one_batch_size((2, 8), "compare")  # what zoo_core.compare checks for a caller that is not the CLI


def test_export_and_compare_help_say_they_take_one_batch_size(zoo_cli) -> None:
    for command in ("export", "compare"):
        result = zoo_cli(command, "--help")
        assert result.code == 0, result
        assert "not a sweep" in " ".join(result.stdout.split()), result


# ------------------------------------------------------------------------------------ --threads, --workers


@pytest.mark.parametrize("flag", ["--threads", "--workers"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_zero_threads_or_workers_is_a_usage_error_not_one_per_core(zoo_cli, tmp_path: Path, flag: str,
                                                                   value: str) -> None:
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", *FAST, flag, value, cwd=tmp_path)
    error, note = one_error(result, EXIT_USAGE)
    assert error == f"Error: {flag}: {value} must be at least 1"
    assert note == f"Note: leave {flag} out for one per core"
    assert not (tmp_path / "zoo-runs").exists()


def test_threads_left_out_is_one_per_core_and_a_given_count_is_kept() -> None:
    from zoo_core.specs import ModelSpec, cpu_count, resolve_options

    model = ModelSpec(name="m", family="f", factory="x:y")
    assert resolve_options(model, {}).threads == cpu_count()
    assert resolve_options(model, {"threads": 1, "workers": 3}).threads == 1
    assert resolve_options(model, {"workers": 3}).workers == 3
    with pytest.raises(UsageError, match="^--threads: 0 must be at least 1$"):
        resolve_options(model, {"threads": 0})


# --------------------------------------------------------------------------- an interrupted run's folder


def _start(args: list[str], cwd: Path, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache), "ZOO_SLOW_EXPORT_SECONDS": "60"}  # room to interrupt
    return subprocess.Popen([sys.executable, "-m", "zoo_core", "run", "tiny-slow", "--bs", "1", "--weights",
                             "random", *FAST, *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _stop_once(proc: subprocess.Popen[str], signum: int, made: Path) -> tuple[int, str]:
    """Wait until the run has made its output folder, then send ``signum`` (while the export sleeps)."""
    deadline = time.monotonic() + 120
    while not made.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_empty_output_folder(tmp_path: Path, signum: int, code: int) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    code_got, err = _stop_once(_start([], cwd, tmp_path / "cache"), signum, cwd / "zoo-runs")
    assert code_got == code and "Traceback" not in err, err
    assert list(cwd.iterdir()) == [], "the empty zoo-runs/RUN folder zoo made was left behind"


def test_an_interrupted_run_keeps_a_folder_zoo_did_not_make(tmp_path: Path) -> None:
    given = tmp_path / "mine"
    given.mkdir()
    out = given / "new" / "run"
    code, err = _stop_once(_start(["--out", str(out)], tmp_path, tmp_path / "cache"), signal.SIGTERM, out)
    assert code == EXIT_TERMINATED, err
    assert given.is_dir() and list(given.iterdir()) == []  # zoo made new/run and removed them; mine stays


def test_remove_if_empty_never_removes_a_folder_with_a_file_nor_one_it_did_not_make(tmp_path: Path) -> None:
    from zoo_core.files import make_folder, remove_if_empty

    created = make_folder(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    (tmp_path / "a" / "b" / "c" / "results.json").write_text("{}")
    remove_if_empty(created)
    assert (tmp_path / "a" / "b" / "c" / "results.json").is_file()  # written into: kept, parents too
    assert make_folder(tmp_path / "a" / "b") == []  # already there: nothing zoo made, nothing to remove
    (tmp_path / "a" / "b" / "c" / "results.json").unlink()
    remove_if_empty(created)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- the checkout


def test_zoo_run_without_out_writes_under_the_test_not_the_checkout(zoo_cli) -> None:
    here = Path.cwd()
    assert here != ROOT and ROOT not in here.parents, "tests run in the checkout: zoo-runs/ would land there"
    result = zoo_cli("run", "resnest-tiny", "--bs", "1", "--weights", "random", *FAST, "--json")
    assert result.code == 0, result
    assert [p.name for p in (here / "zoo-runs").iterdir()][0].startswith("resnest-tiny-")
