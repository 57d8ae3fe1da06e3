"""The application object: the plugin manager, the registry built from it, the artifact cache and the stage timer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .artifacts import ArtifactStore
from .errors import EXIT_BUG, ZooError
from .plugins import Registry, ZooPluginManager, get_plugin_manager
from .timing import StageTimer

if TYPE_CHECKING:
    from .runtime import CompiledModel
    from .specs import ModelSpec, RunOptions


@dataclass
class Zoo:
    """The application: the plugin manager, the registry built from it, and the artifact cache."""

    pm: ZooPluginManager
    registry: Registry
    store: ArtifactStore
    timer: StageTimer

    @classmethod
    def create(
        cls, *, autoload: bool | None = None, plugins: Iterable[Any] = (), cache_dir: Path | None = None
    ) -> "Zoo":
        pm = get_plugin_manager(autoload=autoload, plugins=plugins)
        return cls(pm=pm, registry=Registry(pm), store=ArtifactStore(cache_dir), timer=StageTimer())

    def open_runner(self, compiled: CompiledModel, model: ModelSpec, options: RunOptions) -> Any:
        """A runner for ``compiled``, opened by the plugin that registered its backend."""
        backend = self.registry.backend_of(compiled.backend)
        with self.timer.stage("open_runner"):
            runner = self.registry.call("zoo_infer", backend, compiled=compiled, model=model, options=options)
        if runner is None and not self.registry.implements("zoo_infer", backend):
            raise self.registry.stage_missing("zoo_infer", backend)
        if runner is None:
            raise ZooError(f"the plugin {backend.plugin!r} of backend {compiled.backend!r} opened no runner",
                           note="its zoo_infer returned nothing: a bug in that plugin", exit_code=EXIT_BUG)
        from .runtime import Runner

        if not isinstance(runner, Runner):  # the core times and checks each batch through Runner.infer
            raise ZooError(f"the zoo_infer of plugin {backend.plugin!r} (backend {compiled.backend!r}) returned a "
                           f"{type(runner).__name__}, not a zoo_core.runtime.Runner",
                           note="a bug in that plugin: report it to its authors", exit_code=EXIT_BUG)
        return runner
