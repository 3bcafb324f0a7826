"""Checks of plain input fields shared by the contexts: text, exact decimals, years.

Numbers with fractions travel as decimal strings ("389.31"): a JSON float would already have
lost digits before we see it, and no float may reach a ledger.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from decimal import Decimal, InvalidOperation

from carbonhub.core.errors import InvalidInput

_DECIMAL = re.compile(r"^\d{1,15}(\.\d{1,10})?$")


def text(value: object, field: str, *, required: bool = False, max_len: int = 200) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(
            "FIELD_INVALID", f"{field} must be text", f"{field} 须为文本", field=field
        )
    value = value.strip()
    if required and not value:
        raise InvalidInput("FIELD_REQUIRED", f"{field} is required", f"{field} 必填", field=field)
    if len(value) > max_len:
        raise InvalidInput(
            "FIELD_TOO_LONG", f"{field} exceeds {max_len} characters", f"{field} 过长", field=field
        )
    return value


def choice(value: object, field: str, options: Collection[str]) -> str:
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(sorted(options))
        raise InvalidInput(
            "FIELD_INVALID",
            f"{field} must be one of {listed}",
            f"{field} 须为 {listed} 之一",
            field=field,
        )
    return value


def decimal(value: object, field: str) -> Decimal:
    """A non-negative exact decimal, given as a string or an integer (never a float)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise InvalidInput(
            "DECIMAL_INVALID",
            f'{field} must be a non-negative decimal string such as "389.31"',
            f'{field} 须为非负小数字符串, 如 "389.31"',
            field=field,
        )
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:  # pragma: no cover - the pattern guards this
        raise InvalidInput(
            "DECIMAL_INVALID", f"{field} is not a number", f"{field} 非数字"
        ) from exc


def year(value: object, field: str = "year") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2000 <= value <= 2100:
        raise InvalidInput(
            "YEAR_INVALID", f"{field} must be a year", f"{field} 须为年份", field=field
        )
    return value
