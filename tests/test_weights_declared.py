"""Declared weights: a URL with its full sha256, a file inside an installed package (a real wheel), a loader, a key
map; every bad declaration refused when it is made; listings that show them without importing torch."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from test_bad_inputs import FAST, one_error
from test_weights import _Server
from zoo_core import weights as W  # noqa: N812 -- the module under test, short: most lines call it
from zoo_core.errors import EXIT_CHECK, EXIT_ENV, CheckError, ZooError
from zoo_core.export import build_module
from zoo_core.specs import ModelSpec, WeightsSpec
from zoo_tiny import TINY_RESNEST

SHA = "ab" * 32


def _tiny_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """A seeded state dict of the tiny architecture (not the one ``--weights random`` would build)."""
    torch.manual_seed(seed)
    return build_module(TINY_RESNEST, W.WeightsRef("random", None, None, "random", seed=seed)).state_dict()


def _save(path: Path, state: dict[str, torch.Tensor]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(**weights: object) -> ModelSpec:
    return dataclasses.replace(TINY_RESNEST, name="declared-tiny", weights=WeightsSpec(**weights))


# ---------------------------------------------------------------------------------------------------------
# WeightsSpec: each kind, each bad declaration


def test_each_kind_of_declaration() -> None:
    legacy = WeightsSpec("https://host/w/resnest50-528c19ca.pth", "528c19ca", "resnest50-528c19ca.pth")
    assert (legacy.kind, legacy.expected_sha256, legacy.file_name) == ("url", "528c19ca", "resnest50-528c19ca.pth")
    full = WeightsSpec(url="https://host/w/model.pth?download=1", sha256=SHA.upper())
    assert (full.kind, full.file_name, full.expected_sha256) == ("url", "model.pth", SHA)
    package = WeightsSpec(package="zoo_x.data", resource="weights/tiny.pth", key_map={"net.": ""})
    assert (package.kind, package.expected_sha256, package.key_map) == ("package", "", {"net.": ""})
    loader = WeightsSpec(loader="zoo_x.fetch:weights", key_map="zoo_x.keys:rename", sha256=SHA)
    assert (loader.kind, loader.key_map) == ("loader", "zoo_x.keys:rename")


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({}, "exactly one source"),
        ({"url": "https://h/a.pth", "sha256": SHA, "package": "p", "resource": "a.pth"}, "got url and package"),
        ({"package": "p", "resource": "a.pth", "loader": "p.m:f"}, "got package and loader"),
        ({"resource": "a.pth"}, "resource= needs package="),
        ({"package": "p"}, "package= needs resource="),
        ({"package": "p-q", "resource": "a.pth"}, "not an importable package name"),
        ({"package": "p", "resource": "../outside.pth"}, "not a relative path inside the package"),
        ({"package": "p", "resource": "/etc/passwd"}, "not a relative path inside the package"),
        ({"package": "p", "resource": "w//a.pth"}, "not a relative path inside the package"),
        ({"package": "p", "resource": "a.pth", "file_name": "a.pth"}, "file_name= names a downloaded file"),
        ({"url": "https://h/a.pth"}, "needs sha256="),
        ({"url": "file:///tmp/a.pth", "sha256": SHA}, "not an http(s) URL"),
        ({"url": "https://h/", "sha256": SHA}, "give file_name="),
        ({"url": "https://h/a.pth", "sha256": "abc"}, "not a full sha256"),
        ({"url": "https://h/a.pth", "sha256_prefix": "abc"}, "not 8 to 64 hex digits"),
        ({"url": "https://h/a.pth", "sha256_prefix": "zzzzzzzz"}, "not 8 to 64 hex digits"),
        ({"url": "https://h/a.pth", "sha256": SHA, "sha256_prefix": SHA[:8]}, "not both"),
        ({"loader": "zoo_x.fetch"}, "not an import path"),
        ({"loader": 3}, "takes a string"),
        ({"loader": "p.m:f", "key_map": {}}, "non-empty prefix table"),
        ({"loader": "p.m:f", "key_map": {"net.": None}}, "prefixes are strings"),
        ({"loader": "p.m:f", "key_map": "rename"}, "key_map='rename' is not an import path"),
        ({"loader": "p.m:f", "key_map": ["net."]}, "non-empty prefix table"),
    ],
)
def test_bad_declaration_is_refused(declaration: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^WeightsSpec") as info:
        WeightsSpec(**declaration)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# resolving each kind


@pytest.fixture
def package_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An importable folder for packages that tests write; they are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("zoo_declared_"):
            del sys.modules[name]


def _write_package(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for file, text in (files or {}).items():
        (folder / file).write_text(textwrap.dedent(text))
    importlib.invalidate_caches()
    return folder


def test_url_with_full_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    served = tmp_path / "served"
    server = _Server(served.parent)
    try:
        digest = _save(served / "tiny.pth", _tiny_state())
        ref = W.resolve_weights(_model(url=server.url("served/tiny.pth"), sha256=digest), None, offline=False,
                                progress=False)
        assert (ref.source, ref.sha256, ref.path) == ("download", digest, W.hub_checkpoints_dir() / "tiny.pth")
        wrong = "0" * 64 if digest[0] != "0" else "1" * 64
        with pytest.raises(CheckError) as info:
            W.resolve_weights(_model(url=server.url("served/tiny.pth"), sha256=wrong), None, progress=False)
        assert str(info.value) == f"cached weights {ref.path} have sha256 {digest[:16]}…, expected {wrong[:16]}…"
    finally:
        server.close()


def test_package_file(package_root: Path) -> None:
    folder = _write_package(package_root, "zoo_declared_pkg")
    digest = _save(folder / "weights" / "tiny.pth", _tiny_state())
    for sha256 in (digest, None):  # a digest is optional; declared, it is checked
        ref = W.resolve_weights(_model(package="zoo_declared_pkg", resource="weights/tiny.pth", sha256=sha256), None)
        assert (ref.kind, ref.source, ref.sha256) == ("file", "package", digest)
        assert ref.path == (folder / "weights" / "tiny.pth").resolve()


def test_package_file_with_another_digest(package_root: Path) -> None:
    folder = _write_package(package_root, "zoo_declared_bad")
    digest = _save(folder / "tiny.pth", _tiny_state())
    wrong = "f" * 64 if digest[0] != "f" else "e" * 64
    with pytest.raises(CheckError) as info:
        W.resolve_weights(_model(package="zoo_declared_bad", resource="tiny.pth", sha256=wrong), None)
    assert info.value.exit_code == EXIT_CHECK
    assert str(info.value) == (f"the weights of declared-tiny, tiny.pth in package zoo_declared_bad, have sha256 "
                               f"{digest[:16]}…, expected {wrong[:16]}…")
    assert "reinstall" in info.value.note


def test_package_or_file_missing(package_root: Path) -> None:
    _write_package(package_root, "zoo_declared_empty")
    with pytest.raises(ZooError) as info:
        W.resolve_weights(_model(package="zoo_declared_empty", resource="weights/tiny.pth"), None)
    assert info.value.exit_code == EXIT_ENV
    assert str(info.value).startswith("cannot find the weights of declared-tiny: no file weights/tiny.pth in package "
                                      "zoo_declared_empty")
    assert "reinstall the plugin" in info.value.note and "--weights" in info.value.note
    with pytest.raises(ZooError, match="^cannot find the weights of declared-tiny: tiny.pth in package "
                                       "zoo_declared_absent: No module named") as info:
        W.resolve_weights(_model(package="zoo_declared_absent", resource="tiny.pth"), None)
    assert info.value.exit_code == EXIT_ENV


def test_package_link_out_of_the_package_is_refused(package_root: Path, tmp_path: Path) -> None:
    folder = _write_package(package_root, "zoo_declared_link")
    _save(tmp_path / "elsewhere.pth", _tiny_state())
    (folder / "tiny.pth").symlink_to(tmp_path / "elsewhere.pth")
    with pytest.raises(ZooError) as info:
        W.resolve_weights(_model(package="zoo_declared_link", resource="tiny.pth"), None)
    assert str(info.value) == (f"the weights of declared-tiny, tiny.pth in package zoo_declared_link, lead outside "
                               f"the package to {(tmp_path / 'elsewhere.pth').resolve()}")


LOADER = """
    from pathlib import Path
    import torch

    CALLS = []

    def weights(model):
        CALLS.append(model.name)
        path = Path(__file__).with_name("made.pth")
        torch.save({"w": torch.arange(3.0)}, path)
        return str(path)

    def state(model):
        return {"w": torch.arange(3.0)}

    def nowhere(model):
        return Path(__file__).with_name("missing.pth")
"""


def test_loader_returns_a_file(package_root: Path) -> None:
    folder = _write_package(package_root, "zoo_declared_loader", {"fetch.py": LOADER})
    ref = W.resolve_weights(_model(loader="zoo_declared_loader.fetch:weights"), None)
    made = folder / "made.pth"
    assert (ref.source, ref.path, ref.sha256) == ("loader", made.resolve(), W.sha256_file(made))
    assert ref.key == W.sha256_file(made)  # the cache key is the digest of the file loaded
    assert sys.modules["zoo_declared_loader.fetch"].CALLS == ["declared-tiny"]
    wrong = "0" * 64
    with pytest.raises(CheckError, match="expected 0000000000000000…"):
        W.resolve_weights(_model(loader="zoo_declared_loader.fetch:weights", sha256=wrong), None)


def test_loader_mistakes(package_root: Path) -> None:
    _write_package(package_root, "zoo_declared_loader2", {"fetch.py": LOADER})
    with pytest.raises(TypeError, match="returned a dict, not a path"):  # a plugin bug: a traceback
        W.resolve_weights(_model(loader="zoo_declared_loader2.fetch:state"), None)
    with pytest.raises(ZooError, match=r"returned .*missing\.pth, which is not a file$"):
        W.resolve_weights(_model(loader="zoo_declared_loader2.fetch:nowhere"), None)
    with pytest.raises(ZooError, match="^cannot import the weights loader 'zoo_declared_loader2.fetch:gone'"):
        W.resolve_weights(_model(loader="zoo_declared_loader2.fetch:gone"), None)


def test_weights_present_imports_nothing(package_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = _write_package(package_root, "zoo_declared_listed")
    (folder / "__init__.py").write_text("raise RuntimeError('imported')\n")
    _save(folder / "tiny.pth", _tiny_state())
    assert W.weights_present(WeightsSpec(package="zoo_declared_listed", resource="tiny.pth")) is True
    assert W.weights_present(WeightsSpec(package="zoo_declared_listed", resource="other.pth")) is False
    assert W.weights_present(WeightsSpec(package="zoo_declared_nowhere", resource="tiny.pth")) is False
    assert "zoo_declared_listed" not in sys.modules
    assert W.weights_present(WeightsSpec(loader="zoo_declared_listed.fetch:weights")) is None
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    url = WeightsSpec(url="https://h/x/tiny.pth", sha256=SHA)
    assert W.weights_present(url) is False
    (W.hub_checkpoints_dir()).mkdir(parents=True)
    (W.hub_checkpoints_dir() / "tiny.pth").write_bytes(b"x")
    assert W.weights_present(url) is True


# ---------------------------------------------------------------------------------------------------------
# the key map


def test_prefix_table_longest_prefix_wins(tmp_path: Path) -> None:
    a, b, c, d = (torch.full((1,), float(i)) for i in range(4))
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module.net.head.w": a, "module.net.body.w": b, "other.w": c, "head.w": d}}, path)
    state = W.load_state_dict(path, key_map={"net.": "", "net.head.": "fc.", "head.": "classifier."})
    assert state == {"fc.w": a, "body.w": b, "other.w": c, "classifier.w": d}
    prefixed = W.load_state_dict(path, key_map={"": "model."})
    assert list(prefixed) == ["model.net.head.w", "model.net.body.w", "model.other.w", "model.head.w"]


def test_prefix_table_that_merges_two_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"a.w": torch.zeros(1), "b.w": torch.ones(1)}, path)
    with pytest.raises(ZooError) as info:
        W.load_state_dict(path, key_map={"a.": "x.", "b.": "x."})
    assert str(info.value) == f"the key map renames both 'a.w' and 'b.w' of {path} to 'x.w'"


def test_callable_key_map(package_root: Path, tmp_path: Path) -> None:
    _write_package(package_root, "zoo_declared_keys", {"keys.py": """
        def rename(state):
            return {key.replace("blocks", "layer"): value for key, value in state.items()}

        def broken(state):
            return list(state)
    """})
    path = tmp_path / "ckpt.pth"
    torch.save({"module.blocks.0.w": torch.zeros(2)}, path)
    assert list(W.load_state_dict(path, key_map="zoo_declared_keys.keys:rename")) == ["layer.0.w"]
    with pytest.raises(TypeError, match="returned a list, not a state dict"):
        W.load_state_dict(path, key_map="zoo_declared_keys.keys:broken")


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"net.{key}": value for key, value in state.items()}


def test_key_map_applies_when_the_module_is_built(tmp_path: Path) -> None:
    state = _tiny_state()
    path = tmp_path / "renamed.pth"
    digest = _save(path, _renamed(state))
    ref = W.WeightsRef(kind="file", path=path, sha256=digest, source="loader")
    module = build_module(_model(loader="x.y:z", key_map={"net.": ""}), ref)
    assert all(torch.equal(module.state_dict()[key], value) for key, value in state.items())

    with pytest.raises(ZooError) as info:  # a key map that leaves keys unmatched: one line naming a few
        build_module(_model(loader="x.y:z", key_map={"backbone.": ""}), ref)
    keys = list(state)
    assert str(info.value) == (
        f"weights {path} do not fit model 'declared-tiny' after the key map: keys {len(keys)} missing "
        f"(e.g. {', '.join(keys[:3])}), {len(keys)} unexpected (e.g. {', '.join('net.' + k for k in keys[:3])})")
    assert "another key_map" in info.value.note and "plugin" in info.value.note
    with pytest.raises(ZooError, match="do not fit model 'declared-tiny': keys") as info:  # and without one
        build_module(_model(loader="x.y:z"), ref)
    assert "needs a key_map" in info.value.note


# ---------------------------------------------------------------------------------------------------------
# a model plugin whose weights ship inside its wheel, through the real command


PLUGIN = '''
    """A model whose weights ship inside this wheel, saved under other key names than the model's."""

    import dataclasses

    from zoo_core import hookimpl
    from zoo_core.specs import WeightsSpec
    from zoo_tiny import TINY_RESNEST

    SHA256 = "{digest}"


    def _model(name, **weights):
        spec = WeightsSpec(package="zoo_wheeltiny", resource="weights/tiny.pth", sha256=SHA256, **weights)
        return dataclasses.replace(TINY_RESNEST, name=name, family="wheeltiny", weights=spec)


    @hookimpl
    def zoo_register_models(register):
        register(_model("wheel-tiny", key_map={{"net.": ""}}))
        register(_model("wheel-tiny-nomap"))
'''

PYPROJECT = """
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "zoo-wheeltiny"
    version = "0.1.0"

    [project.entry-points.zoo]
    wheeltiny = "zoo_wheeltiny"

    [tool.setuptools]
    packages = ["zoo_wheeltiny"]

    [tool.setuptools.package-data]
    zoo_wheeltiny = ["weights/*.pth"]
"""


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The plugin built into a wheel offline and installed into a folder for PYTHONPATH; and its weights' digest."""
    root = tmp_path_factory.mktemp("wheeltiny")
    src = root / "src"
    digest = _save(src / "zoo_wheeltiny" / "weights" / "tiny.pth", _renamed(_tiny_state()))
    (src / "zoo_wheeltiny" / "__init__.py").write_text(textwrap.dedent(PLUGIN.format(digest=digest)))
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)],
                   check=True, env=env, cwd=root, capture_output=True)
    wheel = next((root / "dist").glob("zoo_wheeltiny-0.1.0-*.whl"))
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, env=env,
                   capture_output=True)
    assert (site / "zoo_wheeltiny" / "weights" / "tiny.pth").is_file()
    return site, digest


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ["PYTHONPATH"]])}


def test_wheel_weights_are_listed(zoo_cli, wheel_site: tuple[Path, str]) -> None:
    site, digest = wheel_site
    rows = {r["name"]: r for r in zoo_cli("list", "--json", env=_env(site)).json()}
    assert rows["wheel-tiny"] == {"name": "wheel-tiny", "family": "wheeltiny", "input_shape": [3, 64, 64],
                                  "weights_known": True, "weights_kind": "package", "weights_cached": True,
                                  "plugin": "wheeltiny"}
    info = zoo_cli("info", "wheel-tiny", "--json", env=_env(site)).json()["weights"]
    assert (info["kind"], info["present"], info["package"], info["resource"]) == (
        "package", True, "zoo_wheeltiny", "weights/tiny.pth")
    assert (info["sha256"], info["key_map"]) == (digest, {"net.": ""})
    table = zoo_cli("list", env={**_env(site), "COLUMNS": "200"}).stdout
    assert any(line.split()[:1] == ["wheel-tiny"] and "package" in line.split() for line in table.splitlines())
    code = ("import sys\nfrom zoo_core.cli import main\ntry:\n    main(['list'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint('LOADED', sorted(m for m in ('torch', 'zoo_resnest.model') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **_env(site)}).stdout
    assert out.strip().splitlines()[-1] == "LOADED []"


def test_wheel_model_runs_without_weights_flag(zoo_cli, wheel_site: tuple[Path, str], tmp_path: Path) -> None:
    site, digest = wheel_site
    hooks = {p["name"]: p["hooks"] for p in zoo_cli("plugins", "--json", env=_env(site)).json()["plugins"]}
    assert hooks["wheeltiny"] == ["zoo_register_models"]  # no zoo_export: the core exports it
    for backend in ("onnxruntime", "torch"):  # the torch backend loads the checkpoint again, key map included
        result = zoo_cli("run", "wheel-tiny", "--backend", backend, "--bs", "1", *FAST, "--json",
                         "--out", str(tmp_path / backend), env=_env(site))
        assert result.code == 0, result
        assert result.json()["weights"] == f"sha256:{digest[:16]}"


def test_wheel_model_without_its_key_map(zoo_cli, wheel_site: tuple[Path, str], tmp_path: Path) -> None:
    site, _ = wheel_site
    result = zoo_cli("run", "wheel-tiny-nomap", "--bs", "1", *FAST, "--out", str(tmp_path / "o"), env=_env(site))
    error, note = one_error(result, EXIT_ENV)
    keys = list(_tiny_state())
    installed = (site / "zoo_wheeltiny" / "weights" / "tiny.pth").resolve()
    assert error == (f"Error: weights {installed} do not fit model 'wheel-tiny-nomap': keys {len(keys)} missing "
                     f"(e.g. {', '.join(keys[:3])}), {len(keys)} unexpected (e.g. net.{keys[0]}, net.{keys[1]}, "
                     f"net.{keys[2]})")
    assert note == ("Note: the weights that plugin 'wheeltiny' declares do not fit its model: its WeightsSpec needs a "
                    "key_map; meanwhile pass --weights PATH or --weights random")


@pytest.mark.parametrize("damage", ["edited", "deleted"])
def test_wheel_weights_damaged_after_install(zoo_cli, wheel_site: tuple[Path, str], tmp_path: Path,
                                             damage: str) -> None:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(wheel_site[0], site)
    weights = site / "zoo_wheeltiny" / "weights" / "tiny.pth"
    if damage == "edited":
        weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    else:
        weights.unlink()
    rows = {r["name"]: r for r in zoo_cli("list", "--json", env=_env(site)).json()}
    assert rows["wheel-tiny"]["weights_cached"] is (damage == "edited")  # present, not verified, in a listing
    error, note = one_error(zoo_cli("run", "wheel-tiny", "--bs", "1", *FAST, "--out", str(tmp_path / "o"),
                                    env=_env(site)), EXIT_CHECK if damage == "edited" else EXIT_ENV)
    if damage == "edited":
        digest = W.sha256_file(weights)
        assert error == (f"Error: the weights of wheel-tiny, weights/tiny.pth in package zoo_wheeltiny, have sha256 "
                         f"{digest[:16]}…, expected {wheel_site[1][:16]}…")
    else:
        assert error == f"Error: cannot find the weights of wheel-tiny: no file weights/tiny.pth in package " \
                        f"zoo_wheeltiny ({weights})"
    assert "reinstall" in note and "'wheeltiny'" in note and "--weights PATH" in note


def test_bad_declaration_leaves_the_cli_working(zoo_cli, tmp_path: Path) -> None:
    (tmp_path / "zoo_badweights.py").write_text(textwrap.dedent("""
        from zoo_core.specs import WeightsSpec

        WEIGHTS = WeightsSpec(url="https://example.org/w/tiny.pth")  # no hash: refused
    """))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]),
           "ZOO_PLUGINS": f"{os.environ['ZOO_PLUGINS']},zoo_badweights"}
    plugins = zoo_cli("plugins", "--json", env=env).json()["plugins"]
    errors = [p["error"] for p in plugins if p["name"] == "zoo_badweights"]
    assert errors == ["ValueError: WeightsSpec: url= needs sha256= (or sha256_prefix=) to verify the download"]
    assert zoo_cli("list", env=env).code == 0


# ---------------------------------------------------------------------------------------------------------
# the core's export needs no hook, for several inputs and outputs too


def test_generic_export_of_two_inputs_and_two_outputs(package_root: Path, tmp_path: Path) -> None:
    import onnx

    from zoo_core.export import export_onnx, run_onnx, sample_input, simplify_onnx

    _write_package(package_root, "zoo_declared_two", {"model.py": """
        import torch

        class Two(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3)

            def forward(self, a, b):
                x = self.conv(a) - 2 * self.conv(b)
                return x.mean((2, 3)), x.amax((2, 3))

        def build():
            return Two()
    """})
    spec = ModelSpec(name="two", family="test", factory="zoo_declared_two.model:build", input_names=("a", "b"),
                     output_names=("mean", "max"), input_shape=(3, 8, 8), num_classes=4)
    ref = W.resolve_weights(spec, "random", seed=3)
    path = tmp_path / "two.onnx"
    check = export_onnx(spec, ref, path, opset=13)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["a", "b"] and [o.name for o in graph.output] == ["mean", "max"]
    assert check.max_abs_diff <= check.tolerance
    a, b = sample_input(spec, 2, seed=5), sample_input(spec, 2, seed=6)
    with torch.no_grad():
        expected = build_module(spec, ref)(torch.from_numpy(a), torch.from_numpy(b))
    # each input reaches its own argument
    for got, want in zip(run_onnx(path, {"a": a, "b": b}), expected, strict=True):
        assert got.shape == (2, 4) and abs(got - want.numpy()).max() < 1e-4
    assert simplify_onnx(spec, path, tmp_path / "two-3.onnx", 3).batch_size == 3


def test_export_check_judges_every_output() -> None:
    import numpy as np

    from zoo_core.export import compare_outputs

    same, off = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    check = compare_outputs("x", {"PyTorch": [same, same], "ONNX Runtime": [same, off]}, 1e-4, 2, note="n")
    assert check.max_abs_diff == 1.0
    with pytest.raises(CheckError, match=r"^x: NaN or infinity in the outputs, 2 of 12 values from ONNX Runtime$"):
        compare_outputs("x", {"PyTorch": [same, same], "ONNX Runtime": [same, np.full((2, 3), [0, 0, np.nan])]},
                        1e-4, 2, note="n")
