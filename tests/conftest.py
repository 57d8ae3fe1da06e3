"""Shared fixtures: an isolated cache and torch hub folder, the tiny model plugin, a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
sys.path.insert(0, str(TEST_PLUGINS))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the whole session, so the tiny model is exported once."""
    return tmp_path_factory.mktemp("zoo-cache")


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


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}>"


@pytest.fixture
def zoo_cli():
    """Run the real ``zoo`` command in a subprocess, as a user would; returns code, stdout, stderr."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "zoo_core", *args], capture_output=True, text=True, env=full_env,
            cwd=cwd, timeout=600,
        )
        return Result(proc)

    return run


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
