"""The README and the docs/ pages as a reader uses them: their commands run, their links lead somewhere.

Which commands run: a fenced block whose info string is ``console`` holds commands, one on each line that starts
with ``$ `` (a ``#`` comment runs to the end of the line). Every other block (a plain fence, ``toml``, ``python``)
is shown, not run: it needs the network, published weights, a dataset of one's own, an Ascend chip or a Ray
cluster. Every ``$`` line must be a ``zoo`` command; a page's commands run in order, in a new folder of their own
(so one may read what an earlier one wrote), through the real command (the ``zoo_cli`` fixture), offline
(``ZOO_OFFLINE=1``), on one cache for this module (docs/cache.md, which cleans it, last), and each must exit 0
without a traceback (and, with ``--json``, print JSON on stdout). docs/writing-plugins.md has its own tests
(tests/test_docs.py).

Two substitutions, to keep this module near 60 s on this 2-core machine:
- ``resnest50`` becomes the tiny ResNeSt ``resnest-tiny`` (tests/plugins/zoo_tiny.py): exporting the real
  ResNeSt-50 takes about 35 s here, once per cache, and a page runs it at several batch sizes and backends;
- ``zoo run`` gets ``--warmup 0 --iterations 1``: timing until the windows agree takes seconds per batch size,
  and the numbers are not what these tests check.
Before its commands, a page's folder gets ``imagenet/val``: 8 labelled JPEG images and a ``val_label.txt``
(zoo_core.testing.write_image_dataset), the dataset docs/accuracy.md names.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from zoo_core.testing import write_image_dataset

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
TINY = "resnest-tiny"
README_LIMIT = 8 * 1024  # bytes


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def console_commands(text: str) -> list[str]:
    """The ``$ `` lines of every ``console`` block, in order, without the ``$ ``."""
    blocks = re.findall(r"^```console\n(.*?)^```", text, flags=re.M | re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def as_run(command: str) -> list[str]:
    """The arguments after ``zoo``, with the two substitutions of the module's docstring."""
    words = shlex.split(command, comments=True)
    assert words[:1] == ["zoo"], f"a runnable line that is not a zoo command: {command!r}"
    args = [TINY if word == "resnest50" else word for word in words[1:]]
    if args[:1] == ["run"]:
        args += ["--warmup", "0", "--iterations", "1"]
    return args


# docs/cache.md last: it cleans the cache the other pages fill.
RUNNABLE = sorted((page for page in PAGES if console_commands(page.read_text())),
                  key=lambda page: page.name == "cache.md")


def test_the_rule_finds_commands_and_substitutes() -> None:
    text = "```console\n$ zoo run resnest50 --bs 8   # a comment\nnot a command\n```\n```\n$ zoo list\n```\n"
    assert console_commands(text) == ["zoo run resnest50 --bs 8   # a comment"]
    assert as_run(console_commands(text)[0]) == ["run", TINY, "--bs", "8", "--warmup", "0", "--iterations", "1"]
    with pytest.raises(AssertionError, match="not a zoo command"):
        as_run("pip install -e .")


def test_the_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move reference into docs/ (limit {README_LIMIT})"


def test_the_readme_tour_shows_the_first_hour() -> None:
    commands = [shlex.split(c, comments=True)[1:3] for c in console_commands(README.read_text())]
    shown = {words[0] for words in commands} | {" ".join(words) for words in commands}
    for command in ("list", "run", "doctor", "compare", "report", "cache ls", "new-plugin", "export"):
        assert command in shown, f"the README's tour shows no `zoo {command}`"
    for words in (shlex.split(c, comments=True) for c in console_commands(README.read_text())):
        if words[1] in ("run", "compare", "export"):
            assert "--weights" in words and words[words.index("--weights") + 1] == "random", (
                f"the tour must work offline as written: {' '.join(words)} needs --weights random")


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert len(ci) == 1
    assert f"   {ci[0]}\n" in README.read_text(), "the README's test command differs from .ci/run's"


def test_the_readme_states_the_torch_range_of_pyproject() -> None:
    declared = re.findall(r'^\s*"torch([<>=!~][^"]*)",', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert len(declared) == 1, "pyproject.toml declares torch once"
    assert f"torch `{declared[0]}`" in README.read_text()
    assert f"'torch{declared[0]}'" in (DOCS / "install.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in README.read_text()


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README.read_text()))
    assert {rel(page) for page in DOCS.glob("*.md")} <= linked


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_resolves(page: Path) -> None:
    """``[text](target)`` outside code: a target that is not a URL or an in-page anchor is a file or folder
    relative to the page (its ``#anchor`` is not checked)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)]
    broken = [t for t in targets if not (page.parent / t.split("#")[0]).exists()]
    assert broken == [], f"{rel(page)} links to what does not exist"


def test_the_pages_have_runnable_commands() -> None:
    assert {rel(p) for p in RUNNABLE} >= {"README.md", "docs/cli.md", "docs/accuracy.md", "docs/reports.md",
                                          "docs/cache.md"}


@pytest.fixture(scope="module")
def docs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pages' own cache (docs/cache.md cleans it): the tiny model is exported once for every page."""
    return tmp_path_factory.mktemp("docs-cache")


@pytest.mark.parametrize("page", RUNNABLE, ids=rel)
def test_the_page_commands_run(page: Path, tmp_path: Path, docs_cache: Path, zoo_cli) -> None:
    write_image_dataset(tmp_path / "imagenet" / "val", count=8)
    for command in console_commands(page.read_text()):
        args = as_run(command)
        result = zoo_cli(*args, env={"ZOO_CACHE_DIR": str(docs_cache)}, cwd=tmp_path)
        assert result.code == 0 and "Traceback" not in result.stderr, (rel(page), command, result)
        if "--json" in args:
            json.loads(result.stdout)
