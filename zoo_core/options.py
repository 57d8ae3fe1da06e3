"""Options a plugin adds to the command line for its backend or engine, and the values a run got for them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import PluginError, UsageError

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class OptionSpec:
    """A command-line option of one backend (or one engine), registered through ``zoo_add_options``.

    ``zoo run`` and ``zoo compare`` show it under its backend's name in ``--help``, accept it only when the run uses
    that backend, and hand its value to the backend as ``options.backend_options[key]`` (an engine's as
    ``options.engine_options[key]``); ``--backend-opt KEY=VALUE`` sets a backend's option by key as well.
    """

    name: str  # the flag without its dashes, lower case with '-' between words: "precision-mode" is --precision-mode
    help: str
    backend: str = ""  # the backend it belongs to (one this plugin registers) ...
    engine: str = ""  # ... or the engine
    # Turns the text given into the value: str, int, float, bool (a flag that takes no value), or any function of
    # the text (a ValueError or a UsageError it raises is a usage error naming the option).
    type: Callable[[str], Any] = str
    multiple: bool = False  # repeatable: the value is a tuple of every one given, in order
    metavar: str | None = None
    command_line: bool = True  # False: no --NAME of its own; set with --backend-opt KEY=VALUE only
    plugin: str = ""  # filled in by the core: the plugin that registered it

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"option name {self.name!r} is not lower-case words joined by '-', e.g. 'precision-mode'")
        if bool(self.backend) == bool(self.engine):
            raise ValueError(f"option {self.name!r} names its backend= or its engine=, exactly one")
        if not callable(self.type):
            raise ValueError(f"option {self.name!r}: type= takes str, int, float, bool or a function of the text")
        if self.type is bool and self.multiple:
            raise ValueError(f"option {self.name!r}: a flag (type=bool) cannot be repeatable")

    @property
    def key(self) -> str:
        """Its key in ``backend_options``/``engine_options``: the name with ``_`` for ``-``."""
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        """``--NAME``."""
        return f"--{self.name}"

    @property
    def owner(self) -> str:
        """``"backend ascend"``, ``"engine ray"``: what it belongs to, in words."""
        return f"backend {self.backend}" if self.backend else f"engine {self.engine}"

    def convert(self, text: str, given_as: str) -> Any:
        """The value of ``text`` given as ``given_as`` (``--soc``, ``--backend-opt soc=...``), or a usage error."""
        if self.type is bool:
            if text.strip().lower() in _TRUE + _FALSE:
                return text.strip().lower() in _TRUE
            raise UsageError(f"{given_as}: {text!r} is not true or false", note=f"write e.g. {self.key}=true")
        try:
            return self.type(text)
        except UsageError:
            raise
        except (ValueError, TypeError) as exc:
            number = "a whole number" if self.type is int else "a number" if self.type is float else ""
            what = number or str(exc) or "a valid value"
            raise UsageError(f"{given_as}: {text!r} is not {what}" if self.type in (int, float)
                             else f"{given_as}: {text!r}: {what}",
                             note=f"`zoo run --help` describes {self.flag} ({self.owner})") from None
        except Exception as exc:  # the type function's own bug, not the user's text
            raise PluginError(f"plugin {self.plugin!r}: the type of option {self.flag} ({self.owner}) failed on "
                              f"{text!r}: {type(exc).__name__}: {exc}") from exc


def key_value(pair: str, flag: str, example: str) -> tuple[str, str]:
    """``"precision-mode=force_fp32"`` -> ``("precision_mode", "force_fp32")``: the key with ``_`` for ``-`` (and no
    leading dashes), the value after the first ``=``; a usage error naming ``flag`` when it is not KEY=VALUE."""
    key, sep, value = pair.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key:
        raise UsageError(f"{flag}: {pair!r} is not KEY=VALUE", note=f"write e.g. {flag} {example}")
    return key, value


class OptionValues(Mapping[str, Any]):
    """The values of a run's plugin options, by key: an immutable, hashable, picklable mapping (it travels to
    device processes and Ray actors with the run's options). A repeatable option's value is a tuple."""

    __slots__ = ("_pairs",)
    _pairs: tuple[tuple[str, Any], ...]

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        items = values.items() if isinstance(values, Mapping) else values
        pairs = {}
        for key, value in items:
            pairs[str(key)] = tuple(value) if isinstance(value, list) else value
        object.__setattr__(self, "_pairs", tuple(sorted(pairs.items())))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("OptionValues is immutable")

    def __getitem__(self, key: str) -> Any:
        for name, value in self._pairs:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._pairs) == dict(other.items())

    def __reduce__(self) -> tuple[Any, ...]:
        return (OptionValues, (self._pairs,))

    def __repr__(self) -> str:
        return f"OptionValues({dict(self._pairs)!r})"
