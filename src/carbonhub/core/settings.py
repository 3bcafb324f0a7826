"""Settings from the environment (CARBONHUB_*), with their limits written down.

Regulatory parameters are not here: they live with the rules that use them, each with its source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SQLITE_PATH = Path("var") / "carbonhub.db"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default_factory=lambda: (
            os.environ.get("CARBONHUB_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
        )
    )
    registry_code: str = field(default_factory=lambda: os.environ.get("CARBONHUB_REGISTRY", "CN"))
    token_ttl_minutes: int = field(default_factory=lambda: _int("CARBONHUB_TOKEN_TTL_MIN", 720))
    # Pending proposals (maker-checker) lapse if nobody approves them in time.
    approval_expiry_minutes: int = field(
        default_factory=lambda: _int("CARBONHUB_APPROVAL_EXPIRY_MIN", 7 * 24 * 60)
    )
    # Transfers outside the trusted-counterparty list: optional delay (EU uses 26 h) and a cap.
    untrusted_delay_minutes: int = field(
        default_factory=lambda: _int("CARBONHUB_UNTRUSTED_DELAY_MIN", 0)
    )
    untrusted_transfer_limit_t: int = field(
        default_factory=lambda: _int("CARBONHUB_UNTRUSTED_LIMIT_T", 2_000_000)
    )
    max_page_size: int = 500
    max_bulk_rows: int = 100_000
    console_secret: str = field(
        default_factory=lambda: os.environ.get("CARBONHUB_CONSOLE_SECRET", "carbonhub-dev-secret")
    )
    # Order entry under the API: "process" runs the exchange's writer in a child process (the
    # web server and the writer each get a core), "thread" keeps it in the server's process.
    order_writer: str = field(
        default_factory=lambda: os.environ.get("CARBONHUB_ORDER_WRITER", "process")
    )
    # A simulation market (demo, training, scripted tests): an operator may act as other users
    # (`AuthService.impersonate`, journaled), as `carbonhub compliance run-cycle` does. Never on.
    simulation: bool = field(
        default_factory=lambda: os.environ.get("CARBONHUB_SIMULATION", "") == "1"
    )
    # Debug mode re-checks ledger invariants at the end of every ledger-changing command.
    check_invariants: bool = field(
        default_factory=lambda: os.environ.get("CARBONHUB_CHECK_INVARIANTS", "") == "1"
    )
