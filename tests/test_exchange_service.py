"""Exchange and settlement through the services on a real database."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from carbonhub.core.auth import Actor
from carbonhub.core.errors import DomainError
from tests.conftest import Market


def test_continuous_trade_settles_dvp(market: Market) -> None:
    x, w = market.exchange, market.w
    sell = x.place_order(
        w.alice,
        w.key(),
        instrument="HBEA2023",
        mode="CONTINUOUS",
        side="S",
        price="80.00",
        quantity=1000,
    )
    assert sell["status"] == "OPEN"
    buy = x.place_order(
        w.bob,
        w.key(),
        instrument="HBEA2023",
        mode="CONTINUOUS",
        side="B",
        price="81.00",
        quantity=400,
    )
    assert buy["status"] == "FILLED"
    # Hubei: the middle of (bid 81.00, ask 80.00, last = previous close 80.00)
    assert [t["price"] for t in buy["trades"]] == ["80.00"]
    assert market.problems() == []
    market.clock.at("2026-11-23", "15:30")
    out = market.settlement.settle_day(w.op1, date(2026, 11, 23))
    assert out["total"]["settled"] == 1 and out["total"]["volume"] == 400
    assert w.reg.account(w.bob, w.b)["holdings"][0]["posted"] == 400
    again = market.settlement.settle_day(w.op1, date(2026, 11, 23))
    assert again["settled_now"] == 0 and again["total"] == out["total"]
    assert market.problems() == []


def test_outside_band_changes_nothing(market: Market) -> None:
    x, w = market.exchange, market.w
    with pytest.raises(DomainError) as err:
        x.place_order(
            w.alice,
            w.key(),
            instrument="HBEA2023",
            mode="CONTINUOUS",
            side="S",
            price="88.01",
            quantity=10,
        )
    assert err.value.code == "PRICE_OUTSIDE_BAND"
    assert x.orders(w.alice) == []


def test_past_days_close_without_waiting_for_settlement(market: Market) -> None:
    x, w = market.exchange, market.w
    x.place_order(
        w.alice,
        w.key(),
        instrument="CEA2023",
        mode="LISTING",
        side="S",
        price="80.00",
        quantity=100,
    )
    assert x.depth("CEA2023", "LISTING")["asks"]
    market.clock.at("2026-11-24", "09:00")  # the next morning, before anything trades
    assert x.depth("CEA2023", "LISTING")["asks"] == []  # yesterday's listing is not shown
    assert x.close_past_days() == ["2026-11-23"]
    assert x.orders(w.alice)[0]["status"] == "EXPIRED"
    assert x.close_past_days() == []
    assert market.problems() == []


def continuous(
    market: Market, actor: Actor, side: str, price: str, quantity: int, tif: str = "LIMIT"
) -> dict[str, Any]:
    return market.exchange.place_order(
        actor,
        market.w.key(),
        instrument="HBEA2023",
        mode="CONTINUOUS",
        side=side,
        price=price,
        quantity=quantity,
        tif=tif,
    )


def test_every_ended_reservation_records_who_ended_it_and_when(market: Market) -> None:
    """Released by a cancel, by an IOC's unfilled rest in the batch that placed it, consumed
    by settlement: each hold says by whom and when, as a single release does."""
    import sqlalchemy as sa

    from carbonhub.registry import store as rs

    x, w = market.exchange, market.w

    resting = continuous(market, w.alice, "S", "80.00", 100)
    cancelled = continuous(market, w.alice, "S", "85.00", 30)
    x.cancel_order(w.alice, w.key(), order_id=cancelled["id"])
    ioc = continuous(market, w.alice, "S", "79.00", 20, "IOC")
    assert ioc["status"] == "CANCELLED"  # nobody bids: nothing fills
    bought = continuous(market, w.bob, "B", "80.00", 100)
    assert bought["status"] == "FILLED" and resting["status"] == "OPEN"
    market.clock.at("2026-11-23", "15:30")
    market.settlement.settle_day(w.op1, date(2026, 11, 23))
    h = rs.holds.c
    with w.db.read() as ro:
        rows = ro.conn.execute(
            sa.select(h.status, h.released_by, h.released_at, h.quantity).where(
                h.kind == "EXCHANGE_RESERVATION"
            )
        ).all()
    ended = sorted((r.status, r.quantity, r.released_by) for r in rows)
    assert ended == [
        ("CONSUMED", 100, w.op1.username),
        ("RELEASED", 20, "exchange"),
        ("RELEASED", 30, "exchange"),
    ]
    assert all(r.released_at for r in rows)
    assert market.problems() == []


def test_the_close_sends_the_emptied_books_and_the_days_auction_trades_to_the_feed(
    market: Market,
) -> None:
    """Settling a day closes it: resting orders expire and an auction that ended with the
    day allocates. Subscribers hear both once it has committed."""
    x, w = market.exchange, market.w
    continuous(market, w.alice, "S", "80.00", 100)
    market.clock.at("2026-11-23", "14:00")
    auction = x.announce(
        w.alice,
        w.key(),
        instrument="CEA2023",
        side="S",
        quantity=1000,
        reserve_price="80.00",
        opens_at="2026-11-23T06:10:00.000000Z",  # 14:10–14:50 in Shanghai
        closes_at="2026-11-23T06:50:00.000000Z",
    )
    market.clock.at("2026-11-23", "14:30")
    x.bid(w.bob, w.key(), auction["id"], price="81.00", quantity=600)
    heard: list[dict[str, Any]] = []
    x.feed.subscribe(heard.append)
    market.clock.at("2026-11-23", "15:30")
    market.settlement.settle_day(w.op1, date(2026, 11, 23))
    trades = [(m["instrument"], m["mode"], m["quantity"]) for m in heard if m["type"] == "trade"]
    assert trades == [("CEA2023", "AUCTION", 600)]
    depth = [m for m in heard if m["type"] == "depth" and m["instrument"] == "HBEA2023"]
    assert [(m["mode"], m["asks"], m["bids"]) for m in depth] == [("CONTINUOUS", [], [])]
    assert market.problems() == []
