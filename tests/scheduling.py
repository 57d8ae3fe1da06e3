"""How xdist's workers share the suite (pyproject's ``--dist loadgroup``; the plugin ``XdistUnits``).

A unit of work is a test file, so that a file's module fixtures are made once, unless its tests carry an
``xdist_group`` mark: then each group is a unit (test_accuracy.py's two models, each with its own module dataset,
run on two workers at once). Units with a ``slow`` test are handed out first, so that a long one is not left for
the end; each kind by its number of tests, as xdist orders them. (Ordering by the seconds of the last run was
tried and measured slower, 11:44 against 10:21: it started the two accuracy units together, whose torch and
ONNX Runtime thread pools then fought over the cores, 2.5 CPU-minutes more.)

xdist's own loadgroup appends ``@group`` to a test's ``item._nodeid``, which pytest 9 no longer reads (the id is
``item._id``): the groups never reach its scheduler. So the workers write the groups they collected to a file
beside their temporary folders (and which tests are ``slow``), before they tell the controller what they
collected, and the scheduler reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUPS_FILE = "xdist-groups.json"


def groups_of(items: list[pytest.Item]) -> dict[str, Any]:
    """``groups``: nodeid -> the name of its ``xdist_group`` mark, for the tests that have one; ``slow``: the
    nodeids of the tests marked ``slow``."""
    groups = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            groups[item.nodeid] = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return {"groups": groups, "slow": [item.nodeid for item in items if item.get_closest_marker("slow")]}


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: the groups, to the session's folder above the worker's own (``popen-gwN``)."""
    folder = Path(config.option.basetemp).parent
    temporary = folder / f".{GROUPS_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(groups_of(items), sort_keys=True))
    os.replace(temporary, folder / GROUPS_FILE)  # every worker writes the same: the last one stays


def read_groups(config: pytest.Config) -> dict[str, Any]:
    """In the controller, once the workers collected: ``groups_of``'s answer."""
    factory = getattr(config, "_tmp_path_factory", None)  # xdist gives the workers folders under its basetemp
    path = factory.getbasetemp() / GROUPS_FILE if factory is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {"groups": {}, "slow": []}


def unit_of(nodeid: str, groups: dict[str, str]) -> str:
    return groups.get(nodeid) or nodeid.split("::", 1)[0]


class FileOrGroupScheduling(LoadScopeScheduling):
    """xdist's loadscope scheduling over ``unit_of``'s units, those with a slow test first."""

    groups: dict[str, str] | None = None
    slow: set[str] = set()

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # first called by schedule(), once every worker collected (and wrote its groups)
            found = read_groups(self.config)
            self.groups = found["groups"]
            self.slow = {unit_of(nodeid, self.groups) for nodeid in found["slow"]}
        return unit_of(nodeid, self.groups)

    def _assign_work_unit(self, node: Any) -> None:
        """A slow unit goes next while one is left (xdist takes the first of its queue, which it ordered by size)."""
        following = next((scope for scope in self.workqueue if scope in self.slow), None)
        if following is not None:
            self.workqueue.move_to_end(following, last=False)
        super()._assign_work_unit(node)


class XdistUnits:
    """The plugin (tests/conftest.py registers it in every process): in a worker, writes the groups; in the
    controller, picks the scheduler for ``--dist loadgroup``."""

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):  # set by xdist
            write_groups(config, items)

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> FileOrGroupScheduling | None:
        return FileOrGroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None
