"""What every ``commonwatch`` command shares: settings, the exchange, error exits, tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from commonwatch.config import Settings, load_settings
from commonwatch.domain.markings import Tlp, parse_tlp
from commonwatch.errors import CommonWatchError, Conflict, InputError, NotFound
from commonwatch.services.exchange import Exchange

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line: scripts grep them
T = TypeVar("T")
DbOption = Annotated[str | None, typer.Option("--database-url", envvar="COMMONWATCH_DATABASE_URL",
                                              help="Database URL (default sqlite:///./data/commonwatch.db).")]
state: dict[str, Any] = {}


def settings(**overrides: Any) -> Settings:
    """Settings from the environment, the global options and ``overrides``."""
    return load_settings(database_url=state.get("database_url"), **overrides)


@contextmanager
def exchange_for(**overrides: Any) -> Iterator[Exchange]:
    """An exchange on the current settings, closed on exit."""
    exchange = Exchange(settings(**overrides))
    try:
        yield exchange
    finally:
        exchange.close()


def run(action: Callable[[Exchange], T]) -> T:
    """Run ``action`` on an exchange, turning errors into a message and exit code."""
    try:
        with exchange_for() as exchange:
            return action(exchange)
    except CommonWatchError as exc:
        # One line, whatever the message holds (a driver's error can span several).
        err.print(f"[red]error:[/red] {escape(' '.join(exc.message.split()))}", highlight=False)
        code = 2 if isinstance(exc, InputError) else 3 if isinstance(exc, NotFound | Conflict) else 1
        raise typer.Exit(code) from None


class _PlainTable(Table):
    """A table whose string cells are shown as written: names, labels and values come
    from users, and read as rich markup a ``[/x]`` would end the command with an error
    (and a ``[red]`` would restyle the listing)."""

    def add_row(self, *cells: Any, **options: Any) -> None:  # type: ignore[override]
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **options)


def table(*columns: str) -> Table:
    """A plain table for listings (cells are text, never markup)."""
    return _PlainTable(*columns, show_edge=False, header_style="bold")


def tlp_option(value: str) -> Tlp:
    """Parse a TLP name given on the command line."""
    try:
        return parse_tlp(value)
    except CommonWatchError as exc:
        raise typer.BadParameter(exc.message) from None
