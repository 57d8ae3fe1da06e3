"""How the suite is shared among xdist workers (tests/scheduling.py), on a small suite of its own run with two."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CONFTEST = """
import scheduling

def pytest_configure(config):
    config.pluginmanager.register(scheduling.XdistUnits(), "zoo-xdist-units")
"""

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.slow

def record(name):
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{os.environ['PYTEST_XDIST_WORKER']} {name}\\n")

@pytest.fixture(scope="module", params=[pytest.param(m, marks=pytest.mark.xdist_group(f"g-{m}")) for m in "xy"])
def model(request):
    return request.param

def test_one(model):
    record(f"g-{model}")

def test_two(model):
    record(f"g-{model}")
"""

PLAIN = """
import os

def record(name):
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{os.environ['PYTEST_XDIST_WORKER']} {name}\\n")

def test_one():
    record("{name}")

def test_two():
    record("{name}")

def test_three():
    record("{name}")
"""


def test_groups_are_units_of_their_own_and_the_slow_go_first(tmp_path: Path) -> None:
    """Each xdist_group of a file runs on one worker and each other file on one worker; the two groups, slow but
    with fewer tests than the other files (xdist's order), go first, one to each worker."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -n 2 --dist loadgroup\nmarkers = slow: slow\n")
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_a.py").write_text(GROUPED)
    for name in ("b", "c"):
        (suite / f"test_{name}.py").write_text(PLAIN.replace("{name}", name))
    record = tmp_path / "record.txt"
    env = {**os.environ, "RECORD": str(record),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=suite, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 passed" in done.stdout, done.stdout

    ran = [line.split() for line in record.read_text().splitlines()]
    assert sorted(name for _, name in ran) == ["b", "b", "b", "c", "c", "c", "g-x", "g-x", "g-y", "g-y"]
    workers = {name: {worker for worker, n in ran if n == name} for _, name in ran}
    assert all(len(w) == 1 for w in workers.values()), workers  # a unit stays on one worker
    assert workers["g-x"] != workers["g-y"], workers  # the two groups of one file, on two workers
    firsts = {worker: next(n for w, n in ran if w == worker) for worker in {w for w, _ in ran}}
    assert sorted(firsts.values()) == ["g-x", "g-y"], ran  # the slow first, one on each worker
