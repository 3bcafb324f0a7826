"""Times: stored as UTC ISO-8601 text (sorts as it reads, same on SQLite and PostgreSQL),
shown in Asia/Shanghai (UTC+8 all year: China keeps no daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from carbonhub.core.errors import InvalidInput

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def iso(dt: datetime) -> str:
    """2026-11-23T02:00:00.000000Z (isoformat is strftime's text, several times faster)."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """`iso`'s text back; anything else is a ValueError."""
    if (
        len(text) == 27
        and text[4] + text[7] + text[10] + text[13] + text[16] + text[19] + text[26] == "--T::.Z"
    ):
        return datetime.fromisoformat(text)  # strptime's result, a hundredth of its time
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def parse_day(text: object, field: str = "day") -> date:
    """A calendar day given as YYYY-MM-DD (API, CLI, console, service all read days this way)."""
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidInput(
            "DAY_INVALID", f"{field}: YYYY-MM-DD", "日期格式须为 YYYY-MM-DD"
        ) from None


def shanghai_day(dt: datetime) -> date:
    return dt.astimezone(SHANGHAI).date()


def shanghai_text(text: str) -> str:
    return parse_iso(text).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
