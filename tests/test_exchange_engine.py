"""The order books (carbonhub.exchange.engine) against a brute-force reference model.

The reference below keeps resting orders in a plain list and scans the whole list for every
decision: the best crossing order is the one with the best price, then the earliest arrival. It
shares no code with the engine (only the public constants naming sides, events and reasons).
Hypothesis drives random command streams through both and demands the same events, the same
refusals and the same book after every command; further properties check replay determinism and
the book's invariants, and hand-written examples pin known cases.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonhub.exchange import engine as e
from carbonhub.exchange.engine import (
    AMENDED,
    BUY,
    CANCEL_BOTH,
    CANCEL_MAKER,
    CANCEL_TAKER,
    CANCELLED,
    FOK,
    IOC,
    LIMIT,
    MIDDLE,
    R_CLOSE,
    R_FOK,
    R_IOC,
    R_STP,
    R_USER,
    RESTED,
    RESTING,
    SELL,
    TRADE,
    ContinuousBook,
    EngineError,
    ListingBook,
)

STP_MODES = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)
PRICE_RULES = (RESTING, MIDDLE)
CONFIGS = [(rule, stp) for rule in PRICE_RULES for stp in STP_MODES]
OWNERS = ("A", "B", "C", "D")

Event = tuple[Any, ...]
Book = ContinuousBook | ListingBook


# ---------------------------------------------------------------- the reference model


class RefError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class RefOrder:
    oid: str
    owner: str
    side: str
    price: int
    open: int
    arrival: int  # position in time; an amend keeps it


def rank(o: RefOrder) -> tuple[int, int]:
    """Smaller is better within one side: the best price first, then the earliest arrival."""
    return (-o.price if o.side == BUY else o.price, o.arrival)


class RefBase:
    def __init__(self, last_price: int = 0) -> None:
        self.resting: list[RefOrder] = []
        self.last_price = last_price
        self.trade_no = 0
        self.clock = 0

    def find(self, oid: str) -> RefOrder | None:
        for o in self.resting:
            if o.oid == oid:
                return o
        return None

    def add(self, oid: str, owner: str, side: str, price: int, qty: int) -> None:
        self.clock += 1
        self.resting.append(RefOrder(oid, owner, side, price, qty, self.clock))

    def side_orders(self, side: str) -> list[RefOrder]:
        return sorted((o for o in self.resting if o.side == side), key=rank)

    def open_orders(self) -> list[tuple[str, str, str, int, int]]:
        return [
            (o.oid, o.owner, o.side, o.price, o.open)
            for o in self.side_orders(BUY) + self.side_orders(SELL)
        ]

    def cancel(self, oid: str) -> list[Event]:
        o = self.find(oid)
        if o is None:
            raise RefError("ORDER_NOT_OPEN")
        self.resting.remove(o)
        return [(CANCELLED, oid, o.open, R_USER)]

    def amend(self, oid: str, new_open: int) -> list[Event]:
        o = self.find(oid)
        if o is None:
            raise RefError("ORDER_NOT_OPEN")
        if not 0 < new_open < o.open:
            raise RefError("AMEND_NOT_DOWN")
        o.open = new_open
        return [(AMENDED, oid, new_open)]

    def close(self) -> list[Event]:
        events: list[Event] = [
            (CANCELLED, oid, q, R_CLOSE) for oid, _, _, _, q in self.open_orders()
        ]
        self.resting = []
        return events

    def set_reference(self, price: int) -> None:
        self.last_price = price


class RefContinuous(RefBase):
    def __init__(self, *, price_rule: str, stp: str, last_price: int = 0) -> None:
        super().__init__(last_price)
        self.price_rule = price_rule
        self.stp = stp

    def best_crossing(self, side: str, limit: int) -> RefOrder | None:
        crossing = [
            o
            for o in self.resting
            if o.side != side and (o.price <= limit if side == BUY else o.price >= limit)
        ]
        return min(crossing, key=rank, default=None)

    def match(
        self, oid: str, owner: str, side: str, limit: int, qty: int
    ) -> tuple[list[Event], int, bool]:
        """Matches against the book; returns the events, the unfilled quantity, and whether
        self-trade prevention killed the taker."""
        events: list[Event] = []
        while qty:
            maker = self.best_crossing(side, limit)
            if maker is None:
                break
            if maker.owner == owner:
                if self.stp in (CANCEL_MAKER, CANCEL_BOTH):
                    self.resting.remove(maker)
                    events.append((CANCELLED, maker.oid, maker.open, R_STP))
                if self.stp in (CANCEL_TAKER, CANCEL_BOTH):
                    events.append((CANCELLED, oid, qty, R_STP))
                    return events, qty, True
                continue
            fill = min(qty, maker.open)
            buy_limit, sell_limit = (limit, maker.price) if side == BUY else (maker.price, limit)
            if self.price_rule == RESTING:
                price = maker.price
            else:
                price = sorted([buy_limit, sell_limit, self.last_price])[1]
            self.trade_no += 1
            self.last_price = price
            buy_oid, sell_oid = (oid, maker.oid) if side == BUY else (maker.oid, oid)
            events.append((TRADE, self.trade_no, price, fill, buy_oid, sell_oid, side))
            qty -= fill
            maker.open -= fill
            if not maker.open:
                self.resting.remove(maker)
        return events, qty, False

    def place(
        self, oid: str, owner: str, side: str, price: int, qty: int, tif: str = LIMIT
    ) -> list[Event]:
        if self.find(oid) is not None:
            raise RefError("ORDER_ID_TAKEN")
        if qty <= 0 or price <= 0:
            raise RefError("ORDER_INVALID")
        if side not in (BUY, SELL):
            raise RefError("SIDE_INVALID")
        if tif not in (LIMIT, IOC, FOK):
            raise RefError("TIF_INVALID")
        if tif == FOK:
            # a FOK is fillable iff a trial run on a copy of the book fills it completely
            _, unfilled, _ = copy.deepcopy(self).match(oid, owner, side, price, qty)
            if unfilled:
                return [(CANCELLED, oid, qty, R_FOK)]
        events, unfilled, killed = self.match(oid, owner, side, price, qty)
        if unfilled and not killed:
            if tif == LIMIT:
                self.add(oid, owner, side, price, unfilled)
                events.append((RESTED, oid, unfilled))
            else:
                events.append((CANCELLED, oid, unfilled, R_IOC))
        return events


class RefListing(RefBase):
    def post(self, oid: str, owner: str, side: str, price: int, qty: int) -> list[Event]:
        if self.find(oid) is not None:
            raise RefError("ORDER_ID_TAKEN")
        if qty <= 0 or price <= 0:
            raise RefError("ORDER_INVALID")
        if side not in (BUY, SELL):
            raise RefError("SIDE_INVALID")
        other = [o.price for o in self.resting if o.side != side]
        if other and (price >= min(other) if side == BUY else price <= max(other)):
            raise RefError("LISTING_WOULD_CROSS")
        self.add(oid, owner, side, price, qty)
        return [(RESTED, oid, qty)]

    def take(self, taker_oid: str, owner: str, target_oid: str, qty: int) -> list[Event]:
        target = self.find(target_oid)
        if target is None:
            raise RefError("ORDER_NOT_OPEN")
        if target.owner == owner:
            raise RefError("SELF_TRADE")
        prices = {o.price for o in self.resting if o.side == target.side}
        best_five = sorted(prices, reverse=target.side == BUY)[:5]
        if target.price not in best_five:
            raise RefError("BEYOND_LEVEL_5")
        if qty <= 0:
            raise RefError("ORDER_INVALID")
        if qty > target.open:
            raise RefError("TAKE_EXCEEDS_LISTING")
        self.trade_no += 1
        self.last_price = target.price
        if target.side == BUY:
            event = (TRADE, self.trade_no, target.price, qty, target_oid, taker_oid, SELL)
        else:
            event = (TRADE, self.trade_no, target.price, qty, taker_oid, target_oid, BUY)
        target.open -= qty
        if not target.open:
            self.resting.remove(target)
        return [event]


# ---------------------------------------------------------------- command streams

# A command is drawn as one integer and decoded field by field (drawing tuples of strategies is
# several times slower in hypothesis, and these streams are long). Abstract commands name earlier
# orders by index, so a stream is resolved into concrete commands (with order ids) from the stream
# alone, before any book sees it.


class Digits:
    def __init__(self, n: int) -> None:
        self.n = n

    def take(self, base: int) -> int:
        self.n, digit = divmod(self.n, base)
        return digit

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.take(len(options))]


def decode_continuous(word: int, with_bad: bool) -> tuple[Any, ...]:
    d = Digits(word)
    kind = d.take(20)
    owner, side = d.pick(OWNERS), d.pick((BUY, SELL))
    price, qty = 97 + d.take(7), 1 + d.take(8)  # a narrow range: orders cross often
    tif = d.pick((LIMIT, LIMIT, IOC, FOK))
    place = ("place", None, owner, side, price, qty, tif)
    if kind <= 11 or (kind >= 17 and not with_bad):
        return place
    if kind <= 13:
        return ("cancel", d.take(52) - 1)  # -1: an id never used
    if kind <= 15:
        return ("amend", d.take(52) - 1, d.take(9))
    if kind == 16:
        return ("close",) if d.take(3) == 0 else ("ref", 90 + d.take(21))
    if kind == 17:  # one field made invalid
        field, bad = d.pick(((3, "X"), (3, ""), (4, 0), (4, -1), (5, 0), (5, -3), (6, "GTC")))
        return (*place[:field], bad, *place[field + 1 :])
    if kind == 18:  # the id of an earlier order: refused only while that order is open
        return ("place", d.take(51), owner, side, price, qty, d.pick((LIMIT, IOC)))
    return place


def decode_listing(word: int) -> tuple[Any, ...]:
    d = Digits(word)
    kind = d.take(20)
    owner, side = d.pick(OWNERS), d.pick((BUY, SELL))
    # buyers low, sellers high, overlapping: listings mostly rest, both sides grow deeper than
    # five levels, and some would cross
    price = (82 if side == BUY else 94) + d.take(25)
    if kind <= 9:
        return ("post", None, owner, side, price, 1 + d.take(8))
    if kind <= 15:  # target index (-1: an id never used); quantity 0 to 10
        return ("take", owner, d.take(52) - 1, d.take(11))
    if kind == 16:
        oid = None if d.take(2) else d.take(51)
        return ("post", oid, owner, d.pick((BUY, SELL, "X")), d.pick((0, 100)), d.pick((0, 5)))
    if kind == 17:
        return ("cancel", d.take(52) - 1)
    if kind == 18:
        return ("amend", d.take(52) - 1, d.take(9))
    return ("close",) if d.take(3) == 0 else ("ref", 90 + d.take(21))


WORDS = st.integers(0, 2**48 - 1)


def continuous_stream(*, with_bad: bool) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    return st.lists(WORDS, min_size=20, max_size=60).map(
        lambda words: [decode_continuous(w, with_bad) for w in words]
    )


def listing_stream() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    return st.lists(WORDS, min_size=30, max_size=80).map(
        lambda words: [decode_listing(w) for w in words]
    )


def pick(ids: list[str], k: int) -> str:
    return "never-used" if k < 0 or not ids else ids[k % len(ids)]


def resolve(stream: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    ids: list[str] = []
    out: list[tuple[Any, ...]] = []
    for cmd in stream:
        kind = cmd[0]
        if kind in ("place", "post"):
            if cmd[1] is None or not ids:
                oid = f"o{len(ids) + 1}"
                ids.append(oid)
            else:
                oid = pick(ids, cmd[1])
            out.append((kind, oid, *cmd[2:]))
        elif kind in ("cancel", "amend"):
            out.append((kind, pick(ids, cmd[1]), *cmd[2:]))
        elif kind == "take":
            taker = f"t{len(out) + 1}"
            out.append(("take", taker, cmd[1], pick(ids, cmd[2]), cmd[3]))
        else:
            out.append(cmd)
    return out


def apply(book: Any, cmd: tuple[Any, ...]) -> list[Event] | tuple[str, str]:
    """Runs one concrete command; a refusal becomes ("REFUSED", code)."""
    kind, args = cmd[0], cmd[1:]
    try:
        if kind == "place":
            return list(book.place(*args))
        if kind == "post":
            return list(book.post(*args))
        if kind == "take":
            return list(book.take(*args))
        if kind == "cancel":
            return list(book.cancel(*args))
        if kind == "amend":
            return list(book.amend(*args))
        if kind == "close":
            return list(book.close())
        if kind == "ref":
            book.set_reference(*args)
            return []
    except (EngineError, RefError) as err:
        return ("REFUSED", err.code)
    raise AssertionError(f"unknown command {cmd}")


def best_bid_ask(book: Book) -> tuple[int | None, int | None]:
    depth = book.depth(1)
    bid = depth["bids"][0][0] if depth["bids"] else None
    ask = depth["asks"][0][0] if depth["asks"] else None
    return bid, ask


def run_differential(book: Book, ref: RefBase, stream: list[tuple[Any, ...]]) -> None:
    for step, cmd in enumerate(resolve(stream)):
        before, seq = book.state_hash(), book.seq
        got = apply(book, cmd)
        want = apply(ref, cmd)
        assert got == want, (step, cmd, got, want)
        if isinstance(got, tuple):  # a refused command changes nothing
            assert book.state_hash() == before, (step, cmd)
        else:
            assert book.seq == seq + 1, (step, cmd)  # every accepted command counts once
        assert book.open_orders() == ref.open_orders(), (step, cmd)
        assert (book.trade_no, book.last_price) == (ref.trade_no, ref.last_price), (step, cmd)
        bid, ask = best_bid_ask(book)
        assert bid is None or ask is None or bid < ask, (step, cmd)


# ---------------------------------------------------------------- differential properties


@pytest.mark.parametrize(("price_rule", "stp"), CONFIGS)
@settings(max_examples=200, deadline=None)
@given(stream=continuous_stream(with_bad=True), last=st.integers(95, 105))
def test_continuous_book_matches_reference(
    price_rule: str, stp: str, stream: list[tuple[Any, ...]], last: int
) -> None:
    book = ContinuousBook(price_rule=price_rule, stp=stp, last_price=last)
    ref = RefContinuous(price_rule=price_rule, stp=stp, last_price=last)
    run_differential(book, ref, stream)


@settings(max_examples=300, deadline=None)
@given(stream=listing_stream())
def test_listing_book_matches_reference(stream: list[tuple[Any, ...]]) -> None:
    run_differential(ListingBook(), RefListing(), stream)


def outcomes(book: Book, stream: list[tuple[Any, ...]]) -> set[str]:
    seen = set()
    limit: dict[str, int] = {}
    for cmd in resolve(stream):
        out = apply(book, cmd)
        if isinstance(out, tuple):
            seen.add(f"{cmd[0]}:{out[1]}")
            continue
        if cmd[0] in ("place", "post"):
            limit[cmd[1]] = cmd[4]
        for ev in out:
            seen.add(ev[3] if ev[0] == CANCELLED else ev[0])
            if ev[0] == TRADE and cmd[0] == "place":
                maker = ev[5] if ev[6] == BUY else ev[4]
                if ev[2] != limit[maker]:
                    seen.add("TRADE_OFF_THE_MAKER_PRICE")
                if ev[2] not in (limit[maker], cmd[4]):
                    seen.add("TRADE_STRICTLY_INSIDE_BOTH_LIMITS")
        if cmd[0] != "place":
            continue
        kinds = [(ev[0], ev[1] == cmd[1], ev[3] if ev[0] == CANCELLED else None) for ev in out]
        if cmd[6] == FOK and kinds and kinds[0][0] == TRADE:
            seen.add("FOK_FILLED")
        maker_stp = (CANCELLED, False, R_STP)
        if maker_stp in kinds and (TRADE, False, None) in kinds[kinds.index(maker_stp) :]:
            seen.add("MATCHING_WENT_ON_AFTER_A_MAKER_SELF_TRADE")
    return seen


def test_generated_streams_reach_every_outcome() -> None:
    """A guard on the generators, not on the engine: across a fixed sample of streams, every
    event kind, cancel reason and refusal the properties above are meant to compare occurs."""
    seen: set[str] = set()

    # 200, not 60: a CI run's sample of 60 once held no amend that lowered a quantity
    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(cont=continuous_stream(with_bad=True), listing=listing_stream())
    def collect(cont: list[tuple[Any, ...]], listing: list[tuple[Any, ...]]) -> None:
        for stp in STP_MODES:
            seen.update(outcomes(ContinuousBook(price_rule=MIDDLE, stp=stp), cont))
        seen.update(outcomes(ListingBook(), listing))

    collect()
    want = {TRADE, RESTED, AMENDED, R_USER, R_IOC, R_FOK, R_STP, R_CLOSE}
    want |= {"TRADE_OFF_THE_MAKER_PRICE", "TRADE_STRICTLY_INSIDE_BOTH_LIMITS"}
    want |= {f"{kind}:ORDER_NOT_OPEN" for kind in ("cancel", "amend", "take")}
    want |= {"amend:AMEND_NOT_DOWN", "place:ORDER_ID_TAKEN", "post:ORDER_ID_TAKEN"}
    want |= {"place:ORDER_INVALID", "place:SIDE_INVALID", "place:TIF_INVALID"}
    want |= {"post:ORDER_INVALID", "post:SIDE_INVALID", "post:LISTING_WOULD_CROSS"}
    want |= {"take:SELF_TRADE", "take:BEYOND_LEVEL_5", "take:ORDER_INVALID"}
    want |= {"take:TAKE_EXCEEDS_LISTING", "FOK_FILLED", "MATCHING_WENT_ON_AFTER_A_MAKER_SELF_TRADE"}
    assert want <= seen, want - seen


# ---------------------------------------------------------------- replay determinism


def make_book(kind: str, price_rule: str, stp: str) -> Book:
    if kind == "listing":
        return ListingBook(last_price=100)
    return ContinuousBook(price_rule=price_rule, stp=stp, last_price=100)


def state(book: Book) -> tuple[Any, ...]:
    return (book.open_orders(), book.trade_no, book.last_price, book.seq)


@pytest.mark.parametrize(
    ("kind", "price_rule", "stp"),
    [("continuous", r, s) for r, s in CONFIGS] + [("listing", RESTING, CANCEL_TAKER)],
)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), split=st.integers(0, 80))
def test_replay_is_deterministic(
    kind: str, price_rule: str, stp: str, data: st.DataObject, split: int
) -> None:
    if kind == "listing":
        stream = resolve(data.draw(listing_stream()))
    else:
        stream = resolve(data.draw(continuous_stream(with_bad=True)))
    a, b = make_book(kind, price_rule, stp), make_book(kind, price_rule, stp)
    hashes: dict[str, str] = {}
    events_a = []
    for cmd in stream:
        got_a, got_b = apply(a, cmd), apply(b, cmd)
        assert got_a == got_b
        events_a.append(got_a)
        assert a.state_hash() == b.state_hash()
        # the hash is a function of the state, and tells different states apart
        key = repr(state(a))
        assert hashes.setdefault(key, a.state_hash()) == a.state_hash()
    assert len(set(hashes.values())) == len(hashes)

    # a prefix, then every read-only view (which may tidy lazy structures), then the rest
    split = min(split, len(stream))
    c = make_book(kind, price_rule, stp)
    replayed = [apply(c, cmd) for cmd in stream[:split]]
    c.depth(5)
    c.open_orders()
    c.state_hash()
    replayed += [apply(c, cmd) for cmd in stream[split:]]
    assert replayed == events_a
    assert c.state_hash() == a.state_hash()
    assert state(c) == state(a)

    # the service's path: each command logged as JSON and replayed through engine.apply
    d = make_book(kind, price_rule, stp)
    for cmd, want in zip(stream, events_a, strict=True):
        logged = json.loads(json.dumps(as_log_entry(cmd)))
        try:
            got: list[Event] | tuple[str, str] = [tuple(ev) for ev in e.apply(d, logged)]
        except EngineError as err:
            got = ("REFUSED", err.code)
        assert got == want, (cmd, got, want)
    assert d.state_hash() == a.state_hash()


def as_log_entry(cmd: tuple[Any, ...]) -> dict[str, Any]:
    kind, *args = cmd
    fields = {
        "place": ("oid", "owner", "side", "price", "qty", "tif"),
        "post": ("oid", "owner", "side", "price", "qty"),
        "take": ("oid", "owner", "target", "qty"),
        "cancel": ("oid",),
        "amend": ("oid", "qty"),
        "close": (),
        "ref": ("price",),
    }[kind]
    return {"k": "reference" if kind == "ref" else kind, **dict(zip(fields, args, strict=True))}


def test_new_book_and_unknown_log_commands() -> None:
    listing = e.new_book("LISTING", last_price=100)
    assert isinstance(listing, ListingBook) and listing.last_price == 100
    book = e.new_book("CONTINUOUS", MIDDLE, 100)
    assert isinstance(book, ContinuousBook) and book.price_rule == MIDDLE
    h = book.state_hash()
    for cmd in ({"k": "post", "oid": "x"}, {"k": "take"}, {"k": "nope"}):
        with pytest.raises(EngineError) as info:
            e.apply(book, cmd)
        assert info.value.code == "COMMAND_UNKNOWN"
    with pytest.raises(EngineError) as info:
        e.apply(listing, {"k": "place"})
    assert info.value.code == "COMMAND_UNKNOWN"
    assert book.state_hash() == h


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize(("price_rule", "stp"), CONFIGS)
@settings(max_examples=150, deadline=None)
@given(stream=continuous_stream(with_bad=False), last=st.integers(90, 110))
def test_continuous_book_invariants(
    price_rule: str, stp: str, stream: list[tuple[Any, ...]], last: int
) -> None:
    """Never crossed; every order's quantity conserved; trades inside both limits."""
    book = ContinuousBook(price_rule=price_rule, stp=stp, last_price=last)
    original: dict[str, int] = {}
    limit: dict[str, int] = {}
    side_of: dict[str, str] = {}
    filled: dict[str, int] = {}
    gone: dict[str, int] = {}  # cancelled, expired, or amended away
    for cmd in resolve(stream):
        open_before = {o[0]: o[4] for o in book.open_orders()}
        out = apply(book, cmd)
        if cmd[0] == "place" and not isinstance(out, tuple):
            _, oid, _, side, price, qty, _ = cmd
            assert oid not in original  # fresh ids only in this stream
            original[oid], limit[oid], side_of[oid] = qty, price, side
        if isinstance(out, tuple):
            continue
        for ev in out:
            if ev[0] == TRADE:
                _, _, price, qty, buy, sell, taker_side = ev
                assert qty > 0
                assert side_of[buy] == BUY and side_of[sell] == SELL
                assert limit[sell] <= price <= limit[buy], ev
                assert taker_side in (BUY, SELL)
                filled[buy] = filled.get(buy, 0) + qty
                filled[sell] = filled.get(sell, 0) + qty
            elif ev[0] == CANCELLED:
                assert ev[2] > 0
                gone[ev[1]] = gone.get(ev[1], 0) + ev[2]
            elif ev[0] == AMENDED:
                assert 0 < ev[2] < open_before[ev[1]]
                gone[ev[1]] = gone.get(ev[1], 0) + open_before[ev[1]] - ev[2]
            else:
                assert ev[0] == RESTED
        bid, ask = best_bid_ask(book)
        if bid is not None and ask is not None:
            assert bid < ask, (cmd, bid, ask)
        open_now = {o[0]: o[4] for o in book.open_orders()}
        for oid, qty in original.items():
            assert filled.get(oid, 0) + gone.get(oid, 0) + open_now.get(oid, 0) == qty, oid
            assert open_now.get(oid, 0) >= 0
        # a resting order rests at its own limit, on its own side
        for oid, owner, side, price, _ in book.open_orders():
            assert (side, price) == (side_of[oid], limit[oid])
            assert owner in OWNERS


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6))
def test_middle_is_the_median(a: int, b: int, c: int) -> None:
    assert e.middle(a, b, c) == sorted([a, b, c])[1]


# ---------------------------------------------------------------- examples: continuous book


def trades(events: list[Event]) -> list[tuple[Any, ...]]:
    """(price, qty, buy, sell) of each trade."""
    return [(ev[2], ev[3], ev[4], ev[5]) for ev in events if ev[0] == TRADE]


def test_fifo_within_a_level_and_price_before_time() -> None:
    book = ContinuousBook()
    book.place("s1", "A", SELL, 101, 5)
    book.place("s2", "B", SELL, 100, 5)
    book.place("s3", "C", SELL, 100, 5)
    out = book.place("b1", "D", BUY, 101, 12)
    assert trades(out) == [(100, 5, "b1", "s2"), (100, 5, "b1", "s3"), (101, 2, "b1", "s1")]
    assert [ev[1] for ev in out if ev[0] == TRADE] == [1, 2, 3]
    assert book.open_orders() == [("s1", "A", SELL, 101, 3)]


def test_partial_fill_then_rest() -> None:
    book = ContinuousBook()
    book.place("s1", "A", SELL, 99, 3)
    book.place("s2", "B", SELL, 100, 4)
    book.place("s3", "B", SELL, 102, 9)
    out = book.place("b1", "C", BUY, 101, 10)
    assert trades(out) == [(99, 3, "b1", "s1"), (100, 4, "b1", "s2")]
    assert out[-1] == (RESTED, "b1", 3)
    assert book.depth(5) == {"bids": [(101, 3, 1)], "asks": [(102, 9, 1)]}
    # a sell taker partly fills the resting bid at the bid's price
    out = book.place("s4", "D", SELL, 101, 1)
    assert out == [(TRADE, 3, 101, 1, "b1", "s4", SELL)]
    assert book.open_orders()[0] == ("b1", "C", BUY, 101, 2)


@pytest.mark.parametrize(
    ("bid", "ask", "last", "want"),
    [(101, 99, 100, 100), (105, 99, 110, 105), (105, 99, 90, 99), (101, 99, 101, 101)],
)
@pytest.mark.parametrize("taker", [BUY, SELL])
def test_middle_rule_examples(bid: int, ask: int, last: int, want: int, taker: str) -> None:
    book = ContinuousBook(price_rule=MIDDLE, last_price=last)
    if taker == BUY:
        book.place("s", "A", SELL, ask, 5)
        out = book.place("b", "B", BUY, bid, 5)
    else:
        book.place("b", "B", BUY, bid, 5)
        out = book.place("s", "A", SELL, ask, 5)
    assert trades(out) == [(want, 5, "b", "s")]
    assert book.last_price == want


def test_middle_rule_follows_the_last_trade_price() -> None:
    book = ContinuousBook(price_rule=MIDDLE, last_price=100)
    book.place("s1", "A", SELL, 95, 1)
    book.place("s2", "A", SELL, 98, 1)
    out = book.place("b", "B", BUY, 104, 2)
    # first: middle(104, 95, 100) = 100; then middle(104, 98, 100) = 100
    assert trades(out) == [(100, 1, "b", "s1"), (100, 1, "b", "s2")]
    book.set_reference(103)
    book.place("s3", "A", SELL, 97, 1)
    assert trades(book.place("b2", "B", BUY, 99, 1)) == [(99, 1, "b2", "s3")]
    book.place("s4", "A", SELL, 90, 1)
    # the last price is now 99
    assert trades(book.place("b3", "B", BUY, 120, 1)) == [(99, 1, "b3", "s4")]


def test_resting_rule_trades_at_the_maker_price() -> None:
    book = ContinuousBook(price_rule=RESTING, last_price=500)
    book.place("b", "A", BUY, 105, 2)
    assert trades(book.place("s", "B", SELL, 99, 2)) == [(105, 2, "b", "s")]
    assert book.last_price == 105


def test_ioc_and_fok() -> None:
    book = ContinuousBook()
    book.place("s1", "A", SELL, 100, 3)
    book.place("s2", "B", SELL, 101, 3)
    assert book.place("i", "C", BUY, 100, 5, IOC) == [
        (TRADE, 1, 100, 3, "i", "s1", BUY),
        (CANCELLED, "i", 2, R_IOC),
    ]
    h = book.state_hash()
    assert book.place("f1", "C", BUY, 101, 4, FOK) == [(CANCELLED, "f1", 4, R_FOK)]
    assert book.open_orders() == [("s2", "B", SELL, 101, 3)]
    assert book.state_hash() != h  # the FOK counted as a command (seq)
    book.place("s3", "D", SELL, 101, 1)
    assert trades(book.place("f2", "C", BUY, 101, 4, FOK)) == [
        (101, 3, "f2", "s2"),
        (101, 1, "f2", "s3"),
    ]
    assert book.open_orders() == []


def test_fok_counts_only_other_owners_within_the_limit() -> None:
    for stp, fillable in ((CANCEL_TAKER, False), (CANCEL_BOTH, False), (CANCEL_MAKER, True)):
        book = ContinuousBook(stp=stp)
        book.place("own", "A", SELL, 100, 5)
        book.place("x", "B", SELL, 100, 2)
        book.place("far", "B", SELL, 102, 9)
        out = book.place("f", "A", BUY, 101, 2, FOK)
        if fillable:
            assert out == [(CANCELLED, "own", 5, R_STP), (TRADE, 1, 100, 2, "f", "x", BUY)]
        else:
            assert out == [(CANCELLED, "f", 2, R_FOK)]
            assert len(book.open_orders()) == 3
        # even under CANCEL_MAKER the own order does not count as liquidity
        book2 = ContinuousBook(stp=stp)
        book2.place("own", "A", SELL, 100, 5)
        book2.place("x", "B", SELL, 100, 1)
        assert book2.place("f", "A", BUY, 100, 2, FOK) == [(CANCELLED, "f", 2, R_FOK)]
        assert len(book2.open_orders()) == 2


def test_fok_filled_before_reaching_an_own_order() -> None:
    book = ContinuousBook(stp=CANCEL_TAKER)
    book.place("x", "B", SELL, 100, 2)
    book.place("own", "A", SELL, 100, 5)
    assert trades(book.place("f", "A", BUY, 100, 2, FOK)) == [(100, 2, "f", "x")]
    assert book.open_orders() == [("own", "A", SELL, 100, 5)]


def test_self_trade_prevention_modes() -> None:
    def setup(stp: str) -> ContinuousBook:
        book = ContinuousBook(stp=stp)
        book.place("s1", "B", SELL, 100, 2)
        book.place("own", "A", SELL, 100, 3)
        book.place("s3", "C", SELL, 101, 4)
        return book

    book = setup(CANCEL_TAKER)
    assert book.place("b", "A", BUY, 101, 8) == [
        (TRADE, 1, 100, 2, "b", "s1", BUY),
        (CANCELLED, "b", 6, R_STP),
    ]
    assert [o[0] for o in book.open_orders()] == ["own", "s3"]

    book = setup(CANCEL_MAKER)
    assert book.place("b", "A", BUY, 101, 8) == [
        (TRADE, 1, 100, 2, "b", "s1", BUY),
        (CANCELLED, "own", 3, R_STP),
        (TRADE, 2, 101, 4, "b", "s3", BUY),
        (RESTED, "b", 2),
    ]
    assert book.open_orders() == [("b", "A", BUY, 101, 2)]

    book = setup(CANCEL_BOTH)
    assert book.place("b", "A", BUY, 101, 8) == [
        (TRADE, 1, 100, 2, "b", "s1", BUY),
        (CANCELLED, "own", 3, R_STP),
        (CANCELLED, "b", 6, R_STP),
    ]
    assert [o[0] for o in book.open_orders()] == ["s3"]


def test_amend_keeps_priority_and_only_goes_down() -> None:
    book = ContinuousBook()
    book.place("s1", "A", SELL, 100, 5)
    book.place("s2", "B", SELL, 100, 5)
    assert book.amend("s1", 2) == [(AMENDED, "s1", 2)]
    assert trades(book.place("b", "C", BUY, 100, 3)) == [(100, 2, "b", "s1"), (100, 1, "b", "s2")]
    h = book.state_hash()
    for bad in (4, 5, 0, -1):
        with pytest.raises(EngineError) as info:
            book.amend("s2", bad)
        assert info.value.code == "AMEND_NOT_DOWN"
    with pytest.raises(EngineError) as info:
        book.amend("s1", 1)
    assert info.value.code == "ORDER_NOT_OPEN"
    assert book.state_hash() == h


def test_cancel_and_close() -> None:
    book = ContinuousBook()
    book.place("b1", "A", BUY, 98, 1)
    book.place("b2", "B", BUY, 99, 2)
    book.place("b3", "C", BUY, 99, 3)
    book.place("s1", "A", SELL, 102, 4)
    book.place("s2", "B", SELL, 101, 5)
    assert book.cancel("b3") == [(CANCELLED, "b3", 3, R_USER)]
    assert book.close() == [
        (CANCELLED, "b2", 2, R_CLOSE),
        (CANCELLED, "b1", 1, R_CLOSE),
        (CANCELLED, "s2", 5, R_CLOSE),
        (CANCELLED, "s1", 4, R_CLOSE),
    ]
    assert book.open_orders() == [] and book.depth() == {"bids": [], "asks": []}
    assert book.place("x", "A", BUY, 200, 1) == [(RESTED, "x", 1)]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("s1", "B", BUY, 100, 1, LIMIT), "ORDER_ID_TAKEN"),
        (("n", "B", BUY, 0, 1, LIMIT), "ORDER_INVALID"),
        (("n", "B", BUY, 100, 0, LIMIT), "ORDER_INVALID"),
        (("n", "B", "X", 100, 1, LIMIT), "SIDE_INVALID"),
        (("n", "B", BUY, 100, 1, "GTC"), "TIF_INVALID"),
    ],
)
def test_place_refusals_change_nothing(args: tuple[Any, ...], code: str) -> None:
    book = ContinuousBook()
    book.place("s1", "A", SELL, 100, 1)
    h = book.state_hash()
    with pytest.raises(EngineError) as info:
        book.place(*args)
    assert info.value.code == code
    assert book.state_hash() == h


def test_a_finished_order_id_may_be_used_again() -> None:
    """Design choice: only an open order's id is taken."""
    book = ContinuousBook()
    book.place("s1", "A", SELL, 100, 1)
    book.place("b1", "B", BUY, 100, 1)
    assert book.place("s1", "A", SELL, 100, 1) == [(RESTED, "s1", 1)]


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        ContinuousBook(price_rule="LAST")
    with pytest.raises(ValueError):
        ContinuousBook(stp="DECREMENT")


@pytest.mark.parametrize("make", [ContinuousBook, ListingBook])
def test_refused_cancel_changes_nothing(make: Callable[[], Book]) -> None:
    book = make()
    h = book.state_hash()
    with pytest.raises(EngineError) as info:
        book.cancel("nope")
    assert info.value.code == "ORDER_NOT_OPEN"
    assert book.state_hash() == h


# ---------------------------------------------------------------- examples: listing book


def deep_listing() -> ListingBook:
    book = ListingBook()
    for i, price in enumerate((100, 101, 102, 103, 104, 105, 106)):
        book.post(f"s{i}", "A", SELL, price, 10)
    book.post("s0b", "B", SELL, 100, 10)  # a second order on level 1
    for i, price in enumerate((99, 98, 97, 96, 95, 94)):
        book.post(f"b{i}", "B", BUY, price, 10)
    return book


def test_listing_take_trades_at_the_listing_price_with_any_order_of_the_top_five() -> None:
    book = deep_listing()
    # time priority is not enforced: the taker picks the later order on level 1
    assert book.take("t1", "C", "s0b", 4) == [(TRADE, 1, 100, 4, "t1", "s0b", BUY)]
    assert book.take("t2", "C", "s4", 10) == [(TRADE, 2, 104, 10, "t2", "s4", BUY)]
    # s4's level is gone, so s5 (105) is now on level 5
    assert book.take("t3", "C", "b4", 1) == [(TRADE, 3, 95, 1, "b4", "t3", SELL)]
    assert book.take("t4", "C", "s5", 1)[0][2] == 105
    assert book.last_price == 105
    assert book.depth(2)["asks"] == [(100, 16, 2), (101, 10, 1)]


@pytest.mark.parametrize(
    ("owner", "target", "qty", "code"),
    [
        ("C", "s5", 1, "BEYOND_LEVEL_5"),
        ("C", "b5", 1, "BEYOND_LEVEL_5"),
        ("A", "s0", 1, "SELF_TRADE"),
        ("C", "nope", 1, "ORDER_NOT_OPEN"),
        ("C", "s0", 0, "ORDER_INVALID"),
        ("C", "s0", 11, "TAKE_EXCEEDS_LISTING"),
    ],
)
def test_listing_take_refusals(owner: str, target: str, qty: int, code: str) -> None:
    book = deep_listing()
    h = book.state_hash()
    with pytest.raises(EngineError) as info:
        book.take("t", owner, target, qty)
    assert info.value.code == code
    assert book.state_hash() == h


@pytest.mark.parametrize(("side", "price"), [(BUY, 100), (BUY, 101), (SELL, 99), (SELL, 90)])
def test_a_crossing_listing_is_refused(side: str, price: int) -> None:
    book = deep_listing()
    h = book.state_hash()
    with pytest.raises(EngineError) as info:
        book.post("x", "C", side, price, 1)
    assert info.value.code == "LISTING_WOULD_CROSS"
    assert book.state_hash() == h
    assert book.post("y", "C", side, 99 if side == BUY else 100, 1) == [(RESTED, "y", 1)]


def test_listings_never_match_by_themselves_and_expire_at_close() -> None:
    book = ListingBook()
    assert book.post("b", "A", BUY, 99, 5) == [(RESTED, "b", 5)]
    assert book.post("s", "B", SELL, 100, 5) == [(RESTED, "s", 5)]
    assert book.trade_no == 0
    assert book.close() == [(CANCELLED, "b", 5, R_CLOSE), (CANCELLED, "s", 5, R_CLOSE)]
