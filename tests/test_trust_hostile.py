"""Values that pass a plain ``<``/``>`` check but would yield a wrong or unprintable number (NaN and infinity
fail every comparison), and options that were silently ignored: each is one line and a usage error now.
Found trying the finished trust work as a hostile user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_bad_inputs import one_error
from zoo_core.errors import EXIT_BUG, EXIT_USAGE
from zoo_core.testing import write_image_dataset

FAST = ("--warmup", "0", "--iterations", "1")
RUN = ("run", "resnest-tiny", "--bs", "2", "--weights", "random")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param((*RUN, "--max-seconds", "nan"), "Error: --max-seconds must be positive and --agree between 0 and 1",
                     id="max-seconds-nan"),
        pytest.param((*RUN, "--max-seconds", "inf"), "Error: --max-seconds must be positive and --agree between 0 and 1",
                     id="max-seconds-inf"),
        pytest.param((*RUN, *FAST, "--shard-images", "0"), "Error: --shard-images: 0 must be at least 1",
                     id="shard-images-0"),
        pytest.param((*RUN, *FAST, "--shard-images", "-5"), "Error: --shard-images: -5 must be at least 1",
                     id="shard-images-negative"),
        pytest.param((*RUN, *FAST, "--limit", "0"), "Error: --limit 0 must be at least 1", id="limit-0-without-data"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--atol", "nan"), "Error: --atol and --rtol must be finite and not negative", id="atol-nan"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--atol", "inf"), "Error: --atol and --rtol must be finite and not negative", id="atol-inf"),
        pytest.param(("compare", "resnest-tiny", "--backends", "onnxruntime,torch", "--bs", "2", "--weights", "random",
                      "--rtol", "nan"), "Error: --atol and --rtol must be finite and not negative", id="rtol-nan"),
        pytest.param((*RUN, "--device", "0,1", "--dry-run"),
                     "Error: --device 0,1: backend 'onnxruntime' runs on the CPU", id="dry-run-devices-on-cpu"),
        pytest.param(("report", "a", "b", "--unstable", "count"), "Error: --unstable only applies with --fail-below",
                     id="unstable-without-fail-below"),
        pytest.param(("report", "a", "b", "--fail-below", "nan"), "Error: --fail-below: nan is not a ratio above 0",
                     id="fail-below-nan"),
        pytest.param(("report", "a", "b", "--fail-below", "0"), "Error: --fail-below: 0 is not a ratio above 0",
                     id="fail-below-0"),
    ],
)
def test_values_no_comparison_can_judge_are_usage_errors(zoo_cli, tmp_path: Path, args: tuple[str, ...],
                                                          error: str) -> None:
    got, _ = one_error(zoo_cli(*args, "--out" if args[0] == "run" and "--dry-run" not in args else "--json",
                               *([str(tmp_path / "o")] if args[0] == "run" and "--dry-run" not in args else []),
                               cwd=tmp_path), EXIT_USAGE)
    assert got.startswith(error), got
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_metrics_plugin_returning_nan_is_one_line_naming_it(zoo_cli, tmp_path: Path) -> None:
    data = tmp_path / "val"
    write_image_dataset(data, 3)
    result = zoo_cli(*RUN, *FAST, "--data", str(data), "--workers", "1", "--out", str(tmp_path / "o"),
                     env={"ZOO_PLUGINS": "zoo_tiny,zoo_nanmetric"})
    error, note = one_error(result, EXIT_BUG)
    assert error == ("Error: metric 'mean_confidence' holds nan, not a finite number (zoo_metrics of plugin(s) "
                     "builtin:metrics, zoo_nanmetric)"), error
    assert note == "Note: report it to the authors of the plugin that computes it"
    assert not (tmp_path / "o" / "results.json").exists()

