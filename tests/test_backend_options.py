"""Backends own their options (zoo_add_options): a plugin's flags reach its backend alone, --backend-opt reaches any
backend by key, the Ascend backend's --soc/--precision-mode/--atc-arg are its own, and the device a report names
comes from the backend's plugin (zoo_device_name)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import zoo_optioned
import zoo_tiny
from test_bad_inputs import one_error
from zoo_core import reporting as report
from zoo_core.options import OptionSpec, OptionValues
from zoo_core.runner import Zoo, prepare
from zoo_core.specs import RunOptions, resolve_options

PLUGINS = {"ZOO_PLUGINS": "zoo_tiny,zoo_optioned"}
FAST = ("--weights", "random", "--warmup", "0", "--iterations", "1")


def logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -------------------------------------------------------------------------
# A plugin backend's own options
# -------------------------------------------------------------------------


def test_a_plugin_backend_adds_options_and_reads_them(zoo_cli, tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--backend", "opt-cpu", *FAST, "--opt-level", "3",
                     "--tag", "a", "--tag", "b", "--fast", "--backend-opt", "secret-knob=x", "--backend-opt", "tag=c",
                     "--json", "--out", str(tmp_path / "out"), env={**PLUGINS, "ZOO_OPTIONED_LOG": str(log)})
    assert result.code == 0, result
    seen = {"opt_level": 3, "tag": ["a", "b", "c"], "fast": True, "secret_knob": "x"}  # converted by each type
    stages = [entry for entry in logged(log) if entry["stage"] in ("compile", "infer")]
    assert stages and all(entry["options"] == seen for entry in stages), stages
    assert {entry["stage"] for entry in stages} == {"compile", "infer"}


def test_options_are_loaded_for_run_not_for_list_or_the_top_level_help(zoo_cli, tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    env = {**PLUGINS, "ZOO_OPTIONED_LOG": str(log)}
    for args in (("list",), ("--help",), ("info", "resnest-tiny")):
        assert zoo_cli(*args, env=env).code == 0
    assert logged(log) == []  # zoo_add_options never ran
    result = zoo_cli("run", "--help", env=env)
    assert result.code == 0, result
    assert [entry["stage"] for entry in logged(log)] == ["add_options"]  # once, for the parse and the help
    assert "Options of backend opt-cpu:" in result.stdout and "--opt-level N" in result.stdout
    assert "--secret-knob" not in result.stdout  # declared without a flag of its own
    assert "Options of engine ray:" in result.stdout and "--ray-knob" in result.stdout


def test_zoo_run_help_lists_the_ascend_options_under_the_backend_name(zoo_cli) -> None:
    result = zoo_cli("run", "--help")
    assert result.code == 0, result
    core, _, ascend = result.stdout.partition("Options of backend ascend:")
    for flag in ("--soc", "--precision-mode", "--atc-arg KEY=VALUE"):
        assert flag in ascend and flag not in core, flag
    assert "--backend-opt KEY=VALUE" in core
    assert "Options of backend ascend:" in zoo_cli("compare", "--help").stdout


def test_broken_options_are_the_plugins_problems_and_the_rest_works(zoo_cli) -> None:
    result = zoo_cli("plugins", "--json", env=PLUGINS)
    assert result.code == 0, result
    text = json.dumps(result.json())
    assert "option --not-mine of backend onnxruntime: plugin 'zoo_optioned' registers no backend 'onnxruntime'" in text
    assert "option --device of backend opt-cpu: zoo's own option takes that flag" in text
    help_text = zoo_cli("run", "--help", env=PLUGINS).stdout
    assert "--not-mine" not in help_text and "Clashes" not in help_text and "--opt-level" in help_text


# -------------------------------------------------------------------------
# Usage errors, in one line
# -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "note"),
    [
        pytest.param(("--backend", "onnxruntime", "--soc", "Ascend310P3"),
                     "Error: --soc is an option of backend ascend, and this run uses backend onnxruntime",
                     "Note: leave --soc out, or add --backend ascend", id="ascend-option-on-onnxruntime"),
        pytest.param(("--backend", "torch", "--atc-arg", "log=info"),
                     "Error: --atc-arg is an option of backend ascend, and this run uses backend torch",
                     "Note: leave --atc-arg out, or add --backend ascend", id="atc-arg-on-torch"),
        pytest.param(("--backend", "ascend", "--opt-level", "1"),
                     "Error: --opt-level is an option of backend opt-cpu, and this run uses backend ascend",
                     "Note: leave --opt-level out, or add --backend opt-cpu", id="plugin-option-on-ascend"),
        pytest.param(("--backend", "opt-cpu", "--ray-knob", "1"),
                     "Error: --ray-knob is an option of engine ray, and this run uses engine local",
                     "Note: leave --ray-knob out, or add --engine ray", id="engine-option-on-local"),
        pytest.param(("--backend", "onnxruntime", "--backend-opt", "soc=Ascend310P3"),
                     "Error: --backend-opt soc=Ascend310P3: backend onnxruntime has no option 'soc'",
                     "Note: backend onnxruntime takes no options", id="key-of-another-backend"),
        pytest.param(("--backend", "opt-cpu", "--backend-opt", "nope=1"),
                     "Error: --backend-opt nope=1: backend opt-cpu has no option 'nope'",
                     "Note: backend opt-cpu takes fast, opt_level, secret_knob, tag (`zoo run --help` describes them)",
                     id="unknown-key-lists-the-known"),
        pytest.param(("--backend", "opt-cpu", "--backend-opt", "nope"),
                     "Error: --backend-opt: 'nope' is not KEY=VALUE",
                     "Note: write e.g. --backend-opt KEY=VALUE; `zoo run --help` lists each backend's options",
                     id="backend-opt-not-a-pair"),
        pytest.param(("--backend", "opt-cpu", "--opt-level", "high"),
                     "Error: --opt-level: 'high' is not a whole number",
                     "Note: `zoo run --help` describes --opt-level (backend opt-cpu)", id="not-an-int"),
        pytest.param(("--backend", "opt-cpu", "--backend-opt", "fast=maybe"),
                     "Error: --backend-opt fast=maybe: 'maybe' is not true or false", "Note: write e.g. fast=true",
                     id="not-a-bool"),
        pytest.param(("--backend", "opt-cpu", "--opt-level", "1", "--backend-opt", "opt-level=2"),
                     "Error: --opt-level is given twice: --opt-level 1 and --backend-opt opt-level=2",
                     "Note: give it once", id="given-twice"),
        pytest.param(("--backend", "ascend", "--atc-arg", "log"), "Error: --atc-arg: 'log' is not KEY=VALUE",
                     "Note: write e.g. --atc-arg op_select_implmode=high_precision", id="atc-arg-not-a-pair"),
    ],
)
def test_misplaced_and_malformed_options_are_usage_errors(zoo_cli, tmp_path, args, error, note) -> None:
    result = zoo_cli("run", "resnest-tiny", *FAST, "--out", str(tmp_path / "out"), *args, env=PLUGINS)
    assert one_error(result, 2) == (error, note)
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_compare_takes_the_options_of_its_backends_only(zoo_cli, tmp_path) -> None:
    result = zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--weights", "random",
                     "--precision-mode", "force_fp32", env=PLUGINS)
    assert one_error(result, 2) == (
        "Error: --precision-mode is an option of backend ascend, and this run uses backends onnxruntime, torch",
        "Note: leave --precision-mode out, or add ascend to --backends")
    result = zoo_cli("compare", "resnest-tiny", "--backends", "onnxruntime,opt-cpu", "--bs", "2", "--weights",
                     "random", "--opt-level", "2", "--json", env={**PLUGINS, "ZOO_OPTIONED_LOG": str(tmp_path / "l")})
    assert result.code == 0, result
    assert {"stage": "compile", "options": {"opt_level": 2}} in logged(tmp_path / "l")


# -------------------------------------------------------------------------
# The Ascend options, through their flags or --backend-opt
# -------------------------------------------------------------------------


def test_backend_opt_reaches_the_ascend_backend_like_its_flags(zoo_cli, tmp_path) -> None:
    def plan(*args: str) -> list[str]:
        result = zoo_cli("run", "resnest50", "--backend", "ascend", "--dry-run", "--json", *args, cwd=tmp_path)
        assert result.code == 0, result
        return result.json()["commands"]

    by_flags = plan("--soc", "Ascend910B", "--precision-mode", "force_fp32", "--atc-arg", "log=info")
    by_key = plan("--backend-opt", "soc=Ascend910B", "--backend-opt", "precision_mode=force_fp32",
                  "--backend-opt", "atc-arg=log=info")
    assert by_flags == by_key
    atc = next(line for line in by_flags if line.startswith("atc "))
    assert "--soc_version=Ascend910B" in atc and "--precision_mode=force_fp32" in atc and "--log=info" in atc


# -------------------------------------------------------------------------
# The values: immutable, picklable, and part of the compile cache key
# -------------------------------------------------------------------------


def test_backend_options_are_an_immutable_picklable_mapping() -> None:
    options = RunOptions(model="m", backend_options={"soc": "Ascend310P3", "atc_arg": ["a=1", "b=2"]})
    assert isinstance(options.backend_options, OptionValues)
    assert options.backend_options == {"soc": "Ascend310P3", "atc_arg": ("a=1", "b=2")}
    assert pickle.loads(pickle.dumps(options)) == options and hash(options.backend_options)
    with pytest.raises((AttributeError, TypeError)):
        options.backend_options["soc"] = "other"  # type: ignore[index]
    assert RunOptions(model="m").backend_options == {} and RunOptions(model="m").engine_options == {}


def test_an_option_spec_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        OptionSpec("x", "h")
    with pytest.raises(ValueError, match="lower-case words"):
        OptionSpec("--Soc", "h", backend="b")
    with pytest.raises(ValueError, match="cannot be repeatable"):
        OptionSpec("f", "h", backend="b", type=bool, multiple=True)


def _compile_key(zoo: Zoo, **backend_options: object) -> str:
    options = resolve_options(zoo.registry.model("resnest-tiny"), {
        "weights": "random", "backend": "opt-cpu", "batch_sizes": (2,), "backend_options": backend_options})
    return next(a.key for a in prepare(zoo, options).artifacts if a.stage == "compile")


def test_every_option_value_and_a_file_it_names_enter_the_compile_key(tmp_path) -> None:
    zoo = Zoo.create(autoload=False, plugins=[zoo_tiny, zoo_optioned], cache_dir=tmp_path / "cache")
    config = tmp_path / "aipp.cfg"
    config.write_text("one\n")
    first = _compile_key(zoo, opt_level=1, tag=(f"conf={config}",))
    assert _compile_key(zoo, opt_level=1, tag=(f"conf={config}",)) == first  # the same options: the cached compile
    assert _compile_key(zoo, opt_level=2, tag=(f"conf={config}",)) != first
    assert _compile_key(zoo, opt_level=1, tag=(f"conf={config}", "x=1")) != first
    config.write_text("two\n")  # the file a value names changed: compiled anew
    assert _compile_key(zoo, opt_level=1, tag=(f"conf={config}",)) != first


# -------------------------------------------------------------------------
# The device a report names: the backend's plugin's word
# -------------------------------------------------------------------------


def test_the_results_carry_the_device_name_the_backend_gives(zoo_cli, tmp_path) -> None:
    out = tmp_path / "out"
    result = zoo_cli("run", "resnest-tiny", "--bs", "2", "--backend", "opt-cpu", *FAST, "--json", "--out", str(out),
                     env=PLUGINS)
    assert result.code == 0, result
    data = result.json()
    assert data["device_name"] == f"{zoo_optioned.DEVICE_NAME} ({data['env']['cores']} cores)"
    assert f"| {data['device_name']} | 2 |" in (out / "report.md").read_text(encoding="utf-8")
    assert report.validation_errors(data) == []


def _old_results(backend: str, **env: object) -> dict:
    return {"schema": 1, "model": "m", "backend": backend, "device": "npu", "weights": "random",
            "env": {"cpu": "Some CPU", **env},
            "results": [{"batch_size": 8, "throughput": 100.0, "latency_ms": dict.fromkeys(report.LATENCY_KEYS, 80.0),
                         "top1": None, "top5": None, "images": None}]}


def test_an_old_results_file_still_reports_the_ascend_chip(tmp_path) -> None:
    old = _old_results("ascend", ascend={"chip": "310P3"})  # made before device_name: only env.ascend.chip
    assert "device_name" not in old and report.chip(old) == "Ascend310P3"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old))
    text = report.markdown(report.load_results(path), chart=False)
    assert "| Ascend310P3 | 8 |" in text
    assert report.chip({**old, "device_name": "Ascend910B"}) == "Ascend910B"  # a new file's own word wins


def test_a_cpu_backend_reports_the_cpu_even_beside_an_npu() -> None:
    # The chip belongs to the backend that ran: an onnxruntime run on an Ascend host measured the CPU.
    assert report.chip(_old_results("onnxruntime", ascend={"chip": "310P3"})) == "Some CPU"
    assert report.chip(_old_results("gone-backend")) == "Some CPU"  # a backend not installed here
