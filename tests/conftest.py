"""Shared fixtures: an isolated cache and torch hub folder, the tiny model plugin, CLI runners (in this process
and in a new one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
sys.path.insert(0, str(TEST_PLUGINS))

import cli_runner  # noqa: E402 -- tests/ is on sys.path (rootdir conftest)
import scheduling  # noqa: E402


def _shared_by_workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder that all its xdist workers see: pytest-N/, above their popen-gwN/."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the whole session, shared by its xdist workers, so that each model is exported once
    (zoo's cache is safe for concurrent processes: file locks, atomic builds). A test that asserts what was built
    or cached uses a cache of its own."""
    cache = _shared_by_workers(tmp_path_factory) / "zoo-cache"
    cache.mkdir(exist_ok=True)
    return cache


def _runs_in_checkout() -> set[str]:
    return {p.name for p in (ROOT / "zoo-runs").iterdir()} if (ROOT / "zoo-runs").is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def checkout_left_clean() -> Iterator[None]:
    """No test writes zoo's output into the checkout: every test runs in its own folder (``isolated``), and a
    test that wrote ``zoo-runs/`` here anyway fails the session, named at its teardown."""
    before = _runs_in_checkout()
    yield
    new = sorted(_runs_in_checkout() - before)
    assert not new, f"tests wrote {len(new)} run folder(s) into {ROOT / 'zoo-runs'}, e.g. {new[:3]}: pass --out " \
        "under tmp_path, or run zoo in the test's own folder"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
             session_cache: Path) -> None:
    """No test reads or writes the user's caches or the checkout, and every test sees the tiny model plugin: each
    runs in an empty folder of its own beside ``tmp_path`` (which it leaves empty), so a ``zoo run`` without
    ``--out`` writes its zoo-runs/ there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("ZOO_PLUGINS", "zoo_tiny,zoo_slow")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TEST_PLUGINS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("COLUMNS", "200")


class Result(cli_runner.Result):
    """A finished process's code, stdout and stderr (``subprocess.run(..., capture_output=True, text=True)``)."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.returncode, proc.stdout, proc.stderr)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(scheduling.XdistUnits(), "zoo-xdist-units")  # how workers share the suite
    config.addinivalue_line("markers", "zoo_process(why): the zoo_cli fixture runs `python -m zoo_core` in a new "
                            "process for this test, for the reason given (Ray, what a fresh interpreter imports)")
    config.addinivalue_line("markers", "ray: starts or stops Ray on this machine; such tests run one at a time across "
                            "xdist workers (`ray stop` ends every instance of the machine)")


@pytest.fixture(autouse=True)
def one_ray_at_a_time(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test marked ``ray`` holds a lock shared by the session's workers while it runs."""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    from filelock import FileLock

    with FileLock(str(_shared_by_workers(tmp_path_factory) / "ray.lock")):
        yield


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject's addopts): a worker per core for the whole suite, but none (this process alone, no
    workers to start) when the command line names tests: ``python -m pytest tests/test_x.py -k ...``."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or config.args_source != pytest.Config.ArgsSource.ARGS:
        return None  # xdist's own answer: that variable, else the number of cores
    return 0


@pytest.fixture
def zoo_cli(request: pytest.FixtureRequest):
    """Run the real ``zoo`` command; returns code, stdout, stderr. In this process through the console script's
    entry point (``tests/cli_runner.py``: what a process would report, in milliseconds), or in a process of its own
    for a test marked ``@pytest.mark.zoo_process("why")`` (and for every test with ``ZOO_TEST_CLI=process``)."""
    if request.node.get_closest_marker("zoo_process") is not None or os.environ.get("ZOO_TEST_CLI") == "process":
        return cli_runner.run_process
    return cli_runner.run_in_process


@pytest.fixture
def zoo_process():
    """Run ``python -m zoo_core`` in a new process, whatever the test's marks."""
    return cli_runner.run_process


@pytest.fixture(params=["older", "newer"])
def ascend_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake Ascend tools on PATH and PYTHONPATH of this process and its children; forgotten afterwards.

    Every test using it runs against both ais_bench API generations (``FAKE_AIS_BENCH_GENERATION`` in the
    returned environment, which tests that spawn ``zoo`` pass on)."""
    from fakes.env import PYTHON, fake_ascend_env

    env = fake_ascend_env(os.environ, generation=request.param)
    for key, value in env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(PYTHON))
    yield env
    for name in [m for m in sys.modules if m == "fake_om" or m.split(".")[0] == "ais_bench"]:
        del sys.modules[name]
