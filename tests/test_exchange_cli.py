"""`carbonhub exchange …`, `carbonhub settle` and `carbonhub settlement …` end to end on the
market fixture's clock (orders need a trading session): every trading mode, market data, the
day's settlement and its report; bad input is one error line and changes nothing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from carbonhub.core.db import normalise_url
from carbonhub.core.quantities import fen_from_yuan
from tests.conftest import Market
from tests.test_cli import Cli, cli  # noqa: F401 - the fixture, used by name

DAY = "2026-11-23"  # the market fixture's Monday


def counts(url: str) -> dict[str, int]:
    """What a refused command must leave as it was."""
    engine = sa.create_engine(normalise_url(url))
    tables = (
        "orders",
        "trades",
        "deals",
        "auctions",
        "auction_bids",
        "holds",
        "cash_freezes",
        "cash_entries",
        "book_commands",
        "settlements",
        "journal",
    )
    try:
        with engine.connect() as c:
            return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
    finally:
        engine.dispose()


def test_a_trading_day_through_the_cli(cli: Cli, market: Market) -> None:  # noqa: F811
    cli.clock = market.clock
    for user in ("alice", "bob", "op1"):
        cli.login(user)

    def ex(user: str, *args: str) -> Any:
        return cli.ok("exchange", *args, user=user)

    assert {i["code"] for i in ex("alice", "instruments")} >= {"CEA2023", "HBEA2023"}

    # continuous (Hubei): a resting sell, a crossing buy at the middle price, amend, cancel
    sell = ex("alice", "order", "HBEA2023", "S", "80.00", "100", "--mode", "CONTINUOUS")
    assert sell["status"] == "OPEN"
    buy = ex("bob", "order", "HBEA2023", "B", "81.00", "40", "--mode", "CONTINUOUS")
    assert buy["status"] == "FILLED" and [t["price"] for t in buy["trades"]] == ["80.00"]
    assert ex("alice", "amend", sell["id"], "50")["open"] == 50
    assert ex("alice", "cancel", sell["id"])["status"] == "CANCELLED"

    # listing: a resting offer taken by its id
    offer = ex("alice", "order", "CEA2023", "S", "80.50", "400")
    assert ex("bob", "depth", "CEA2023")["asks"][0] == {
        "price": "80.50",
        "quantity": 400,
        "orders": 1,
    }
    taken = ex("bob", "take", offer["id"], "100")
    assert [(t["price"], t["quantity"]) for t in taken["trades"]] == [("80.50", 100)]
    assert {o["id"] for o in ex("alice", "orders")} >= {sell["id"], offer["id"]}

    # block deal in the afternoon: quote, both confirm
    market.clock.at(DAY, "14:00")
    deal = ex("alice", "quote", "CEA2023", "S", "80.00", "100000")
    ex("bob", "confirm", deal["id"], "1")
    done = ex("alice", "confirm", deal["id"], "1")
    assert done["status"] == "DONE" and done["history"][0]["quote"] == ["80.00", 100_000]

    # one-sided auction: announced, bid in its window, finished with the day
    auction = ex(
        "alice",
        "announce",
        "CEA2023",
        "1000",
        "80.00",
        "--opens-at",
        "2026-11-23T06:10:00.000000Z",  # 14:10–14:50 in Shanghai
        "--closes-at",
        "2026-11-23T06:50:00.000000Z",
    )
    market.clock.at(DAY, "14:30")
    assert ex("bob", "bid", auction["id"], "81.00", "600")["quantity"] == 600

    # market data before the close
    assert [t["quantity"] for t in ex("bob", "trades", "HBEA2023")] == [40]
    bars = ex("bob", "bars", "CEA2023", "--interval", "1m", "--day", DAY)
    assert sum(b["v"] for b in bars) == 100 + 100_000 and max(b["h"] for b in bars) == "80.50"

    # after the close: settle (twice), the report and a statement
    market.clock.at(DAY, "15:30")
    settled = cli.ok("settle", "--date", DAY, user="op1")
    assert (settled["settled_now"], settled["failed_now"]) == (4, 0)
    again = cli.ok("settle", "--date", DAY, user="op1")
    assert again["settled_now"] == 0 and again["total"] == settled["total"]
    report = cli.ok("settlement", "report", DAY, user="bob")
    total = report["total"]
    assert (total["trades"], total["volume"]) == (4, 40 + 100 + 100_000 + 600)
    assert total["value"] == "8059850.00"  # 3,200.00 + 8,050.00 + 8,000,000.00 + 48,600.00
    assert sum(fen_from_yuan(m["value"]) for m in report["modes"].values()) == fen_from_yuan(
        total["value"]
    )
    statement = cli.ok("settlement", "statement", DAY, user="alice")
    assert statement["units_delivered"] == total["volume"]
    assert {line["status"] for line in statement["lines"]} == {"SETTLED"}
    stats = ex("bob", "statistics", "--day", DAY)
    assert stats["day"] == DAY
    assert [d["day"] for d in ex("bob", "index")][-1] == DAY
    assert market.problems() == []


def test_bad_input_is_one_error_line_and_changes_nothing(
    cli: Cli,  # noqa: F811
    market: Market,
) -> None:
    cli.clock = market.clock
    for user in ("alice", "bob", "op1"):
        cli.login(user)
    resting = cli.ok("exchange", "order", "CEA2023", "S", "80.00", "100", user="alice")
    before = counts(cli.url)
    cases = {
        "off the tick": (["order", "CEA2023", "S", "80.001", "10"], "PRICE"),
        "outside the band": (["order", "CEA2023", "S", "95.00", "10"], "PRICE_OUTSIDE_BAND"),
        "no quantity": (["order", "CEA2023", "S", "80.00", "0"], "QUANTITY"),
        "selling units one does not have": (
            ["order", "CEA2023", "S", "80.00", "10"],
            "INSUFFICIENT",
        ),
        "unknown instrument": (["order", "CEA2099", "S", "80.00", "10"], "INSTRUMENT"),
        "taking too much": (["take", resting["id"], "101"], "TAKE_EXCEEDS_LISTING"),
        "taking what is gone": (["take", "no-such-order", "1"], "LISTING_NOT_FOUND"),
        "a block deal in the morning": (["quote", "CEA2023", "S", "80.00", "100000"], "SESSION"),
    }
    wrong = {}
    for case, (args, code) in cases.items():
        user = "bob" if args[0] == "take" or case.startswith("selling") else "alice"
        try:
            line = cli.error("exchange", *args, user=user)
            assert code in line, line
            assert counts(cli.url) == before, "state changed"
        except AssertionError as err:
            wrong[case] = str(err).splitlines()[0]
    assert not wrong, wrong
    market.clock.at(DAY, "14:00")
    line = cli.error("exchange", "quote", "CEA2023", "S", "80.00", "99999", user="alice")
    assert "QUANTITY" in line
    assert "DAY_NOT_CLOSED" in cli.error("settle", "--date", DAY, user="op1")
    assert "DAY_INVALID" in cli.error("settle", "--date", "2026-13-01", user="op1")
    assert "ROLE" in cli.error("settle", "--date", DAY, user="alice")
    line = cli.error("exchange", "order", "CEA2023", "S", "80.00", "10", process=True)
    assert line.startswith("error not logged in")
    assert counts(cli.url) == before
    assert market.problems() == []
