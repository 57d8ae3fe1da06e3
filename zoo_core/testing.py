"""Test helpers for plugin authors, the ones zoo's own tests use: a zoo with autoload off, a fake backend, a tiny
model, a generated image dataset, a ``zoo`` command runner and the stages a test calls in-process (the installed
plugin as zoo loads it, a dataset read, an image prepared, a run); also a pytest plugin (``pytest_plugins =
["zoo_core.testing"]``) with the fixtures ``zoo_app``, ``zoo_cli``, ``tiny_dataset``, ``zoo_plugins`` and
``zoo_cache_dir``.

Plain functions work without pytest. The fixtures are defined only when pytest is already imported (it always
is when pytest loads this module as a plugin or a test imports it), so that a ``zoo`` command whose plugin
imports :data:`TINY` from here does not pay for importing pytest.

``ZOO_PLUGINS=zoo_core.testing`` registers the tiny model and the fake backend in a ``zoo`` command as well:
the module is a zoo plugin (see the end of the file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import hookimpl
from .runtime import CompiledModel, Runner, compiled_inputs
from .specs import BackendSpec, ModelSpec

if TYPE_CHECKING:
    import numpy as np

    from .app import Zoo
    from .datasets import Dataset

__all__ = [
    "TINY",
    "CliResult",
    "FakeBackend",
    "FakeRunner",
    "TinyModel",
    "build_tiny_cnn",
    "installed_plugin",
    "load_dataset",
    "make_zoo",
    "preprocess",
    "run_cli",
    "run_model",
    "write_image_dataset",
]

#: A tiny convolutional classifier of the kit's own (:func:`build_tiny_cnn`): no model plugin needed, exported in
#: well under a second, 10 classes, 64x64 input, the core's presets. The plugin skeletons' tests use it. Like any
#: declared model, the core exports it from its factory and prepares its images.
TINY = ModelSpec(
    name="tiny-cnn",
    family="tiny",
    factory="zoo_core.testing:build_tiny_cnn",
    factory_kwargs={"num_classes": 10},
    input_shape=(3, 64, 64),
    num_classes=10,
    description="two strided conv-BN-ReLU blocks, global average pool, linear: for tests",
)


def build_tiny_cnn(num_classes: int = 10, width: int = 8) -> Any:
    """The module of :data:`TINY` (torch is imported here, when a test exports or runs it)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


LABEL_FILE = "val_label.txt"
IMAGE_NAME = "ILSVRC2012_val_{:08d}.JPEG"


# -------------------------------------------------------------------------
# A zoo with exactly the plugins a test names
# -------------------------------------------------------------------------


def make_zoo(*plugins: Any, cache_dir: Path | str) -> Zoo:
    """The application with entry points off: the built-in plugins (backends, metrics), the modules in
    ``$ZOO_PLUGINS``, then ``plugins`` (modules or objects with hook implementations), caching under
    ``cache_dir``."""
    from .app import Zoo

    return Zoo.create(autoload=False, plugins=plugins, cache_dir=Path(cache_dir))


class TinyModel:
    """A model plugin for tests: registers :data:`TINY`, a declaration (the core exports it and prepares
    its images)."""

    plugin_name = "zoo_core.testing:tiny-model"

    @hookimpl
    def zoo_register_models(self, register: Callable[[ModelSpec], None]) -> None:
        register(TINY)


# -------------------------------------------------------------------------
# A fake backend: the smallest complete backend plugin
# -------------------------------------------------------------------------


class FakeRunner(Runner):
    """Runs a "compiled" model on ONNX Runtime and refuses what a real device would: an ONNX file whose inputs
    are not the compiled ones, a wrong dtype or a non-contiguous array (the core already checks names and
    shapes), a call after :meth:`close`."""

    def __init__(self, compiled: CompiledModel) -> None:
        super().__init__(compiled)
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(compiled.path), providers=["CPUExecutionProvider"])
        declared = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        expected = {i.name: i.shape for i in compiled.inputs}
        if declared != expected:
            raise ValueError(f"the compiled file declares inputs {declared}, the compiled model {expected}")
        self.batches = 0

    def _infer(self, feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        if self.session is None:
            raise RuntimeError("the runner is closed")
        for info in self.compiled.inputs:
            array = feed[info.name]
            if str(array.dtype) != info.dtype:
                raise ValueError(f"input {info.name!r} has dtype {array.dtype}, expected {info.dtype}")
            if not array.flags.c_contiguous:
                raise ValueError(f"input {info.name!r} is not C-contiguous")
        outputs = self.session.run(list(self.compiled.output_names), dict(feed))
        self.batches += 1
        return outputs

    def close(self) -> None:
        self.session = None


class FakeBackend:
    """A backend plugin for tests, named ``fake``: "compiling" copies the simplified ONNX file into the work
    folder, inference runs it on ONNX Runtime through a strict :class:`FakeRunner`. Its priority is the lowest,
    so the automatic choice never takes it."""

    plugin_name = "zoo_core.testing:fake-backend"
    name = "fake"
    compiled_file = "model.fake.onnx"

    @hookimpl
    def zoo_register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        register(BackendSpec(name=self.name, description="test double: the ONNX file as is, on ONNX Runtime",
                             available=True, priority=-100, device="cpu"))

    @hookimpl
    def zoo_compile(
        self, backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int, workdir: Path
    ) -> CompiledModel:
        target = workdir / self.compiled_file
        shutil.copyfile(onnx_path, target)
        return CompiledModel(
            backend=backend.name,
            model=model.name,
            batch_size=batch_size,
            path=target,
            inputs=compiled_inputs(model, backend.name, batch_size),
            output_names=tuple(model.output_names),
            device="cpu",
            extra={"fake": True},
        )

    @hookimpl
    def zoo_infer(self, compiled: CompiledModel) -> Runner:
        return FakeRunner(compiled)

    @hookimpl
    def zoo_commands(self, backend: BackendSpec, model: ModelSpec, onnx_path: Path, batch_size: int) -> list[list[str]]:
        return [["cp", str(onnx_path), f"{model.name}_bs{batch_size}.fake.onnx"]]


# -------------------------------------------------------------------------
# The stages a test calls in-process, as the core calls them
# -------------------------------------------------------------------------


def installed_plugin(name: str) -> Any:
    """The plugin that the ``zoo`` command loads from the entry point ``name`` (group ``zoo``), after it has
    registered its models, datasets and backends. An AssertionError says why when it is not installed, fails to
    import, or registers something zoo refuses (what ``zoo plugins`` would report)."""
    from importlib.metadata import entry_points

    from .plugins import Registry, get_plugin_manager

    assert name in {ep.name for ep in entry_points(group="zoo")}, (
        f"no entry point {name!r} in group 'zoo': install the package first (pip install -e .)")
    pm = get_plugin_manager(autoload=True)
    registry = Registry(pm)
    _ = registry.models, registry.datasets, registry.backends  # registering records its problems
    problems = [problem.error for problem in pm.problems if problem.plugin == name]
    assert not problems, f"zoo reports plugin {name!r}: {'; '.join(problems)}"
    return pm.get_plugin(name)


def load_dataset(zoo: Zoo, kind: str, path: Path | str, model: ModelSpec, labels: Path | str | None = None,
                 classes: Path | str | None = None) -> Dataset | None:
    """The folder ``path`` read as dataset kind ``kind`` by the plugin that registered the kind, as an accuracy
    run asks it (``zoo_load_dataset``)."""
    spec = zoo.registry.dataset(kind)
    return zoo.registry.call("zoo_load_dataset", spec, dataset=spec, path=Path(path), model=model,
                             labels=None if labels is None else Path(labels),
                             classes=None if classes is None else Path(classes))


def preprocess(zoo: Zoo, model: ModelSpec | str, image_path: Path | str, preset: str | None = None) -> np.ndarray:
    """One image prepared for ``model`` as a run prepares it: its plugin's ``zoo_preprocess`` when that answers,
    else the preset's declaration; ``preset`` defaults to the model's. A ``ValueError`` when the image does not
    decode (a run would stop on it, or skip it with ``--skip-bad``)."""
    from .samples import preprocess_one

    spec = zoo.registry.model(model) if isinstance(model, str) else model
    array, reason = preprocess_one(zoo.pm, spec, preset or spec.preset, Path(image_path))
    if array is None:
        raise ValueError(f"{image_path} does not decode: {reason}")
    return array


def run_model(zoo: Zoo, model: str, **flags: Any) -> dict[str, Any]:
    """``zoo run MODEL`` in this process, its results object (see the README); ``flags`` by ``RunOptions`` field,
    e.g. ``run_model(zoo_app, "mynet", backend="fake", weights="random", batch_sizes=(2,), iterations=3)``."""
    from .runner import run
    from .specs import resolve_options

    return run(zoo, resolve_options(zoo.registry.model(model), flags))


# -------------------------------------------------------------------------
# A tiny generated dataset
# -------------------------------------------------------------------------


def write_image_dataset(folder: Path | str, count: int = 8, num_classes: int = 10, seed: int = 0) -> dict[str, int]:
    """Write ``count`` seeded JPEG images of varied sizes into ``folder`` (``ILSVRC2012_val_00000001.JPEG``, ...)
    and a ``val_label.txt`` (``<file name> <class>`` per line, in a shuffled order), the ``imagenet-val`` layout.

    Returns the labels, file name -> class, in file order.
    """
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels: dict[str, int] = {}
    for index in range(1, count + 1):
        width, height = (int(v) for v in rng.integers(40, 120, size=2))
        cells = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        image = Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC)
        name = IMAGE_NAME.format(index)
        image.save(folder / name, quality=90)
        labels[name] = int(rng.integers(0, num_classes))
    order = rng.permutation(count)
    names = list(labels)
    (folder / LABEL_FILE).write_text("".join(f"{names[i]} {labels[names[i]]}\n" for i in order))
    return labels


# -------------------------------------------------------------------------
# The zoo command, in a subprocess
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What a ``zoo`` command did: exit code, stdout, stderr."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON (for ``--json`` commands)."""
        return json.loads(self.stdout)

    def __repr__(self) -> str:  # what an assertion message shows
        return f"<exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}>"


def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str | None] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 600,
) -> CliResult:
    """Run ``python -m zoo_core ARGS`` (the ``zoo`` command) with this interpreter, as a user would.

    ``env`` adds to this process's environment; a ``None`` value removes that variable.
    """
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_core", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# -------------------------------------------------------------------------
# The pytest plugin
# -------------------------------------------------------------------------

pytest = sys.modules.get("pytest")

if pytest is not None:

    @pytest.fixture(scope="session")
    def zoo_cache_dir(tmp_path_factory: Any) -> Path:
        """One artifact cache for the session, so that each model is exported once."""
        return tmp_path_factory.mktemp("zoo-cache")

    @pytest.fixture
    def zoo_plugins() -> list[Any]:
        """The plugins ``zoo_app`` registers besides the built-ins, the tiny model and the fake backend: none.
        Override it in your ``conftest.py`` to return your plugin module."""
        return []

    @pytest.fixture
    def zoo_app(zoo_plugins: list[Any], zoo_cache_dir: Path) -> Zoo:
        """A zoo with entry points off: the built-ins, ``zoo_plugins``, :class:`TinyModel` and
        :class:`FakeBackend`."""
        return make_zoo(*zoo_plugins, TinyModel(), FakeBackend(), cache_dir=zoo_cache_dir)

    @pytest.fixture
    def zoo_cli(zoo_cache_dir: Path, tmp_path: Path) -> Callable[..., CliResult]:
        """:func:`run_cli` with the session's cache, no downloads, and this module in ``$ZOO_PLUGINS`` (the tiny
        model and the fake backend); installed plugins load from their entry points as usual."""
        extra = ",".join(filter(None, [os.environ.get("ZOO_PLUGINS", ""), __name__]))
        defaults = {"ZOO_CACHE_DIR": str(zoo_cache_dir), "ZOO_OFFLINE": "1", "ZOO_PLUGINS": extra,
                    "TORCH_HOME": str(tmp_path / "torch-home")}

        def run(*args: str | os.PathLike[str], env: Mapping[str, str | None] | None = None,
                cwd: Path | str | None = None) -> CliResult:
            return run_cli(*args, env={**defaults, **(env or {})}, cwd=cwd)

        return run

    @pytest.fixture
    def tiny_dataset(tmp_path: Path) -> Path:
        """An ``imagenet-val`` folder: 8 JPEG images and their ``val_label.txt``, classes 0..9."""
        folder = tmp_path / "tiny-dataset"
        write_image_dataset(folder, count=8, num_classes=10, seed=0)
        return folder


# -------------------------------------------------------------------------
# The zoo plugin: ZOO_PLUGINS=zoo_core.testing registers the tiny model and the fake backend
# -------------------------------------------------------------------------


_tiny_model, _fake_backend = TinyModel(), FakeBackend()
zoo_register_models = _tiny_model.zoo_register_models
zoo_register_backends = _fake_backend.zoo_register_backends
zoo_compile = _fake_backend.zoo_compile
zoo_infer = _fake_backend.zoo_infer
zoo_commands = _fake_backend.zoo_commands
