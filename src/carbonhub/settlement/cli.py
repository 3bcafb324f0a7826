"""`carbonhub cash …` and `carbonhub settlement …`: cash accounts, the run, reports."""

from __future__ import annotations

from datetime import date

import typer

from carbonhub.core import timefmt
from carbonhub.core.cli_support import (
    JsonOpt,
    KeyOpt,
    actor,
    call,
    database,
    emit,
    key_or_new,
)
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService, SettlementService

cash_app = typer.Typer(help="Cash accounts at settlement banks.", no_args_is_help=True)
app = typer.Typer(
    help="Settlement: the DvP run, clearing reports, statements.", no_args_is_help=True
)

CASH_COLS = ["id", "entity_id", "balance", "frozen", "available", "status"]


def cash() -> CashService:
    return CashService(database())


def settlement() -> SettlementService:
    db = database()
    registry, cash_service = RegistryService(db), CashService(db)
    return SettlementService(
        db, registry, cash_service, ExchangeService(db, registry, cash_service)
    )


def parse_day(text: str) -> date:
    return call(lambda: timefmt.parse_day(text))


@cash_app.command("open")
def open_account(
    entity_id: str,
    bank: str = typer.Option(None, help="bank entity id (operators)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Open a cash account for an entity (bank)."""
    emit(
        call(
            lambda: cash().open_account(
                actor(), key_or_new(key), entity_id=entity_id, bank_entity_id=bank
            )
        ),
        as_json,
    )


@cash_app.command()
def fund(account_id: str, amount: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Credit money received for an account (bank), in yuan."""
    emit(
        call(lambda: cash().fund(actor(), key_or_new(key), account_id=account_id, amount=amount)),
        as_json,
    )


@cash_app.command()
def defund(account_id: str, amount: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Pay out available money (bank), in yuan."""
    emit(
        call(lambda: cash().defund(actor(), key_or_new(key), account_id=account_id, amount=amount)),
        as_json,
    )


@cash_app.command("list")
def list_accounts(limit: int = 100, as_json: bool = JsonOpt) -> None:
    """Cash accounts I may see."""
    emit(
        call(lambda: cash().accounts(actor(), limit=limit)),
        as_json,
        CASH_COLS,
        title="cash accounts",
    )


@cash_app.command()
def entries(account_id: str, limit: int = 50, as_json: bool = JsonOpt) -> None:
    """A cash account's ledger, newest first."""
    rows = call(lambda: cash().entries(actor(), account_id, limit=limit))
    emit(rows, as_json, ["id", "kind", "amount", "frozen_change", "balance_after", "ref", "at"])


@app.command()
def report(day: str, as_json: bool = JsonOpt) -> None:
    """The daily clearing report by mode (清结算日报)."""
    emit(settlement().report(parse_day(day)), as_json)


@app.command()
def statement(
    day: str,
    entity: str = typer.Option(None, help="entity id (operators)"),
    as_json: bool = JsonOpt,
) -> None:
    """A settlement statement for a day."""
    a = actor()
    emit(
        call(lambda: settlement().statement(a, entity or a.entity_id or "", parse_day(day))),
        as_json,
    )


def settle(
    date_: str = typer.Option(..., "--date", help="the trading day to settle, YYYY-MM-DD"),
    as_json: bool = JsonOpt,
) -> None:
    """Close the day's books and settle its trades DvP; running it twice changes nothing."""
    day = parse_day(date_)
    emit(call(lambda: settlement().settle_day(actor(), day)), as_json)
