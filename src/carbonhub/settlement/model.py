"""Clearing rules as pure functions: gross legs per trade and reports that add up.

逐笔全额清算、统一交收: each trade is cleared on its own (no netting, no central counterparty)
and settled delivery versus payment; per-entity and per-mode figures are sums of the legs,
never stored apart from them (research/exchange-anchors.md D.1–D.4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbonhub.core.errors import Conflict


@dataclass(frozen=True)
class Legs:
    """What one trade moves: units seller → buyer, cash buyer → seller, fees → the exchange."""

    quantity: int
    value: int  # price × quantity, fen
    buyer_pays: int  # value + buyer's fee
    seller_receives: int  # value − seller's fee
    fee_buyer: int
    fee_seller: int


def legs(price: int, quantity: int, fee_buyer: int, fee_seller: int) -> Legs:
    value = price * quantity
    return Legs(quantity, value, value + fee_buyer, value - fee_seller, fee_buyer, fee_seller)


def check_available_cash(balance: int, frozen: int, amount: int) -> None:
    if amount > balance - frozen:
        raise Conflict(
            "INSUFFICIENT_CASH",
            f"{amount / 100:.2f} yuan needed but {(balance - frozen) / 100:.2f} yuan available",
            f"需 {amount / 100:.2f} 元，可用资金仅 {(balance - frozen) / 100:.2f} 元",
        )


def checksum(trade_ids: Iterable[str]) -> str:
    """The digest of a day's trade list that the exchange and the registry confirm."""
    return hashlib.sha256("\n".join(sorted(trade_ids)).encode()).hexdigest()


def _avg(value: int, volume: int) -> int | None:
    return (value * 2 + volume) // (volume * 2) if volume else None


def clearing_report(rows: Sequence[Mapping[str, Any]], modes: Sequence[str]) -> dict[str, Any]:
    """The daily 清结算信息日报: per mode and in total, volume (t), value and fees (fen),
    average price (value / volume, half-up), high and low, settled and failed counts.
    Rows: mode, price, quantity, value, fee_buyer, fee_seller, status."""

    def block(rs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        volume = sum(int(r["quantity"]) for r in rs)
        value = sum(int(r["value"]) for r in rs)
        return {
            "trades": len(rs),
            "volume": volume,
            "value": value,
            "average": _avg(value, volume),
            "high": max((int(r["price"]) for r in rs), default=None),
            "low": min((int(r["price"]) for r in rs), default=None),
            "fees": sum(int(r["fee_buyer"]) + int(r["fee_seller"]) for r in rs),
            "settled": sum(1 for r in rs if r["status"] == "SETTLED"),
            "failed": sum(1 for r in rs if r["status"] == "FAILED"),
        }

    by_mode = {mode: block([r for r in rows if r["mode"] == mode]) for mode in modes}
    return {"modes": by_mode, "total": block(rows)}


def statement(entity_id: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One entity's settlement statement: its side of every trade of the day and the totals
    (应收/应付资金, 应收/应付配额) derived from those legs."""
    lines = []
    cash_in = cash_out = units_in = units_out = fees = 0
    for r in rows:
        buying = r["buyer_entity"] == entity_id
        selling = r["seller_entity"] == entity_id
        for side in (("BUY",) if buying else ()) + (("SELL",) if selling else ()):
            settled = r["status"] == "SETTLED"
            if side == "BUY":
                cash, units, fee = -int(r["buyer_pays"]), int(r["quantity"]), int(r["fee_buyer"])
            else:
                cash, units, fee = (
                    int(r["seller_receives"]),
                    -int(r["quantity"]),
                    int(r["fee_seller"]),
                )
            if settled:
                cash_in += max(cash, 0)
                cash_out += max(-cash, 0)
                units_in += max(units, 0)
                units_out += max(-units, 0)
                fees += fee
            lines.append(
                {
                    "trade_id": r["trade_id"],
                    "instrument": r["instrument"],
                    "mode": r["mode"],
                    "side": side,
                    "quantity": int(r["quantity"]),
                    "value": int(r["value"]),
                    "fee": fee,
                    "cash": cash,
                    "units": units,
                    "status": r["status"],
                    "reason": r["reason"],
                }
            )
    return {
        "entity_id": entity_id,
        "lines": lines,
        "cash_received": cash_in,
        "cash_paid": cash_out,
        "net_cash": cash_in - cash_out,
        "units_received": units_in,
        "units_delivered": units_out,
        "fees": fees,
    }
