"""Imports every context's tables so one metadata describes the whole schema (for Alembic)."""

from carbonhub.compliance import store as compliance_store  # noqa: F401
from carbonhub.core import auth, idempotency, journal  # noqa: F401
from carbonhub.core.db import metadata
from carbonhub.exchange import store as exchange_store  # noqa: F401
from carbonhub.registry import store  # noqa: F401
from carbonhub.settlement import store as settlement_store  # noqa: F401

__all__ = ["metadata"]
