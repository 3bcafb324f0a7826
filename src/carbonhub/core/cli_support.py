"""What every CLI command shares: the database, the acting user, idempotency keys, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError
from carbonhub.core.ids import new_id

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonOpt = typer.Option(False, "--json", help="print JSON for scripting")
KeyOpt = typer.Option(None, "--key", help="idempotency key (default: a new one)")


def token_file() -> Path:
    return Path(os.environ.get("CARBONHUB_TOKEN_FILE", "var/cli-token"))


_db: Database | None = None


def database() -> Database:
    global _db
    if _db is None:
        _db = Database()
    return _db


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def call(fn: Callable[[], T]) -> T:
    """Run a service call; a domain error becomes one line on stderr and a non-zero exit."""
    try:
        return fn()
    except DomainError as exc:
        fail(f"{exc.code}: {exc.message}")


def actor() -> Actor:
    """The logged-in user: CARBONHUB_TOKEN, or the token `carbonhub login` saved."""
    token = current_token()
    return call(lambda: AuthService(database()).actor_for_token(token))


def current_token() -> str:
    token = os.environ.get("CARBONHUB_TOKEN")
    if not token and token_file().exists():
        token = token_file().read_text().strip()
    if not token:
        fail("not logged in: run `carbonhub login USERNAME` or set CARBONHUB_TOKEN")
    return token


def key_or_new(key: str | None) -> str:
    return key or new_id()


def emit(
    data: Any, as_json: bool, columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        return
    rows = data if isinstance(data, list) else None
    if rows is not None:
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title)
        for c in cols:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(str(r.get(c, "")) for c in cols))
        console.print(table)
    elif isinstance(data, dict):
        table = Table(show_header=False, title=title)
        for k, v in data.items():
            table.add_row(
                str(k),
                json.dumps(v, ensure_ascii=False, default=str)
                if isinstance(v, list | dict)
                else str(v),
            )
        console.print(table)
    else:
        console.print(data)
