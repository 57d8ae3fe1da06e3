"""Plain data for the listing commands (``zoo list``, ``zoo info``, ``zoo plugins``); the CLI only renders it."""

from __future__ import annotations

import re
from typing import Any

from .plugins import Registry, hook_owners, plugin_version


def list_models(registry: Registry) -> list[dict[str, Any]]:
    """One row per registered model: name, family, input shape, whether published weights are known."""
    from .weights import hub_checkpoints_dir

    hub = hub_checkpoints_dir()
    rows = []
    for spec in sorted(registry.models.values(), key=lambda s: (s.family, _natural(s.name))):
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "input_shape": list(spec.input_shape),
                "weights_known": spec.weights is not None,
                "weights_cached": spec.weights is not None and (hub / spec.weights.file_name).is_file(),
                "plugin": spec.plugin,
            }
        )
    return rows


def model_info(registry: Registry, name: str) -> dict[str, Any]:
    """A model's full configuration."""
    return registry.model(name).to_dict()


def plugins_info(registry: Registry) -> dict[str, Any]:
    """Every plugin with its source, version and hooks; every load problem; every backend's availability."""
    pm = registry.pm
    # Building the registries first records their problems too (a duplicate name, a raising hook).
    models, datasets, backends = registry.models, registry.datasets, registry.backends
    owners = hook_owners(pm)
    plugins = [
        {"name": name, "source": pm.sources.get(name, ""), "version": plugin_version(pm, name),
         "hooks": owners.get(name, []), "error": None}
        for name, _ in pm.list_name_plugin()
    ]
    plugins += [
        {"name": p.plugin, "source": p.source, "version": "", "hooks": [], "error": p.error} for p in pm.problems
    ]
    return {
        "plugins": plugins,
        "backends": [
            {"name": b.name, "available": b.available, "reason": b.unavailable_reason, "device": b.device,
             "priority": b.priority, "plugin": b.plugin, "description": b.description}
            for b in backends.values()
        ],
        "datasets": [{"name": d.name, "description": d.description, "plugin": d.plugin} for d in datasets.values()],
        "models": sorted(models),
    }


def _natural(name: str) -> list[Any]:
    """Sort key that puts resnest50 before resnest101."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def doctor(zoo: Any) -> dict[str, Any]:
    """The environment fingerprint, what plugins know of the machine, and every backend's availability."""
    from .runner import environment

    info = plugins_info(zoo.registry)
    ready = [b for b in info["backends"] if b["available"]]
    auto = max(ready, key=lambda b: b["priority"])["name"] if ready else None
    problems = [p for p in info["plugins"] if p["error"]]
    from .ray_engine import status as ray_status

    engines = [{"name": "local", "available": True, "version": "", "reason": ""}, ray_status()]
    return {"env": environment(zoo), "backends": info["backends"], "auto_backend": auto, "engines": engines,
            "plugin_errors": problems}
