"""The rich consoles and tables zoo prints through: values never cut, and user text never read as markup."""

from __future__ import annotations

from typing import Any

# Where output is not a terminal (a pipe, a CI log, a file) nobody's window is there to fit: rich would
# assume 80 columns and cut or wrap values; lines are as long as their content instead.
UNLIMITED = 100_000


def make_console(stderr: bool = False) -> Any:
    """A rich Console on stdout (or stderr): a terminal's own width, else no width limit."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = UNLIMITED
    return console


def make_table(*columns: str, right: tuple[str, ...] = (), title: str | None = None, **options: Any) -> Any:
    """A rich Table whose columns fold a value that does not fit a terminal onto the next line (never ``…``);
    ``right``: the columns aligned right (numbers). ``title``: one line above, as written and never wrapped to
    the table's width (it names paths); a caption in ``options`` is markup."""
    from rich.table import Table
    from rich.text import Text

    if title is not None:
        options.update(title=Text(title, no_wrap=True, overflow="ignore"), title_justify="left")
    table = Table(**options)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    return table


def plain(value: Any, style: str = "") -> Any:
    """``value`` as rich Text that is shown as written, brackets and all (a name, a path, an error message)."""
    from rich.text import Text

    return Text(str(value), style=style)
