"""Pure trading rules (carbonhub.exchange.model): no database, no clock.

Bands, sizes, sessions, fees and freezes, VWAP and the published daily figures, one-sided
auction allocation, the block-deal state machine, day bars, the composite price and rule parsing.
Expected values come from independent arithmetic (Decimal, Fraction, brute force), not from the
functions under test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonhub.core.errors import Conflict, DomainError, InvalidInput
from carbonhub.exchange import model as m
from carbonhub.exchange.model import Bid, Deal, DealStatus, Mode

NATIONAL = m.MODE_PRESETS["national"]
HUBEI = m.MODE_PRESETS["hubei"]
LISTING = NATIONAL[Mode.LISTING]
BLOCK = NATIONAL[Mode.BLOCK]
UTC = dt.UTC


class Caught:
    error: DomainError


@contextmanager
def raises_code(exc_type: type[DomainError], code: str) -> Iterator[Caught]:
    caught = Caught()
    with pytest.raises(exc_type) as info:
        yield caught
    assert info.value.code == code, (info.value.code, code)
    caught.error = info.value


def half_up(x: Fraction | Decimal, places: str = "1") -> Decimal:
    """Round half-up with Decimal (`places` "1" for whole fen, "0.01" for yuan)."""
    if isinstance(x, Fraction):
        x = Decimal(x.numerator) / Decimal(x.denominator)
    return x.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


# ---------------------------------------------------------------- bands and prices


@pytest.mark.parametrize(
    ("reference", "bps", "want"),
    [
        (5000, 1000, (4500, 5500)),
        (4995, 1000, (4496, 5495)),  # 4495.5 → 4496, 5494.5 → 5495: half-up, both ends
        (4985, 1000, (4487, 5484)),  # 4486.5 → 4487, 5483.5 → 5484
        (5000, 3000, (3500, 6500)),
        (1, 1000, (1, 1)),  # 0.9 → 1, 1.1 → 1
        (100, 10_000, (1, 200)),  # a zero low limit is clamped to one fen
        (5000, 0, (5000, 5000)),
    ],
)
def test_band_examples(reference: int, bps: int, want: tuple[int, int]) -> None:
    assert m.band(reference, bps) == want


@given(st.integers(1, 10**8), st.integers(0, 10_000))
def test_band_is_reference_times_one_plus_minus_band_rounded_half_up(ref: int, bps: int) -> None:
    low, high = m.band(ref, bps)
    want_low = half_up(Decimal(ref) * (Decimal(10_000 - bps) / Decimal(10_000)))
    want_high = half_up(Decimal(ref) * (Decimal(10_000 + bps) / Decimal(10_000)))
    assert (low, high) == (max(int(want_low), 1), int(want_high))
    assert low <= ref <= high


def test_check_price() -> None:
    assert m.check_price(4500, 5000, LISTING) == 4500
    assert m.check_price(5500, 5000, LISTING) == 5500
    for bad in (0, -1, 50.5, 5000.0, True, "5000", None):
        with raises_code(InvalidInput, "PRICE_OFF_TICK"):
            m.check_price(bad, 5000, LISTING)
    for outside in (4499, 5501, 1):
        with raises_code(InvalidInput, "PRICE_OUTSIDE_BAND") as caught:
            m.check_price(outside, 5000, LISTING)
        assert caught.error.context == {"low": 4500, "high": 5500}
    # the block band is ±30 %
    assert m.check_price(3500, 5000, BLOCK) == 3500
    with raises_code(InvalidInput, "PRICE_OUTSIDE_BAND"):
        m.check_price(3499, 5000, BLOCK)
    # half-up edges: 4995 → [4496, 5495]
    assert m.check_price(4496, 4995, LISTING) == 4496
    with raises_code(InvalidInput, "PRICE_OUTSIDE_BAND"):
        m.check_price(4495, 4995, LISTING)
    with raises_code(InvalidInput, "PRICE_OUTSIDE_BAND"):
        m.check_price(5496, 4995, LISTING)


def test_check_quantity() -> None:
    assert m.check_quantity(1, LISTING) == 1
    assert m.check_quantity(99_999, LISTING) == 99_999
    with raises_code(InvalidInput, "QUANTITY_OUTSIDE_LIMITS"):
        m.check_quantity(100_000, LISTING)
    assert m.check_quantity(100_000, BLOCK) == 100_000
    assert m.check_quantity(10**9, BLOCK) == 10**9  # no upper limit
    with raises_code(InvalidInput, "QUANTITY_OUTSIDE_LIMITS"):
        m.check_quantity(99_999, BLOCK)
    for bad in (0, -5, 1.5, 10.0, True, "10", None):
        with raises_code(InvalidInput, "QUANTITY_NOT_LOT"):
            m.check_quantity(bad, LISTING)


# ---------------------------------------------------------------- sessions and calendar

NATIONAL_DAY = dt.date(2021, 10, 1)  # a Friday


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def session_code(moment: dt.datetime, rules: m.ModeRules, holidays: Any = ()) -> str:
    try:
        m.check_session(moment, rules, holidays)
    except Conflict as err:
        return err.code
    return "OPEN"


@pytest.mark.parametrize(
    ("moment", "rules", "want"),
    [
        (utc(2021, 8, 19, 1, 30), LISTING, "OPEN"),  # Thursday 09:30 Shanghai
        (utc(2021, 8, 19, 1, 29, 59), LISTING, "OUTSIDE_SESSION"),
        (utc(2021, 8, 19, 3, 29, 59), LISTING, "OPEN"),  # 11:29:59
        (utc(2021, 8, 19, 3, 30), LISTING, "OUTSIDE_SESSION"),  # 11:30 exactly is closed
        (utc(2021, 8, 19, 4, 59), LISTING, "OUTSIDE_SESSION"),  # lunch
        (utc(2021, 8, 19, 5, 0), LISTING, "OPEN"),  # 13:00
        (utc(2021, 8, 19, 6, 59, 59), LISTING, "OPEN"),
        (utc(2021, 8, 19, 7, 0), LISTING, "OUTSIDE_SESSION"),  # 15:00
        (utc(2021, 8, 19, 2, 0), BLOCK, "OUTSIDE_SESSION"),  # block: no morning session
        (utc(2021, 8, 19, 5, 0), BLOCK, "OPEN"),
        (utc(2021, 8, 21, 2, 0), LISTING, "MARKET_CLOSED_DAY"),  # Saturday
        (utc(2021, 8, 20, 23, 0), LISTING, "MARKET_CLOSED_DAY"),  # Fri UTC = Sat 07:00 local
        (utc(2021, 8, 22, 17, 0), LISTING, "OUTSIDE_SESSION"),  # Sun UTC = Mon 01:00 local
        (utc(2021, 8, 23, 1, 30), LISTING, "OPEN"),  # Monday
        (utc(2021, 10, 1, 2, 0), LISTING, "MARKET_CLOSED_DAY"),  # holiday
        (utc(2021, 9, 30, 16, 30), LISTING, "MARKET_CLOSED_DAY"),  # = 1 Oct 00:30 local
    ],
)
def test_check_session(moment: dt.datetime, rules: m.ModeRules, want: str) -> None:
    assert session_code(moment, rules, [NATIONAL_DAY]) == want


def test_session_takes_any_timezone_and_holidays_only_when_given() -> None:
    shanghai_0930 = dt.datetime(2021, 8, 19, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert session_code(shanghai_0930, LISTING) == "OPEN"
    new_york = dt.datetime(2021, 8, 18, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert session_code(new_york, LISTING) == "OPEN"  # = 09:30 the next day in Shanghai
    assert session_code(utc(2021, 10, 1, 2, 0), LISTING) == "OPEN"  # no holiday list


@settings(max_examples=300)
@given(
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)),
    st.sets(st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 1, 1)), max_size=3),
    st.sampled_from([LISTING, BLOCK]),
)
def test_session_property(naive: dt.datetime, holidays: set[dt.date], rules: m.ModeRules) -> None:
    moment = naive.replace(tzinfo=UTC)
    here = naive + dt.timedelta(hours=8)  # Shanghai has no DST
    minute = here.hour * 60 + here.minute
    windows = [(570, 690), (780, 900)] if rules is LISTING else [(780, 900)]
    if here.weekday() >= 5 or here.date() in holidays:
        want = "MARKET_CLOSED_DAY"
    elif any(a <= minute < b for a, b in windows):
        want = "OPEN"
    else:
        want = "OUTSIDE_SESSION"
    assert session_code(moment, rules, holidays) == want
    assert m.trading_day(moment) == here.date()


def test_bar_minute_is_shanghai_time() -> None:
    assert m.bar_minute(utc(2021, 8, 19, 1, 30, 59)) == "2021-08-19T09:30"


# ---------------------------------------------------------------- fees and freezes


def test_fee_truncates_to_the_fen() -> None:
    assert m.fee(1_001, 50) == 5  # 5.005
    assert m.fee(1_999, 50) == 9  # 9.995: truncated, not rounded
    assert m.fee(199, 50) == 0
    assert m.fee(500_000, 50) == 2_500
    assert m.fee(123_456, 0) == 0
    assert m.buy_freeze(5_000, 100, 50) == 502_500
    assert m.buy_freeze(4_999, 3, 50) == 14_997 + 74  # 74.985 → 74


@given(st.integers(0, 10**15), st.integers(0, 1_000))
def test_fee_is_the_exact_fee_rounded_down(value: int, bps: int) -> None:
    exact = Fraction(value * bps, 10_000)
    assert 0 <= exact - m.fee(value, bps) < 1


@settings(max_examples=300)
@given(
    limit=st.integers(1, 10**6),
    bps=st.integers(0, 1_000),
    fills=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**4)), min_size=1),
)
def test_the_buy_freeze_covers_any_fills_inside_the_limit(
    limit: int, bps: int, fills: list[tuple[int, int]]
) -> None:
    """Any partition of the order into fills at prices at or inside the limit costs, fees
    included, no more than the freeze taken when the order was entered."""
    fills = [(1 + p % limit, q) for p, q in fills]  # prices in [1, limit]
    qty = sum(q for _, q in fills)
    cost = sum(p * q + m.fee(p * q, bps) for p, q in fills)
    assert cost <= m.buy_freeze(limit, qty, bps)
    if all(p == limit for p, _ in fills) and len(fills) == 1:
        assert cost == m.buy_freeze(limit, qty, bps)


def test_a_rounded_up_fee_would_break_the_freeze() -> None:
    """Why truncation: two 1-fen fills at 0.5 % would each pay a fen if fees rounded up."""
    assert m.fee(1, 50) == 0
    assert m.buy_freeze(1, 2, 50) == 2
    rounded_up = -(-1 * 50 // 10_000)  # ceil(0.005) = 1 fen
    fills_cost = 2 * (1 + rounded_up)
    assert fills_cost > m.buy_freeze(1, 2, 50)


# ---------------------------------------------------------------- VWAP and published figures


def test_vwap_examples() -> None:
    assert m.vwap([]) is None
    assert m.vwap([(5000, 0)]) is None
    assert m.vwap([(5000, 1), (5001, 1)]) == 5001  # 5000.5 rounds up
    assert m.vwap([(5000, 3), (5001, 1)]) == 5000  # 5000.25
    assert m.vwap([(5000, 1), (5001, 3)]) == 5001  # 5000.75
    assert m.vwap(iter([(7, 2)])) == 7  # any iterable


@given(st.lists(st.tuples(st.integers(1, 10**7), st.integers(1, 10**6)), min_size=1))
def test_vwap_is_value_over_volume_half_up(trades: list[tuple[int, int]]) -> None:
    value = sum(p * q for p, q in trades)
    volume = sum(q for _, q in trades)
    got = m.vwap(trades)
    assert got == int(half_up(Fraction(value, volume)))
    assert min(p for p, _ in trades) <= got <= max(p for p, _ in trades)


def fills_for(
    value_fen: int, volume: int, *, extremes: tuple[int, ...] = ()
) -> list[tuple[int, int]]:
    """Whole-fen trades with exactly this value and volume (plus 1 t at each extreme price)."""
    out = [(p, 1) for p in extremes]
    value_fen -= sum(extremes)
    volume -= len(extremes)
    base, extra = divmod(value_fen, volume)
    out += [(base + 1, extra), (base, volume - extra)]
    return [(p, q) for p, q in out if q]


def published_average(value_yuan: str, volume: int) -> str:
    return str(half_up(Decimal(value_yuan) / volume, "0.01"))


def test_golden_19_august_2021() -> None:
    """hbets.cn daily report: total 4,001 t, 202,002 CNY, high 52.00, low 50.00, average 50.49."""
    assert published_average("202002", 4_001) == "50.49"
    trades = fills_for(20_200_200, 4_001, extremes=(5_200, 5_000))
    assert sum(q for _, q in trades) == 4_001
    assert sum(p * q for p, q in trades) == 20_200_200
    bar = m.day_bar(5_000, [("LISTING", p, q) for p, q in trades])
    assert yuan(bar.close) == "50.49"
    assert (yuan(bar.high), yuan(bar.low)) == ("52.00", "50.00")
    assert bar.volume == {"LISTING": 4_001}
    assert bar.value == {"LISTING": 20_200_200}
    assert bar.open == 5_200


def test_golden_28_december_2022() -> None:
    """Listing 21,787 t / 1,217,935 CNY (55.90); block 1,260,200 t / 68,391,200 CNY (54.27);
    total 1,281,987 t / 69,609,135 CNY (54.30): per-mode sums equal the totals."""
    figures = {
        "LISTING": (21_787, "1217935", "55.90"),
        "BLOCK": (1_260_200, "68391200", "54.27"),
    }
    trades: list[tuple[str, int, int]] = []
    for mode, (volume, value, average) in figures.items():
        assert published_average(value, volume) == average
        fen = int(Decimal(value) * 100)
        mode_trades = fills_for(fen, volume)
        assert yuan(m.vwap(mode_trades)) == average
        trades += [(mode, p, q) for p, q in mode_trades]
    bar = m.day_bar(5_500, trades)
    assert bar.volume == {"LISTING": 21_787, "BLOCK": 1_260_200}
    assert sum(bar.volume.values()) == 1_281_987
    assert sum(bar.value.values()) == 6_960_913_500  # 69,609,135.00 CNY
    assert published_average("69609135", 1_281_987) == "54.30"
    assert yuan(m.vwap((p, q) for _, p, q in trades)) == "54.30"
    # the close is the listing VWAP only; the block trades do not move it
    assert yuan(bar.close) == "55.90"


# ---------------------------------------------------------------- day bars


def test_day_bar_without_trades_carries_the_previous_close() -> None:
    bar = m.day_bar(5_123, [])
    assert (bar.open, bar.high, bar.low, bar.close, bar.prev_close) == (
        None,
        None,
        None,
        5_123,
        5_123,
    )
    assert bar.volume == {} and bar.value == {}


def test_day_bar_block_trades_count_in_volume_high_low_but_not_open_or_close() -> None:
    trades = [
        ("BLOCK", 6_000, 100_000),
        ("LISTING", 5_000, 10),
        ("AUCTION", 4_000, 7),
        ("LISTING", 5_100, 30),
    ]
    bar = m.day_bar(4_900, trades)
    assert bar.open == 5_000
    assert bar.close == 5_075  # (50000 + 153000) / 40
    assert (bar.high, bar.low) == (6_000, 4_000)
    assert bar.volume == {"BLOCK": 100_000, "LISTING": 40, "AUCTION": 7}
    assert bar.value == {"BLOCK": 600_000_000, "LISTING": 203_000, "AUCTION": 28_000}
    only_block = m.day_bar(4_900, [("BLOCK", 6_000, 100_000)])
    assert (only_block.open, only_block.close, only_block.high) == (None, 4_900, 6_000)


def test_continuous_trades_make_the_close_as_listing_trades_do() -> None:
    bar = m.day_bar(1, [(Mode.CONTINUOUS, 2_000, 1), (Mode.CONTINUOUS, 2_001, 1)])
    assert (bar.open, bar.close) == (2_000, 2_001)


@given(
    st.integers(1, 10**6),
    st.lists(
        st.tuples(
            st.sampled_from(["LISTING", "BLOCK", "AUCTION", "CONTINUOUS"]),
            st.integers(1, 10**6),
            st.integers(1, 10**6),
        ),
        max_size=20,
    ),
)
def test_day_bar_property(prev: int, trades: list[tuple[str, int, int]]) -> None:
    bar = m.day_bar(prev, trades)
    priced = [(p, q) for mode, p, q in trades if mode in ("LISTING", "CONTINUOUS")]
    if priced:
        assert bar.open == priced[0][0]
        value = sum(p * q for p, q in priced)
        assert bar.close == int(half_up(Fraction(value, sum(q for _, q in priced))))
    else:
        assert (bar.open, bar.close) == (None, prev)
    if trades:
        assert bar.high == max(p for _, p, _ in trades)
        assert bar.low == min(p for _, p, _ in trades)
    assert sum(bar.volume.values()) == sum(q for _, _, q in trades)
    assert sum(bar.value.values()) == sum(p * q for _, p, q in trades)
    for mode in bar.volume:
        assert bar.volume[mode] == sum(q for md, _, q in trades if md == mode)


# ---------------------------------------------------------------- composite price and index


def test_composite_examples() -> None:
    assert m.composite({"A": 5_000, "B": 6_000}, {"A": 1, "B": 3}) == 5_750
    assert m.composite({"A": 5_000, "B": 5_001}, {"A": 1, "B": 1}) == 5_001  # 5000.5 up
    assert m.composite({"A": 5_000, "B": 5_001}, {"A": 3, "B": 1}) == 5_000  # 5000.25
    assert m.composite({"A": 5_000, "B": 5_003}, {}) == 5_002  # equal weights, 5001.5 up
    assert m.composite({"A": 5_000, "B": 5_003}, {"A": 0, "B": 0}) == 5_002
    # a vintage without volume weighs nothing while another traded
    assert m.composite({"A": 5_000, "B": 9_000}, {"A": 10}) == 5_000
    # volume of an instrument without a close is ignored
    assert m.composite({"A": 5_000}, {"A": 1, "Z": 100}) == 5_000
    with pytest.raises(ValueError):
        m.composite({}, {"A": 1})


@given(
    st.dictionaries(st.sampled_from("ABCDEF"), st.integers(1, 10**6), min_size=1),
    st.dictionaries(st.sampled_from("ABCDEFG"), st.integers(0, 10**7)),
)
def test_composite_property(closes: dict[str, int], volume: dict[str, int]) -> None:
    weights = {c: volume.get(c, 0) for c in closes}
    if not sum(weights.values()):
        weights = dict.fromkeys(closes, 1)
    exact = Fraction(sum(closes[c] * w for c, w in weights.items()), sum(weights.values()))
    got = m.composite(closes, volume)
    assert got == int(half_up(exact))
    assert min(closes.values()) <= got <= max(closes.values())


def test_index_level() -> None:
    assert m.index_level(5_000, 5_000) == "1000.00"
    assert m.index_level(5_001, 5_000) == "1000.20"
    assert m.index_level(2_500, 5_000) == "500.00"
    assert m.index_level(1, 3) == "333.33"
    assert m.index_level(2, 3) == "666.67"
    assert m.index_level(1, 200_000) == "0.01"  # 0.005 rounds up


# ---------------------------------------------------------------- one-sided auction


def reference_allocation(
    quantity: int, reserve: int, bids: list[Bid], selling: bool
) -> list[tuple[str, int, int]]:
    """Brute force: take the best remaining eligible bid until the quantity is gone."""
    left = quantity
    pool = [b for b in bids if (b.price >= reserve if selling else b.price <= reserve)]
    out = []
    while left and pool:
        best = pool[0]
        for b in pool:
            better = b.price > best.price if selling else b.price < best.price
            if better or (b.price == best.price and b.seq < best.seq):
                best = b
        pool.remove(best)
        q = min(best.qty, left)
        out.append((best.bid_id, best.price, q))
        left -= q
    return out


def test_allocate_examples() -> None:
    bids = [
        Bid("b1", "X", 5_000, 40, 1),
        Bid("b2", "Y", 5_100, 30, 2),
        Bid("b3", "Z", 5_000, 50, 3),
        Bid("b4", "X", 4_800, 99, 4),  # under the reserve
    ]
    awards = m.allocate(100, 4_900, bids)
    assert [(a.bid_id, a.bidder, a.price, a.qty) for a in awards] == [
        ("b2", "Y", 5_100, 30),
        ("b1", "X", 5_000, 40),
        ("b3", "Z", 5_000, 30),  # the marginal bid, partly
    ]
    assert m.allocate(0, 0, bids) == []
    assert [a.bid_id for a in m.allocate(10**6, 5_100, bids)] == ["b2"]
    # a buyer's auction: the lowest offers first, those above the reserve ignored
    buying = m.allocate(100, 5_000, bids, selling=False)
    assert [(a.bid_id, a.qty) for a in buying] == [("b4", 99), ("b1", 1)]


@settings(max_examples=300)
@given(
    quantity=st.integers(0, 300),
    reserve=st.integers(95, 105),
    raw=st.lists(st.tuples(st.integers(90, 110), st.integers(1, 60)), max_size=15),
    order=st.randoms(use_true_random=False),
    selling=st.booleans(),
)
def test_allocate_matches_brute_force(
    quantity: int, reserve: int, raw: list[tuple[int, int]], order: Any, selling: bool
) -> None:
    bids = [Bid(f"b{i}", f"bidder{i % 3}", p, q, i) for i, (p, q) in enumerate(raw)]
    order.shuffle(bids)  # arrival is `seq`, not the list position
    awards = m.allocate(quantity, reserve, bids, selling=selling)
    got = [(a.bid_id, a.price, a.qty) for a in awards]
    assert got == reference_allocation(quantity, reserve, bids, selling)
    eligible = sum(b.qty for b in bids if (b.price >= reserve if selling else b.price <= reserve))
    assert sum(a.qty for a in awards) == min(quantity, eligible)
    by_id = {b.bid_id: b for b in bids}
    for a in awards:
        assert a.price == by_id[a.bid_id].price  # pay as bid
        assert 0 < a.qty <= by_id[a.bid_id].qty
        assert a.bidder == by_id[a.bid_id].bidder


# ---------------------------------------------------------------- block deals


def quote() -> Deal:
    return Deal(initiator="A", side="S", price=5_000, qty=100_000)


def test_block_deal_happy_path() -> None:
    d = m.counter(quote(), "B", 4_900, 100_000)
    assert (d.status, d.counterparty, d.version, d.price) == (DealStatus.NEGOTIATING, "B", 2, 4_900)
    d = m.confirm(d, "B", 2)
    assert d.status is DealStatus.NEGOTIATING and d.confirmed == {"B"}
    d = m.confirm(d, "A", 2)
    assert d.status is DealStatus.DONE and d.confirmed == {"A", "B"}
    with raises_code(Conflict, "DEAL_CLOSED"):
        m.confirm(d, "A", 2)
    with raises_code(Conflict, "DEAL_CLOSED"):
        m.counter(d, "B", 1, 1)


def test_block_deal_refusals() -> None:
    d = m.counter(quote(), "B", 4_900, 100_000)
    d = m.confirm(d, "B", 2)
    with raises_code(Conflict, "ALREADY_CONFIRMED"):
        m.confirm(d, "B", 2)
    with raises_code(Conflict, "DEAL_TERMS_CHANGED"):
        m.confirm(d, "A", 1)
    with raises_code(Conflict, "DEAL_TAKEN"):
        m.confirm(d, "C", 2)
    with raises_code(Conflict, "DEAL_TAKEN"):
        m.counter(d, "C", 5_000, 100_000)
    with raises_code(Conflict, "NO_COUNTERPARTY"):
        m.counter(quote(), "A", 5_100, 100_000)
    # a counter-quote makes every earlier confirmation lapse
    d = m.counter(d, "A", 4_950, 100_000)
    assert (d.version, d.confirmed, d.status) == (3, frozenset(), DealStatus.NEGOTIATING)
    with raises_code(Conflict, "DEAL_TERMS_CHANGED"):
        m.confirm(d, "B", 2)
    d = m.confirm(m.confirm(d, "A", 3), "B", 3)
    assert d.status is DealStatus.DONE and (d.price, d.qty) == (4_950, 100_000)
    for status in (DealStatus.WITHDRAWN, DealStatus.EXPIRED):
        with raises_code(Conflict, "DEAL_CLOSED"):
            m.confirm(Deal("A", "S", 1, 1, status=status), "B", 1)


def test_a_quote_can_be_accepted_as_is() -> None:
    d = m.confirm(quote(), "A", 1)  # the initiator alone: not done
    assert (d.status, d.confirmed) == (DealStatus.QUOTED, frozenset({"A"}))
    d = m.confirm(d, "B", 1)  # a counterparty confirms the quoted terms
    assert (d.status, d.counterparty) == (DealStatus.DONE, "B")
    d = m.confirm(quote(), "C", 1)
    assert (d.status, d.counterparty) == (DealStatus.NEGOTIATING, "C")
    assert m.confirm(d, "A", 1).status is DealStatus.DONE


deal_actions = st.lists(
    st.tuples(
        st.sampled_from(["counter", "confirm"]),
        st.sampled_from(["A", "B", "C"]),
        st.integers(-1, 0),  # version offset for confirm: stale or current
        st.integers(4_000, 6_000),
    ),
    max_size=12,
)


REFUSALS = {
    "counter": {"NO_COUNTERPARTY", "DEAL_TAKEN"},
    "confirm": {"DEAL_TERMS_CHANGED", "DEAL_TAKEN", "ALREADY_CONFIRMED"},
}


@settings(max_examples=300)
@given(deal_actions)
def test_block_deal_state_machine_invariants(actions: list[tuple[str, str, int, int]]) -> None:
    d = quote()
    confirmed_version: dict[str, int] = {}  # each party's last accepted confirmation
    for kind, party, offset, price in actions:
        before = d
        try:
            if kind == "counter":
                d = m.counter(d, party, price, 100_000)
            else:
                d = m.confirm(d, party, d.version + offset)
        except Conflict as err:
            if before.status is DealStatus.DONE:
                assert err.code == "DEAL_CLOSED"
            else:
                assert err.code in REFUSALS[kind], (kind, err.code)
            continue
        assert before.status is not DealStatus.DONE
        if kind == "counter":
            assert d.version == before.version + 1 and not d.confirmed
            assert (d.price, d.qty) == (price, 100_000)
        else:
            assert offset == 0 and d.version == before.version
            assert party not in before.confirmed
            confirmed_version[party] = d.version
        if before.counterparty is not None:
            assert d.counterparty == before.counterparty  # once answered, never another party
        assert d.confirmed <= {d.initiator, d.counterparty}
        both = d.counterparty is not None and all(
            confirmed_version.get(p) == d.version for p in (d.initiator, d.counterparty)
        )
        assert (d.status is DealStatus.DONE) == both
        if d.counterparty is None:
            assert d.status is DealStatus.QUOTED


# ---------------------------------------------------------------- rules from configuration


def good_rules() -> dict[str, Any]:
    return {
        "LISTING": {
            "band_bps": 1000,
            "min_qty": 1,
            "max_qty": 99_999,
            "sessions": [["09:30", "11:30"], ["13:00", "15:00"]],
            "fee_bps": 50,
        }
    }


@pytest.mark.parametrize("preset", ["national", "hubei"])
def test_presets_round_trip(preset: str) -> None:
    rules = m.MODE_PRESETS[preset]
    assert m.parse_rules(m.rules_dict(rules)) == rules


def test_parse_rules_accepts_good_rules() -> None:
    rules = m.parse_rules(good_rules())
    assert rules == {Mode.LISTING: NATIONAL[Mode.LISTING]}
    raw = good_rules()
    del raw["LISTING"]["max_qty"]
    raw["LISTING"]["price_rule"] = "MIDDLE"
    r = m.parse_rules(raw)[Mode.LISTING]
    assert (r.max_qty, r.price_rule) == (None, "MIDDLE")


def mutate(key: str, value: Any) -> dict[str, Any]:
    raw = good_rules()
    if value is KeyError:
        del raw["LISTING"][key]
    else:
        raw["LISTING"][key] = value
    return raw


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("band_bps", KeyError),
        ("min_qty", KeyError),
        ("sessions", KeyError),
        ("fee_bps", KeyError),
        ("band_bps", True),
        ("min_qty", True),
        ("max_qty", True),
        ("fee_bps", False),
        ("band_bps", 1000.0),
        ("band_bps", "1000"),
        ("band_bps", -1),
        ("band_bps", 10_001),
        ("fee_bps", 1_001),
        ("min_qty", 0),
        ("max_qty", 0),
        ("max_qty", 0.5),
        ("sessions", [["9:30", "11:30"]]),
        ("sessions", [["09:30", "24:00"]]),
        ("sessions", [["13:00", "11:30"]]),
        ("sessions", [["09:30", "09:30"]]),
        ("sessions", [["09:30", "11:60"]]),
        ("sessions", [["09:30", "11:30", "13:00"]]),
        ("sessions", [["09:30"]]),
        ("sessions", "09:30-11:30"),
        ("sessions", 930),
        ("sessions", None),
        ("sessions", []),
        ("price_rule", "LAST"),
        ("price_rule", None),
    ],
)
def test_parse_rules_rejects_bad_values(key: str, value: Any) -> None:
    with raises_code(InvalidInput, "RULES_INVALID"):
        m.parse_rules(mutate(key, value))


def test_parse_rules_rejects_bad_structure() -> None:
    raw = good_rules()
    raw["LISTING"]["min_qty"], raw["LISTING"]["max_qty"] = 10, 9
    with raises_code(InvalidInput, "RULES_INVALID"):
        m.parse_rules(raw)
    raw["LISTING"]["max_qty"] = 10  # equal limits are fine
    assert m.parse_rules(raw)[Mode.LISTING].max_qty == 10
    for bad_mode in ("listing", "SPOT", "", 10):
        with raises_code(InvalidInput, "MODE_UNKNOWN"):
            m.parse_rules({bad_mode: good_rules()["LISTING"]})
    for bad in ({}, [], None, "LISTING"):
        with raises_code(InvalidInput, "RULES_INVALID"):
            m.parse_rules(bad)
    with raises_code(InvalidInput, "RULES_INVALID"):
        m.parse_rules({"LISTING": [1000, 1, 99_999]})


def test_instrument_codes() -> None:
    assert m.check_instrument_code("CEA2024") == "CEA2024"
    assert m.check_instrument_code("HBEA_2024-A") == "HBEA_2024-A"
    for bad in ("cea2024", "C", "2024CEA", "CEA 2024", "A" * 33, 2024, None):
        with raises_code(InvalidInput, "INSTRUMENT_CODE_INVALID"):
            m.check_instrument_code(bad)


def test_ohlcv_minute_bars() -> None:
    bars = m.ohlcv(
        [("09:30", 5_000, 1), ("09:30", 5_100, 2), ("09:30", 4_900, 3), ("09:31", 5_050, 4)]
    )
    assert bars == [
        {"t": "09:30", "o": 5_000, "h": 5_100, "l": 4_900, "c": 4_900, "v": 6, "value": 29_900},
        {"t": "09:31", "o": 5_050, "h": 5_050, "l": 5_050, "c": 5_050, "v": 4, "value": 20_200},
    ]
