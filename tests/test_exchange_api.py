"""The exchange and settlement REST API over HTTP, on the `market` fixture's data.

The client is an app built around the market's database (`make_client`, as tests/test_api.py does
for a World): it has its own exchange, cash and settlement services on that database and shares the
market's settable clock (`market.w.db.clock`, Monday 2026-11-23 10:00 Asia/Shanghai to start).

- a day of trading through HTTP: a listing posted and taken, a continuous trade, a block deal;
  depth, listings and trades show them; settlement after the close; the clearing report's modes add
  up to its total; a statement for each side; settling again changes nothing;
- every rejection from the issue's list answers problem+json with its code and changes nothing:
  the registry ledger, every exchange and settlement table (orders, trades, books and their command
  log, cash balances, freezes and entries, …) and every non-auth journal entry (`market_state`);
- a replayed command (same Idempotency-Key) is done once; a reused key with another body is a 409;
- a failed settlement leg (the seller's reservation released under the trade) is FAILED with a
  reason, listed among the failures, and leaves both sides whole;
- the WebSocket feed: depth snapshots first, then a trade after a crossing order, with and without
  the app's lifespan (only the lifespan starts the exchange's group-commit writer).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from carbonhub.api import create_app
from carbonhub.core.db import Database
from carbonhub.core.groupcommit import WriterProcess
from carbonhub.core.quantities import fen_from_yuan
from carbonhub.exchange import api as exchange_api
from carbonhub.exchange.service import ExchangeService
from carbonhub.settlement.service import settlement_problems
from tests.conftest import Market
from tests.test_api import (  # cheap_argon2: the autouse fixture, active here too
    assert_problem,
    cheap_argon2,  # noqa: F401
    head_seq,
    journal_since,
    make_client,
    snapshot,
    table_contents,
    token_for,
    with_key,
)

EX = "/api/v1/exchange"
ST = "/api/v1/settlement"
REG = "/api/v1/registry"
DAY = "2026-11-23"  # the market fixture's Monday

# Exchange and settlement tables a refused request must not touch (the registry's are in
# tests/test_api.py's LEDGER_TABLES, which `snapshot` covers with the non-auth journal).
EXCHANGE_TABLES = (
    "instruments",
    "exchange_holidays",
    "members",
    "books",
    "book_commands",
    "orders",
    "trades",
    "deals",
    "auctions",
    "auction_bids",
    "market_days",
    "index_days",
    "cash_accounts",
    "cash_entries",
    "cash_freezes",
    "settlements",
    "settlement_runs",
)


# ---------------------------------------------------------------- shared helpers


def exchange_snapshot(db: Database) -> dict[str, Any]:
    """Every exchange and settlement table's rows, order-free."""
    return table_contents(db, EXCHANGE_TABLES)


def market_state(db: Database) -> dict[str, Any]:
    """The registry ledger, the non-auth journal and every exchange and settlement table."""
    return {**snapshot(db), **exchange_snapshot(db)}


def refuse(
    db: Database, send: Callable[[], httpx.Response], status: int, code: str
) -> dict[str, Any]:
    """A request that must be refused: problem+json with `code`, and nothing changed anywhere;
    only a 403 leaves a trace (its auth.denied entry)."""
    before, seq = market_state(db), head_seq(db)
    r = send()
    body = assert_problem(r, status, code)
    after = market_state(db)
    changed = [t for t in before if before[t] != after[t]]
    assert not changed, f"refused request ({status} {code}) changed {changed}"
    new = [t for t, _, _ in journal_since(db, seq)]
    assert new == (["auth.denied"] if status == 403 else []), new
    return body


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    return r.json()


class Http:
    """A client on the market with a token per user; `at` moves the clock (and logs in again,
    tokens living 12 h on that clock)."""

    def __init__(self, market: Market, client: TestClient | None = None) -> None:
        self.mk = market
        self.w = market.w
        self.db = market.w.db
        self.c = client or make_client(self.db)
        self.h: dict[str, dict[str, str]] = {}
        self.login()

    def login(self) -> None:
        w = self.w
        users = {"op1": w.op1, "op2": w.op2, "alice": w.alice, "bob": w.bob, "bank": self.mk.bank}
        self.h = {name: token_for(w.auth, actor) for name, actor in users.items()}
        self.h["public"] = {}

    def at(self, day: str, hhmm: str) -> None:
        self.mk.clock.at(day, hhmm)
        self.login()

    def post(self, who: str, path: str, body: Any = None, key: str | None = None) -> Any:
        return self.c.post(path, headers=with_key(self.h[who], key), json=body)

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.c.get(path, headers=self.h[who], params=params)

    def order(
        self,
        who: str,
        *,
        side: str,
        price: Any = "80.00",
        quantity: Any = 100,
        instrument: str = "CEA2023",
        mode: str = "LISTING",
        key: str | None = None,
    ) -> Any:
        body = {
            "instrument": instrument,
            "mode": mode,
            "side": side,
            "price": price,
            "quantity": quantity,
        }
        return self.post(who, f"{EX}/orders", body, key)

    def continuous(self, who: str, *, side: str, price: str, quantity: int) -> Any:
        """An order in Hubei's continuous book (HBEA2023)."""
        return self.order(
            who, side=side, price=price, quantity=quantity, instrument="HBEA2023", mode="CONTINUOUS"
        )

    def announce(self, who: str, opens_at: str, closes_at: str) -> Any:
        """Alice's usual auction: 1,000 t of CEA2023 at a reserve of 80.00, in a window."""
        body = {
            "instrument": "CEA2023",
            "side": "S",
            "quantity": 1000,
            "reserve_price": "80.00",
            "opens_at": opens_at,
            "closes_at": closes_at,
        }
        return self.post(who, f"{EX}/auctions", body)

    def take(self, who: str, order_id: str, quantity: Any, key: str | None = None) -> Any:
        return self.post(who, f"{EX}/takes", {"order_id": order_id, "quantity": quantity}, key)

    def quote(
        self, who: str, *, side: str = "S", price: str = "80.00", quantity: Any = 100_000
    ) -> Any:
        body = {"instrument": "CEA2023", "side": side, "price": price, "quantity": quantity}
        return self.post(who, f"{EX}/deals", body)

    def cash(self, who: str) -> dict[str, Any]:
        out: dict[str, Any] = ok(self.get(who, f"{ST}/cash-accounts/mine"))
        return {k: out[k] for k in ("balance", "frozen", "available")}

    def units(self, account_id: str) -> dict[str, int]:
        acc = ok(self.get("op1", f"{REG}/accounts/{account_id}"))
        rows = [x for x in acc["holdings"] if x["unit_class"] == "CEA-2023"]
        if not rows:
            return {"posted": 0, "held": 0}
        return {"posted": int(rows[0]["posted"]), "held": int(rows[0]["held"])}

    def problems(self) -> list[str]:
        with self.db.read() as ro:
            return self.mk.problems() + settlement_problems(ro.conn, self.mk.exchange)


@pytest.fixture
def http(market: Market) -> Http:
    return Http(market)


# ---------------------------------------------------------------- a day of trading


def test_a_day_of_trading_settles_and_reports_over_http(http: Http) -> None:
    h, w = http, http.w
    cash_a, cash_b = h.cash("alice"), h.cash("bob")
    assert cash_a["balance"] == cash_b["balance"] == "100000000.00"

    # 挂牌: alice lists 1,000 t at 80.50; bob takes 400 of them from the listings
    sell = ok(h.order("alice", side="S", price="80.50", quantity=1000), 201)
    assert (sell["status"], sell["open"], sell["kind"]) == ("OPEN", 1000, "ORDER")
    listings = ok(h.get("public", f"{EX}/market/CEA2023/listings", side="S"))
    assert listings == [{"id": sell["id"], "side": "S", "price": "80.50", "open": 1000}]
    taken = ok(h.take("bob", sell["id"], 400), 201)
    assert (taken["kind"], taken["side"], taken["status"]) == ("TAKE", "B", "FILLED")
    [trade] = taken["trades"]
    assert (trade["price"], trade["quantity"], trade["value"]) == ("80.50", 400, "32200.00")
    depth = ok(h.get("public", f"{EX}/market/CEA2023/depth", mode="LISTING"))
    assert depth["bids"] == []
    assert depth["asks"] == [{"price": "80.50", "quantity": 600, "orders": 1}]
    public_trades = ok(h.get("public", f"{EX}/market/CEA2023/trades"))
    assert [t["id"] for t in public_trades] == [trade["id"]]
    assert "buyer_entity" not in public_trades[0]  # counterparties are not public
    [mine] = ok(h.get("bob", f"{EX}/market/CEA2023/trades"))
    assert (mine["buyer_entity"], mine["seller_entity"]) == (w.entity_b, w.entity_a)
    assert mine["fee_buyer"] == mine["fee_seller"] == "161.00"  # 0.5 % of 32,200.00
    assert [t["id"] for t in ok(h.get("alice", f"{EX}/trades"))] == [trade["id"]]
    # bob's freeze is exactly what the trade will pay; alice's 1,000 t are reserved
    assert h.cash("bob")["frozen"] == "32361.00"
    assert h.units(w.a) == {"posted": 500_000, "held": 1000}

    # Hubei continuous: the middle of bid 81.00, ask 79.00 and the last price (80.00)
    ok(h.continuous("alice", side="S", price="79.00", quantity=300), 201)
    buy = ok(h.continuous("bob", side="B", price="81.00", quantity=300), 201)
    assert buy["status"] == "FILLED" and [t["price"] for t in buy["trades"]] == ["80.00"]

    # 大宗协议 in the afternoon: alice quotes, bob and alice confirm version 1
    h.at(DAY, "14:00")
    deal = ok(h.quote("alice"), 201)
    assert deal["status"] == "QUOTED"
    ok(h.post("bob", f"{EX}/deals/{deal['id']}/confirm", {"version": 1}))
    done = ok(h.post("alice", f"{EX}/deals/{deal['id']}/confirm", {"version": 1}))
    assert done["status"] == "DONE" and done["trade_id"]
    assert done["history"][0]["quote"] == [done["price"], done["quantity"]]  # yuan, tonnes

    # settlement waits for the close
    refuse(h.db, lambda: h.post("op1", f"{ST}/days/{DAY}/settle"), 409, "DAY_NOT_CLOSED")
    h.at(DAY, "15:30")
    out = ok(h.post("op1", f"{ST}/days/{DAY}/settle"))
    assert (out["settled_now"], out["failed_now"]) == (3, 0)

    report = ok(h.get("public", f"{ST}/days/{DAY}/report"))
    assert report["run"]["trades"] == 3 and report["run"]["settled"] == 3
    total, modes = report["total"], report["modes"]
    for field in ("trades", "volume", "settled", "failed"):
        assert sum(m[field] for m in modes.values()) == total[field], field
    for field in ("value", "fees"):  # money in yuan, as everywhere in the API; added in fen
        assert sum(fen_from_yuan(m[field]) for m in modes.values()) == fen_from_yuan(total[field])
    assert total["volume"] == 400 + 300 + 100_000
    assert total["value"] == "8056200.00"  # 32,200.00 + 24,000.00 + 8,000,000.00
    assert total["fees"] == "80562.00"  # 0.5 % a side
    assert modes["BLOCK"]["average"] == modes["BLOCK"]["high"] == "80.00"
    assert modes["AUCTION"]["average"] is None
    assert {m: modes[m]["volume"] for m in modes} == {
        "LISTING": 400,
        "CONTINUOUS": 300,
        "BLOCK": 100_000,
        "AUCTION": 0,
    }

    st_a = ok(h.get("alice", f"{ST}/days/{DAY}/statement"))
    st_b = ok(h.get("bob", f"{ST}/days/{DAY}/statement"))
    assert {ln["side"] for ln in st_a["lines"]} == {"SELL"} and len(st_a["lines"]) == 3
    assert {ln["side"] for ln in st_b["lines"]} == {"BUY"} and len(st_b["lines"]) == 3
    assert {ln["status"] for ln in st_a["lines"] + st_b["lines"]} == {"SETTLED"}
    assert st_a["units_delivered"] == st_b["units_received"] == total["volume"]
    value, fees = fen_from_yuan(total["value"]), fen_from_yuan(total["fees"])
    assert fen_from_yuan(st_b["cash_paid"]) == value + fees // 2
    assert fen_from_yuan(st_a["cash_received"]) == value - fees // 2
    assert fen_from_yuan(st_a["fees"]) + fen_from_yuan(st_b["fees"]) == fees
    assert st_b["net_cash"] == "-" + st_b["cash_paid"]
    assert {ln["cash"][0] for ln in st_b["lines"]} == {"-"}  # a buyer's lines pay out
    # an operator reads anyone's statement, the same one
    assert ok(h.get("op1", f"{ST}/days/{DAY}/statement", entity_id=w.entity_a)) == st_a

    # the money and the units moved, nothing is left frozen or reserved
    assert h.cash("alice") == {
        "balance": "108015919.00",
        "frozen": "0.00",
        "available": "108015919.00",
    }
    assert h.cash("bob") == {"balance": "91903519.00", "frozen": "0.00", "available": "91903519.00"}
    assert h.units(w.a) == {"posted": 500_000 - 100_700, "held": 0}
    assert h.units(w.b) == {"posted": 100_700, "held": 0}
    # the rest of the listing expired at the close
    rest = ok(h.get("alice", f"{EX}/orders/{sell['id']}"))
    assert (rest["status"], rest["open"], rest["filled"]) == ("EXPIRED", 0, 400)
    [bar] = ok(h.get("public", f"{EX}/market/CEA2023/bars", interval="1d"))
    assert (bar["t"], bar["c"], bar["v"]) == (DAY, "80.50", 100_400)
    stats = ok(h.get("public", f"{EX}/statistics", day=DAY))
    assert stats["today"]["total"]["volume"] == 100_700
    assert h.problems() == []

    # a second run finds nothing to do and changes nothing at all
    before = market_state(h.db)
    again = ok(h.post("op1", f"{ST}/days/{DAY}/settle"))
    assert (again["settled_now"], again["failed_now"]) == (0, 0)
    assert again["total"] == total and again["modes"] == modes
    assert market_state(h.db) == before


# ---------------------------------------------------------------- bad input changes nothing


# (instrument, mode, price, quantity, status, code): each a sell alice could otherwise place
BAD_ORDERS = [
    ("CEA2023", "LISTING", "80.001", 100, 422, "PRICE_OFF_TICK"),
    ("HBEA2023", "CONTINUOUS", "80.001", 100, 422, "PRICE_OFF_TICK"),
    ("CEA2023", "LISTING", "8e1", 100, 422, "PRICE_OFF_TICK"),
    ("CEA2023", "LISTING", "-80.00", 100, 422, "PRICE_OFF_TICK"),
    ("CEA2023", "LISTING", "0.00", 100, 422, "PRICE_OFF_TICK"),
    ("CEA2023", "LISTING", "88.01", 100, 422, "PRICE_OUTSIDE_BAND"),  # 80.00 + 10 %
    ("CEA2023", "LISTING", "71.99", 100, 422, "PRICE_OUTSIDE_BAND"),
    ("HBEA2023", "CONTINUOUS", "88.01", 100, 422, "PRICE_OUTSIDE_BAND"),
    ("CEA2023", "LISTING", "80.00", 1.5, 422, "REQUEST_INVALID"),  # not a whole lot
    ("CEA2023", "LISTING", "80.00", "100", 422, "REQUEST_INVALID"),
    ("CEA2023", "LISTING", "80.00", 0, 422, "QUANTITY_NOT_LOT"),
    ("CEA2023", "LISTING", "80.00", -5, 422, "QUANTITY_NOT_LOT"),
    ("CEA2023", "LISTING", "80.00", 100_000, 422, "QUANTITY_OUTSIDE_LIMITS"),  # max 99,999
    ("CEA2023", "BLOCK", "80.00", 100, 422, "REQUEST_INVALID"),  # block trades by quote
    ("CEA2023", "CONTINUOUS", "80.00", 100, 409, "MODE_NOT_OFFERED"),  # national: no CDA
    ("NOPE2023", "LISTING", "80.00", 100, 404, "INSTRUMENT_NOT_FOUND"),
]


def test_bad_prices_and_quantities_change_nothing(http: Http) -> None:
    """One market for the whole table (a market per case would cost a second each)."""
    for instrument, mode, price, quantity, status, code in BAD_ORDERS:
        args = {"price": price, "quantity": quantity, "instrument": instrument, "mode": mode}
        send = functools.partial(http.order, "alice", side="S", **args)
        try:
            refuse(http.db, send, status, code)
        except AssertionError as err:
            raise AssertionError(f"{instrument} {mode} {price!r} × {quantity!r}: {err}") from err
    # the band's edge in whole tonnes is fine: each refusal was its rule, not the order as such
    edge = ok(http.order("alice", side="S", price="88.00", quantity=99_999), 201)
    assert edge["status"] == "OPEN"
    low = ok(http.order("bob", side="B", price="72.00", quantity=1), 201)
    assert low["status"] == "OPEN"


def test_refuse_notices_a_change(http: Http) -> None:
    """The helper every test here leans on: a refusal that changed something fails it."""

    def place_then_fail() -> httpx.Response:
        ok(http.order("alice", side="S", quantity=1), 201)
        return http.order("alice", side="S", price="80.001")

    with pytest.raises(AssertionError, match="changed"):
        refuse(http.db, place_then_fail, 422, "PRICE_OFF_TICK")


def test_block_quantity_below_the_minimum_changes_nothing(http: Http) -> None:
    http.at(DAY, "14:00")
    refuse(http.db, lambda: http.quote("alice", quantity=99_999), 422, "QUANTITY_OUTSIDE_LIMITS")
    refuse(http.db, lambda: http.quote("alice", price="104.01"), 422, "PRICE_OUTSIDE_BAND")
    assert ok(http.quote("alice", quantity=100_000), 201)["status"] == "QUOTED"


def test_orders_outside_the_session_change_nothing(http: Http) -> None:
    for hhmm in ("09:29", "11:30", "12:00", "15:00", "20:00"):  # sessions 09:30–11:30, 13:00–15:00
        http.at(DAY, hhmm)
        for instrument, mode in (("CEA2023", "LISTING"), ("HBEA2023", "CONTINUOUS")):
            refuse(
                http.db,
                lambda i=instrument, m=mode: http.order("alice", side="S", instrument=i, mode=m),
                409,
                "OUTSIDE_SESSION",
            )
    http.at(DAY, "13:00")
    ok(http.order("alice", side="S"), 201)


def test_block_deals_in_the_morning_change_nothing(http: Http) -> None:
    refuse(http.db, lambda: http.quote("alice"), 409, "OUTSIDE_SESSION")  # 10:00; blocks 13–15


def test_orders_on_a_holiday_change_nothing(http: Http) -> None:
    h = http
    ok(h.post("op1", f"{EX}/holidays", {"day": DAY, "name": "临时休市"}), 201)
    [today] = ok(h.get("public", f"{EX}/calendar", start=DAY, days=1))
    assert today == {"day": DAY, "trading": False, "holiday": "临时休市"}
    refuse(h.db, lambda: h.order("alice", side="S"), 409, "MARKET_CLOSED_DAY")
    refuse(h.db, lambda: h.order("bob", side="B", price="79.00"), 409, "MARKET_CLOSED_DAY")


def test_orders_on_a_saturday_change_nothing(http: Http) -> None:
    http.at("2026-11-28", "10:00")
    refuse(http.db, lambda: http.order("alice", side="S"), 409, "MARKET_CLOSED_DAY")
    refuse(
        http.db,
        lambda: http.order("alice", side="S", instrument="HBEA2023", mode="CONTINUOUS"),
        409,
        "MARKET_CLOSED_DAY",
    )


def test_selling_more_than_available_changes_nothing(http: Http) -> None:
    h = http
    refuse(h.db, lambda: h.order("bob", side="S", quantity=10), 409, "INSUFFICIENT_AVAILABLE")
    for _ in range(5):  # alice reserves 499,995 of her 500,000 t
        ok(h.order("alice", side="S", quantity=99_999), 201)
    assert h.units(h.w.a) == {"posted": 500_000, "held": 499_995}
    refuse(h.db, lambda: h.order("alice", side="S", quantity=6), 409, "INSUFFICIENT_AVAILABLE")
    # nor can reserved units leave through the registry
    move = {"from_account": h.w.a, "to_account": h.w.b, "unit_class": "CEA-2023", "quantity": 6}
    refuse(h.db, lambda: h.post("alice", f"{REG}/transfers", move), 409, "INSUFFICIENT_AVAILABLE")
    ok(h.order("alice", side="S", quantity=5), 201)


def test_buying_without_cash_changes_nothing(http: Http) -> None:
    h = http
    # the bank pays out all but 80.00 of bob's money: 1 t at 80.00 costs 80.40 with the fee
    ok(h.post("bank", f"{ST}/cash-accounts/{h.mk.cash_b}/defund", {"amount": "99999920.00"}))
    assert h.cash("bob")["available"] == "80.00"
    refuse(h.db, lambda: h.order("bob", side="B", quantity=1), 409, "INSUFFICIENT_CASH")
    sell = ok(h.order("alice", side="S", price="80.50", quantity=10), 201)
    refuse(h.db, lambda: h.take("bob", sell["id"], 1), 409, "INSUFFICIENT_CASH")
    ok(h.order("bob", side="B", price="79.00", quantity=1), 201)  # 79.39 fits


def test_taking_beyond_the_fifth_level_changes_nothing(http: Http) -> None:
    h = http
    ids = [
        ok(h.order("alice", side="S", price=f"80.0{n}", quantity=10), 201)["id"] for n in range(6)
    ]
    depth = ok(h.get("public", f"{EX}/market/CEA2023/depth"))
    assert [lv["price"] for lv in depth["asks"]] == ["80.00", "80.01", "80.02", "80.03", "80.04"]
    refuse(h.db, lambda: h.take("bob", ids[5], 10), 409, "BEYOND_LEVEL_5")
    assert ok(h.take("bob", ids[4], 10), 201)["status"] == "FILLED"  # the fifth level is fine


def test_taking_a_cancelled_listing_changes_nothing(http: Http) -> None:
    h = http
    sell = ok(h.order("alice", side="S", quantity=10), 201)
    gone = ok(h.post("alice", f"{EX}/orders/{sell['id']}/cancel"))
    assert gone["status"] == "CANCELLED"
    assert h.units(h.w.a)["held"] == 0
    refuse(h.db, lambda: h.take("bob", sell["id"], 10), 409, "ORDER_NOT_OPEN")
    refuse(h.db, lambda: h.post("alice", f"{EX}/orders/{sell['id']}/cancel"), 409, "ORDER_NOT_OPEN")


def test_confirming_a_block_deal_twice_changes_nothing(http: Http) -> None:
    h = http
    h.at(DAY, "14:00")
    deal = ok(h.quote("alice"), 201)
    first = ok(h.post("bob", f"{EX}/deals/{deal['id']}/confirm", {"version": 1}))
    assert (first["status"], first["confirmed"]) == ("NEGOTIATING", [h.w.entity_b])
    assert h.cash("bob")["frozen"] == "8040000.00"  # 100,000 t × 80.00 plus 0.5 %
    refuse(
        h.db,
        lambda: h.post("bob", f"{EX}/deals/{deal['id']}/confirm", {"version": 1}),
        409,
        "ALREADY_CONFIRMED",
    )
    assert h.cash("bob")["frozen"] == "8040000.00"


def test_bidding_after_the_auction_window_changes_nothing(http: Http) -> None:
    h = http
    auction = ok(
        h.announce("alice", "2026-11-23T02:00:00.000000Z", "2026-11-23T02:30:00.000000Z"), 201
    )  # 10:00–10:30 in Shanghai
    bids = f"{EX}/auctions/{auction['id']}/bids"
    ok(h.post("bob", bids, {"price": "81.00", "quantity": 500}), 201)
    h.at(DAY, "10:45")
    late = {"price": "82.00", "quantity": 500}
    refuse(h.db, lambda: h.post("bob", bids, late), 409, "AUCTION_CLOSED")
    assert ok(h.get("public", f"{EX}/auctions/{auction['id']}"))["bids"] == 1


def test_trading_a_suspended_instrument_changes_nothing(http: Http) -> None:
    h = http
    sell = ok(h.order("alice", side="S", quantity=10), 201)
    out = ok(h.post("op1", f"{EX}/instruments/CEA2023/status", {"suspended": True, "reason": "x"}))
    assert out["status"] == "SUSPENDED"
    refuse(h.db, lambda: h.order("alice", side="S"), 409, "INSTRUMENT_SUSPENDED")
    refuse(h.db, lambda: h.take("bob", sell["id"], 10), 409, "INSTRUMENT_SUSPENDED")
    ok(h.order("alice", side="S", instrument="HBEA2023", mode="CONTINUOUS"), 201)  # unaffected


def test_selling_from_a_suspended_registry_account_changes_nothing(http: Http) -> None:
    h = http
    change = {"status": "SUSPENDED", "reason": "KYC review"}
    assert ok(h.post("op1", f"{REG}/accounts/{h.w.a}/status", change))["status"] == "SUSPENDED"
    refuse(h.db, lambda: h.order("alice", side="S"), 409, "ACCOUNT_NOT_TRADABLE")
    refuse(h.db, lambda: h.order("alice", side="B", price="79.00"), 409, "ACCOUNT_NOT_TRADABLE")


def test_a_suspended_member_changes_nothing(http: Http) -> None:
    h = http
    out = ok(h.post("op1", f"{EX}/members/{h.w.entity_a}/status", {"suspended": True}))
    assert out["status"] == "SUSPENDED"
    refuse(h.db, lambda: h.order("alice", side="S"), 409, "MEMBER_SUSPENDED")
    sell = ok(h.order("bob", side="B", price="79.00", quantity=1), 201)
    refuse(h.db, lambda: h.take("alice", sell["id"], 1), 409, "MEMBER_SUSPENDED")


def test_the_writer_process_sees_suspensions_made_after_it_remembered(market: Market) -> None:
    """The writer process keeps what order commands only read (members, instruments, the market
    flag) from one batch to the next while nothing else commits: a suspension committed by the
    API in between reaches the next order, and so does lifting it."""
    app = create_app(market.w.db, console=False, duties_every_s=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert isinstance(app.state.exchange._writer, WriterProcess)
        h = Http(market, client)
        ok(h.order("alice", side="S", price="80.50", quantity=1), 201)  # remembered now
        status = f"{EX}/members/{h.w.entity_a}/status"
        ok(h.post("op1", status, {"suspended": True}))
        refuse(h.db, lambda: h.order("alice", side="S"), 409, "MEMBER_SUSPENDED")
        ok(h.post("op1", status, {"suspended": False}))
        ok(h.order("alice", side="S", price="80.50", quantity=1), 201)
        instrument = f"{EX}/instruments/CEA2023/status"
        ok(h.post("op1", instrument, {"suspended": True, "reason": "x"}))
        refuse(h.db, lambda: h.order("alice", side="S"), 409, "INSTRUMENT_SUSPENDED")
        ok(h.post("op1", instrument, {"suspended": False, "reason": "y"}))
        ok(h.order("alice", side="S", price="80.50", quantity=1), 201)
        assert h.problems() == []


def test_a_replayed_order_is_placed_once(http: Http) -> None:
    h = http
    key = "replay-order-0001"
    first = ok(h.order("alice", side="S", quantity=10, key=key), 201)
    state = market_state(h.db)
    again = ok(h.order("alice", side="S", quantity=10, key=key), 201)
    assert again == first
    assert market_state(h.db) == state
    assert [o["id"] for o in ok(h.get("alice", f"{EX}/orders"))] == [first["id"]]
    assert h.units(h.w.a)["held"] == 10
    refuse(
        h.db,
        lambda: h.order("alice", side="S", quantity=11, key=key),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    # a take replayed is one trade
    take_key = "replay-take-0001"
    taken = ok(h.take("bob", first["id"], 4, key=take_key), 201)
    assert ok(h.take("bob", first["id"], 4, key=take_key), 201) == taken
    assert len(ok(h.get("public", f"{EX}/market/CEA2023/trades"))) == 1
    refuse(h.db, lambda: h.take("bob", first["id"], 5, key=take_key), 409, "IDEMPOTENCY_KEY_REUSED")


# ---------------------------------------------------------------- the lean order routes


LEAN = {
    ("POST", f"{EX}/orders"),
    ("POST", f"{EX}/orders/{{order_id}}/cancel"),
    ("POST", f"{EX}/orders/{{order_id}}/amend"),
    ("POST", f"{EX}/takes"),
}


def test_the_order_commands_skip_the_router_and_keep_its_answers(
    http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LeanRoutes serves exactly the four order commands, as documented; any other method on
    their paths still meets the router; their errors are the app's problem+json, an unexpected
    one included."""
    app = http.c.app
    lean = {
        (method, path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if (method.upper(), path) in LEAN
    }
    assert {(m.upper(), p) for m, p in lean} == LEAN  # all four documented
    served: list[tuple[str, bool]] = []
    real = exchange_api._order_command

    async def spy(request: Any, name: str, *args: Any, **fields: Any) -> Any:
        served.append((name, "endpoint" in request.scope))  # the router's mark on a request
        return await real(request, name, *args, **fields)

    monkeypatch.setattr(exchange_api, "_order_command", spy)
    order = ok(http.order("alice", side="S", price="80.50", quantity=10), 201)
    ok(http.post("alice", f"{EX}/orders/{order['id']}/amend", {"quantity": 5}))
    ok(http.post("alice", f"{EX}/orders/{order['id']}/cancel"))
    refuse(http.db, lambda: http.take("bob", order["id"], 5), 409, "ORDER_NOT_OPEN")
    assert served == [
        ("place_order", False),
        ("amend_order", False),
        ("cancel_order", False),
        ("take", False),
    ]
    # the router still answers what LeanRoutes does not take
    r = http.c.get(f"{EX}/takes", headers=http.h["bob"])
    assert_problem(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "POST"
    refuse(
        http.db, lambda: http.post("bob", f"{EX}/takes", {"order_id": 1}), 422, "REQUEST_INVALID"
    )
    refuse(http.db, lambda: http.c.post(f"{EX}/takes", json={}), 401, "TOKEN_MISSING")

    async def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(ExchangeService, "submit_async", broken)
    body = assert_problem(http.order("alice", side="S", price="80.50", quantity=1), 500)
    assert body["code"] == "INTERNAL"


# ---------------------------------------------------------------- many at once, through the writer


def test_concurrent_orders_through_the_group_commit_writer(market: Market) -> None:
    """Under the lifespan (the writer in its own process), order commands from many threads
    share group-commit batches: each is still decided against what the ones before it in its
    batch reserved and froze."""
    app = create_app(market.w.db, console=False, duties_every_s=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert isinstance(app.state.exchange._writer, WriterProcess)  # settings' default
        h = Http(market, client)
        ok(h.post("bank", f"{ST}/cash-accounts/{market.cash_b}/defund", {"amount": "99999000.00"}))
        sells = [lambda: h.order("alice", side="S", price="80.50", quantity=99_999)] * 8
        buys = [lambda: h.order("bob", side="B", price="80.00", quantity=1)] * 16  # 80.40 each
        key = "concurrent-replay-0001"
        same = [lambda: h.order("alice", side="B", price="79.00", quantity=2, key=key)] * 4
        jobs = sells + buys + same
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            responses = list(pool.map(lambda job: job(), jobs))
    s, b, k = responses[:8], responses[8:24], responses[24:]
    assert sorted(r.status_code for r in s) == [201] * 5 + [409] * 3  # 5 × 99,999 ≤ 500,000
    assert {r.json()["code"] for r in s if r.status_code == 409} == {"INSUFFICIENT_AVAILABLE"}
    assert [r.status_code for r in k] == [201] * 4  # one order, the same answer four times
    assert len({r.json()["id"] for r in k}) == 1
    assert sorted(r.status_code for r in b) == [201] * 12 + [409] * 4  # 1,000.00 // 80.40
    assert {r.json()["code"] for r in b if r.status_code == 409} == {"INSUFFICIENT_CASH"}
    h = Http(market)
    assert h.units(market.w.a) == {"posted": 500_000, "held": 499_995}
    assert h.cash("bob") == {"balance": "1000.00", "frozen": "964.80", "available": "35.20"}
    assert h.cash("alice")["frozen"] == "158.79"  # 2 t × 79.00 plus 0.79 fee, frozen once
    assert len(ok(h.get("bob", f"{EX}/orders"))) == 12
    assert len(ok(h.get("alice", f"{EX}/orders"))) == 6
    assert h.problems() == []


# ---------------------------------------------------------------- a failed settlement leg


def test_a_failed_leg_is_reported_and_leaves_both_sides_whole(http: Http) -> None:
    h, w = http, http.w
    bob_before, alice_units = h.cash("bob"), h.units(w.a)
    sell = ok(h.order("alice", side="S", price="80.00", quantity=500), 201)
    [trade] = ok(h.take("bob", sell["id"], 500), 201)["trades"]
    assert h.cash("bob")["frozen"] == "40200.00"
    holds = ok(h.get("op1", f"{REG}/holds", account_id=w.a))
    [hold] = [x for x in holds if x["reason"] == f"exchange {sell['id']}"]
    assert (hold["kind"], hold["quantity"]) == ("EXCHANGE_RESERVATION", 500)
    # the seller cannot free what its order reserved; only an operator may
    release = f"{REG}/holds/{hold['id']}/release"
    refuse(h.db, lambda: h.post("alice", release, {"reason": "mine"}), 403, "RELEASE_NOT_ALLOWED")
    released = ok(h.post("op1", release, {"reason": "lifted"}))
    assert released["status"] == "RELEASED"

    h.at(DAY, "15:30")
    out = ok(h.post("op1", f"{ST}/days/{DAY}/settle"))
    assert (out["settled_now"], out["failed_now"]) == (0, 1)
    [failure] = ok(h.get("op1", f"{ST}/days/{DAY}/failures"))
    assert failure["trade_id"] == trade["id"] and failure["status"] == "FAILED"
    assert failure["reason"] and failure["transfer_id"] is None
    assert out["total"]["failed"] == 1 and out["total"]["settled"] == 0
    for who, side in (("alice", "SELL"), ("bob", "BUY")):
        [line] = ok(h.get(who, f"{ST}/days/{DAY}/statement"))["lines"]
        assert (line["side"], line["status"], line["reason"]) == (side, "FAILED", failure["reason"])
    # both sides whole: bob's money back and unfrozen, alice's units where they were
    assert h.cash("bob") == {**bob_before, "frozen": "0.00"} == bob_before
    assert h.units(w.a) == alice_units == {"posted": 500_000, "held": 0}
    assert h.units(w.b) == {"posted": 0, "held": 0}
    assert h.problems() == []
    before = market_state(h.db)
    assert ok(h.post("op1", f"{ST}/days/{DAY}/settle"))["failed_now"] == 0
    assert market_state(h.db) == before


# ---------------------------------------------------------------- the WebSocket feed


def receive(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next message, or a failure after `timeout` s (TestClient's receive would block)."""

    async def one() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(one)
    assert message["type"] == "websocket.send", message
    out: dict[str, Any] = json.loads(message["text"])
    return out


@pytest.mark.parametrize("lifespan", [False, True], ids=["no-lifespan", "lifespan"])
def test_feed_sends_depth_then_trades(market: Market, lifespan: bool) -> None:
    app = create_app(market.w.db, console=False, duties_every_s=0)
    client = TestClient(app, raise_server_exceptions=False)
    with contextlib.ExitStack() as stack:
        if lifespan:
            stack.enter_context(client)
        assert (app.state.exchange._writer is not None) is lifespan
        h = Http(market, client)
        ok(h.order("alice", side="S", price="80.50", quantity=10), 201)  # CEA2023: not this feed
        with client.websocket_connect(f"{EX}/feed?instrument=HBEA2023") as ws:
            assert receive(ws) == {
                "type": "depth",
                "instrument": "HBEA2023",
                "mode": "CONTINUOUS",
                "bids": [],
                "asks": [],
            }
            ok(h.continuous("alice", side="S", price="79.00", quantity=300), 201)
            depth = receive(ws)
            assert depth["type"] == "depth" and depth["instrument"] == "HBEA2023"
            assert depth["asks"] == [{"price": "79.00", "quantity": 300, "orders": 1}]
            ok(h.order("alice", side="S", price="80.50", quantity=5), 201)  # filtered out
            ok(h.continuous("bob", side="B", price="81.00", quantity=200), 201)
            trade = receive(ws)
            assert trade["type"] == "trade", trade
            assert (trade["instrument"], trade["mode"]) == ("HBEA2023", "CONTINUOUS")
            assert (trade["price"], trade["quantity"], trade["taker_side"]) == ("80.00", 200, "B")
            after = receive(ws)
            assert after["type"] == "depth"
            assert after["asks"] == [{"price": "79.00", "quantity": 100, "orders": 1}]


def test_feed_without_a_filter_snapshots_every_book(http: Http) -> None:
    with http.c.websocket_connect(f"{EX}/feed") as ws:
        first = [receive(ws) for _ in range(2)]
    assert {(m["type"], m["instrument"], m["mode"]) for m in first} == {
        ("depth", "CEA2023", "LISTING"),
        ("depth", "HBEA2023", "CONTINUOUS"),
    }


# ---------------------------------------------------------------- regressions


def test_calendar_far_in_the_future_is_a_422(http: Http) -> None:
    """Was a 500 (OverflowError past date.max) at 9118905; fixed in 3ebdef8."""
    r = http.get("public", f"{EX}/calendar", start="9999-12-31", days=2)
    assert_problem(r, 422, "DAY_INVALID")
    assert len(ok(http.get("public", f"{EX}/calendar", start="9998-01-01", days=31))) == 31


def test_settling_today_leaves_tomorrows_auction_open(http: Http) -> None:
    """Settling finished every open auction, tomorrow's too, at 9118905; fixed in 3ebdef8."""
    h = http
    h.at(DAY, "14:00")
    auction = ok(
        h.announce("alice", "2026-11-24T02:00:00.000000Z", "2026-11-24T03:00:00.000000Z"), 201
    )  # Tuesday 10:00–11:00 in Shanghai
    h.at(DAY, "15:30")
    ok(h.post("op1", f"{ST}/days/{DAY}/settle"))  # Monday's settlement
    h.at("2026-11-24", "10:15")
    assert ok(h.get("public", f"{EX}/auctions/{auction['id']}"))["status"] == "OPEN"
    bid = {"price": "81.00", "quantity": 500}
    ok(h.post("bob", f"{EX}/auctions/{auction['id']}/bids", bid), 201)


def test_run_due_runs_the_exchange_duties_too(http: Http) -> None:
    """POST /registry/run-due is the server's duties, now: a past trading day's books close
    (its resting orders expire and free what they froze) and ended auctions finish."""
    h = http
    h.at(DAY, "10:00")
    rest = ok(h.continuous("alice", side="S", price="80.00", quantity=100), 201)
    h.at(DAY, "14:00")
    auction = ok(
        h.announce("alice", "2026-11-23T06:10:00.000000Z", "2026-11-23T06:50:00.000000Z"), 201
    )  # 14:10–14:50 in Shanghai
    h.at(DAY, "14:55")
    out = ok(h.post("op1", f"{REG}/run-due"))
    assert (out["auctions_finished"], out["days_closed"]) == (1, [])
    assert ok(h.get("public", f"{EX}/auctions/{auction['id']}"))["status"] != "OPEN"
    assert ok(h.get("alice", f"{EX}/orders/{rest['id']}"))["status"] == "OPEN"
    h.at("2026-11-24", "09:00")
    out = ok(h.post("op1", f"{REG}/run-due"))
    assert out["days_closed"] == [DAY]
    assert ok(h.get("alice", f"{EX}/orders/{rest['id']}"))["status"] == "EXPIRED"
    assert h.units(h.w.a)["held"] == 0
    again = ok(h.post("op1", f"{REG}/run-due"))
    assert (again["auctions_finished"], again["days_closed"]) == (0, [])
