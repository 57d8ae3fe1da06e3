"""Option resolution (flag > model config > default) and batch-size parsing."""

from __future__ import annotations

import pytest

from zoo_core.errors import EXIT_USAGE, UsageError
from zoo_core.specs import DEFAULTS, ModelSpec, parse_batch_sizes, resolve_options

MODEL = ModelSpec(name="m", family="f", factory="x:y", preset="reference", opset=13)


def test_flag_beats_model_config_beats_default() -> None:
    from_model = resolve_options(MODEL, {})
    assert from_model.preset == "reference" and from_model.opset == 13  # the model's config
    assert from_model.warmup == DEFAULTS["warmup"]  # the default
    flagged = resolve_options(MODEL, {"preset": "modelzoo", "opset": 11, "warmup": 0})
    assert (flagged.preset, flagged.opset, flagged.warmup) == ("modelzoo", 11, 0)


def test_none_means_not_given() -> None:
    assert resolve_options(MODEL, {"opset": None}).opset == 13


def test_threads_default_to_the_cores() -> None:
    from zoo_core.specs import cpu_count

    assert resolve_options(MODEL, {}).threads == cpu_count()
    assert resolve_options(MODEL, {"threads": 1}).threads == 1


def test_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        resolve_options(MODEL, {"preset": "nope"})
    assert info.value.exit_code == EXIT_USAGE and "modelzoo, reference" in info.value.note


def test_unknown_option_is_a_bug_not_a_user_error() -> None:
    with pytest.raises(TypeError):
        resolve_options(MODEL, {"batchsize": 3})


@pytest.mark.parametrize(("text", "sizes"), [("8", (8,)), ("1,4,8", (1, 4, 8)), (" 4, 1 ,4", (4, 1))])
def test_batch_sizes_parse(text: str, sizes: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text) == sizes


@pytest.mark.parametrize("text", ["0", "-1", "a", "1,,4", "2.5"])
def test_bad_batch_sizes_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_batch_sizes(text)
