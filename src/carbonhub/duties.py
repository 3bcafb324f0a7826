"""The time-driven duties: what the server runs every 30 s and `run-due` runs on demand. They
span the registry, the exchange and the journal, so they live beside `verify`, above them."""

from __future__ import annotations

from typing import Any

from carbonhub.core import journal
from carbonhub.core.timefmt import shanghai_day
from carbonhub.exchange.service import ExchangeService


def run_duties(exchange: ExchangeService) -> dict[str, Any]:
    """Post due transfers, expire proposals and holds, finish auctions whose window ended,
    close the books of past trading days, close journal days (through the exchange's registry
    and database)."""
    registry = exchange.registry
    out: dict[str, Any] = dict(registry.run_due())
    out["holds_released"] = registry.release_expired_holds()
    out["auctions_finished"] = exchange.finish_due_auctions()
    out["days_closed"] = exchange.close_past_days()
    with exchange.db.uow() as uow:
        out["checkpoints"] = journal.close_days(uow, shanghai_day(uow.now))
        uow.commit()
    return out
