"""Continuous order book commands per second, ours against Python peers (exchange-anchors C.4).

    python bench/orderbook.py --json
    python bench/orderbook.py --commands 100000 --repeat 1

One seeded stream of commands (default a million), CEA-like: mid 80.00 yuan (8000 fen), every
price within ±BAND_TICKS one-fen ticks of it, quantities 1–500 t (uniform), a couple hundred
owners. Three kinds, drawn with fixed probabilities (the printed mix is the one obtained):
- add: a limit order priced away from a slowly wandering fair value and never at or through the
  opposite best, so it rests without trading;
- cancel: of a uniformly chosen live resting order;
- crossing: a limit order at the opposite best plus 0–5 ticks that takes liquidity; whatever it
  does not fill rests at its limit.
The generator keeps its own small book (price-time FIFO, trade at the resting price) to know the
touch and the live orders. A crossing order's owner is drawn from the pool among those owning none
of the resting orders it fills, so self-trade prevention never fires in our engine and the
comparison with peers that have none is fair (the check asserts it never fires); `--owners 0`
gives every order its own owner instead.

Engines, each fed the whole stream:
- ours: carbonhub.exchange.engine.ContinuousBook, RESTING trade price, place() / cancel();
- pyorderbook (the peer, pure-Python Book, Decimal yuan prices): Book.match() / Book.cancel(Order);
- liquibook (C++ through SWIG, if it imports): DepthOrderBook.add() / cancel() with a Python
  OrderListener receiving the fills.

Before any timing the first `--check` commands go through every engine and the generator's book:
per incoming order (filled tonnes, Σ price × quantity in fen), per cancel the quantity cancelled,
and the resting book at the end of the prefix (order, price, open quantity, in priority order)
must all agree; otherwise the first disagreement is printed and the exit status is 1.

Timed: every command counts (adds, cancels, crossing) and the rate is commands / wall seconds
(time.perf_counter) of the loop that feeds an engine the stream. Inputs are converted to each
engine's own types before the clock (our (oid, owner, side, fen, qty) strings and ints; the
peer's Side and Decimal yuan price; liquibook's bool and integer fen). Headline rates use each
API as a caller must: pyorderbook wants an Order object per order (a uuid4 id, Decimal(str(price)))
and the Order again to cancel it, so the timed loop builds it and keeps it in a dict; the same
for liquibook's SimpleOrder. A second run per repeat builds every peer object before the clock
and times the book work alone (`*_book_only`, which favours the peers; the building time is
reported apart). Before each timed run gc.collect() then gc.freeze() (the prepared stream is not
rescanned); the collector stays enabled while timing, as in production, unless --no-gc. After
each run the totals (trades, resting orders; liquibook's fills, tonnes and notional) are checked
against the generator's. Runs are interleaved (ours, peer, liquibook) per repeat; medians are
reported.

stdout gets one JSON object with --json (a short text summary otherwise); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import importlib.metadata
import inspect
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

from benchlib import machine

from carbonhub.exchange.engine import (
    BUY,
    CANCELLED,
    R_STP,
    RESTING,
    SELL,
    TRADE,
    ContinuousBook,
    EngineError,
)

MID = 8000  # fen: 80.00 yuan per tonne
BAND_TICKS = 200  # every price within MID ± 200 fen (78.00–82.00 yuan)
MAX_QTY = 500
OWNERS = 200
SYMBOL = "CEA"
TARGET_ORDERS_PER_S = 500_000.0
TARGET_RATIO = 5.0

ADD, CANCEL, CROSS = 0, 1, 2
KINDS = ("adds", "cancels", "crossing")
KIND_NAMES = ("add", "cancel", "crossing")
SIDES = (BUY, SELL)  # the generator's side 0 is a buy, 1 a sell

# (kind, order_no, owner_no, side 0/1, price fen, qty); a cancel names the order it cancels
Cmd = tuple[int, int, int, int, int, int]
Result = tuple[int, int]  # place: (filled t, Σ price×qty fen); cancel: (cancelled t, 0)
BookView = tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, int, int], ...]]


def log(message: str) -> None:
    print(f"[orderbook] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the stream


class ModelBook:
    """The generator's own book, independent of the engines under test: it tells the generator
    where the touch is and which orders are live, and gives the expected fills."""

    def __init__(self) -> None:
        # per side: price -> [deque of records, live count]; record = [no, side, price, open, owner]
        self.levels: tuple[dict[int, list[Any]], dict[int, list[Any]]] = ({}, {})
        self.heaps: tuple[list[int], list[int]] = ([], [])  # buy prices negated
        self.live: dict[int, list[int]] = {}
        self.live_ids: list[int] = []  # for a uniform choice of the order to cancel
        self.pos: dict[int, int] = {}

    def best(self, side: int) -> int | None:
        heap, levels, sign = self.heaps[side], self.levels[side], -1 if side == 0 else 1
        while heap:
            price = heap[0] * sign
            if price in levels:
                return price
            heappop(heap)
        return None

    def rest(self, no: int, side: int, price: int, qty: int, owner: int) -> None:
        rec = [no, side, price, qty, owner]
        levels = self.levels[side]
        level = levels.get(price)
        if level is None:
            levels[price] = [deque((rec,)), 1]
            heappush(self.heaps[side], -price if side == 0 else price)
        else:
            level[0].append(rec)
            level[1] += 1
        self.live[no] = rec
        self.pos[no] = len(self.live_ids)
        self.live_ids.append(no)

    def _forget(self, no: int) -> None:
        del self.live[no]
        i = self.pos.pop(no)
        last = self.live_ids.pop()
        if last != no:
            self.live_ids[i] = last
            self.pos[last] = i

    def cancel(self, no: int) -> list[int]:
        rec = self.live[no]
        levels = self.levels[rec[1]]
        level = levels[rec[2]]
        level[1] -= 1
        if not level[1]:
            del levels[rec[2]]
        self._forget(no)
        out = list(rec)
        rec[3] = 0
        return out

    def take(self, side: int, price: int, qty: int) -> tuple[int, int, int, set[int]]:
        """Match an incoming order: (filled, Σ price×qty, fills, owners of the makers filled)."""
        other = 1 - side
        levels, heap, sign = self.levels[other], self.heaps[other], -1 if other == 0 else 1
        filled = notional = fills = 0
        owners: set[int] = set()
        while qty and heap:
            best = heap[0] * sign
            level = levels.get(best)
            if level is None:
                heappop(heap)
                continue
            if (best > price) if side == 0 else (best < price):
                break
            queue = level[0]
            while qty:
                maker = queue[0]
                m_open = maker[3]
                if not m_open:
                    queue.popleft()
                    continue
                fill = qty if qty < m_open else m_open
                qty -= fill
                filled += fill
                notional += fill * best
                fills += 1
                owners.add(maker[4])
                if fill == m_open:
                    queue.popleft()
                    maker[3] = 0
                    self._forget(maker[0])
                    level[1] -= 1
                    if not level[1]:
                        del levels[best]
                        break
                else:
                    maker[3] = m_open - fill
        return filled, notional, fills, owners

    def view(self) -> BookView:
        """Resting orders per side in priority order: (order_no, price, open)."""
        out = []
        for side in (0, 1):
            levels = self.levels[side]
            rows = []
            for price in sorted(levels, reverse=side == 0):
                rows.extend((r[0], r[2], r[3]) for r in levels[price][0] if r[3])
            out.append(tuple(rows))
        return out[0], out[1]


@dataclass
class Stream:
    seed: int
    owners: int
    cmds: list[Cmd]
    expected: list[Result]  # per command
    counts: dict[str, int]
    trades: int = 0
    filled_tonnes: int = 0
    notional_fen: int = 0
    resting_at_end: int = 0
    levels_at_end: int = 0
    price_range: tuple[int, int] = (MID, MID)
    owner_fallbacks: int = 0
    seconds: float = 0.0
    prefix_view: BookView = ((), ())
    orders: int = 0

    def describe(self) -> dict[str, Any]:
        n = len(self.cmds)
        return {
            "seed": self.seed,
            "commands": n,
            **self.counts,
            "mix": {k: round(v / n, 4) for k, v in self.counts.items()},
            "orders_placed": self.orders,
            "trades": self.trades,
            "filled_tonnes": self.filled_tonnes,
            "notional_yuan": round(self.notional_fen / 100, 2),
            "resting_orders_at_end": self.resting_at_end,
            "price_levels_at_end": self.levels_at_end,
            "mid_fen": MID,
            "band_ticks": BAND_TICKS,
            "tick_fen": 1,
            "price_range_fen": list(self.price_range),
            "quantity_t": f"1-{MAX_QTY} uniform",
            "owners": self.owners or "one per order",
            "self_trades": (
                "none: a crossing order's owner owns none of the makers it fills"
                if self.owners
                else "none: every order has its own owner"
            ),
            "owner_fallbacks": self.owner_fallbacks,
            "generate_seconds": round(self.seconds, 2),
        }


def generate(n: int, seed: int, owners: int, p_cancel: float, p_cross: float, snap: int) -> Stream:
    """The command stream and the fills it must produce; `snap` = when to keep the book view."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    rand, expo = rng.random, rng.expovariate
    lo, hi = MID - BAND_TICKS, MID + BAND_TICKS
    fair_lo, fair_hi = MID - BAND_TICKS // 2, MID + BAND_TICKS // 2
    book = ModelBook()
    cmds: list[Cmd] = []
    expected: list[Result] = []
    counts = [0, 0, 0]
    fair = MID
    order_no = trades = tonnes = notional = fallbacks = 0
    pmin, pmax = MID, MID
    crossing_ticks = (0, 0, 0, 0, 0, 1, 1, 2, 3, 5)
    view: BookView = ((), ())
    for i in range(n):
        if i == snap:
            view = book.view()
        if rand() < 0.1:
            fair += 1 if rand() < 0.5 else -1
            fair = min(max(fair, fair_lo), fair_hi)
        r = rand()
        qty = int(rand() * MAX_QTY) + 1
        if r < p_cancel and book.live_ids:
            no = book.live_ids[int(rand() * len(book.live_ids))]
            rec = book.cancel(no)
            cmds.append((CANCEL, no, rec[4], rec[1], rec[2], rec[3]))
            expected.append((rec[3], 0))
            counts[CANCEL] += 1
            continue
        if r < p_cancel + p_cross:
            side = 0 if rand() < 0.5 else 1
            opposite = book.best(1 - side)
            if opposite is None:
                side = 1 - side
                opposite = book.best(1 - side)
            if opposite is not None:
                k = crossing_ticks[int(rand() * 10)]
                price = min(opposite + k, hi) if side == 0 else max(opposite - k, lo)
                filled, value, fills, hit = book.take(side, price, qty)
                assert filled, "a crossing order must trade"
                if owners:
                    owner = int(rand() * owners)
                    tries = 0
                    while owner in hit and tries < 1000:
                        owner = int(rand() * owners)
                        tries += 1
                    if owner in hit:  # every owner in the pool was hit: one of its own
                        owner = owners + order_no
                        fallbacks += 1
                else:
                    owner = order_no
                if qty > filled:
                    book.rest(order_no, side, price, qty - filled, owner)
                cmds.append((CROSS, order_no, owner, side, price, qty))
                expected.append((filled, value))
                counts[CROSS] += 1
                order_no += 1
                trades += fills
                tonnes += filled
                notional += value
                pmin, pmax = min(pmin, price), max(pmax, price)
                continue
        # an add: rests without trading
        side = 0 if rand() < 0.5 else 1
        d = int(expo(0.2))  # ticks away from the fair value, mean 5
        price = 0
        for _ in range(2):
            if side == 0:
                price = max(fair - 1 - d, lo)
                ask = book.best(1)
                if ask is not None and price >= ask:
                    price = ask - 1
                if price >= lo:
                    break
            else:
                price = min(fair + 1 + d, hi)
                bid = book.best(0)
                if bid is not None and price <= bid:
                    price = bid + 1
                if price <= hi:
                    break
            side = 1 - side  # the touch sits at the band's edge: add on the other side
        else:
            raise AssertionError("no room for a resting order in the band")
        owner = int(rand() * owners) if owners else order_no
        book.rest(order_no, side, price, qty, owner)
        cmds.append((ADD, order_no, owner, side, price, qty))
        expected.append((0, 0))
        counts[ADD] += 1
        order_no += 1
        pmin, pmax = min(pmin, price), max(pmax, price)
    if snap >= n:
        view = book.view()
    return Stream(
        seed=seed,
        owners=owners,
        cmds=cmds,
        expected=expected,
        counts=dict(zip(KINDS, counts, strict=True)),
        trades=trades,
        filled_tonnes=tonnes,
        notional_fen=notional,
        resting_at_end=len(book.live),
        levels_at_end=len(book.levels[0]) + len(book.levels[1]),
        price_range=(pmin, pmax),
        owner_fallbacks=fallbacks,
        seconds=time.perf_counter() - t0,
        prefix_view=view,
        orders=order_no,
    )


# ------------------------------------------------------------------ ours


OurCmd = tuple[str, str, str, int, int]  # (oid, owner, side, price, qty); qty 0 = cancel


def ours_inputs(cmds: Sequence[Cmd], owners: int) -> list[OurCmd]:
    """Strings built once, outside the clock: the caller's ids, as a gateway would pass them."""
    pool = [f"m{k:03d}" for k in range(owners)]
    out: list[OurCmd] = []
    for kind, no, owner, side, price, qty in cmds:
        if kind == CANCEL:
            out.append((f"o{no}", "", "", 0, 0))
        else:
            name = pool[owner] if owner < owners else f"u{owner}"
            out.append((f"o{no}", name, SIDES[side], price, qty))
    return out


def run_ours(inputs: Sequence[OurCmd]) -> ContinuousBook:
    book = ContinuousBook(price_rule=RESTING)
    place, cancel = book.place, book.cancel
    for oid, owner, side, price, qty in inputs:
        if qty:
            place(oid, owner, side, price, qty)
        else:
            cancel(oid)
    return book


def check_ours(inputs: Sequence[OurCmd]) -> tuple[list[Result], BookView, list[str]]:
    book = ContinuousBook(price_rule=RESTING)
    results: list[Result] = []
    notes: list[str] = []
    for i, (oid, owner, side, price, qty) in enumerate(inputs):
        try:
            events = book.place(oid, owner, side, price, qty) if qty else book.cancel(oid)
        except EngineError as e:
            results.append((-1, 0))
            notes.append(f"command {i}: {e.code} {e}")
            continue
        if not qty:
            results.append((events[0][2], 0))  # type: ignore[arg-type]
            continue
        filled = value = 0
        for ev in events:
            if ev[0] == TRADE:
                filled += ev[3]  # type: ignore[operator]
                value += ev[2] * ev[3]  # type: ignore[operator]
            elif ev[0] == CANCELLED and ev[3] == R_STP:
                notes.append(f"command {i}: self-trade prevention fired: {ev}")
        results.append((filled, value))
    rows = book.open_orders()
    view = tuple(tuple((int(o[0][1:]), o[3], o[4]) for o in rows if o[2] == s) for s in (BUY, SELL))
    return results, (view[0], view[1]), notes


# ------------------------------------------------------------------ pyorderbook


def pyorderbook_backend() -> dict[str, Any]:
    """Which pyorderbook is measured: newer releases pick a Rust backend by themselves."""
    import pyorderbook
    from pyorderbook import Book

    flag = getattr(pyorderbook, "_USING_RUST", None)
    source = inspect.getsourcefile(Book) or ""
    python = flag is not True and inspect.isfunction(Book.match) and source.endswith(".py")
    return {
        "name": "pyorderbook",
        "version": importlib.metadata.version("pyorderbook"),
        "backend": "python" if python else "rust",
        "_USING_RUST": flag if flag is not None else "absent (this version has no Rust backend)",
        "book_class": f"{Book.__module__}.{Book.__qualname__}",
    }


def pyorderbook_sides() -> tuple[Any, Any]:
    from pyorderbook import Side

    return Side.BID, Side.ASK


def pyorderbook_inputs(cmds: Sequence[Cmd], prices: dict[int, Decimal]) -> list[tuple[bool, Any]]:
    """Order objects for one run (matching mutates them), built outside the clock."""
    from pyorderbook import Order, Side

    sides = (Side.BID, Side.ASK)
    orders: dict[int, Any] = {}
    out: list[tuple[bool, Any]] = []
    for kind, no, _owner, side, price, qty in cmds:
        if kind == CANCEL:
            out.append((False, orders.pop(no)))
        else:
            order = Order(sides[side], SYMBOL, prices[price], qty)
            orders[no] = order
            out.append((True, order))
    return out


# (order_no, side, price, qty) in a peer's own types; qty 0 = cancel
PeerCmd = tuple[int, Any, Any, int]


def peer_inputs(cmds: Sequence[Cmd], sides: Sequence[Any], prices: Any) -> list[PeerCmd]:
    """The stream in a peer's own types (side and price objects), converted once, off the clock."""
    return [
        (no, None, None, 0) if kind == CANCEL else (no, sides[side], prices[price], qty)
        for kind, no, _owner, side, price, qty in cmds
    ]


def run_pyorderbook_api(inputs: Sequence[PeerCmd]) -> Any:
    """The peer as a caller uses it: build the Order (uuid4 id, Decimal price), match it, keep
    it for a later cancel, which takes the Order object."""
    from pyorderbook import Book, Order

    book = Book()
    match, cancel = book.match, book.cancel
    orders: dict[int, Any] = {}
    for no, side, price, qty in inputs:
        if qty:
            order = Order(side, SYMBOL, price, qty)
            orders[no] = order
            match(order)
        else:
            cancel(orders.pop(no))
    return book


def run_pyorderbook(inputs: Sequence[tuple[bool, Any]]) -> Any:
    """Book work only: the Order objects were built beforehand."""
    from pyorderbook import Book

    book = Book()
    match, cancel = book.match, book.cancel
    for is_place, order in inputs:
        if is_place:
            match(order)
        else:
            cancel(order)
    return book


def check_pyorderbook(
    inputs: Sequence[tuple[bool, Any]], nos: Sequence[int]
) -> tuple[list[Result], BookView, list[str]]:
    from pyorderbook import Book, Side

    book = Book()
    results: list[Result] = []
    notes: list[str] = []
    no_of: dict[Any, int] = {}
    for i, ((is_place, order), no) in enumerate(zip(inputs, nos, strict=True)):
        if is_place:
            no_of[order.id] = no
            blotter = book.match(order)
            filled = sum(t.fill_quantity for t in blotter.trades)
            value = sum(int(t.fill_price * 100) * t.fill_quantity for t in blotter.trades)
            results.append((filled, value))
        else:
            try:
                book.cancel(order)
                results.append((order.quantity, 0))
            except (KeyError, ValueError) as e:
                results.append((-1, 0))
                notes.append(f"command {i}: cancel refused: {e!r}")
    view = []
    for side in (Side.BID, Side.ASK):
        levels = book.level_map[SYMBOL][side]
        rows = []
        for price in sorted(levels, reverse=side == Side.BID):
            rows.extend(
                (no_of[o.id], int(price * 100), o.quantity) for o in levels[price].orders.values()
            )
        view.append(tuple(rows))
    return results, (view[0], view[1]), notes


# ------------------------------------------------------------------ liquibook


def load_liquibook() -> tuple[Any, str | None]:
    """The module, or None and why not (it is a best-effort native anchor)."""
    try:
        import liquibook
    except Exception as e:  # a missing wheel or a broken shared object alike
        return None, f"{type(e).__name__}: {e}"
    return liquibook, None


def liquibook_listener(lb: Any, track: bool) -> Any:
    """An OrderListener: the only way fills leave a DepthOrderBook (it does not update orders).
    Every callback must be defined (they are pure virtual). `track` also keeps fills per order."""

    class Listener(lb.OrderListener):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            lb.OrderListener.__init__(self)
            self.fills = self.qty = self.notional = self.cancels = 0
            self.rejects: list[str] = []
            self.filled: dict[int, int] | None = {} if track else None

        def on_accept(self, order: Any) -> None:
            pass

        def on_fill(self, order: Any, matched: Any, qty: int, price: int) -> None:
            self.fills += 1
            self.qty += qty
            self.notional += qty * price
            filled = self.filled
            if filled is not None:
                for o in (order, matched):
                    key = o.order_id_
                    filled[key] = filled.get(key, 0) + qty

        def on_cancel(self, order: Any) -> None:
            self.cancels += 1

        def on_reject(self, order: Any, reason: str) -> None:
            self.rejects.append(f"reject {order.order_id_}: {reason}")

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            self.rejects.append(f"cancel reject {order.order_id_}: {reason}")

        def on_replace(self, order: Any, delta: int, price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: str) -> None:
            pass

    return Listener()


def liquibook_inputs(lb: Any, cmds: Sequence[Cmd]) -> list[tuple[bool, Any]]:
    orders: dict[int, Any] = {}
    out: list[tuple[bool, Any]] = []
    for kind, no, _owner, side, price, qty in cmds:
        if kind == CANCEL:
            out.append((False, orders.pop(no)))
        else:
            order = lb.SimpleOrder(side == 0, price, qty)
            orders[no] = order
            out.append((True, order))
    return out


def run_liquibook_api(lb: Any, inputs: Sequence[PeerCmd]) -> tuple[Any, Any]:
    """As a caller uses it: build the SimpleOrder, add it, keep it for a later cancel."""
    book = lb.DepthOrderBook()
    listener = liquibook_listener(lb, track=False)
    book.set_order_listener(listener)
    add, cancel, new = book.add, book.cancel, lb.SimpleOrder
    orders: dict[int, Any] = {}
    for no, is_buy, price, qty in inputs:
        if qty:
            order = new(is_buy, price, qty)
            orders[no] = order
            add(order)
        else:
            cancel(orders.pop(no))
    return book, listener


def run_liquibook(lb: Any, inputs: Sequence[tuple[bool, Any]]) -> tuple[Any, Any]:
    """Book work only: the SimpleOrder objects were built beforehand."""
    book = lb.DepthOrderBook()
    listener = liquibook_listener(lb, track=False)
    book.set_order_listener(listener)
    add, cancel = book.add, book.cancel
    for is_place, order in inputs:
        if is_place:
            add(order)
        else:
            cancel(order)
    return book, listener


def check_liquibook(
    lb: Any, inputs: Sequence[tuple[bool, Any]], nos: Sequence[int]
) -> tuple[list[Result], BookView, list[str]]:
    book = lb.DepthOrderBook()
    listener = liquibook_listener(lb, track=True)
    book.set_order_listener(listener)
    filled_by: dict[int, int] = listener.filled
    results: list[Result] = []
    no_of: dict[int, int] = {}
    notes: list[str] = []
    for i, ((is_place, order), no) in enumerate(zip(inputs, nos, strict=True)):
        qty0, value0, cancels0, rejects0 = (
            listener.qty,
            listener.notional,
            listener.cancels,
            len(listener.rejects),
        )
        if is_place:
            no_of[order.order_id_] = no
            book.add(order)
            results.append((listener.qty - qty0, listener.notional - value0))
        else:
            book.cancel(order)
            ok = listener.cancels == cancels0 + 1
            open_qty = order.order_qty() - filled_by.get(order.order_id_, 0)
            results.append((open_qty if ok else -1, 0))
        if len(listener.rejects) > rejects0:
            notes.append(f"command {i}: {listener.rejects[-1]}")
    view = []
    for side in (book.bids(), book.asks()):
        view.append(
            tuple((no_of[t.ptr().order_id_], t.ptr().price(), t.open_qty()) for t in side.values())
        )
    return results, (view[0], view[1]), notes


# ------------------------------------------------------------------ check


def first_difference(
    stream: Stream, n: int, engines: dict[str, tuple[list[Result], BookView, list[str]]]
) -> dict[str, Any] | None:
    """The first command where an engine's result differs from the generator's, else an engine's
    first complaint, else the first difference in the resting book at the end of the prefix."""
    for i in range(n):
        want = stream.expected[i]
        got = {name: e[0][i] for name, e in engines.items()}
        if any(g != want for g in got.values()):
            kind, no, owner, side, price, qty = stream.cmds[i]
            what = "filled t, Σ price×qty fen" if kind != CANCEL else "cancelled t, 0"
            return {
                "command": i,
                "kind": KIND_NAMES[kind],
                "order": f"o{no}",
                "owner": owner,
                "side": SIDES[side],
                "price_fen": price,
                "qty": qty,
                "compared": what,
                "generator": list(want),
                **{name: list(g) for name, g in got.items()},
            }
    for name, (_results, _view, notes) in engines.items():
        if notes:  # e.g. self-trade prevention fired, or an order refused, without changing fills
            return {"engine": name, "problem": notes[0], "more": len(notes) - 1}
    for side, label in ((0, "bids"), (1, "asks")):
        want_rows = stream.prefix_view[side]
        for name, (_r, view, _n) in engines.items():
            rows = view[side]
            if rows != want_rows:
                j = next(
                    (k for k, (a, b) in enumerate(zip(rows, want_rows, strict=False)) if a != b),
                    min(len(rows), len(want_rows)),
                )
                return {
                    "resting_book": label,
                    "engine": name,
                    "position": j,
                    "compared": "(order, price fen, open t) in priority order",
                    "generator": list(want_rows[j]) if j < len(want_rows) else None,
                    name: list(rows[j]) if j < len(rows) else None,
                    "generator_rows": len(want_rows),
                    f"{name}_rows": len(rows),
                }
    return None


# ------------------------------------------------------------------ timing


@dataclass
class Timing:
    seconds: float
    cpu_seconds: float
    build_seconds: float
    commands: int
    load_avg_1m: float
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    @property
    def rate_cpu(self) -> float:
        # this process's CPU time only: less sensitive to other work on a shared machine
        return self.commands / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def rate_with_build(self) -> float:
        return self.commands / (self.seconds + self.build_seconds)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "orders_per_s": round(self.rate, 1),
            "orders_per_cpu_s": round(self.rate_cpu, 1),
            "load_avg_1m": round(self.load_avg_1m, 2),
        }
        if self.build_seconds:
            out["build_seconds"] = round(self.build_seconds, 4)
            out["orders_per_s_incl_build"] = round(self.rate_with_build, 1)
        if self.problems:
            out["problems"] = self.problems
        return out


@contextmanager
def collector_off() -> Iterator[None]:
    """For untimed preparation only: building a million objects with the collector on spends
    most of its time in collections that find nothing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed(run: Callable[[], Any], gc_off: bool) -> tuple[float, float, Any]:
    """Wall and CPU seconds of one run; the prepared inputs are frozen out of the collector's
    reach so a full collection does not rescan them on the engine's account."""
    gc.collect()
    gc.freeze()
    if gc_off:
        gc.disable()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        gc.enable()
        gc.unfreeze()
    return seconds, cpu, out


def time_ours(inputs: list[OurCmd], stream: Stream, gc_off: bool) -> Timing:
    seconds, cpu, book = timed(lambda: run_ours(inputs), gc_off)
    problems = []
    if book.trade_no != stream.trades:
        problems.append(f"{book.trade_no} trades, the generator made {stream.trades}")
    if len(book.orders) != stream.resting_at_end:
        problems.append(f"{len(book.orders)} resting, the generator has {stream.resting_at_end}")
    return Timing(seconds, cpu, 0.0, len(inputs), os.getloadavg()[0], problems)


def _pyorderbook_totals(book: Any, stream: Stream) -> list[str]:
    if len(book.order_map) != stream.resting_at_end:
        return [f"{len(book.order_map)} resting, the generator has {stream.resting_at_end}"]
    return []


def time_pyorderbook(
    stream: Stream, api_in: list[PeerCmd], prices: dict[int, Decimal], gc_off: bool
) -> tuple[Timing, Timing]:
    """(through the API, book work only)."""
    seconds, cpu, book = timed(lambda: run_pyorderbook_api(api_in), gc_off)
    api = Timing(
        seconds, cpu, 0.0, len(api_in), os.getloadavg()[0], _pyorderbook_totals(book, stream)
    )
    del book
    t0 = time.perf_counter()
    with collector_off():
        inputs = pyorderbook_inputs(stream.cmds, prices)
    build = time.perf_counter() - t0
    seconds, cpu, book = timed(lambda: run_pyorderbook(inputs), gc_off)
    only = Timing(
        seconds, cpu, build, len(inputs), os.getloadavg()[0], _pyorderbook_totals(book, stream)
    )
    return api, only


def _liquibook_totals(listener: Any, stream: Stream) -> list[str]:
    problems = list(listener.rejects[:5])
    got = (listener.fills, listener.qty, listener.notional)
    want = (stream.trades, stream.filled_tonnes, stream.notional_fen)
    if got != want:
        problems.append(f"(fills, tonnes, fen) {got}, the generator made {want}")
    return problems


def time_liquibook(
    lb: Any, stream: Stream, api_in: list[PeerCmd], gc_off: bool
) -> tuple[Timing, Timing]:
    """(through the API, book work only)."""
    seconds, cpu, (book, listener) = timed(lambda: run_liquibook_api(lb, api_in), gc_off)
    api = Timing(
        seconds, cpu, 0.0, len(api_in), os.getloadavg()[0], _liquibook_totals(listener, stream)
    )
    del book, listener
    t0 = time.perf_counter()
    with collector_off():
        inputs = liquibook_inputs(lb, stream.cmds)
    build = time.perf_counter() - t0
    seconds, cpu, (_book, listener) = timed(lambda: run_liquibook(lb, inputs), gc_off)
    only = Timing(
        seconds, cpu, build, len(inputs), os.getloadavg()[0], _liquibook_totals(listener, stream)
    )
    return api, only


# ------------------------------------------------------------------ report


def code_version() -> dict[str, Any]:
    """Which engine was measured: the git commit, whether the tree differs from it, and a
    digest of the exchange sources actually imported."""
    import carbonhub.exchange.engine as engine

    src = Path(engine.__file__).resolve()
    out: dict[str, Any] = {"engine_sha256": hashlib.sha256(src.read_bytes()).hexdigest()[:16]}
    try:

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", "-C", str(src.parent), *a],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()

        out["commit"] = git("rev-parse", "--short", "HEAD")
        out["dirty"] = bool(git("status", "--porcelain", "--", str(src.parent)))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def profile_ours(inputs: list[OurCmd], path: str) -> None:
    """An extra, untimed run of our engine under cProfile; the top of it goes to stderr."""
    prof = cProfile.Profile()
    prof.enable()
    run_ours(inputs)
    prof.disable()
    prof.dump_stats(path)
    log(f"cProfile of our engine written to {path}; top functions by own time:")
    stats = pstats.Stats(prof, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(12)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--commands", type=int, default=1_000_000, help="commands in the stream")
    p.add_argument("--seed", type=int, default=20240)
    p.add_argument("--cancel-share", type=float, default=0.30, help="probability of a cancel")
    p.add_argument(
        "--cross-share", type=float, default=0.20, help="probability of a crossing order"
    )
    p.add_argument(
        "--owners", type=int, default=OWNERS, help="owner pool; 0 = every order its own owner"
    )
    p.add_argument(
        "--check", type=int, default=50_000, help="commands checked across engines before timing"
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs per engine; medians reported")
    p.add_argument("--no-gc", action="store_true", help="disable the collector while timing")
    p.add_argument("--skip-liquibook", action="store_true")
    p.add_argument("--profile", metavar="PATH", help="also cProfile our engine (untimed run)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.commands < 1 or args.repeat < 1 or args.check < 0 or args.owners < 0:
        p.error("--commands and --repeat must be positive, --check and --owners not negative")
    if not (
        args.cancel_share >= 0
        and args.cross_share >= 0
        and args.cancel_share + args.cross_share < 1
    ):
        p.error("--cancel-share and --cross-share must be non-negative and sum below 1")
    return args


def emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    if "disagreement" in result:
        print("ENGINES DISAGREE, no speed reported:")
        print(json.dumps(result["disagreement"], ensure_ascii=False, indent=2))
        return
    s, m = result["stream"], result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['python']}")
    print(
        f"stream: {s['commands']:,} commands (seed {s['seed']}): {s['adds']:,} adds, "
        f"{s['cancels']:,} cancels, {s['crossing']:,} crossing "
        f"({s['mix']['adds']:.1%} / {s['mix']['cancels']:.1%} / {s['mix']['crossing']:.1%}); "
        f"{s['trades']:,} trades; {s['resting_orders_at_end']:,} resting at the end"
    )
    print(f"check: the first {result['check']['commands']:,} commands agree across engines")
    print(f"commands/s, median of {result['repeat']}   (book work only: peer objects prebuilt)")
    print(f"  ours         {result['orders_per_s']:>10,.0f}")
    print(
        f"  pyorderbook  {result['peer_orders_per_s']:>10,.0f}   "
        f"({result['peer_orders_per_s_book_only']:,.0f}; {result['peer']['backend']} backend)"
        f"   ratio {result['ratio']:.2f} ({result['ratio_book_only']:.2f})"
    )
    if "liquibook_orders_per_s" in result:
        print(
            f"  liquibook    {result['liquibook_orders_per_s']:>10,.0f}   "
            f"({result['liquibook_orders_per_s_book_only']:,.0f})"
            f"   ratio {result['ratio_to_liquibook']:.2f} "
            f"({result['ratio_to_liquibook_book_only']:.2f})"
        )
    else:
        print(f"  liquibook    not run: {result['liquibook'].get('reason')}")
    met = {True: "met", False: "NOT met"}
    print(
        f"targets: ≥ {TARGET_ORDERS_PER_S:,.0f}/s {met[result['meets_target_orders_per_s']]}; "
        f"≥ {TARGET_RATIO:g}× peer {met[result['meets_target_ratio']]} "
        f"(book work only: {met[result['meets_target_ratio_book_only']]})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.commands
    check_n = min(args.check, n)
    lb, lb_reason = (None, "--skip-liquibook") if args.skip_liquibook else load_liquibook()
    peer = pyorderbook_backend()
    log(
        f"pyorderbook {peer['version']} ({peer['backend']} backend); liquibook: {lb_reason or 'ok'}"
    )

    code, mach = code_version(), machine()
    with collector_off():
        stream = generate(n, args.seed, args.owners, args.cancel_share, args.cross_share, check_n)
    desc = stream.describe()
    log(
        f"stream: {n:,} commands in {stream.seconds:.1f}s: "
        + ", ".join(f"{desc[k]:,} {k} ({desc['mix'][k]:.1%})" for k in KINDS)
        + f"; {stream.trades:,} trades"
    )
    prices = {p: Decimal(p) / 100 for p in range(MID - BAND_TICKS, MID + BAND_TICKS + 1)}
    with collector_off():
        ours_in = ours_inputs(stream.cmds, args.owners)

    # ---- differential check on the prefix
    t0 = time.perf_counter()
    prefix = stream.cmds[:check_n]
    nos = [c[1] for c in prefix]
    engines = {
        "ours": check_ours(ours_in[:check_n]),
        "pyorderbook": check_pyorderbook(pyorderbook_inputs(prefix, prices), nos),
    }
    if lb is not None:
        engines["liquibook"] = check_liquibook(lb, liquibook_inputs(lb, prefix), nos)
    diff = first_difference(stream, check_n, engines)
    check = {
        "commands": check_n,
        "engines": ["generator", *engines],
        "compared": "per incoming order (filled t, Σ price×qty fen); per cancel the tonnes "
        "cancelled; the resting book at the end of the prefix",
        "agree": diff is None,
    }
    log(
        f"check of {check_n:,} commands: {'agree' if diff is None else 'DISAGREE'} "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    result: dict[str, Any] = {
        "benchmark": "orderbook",
        "machine": mach,
        "stream": desc,
        "check": check,
    }
    if diff is not None:
        result["disagreement"] = diff
        print(
            f"[orderbook] first disagreement: {json.dumps(diff, ensure_ascii=False)}",
            file=sys.stderr,
        )
        emit(args, result)
        return 1
    del engines

    # ---- timed runs, interleaved
    sides = pyorderbook_sides()
    with collector_off():
        pob_in = peer_inputs(stream.cmds, sides, prices)
        lb_in = peer_inputs(stream.cmds, (True, False), range(MID + BAND_TICKS + 1))
    names = ("ours", "pyorderbook", "pyorderbook_book_only", "liquibook", "liquibook_book_only")
    runs: dict[str, list[Timing]] = {name: [] for name in names}
    for r in range(args.repeat):
        t = time_ours(ours_in, stream, args.no_gc)
        runs["ours"].append(t)
        log(f"run {r + 1}: ours {t.seconds:.2f}s, {t.rate:,.0f}/s")
        t, o = time_pyorderbook(stream, pob_in, prices, args.no_gc)
        runs["pyorderbook"].append(t)
        runs["pyorderbook_book_only"].append(o)
        log(
            f"run {r + 1}: pyorderbook {t.seconds:.2f}s, {t.rate:,.0f}/s; book work only "
            f"{o.seconds:.2f}s, {o.rate:,.0f}/s (+{o.build_seconds:.2f}s building Orders)"
        )
        if lb is not None:
            t, o = time_liquibook(lb, stream, lb_in, args.no_gc)
            runs["liquibook"].append(t)
            runs["liquibook_book_only"].append(o)
            log(
                f"run {r + 1}: liquibook {t.seconds:.2f}s, {t.rate:,.0f}/s; book work only "
                f"{o.seconds:.2f}s, {o.rate:,.0f}/s (+{o.build_seconds:.2f}s building orders)"
            )
    del pob_in, lb_in
    if args.profile:
        profile_ours(ours_in, args.profile)

    def med(name: str) -> float:
        return statistics.median(t.rate for t in runs[name])

    ours_rate, peer_rate, peer_only = med("ours"), med("pyorderbook"), med("pyorderbook_book_only")
    result.update(
        {
            "gc": "disabled while timing"
            if args.no_gc
            else "enabled while timing; gc.collect() and gc.freeze() of the inputs before each run",
            "repeat": args.repeat,
            "rate": "commands (adds + cancels + crossing) / wall seconds of the feeding loop; "
            "medians over the repeats",
            "orders_per_s": round(ours_rate, 1),
            "ours": {
                "engine": "carbonhub.exchange.engine.ContinuousBook(price_rule=RESTING)",
                "inputs": "(oid, owner, side, price fen, qty) tuples built before the clock",
                "runs": [t.as_dict() for t in runs["ours"]],
            },
            "peer": {
                **peer,
                "prices": "Decimal yuan, converted from fen before the clock",
                "api": "each add/crossing builds its Order (uuid4 id, Decimal(str(price))) in "
                "the timed loop, calls Book.match and keeps it in a dict for Book.cancel",
                "book_only": "the same with every Order built before the clock (build_seconds)",
                "runs": [t.as_dict() for t in runs["pyorderbook"]],
                "runs_book_only": [t.as_dict() for t in runs["pyorderbook_book_only"]],
            },
            "peer_orders_per_s": round(peer_rate, 1),
            "peer_orders_per_s_book_only": round(peer_only, 1),
            "ratio": round(ours_rate / peer_rate, 3),
            "ratio_book_only": round(ours_rate / peer_only, 3),
        }
    )
    if lb is not None:
        lb_rate, lb_only = med("liquibook"), med("liquibook_book_only")
        result["liquibook"] = {
            "available": True,
            "version": importlib.metadata.version("liquibook"),
            "book": "DepthOrderBook (C++ via SWIG); fills through a Python OrderListener, "
            "integer fen prices",
            "api": "each add/crossing builds its SimpleOrder in the timed loop",
            "book_only": "SimpleOrders built before the clock (build_seconds)",
            "runs": [t.as_dict() for t in runs["liquibook"]],
            "runs_book_only": [t.as_dict() for t in runs["liquibook_book_only"]],
        }
        result["liquibook_orders_per_s"] = round(lb_rate, 1)
        result["liquibook_orders_per_s_book_only"] = round(lb_only, 1)
        result["ratio_to_liquibook"] = round(ours_rate / lb_rate, 3)
        result["ratio_to_liquibook_book_only"] = round(ours_rate / lb_only, 3)
    else:
        result["liquibook"] = {"available": False, "reason": lb_reason}
    result.update(
        {
            "targets": {"orders_per_s": TARGET_ORDERS_PER_S, "ratio_to_peer": TARGET_RATIO},
            "meets_target_orders_per_s": ours_rate >= TARGET_ORDERS_PER_S,
            "meets_target_ratio": ours_rate / peer_rate >= TARGET_RATIO,
            "meets_target_ratio_book_only": ours_rate / peer_only >= TARGET_RATIO,
            "code": code,
        }
    )
    cpu = {
        name: round(statistics.median(t.rate_cpu for t in ts), 1) for name, ts in runs.items() if ts
    }
    result["orders_per_cpu_s"] = {
        **cpu,
        "ratio": round(cpu["ours"] / cpu["pyorderbook"], 3),
        "ratio_book_only": round(cpu["ours"] / cpu["pyorderbook_book_only"], 3),
    }
    if "liquibook" in cpu:
        result["orders_per_cpu_s"]["ratio_to_liquibook"] = round(cpu["ours"] / cpu["liquibook"], 3)
    result["load_avg_1m_max"] = round(max(t.load_avg_1m for ts in runs.values() for t in ts), 2)
    if code_version().get("engine_sha256") != code.get("engine_sha256"):
        code["changed_during_run"] = True
    problems = [f"{name}: {p}" for name, ts in runs.items() for t in ts for p in t.problems]
    if problems:
        result["problems"] = problems
    emit(args, result)
    if problems:
        print(f"[orderbook] TOTALS DISAGREE after the timed runs: {problems[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
