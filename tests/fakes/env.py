"""``fake_ascend_env``: an environment in which the fake atc, npu-smi and ais_bench stand in for the real ones."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

FAKES = Path(__file__).resolve().parent
BIN = FAKES / "bin"
PYTHON = FAKES / "python"
TOOLKIT = FAKES / "toolkit"  # plays /usr/local/Ascend/ascend-toolkit/latest: version files and set_env.sh
GENERATIONS = ("older", "newer")  # ais_bench's API generations: Ascend/tools (to mid-2023), ait/msit (late 2023 on)


def _prepend(value: str | None, *paths: Path | str) -> str:
    return os.pathsep.join([*map(str, paths), *([value] if value else [])])


def fake_ascend_env(base_env: Mapping[str, str], *, chip: str = "310P3", devices: int = 1,
                    generation: str = "newer") -> dict[str, str]:
    """A copy of ``base_env`` as ``source set_env.sh`` would leave it on a host with ``devices`` NPUs of ``chip``
    and the ``generation`` of ais_bench installed (``FAKE_AIS_BENCH_GENERATION``: ``older`` or ``newer``).

    The fakes' ``bin`` goes first on PATH, then this interpreter's folder, so that their ``#!/usr/bin/env
    python3`` finds a Python with onnx and onnxruntime; ``python`` goes first on PYTHONPATH (``ais_bench``).
    """
    env = dict(base_env)
    env["PATH"] = _prepend(env.get("PATH"), BIN, Path(sys.executable).parent)
    env["PYTHONPATH"] = _prepend(env.get("PYTHONPATH"), PYTHON)
    env["ASCEND_TOOLKIT_HOME"] = str(TOOLKIT)
    env["ASCEND_HOME_PATH"] = str(TOOLKIT)
    env["FAKE_NPU_CHIP"] = chip
    env["FAKE_NPU_COUNT"] = str(devices)
    if generation not in GENERATIONS:
        raise ValueError(f"generation={generation!r}: expected one of {', '.join(GENERATIONS)}")
    env["FAKE_AIS_BENCH_GENERATION"] = generation
    return env
