"""The exchange and settlement console in real headless Chromium against a real server.

The server is the whole application (`create_app`, in a subprocess started as
`python -m tests.test_console_exchange URL PORT NOW`), so the console trades through the same
ExchangeService, books and order writer as the API. Its clock stands still at NOW, Monday
2026-11-23 13:30 in Shanghai, when every mode is in session. Before the browser arrives, the test
process seeds the database through the services: two members with funded cash accounts,
CEA2023 (national: listing, block, auction) and HBEA2023 (Hubei: continuous), nine settled
trading days of history, an unsettled Friday with trades in all four modes, and today's resting
orders and an open auction. Screenshots go to tests/screenshots/.
"""

from __future__ import annotations

import ast
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from carbonhub.core.auth import Actor, AuthService, Role
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.core.timefmt import SHANGHAI, iso, parse_iso
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService, SettlementService
from tests import test_console
from tests.conftest import Clock
from tests.console_support import ROOT, key, prepare, served, wait_ready
from tests.test_console import (
    CHROMIUM,
    CHROMIUM_ARGS,
    notification,
    pick,
    ready,
    shot,
)

pytestmark = pytest.mark.slow

TODAY = "2026-11-23"  # a Monday
FRIDAY = "2026-11-20"  # traded in every mode, not settled: the report test settles it
NOW = "13:30"
USERS = ("op1", "op2", "alice", "bob", "hankou")


def password(username: str) -> str:
    return f"password-{username}"


def shanghai(day: str, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    y, mo, d = map(int, day.split("-"))
    return datetime(y, mo, d, h, m, tzinfo=SHANGHAI).astimezone(UTC)


# ------------------------------------------------------------------ the market


@dataclass
class Backend:
    """The services on the console's database, for seeding and for checking what it shows."""

    db: Database
    exchange: ExchangeService
    cash: CashService
    settlement: SettlementService
    registry: RegistryService


def backend(url: str, clock: Clock) -> Backend:
    db = Database(Settings(database_url=url), clock)
    registry, cash = RegistryService(db), CashService(db)
    exchange = ExchangeService(db, registry, cash)
    return Backend(db, exchange, cash, SettlementService(db, registry, cash, exchange), registry)


@dataclass(frozen=True)
class Seeded:
    url: str
    entity_a: str  # alice's enterprise (华能武汉), a member trading from account `a`
    entity_b: str  # bob's (武汉钢铁)
    a: str
    b: str
    cash_a: str
    cash_b: str
    auction_today: str  # alice sells 20,000 t, bids open until 14:30
    actors: dict[str, Actor] = field(default_factory=dict)


def seed(url: str) -> Seeded:
    clock = Clock(shanghai("2026-11-06", "09:00"))
    s = backend(url, clock)
    try:
        return _seed(url, s, clock)
    finally:
        s.db.dispose()


def _seed(url: str, s: Backend, clock: Clock) -> Seeded:
    auth, reg, cash, x = AuthService(s.db), s.registry, s.cash, s.exchange
    ea = auth.create_entity("华能武汉发电有限公司", "enterprise", "91420100MA4KX0001A")
    eb = auth.create_entity("武汉钢铁有限公司", "enterprise", "91420100MA4KX0002B")
    bank = auth.create_entity("汉口银行股份有限公司", "bank", "91420100MA4KX0003C")
    entity = {"alice": ea["id"], "bob": eb["id"], "hankou": bank["id"]}
    roles = {"op1": "operator", "op2": "operator", "hankou": "bank"}
    actors: dict[str, Actor] = {}
    for name in USERS:
        u = auth.create_user(name, password(name), roles.get(name, "enterprise"), entity.get(name))
        actors[name] = Actor(u["id"], u["username"], Role(u["role"]), u["entity_id"])
    op1, op2, alice, bob, hankou = (actors[n] for n in USERS)
    a = reg.request_account(alice, key(), type="HOLDING", name="华能武汉 持有账户")["id"]
    b = reg.request_account(bob, key(), type="HOLDING", name="武钢 持有账户")["id"]
    reg.decide_account(op1, key(), a, approve=True)
    reg.decide_account(op1, key(), b, approve=True)
    issued = reg.issue(op1, key(), unit_class="CEA-2023", quantity=1_000_000)
    reg.approve(op2, key(), issued["id"])
    for account, quantity in ((a, 700_000), (b, 300_000)):
        al = reg.allocate(op1, key(), to_account=account, unit_class="CEA-2023", quantity=quantity)
        reg.approve(op2, key(), al["id"])
    cash_accounts = []
    for e in (ea, eb):
        ca = cash.open_account(hankou, key(), entity_id=e["id"])["id"]
        cash.fund(hankou, key(), account_id=ca, amount="100000000.00")
        cash_accounts.append(ca)
    x.admit_member(op1, key(), entity_id=ea["id"], account_id=a)
    x.admit_member(op1, key(), entity_id=eb["id"], account_id=b)
    for code, preset, name in (
        ("CEA2023", "national", "全国碳排放配额 2023"),
        ("HBEA2023", "hubei", "湖北碳排放配额 2023"),
    ):
        x.create_instrument(
            op1,
            key(),
            code=code,
            unit_class="CEA-2023",
            name=name,
            reference_price="80.00",
            preset=preset,
        )

    rng = random.Random(2026)

    def trade(code: str, mode: str, day: str, hhmm: str, drift: float) -> None:
        """Alice sells, bob buys (takes the listing, or crosses), near the previous close."""
        clock.at(day, hhmm)
        prev = float(x.instrument(code)["prev_close"])
        price = f"{prev * (1 + drift + rng.uniform(-0.02, 0.02)):.2f}"
        qty = rng.randint(5, 40) * 100
        sell = x.place_order(
            alice, key(), instrument=code, mode=mode, side="S", price=price, quantity=qty
        )
        if mode == "LISTING":
            x.take(bob, key(), order_id=sell["id"], quantity=qty)
        else:
            x.place_order(
                bob, key(), instrument=code, mode=mode, side="B", price=price, quantity=qty
            )

    day = date(2026, 11, 9)
    while day.isoformat() <= FRIDAY:
        d = day.isoformat()
        drift = rng.uniform(-0.03, 0.035)
        for hhmm in ("09:45", "10:30", "13:20", "14:10"):
            trade("CEA2023", "LISTING", d, hhmm, drift)
            trade("HBEA2023", "CONTINUOUS", d, hhmm, drift)
        if d != FRIDAY:
            clock.at(d, "15:30")
            s.settlement.settle_day(op1, day)
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)

    # Friday: an auction in the morning, a block deal in the afternoon; results published at the
    # close, the day itself left for the report test to settle
    clock.at(FRIDAY, "10:40")
    auction = x.announce(
        alice,
        key(),
        instrument="CEA2023",
        side="S",
        quantity=20_000,
        reserve_price="78.00",
        opens_at=iso(shanghai(FRIDAY, "10:45")),
        closes_at=iso(shanghai(FRIDAY, "11:15")),
    )
    clock.at(FRIDAY, "10:50")
    x.bid(bob, key(), auction["id"], price="79.60", quantity=15_000)
    x.bid(bob, key(), auction["id"], price="78.20", quantity=8_000)
    clock.at(FRIDAY, "14:30")
    deal = x.quote(alice, key(), instrument="CEA2023", side="S", price="80.50", quantity=100_000)
    deal = x.confirm(bob, key(), deal["id"], version=deal["version"])
    x.confirm(alice, key(), deal["id"], version=deal["version"])
    clock.at(FRIDAY, "15:10")
    x.finish_due_auctions()

    # today: a morning of continuous trading, resting orders on both books, an open auction
    for hhmm in ("09:35", "09:50", "10:20", "11:05"):
        trade("HBEA2023", "CONTINUOUS", TODAY, hhmm, 0.0)
    clock.at(TODAY, "11:10")
    for code, mode in (("CEA2023", "LISTING"), ("HBEA2023", "CONTINUOUS")):
        low, high = (float(p) for p in x.instrument(code)["bands"][mode])
        for n in range(3):
            x.place_order(
                alice,
                key(),
                instrument=code,
                mode=mode,
                side="S",
                price=f"{high - 0.5 * n - 0.2:.2f}",
                quantity=1000 + 500 * n,
            )
            x.place_order(
                bob,
                key(),
                instrument=code,
                mode=mode,
                side="B",
                price=f"{low + 0.5 * n + 0.2:.2f}",
                quantity=800 + 300 * n,
            )
    today = x.announce(
        alice,
        key(),
        instrument="CEA2023",
        side="S",
        quantity=20_000,
        reserve_price="78.00",
        opens_at=iso(shanghai(TODAY, "13:00")),
        closes_at=iso(shanghai(TODAY, "14:30")),
    )
    return Seeded(
        url,
        ea["id"],
        eb["id"],
        a,
        b,
        cash_accounts[0],
        cash_accounts[1],
        today["id"],
        actors,
    )


# ------------------------------------------------------------------ the server


def serve(url: str, port: int, now: str) -> None:
    """The whole app on a clock that stands still at `now` (UTC text)."""
    import uvicorn

    from carbonhub.api import create_app

    moment = parse_iso(now)
    db = Database(Settings(database_url=url), lambda: moment)
    app = create_app(db, duties_every_s=0)

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------ the browser


class Console(test_console.Console):
    """The registry console's browser harness, on this module's market and clock."""

    def __init__(self, base: str, seeded: Seeded, browser: Browser) -> None:
        super().__init__(base, seeded, browser)  # type: ignore[arg-type]  # its own Seeded
        self.clock = Clock(shanghai(TODAY, NOW))
        self.svc = backend(seeded.url, self.clock)

    def password(self, username: str) -> str:
        return password(username)

    def actor(self, username: str) -> Actor:
        return self.seeded.actors[username]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console-exchange")
    url = f"sqlite:///{work / 'carbonhub.db'}"
    prepare(url)
    # the server starts while the test seeds the market
    with served(url, work, "tests.test_console_exchange", iso(shanghai(TODAY, NOW))) as (
        base,
        proc,
    ):
        seeded = seed(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            wait_ready(base, proc)
            c = Console(base, seeded, browser)
            yield c
            browser.close()
            c.svc.db.dispose()
        assert c.external == [], f"the console loaded from outside: {c.external}"


def cells(page: Page, testid: str, row_text: str | re.Pattern[str]) -> list[str]:
    row = page.get_by_test_id(testid).locator("tbody tr").filter(has_text=row_text).first
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def number(text: str) -> float:
    return float(text.replace(",", "")) if text.strip() not in ("", "—") else 0.0


def place(page: Page, side: str, price: str, quantity: int, tif: str | None = None) -> None:
    """Fill the order form on an instrument page and submit it."""
    form = page.get_by_test_id("order-card")
    form.get_by_test_id("f-side").get_by_text(side, exact=True).click()
    form.get_by_test_id("f-price").fill(price)
    form.get_by_test_id("f-quantity").fill(str(quantity))
    if tif is not None:
        pick(page, form.get_by_test_id("f-tif"), tif)
    form.get_by_test_id("order-submit").click()


# ------------------------------------------------------------------ overview and instrument pages


def test_market_overview_shows_the_index_quotes_and_statistics(console: Console) -> None:
    x = console.svc.exchange
    page = console.user("alice")
    page.locator(".q-drawer").get_by_text("行情总览").click()
    page.wait_for_url(f"{console.base}/market")
    ready(page)
    expect(page.get_by_test_id("market-day")).to_contain_text(TODAY)
    levels = x.index()
    assert len(levels) >= 9  # one level per settled day
    expect(page.get_by_test_id("index-level")).to_have_text(levels[-1]["level"])
    expect(page.get_by_test_id("index-chart").locator("canvas").first).to_be_visible()
    quotes = page.get_by_test_id("quotes-table")
    for code in ("CEA2023", "HBEA2023"):
        q = x.quote_summary(code)
        row = cells(page, "quotes-table", code)
        # code and name stand in one cell; whether innerText puts a line break between them
        # depends on layout timing, so compare the text without it
        assert row[0].replace("\n", "") == code + x.instrument(code)["name"]
        assert q["prev_close"] in row
        expect(quotes.get_by_role("link", name=code)).to_be_visible()
    stats = x.statistics()
    total = cells(page, "statistics-table", "合计")
    assert total[1] == f"{stats['today']['total']['volume']:,}"
    assert total[3] == f"{stats['year']['total']['volume']:,}"
    expect(page.get_by_test_id("statistics-table")).to_contain_text("挂牌协议")
    expect(page.get_by_test_id("statistics-table")).to_contain_text("协商议价")
    shot(page, "market_overview", full_page=True)
    quotes.get_by_role("link", name="HBEA2023").click()
    page.wait_for_url(f"{console.base}/market/HBEA2023")


def test_instrument_page_shows_candles_depth_and_the_order_form(console: Console) -> None:
    x = console.svc.exchange
    inst = x.instrument("HBEA2023")
    page = console.user("alice", "/market/HBEA2023")
    expect(page.get_by_test_id("instrument-code")).to_have_text("HBEA2023")
    chart = page.get_by_test_id("k-chart")
    expect(chart.locator("canvas").first).to_be_visible()
    depth = page.get_by_test_id("depth-continuous")
    expect(depth.locator("tbody tr")).to_have_count(10)
    book = x.depth("HBEA2023", "CONTINUOUS")
    assert cells(page, "depth-continuous", "卖1")[1] == book["asks"][0]["price"]
    assert cells(page, "depth-continuous", "买1")[1] == book["bids"][0]["price"]
    low, high = inst["bands"]["CONTINUOUS"]
    form = page.get_by_test_id("order-card")
    expect(form.get_by_test_id("order-rules-band")).to_have_text(f"±10% · {low} – {high}")
    expect(form.get_by_test_id("order-rules-prev_close")).to_have_text(inst["prev_close"])
    expect(form.get_by_test_id("f-tif")).to_be_visible()
    expect(page.get_by_test_id("q-prev_close")).to_have_text(inst["prev_close"])
    expect(page.get_by_test_id("trades-table").locator("tbody tr").first).to_contain_text(
        "协商议价"
    )
    shot(page, "market_instrument", full_page=True)

    page.get_by_test_id("chart-interval").get_by_text("分钟K（当日）").click()
    expect(chart.locator("canvas").first).to_be_visible()
    shot(page, "market_instrument_minutes")
    page.get_by_test_id("chart-interval").get_by_text("日K").click()

    console.goto(page, "/market/CEA2023")  # a listing instrument: the listings and a post form
    expect(page.get_by_test_id("depth-listing")).to_be_visible()
    expect(page.get_by_test_id("listings-table").locator("tbody tr")).to_have_count(6)
    expect(page.get_by_test_id("order-submit")).to_have_text(re.compile("挂牌"))
    expect(page.get_by_test_id("f-tif")).to_have_count(0)
    console.goto(page, "/market/NOPE")
    expect(page.get_by_test_id("instrument-error")).to_contain_text("INSTRUMENT_NOT_FOUND")


def test_a_continuous_order_rests_in_my_orders_and_trades_with_a_crossing_order(
    console: Console,
) -> None:
    x, alice = console.svc.exchange, console.actor("alice")
    inst = x.instrument("HBEA2023")
    price, high = inst["prev_close"], float(inst["bands"]["CONTINUOUS"][1])
    seller = console.user("alice", "/market/HBEA2023")
    place(seller, "卖出", price, 700)
    notification(seller, re.compile("已受理：未成交"))
    mine = seller.get_by_test_id("my-orders").locator("tbody tr").first
    expect(mine).to_contain_text("未成交")
    expect(mine).to_contain_text("700")
    expect(seller.get_by_test_id("depth-continuous")).to_contain_text(price)
    order_id = x.orders(alice, instrument="HBEA2023", status="OPEN", limit=1)[0]["id"]

    buyer = console.user("bob", "/market/HBEA2023")
    place(buyer, "买入", price, 700, "即时成交剩余撤销")
    notification(buyer, re.compile("已受理：全部成交，已成交 700 吨"))
    expect(buyer.get_by_test_id("my-fills").locator("tbody tr").first).to_contain_text("700")
    expect(buyer.get_by_test_id("trades-table").locator("tbody tr").first).to_contain_text(price)
    shot(buyer, "market_order_filled", full_page=True)

    # the seller's page polls: the fill reaches its orders, fills and trades without a reload
    expect(mine).to_contain_text("全部成交", timeout=8_000)
    expect(seller.get_by_test_id("my-fills").locator("tbody tr").first).to_contain_text("700")
    assert x.order(alice, order_id)["status"] == "FILLED"

    resting = f"{high - 1.5:.2f}"  # a resting order (below the seeded asks), then cancelled
    place(seller, "卖出", resting, 200)
    notification(seller, re.compile("已受理"))
    row = seller.get_by_test_id("my-orders").locator("tbody tr").filter(has_text=resting).first
    row.get_by_test_id("cancel-btn").click()
    notification(seller, re.compile("已撤单"))
    expect(row).to_contain_text("已撤单")
    expect(row.get_by_test_id("cancel-btn")).to_have_count(0)

    place(seller, "卖出", "999.99", 10)  # outside the band: the service's error, nothing placed
    notification(seller, "PRICE_OUTSIDE_BAND")


def test_taking_a_listing_from_the_listings_table(console: Console) -> None:
    x = console.svc.exchange
    price = x.instrument("CEA2023")["prev_close"]
    seller = console.user("alice", "/market/CEA2023")
    place(seller, "卖出", price, 300)
    notification(seller, re.compile("已受理"))
    own = seller.get_by_test_id("listings-table").locator("tbody tr").filter(has_text=price)
    expect(own).to_have_count(1)
    expect(own.get_by_test_id("take-btn")).to_have_count(0)  # not one's own listing

    taker = console.user("bob", "/market/CEA2023")
    listing = taker.get_by_test_id("listings-table").locator("tbody tr").filter(has_text=price)
    expect(listing).to_contain_text("卖牌")
    listing.get_by_test_id("take-btn").click()
    dialog = taker.get_by_test_id("form-take")
    expect(dialog.get_by_test_id("take-terms")).to_contain_text(f"买入（摘卖牌）：{price}")
    expect(dialog.get_by_test_id("f-quantity")).to_have_value("300")
    dialog.get_by_test_id("f-quantity").fill("120")
    shot(taker, "market_take")
    dialog.get_by_test_id("form-take-submit").click()
    notification(taker, f"摘牌成交 120 吨，价格 {price} 元/吨")
    expect(listing).to_contain_text("180")
    fill = taker.get_by_test_id("my-fills").locator("tbody tr").first
    expect(fill).to_contain_text("挂牌协议")
    expect(fill).to_contain_text("120")
    expect(taker.get_by_test_id("trades-table").locator("tbody tr").first).to_contain_text(price)
    assert any(
        t["quantity"] == 120 and t["price"] == price
        for t in x.trades(console.actor("bob"), instrument="CEA2023", mine=True, limit=5)
    )


# ------------------------------------------------------------------ block deals and auctions


def test_block_deal_is_quoted_countered_and_confirmed_by_both(console: Console) -> None:
    x = console.svc.exchange
    page = console.user("alice")
    page.locator(".q-drawer").get_by_text("大宗协议").click()
    page.wait_for_url(f"{console.base}/market/deals")
    ready(page)
    page.get_by_test_id("open-quote").click()
    dialog = page.get_by_test_id("form-quote")
    expect(dialog.get_by_test_id("deal-rules")).to_contain_text("100,000")
    dialog.get_by_test_id("f-price").fill("80.00")
    dialog.get_by_test_id("f-quantity").fill("50000")
    dialog.get_by_test_id("form-quote-submit").click()
    notification(page, "QUANTITY_OUTSIDE_LIMITS")  # a block is 100,000 t at least
    dialog.get_by_test_id("f-quantity").fill("120000")
    dialog.get_by_test_id("form-quote-submit").click()
    notification(page, re.compile("报价 .* 已发布"))
    mine = page.get_by_test_id("my-deals").locator("tbody tr").filter(has_text="120,000")
    expect(mine).to_contain_text("报价中")

    bob = console.user("bob", "/market/deals")
    quote = bob.get_by_test_id("public-quotes").locator("tbody tr").filter(has_text="120,000")
    expect(quote).to_contain_text("华能武汉发电有限公司")
    quote.get_by_test_id("counter-btn").click()
    dialog = bob.get_by_test_id("form-counter")
    dialog.get_by_test_id("f-price").fill("79.50")
    dialog.get_by_test_id("form-counter-submit").click()
    notification(bob, re.compile("第 2 版"))
    theirs = bob.get_by_test_id("my-deals").locator("tbody tr").filter(has_text="120,000")
    expect(theirs).to_contain_text("磋商中")

    console.goto(page, "/market/deals")
    mine = page.get_by_test_id("my-deals").locator("tbody tr").filter(has_text="120,000")
    expect(mine).to_contain_text("79.50")
    mine.get_by_test_id("history-btn").click()
    history = page.get_by_test_id("deal-history")
    expect(history).to_contain_text("报价 80.00 元/吨 × 120,000 吨")
    expect(history).to_contain_text("武汉钢铁有限公司 · 还价 79.50 元/吨 × 120,000 吨")
    shot(page, "deals_history")
    page.keyboard.press("Escape")
    mine.get_by_test_id("confirm-btn").click()
    dialog = page.get_by_test_id("form-confirm")
    dialog.get_by_test_id("f-version").fill("1")  # the terms changed since version 1
    dialog.get_by_test_id("form-confirm-submit").click()
    notification(page, "DEAL_TERMS_CHANGED")
    dialog.get_by_test_id("f-version").fill("2")
    dialog.get_by_test_id("form-confirm-submit").click()
    notification(page, re.compile("已确认：磋商中"))
    expect(mine).to_contain_text("磋商中")

    console.goto(bob, "/market/deals")
    theirs.get_by_test_id("confirm-btn").click()
    expect(bob.get_by_test_id("form-confirm").get_by_test_id("f-version")).to_have_value("2")
    bob.get_by_test_id("form-confirm-submit").click()
    notification(bob, re.compile("已确认：已成交"))
    expect(theirs).to_contain_text("已成交")
    expect(theirs.get_by_test_id("confirm-btn")).to_have_count(0)
    shot(bob, "deals", full_page=True)
    done = [d for d in x.deals(console.actor("bob")) if d["quantity"] == 120_000]
    assert done[0]["status"] == "DONE" and done[0]["price"] == "79.50"

    page.get_by_test_id("open-quote").click()  # a quote its initiator withdraws
    dialog = page.get_by_test_id("form-quote")
    dialog.get_by_test_id("f-side").get_by_text("买入", exact=True).click()
    dialog.get_by_test_id("f-price").fill("78.00")
    dialog.get_by_test_id("f-quantity").fill("150000")
    dialog.get_by_test_id("form-quote-submit").click()
    notification(page, re.compile("已发布"))
    bid = page.get_by_test_id("my-deals").locator("tbody tr").filter(has_text="150,000")
    expect(bid).to_contain_text("买入")  # alice's side
    bid.get_by_test_id("withdraw-btn").click()
    page.get_by_test_id("form-withdraw-submit").click()
    notification(page, re.compile("已撤回"))
    expect(bid).to_contain_text("已撤回")
    expect(bid.get_by_test_id("withdraw-btn")).to_have_count(0)


def test_auctions_take_bids_and_show_published_results(console: Console) -> None:
    x, s = console.svc.exchange, console.seeded
    page = console.user("bob")
    page.locator(".q-drawer").get_by_text("单向竞价").click()
    page.wait_for_url(f"{console.base}/market/auctions")
    ready(page)
    auctions = page.get_by_test_id("auctions-table")
    today = auctions.locator("tbody tr").filter(has_text="竞价中")
    expect(today).to_have_count(1)
    expect(auctions.locator("tbody tr").filter(has_text="结果已公布")).to_have_count(1)
    today.get_by_test_id("bid-btn").click()
    dialog = page.get_by_test_id("form-bid")
    expect(dialog.get_by_test_id("bid-terms")).to_contain_text("卖出竞价 20,000 吨")
    dialog.get_by_test_id("f-price").fill("77.00")
    dialog.get_by_test_id("f-quantity").fill("5000")
    dialog.get_by_test_id("form-bid-submit").click()
    notification(page, "PRICE_BEYOND_RESERVE")
    dialog.get_by_test_id("f-price").fill("79.10")
    dialog.get_by_test_id("form-bid-submit").click()
    notification(page, "已申报：79.10 元/吨 × 5,000 吨")
    expect(today).to_contain_text("79.10 × 5,000")
    results = page.get_by_test_id("auction-results")
    expect(results).to_contain_text(f"{FRIDAY} · CEA2023 · 卖出竞价 20,000 吨")
    first = results.get_by_test_id("result-table").locator("tbody tr").first
    expect(first).to_contain_text("79.60")
    expect(first).to_contain_text("15,000")
    shot(page, "auctions", full_page=True)
    assert x.auction(console.actor("bob"), s.auction_today)["my_bids"][0]["price"] == "79.10"

    page = console.user("alice", "/market/auctions")  # no bidding in one's own auction
    own = page.get_by_test_id("auctions-table").locator("tbody tr").filter(has_text="竞价中")
    expect(own.get_by_test_id("bid-btn")).to_have_count(0)

    page.get_by_test_id("open-announce").click()  # Beijing times on today's trading day
    dialog = page.get_by_test_id("form-announce")
    expect(dialog.get_by_test_id("f-day")).to_have_value(TODAY)
    dialog.get_by_test_id("f-quantity").fill("3000")
    dialog.get_by_test_id("f-reserve").fill("79.00")
    dialog.get_by_test_id("f-opens").fill("14:00")
    dialog.get_by_test_id("f-closes").fill("16:00")
    dialog.get_by_test_id("form-announce-submit").click()
    notification(page, "OUTSIDE_SESSION")  # auctions end with the 15:00 close
    dialog.get_by_test_id("f-closes").fill("14:45")
    dialog.get_by_test_id("form-announce-submit").click()
    notification(page, re.compile("竞价 .* 已发布"))
    pending = page.get_by_test_id("auctions-table").locator("tbody tr").filter(has_text="未开始")
    expect(pending).to_contain_text("2026-11-23 14:00:00 – 14:45:00")
    expect(pending).to_contain_text("3,000")
    announced = [a for a in x.auctions(console.actor("alice")) if a["quantity"] == 3000]
    assert announced[0]["opens_at"] == iso(shanghai(TODAY, "14:00"))


# ------------------------------------------------------------------ cash and settlement


def test_cash_account_for_the_holder_and_funding_by_the_bank(console: Console) -> None:
    s, cash = console.seeded, console.svc.cash
    before = cash.account(console.actor("alice"), s.cash_a)
    page = console.user("alice")
    page.locator(".q-drawer").get_by_text("资金账户").click()
    page.wait_for_url(f"{console.base}/cash")
    ready(page)
    expect(page.get_by_test_id("cash-id")).to_have_text(s.cash_a)
    for part in ("balance", "frozen", "available"):
        expect(page.get_by_test_id(f"cash-{part}")).to_have_text(
            f"{int(before[part].split('.')[0]):,}.{before[part].split('.')[1]}"
        )
    expect(page.get_by_test_id("cash-entries")).to_contain_text("交收收款")  # settled sales
    shot(page, "cash_account", full_page=True)

    bank = console.user("hankou", "/cash")
    accounts = bank.get_by_test_id("cash-accounts")
    expect(accounts.locator("tbody tr")).to_have_count(2)
    row = accounts.locator("tbody tr").filter(has_text="华能武汉发电有限公司")
    row.get_by_test_id("fund-btn").click()
    dialog = bank.get_by_test_id("form-fund")
    dialog.get_by_test_id("f-amount").fill("1000.123")
    dialog.get_by_test_id("form-fund-submit").click()
    notification(bank, "MONEY_INVALID")
    dialog.get_by_test_id("f-amount").fill("1000.50")
    dialog.get_by_test_id("form-fund-submit").click()
    notification(bank, s.cash_a)
    shot(bank, "cash_bank")
    after = cash.account(console.actor("alice"), s.cash_a)
    assert float(after["balance"]) - float(before["balance"]) == pytest.approx(1000.50)
    row.get_by_role("link", name=s.cash_a).click()
    bank.wait_for_url(re.compile(r".*/cash\?account="))
    funding = bank.get_by_test_id("cash-entries").locator("tbody tr").first
    expect(funding).to_contain_text("入金")
    expect(funding).to_contain_text("1,000.50")


def test_clearing_report_settles_a_day_and_its_modes_add_up_to_the_total(
    console: Console,
) -> None:
    settlement = console.svc.settlement
    page = console.user("op1")
    page.locator(".q-drawer").get_by_text("清算日报").click()
    page.wait_for_url(f"{console.base}/settlement/report")
    ready(page)
    page.get_by_test_id("f-day").fill(FRIDAY)
    page.get_by_test_id("day-query").click()
    page.wait_for_url(f"{console.base}/settlement/report?day={FRIDAY}")
    ready(page)
    expect(page.get_by_test_id("report-run")).to_have_text("该交易日尚未结算")
    page.get_by_test_id("settle-day").click()
    page.get_by_test_id("form-settle-submit").click()
    notification(page, re.compile(f"{FRIDAY} 结算完成：本次交收 \\d+ 笔，失败 0 笔"))
    expect(page.get_by_test_id("report-run")).to_contain_text("已结算：op1")
    expect(page.get_by_test_id("failures-table")).to_contain_text("没有交收失败的成交")
    report = settlement.report(date.fromisoformat(FRIDAY))
    assert all(report["modes"][m]["trades"] for m in ("LISTING", "CONTINUOUS", "BLOCK", "AUCTION"))

    table = page.get_by_test_id("report-table")
    expect(table.locator("tbody tr")).to_have_count(5)
    rows = {r[0]: r for r in (cells(page, "report-table", m) for m in ("挂牌协议", "协商议价"))}
    rows.update(
        {r[0]: r for r in (cells(page, "report-table", m) for m in ("大宗协议", "单向竞价"))}
    )
    total = cells(page, "report-table", "合计")
    for column in (1, 2, 3, 7, 8, 9):  # trades, volume, value, fees, settled, failed
        assert sum(number(r[column]) for r in rows.values()) == pytest.approx(number(total[column]))
    assert number(total[2]) == report["total"]["volume"]
    assert number(total[3]) == pytest.approx(float(report["total"]["value"]))
    expect(page.get_by_test_id("report-chart").locator("canvas").first).to_be_visible()
    shot(page, "settlement_report", full_page=True)

    alice = console.user("alice", f"/settlement/statement?day={FRIDAY}")
    statement = settlement.statement(
        console.actor("alice"), console.seeded.entity_a, date.fromisoformat(FRIDAY)
    )
    expect(alice.get_by_test_id("statement-lines").locator("tbody tr")).to_have_count(
        len(statement["lines"])
    )
    expect(alice.get_by_test_id("st-units-delivered")).to_have_text(
        f"{statement['units_delivered']:,}"
    )
    expect(alice.get_by_test_id("statement-lines")).to_contain_text("单向竞价")
    shot(alice, "settlement_statement", full_page=True)


# ------------------------------------------------------------------ languages


def test_english_switch_on_the_instrument_page(console: Console) -> None:
    page = console.user("op2", "/market/HBEA2023")
    expect(page.get_by_text("五档行情")).to_be_visible()
    expect(page.get_by_test_id("order-card")).to_have_count(0)  # operators watch, not trade
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_text("Five levels")).to_be_visible()
    expect(page.get_by_text("Recent trades")).to_be_visible()
    expect(page.get_by_test_id("depth-continuous")).to_contain_text("Ask 1")
    expect(page.locator(".q-drawer").get_by_text("Market overview")).to_be_visible()
    expect(page.locator(".q-drawer").get_by_text("Clearing report")).to_be_visible()
    shot(page, "market_instrument_en")
    console.goto(page, "/market")
    expect(page.get_by_test_id("statistics-table")).to_contain_text("Continuous")
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_text("市场统计")).to_be_visible()


def test_every_text_key_the_pages_build_has_both_languages() -> None:
    """The keys the pages build at run time ("mode." + a service's value ...) are defined.
    (Read from the source, like tests.test_console's check of the literal keys.)"""
    source = ROOT / "src" / "carbonhub" / "console" / "i18n.py"
    texts: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "TEXTS":
            assert node.value is not None
            texts = ast.literal_eval(node.value)
    dynamic = {
        "mode": ("LISTING", "CONTINUOUS", "BLOCK", "AUCTION"),
        "side": ("B", "S"),
        "tif": ("LIMIT", "IOC", "FOK"),
        "ost": ("OPEN", "PARTIAL", "FILLED", "CANCELLED", "EXPIRED"),
        "why": ("USER", "IOC_REMAINDER", "FOK_NOT_FILLABLE", "SELF_TRADE", "DAY_END"),
        "dst": ("QUOTED", "NEGOTIATING", "DONE", "WITHDRAWN", "EXPIRED"),
        "ast": ("PENDING", "BIDDING", "CLOSING", "DONE"),
        "entry": ("FUND", "DEFUND", "FREEZE", "UNFREEZE", "PAY", "RECEIVE", "FEE"),
        "sst": ("SETTLED", "FAILED"),
        "istatus": ("ACTIVE", "SUSPENDED"),
    }
    keys = [f"{p}.{v}" for p, values in dynamic.items() for v in values]
    keys += [f"mkt.{side}_level" for side in ("ask", "bid")]
    assert [k for k in keys if k not in texts] == []
    assert all(zh and en for zh, en in texts.values())


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
