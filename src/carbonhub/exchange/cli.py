"""`carbonhub exchange …`: instruments, members, orders, block deals, auctions, market data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer

from carbonhub.core.auth import PUBLIC
from carbonhub.core.cli_support import (
    JsonOpt,
    KeyOpt,
    actor,
    call,
    database,
    emit,
    fail,
    key_or_new,
)
from carbonhub.core.timefmt import parse_day
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService

app = typer.Typer(
    help="Exchange: instruments, members, orders and takes, block deals, auctions, market data.",
    no_args_is_help=True,
)

ORDER_COLS = ["id", "instrument", "mode", "side", "price", "quantity", "open", "filled", "status"]
TRADE_COLS = ["id", "instrument", "mode", "price", "quantity", "value", "at"]


def ex() -> ExchangeService:
    db = database()
    return ExchangeService(db, RegistryService(db), CashService(db))


@app.command()
def instruments(as_json: bool = JsonOpt) -> None:
    """Instruments with their rules, bands and previous close (public)."""
    rows = ex().instruments()
    emit(rows, as_json, ["code", "unit_class", "name", "status", "prev_close"], title="instruments")


@app.command("create-instrument")
def create_instrument(
    code: str,
    unit_class: str = typer.Option(..., help="registry unit class, e.g. CEA-2024"),
    name: str = typer.Option(...),
    reference_price: str = typer.Option(..., help="the first day's previous close, yuan"),
    preset: str = typer.Option("national", help="national or hubei"),
    rules: Path = typer.Option(None, help="JSON file of rules per mode (overrides the preset)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List an instrument (operator)."""
    try:
        raw = json.loads(rules.read_text(encoding="utf-8")) if rules else None
    except (OSError, ValueError) as exc:
        fail(f"RULES_INVALID: cannot read {rules}: {exc}")
    emit(
        call(
            lambda: ex().create_instrument(
                actor(),
                key_or_new(key),
                code=code,
                unit_class=unit_class,
                name=name,
                reference_price=reference_price,
                preset=preset,
                rules=raw,
            )
        ),
        as_json,
    )


@app.command("suspend-instrument")
def suspend_instrument(
    code: str,
    resume: bool = typer.Option(False, "--resume", help="resume trading instead"),
    reason: str = "",
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Suspend (or resume) trading in an instrument (operator)."""
    emit(
        call(
            lambda: ex().set_instrument_status(
                actor(), key_or_new(key), code, suspended=not resume, reason=reason
            )
        ),
        as_json,
    )


@app.command()
def holiday(day: str, name: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Announce a closed day (operator)."""
    emit(call(lambda: ex().add_holiday(actor(), key_or_new(key), day=day, name=name)), as_json)


@app.command()
def calendar(
    start: str = typer.Option(None, help="YYYY-MM-DD (default today)"),
    days: int = 14,
    as_json: bool = JsonOpt,
) -> None:
    """Trading days and holidays."""
    first = call(lambda: parse_day(start, "start")) if start else date.today()
    emit(ex().calendar(first, days), as_json, ["day", "trading", "holiday"], title="calendar")


@app.command()
def members(as_json: bool = JsonOpt) -> None:
    """Exchange members."""
    emit(ex().members(), as_json, ["entity_id", "name", "account_id", "status"], title="members")


@app.command("admit-member")
def admit_member(
    entity_id: str,
    account: str = typer.Option(..., help="the registry account it trades from"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Admit an entity as a member (operator)."""
    emit(
        call(
            lambda: ex().admit_member(
                actor(), key_or_new(key), entity_id=entity_id, account_id=account
            )
        ),
        as_json,
    )


@app.command()
def order(
    instrument: str,
    side: str = typer.Argument(..., help="B (buy) or S (sell)"),
    price: str = typer.Argument(..., help="yuan per tonne, e.g. 80.25"),
    quantity: int = typer.Argument(..., help="tonnes"),
    mode: str = typer.Option("LISTING", help="LISTING or CONTINUOUS"),
    tif: str = typer.Option("LIMIT", help="LIMIT, IOC or FOK (continuous)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Place an order; it freezes units (sell) or cash plus fees (buy)."""
    emit(
        call(
            lambda: ex().place_order(
                actor(),
                key_or_new(key),
                instrument=instrument,
                mode=mode,
                side=side,
                price=price,
                quantity=quantity,
                tif=tif,
            )
        ),
        as_json,
    )


@app.command()
def take(order_id: str, quantity: int, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Take a listing (摘牌) among the best five levels, at its price."""
    emit(
        call(lambda: ex().take(actor(), key_or_new(key), order_id=order_id, quantity=quantity)),
        as_json,
    )


@app.command()
def cancel(order_id: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Cancel an open order; what it froze is released."""
    emit(call(lambda: ex().cancel_order(actor(), key_or_new(key), order_id)), as_json)


@app.command()
def amend(order_id: str, quantity: int, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Lower an open order's quantity (it keeps its place)."""
    emit(
        call(lambda: ex().amend_order(actor(), key_or_new(key), order_id, quantity=quantity)),
        as_json,
    )


@app.command()
def orders(
    instrument: str = typer.Option(None),
    status: str = typer.Option(None),
    limit: int = 50,
    as_json: bool = JsonOpt,
) -> None:
    """My orders (operators: all)."""
    rows = call(lambda: ex().orders(actor(), instrument=instrument, status=status, limit=limit))
    emit(rows, as_json, ORDER_COLS, title="orders")


@app.command()
def depth(instrument: str, mode: str = "LISTING", as_json: bool = JsonOpt) -> None:
    """Best five levels of a book (public)."""
    emit(call(lambda: ex().depth(instrument, mode)), as_json)


@app.command()
def trades(
    instrument: str,
    day: str = typer.Option(None),
    limit: int = 50,
    as_json: bool = JsonOpt,
) -> None:
    """Recent trades (public)."""
    rows = call(lambda: ex().trades(PUBLIC, instrument=instrument, day=day, limit=limit))
    emit(rows, as_json, TRADE_COLS, title=f"{instrument} trades")


@app.command()
def bars(
    instrument: str,
    interval: str = typer.Option("1d", help="1m or 1d"),
    day: str = typer.Option(None),
    limit: int = 60,
    as_json: bool = JsonOpt,
) -> None:
    """OHLCV bars (public)."""
    rows = call(lambda: ex().bars(instrument, interval=interval, day=day, limit=limit))
    emit(rows, as_json, ["t", "o", "h", "l", "c", "v", "value"], title=f"{instrument} {interval}")


@app.command()
def index(limit: int = 30, as_json: bool = JsonOpt) -> None:
    """The daily composite price index (public)."""
    emit(ex().index(limit), as_json, ["day", "price", "level"], title="composite index")


@app.command()
def statistics(day: str = typer.Option(None), as_json: bool = JsonOpt) -> None:
    """Volume and value per mode: the day, the year, since launch (public)."""
    emit(call(lambda: ex().statistics(day)), as_json)


@app.command()
def quote(
    instrument: str,
    side: str,
    price: str,
    quantity: int,
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Quote a block deal (大宗协议, ≥ 100,000 t, afternoons)."""
    emit(
        call(
            lambda: ex().quote(
                actor(),
                key_or_new(key),
                instrument=instrument,
                side=side,
                price=price,
                quantity=quantity,
            )
        ),
        as_json,
    )


@app.command()
def counter(
    deal_id: str, price: str, quantity: int, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Counter-quote a block deal."""
    emit(
        call(
            lambda: ex().counter(actor(), key_or_new(key), deal_id, price=price, quantity=quantity)
        ),
        as_json,
    )


@app.command()
def confirm(deal_id: str, version: int, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Confirm a block deal's current terms (version)."""
    emit(call(lambda: ex().confirm(actor(), key_or_new(key), deal_id, version=version)), as_json)


@app.command()
def deals(instrument: str = typer.Option(None), as_json: bool = JsonOpt) -> None:
    """Open block quotes and my negotiations."""
    rows = call(lambda: ex().deals(actor(), instrument=instrument))
    emit(rows, as_json, ["id", "instrument", "side", "price", "quantity", "version", "status"])


@app.command()
def announce(
    instrument: str,
    quantity: int,
    reserve_price: str,
    opens_at: str = typer.Option(..., help="UTC, 2026-11-23T02:00:00.000000Z"),
    closes_at: str = typer.Option(...),
    side: str = typer.Option("S", help="S: you sell to the best bids; B: you buy"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Announce a one-sided auction (单向竞价)."""
    emit(
        call(
            lambda: ex().announce(
                actor(),
                key_or_new(key),
                instrument=instrument,
                side=side,
                quantity=quantity,
                reserve_price=reserve_price,
                opens_at=opens_at,
                closes_at=closes_at,
            )
        ),
        as_json,
    )


@app.command()
def bid(
    auction_id: str, price: str, quantity: int, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Bid in an auction while its window is open."""
    emit(
        call(
            lambda: ex().bid(actor(), key_or_new(key), auction_id, price=price, quantity=quantity)
        ),
        as_json,
    )


@app.command()
def auctions(instrument: str = typer.Option(None), as_json: bool = JsonOpt) -> None:
    """Auctions, with published results once done."""
    rows = call(lambda: ex().auctions(actor(), instrument=instrument))
    emit(
        rows,
        as_json,
        ["id", "instrument", "side", "quantity", "reserve_price", "status", "awarded"],
    )
