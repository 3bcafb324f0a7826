"""Times: stored as UTC ISO-8601 text (sorts as it reads, same on SQLite and PostgreSQL),
shown in Asia/Shanghai (UTC+8 all year: China keeps no daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def shanghai_day(dt: datetime) -> date:
    return dt.astimezone(SHANGHAI).date()


def shanghai_text(text: str) -> str:
    return parse_iso(text).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
