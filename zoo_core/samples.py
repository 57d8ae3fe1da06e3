"""Model inputs from the preprocessing hook: a bad image told apart from a plugin's bug, and a sample checked
against what the model takes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_BUG, PluginError, ZooError
from .plugins import _one_line

if TYPE_CHECKING:
    import numpy as np

    from .specs import ModelSpec

HOOK = "zoo_preprocess"


def preprocess_one(pm: Any, model: ModelSpec, preset: str, path: Path) -> tuple[Any, str | None]:
    """``(array, None)``, or ``(None, reason)`` for an image file that does not decode: the run decides.

    A plugin that raises on a file that decodes raises :class:`PluginError` (its bug, not a bad image); no plugin
    returning a sample is a :class:`ZooError`.
    """
    try:
        array = pm.hook.zoo_preprocess(model=model, preset=preset, image_path=path)
    except Exception as exc:
        if undecodable(path) is None:
            raise PluginError(f"plugin {raising_plugin(pm, exc)!r} failed in {HOOK} on image {path}, which "
                              f"decodes: {_one_line(exc)}") from exc
        return None, _one_line(exc)  # a corrupt or unreadable image
    if array is None:
        raise no_preprocessing(model, preset)
    return array, None


def undecodable(path: Path) -> str | None:
    """Why Pillow cannot decode the file at ``path`` fully, or ``None`` when it can."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001  # any failure to decode makes it a bad image
        return _one_line(exc)
    return None


def raising_plugin(pm: Any, exc: BaseException) -> str:
    """The plugin whose ``zoo_preprocess`` implementation ``exc`` was raised in, from its traceback."""
    owners: dict[Any, str] = {}
    for impl in getattr(pm.hook, HOOK).get_hookimpls():
        code = getattr(inspect.unwrap(impl.function), "__code__", None)
        if code is not None:
            owners.setdefault(code, impl.plugin_name)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in owners:
            return owners[tb.tb_frame.f_code]
        tb = tb.tb_next
    return "?"


def answering_plugin(pm: Any, model: ModelSpec, preset: str, path: Path) -> str:
    """The plugin whose ``zoo_preprocess`` answers for ``model`` (the first non-None, in pluggy's call order)."""
    arguments = {"model": model, "preset": preset, "image_path": path}
    if pm is None:
        return "?"
    for impl in reversed(getattr(pm.hook, HOOK).get_hookimpls()):
        if impl.wrapper or impl.hookwrapper:
            continue
        if impl.function(**{k: arguments[k] for k in impl.argnames}) is not None:
            return impl.plugin_name
    return "?"


def expected_sample(model: ModelSpec, preset: str) -> tuple[tuple[int, ...], str]:
    """The shape (no batch axis) and dtype a sample of ``preset`` must have: the backend input override that
    names this preset (AIPP's uint8 images, say), else the model's declared input."""
    for override in model.backend_inputs.values():
        if override.get("preset") == preset:
            return tuple(override.get("shape", model.input_shape)), str(override.get("dtype", model.input_dtype))
    return tuple(model.input_shape), model.input_dtype


def fits(array: Any, expected: tuple[tuple[int, ...], str]) -> bool:
    import numpy as np

    return isinstance(array, np.ndarray) and array.shape == tuple(expected[0]) and array.dtype == np.dtype(expected[1])


def wrong_sample(pm: Any, model: ModelSpec, preset: str, path: Path, array: Any,
                 expected: tuple[tuple[int, ...], str]) -> ZooError:
    """The one-line error for a sample that is not what the model takes (exit 1: the plugin's bug)."""
    actual = (f"{array.dtype}{list(array.shape)}" if hasattr(array, "shape") and hasattr(array, "dtype")
              else type(array).__name__)
    return ZooError(
        f"plugin {answering_plugin(pm, model, preset, path)!r} returned a {actual} sample from {HOOK} for model "
        f"{model.name!r}, preset {preset!r} (image {path.name}); the model takes {expected[1]}{list(expected[0])}",
        note="a bug in that plugin's preprocessing (or in the model's declared input): report it to its author",
        exit_code=EXIT_BUG)


def no_preprocessing(model: ModelSpec, preset: str) -> ZooError:
    return ZooError(f"no plugin preprocesses model {model.name!r} (family {model.family!r}) with preset {preset!r}",
                    note=f"the plugin {model.plugin!r} registered it but no {HOOK} returns a sample for it; "
                    "install the plugin that preprocesses it")
