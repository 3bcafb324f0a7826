"""Order books as pure, deterministic state machines: commands in, events out.

No clock, no randomness, no I/O: a timestamp, if any, travels on the command, and trade numbers
come from the book's own counter, so replaying the same commands rebuilds the same books, orders
and trades (research/exchange-anchors.md F4). Prices are integer fen per tonne, quantities whole
tonnes.

Two books live here:
- `ContinuousBook`: Hubei 协商议价, a continuous double auction with price then time priority;
  limit, IOC and FOK; cancel; quantity-down amend keeping priority; self-trade prevention; the
  trade price rule is pluggable (resting price, or the middle of bid, ask and last price).
- `ListingBook`: national 挂牌协议, resting listings that never match by themselves; a taker names
  one order among the best five price levels of the other side and trades at its price.

Speed comes from the habits of the fast engines (exchange-anchors B.6): integer prices, a heap of
live price levels per side with lazy deletion, FIFO deques per level with O(1) cancel by marking,
orders as small lists, events as tuples.
"""

from __future__ import annotations

import hashlib
from collections import deque
from heapq import heappop, heappush
from typing import Any, Final

BUY: Final = "B"
SELL: Final = "S"

# time in force
LIMIT: Final = "LIMIT"  # rests for the day until filled, cancelled or expired
IOC: Final = "IOC"  # fills what it can at once, the rest is cancelled
FOK: Final = "FOK"  # fills completely at once or not at all

# trade price rules
RESTING: Final = "RESTING"  # the resting (maker) order's price: every peer and anchor does this
MIDDLE: Final = "MIDDLE"  # Hubei: the middle of (bid, ask, last price)

# self-trade prevention (exchange-anchors B.5): what happens when a taker meets its own owner
CANCEL_TAKER: Final = "CANCEL_TAKER"  # the incoming order's remainder is cancelled (default)
CANCEL_MAKER: Final = "CANCEL_MAKER"  # the resting order is cancelled, matching goes on
CANCEL_BOTH: Final = "CANCEL_BOTH"

# events
TRADE: Final = "TRADE"  # (TRADE, trade_no, price, qty, buy_oid, sell_oid, taker_side)
CANCELLED: Final = "CANCELLED"  # (CANCELLED, oid, qty_cancelled, reason)
AMENDED: Final = "AMENDED"  # (AMENDED, oid, new_open)
RESTED: Final = "RESTED"  # (RESTED, oid, open_qty): the remainder now rests in the book

# cancel reasons
R_USER: Final = "USER"
R_IOC: Final = "IOC_REMAINDER"
R_FOK: Final = "FOK_NOT_FILLABLE"
R_STP: Final = "SELF_TRADE"
R_CLOSE: Final = "DAY_END"

# an order is a list, for speed: [oid, owner, side, price, open]
_OID, _OWNER, _SIDE, _PRICE, _OPEN = 0, 1, 2, 3, 4

Event = tuple[Any, ...]  # see the event kinds above


class EngineError(Exception):
    """A command the book refuses; it changed nothing. `code` matches the domain error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def middle(a: int, b: int, c: int) -> int:
    """The middle value of three prices (Hubei's 中间价)."""
    if a > b:
        a, b = b, a
    if b > c:
        b = c
    return a if a > b else b


class _Side:
    """One side of a book: price → [deque of orders, live count], plus a heap of prices.

    The heap holds each live price once (negated for bids, so the top is always the best); a
    price whose level emptied is dropped lazily when it reaches the top.
    """

    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.levels: dict[int, list[object]] = {}
        self.heap: list[int] = []
        self.sign = sign  # -1 for bids (max-heap through negation), +1 for asks

    def best(self) -> int | None:
        heap, levels, sign = self.heap, self.levels, self.sign
        while heap:
            price = heap[0] * sign
            if price in levels:
                return price
            heappop(heap)
        return None

    def add(self, order: list[object]) -> None:
        price: int = order[_PRICE]  # type: ignore[assignment]
        level = self.levels.get(price)
        if level is None:
            self.levels[price] = [deque((order,)), 1]
            heappush(self.heap, price * self.sign)
        else:
            level[0].append(order)  # type: ignore[attr-defined]
            level[1] += 1  # type: ignore[operator]

    def remove(self, order: list[object]) -> None:
        """Marks the order dead; its level goes when its last live order goes."""
        order[_OPEN] = 0
        level = self.levels[order[_PRICE]]  # type: ignore[index]
        level[1] -= 1  # type: ignore[operator]
        if not level[1]:
            del self.levels[order[_PRICE]]  # type: ignore[arg-type]

    def prices(self, n: int) -> list[int]:
        """The best `n` live prices in priority order."""
        live = sorted(self.levels, reverse=self.sign < 0)
        return live[:n]

    def depth(self, n: int) -> list[tuple[int, int, int]]:
        """(price, total open quantity, number of orders) for the best `n` levels."""
        out = []
        for price in self.prices(n):
            orders = [o for o in self.levels[price][0] if o[_OPEN]]  # type: ignore[attr-defined]
            out.append((price, sum(o[_OPEN] for o in orders), len(orders)))
        return out

    def live_orders(self, price: int) -> list[list[object]]:
        level = self.levels.get(price)
        if level is None:
            return []
        return [o for o in level[0] if o[_OPEN]]  # type: ignore[attr-defined]


class _Book:
    __slots__ = ("asks", "bids", "last_price", "orders", "seq", "trade_no")

    def __init__(self, last_price: int = 0) -> None:
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.orders: dict[str, list[object]] = {}
        self.trade_no = 0
        self.last_price = last_price
        self.seq = 0  # commands applied; the service checks it against the durable log

    def depth(self, n: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        return {"bids": self.bids.depth(n), "asks": self.asks.depth(n)}

    def open_orders(self) -> list[tuple[str, str, str, int, int]]:
        """Every resting order, (oid, owner, side, price, open), in priority order per side."""
        out: list[tuple[str, str, str, int, int]] = []
        for side in (self.bids, self.asks):
            for price in side.prices(len(side.levels)):
                for o in side.live_orders(price):
                    out.append((o[0], o[1], o[2], o[3], o[4]))  # type: ignore[arg-type]
        return out

    def state_hash(self) -> str:
        """A digest of everything the book holds, for replay tests."""
        text = repr((self.open_orders(), self.trade_no, self.last_price, self.seq))
        return hashlib.sha256(text.encode()).hexdigest()

    def cancel(self, oid: str, reason: str = R_USER) -> list[Event]:
        order = self.orders.pop(oid, None)
        if order is None:
            raise EngineError("ORDER_NOT_OPEN", f"order {oid} is not open in this book")
        self.seq += 1
        qty = order[_OPEN]
        # _Side.remove, inlined
        order[_OPEN] = 0
        levels = (self.bids if order[_SIDE] == BUY else self.asks).levels
        level = levels[order[_PRICE]]  # type: ignore[index]
        level[1] -= 1  # type: ignore[operator]
        if not level[1]:
            del levels[order[_PRICE]]  # type: ignore[arg-type]
        return [(CANCELLED, oid, qty, reason)]

    def amend(self, oid: str, new_open: int) -> list[Event]:
        """Quantity down only: the order keeps its place in the queue."""
        order = self.orders.get(oid)
        if order is None:
            raise EngineError("ORDER_NOT_OPEN", f"order {oid} is not open in this book")
        if not 0 < new_open < order[_OPEN]:  # type: ignore[operator]
            raise EngineError(
                "AMEND_NOT_DOWN", "an amend may only lower the open quantity, above zero"
            )
        self.seq += 1
        order[_OPEN] = new_open
        return [(AMENDED, oid, new_open)]

    def close(self) -> list[Event]:
        """Day end: every resting order expires, in priority order."""
        self.seq += 1
        events: list[Event] = []
        for oid, *_rest, qty in self.open_orders():
            events.append((CANCELLED, oid, qty, R_CLOSE))
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.orders = {}
        return events

    def set_reference(self, price: int) -> None:
        """The last price the middle rule uses before the day's first trade (the previous close)."""
        self.seq += 1
        self.last_price = price


class ContinuousBook(_Book):
    """Continuous double auction (Hubei 协商议价): price priority, then time."""

    __slots__ = ("price_rule", "stp")

    def __init__(
        self, *, price_rule: str = RESTING, stp: str = CANCEL_TAKER, last_price: int = 0
    ) -> None:
        super().__init__(last_price)
        if price_rule not in (RESTING, MIDDLE):
            raise ValueError(f"unknown trade price rule {price_rule}")
        if stp not in (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH):
            raise ValueError(f"unknown self-trade prevention {stp}")
        self.price_rule = price_rule
        self.stp = stp

    def place(
        self, oid: str, owner: str, side: str, price: int, qty: int, tif: str = LIMIT
    ) -> list[Event]:
        if oid in self.orders:
            raise EngineError("ORDER_ID_TAKEN", f"order {oid} is already in the book")
        if qty <= 0 or price <= 0:
            raise EngineError("ORDER_INVALID", "price and quantity must be positive")
        if side == BUY:
            opposite, own = self.asks, self.bids
        elif side == SELL:
            opposite, own = self.bids, self.asks
        else:
            raise EngineError("SIDE_INVALID", f"side must be {BUY} or {SELL}")
        if tif not in (LIMIT, IOC, FOK):
            raise EngineError("TIF_INVALID", f"time in force must be {LIMIT}, {IOC} or {FOK}")
        if tif == FOK and not self._fillable(owner, side, price, qty, opposite):
            self.seq += 1
            return [(CANCELLED, oid, qty, R_FOK)]
        self.seq += 1
        events: list[Event] = []
        levels, heap, sign = opposite.levels, opposite.heap, opposite.sign
        buying = side == BUY
        middle_rule = self.price_rule == MIDDLE
        orders = self.orders
        while qty and heap:
            best = heap[0] * sign
            level = levels.get(best)
            if level is None:
                heappop(heap)
                continue
            if (best > price) if buying else (best < price):
                break
            queue: deque[list[object]] = level[0]  # type: ignore[assignment]
            while qty:
                maker = queue[0]
                m_open: int = maker[_OPEN]  # type: ignore[assignment]
                if not m_open:
                    queue.popleft()
                    continue
                if maker[_OWNER] == owner:
                    stp = self.stp
                    if stp != CANCEL_TAKER:
                        events.append((CANCELLED, maker[_OID], m_open, R_STP))
                        del orders[maker[_OID]]  # type: ignore[arg-type]
                        queue.popleft()
                        maker[_OPEN] = 0
                        level[1] -= 1  # type: ignore[operator]
                        if not level[1]:
                            del levels[best]
                    if stp != CANCEL_MAKER:
                        events.append((CANCELLED, oid, qty, R_STP))
                        qty = 0
                    if best not in levels:
                        break
                    continue
                fill = qty if qty < m_open else m_open
                if middle_rule:
                    trade_price = (
                        middle(price, best, self.last_price)
                        if buying
                        else middle(best, price, self.last_price)
                    )
                else:
                    trade_price = best
                self.trade_no += 1
                self.last_price = trade_price
                if buying:
                    events.append((TRADE, self.trade_no, trade_price, fill, oid, maker[_OID], side))
                else:
                    events.append((TRADE, self.trade_no, trade_price, fill, maker[_OID], oid, side))
                qty -= fill
                if fill == m_open:
                    queue.popleft()
                    maker[_OPEN] = 0
                    del orders[maker[_OID]]  # type: ignore[arg-type]
                    level[1] -= 1  # type: ignore[operator]
                    if not level[1]:
                        del levels[best]
                        break
                else:
                    maker[_OPEN] = m_open - fill
        if qty:
            if tif == LIMIT:
                order = [oid, owner, side, price, qty]
                orders[oid] = order
                # _Side.add, inlined: the hot path of every resting order
                own_level = own.levels.get(price)
                if own_level is None:
                    own.levels[price] = [deque((order,)), 1]
                    heappush(own.heap, price * own.sign)
                else:
                    own_level[0].append(order)  # type: ignore[attr-defined]
                    own_level[1] += 1  # type: ignore[operator]
                events.append((RESTED, oid, qty))
            else:
                events.append((CANCELLED, oid, qty, R_IOC))
        return events

    def _fillable(self, owner: str, side: str, price: int, qty: int, opposite: _Side) -> bool:
        """Whether a FOK can fill completely; an own order in the way ends it unless the book
        cancels makers on self-trade."""
        buying = side == BUY
        for level_price in sorted(opposite.levels, reverse=not buying):
            if (level_price > price) if buying else (level_price < price):
                return False
            for o in opposite.live_orders(level_price):
                if o[_OWNER] == owner:
                    if self.stp == CANCEL_MAKER:
                        continue
                    return False
                qty -= o[_OPEN]  # type: ignore[operator]
                if qty <= 0:
                    return True
        return False


LISTING_LEVELS: Final = 5


class ListingBook(_Book):
    """National 挂牌协议: listings rest; a taker picks one among the best five levels."""

    __slots__ = ()

    def post(self, oid: str, owner: str, side: str, price: int, qty: int) -> list[Event]:
        if oid in self.orders:
            raise EngineError("ORDER_ID_TAKEN", f"order {oid} is already in the book")
        if qty <= 0 or price <= 0:
            raise EngineError("ORDER_INVALID", "price and quantity must be positive")
        if side not in (BUY, SELL):
            raise EngineError("SIDE_INVALID", f"side must be {BUY} or {SELL}")
        opposite_best = (self.asks if side == BUY else self.bids).best()
        if opposite_best is not None and (
            price >= opposite_best if side == BUY else price <= opposite_best
        ):
            raise EngineError(
                "LISTING_WOULD_CROSS",
                "a listing at this price would cross the other side: take that order instead",
            )
        self.seq += 1
        order: list[object] = [oid, owner, side, price, qty]
        self.orders[oid] = order
        (self.bids if side == BUY else self.asks).add(order)
        return [(RESTED, oid, qty)]

    def take(self, taker_oid: str, owner: str, target_oid: str, qty: int) -> list[Event]:
        """The taker trades `qty` with the named listing at the listing's price."""
        target = self.orders.get(target_oid)
        if target is None:
            raise EngineError("ORDER_NOT_OPEN", f"listing {target_oid} is gone")
        if target[_OWNER] == owner:
            raise EngineError("SELF_TRADE", "you may not take your own listing")
        side = target[_SIDE]
        book_side = self.bids if side == BUY else self.asks
        if target[_PRICE] not in book_side.prices(LISTING_LEVELS):
            raise EngineError(
                "BEYOND_LEVEL_5", "a taker may choose only among the best five price levels"
            )
        if qty <= 0:
            raise EngineError("ORDER_INVALID", "quantity must be positive")
        if qty > target[_OPEN]:  # type: ignore[operator]
            raise EngineError(
                "TAKE_EXCEEDS_LISTING", f"the listing has only {target[_OPEN]} t open"
            )
        self.seq += 1
        self.trade_no += 1
        price: int = target[_PRICE]  # type: ignore[assignment]
        self.last_price = price
        taker_side = SELL if side == BUY else BUY
        buy_oid, sell_oid = (target_oid, taker_oid) if side == BUY else (taker_oid, target_oid)
        events: list[Event] = [(TRADE, self.trade_no, price, qty, buy_oid, sell_oid, taker_side)]
        if qty == target[_OPEN]:
            del self.orders[target_oid]
            book_side.remove(target)
        else:
            target[_OPEN] = target[_OPEN] - qty  # type: ignore[operator]
        return events


def new_book(mode: str, price_rule: str = RESTING, last_price: int = 0) -> _Book:
    """An empty book for a mode: LISTING or CONTINUOUS."""
    if mode == "LISTING":
        return ListingBook(last_price)
    return ContinuousBook(price_rule=price_rule, last_price=last_price)


def apply(book: _Book, cmd: dict[str, object]) -> list[Event]:
    """One logged command, as the service wrote it; replaying the log calls only this."""
    k = cmd["k"]
    if k == "place" and isinstance(book, ContinuousBook):
        return book.place(
            str(cmd["oid"]),
            str(cmd["owner"]),
            str(cmd["side"]),
            int(cmd["price"]),  # type: ignore[call-overload]
            int(cmd["qty"]),  # type: ignore[call-overload]
            str(cmd["tif"]),
        )
    if k == "post" and isinstance(book, ListingBook):
        return book.post(
            str(cmd["oid"]),
            str(cmd["owner"]),
            str(cmd["side"]),
            int(cmd["price"]),  # type: ignore[call-overload]
            int(cmd["qty"]),  # type: ignore[call-overload]
        )
    if k == "take" and isinstance(book, ListingBook):
        return book.take(
            str(cmd["oid"]),
            str(cmd["owner"]),
            str(cmd["target"]),
            int(cmd["qty"]),  # type: ignore[call-overload]
        )
    if k == "cancel":
        return book.cancel(str(cmd["oid"]))
    if k == "amend":
        return book.amend(str(cmd["oid"]), int(cmd["qty"]))  # type: ignore[call-overload]
    if k == "close":
        return book.close()
    if k == "reference":
        book.set_reference(int(cmd["price"]))  # type: ignore[call-overload]
        return []
    raise EngineError("COMMAND_UNKNOWN", f"this book does not take {k!r}")
