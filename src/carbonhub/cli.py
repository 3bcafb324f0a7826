"""`carbonhub`: the command line. Each context adds its own sub-commands."""

from __future__ import annotations

import getpass
import os
import sys

import typer
from rich.markup import escape

from carbonhub.compliance.cli import app as compliance_app
from carbonhub.core import journal, migrate
from carbonhub.core.auth import AuthService
from carbonhub.core.cli_support import (
    JsonOpt,
    call,
    current_token,
    database,
    emit,
    err_console,
    fail,
    token_file,
)
from carbonhub.core.timefmt import shanghai_day
from carbonhub.exchange.cli import app as exchange_app
from carbonhub.registry.cli import app as registry_app
from carbonhub.settlement.cli import app as settlement_app
from carbonhub.settlement.cli import cash_app, settle

app = typer.Typer(
    help="carbonhub: an open carbon-market platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users and entities.", no_args_is_help=True)
journal_app = typer.Typer(help="The tamper-evident journal.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(journal_app, name="journal")
app.add_typer(registry_app, name="registry")
app.add_typer(exchange_app, name="exchange")
app.add_typer(cash_app, name="cash")
app.add_typer(settlement_app, name="settlement")
app.add_typer(compliance_app, name="compliance")
app.command()(settle)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations and create the registry's system accounts."""
    from carbonhub.registry.service import RegistryService

    db = database()
    migrate.upgrade(db)
    RegistryService(db).bootstrap()
    typer.echo(f"database at head ({db.backend})")


@user_app.command("create")
def user_create(
    username: str,
    role: str = typer.Option(..., "--role"),
    entity: str = typer.Option(None, "--entity"),
    password: str = typer.Option(
        None, "--password", envvar="CARBONHUB_NEW_PASSWORD", help="default: prompt"
    ),
    display_name: str = typer.Option("", "--name"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a user (roles: operator, enterprise, verifier, member, bank, partner, participant, lender)."""
    pw = password or getpass.getpass("password: ")
    emit(
        call(lambda: AuthService(database()).create_user(username, pw, role, entity, display_name)),
        as_json,
    )


@user_app.command("entity")
def entity_create(
    name: str,
    credit_code: str = typer.Option(..., "--credit-code"),
    kind: str = typer.Option("enterprise", "--kind"),
    sector: str = "",
    region: str = "",
    as_json: bool = JsonOpt,
) -> None:
    """Register a legal entity (统一社会信用代码 required)."""
    emit(
        call(
            lambda: AuthService(database()).create_entity(
                name, kind, credit_code, sector=sector, region=region
            )
        ),
        as_json,
    )


@app.command()
def login(
    username: str, password: str = typer.Option(None, "--password", envvar="CARBONHUB_PASSWORD")
) -> None:
    """Log in and keep the token for the next commands (in var/cli-token or $CARBONHUB_TOKEN_FILE)."""
    pw = password or getpass.getpass("password: ")
    result = call(lambda: AuthService(database()).login(username, pw))
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result["token"])
    os.chmod(path, 0o600)
    typer.echo(f"logged in as {username} ({result['role']}) until {result['expires_at']}")


@app.command()
def logout() -> None:
    """Revoke the token in use (CARBONHUB_TOKEN or the saved one) and forget the saved one."""
    token = current_token()
    auth = AuthService(database())
    who = call(lambda: auth.actor_for_token(token))
    call(lambda: auth.revoke_token(who, auth.token_id(token)))
    token_file().unlink(missing_ok=True)
    typer.echo("logged out")


@app.command()
def verify(as_json: bool = JsonOpt) -> None:
    """Recompute the journal chain, checkpoints and invariants 1–6 (ledgers, cash, settlement, replays); exit 1 on the first break."""
    from carbonhub.verify import verify as run

    report = run(database())
    if as_json:
        emit(report.as_dict(), True)
    elif report.ok:
        typer.echo(f"ok: {report.entries} journal entries, chain, checkpoints and invariants hold")
    if not report.ok:
        if not as_json:
            typer.echo(f"FAILED: {report.problems[0]}", err=True)
            for p in report.problems[1:5]:
                typer.echo(f"  also: {p}", err=True)
        raise typer.Exit(1)


@journal_app.command("checkpoint")
def journal_checkpoint(as_json: bool = JsonOpt) -> None:
    """Close every finished day with its Merkle root."""
    db = database()
    with db.uow() as uow:
        days = journal.close_days(uow, shanghai_day(uow.now))
        uow.commit()
    emit({"closed": days}, as_json)


@journal_app.command("receipt")
def journal_receipt(seq: int, as_json: bool = JsonOpt) -> None:
    """An entry with its inclusion proof."""
    with database().uow() as uow:
        r = journal.receipt(uow.conn, seq)
    if r is None:
        fail(f"ENTRY_NOT_FOUND: no journal entry {seq}")
    emit(r, as_json)


@app.command()
def demo(as_json: bool = JsonOpt) -> None:
    """Seed the demo market (once; a seeded database is left as it is)."""
    from carbonhub.demo import seed

    db = database()
    migrate.upgrade(db)
    result = seed(db)
    if as_json:
        emit(result, True)
        return
    typer.echo("demo market seeded" if result["seeded"] else "demo market already present")
    emit(result["logins"], False, ["username", "password", "role"], title="demo logins")


@app.command()
def serve(
    host: str = "127.0.0.1", port: int = 8000, seed_demo: bool = typer.Option(False, "--demo")
) -> None:
    """Migrate, optionally seed the demo, and serve the API and console."""
    from carbonhub.api import create_app, run_server
    from carbonhub.registry.service import RegistryService

    db = database()
    migrate.upgrade(db)
    RegistryService(db).bootstrap()
    if seed_demo:
        from carbonhub.demo import logins, seed

        result = seed(db)
        typer.echo("demo market seeded" if result["seeded"] else "demo market already present")
        emit(logins(), False, ["username", "password", "role"], title="demo logins")
    typer.echo(f"carbonhub on http://{host}:{port}  (API docs: /docs, console: /)")
    run_server(create_app(db), host, port, log_level="warning")


def main() -> None:
    """Usage errors, like domain errors, are one line on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except Exception as exc:  # Typer vendors click: its ClickException has these two attributes
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        err_console.print(
            f"[red]error[/red] USAGE: {escape(exc.format_message())}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(exc.exit_code or 2)
    sys.exit(code if isinstance(code, int) else 0)
