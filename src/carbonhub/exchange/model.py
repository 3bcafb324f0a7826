"""Trading rules as pure data and functions: modes, bands, sizes, sessions, fees, prices, index.

Every market-specific number is configuration (`MODE_PRESETS`, an instrument's `rules`), never a
branch in code. Prices are integer fen per tonne, quantities whole tonnes, money integer fen.
Sources: research/exchange-anchors.md A.1 (national), A.2 (Hubei), D (settlement), E (index).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from carbonhub.core.errors import Conflict, InvalidInput
from carbonhub.core.timefmt import SHANGHAI
from carbonhub.exchange import engine as e


class Mode(StrEnum):
    LISTING = "LISTING"  # 挂牌协议, market-data code 10
    BLOCK = "BLOCK"  # 大宗协议, code 20
    AUCTION = "AUCTION"  # 单向竞价, code 21
    CONTINUOUS = "CONTINUOUS"  # Hubei 协商议价


MODE_CODES = {Mode.LISTING: "10", Mode.BLOCK: "20", Mode.AUCTION: "21", Mode.CONTINUOUS: "30"}
BOOK_MODES = (Mode.LISTING, Mode.CONTINUOUS)  # modes whose orders rest in an order book
CLOSE_MODES = frozenset(BOOK_MODES)  # close = VWAP of the day's listing or continuous trades


@dataclass(frozen=True)
class ModeRules:
    """One trading mode of one instrument."""

    band_bps: int  # ± this many basis points of the previous close
    min_qty: int  # inclusive
    max_qty: int | None  # inclusive; None = no upper limit
    sessions: tuple[tuple[str, str], ...]  # local (Asia/Shanghai) HH:MM windows, [start, end)
    fee_bps: int  # per side, on the trade value
    price_rule: str = e.RESTING  # continuous mode only

    def as_dict(self) -> dict[str, Any]:
        return {
            "band_bps": self.band_bps,
            "min_qty": self.min_qty,
            "max_qty": self.max_qty,
            "sessions": [list(s) for s in self.sessions],
            "fee_bps": self.fee_bps,
            "price_rule": self.price_rule,
        }


_DAY = (("09:30", "11:30"), ("13:00", "15:00"))
_AFTERNOON = (("13:00", "15:00"),)

# Presets: national rules (exchange-anchors A.1, [secondary]) and Hubei's (A.2). National fees
# were not found [unverified]: the preset charges Hubei's 0.5 % per side so that every mode has a
# fee an operator can see and change.
MODE_PRESETS: dict[str, dict[Mode, ModeRules]] = {
    "national": {
        Mode.LISTING: ModeRules(1000, 1, 99_999, _DAY, 50),
        Mode.BLOCK: ModeRules(3000, 100_000, None, _AFTERNOON, 50),
        Mode.AUCTION: ModeRules(3000, 1, None, _DAY, 50),
    },
    "hubei": {
        Mode.CONTINUOUS: ModeRules(1000, 1, None, _DAY, 50, e.MIDDLE),
        Mode.BLOCK: ModeRules(3000, 100_000, None, _AFTERNOON, 50),
        Mode.AUCTION: ModeRules(3000, 1, None, _DAY, 50),
    },
}

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_INSTRUMENT = re.compile(r"^[A-Z][A-Z0-9_-]{1,31}$")


def parse_rules(raw: Mapping[str, Any]) -> dict[Mode, ModeRules]:
    """Rules from configuration, each value checked; a bad rule is an error, never a default."""
    out: dict[Mode, ModeRules] = {}
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidInput(
            "RULES_INVALID", "rules name at least one trading mode", "须配置交易方式"
        )
    for name, r in raw.items():
        try:
            mode = Mode(name)
        except ValueError:
            raise InvalidInput(
                "MODE_UNKNOWN", f"unknown trading mode {name!r}", "未知交易方式"
            ) from None
        if not isinstance(r, Mapping):
            raise InvalidInput("RULES_INVALID", f"{name}: rules must be an object", "规则格式错误")
        try:
            sessions = tuple((str(a), str(b)) for a, b in r["sessions"])
            rules = ModeRules(
                band_bps=_int(r["band_bps"], 0, 10_000, "band_bps"),
                min_qty=_int(r["min_qty"], 1, 10**12, "min_qty"),
                max_qty=None
                if r.get("max_qty") is None
                else _int(r["max_qty"], 1, 10**12, "max_qty"),
                sessions=sessions,
                fee_bps=_int(r["fee_bps"], 0, 1_000, "fee_bps"),
                price_rule=str(r.get("price_rule", e.RESTING)),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(
                "RULES_INVALID",
                f"{name}: band_bps, min_qty, max_qty, sessions and fee_bps are required",
                "规则缺少必填项",
            ) from None
        if rules.price_rule not in (e.RESTING, e.MIDDLE):
            raise InvalidInput(
                "RULES_INVALID", f"unknown price rule {rules.price_rule!r}", "未知成交价规则"
            )
        if rules.max_qty is not None and rules.max_qty < rules.min_qty:
            raise InvalidInput("RULES_INVALID", "max_qty is below min_qty", "数量上限低于下限")
        if not sessions:
            raise InvalidInput("RULES_INVALID", f"{name}: at least one session", "须配置交易时段")
        for a, b in sessions:
            if not (_HHMM.fullmatch(a) and _HHMM.fullmatch(b) and a < b):
                raise InvalidInput("RULES_INVALID", f"bad session {a}-{b}", "交易时段格式错误")
        out[mode] = rules
    return out


def _int(value: Any, lo: int, hi: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(name)
    return value


def rules_dict(rules: Mapping[Mode, ModeRules]) -> dict[str, Any]:
    return {mode.value: r.as_dict() for mode, r in rules.items()}


def check_instrument_code(code: object) -> str:
    if not isinstance(code, str) or not _INSTRUMENT.fullmatch(code):
        raise InvalidInput(
            "INSTRUMENT_CODE_INVALID",
            "instrument codes are 2-32 capitals, digits, - or _ (CEA2024)",
            "产品代码格式错误",
        )
    return code


# ---------------------------------------------------------------- prices and bands


def band(reference: int, band_bps: int) -> tuple[int, int]:
    """Inclusive price limits: reference × (1 ± band), rounded half-up to the 0.01 tick."""
    low = (reference * (10_000 - band_bps) + 5_000) // 10_000
    high = (reference * (10_000 + band_bps) + 5_000) // 10_000
    return max(low, 1), high


def check_price(price: object, reference: int, rules: ModeRules) -> int:
    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
        raise InvalidInput(
            "PRICE_OFF_TICK",
            "price must be a positive multiple of 0.01 yuan",
            "价格须为0.01元的整数倍",
        )
    low, high = band(reference, rules.band_bps)
    if not low <= price <= high:
        raise InvalidInput(
            "PRICE_OUTSIDE_BAND",
            f"price must lie within {low / 100:.2f}–{high / 100:.2f} yuan (±{rules.band_bps / 100:g} % of {reference / 100:.2f})",
            f"价格须在 {low / 100:.2f}–{high / 100:.2f} 元之间",
            low=low,
            high=high,
        )
    return price


def check_quantity(qty: object, rules: ModeRules) -> int:
    if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
        raise InvalidInput(
            "QUANTITY_NOT_LOT",
            "quantity must be a whole number of tonnes (lot 1 t)",
            "数量须为整数吨",
        )
    if qty < rules.min_qty or (rules.max_qty is not None and qty > rules.max_qty):
        limit = f"{rules.min_qty}" + (
            f"–{rules.max_qty}" if rules.max_qty is not None else " or more"
        )
        raise InvalidInput(
            "QUANTITY_OUTSIDE_LIMITS",
            f"this mode takes orders of {limit} t",
            f"该交易方式的申报数量须为 {limit} 吨",
        )
    return qty


def fee(value_fen: int, fee_bps: int) -> int:
    """Fee per side: value × rate, truncated to the fen. Truncation keeps an order's freeze
    (limit × quantity plus the fee on that) enough for any set of fills at or inside the limit."""
    return value_fen * fee_bps // 10_000


def buy_freeze(limit: int, qty: int, fee_bps: int) -> int:
    value = limit * qty
    return value + fee(value, fee_bps)


def vwap(trades: Iterable[tuple[int, int]]) -> int | None:
    """Volume-weighted average price of (price, qty), rounded half-up to the fen."""
    value = volume = 0
    for price, qty in trades:
        value += price * qty
        volume += qty
    return average_price(value, volume)


def average_price(value: int, volume: int) -> int | None:
    """value ÷ volume rounded half-up to the fen; None when nothing traded."""
    return (value * 2 + volume) // (volume * 2) if volume else None


# ---------------------------------------------------------------- calendar and sessions


def local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(SHANGHAI)


def trading_day(moment: dt.datetime) -> dt.date:
    return local(moment).date()


def is_trading_day(day: dt.date, holidays: Iterable[dt.date]) -> bool:
    return day.weekday() < 5 and day not in set(holidays)


def check_session(moment: dt.datetime, rules: ModeRules, holidays: Iterable[dt.date]) -> None:
    here = local(moment)
    if not is_trading_day(here.date(), holidays):
        raise Conflict("MARKET_CLOSED_DAY", f"{here.date()} is not a trading day", "非交易日")
    hhmm = f"{here.hour:02d}:{here.minute:02d}"
    if not any(a <= hhmm < b for a, b in rules.sessions):
        windows = ", ".join(f"{a}–{b}" for a, b in rules.sessions)
        raise Conflict(
            "OUTSIDE_SESSION",
            f"this mode trades {windows} Asia/Shanghai; it is {hhmm}",
            f"该交易方式的交易时段为 {windows}",
        )


# ---------------------------------------------------------------- one-sided auction


@dataclass(frozen=True)
class Bid:
    bid_id: str
    bidder: str
    price: int
    qty: int
    seq: int  # arrival order


@dataclass(frozen=True)
class Award:
    bid_id: str
    bidder: str
    price: int  # pay-as-bid: each winning bid trades at its own price
    qty: int


def allocate(
    quantity: int, reserve: int, bids: Sequence[Bid], *, selling: bool = True
) -> list[Award]:
    """Allocation by price then time: the best bids fill first, the marginal one partly.

    A seller's auction ranks the highest bids first and ignores those under the reserve; a
    buyer's auction (the announcer buys) ranks the lowest offers first, above the reserve ignored.
    """
    eligible = [b for b in bids if (b.price >= reserve if selling else b.price <= reserve)]
    eligible.sort(key=lambda b: ((-b.price if selling else b.price), b.seq))
    awards: list[Award] = []
    left = quantity
    for b in eligible:
        if not left:
            break
        q = min(b.qty, left)
        awards.append(Award(b.bid_id, b.bidder, b.price, q))
        left -= q
    return awards


# ---------------------------------------------------------------- block deals


class DealStatus(StrEnum):
    QUOTED = "QUOTED"  # the initiator's quote is public, no counterparty yet
    NEGOTIATING = "NEGOTIATING"  # a counterparty has answered; terms may change until both confirm
    DONE = "DONE"  # both confirmed the same terms: a trade exists
    WITHDRAWN = "WITHDRAWN"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Deal:
    """A block deal between an initiator and (once one answers) a counterparty."""

    initiator: str
    side: str  # the initiator's side
    price: int
    qty: int
    status: DealStatus = DealStatus.QUOTED
    counterparty: str | None = None
    version: int = 1  # bumps on every counter-quote; confirmations name the version
    confirmed: frozenset[str] = field(default_factory=frozenset)


def _open_deal(deal: Deal) -> None:
    if deal.status not in (DealStatus.QUOTED, DealStatus.NEGOTIATING):
        raise Conflict("DEAL_CLOSED", f"this block deal is {deal.status.value}", "该大宗协议已结束")


def counter(deal: Deal, party: str, price: int, qty: int) -> Deal:
    """New terms from either party; every confirmation so far lapses."""
    _open_deal(deal)
    if party == deal.initiator:
        if deal.counterparty is None:
            raise Conflict("NO_COUNTERPARTY", "nobody has answered this quote yet", "尚无对手方")
        return replace(deal, price=price, qty=qty, version=deal.version + 1, confirmed=frozenset())
    if deal.counterparty not in (None, party):
        raise Conflict("DEAL_TAKEN", "another party is negotiating this quote", "该报价已有对手方")
    return replace(
        deal,
        price=price,
        qty=qty,
        counterparty=party,
        status=DealStatus.NEGOTIATING,
        version=deal.version + 1,
        confirmed=frozenset(),
    )


def confirm(deal: Deal, party: str, version: int) -> Deal:
    """A party confirms the terms of `version`; the deal is done when both have."""
    _open_deal(deal)
    if version != deal.version:
        raise Conflict(
            "DEAL_TERMS_CHANGED",
            f"the terms changed: confirm version {deal.version}",
            "报价条款已变更",
        )
    if party != deal.initiator:
        if deal.counterparty not in (None, party):
            raise Conflict(
                "DEAL_TAKEN", "another party is negotiating this quote", "该报价已有对手方"
            )
        deal = replace(deal, counterparty=party, status=DealStatus.NEGOTIATING)
    if party in deal.confirmed:
        raise Conflict("ALREADY_CONFIRMED", "you have already confirmed these terms", "已确认")
    confirmed = deal.confirmed | {party}
    done = deal.counterparty is not None and {deal.initiator, deal.counterparty} <= confirmed
    return replace(deal, confirmed=confirmed, status=DealStatus.DONE if done else deal.status)


# ---------------------------------------------------------------- market data and index


@dataclass(frozen=True)
class DayBar:
    """One instrument's day: prices in fen; per-mode volume (t) and value (fen)."""

    open: int | None
    high: int | None
    low: int | None
    close: int
    prev_close: int
    volume: dict[str, int]
    value: dict[str, int]


def day_bar(prev_close: int, trades: Sequence[tuple[str, int, int]]) -> DayBar:
    """From the day's (mode, price, qty) in time order: open = first listing or continuous
    trade, close = their VWAP, else the previous close; high/low over every mode."""
    priced = [(p, q) for mode, p, q in trades if mode in CLOSE_MODES]
    volume: dict[str, int] = {}
    value: dict[str, int] = {}
    for mode, p, q in trades:
        volume[mode] = volume.get(mode, 0) + q
        value[mode] = value.get(mode, 0) + p * q
    close = vwap(priced)
    return DayBar(
        open=priced[0][0] if priced else None,
        high=max((p for _, p, _ in trades), default=None),
        low=min((p for _, p, _ in trades), default=None),
        close=close if close is not None else prev_close,
        prev_close=prev_close,
        volume=volume,
        value=value,
    )


INDEX_WINDOW = 20  # trading days of volume behind the weights
INDEX_BASE = 1000


def composite(closes: Mapping[str, int], window_volume: Mapping[str, int]) -> int:
    """The composite price over vintages, in fen: Σ w_y · P_y with P_y each vintage's close
    (carried forward) and w_y its share of the volume traded over the last `INDEX_WINDOW`
    trading days; equal weights when nothing traded. Rounded half-up to the fen."""
    codes = sorted(closes)
    if not codes:
        raise ValueError("no instruments")
    weights = {c: window_volume.get(c, 0) for c in codes}
    total = sum(weights.values())
    if not total:
        weights = {c: 1 for c in codes}
        total = len(codes)
    num = sum(closes[c] * weights[c] for c in codes)
    return (num * 2 + total) // (total * 2)


def index_level(price: int, base_price: int) -> str:
    """The index with base `INDEX_BASE` on its first day, to two decimals."""
    hundredths = (price * INDEX_BASE * 100 * 2 + base_price) // (base_price * 2)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def bar_minute(moment: dt.datetime) -> str:
    return local(moment).strftime("%Y-%m-%dT%H:%M")


def ohlcv(trades: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """1-minute bars from (minute, price, qty) in time order."""
    bars: list[dict[str, Any]] = []
    for minute, p, q in trades:
        if bars and bars[-1]["t"] == minute:
            b = bars[-1]
            b["h"] = max(b["h"], p)
            b["l"] = min(b["l"], p)
            b["c"] = p
            b["v"] += q
            b["value"] += p * q
        else:
            bars.append({"t": minute, "o": p, "h": p, "l": p, "c": p, "v": q, "value": p * q})
    return bars
