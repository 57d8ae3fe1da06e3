"""``zoo new-plugin``: names, files, refusals, and each kind's skeleton installed into a fresh environment, where
its own tests pass.

"A fresh environment" here: ``python -m venv --without-pip`` makes a new environment whose own site-packages is
empty; a ``.pth`` file in it adds this interpreter's site-packages *behind* it (with ``site.addsitedir``, so that
the editable install of zoo there keeps working), which lends zoo and its dependencies (torch, onnxruntime,
pytest, pip, setuptools) read-only. Only the skeleton is installed: ``pip install -e`` run by the new interpreter
(so into the new environment; this one never sees the plugin), with ``--no-index`` (nothing is downloaded) and
``--no-build-isolation`` (setuptools from the lent packages). The skeleton's tests then run under the new
interpreter, in the skeleton's folder, with no ``PYTHONPATH`` and no ``$ZOO_PLUGINS``: they find the plugin
through its installed entry point, as a user's ``zoo`` command does. About 15 s per kind.

Not a venv that installs zoo and its dependencies as well: that downloads or copies torch and friends (several
hundred MB) for every kind and takes minutes, and proves nothing more about the skeleton.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from zoo_core.errors import UsageError
from zoo_core.scaffold import KINDS, plugin_names, render, write_plugin

# Variables of this test session that would hand the skeleton's tests what its installation must provide.
_HIDDEN = ("PYTHONPATH", "ZOO_PLUGINS", "ZOO_DISABLE_PLUGIN_AUTOLOAD", "VIRTUAL_ENV", "PYTEST_ADDOPTS",
           "PYTEST_PLUGINS")


@pytest.mark.parametrize(
    ("name", "dist", "package"),
    [("demo", "zoo-demo", "zoo_demo"), ("my-net", "zoo-my-net", "zoo_my_net"),
     ("my_net2", "zoo-my-net2", "zoo_my_net2"), ("zoo-mynet", "zoo-mynet", "zoo_mynet")],
)
def test_plugin_names(name: str, dist: str, package: str) -> None:
    names = plugin_names(name)
    assert (names.dist, names.package) == (dist, package)


@pytest.mark.parametrize("name", ["Demo", "1net", "my net", "my--net", "net-", "../evil", ""])
def test_a_name_that_cannot_be_a_package_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="is not a lower-case name"):
        plugin_names(name)


def test_each_kind_has_its_package_its_tests_and_an_entry_point() -> None:
    for kind in KINDS:
        files = render("demo", kind)
        assert {"pyproject.toml", "README.md", "zoo_demo/__init__.py", "tests/conftest.py",
                "tests/test_zoo_demo.py"} <= set(files)
        assert '[project.entry-points.zoo]\ndemo = "zoo_demo"' in files["pyproject.toml"]
        assert 'pytest_plugins = ["zoo_core.testing"]' in files["tests/conftest.py"]
        for path, text in files.items():
            if path.endswith(".py"):
                compile(text, path, "exec")
    assert "zoo_demo/model.py" in render("demo", "model")


def test_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "zoo-demo").mkdir()
    (tmp_path / "zoo-demo" / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="already exists"):
        write_plugin("demo", "model", tmp_path)
    assert [p.name for p in (tmp_path / "zoo-demo").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo-demo"]  # no staging folder left behind


def test_the_command_refuses_an_unknown_kind(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("new-plugin", "demo", "--kind", "plugin", "--dir", tmp_path)
    assert result.code == 2, result
    assert "Error: Invalid value for '--kind'" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def _fresh_env(root: Path) -> Path:
    """A new environment at ``root`` that lends this interpreter's packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    lent = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(own, "_zoo_lent_packages.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in lent))
    return python


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    command = " ".join(map(str, argv))
    assert proc.returncode == 0, f"{command} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.parametrize("kind", KINDS)
def test_a_skeleton_installs_and_passes_its_tests_in_a_fresh_environment(kind: str, zoo_cli, tmp_path: Path) -> None:
    args = ["new-plugin", "demo"] if kind == "model" else ["new-plugin", "demo", "--kind", kind]  # model: the default
    made = zoo_cli(*args, "--dir", tmp_path, "--json")
    assert made.code == 0, made
    root = Path(made.json()["root"])
    assert (root / "zoo_demo" / "__init__.py").is_file()

    python = _fresh_env(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in _HIDDEN}
    env["ZOO_CACHE_DIR"] = str(tmp_path / "cache")
    unimported = subprocess.run([python, "-c", "import zoo_demo"], cwd=tmp_path, env=env, capture_output=True)
    assert unimported.returncode != 0  # the new environment does not have the plugin before it is installed

    _run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-input", "-e", root],
         tmp_path, env)
    tests = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", tmp_path / "pytest"],
                 root, env)
    assert " passed" in tests.stdout and "failed" not in tests.stdout and "skipped" not in tests.stdout, tests.stdout
    # This environment never saw it.
    assert "demo" not in {ep.name for ep in entry_points(group="zoo")}
