"""Quantities and money as integers: tonnes CO2e and fen. No floats ever reach a ledger.

Money travels as a decimal string in the API ("12.34" yuan) and as integer fen in storage.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from carbonhub.core.errors import InvalidInput

MAX_QUANTITY_T = 10**12  # a trillion tonnes: far above any market, far below int64
_MONEY = re.compile(r"^-?\d{1,15}(\.\d{1,2})?$")


def tonnes(value: object, *, field: str = "quantity", allow_zero: bool = False) -> int:
    """A positive whole number of tonnes; rejects bools, floats, fractions, strings and huge values."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            "QUANTITY_NOT_INTEGER",
            f"{field} must be a whole number of tonnes",
            f"{field} 必须为整数吨",
            field=field,
        )
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(
            "QUANTITY_NOT_POSITIVE",
            f"{field} must be positive",
            f"{field} 必须为正数",
            field=field,
        )
    if value > MAX_QUANTITY_T:
        raise InvalidInput(
            "QUANTITY_TOO_LARGE",
            f"{field} exceeds {MAX_QUANTITY_T} t",
            f"{field} 超过上限 {MAX_QUANTITY_T} 吨",
            field=field,
        )
    return value


def fen_from_yuan(text: str) -> int:
    """'12.34' -> 1234. Exact decimal parsing; more than two decimals is an error, not a rounding."""
    if not isinstance(text, str) or not _MONEY.fullmatch(text.strip()):
        raise InvalidInput(
            "MONEY_INVALID", f"not a yuan amount: {text!r}", f"金额格式错误: {text!r}"
        )
    try:
        return int(Decimal(text.strip()) * 100)
    except InvalidOperation as exc:  # pragma: no cover - regex guards this
        raise InvalidInput("MONEY_INVALID", f"not a yuan amount: {text!r}") from exc


def yuan_from_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"
