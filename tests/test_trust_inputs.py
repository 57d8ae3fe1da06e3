"""Issue #11, the inputs that used to end in tracebacks: signals (SIGTERM, a second Ctrl-C), out-of-range --seed
and --opset, a batch beyond memory, path components too long for the file system, and a full disk. Each is one
``Error:`` line and one ``Note:`` line with its documented exit code, through the real command."""

from __future__ import annotations

import math
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_inputs import FAST, one_error
from test_reliability import args, assert_cache_whole, finish, start, write_dataset
from zoo_core.errors import EXIT_ENV, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE


class Finished:
    """A finished process, shaped like the ``zoo_cli`` fixture's result (for ``one_error``)."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}>"


# -------------------------------------------------------------------------
# Signals: SIGTERM ends a run like Ctrl-C (exit 143); a second signal never prints a traceback
# -------------------------------------------------------------------------


def _wait_for(proc: subprocess.Popen[str], found, what: str) -> None:
    deadline = time.monotonic() + 120
    while not found():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after 120 s"
        time.sleep(0.02)


def _interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signals: list[int]) -> tuple[Finished, Path]:
    """An accuracy run of 48 slow images, sent ``signals`` (0.05 s apart) once its first shard is saved."""
    data = tmp_path / "val"
    write_dataset(data, 48)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_SLOW_SECONDS", "0.25")  # 48 images take seconds: room to interrupt
    proc = start(args(data, tmp_path / "out"), cache)
    _wait_for(proc, lambda: list(cache.glob("evaluations/*/shard-*.npz")), "saved shard")
    for n, sig in enumerate(signals):
        if n:
            time.sleep(0.05)
        proc.send_signal(sig)
    return Finished(*finish(proc)), cache


def test_sigterm_during_an_accuracy_run_keeps_the_shards_and_exits_143(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped, cache = _interrupted_run(tmp_path, monkeypatch, [signal.SIGTERM])
    error, note = one_error(stopped, EXIT_TERMINATED)
    assert error.startswith("Error: terminated (SIGTERM): ") and error.endswith(" of 12 shards are saved"), error
    assert note == "Note: run the same command again to resume from them"
    saved = len(list(cache.glob("evaluations/*/shard-*.npz")))
    assert 1 <= saved < 12
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob(".*.tmp-*")), "a temporary file was left"
    assert_cache_whole(cache)

    monkeypatch.setenv("ZOO_SLOW_SECONDS", "0")
    code, _, err = finish(start(args(tmp_path / "val", tmp_path / "out"), cache))
    assert code == 0, err
    assert f"({saved} shards resumed)" in err and "(built" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_an_export_build_removes_its_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    data = tmp_path / "val"
    write_dataset(data, 4)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_SLOW_EXPORT_SECONDS", "30")
    proc = start(args(data, tmp_path / "out"), cache)
    _wait_for(proc, lambda: list(cache.glob("export/.*.tmp-*")), "export build")
    proc.send_signal(sig)
    stopped = Finished(*finish(proc))
    what, code = (("terminated (SIGTERM)", EXIT_TERMINATED) if sig == signal.SIGTERM
                  else ("interrupted", EXIT_INTERRUPTED))
    error, note = one_error(stopped, code)
    assert error == f"Error: {what}"
    assert note == "Note: what was finished is kept in the cache; run the same command again to go on"
    assert not list(cache.rglob(".*.tmp*")), "the build's temporary folder was left"
    assert not list((cache / "export").iterdir()) or all(p.suffix == ".lock" for p in (cache / "export").iterdir())


@pytest.mark.parametrize("signals", [
    pytest.param([signal.SIGINT, signal.SIGINT], id="ctrl-c-twice"),
    pytest.param([signal.SIGINT, signal.SIGINT, signal.SIGINT], id="ctrl-c-three-times"),
    pytest.param([signal.SIGTERM, signal.SIGINT, signal.SIGTERM], id="sigterm-then-more"),
])
def test_more_signals_while_winding_down_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signals: list[int]
) -> None:
    stopped, cache = _interrupted_run(tmp_path, monkeypatch, signals)
    code, what = (EXIT_TERMINATED, "terminated (SIGTERM)") if signals[0] == signal.SIGTERM else \
        (EXIT_INTERRUPTED, "interrupted")
    error, _ = one_error(stopped, code)
    assert error.startswith(f"Error: {what}: "), error
    assert_cache_whole(cache)


# -------------------------------------------------------------------------
# --seed and --opset out of range: exit 2 before any work
# -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_numpy_or_torch_refuse_is_a_usage_error(zoo_cli, tmp_path: Path, command: str, seed: str) -> None:
    extra = ("--backends", "onnxruntime,torch") if command == "compare" else (*FAST, "--out", str(tmp_path / "o"))
    error, note = one_error(zoo_cli(command, "resnest-tiny", "--bs", "2", "--weights", "random", "--seed", seed,
                                    *extra, env={"ZOO_CACHE_DIR": str(tmp_path / "cache")}), EXIT_USAGE)
    assert error == f"Error: --seed: {seed} is not a seed; seeds go from 0 to 2**64 - 1"
    assert note == "Note: write e.g. --seed 0"
    assert not (tmp_path / "cache").exists(), "work was done before the seed was checked"


def test_the_largest_seed_runs(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--seed", str(2**64 - 1), *FAST,
                     "--json", "--out", str(tmp_path / "o"))
    assert result.code == 0, result


@pytest.mark.parametrize("command", ["run", "export"])
@pytest.mark.parametrize("opset", ["3", "999"])
def test_an_opset_outside_the_installation_is_a_usage_error_naming_the_range(
    zoo_cli, tmp_path: Path, command: str, opset: str
) -> None:
    extra = (*FAST, "--out", str(tmp_path / "o")) if command == "run" else ("-o", str(tmp_path / "m.onnx"))
    cache = tmp_path / "cache"
    error, note = one_error(zoo_cli(command, "resnest-tiny", "--weights", "random", "--opset", opset, *extra,
                                    env={"ZOO_CACHE_DIR": str(cache)}), EXIT_USAGE)
    match = re.fullmatch(rf"Error: --opset {opset} is outside the opsets this installation exports and runs: "
                         r"(\d+) to (\d+) \(torch .+, onnx .+, onnxruntime .+\)", error)
    assert match, error
    low, high = map(int, match.groups())
    assert low <= 11 <= high and not low <= int(opset) <= high  # the model's own opset, 11, is inside
    assert note == f"Note: choose an opset from {low} to {high}, or leave --opset out for the model's own"
    assert not cache.exists(), "work was done before the opset was checked"
    assert not (tmp_path / "m.onnx").exists()


def test_an_opset_the_model_cannot_be_exported_at_is_one_line(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("export", "resnest-tiny", "--weights", "random", "--opset", "9", "-o", str(tmp_path / "m.onnx"),
                     env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    error, note = one_error(result, EXIT_USAGE)
    assert error.startswith("Error: model 'resnest-tiny' cannot be exported at opset 9: Unsupported: "), error
    assert note == "Note: choose a newer opset with --opset, or leave it out for the model's own (11)"
    assert len(result.stderr.splitlines()) < 10, "the exporter's graph dump reached the user"
    assert not list((tmp_path / "cache").rglob("*.onnx"))


# -------------------------------------------------------------------------
# A batch beyond memory: exit 3 with the figures, before anything is simplified or compiled
# -------------------------------------------------------------------------


def _tiny_batch_gb(bs: int) -> str:
    from zoo_tiny import TINY

    per_sample = 4 * (math.prod(TINY.input_shape) + TINY.num_classes)  # float32 input and logits
    return f"{bs * per_sample / 1e9:,.0f} GB"


@pytest.mark.parametrize("command", ["run", "export"])
def test_a_batch_beyond_memory_is_refused_with_the_figures(zoo_cli, tmp_path: Path, command: str) -> None:
    bs = 10**8  # 4.9 TB for the tiny model's inputs and outputs
    cache = tmp_path / "cache"
    extra = (*FAST, "--out", str(tmp_path / "o")) if command == "run" else ("-o", str(tmp_path / "m.onnx"))
    error, note = one_error(zoo_cli(command, "resnest-tiny", "--bs", str(bs), "--weights", "random", *extra,
                                    env={"ZOO_CACHE_DIR": str(cache)}), EXIT_ENV)
    match = re.fullmatch(rf"Error: batch {bs} needs at least (.+) for inputs and outputs; ([\d.,]+) GB available",
                         error)
    assert match and match.group(1) == _tiny_batch_gb(bs), error
    assert 0 < float(match.group(2).replace(",", "")) * 1e9 < 4.9e12
    assert note == "Note: choose a smaller --bs, or run where more memory is free"
    assert not (cache / "simplify").exists() and not (cache / "compile").exists(), "a batch was built anyway"


def test_a_batch_whose_shape_overflows_is_a_usage_error(zoo_cli, tmp_path: Path) -> None:
    error, _ = one_error(zoo_cli("run", "resnest-tiny", "--bs", str(10**22), "--weights", "random", *FAST,
                                 "--out", str(tmp_path / "o")), EXIT_USAGE)
    assert error.startswith(f"Error: --bs: batch {10**22} is too large: a tensor of it would hold "), error
    assert error.endswith("more than an ONNX shape can count (2**63 - 1)")


def test_memory_available_is_what_the_machine_reports() -> None:
    from zoo_core.limits import memory_available

    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    mem_available = int(meminfo["MemAvailable"].split()[0]) * 1024
    available = memory_available()
    assert available is not None and 0 < available <= mem_available * 1.5  # the machine's figure moves a little


def test_a_batch_that_fits_is_not_refused(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "64", "--weights", "random", *FAST, "--json",
                     "--out", str(tmp_path / "o"))
    assert result.code == 0, result
    assert result.json()["results"][0]["batch_size"] == 64


# -------------------------------------------------------------------------
# A path component over 255 bytes: one line naming the option, not ENAMETOOLONG's traceback
# -------------------------------------------------------------------------

LONG = "n" * 300


@pytest.mark.parametrize(("option", "make_args"), [
    ("--data", lambda t, p: ("run", "resnest-tiny", "--weights", "random", *FAST, "--data", p)),
    ("--labels", lambda t, p: ("run", "resnest-tiny", "--weights", "random", *FAST, "--data", str(t), "--labels", p)),
    ("--weights", lambda t, p: ("run", "resnest-tiny", *FAST, "--weights", p)),
    ("--onnx", lambda t, p: ("run", "resnest-tiny", "--weights", "random", *FAST, "--onnx", p)),
    ("--out", lambda t, p: ("run", "resnest-tiny", "--weights", "random", *FAST, "--out", p)),
    ("-o", lambda t, p: ("export", "resnest-tiny", "--weights", "random", "-o", p)),
    ("-o", lambda t, p: ("preprocess", "resnest-tiny", "--data", str(t), "-o", p)),
    ("A", lambda t, p: ("report", p, str(t))),
    ("B", lambda t, p: ("report", str(t), p)),
])
def test_a_path_component_too_long_names_the_option(zoo_cli, tmp_path: Path, option: str, make_args) -> None:
    path = str(tmp_path / LONG / "x")
    error, note = one_error(zoo_cli(*make_args(tmp_path, path)), EXIT_USAGE)
    assert error == (f"Error: {option}: the name '{'n' * 20}…' is 300 bytes long; "
                     "a file or folder name may have at most 255")
    assert note == "Note: shorten that file or folder name"


def test_a_name_too_long_found_while_working_is_one_line(zoo_cli, tmp_path: Path) -> None:
    error, note = one_error(zoo_cli("new-plugin", "foo", "--dir", str(tmp_path / LONG)), EXIT_ENV)
    assert error == f"Error: File name too long: {tmp_path / LONG / 'zoo-foo'}"
    assert note == "Note: shorten that file or folder name (at most 255 bytes each)"


# -------------------------------------------------------------------------
# A full disk (RLIMIT_FSIZE): the file is named, and no temporary file is left
# -------------------------------------------------------------------------


def _run_with_file_limit(limit: int, cache: Path, out: Path) -> Finished:
    def small_files() -> None:  # Python ignores SIGXFSZ, so a write past the limit raises OSError(EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "zoo_core", "run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST,
         "--out", str(out)],
        env={**os.environ, "ZOO_CACHE_DIR": str(cache)}, capture_output=True, text=True, timeout=600,
        preexec_fn=small_files,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]


def test_a_full_disk_during_the_export_names_the_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    error, note = one_error(_run_with_file_limit(64 * 1024, cache, tmp_path / "o"), EXIT_ENV)
    assert re.fullmatch(rf"Error: File too large: {re.escape(str(cache))}/export/[0-9a-f]+/model\.onnx", error), error
    assert note == "Note: free some disk space, or point --out and ZOO_CACHE_DIR at a writable folder"
    assert not _temporary_files(cache), _temporary_files(cache)
    assert not list(cache.rglob("*.onnx"))


def test_a_full_disk_while_writing_the_results_names_the_file(zoo_cli, tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "o"
    first = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", *FAST, "--out", str(tmp_path / "first"),
                    env={"ZOO_CACHE_DIR": str(cache)})
    assert first.code == 0, first  # every stage is cached now: only the results are written below
    error, note = one_error(_run_with_file_limit(1024, cache, out), EXIT_ENV)
    assert error == f"Error: cannot write results to {out / 'results.json'}: File too large"
    assert note == "Note: choose a writable folder with --out"
    assert not _temporary_files(out) and not _temporary_files(cache), _temporary_files(tmp_path)
    assert not (out / "results.json").exists()


def _spawned_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_during_a_multi_device_run(ascend_env, tmp_path: Path, sig: int) -> None:
    # A terminal's Ctrl-C (and `timeout`) signals the whole process group: the device worker processes too.
    env = {**os.environ, **ascend_env, "FAKE_NPU_COUNT": "2", "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo_core", "run", "resnest-tiny", "--bs", "2", "--weights", "random", "--warmup", "0",
         "--iterations", "1000000", "--device", "0,1", "--out", str(tmp_path / "o")],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for(proc, lambda: len(_spawned_children(proc.pid)) >= 2, "device worker processes")
    time.sleep(2)  # the workers load the plugins and start their loops
    began = time.monotonic()
    os.killpg(proc.pid, sig)
    stopped = Finished(*finish(proc))
    code, what = ((EXIT_TERMINATED, "terminated (SIGTERM)") if sig == signal.SIGTERM
                  else (EXIT_INTERRUPTED, "interrupted"))
    error, _ = one_error(stopped, code)
    assert error == f"Error: {what}"
    assert time.monotonic() - began < 30, "the device loops were waited for, not ended"
    assert not _spawned_children(proc.pid)


@pytest.mark.parametrize("bs", ["1,2", "8"])
def test_an_onnx_that_fixes_its_batch_serves_that_batch_size_only(zoo_cli, tmp_path, bs) -> None:
    # A graph exported at batch 2 may bake the 2 into a reshape: simplified at another batch size it failed with
    # ONNX Runtime's traceback. Now one line before anything is built; at --bs 2 it runs.
    fixed = tmp_path / "bs2.onnx"
    assert zoo_cli("export", "resnest-tiny", "--weights", "random", "--bs", "2", "-o", str(fixed)).code == 0
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", *FAST, "--onnx", str(fixed), "--bs", bs,
                     "--out", str(tmp_path / "o"))
    one_error(result, 2)
    assert f"fixes the batch at 2, so it cannot serve --bs {bs}" in result.stderr
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", *FAST, "--onnx", str(fixed), "--bs", "2",
                     "--out", str(tmp_path / "ok"), "--json")
    assert result.code == 0, result
    assert result.json()["results"][0]["batch_size"] == 2


@pytest.mark.parametrize("flag", [("--labels", "val_label.txt"), ("--limit", "3"), ("--skip-bad",),
                                  ("--shard-images", "8"), ("--dataset", "imagenet-val")])
def test_a_dataset_option_without_data_is_one_line(zoo_cli, tmp_path, flag) -> None:
    # They were ignored without a word: `zoo run --labels val_label.txt` timed generated input and printed no
    # accuracy, as if the label file had been read.
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", *FAST, *flag, "--out", str(tmp_path / "o"))
    one_error(result, 2)
    assert f"{flag[0]} is for --data" in result.stderr
    assert not (tmp_path / "o").exists()
