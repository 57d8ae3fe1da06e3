"""Plain data for the listing commands (``zoo list``, ``zoo info``, ``zoo plugins``); the CLI only renders it."""

from __future__ import annotations

from typing import Any

from .files import natural_key
from .plugins import Registry, hook_owners, plugin_version


def list_models(registry: Registry) -> list[dict[str, Any]]:
    """One row per registered model: name, family, input shape, its declared weights (``weights_kind``: ``"url"``,
    ``"package"``, ``"loader"`` or ``None``) and whether they are on this machine (``weights_cached``: ``None``
    for a loader, known only once it runs). Neither torch nor a model's own modules are imported."""
    from .weights import weights_present

    rows = []
    for spec in sorted(registry.models.values(), key=lambda s: (s.family, natural_key(s.name))):
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "input_shape": list(spec.input_shape),
                "weights_known": spec.weights is not None,
                "weights_kind": spec.weights.kind if spec.weights is not None else None,
                "weights_cached": weights_present(spec.weights) if spec.weights is not None else False,
                "plugin": spec.plugin,
            }
        )
    return rows


def model_info(registry: Registry, name: str) -> dict[str, Any]:
    """A model's full configuration; its weights also say their ``kind`` and whether they are ``present``."""
    from .weights import weights_present

    spec = registry.model(name)
    info = spec.to_dict()
    if spec.weights is not None:
        info["weights"] = {"kind": spec.weights.kind, "present": weights_present(spec.weights), **info["weights"]}
    return info


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


def doctor(zoo: Any) -> dict[str, Any]:
    """The environment fingerprint, what plugins know of the machine, and every backend's availability."""
    from .engines import statuses
    from .runner import environment

    engines = statuses(zoo)  # the plugins' engines too (their problems are listed below), as --engine's note says
    info = plugins_info(zoo.registry)
    ready = [b for b in info["backends"] if b["available"]]
    auto = max(ready, key=lambda b: b["priority"])["name"] if ready else None
    problems = [p for p in info["plugins"] if p["error"]]
    return {"env": environment(zoo), "backends": info["backends"], "auto_backend": auto, "engines": engines,
            "plugin_errors": problems}
