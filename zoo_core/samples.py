"""Model inputs from the preprocessing hook: a bad image told apart from a plugin's bug, and a sample checked
against what the model takes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_BUG, PluginError, ZooError, first_line

if TYPE_CHECKING:

    from .specs import ModelSpec

HOOK = "zoo_preprocess"


def preprocess_one(pm: Any, model: ModelSpec, preset: str, path: Path) -> tuple[Any, str | None]:
    """``(array, None)``, or ``(None, reason)`` for an image file that does not decode: the run decides.

    The model's plugin answers when it implements ``zoo_preprocess`` and returns a sample; else the core applies
    the preset's declaration. Either raising on a file that decodes raises :class:`PluginError` (the plugin's
    bug, or its declaration's, not a bad image).
    """
    from .plugins import call_owner

    from .preprocessing import apply, declaration, execute

    declared = declaration(model, preset)
    try:
        array = call_owner(pm, HOOK, model.plugin, model=model, preset=preset, image_path=path, declaration=declared)
        if array is None and declared is not None:
            array = execute(declared, model, path)
    except Exception as exc:
        if undecodable(path) is None:
            from .plugins import implements

            what = (f"plugin {model.plugin!r} failed in {HOOK}" if implements(pm, HOOK, model.plugin) else
                    f"the declared preprocessing {preset!r} of model {model.name!r} (plugin {model.plugin!r}) failed")
            raise PluginError(f"{what} on image {path}, which decodes: {first_line(exc)}") from exc
        return None, first_line(exc)  # a corrupt or unreadable image
    if array is None:  # neither the plugin nor a declaration prepares this preset: apply says so, in one line
        array = apply(model, preset, path)
    return array, None


def undecodable(path: Path) -> str | None:
    """Why Pillow cannot decode the file at ``path`` fully, or ``None`` when it can."""
    from PIL import Image

    from .preprocessing import beyond_8_bits

    try:
        with Image.open(path) as image:
            image.load()
            deep = beyond_8_bits(image)
    except Exception as exc:  # noqa: BLE001  # any failure to decode makes it a bad image
        return first_line(exc)
    return deep or None


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
    from .plugins import implements

    source = (f"plugin {model.plugin!r} returned a {actual} sample from {HOOK}" if implements(pm, HOOK, model.plugin)
              else f"the declared preprocessing gives a {actual} sample (plugin {model.plugin!r})")
    return ZooError(
        f"{source} for model {model.name!r}, preset {preset!r} (image {path.name}); "
        f"the model takes {expected[1]}{list(expected[0])}",
        note="a bug in that plugin's preprocessing (or in the model's declared input): report it to its author",
        exit_code=EXIT_BUG)
