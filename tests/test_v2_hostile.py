"""A hostile pass over plugins v2, through the real command: plugins that register a backend without its stages or
answer a stage with the wrong thing, declarations with impossible values, images that do not fit 8 bits, a plugin
option's broken type function, an engine named like the core's. Each is one line (a plugin's bug: exit 1, naming
the plugin), never a traceback without the plugin's name and never a wrong number."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_inputs import one_error

FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")


def _hostile(tmp_path: Path, mode: str, **more: str) -> dict[str, str]:
    # A cache of its own: the compile's cache key cannot tell the modes of one plugin source apart.
    return {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile", "ZOO_HOSTILE": mode, "ZOO_CACHE_DIR": str(tmp_path / "cache"),
            **more}


@pytest.mark.parametrize("mode, hook", [("no-stages", "zoo_compile"), ("no-infer", "zoo_infer")])
def test_a_backend_whose_plugin_implements_no_stage_says_so_in_one_line(zoo_cli, tmp_path: Path, mode: str,
                                                                        hook: str) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "hostile-cpu", *FAST, "--out", str(tmp_path / "out"),
                     env=_hostile(tmp_path, mode))
    error, _ = one_error(result, 1)
    assert error == f"Error: the plugin 'zoo_hostile' registers backend 'hostile-cpu' but implements no {hook}"
    if hook == "zoo_compile":  # found before the export, not as "compiled nothing" after it
        assert "export" not in result.stderr


@pytest.mark.parametrize("mode, error", [
    ("compile-str", "the zoo_compile of plugin 'zoo_hostile' (backend 'hostile-cpu') returned a str, "
                    "not a CompiledModel"),
    # Another backend's compiled model was opened and timed by that backend's plugin, reported as hostile-cpu's.
    ("compile-other", "the zoo_compile of plugin 'zoo_hostile' (backend 'hostile-cpu') returned a CompiledModel "
                      "of backend 'onnxruntime' for backend 'hostile-cpu'"),
    ("compile-bs1", "the zoo_compile of plugin 'zoo_hostile' (backend 'hostile-cpu') returned a CompiledModel of "
                    "batch size 1 for batch size 8"),
    ("compile-inputs1", "the zoo_compile of plugin 'zoo_hostile' (backend 'hostile-cpu') returned inputs of "
                        "shapes [(1, 3, 64, 64)] for batch size 8"),
    ("infer-str", "the zoo_infer of plugin 'zoo_hostile' (backend 'hostile-cpu') returned a str, not a "
                  "zoo_core.runtime.Runner"),
])
@pytest.mark.parametrize("trace", ["", "1"])
def test_a_stage_answering_the_wrong_thing_is_the_plugins_bug_in_one_line(zoo_cli, tmp_path: Path, mode: str,
                                                                          error: str, trace: str) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "hostile-cpu", *FAST, "--out", str(tmp_path / "out"),
                     env=_hostile(tmp_path, mode, ZOO_TRACE_PLUGINS=trace))
    assert one_error(result, 1)[0] == f"Error: {error}"
    assert not (tmp_path / "out" / "results.json").exists()
    if trace:  # the owner's stage call is traced like any hook call
        assert "zoo-trace: zoo_compile(" in result.stderr


def test_a_backend_registered_twice_by_its_plugin_runs_once_and_is_listed(zoo_cli, tmp_path: Path) -> None:
    env = _hostile(tmp_path, "twice")
    data = zoo_cli("plugins", "--json", env=env).json()
    assert [b["plugin"] for b in data["backends"] if b["name"] == "hostile-cpu"] == ["zoo_hostile"]
    assert ("duplicate backend name 'hostile-cpu': already registered by plugin 'zoo_hostile'; this one is ignored"
            in [p["error"] for p in data["plugins"]])


def test_an_unknown_name_says_that_a_plugin_failed_to_register(zoo_cli, tmp_path: Path) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "hostile-cpu", *FAST,
                     env=_hostile(tmp_path, "register-raises"))
    error, note = one_error(result, 2)
    assert error == "Error: unknown backend 'hostile-cpu'"
    assert note.endswith("; plugin 'zoo_hostile' failed (`zoo plugins` says why)")


@pytest.mark.parametrize("case, problem", [
    ("nan-mean", "DeclarationError: model 'hostile-nan-mean': mean=(nan, 0.5, 0.5) must be 3 finite numbers"),
    ("zero-std", "DeclarationError: model 'hostile-zero-std': std=(0.0, 0.2, 0.2) has a zero"),
])
def test_a_models_nan_mean_or_zero_std_is_refused_when_declared(zoo_cli, tmp_path: Path, case: str,
                                                                 problem: str) -> None:
    """The declarations leave mean/std to the model's: before, zoo preprocess wrote NaN/infinite .bin files with
    exit 0, and zoo run scored nothing only after the export and the timing."""
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "data", count=2)
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile_model", "ZOO_HOSTILE_MODEL": case}
    errors = [p["error"] for p in zoo_cli("plugins", "--json", env=env).json()["plugins"] if p["error"]]
    assert any(problem in e for e in errors), errors
    result = zoo_cli("preprocess", f"hostile-{case}", "--data", str(tmp_path / "data"), "-o", str(tmp_path / "bins"),
                     env=env)
    assert one_error(result, 2)[0] == f"Error: unknown model 'hostile-{case}'"
    assert not list((tmp_path / "bins").glob("*.bin"))
    assert zoo_cli("list", env=env).code == 0


def test_a_declaration_that_cannot_run_names_the_declaration_not_a_hook(zoo_cli, tmp_path: Path) -> None:
    from zoo_core.testing import write_image_dataset

    write_image_dataset(tmp_path / "data", count=1)
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile_model", "ZOO_HOSTILE_MODEL": "fraction-tiny"}
    result = zoo_cli("preprocess", "hostile-fraction-tiny", "--data", str(tmp_path / "data"), "-o",
                     str(tmp_path / "bins"), "--workers", "1", env=env)
    assert result.code == 1, result
    assert ("the declared preprocessing 'odd' of model 'hostile-fraction-tiny' (plugin 'zoo_hostile_model') failed "
            "on image") in result.stderr
    assert "failed in zoo_preprocess" not in result.stderr  # the plugin has no zoo_preprocess


def test_a_16_bit_image_is_a_bad_image_not_clipped_to_white(zoo_cli, tmp_path: Path) -> None:
    """convert('RGB') clips 16-bit pixels to 255: the image became another one, preprocessed without a word."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    gray = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(gray.astype(np.uint16) * 257).save(data / "deep.png")
    Image.fromarray(gray).save(data / "gray.png")
    Image.fromarray(gray.astype(np.float32)).save(data / "float.tiff")  # 0..254: fits 8 bits, read as it is
    result = zoo_cli("preprocess", "resnest-tiny", "--data", str(data), "-o", str(tmp_path / "bins"), "--workers", "1")
    error, _ = one_error(result, 3)
    assert error.startswith("Error: cannot read image ") and "deep.png" in error
    assert "(mode I;16) range 0..65278: zoo reads images of 8 bits a channel" in error
    skipped = zoo_cli("preprocess", "resnest-tiny", "--data", str(data), "-o", str(tmp_path / "skip"), "--workers",
                      "1", "--skip-bad")
    assert skipped.code == 0, skipped
    assert sorted(p.name for p in (tmp_path / "skip").glob("*.bin")) == ["float.bin", "gray.bin"]
    assert np.array_equal(np.fromfile(tmp_path / "skip" / "float.bin", np.float32),
                          np.fromfile(tmp_path / "skip" / "gray.bin", np.float32))


@pytest.mark.parametrize("how", [("--knob", "3"), ("--backend-opt", "knob=3")])
def test_an_option_type_function_that_raises_names_its_plugin(zoo_cli, tmp_path: Path, how: tuple[str, str]) -> None:
    result = zoo_cli("run", "resnest-tiny", "--backend", "hostile-cpu", *FAST, "--dry-run", *how,
                     env=_hostile(tmp_path, ""))
    assert result.code == 1, result
    assert ("plugin 'zoo_hostile': the type of option --knob (backend hostile-cpu) failed on '3': KeyError: '3'"
            in result.stderr.splitlines()[-1])


def test_compare_with_a_key_no_compared_backend_takes_reads_right(zoo_cli) -> None:
    result = zoo_cli("compare", "resnest-tiny", "--weights", "random", "--backends", "onnxruntime,torch",
                     "--backend-opt", "soc=x")
    error, _ = one_error(result, 2)
    assert error == "Error: --backend-opt soc=x: none of backends onnxruntime, torch has an option 'soc'"


def test_an_engine_named_like_the_cores_is_listed_and_the_plugins_engines_are_in_doctor(zoo_cli) -> None:
    env = {"ZOO_PLUGINS": "zoo_tiny,zoo_hostile_engine"}
    problem = "engine 'local': already registered by plugin 'builtin'; this one is ignored"
    assert problem in [p["error"] for p in zoo_cli("plugins", "--json", env=env).json()["plugins"]]
    doctor = zoo_cli("doctor", "--json", env=env).json()
    assert [e["name"] for e in doctor["engines"]][-1] == "extra"  # `--engine`'s note sends the user here
    assert problem in [p["error"] for p in doctor["plugin_errors"]]
