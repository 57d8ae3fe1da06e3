"""A test plugin whose words hold square brackets and run long, as a user's might: a model whose description says
``[bold]`` and ``zoo[ray]``, with a long weights URL and a declared preset; a backend and an engine that are
unavailable with an install hint in brackets; an environment fact with brackets. Every command's human output must
show them as written (rich would read them as markup and drop them) and whole (never cut with ``…``)."""

from __future__ import annotations

from dataclasses import replace

from zoo_core import hookimpl
from zoo_core.api import CenterCrop, Preprocessing, Resize, WeightsSpec
from zoo_core.engines import BUILTIN, EngineSpec
from zoo_core.specs import BackendSpec
from zoo_tiny import TINY

HINT = "pip install 'zoo[ray]' [bold]now[/bold]"
URL = ("https://example.invalid/releases/download/a-rather-long-release-name-for-a-test/"
       "brackets-tiny-weights-with-a-long-file-name-00000000.pth")
PRESET = Preprocessing("short-side", steps=(Resize("short_side"), CenterCrop()),
                       description="short side to 64 bilinear, centre crop 64 [not markup]")

BRACKETS = replace(TINY, name="brackets-tiny", description="[bold]not bold[/bold]: needs pip install 'zoo[ray]'",
                   weights=WeightsSpec(url=URL, sha256_prefix="00000000"), presets=("modelzoo", PRESET))


@hookimpl
def zoo_register_models(register) -> None:
    register(BRACKETS)


@hookimpl
def zoo_register_backends(register) -> None:
    register(BackendSpec(name="brackets-npu", description="a backend that is never here", available=False,
                         unavailable_reason=f"its SDK is missing: {HINT}", priority=-100, device="npu[0]"))


@hookimpl
def zoo_register_engines(register) -> None:
    register(EngineSpec("brackets-engine", BUILTIN[0].open, "an engine that is never here",
                        status=lambda: {"name": "brackets-engine", "available": False, "version": "",
                                        "reason": f"not installed: {HINT}"}))


@hookimpl
def zoo_environment() -> dict[str, str]:
    return {"brackets_fact": "[bold]toolkit[/bold] from zoo[ray]"}
