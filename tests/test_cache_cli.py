"""zoo cache path | ls | clean."""

from __future__ import annotations

import os
import time
from pathlib import Path


def test_cache_path_ls_and_clean(zoo_cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"ZOO_CACHE_DIR": str(cache)}
    assert zoo_cli("cache", "path", env=env).stdout.strip() == str(cache)
    assert zoo_cli("export", "resnest-tiny", "--bs", "2", "-o", str(tmp_path / "m.onnx"), "--weights", "random",
                   env=env).code == 0
    rows = zoo_cli("cache", "ls", "--json", env=env).json()
    assert {r["stage"] for r in rows} == {"export", "simplify"} and all(r["complete"] for r in rows)

    half = cache / "compile" / ".0123456789abcdef01234567.tmp-999-abcd1234"  # what a killed build leaves behind
    half.mkdir(parents=True)
    (half / "model.om").write_text("partial")
    rows = zoo_cli("cache", "ls", "--json", env=env).json()
    assert [r["complete"] for r in rows if r["stage"] == "compile"] == [False]

    assert zoo_cli("cache", "clean", "--older-than", "1d", "--json", env=env).json()["removed"] == 1  # the leftover
    assert not half.exists() and len(zoo_cli("cache", "ls", "--json", env=env).json()) == 2
    old = time.time() - 3 * 86400
    for row in zoo_cli("cache", "ls", "--json", env=env).json():
        os.utime(row["path"], (old, old))
    assert zoo_cli("cache", "clean", "--older-than", "2d", "--json", env=env).json()["removed"] == 2
    assert zoo_cli("cache", "ls", "--json", env=env).json() == []


def test_a_bad_age(zoo_cli) -> None:
    result = zoo_cli("cache", "clean", "--older-than", "soon")
    assert result.code == 2 and "is not an age" in result.stderr and "Traceback" not in result.stderr
