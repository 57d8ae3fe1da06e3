"""Issue #14, readable output anywhere: every command's human output, captured as a CI log or a pipe captures it (not
a terminal, no $COLUMNS), shows values whole (never cut with ``…``, never wrapped inside a number), shows a
user's brackets as written (rich must not read them as markup), and progress says how long a loop took and, for
a timing row, against which ``--max-seconds``. The test plugin ``zoo_brackets`` brings long, bracketed words."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from test_bad_inputs import FAST, _images
from zoo_brackets import HINT, PRESET, URL

ELLIPSIS = "…"
BRACKETS = {"ZOO_PLUGINS": "zoo_tiny,zoo_brackets"}


@pytest.fixture(autouse=True)
def piped(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a CI log: the suite's COLUMNS=200 would hide an 80-column default."""
    monkeypatch.delenv("COLUMNS", raising=False)


def whole(result) -> str:
    """The command succeeded and cut nothing; its stdout."""
    assert result.code == 0, result
    assert ELLIPSIS not in result.stdout + result.stderr, result
    return result.stdout


def cells(line: str) -> list[str]:
    """A table line's cells (a header's, between ┃, or a row's, between │)."""
    return [cell.strip() for cell in re.split("[│┃]", line.strip().strip("│┃"))]


NUMBER = re.compile(r"-?\d+(\.\d+)?(e[+-]\d+)?")


def test_compare_shows_backend_names_and_numbers_whole(zoo_cli) -> None:
    out = whole(zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--weights", "random",
                        "--bs", "2"))
    row = cells(next(line for line in out.splitlines() if "output1" in line))
    assert row[:3] == ["onnxruntime", "torch", "output1"], out
    assert all(NUMBER.fullmatch(value) for value in row[3:7]), row  # max abs, max rel, needed atol, needed rtol
    assert row[7] == "PASS", row


def test_run_shows_its_table_and_paths_whole(zoo_cli, tmp_path: Path) -> None:
    out = tmp_path / "-".join(["a-rather-long-output-folder-name"] * 4)
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--bs", "1,2", *FAST, "--out", str(out),
                     env={"ZOO_CACHE_DIR": str(tmp_path / "cache")})
    stdout = whole(result)
    results = json.loads((out / "results.json").read_text())
    lines = [line.strip() for line in stdout.splitlines()]
    assert f"results: {out / 'results.json'}" in lines, stdout
    assert any(cells(line)[:2] == ["batch", "throughput (img/s)"] for line in lines), stdout  # a header not wrapped
    for row in results["results"]:
        shown = cells(next(line for line in lines if cells(line)[0] == str(row["batch_size"])))
        lat = row["latency_ms"]
        assert shown[1:6] == [f"{row['throughput']:.2f}", *(f"{lat[k]:.2f}" for k in ("mean", "p50", "p90", "p99"))]
    # each stage zoo built is timed, simplify included (once per batch size)
    assert len(results["stage_seconds"]["simplify"]) == 2, results["stage_seconds"]
    # zoo report's title names both runs whole, on one line
    report = whole(zoo_cli("report", str(out), str(out)))
    assert f"B = {out} vs A = {out}" in [line.strip() for line in report.splitlines()], report


def test_info_shows_urls_whole_and_each_preset_as_one_line(zoo_cli) -> None:
    lines = [line.strip() for line in whole(zoo_cli("info", "brackets-tiny", env=BRACKETS)).splitlines()]
    assert f"url: {URL}" in lines
    assert f"short-side: {PRESET.description}" in lines  # the declared preset: its name and what it does
    assert ["presets", "modelzoo"] in [line.split() for line in lines]  # a core preset: its name (first line)
    assert not any('{"' in line or "steps" in line for line in lines), lines  # no JSON blob


@pytest.mark.parametrize("command, shown", [
    (("info", "brackets-tiny"), ["[bold]not bold[/bold]: needs pip install 'zoo[ray]'"]),
    (("plugins",), [f"unavailable: its SDK is missing: {HINT}", "npu[0]"]),
    (("doctor",), [f"unavailable: its SDK is missing: {HINT}", f"unavailable: not installed: {HINT}",
                   "[bold]toolkit[/bold] from zoo[ray]"]),
])
def test_brackets_in_user_text_are_shown_as_written(zoo_cli, command: tuple[str, ...], shown: list[str]) -> None:
    stdout = whole(zoo_cli(*command, env=BRACKETS))
    for text in shown:
        assert text in stdout, stdout


def test_doctor_lists_a_plugin_that_failed_to_load(zoo_cli) -> None:
    stdout = whole(zoo_cli("doctor", env={"ZOO_PLUGINS": "zoo_tiny,zoo_missing[x]"}))
    assert ["zoo_missing[x]", "ModuleNotFoundError:", "No", "module", "named", "'zoo_missing[x]'"] in [
        line.split() for line in stdout.splitlines()], stdout


def test_list_and_plugins_fit_their_content(zoo_cli) -> None:
    listed = whole(zoo_cli("list", env=BRACKETS))
    assert ["brackets-tiny", "resnest", "3x64x64", "url", "zoo_brackets"] in [line.split() for line in
                                                                             listed.splitlines()], listed
    plugins = whole(zoo_cli("plugins", env=BRACKETS))
    # one line per plugin, its hooks whole
    assert any("builtin:ascend" in line and "register_backends" in line for line in plugins.splitlines()), plugins


def test_no_timing_plugin_is_listed(zoo_cli) -> None:
    """The stage timer is the core's, not a plugin: ``zoo plugins`` lists only plugins a user installed or zoo
    ships, each with where it came from."""
    plugins = zoo_cli("plugins", "--json").json()["plugins"]
    assert not [p for p in plugins if re.search("timing|timer", p["name"]) or not p["source"]], plugins


def test_a_timing_row_shows_its_windows_and_seconds_of_the_cap(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--bs", "1", "--warmup", "0", "--window", "2",
                     "--max-seconds", "30", "--out", str(tmp_path / "out"))
    whole(result)
    line = re.search(r"^[✓⚠] time batch 1: windows of 2 until 3 agree within 10% "
                     r"\((\d+) windows?, (\d+\.\d) s of --max-seconds 30\b", result.stderr, re.M)
    assert line, result.stderr
    device = json.loads((tmp_path / "out" / "results.json").read_text())["results"][0]["devices"][0]
    assert int(line[1]) == len(device["windows_ms"])  # the count shown is the count timed
    assert 0 <= float(line[2]) <= 30 + 5


@pytest.mark.parametrize("ascend_env", ["newer"], indirect=True)  # the output is the core's: one generation is enough
def test_a_timing_on_several_devices_shows_the_longest_against_the_cap(zoo_cli, ascend_env, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--weights", "random", "--warmup", "0", "--window", "2",
                     "--max-seconds", "3", "--device", "0,1", "--out", str(tmp_path / "o"),
                     env={**ascend_env, "FAKE_NPU_COUNT": "2"})
    whole(result)
    line = re.search(r"^[✓⚠] time batch 2: windows of 2 until 3 agree within 10%, on devices 0,1 \(2 processes; "
                     r"the longest: (\d+) windows?, (\d+\.\d) s of --max-seconds 3\b", result.stderr, re.M)
    assert line, result.stderr
    devices = json.loads((tmp_path / "o" / "results.json").read_text())["results"][0]["devices"]
    assert int(line[1]) in [len(d["windows_ms"]) for d in devices]


def test_a_fixed_count_loop_shows_its_elapsed_time(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--weights", "random", "--bs", "1", *FAST, "--out", str(tmp_path / "o"))
    whole(result)
    assert re.search(r"^✓ time batch 1: 0 warm-up \+ 1 timed \(\d+\.\d s\)$", result.stderr, re.M), result.stderr


def test_a_long_loop_in_a_log_prints_status_lines_with_elapsed_eta_and_cap() -> None:
    """Where stderr is not a terminal there is no bar: a loop prints a status line every heartbeat_seconds."""
    from rich.console import Console

    from zoo_core.progress import RichProgress

    progress = RichProgress()
    log = io.StringIO()
    progress.console = Console(file=log, width=100_000)
    progress.heartbeat_seconds = 0.0
    with progress.loop("evaluate 4 images [x]", 4) as advance:
        for _ in range(4):
            advance()
    with progress.loop("time batch 8: windows", None, max_seconds=60) as advance:
        advance()
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"… evaluate 4 images \[x\]: 1/4, \d+\.\d s elapsed, about \d+\.\d s left", lines[0]), lines
    assert lines[3].startswith("… evaluate 4 images [x]: 4/4, ") and "left" not in lines[3], lines
    assert re.fullmatch(r"✓ evaluate 4 images \[x\] \(\d+\.\d s\)", lines[4]), lines
    assert re.fullmatch(r"… time batch 8: windows: 1 done, \d+\.\d s elapsed, stops by --max-seconds 60", lines[5])


def test_report_md_names_the_batch_sizes_timed_only(zoo_cli, tmp_path: Path) -> None:
    _images(tmp_path / "data", count=2)
    for sizes, note in (("2", "images."), ("1,2", "images; batch size 1 was timed only.")):
        out = tmp_path / f"out-{sizes}"
        result = zoo_cli("run", "resnest-tiny", "--bs", sizes, "--weights", "random", *FAST, "--data",
                         str(tmp_path / "data"), "--out", str(out), "--workers", "1")
        whole(result)
        report = (out / "report.md").read_text()
        assert "measured once, at batch 2 on 2 " + note in report, report
        assert "other batch sizes" not in report


def test_the_download_bar_shows_a_file_name_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the weights' download bar names the file; a bracket in the name is not markup."""
    from rich.console import Console

    from zoo_core import console, weights

    screen = io.StringIO()
    monkeypatch.setattr(console, "make_console", lambda stderr=False: Console(file=screen, force_terminal=True,
                                                                              width=200))
    bar = weights._ProgressBar("model[v2].pth", 10)
    bar.advance(5)
    bar.close()
    assert "downloading model[v2].pth" in screen.getvalue()


def test_cache_ls_shows_paths_and_names_as_written(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache-[bold]x[/bold]-with-a-long-name-for-a-folder-that-holds-the-artifact-cache-of-zoo"
    env = {"ZOO_CACHE_DIR": str(cache)}
    assert zoo_cli("export", "resnest-tiny", "--weights", "random", "-o", str(tmp_path / "m.onnx"), env=env).code == 0
    (cache / "notes[1].txt").write_text("mine")
    listed = zoo_cli("cache", "ls", "--json", env=env).json()
    lines = [line.split() for line in whole(zoo_cli("cache", "ls", env=env)).splitlines()]
    export = next(r for r in listed if r["stage"] == "export")
    assert any(line[0] == "resnest-tiny" and line[-1] == export["key"] for line in lines), lines
    text = [" ".join(line) for line in lines]
    assert any(line.startswith("1 artifacts, ") and f" in {cache}; " in line for line in text), text
    assert f"1 not zoo's, left alone: {cache / 'notes[1].txt'}" in text
