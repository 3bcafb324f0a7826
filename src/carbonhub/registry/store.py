"""Registry tables (SQLAlchemy Core) and the queries the service needs.

accounts:        id (CN-200-0000001-CC) → entity, type, status
holdings:        (account, unit class) → posted, pending, held   (checked: held + pending ≤ posted)
unit_blocks:     current serial blocks per account (split on partial moves, never renumbered)
transfers:       every proposed movement and its outcome
transfer_blocks: append-only: which serial ranges each completed transfer moved
holds:           pledges, judicial freezes, exchange reservations
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbonhub.core.db import fetch, first, insert_many, metadata, run
from carbonhub.registry.model import Balance, Block

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("entity_id", sa.String(36), sa.ForeignKey("entities.id"), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(64), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("opened_at", sa.String(32), nullable=True),
    sa.Column("closed_at", sa.String(32), nullable=True),
    # Set while a HOLDING account is live: the unique index makes "one per legal entity" a fact.
    sa.Column("holding_slot", sa.String(36), nullable=True, unique=True),
    # "compliance" for a covered entity's holding account: its surrenders go through the
    # compliance service, which checks the year's rules; NULL: the registry's own command
    sa.Column("surrenders_via", sa.String(16), nullable=True),
)

unit_classes = sa.Table(
    "unit_classes",
    metadata,
    sa.Column("code", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("period", sa.Integer, nullable=False),
    sa.Column("project", sa.String(20), nullable=False, server_default=""),
    sa.Column("description", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
)

holdings = sa.Table(
    "holdings",
    metadata,
    sa.Column("account_id", sa.String(20), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("unit_class", sa.String(40), sa.ForeignKey("unit_classes.code"), primary_key=True),
    sa.Column("posted", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("held", sa.BigInteger, nullable=False),
    sa.CheckConstraint("posted >= 0 AND pending >= 0 AND held >= 0", name="non_negative"),
    sa.CheckConstraint("pending + held <= posted", name="reserved_within_posted"),
)

unit_blocks = sa.Table(
    "unit_blocks",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("account_id", sa.String(20), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("unit_class", sa.String(40), nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("end", sa.BigInteger, nullable=False),
    sa.CheckConstraint('start >= 1 AND start <= "end"', name="range"),
    sa.Index("ix_unit_blocks_serial", "unit_class", "origin", "batch", "start"),
)
# take order (model.take_order: largest first) within an account's holding of a class: the
# batch engine reads just the front of it
sa.Index(
    "ix_unit_blocks_take_order",
    unit_blocks.c.account_id,
    unit_blocks.c.unit_class,
    unit_blocks.c.start - unit_blocks.c.end,
    unit_blocks.c.origin,
    unit_blocks.c.batch,
    unit_blocks.c.start,
)

issuance_batches = sa.Table(
    "issuance_batches",
    metadata,
    sa.Column("unit_class", sa.String(40), primary_key=True),
    sa.Column("origin", sa.String(20), primary_key=True),
    sa.Column("batch", sa.Integer, primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("transfer_id", sa.String(36), nullable=False),
    sa.Column("issued_at", sa.String(32), nullable=False),
)

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column(
        "from_account", sa.String(20), sa.ForeignKey("accounts.id"), nullable=True, index=True
    ),
    sa.Column(
        "to_account", sa.String(20), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("unit_class", sa.String(40), sa.ForeignKey("unit_classes.code"), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("origin", sa.String(20), nullable=True),  # issuance: province or project of new units
    sa.Column("proposed_by", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(64), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("execute_after", sa.String(32), nullable=True),
    sa.Column("expires_at", sa.String(32), nullable=True),
    sa.Column("completed_at", sa.String(32), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("beneficiary", sa.String(200), nullable=True),
    sa.Column("legal_basis", sa.String(200), nullable=True),
    sa.Column("compliance_year", sa.Integer, nullable=True),
    sa.Column("reverses", sa.String(36), sa.ForeignKey("transfers.id"), nullable=True, index=True),
    sa.Column("hold_id", sa.String(36), nullable=True),
    sa.Column("batch_ref", sa.String(64), nullable=True, index=True),
    sa.Column("journal_seq", sa.BigInteger, nullable=True),
    sa.CheckConstraint("quantity > 0", name="positive"),
    sa.Index("ix_transfers_status", "status", "execute_after"),
    # a holder's surrenders of a year (compliance reads them per entity)
    sa.Index("ix_transfers_surrenders", "from_account", "op", "status", "compliance_year"),
)

transfer_blocks = sa.Table(
    "transfer_blocks",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "transfer_id", sa.String(36), sa.ForeignKey("transfers.id"), nullable=False, index=True
    ),
    sa.Column("unit_class", sa.String(40), nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("end", sa.BigInteger, nullable=False),
    sa.Index("ix_transfer_blocks_serial", "unit_class", "origin", "batch", "start"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "account_id", sa.String(20), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("unit_class", sa.String(40), sa.ForeignKey("unit_classes.code"), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("lien_holder", sa.String(36), sa.ForeignKey("entities.id"), nullable=True),
    sa.Column("legal_basis", sa.String(200), nullable=False, server_default=""),
    sa.Column("reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=True),
    sa.Column("released_by", sa.String(64), nullable=True),
    sa.Column("released_at", sa.String(32), nullable=True),
    sa.CheckConstraint("quantity > 0", name="positive"),
)

trusted_accounts = sa.Table(
    "trusted_accounts",
    metadata,
    sa.Column("account_id", sa.String(20), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("trusted_id", sa.String(20), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("added_by", sa.String(64), nullable=False),
    sa.Column("added_at", sa.String(32), nullable=False),
)

tainted_ranges = sa.Table(
    "tainted_ranges",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("unit_class", sa.String(40), nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("end", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("flagged_by", sa.String(64), nullable=False),
    sa.Column("flagged_at", sa.String(32), nullable=False),
    sa.Column("cleared_by", sa.String(64), nullable=True),
    sa.Column("cleared_at", sa.String(32), nullable=True),
)

registry_flags = sa.Table(
    "registry_flags",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)


def next_value(conn: Connection, name: str) -> int:
    row = conn.execute(
        sa.update(sequences)
        .where(sequences.c.name == name)
        .values(value=sequences.c.value + 1)
        .returning(sequences.c.value)
    ).first()
    if row is None:
        conn.execute(sa.insert(sequences).values(name=name, value=1))
        return 1
    return int(row.value)


# built once: run on the driver's cursor (`core.db.fetch` and `run`), every registry command
_ACCOUNTS_IN = (
    sa.select(accounts)
    .where(accounts.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(accounts.c.id)
)
_ACCOUNTS_IN_LOCKED = _ACCOUNTS_IN.with_for_update()
_HOLDING = sa.select(holdings.c.posted, holdings.c.pending, holdings.c.held).where(
    holdings.c.account_id == sa.bindparam("a"), holdings.c.unit_class == sa.bindparam("c")
)
_ADD_TO_HOLDING = (
    sa.update(holdings)
    .where(holdings.c.account_id == sa.bindparam("a"), holdings.c.unit_class == sa.bindparam("c"))
    .values(
        posted=holdings.c.posted + sa.bindparam("dp", type_=sa.BigInteger),
        pending=holdings.c.pending + sa.bindparam("dq", type_=sa.BigInteger),
        held=holdings.c.held + sa.bindparam("dh", type_=sa.BigInteger),
    )
)
# no ORDER BY: SQLite would walk the serial index, every block of the class, to avoid a sort
_BLOCKS_OF = sa.select(unit_blocks).where(
    unit_blocks.c.account_id == sa.bindparam("a"), unit_blocks.c.unit_class == sa.bindparam("c")
)
_TAINTS = sa.select(tainted_ranges).where(
    tainted_ranges.c.unit_class == sa.bindparam("c"), tainted_ranges.c.cleared_at.is_(None)
)


def lock_accounts(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    """Load accounts, locking them in id order on PostgreSQL so concurrent movers never deadlock."""
    locked = conn.dialect.name == "postgresql"
    rows = fetch(conn, _ACCOUNTS_IN_LOCKED if locked else _ACCOUNTS_IN, ids=sorted(set(ids)))
    return {r.id: r for r in rows}


def balance(conn: Connection, account_id: str, unit_class: str) -> Balance:
    row = first(conn, _HOLDING, a=account_id, c=unit_class)
    return Balance(row.posted, row.pending, row.held) if row else Balance()


def add_to_holding(
    conn: Connection,
    account_id: str,
    unit_class: str,
    *,
    posted: int = 0,
    pending: int = 0,
    held: int = 0,
) -> None:
    if not run(conn, _ADD_TO_HOLDING, a=account_id, c=unit_class, dp=posted, dq=pending, dh=held):
        insert_many(
            conn,
            holdings,
            [
                {
                    "account_id": account_id,
                    "unit_class": unit_class,
                    "posted": posted,
                    "pending": pending,
                    "held": held,
                }
            ],
        )


def blocks_of(conn: Connection, account_id: str, unit_class: str) -> list[tuple[int, Block]]:
    rows = fetch(conn, _BLOCKS_OF, a=account_id, c=unit_class)
    held = [(r.id, Block(r.unit_class, r.origin, r.batch, r.start, r.end)) for r in rows]
    return sorted(held, key=lambda pair: pair[1])  # serial order


def active_taints(conn: Connection, unit_class: str) -> list[Block]:
    rows = fetch(conn, _TAINTS, c=unit_class)
    return [Block(r.unit_class, r.origin, r.batch, r.start, r.end) for r in rows]


_FLAG = sa.select(registry_flags.c.value).where(registry_flags.c.key == sa.bindparam("key"))


def flag(conn: Connection, key: str) -> str | None:
    row = first(conn, _FLAG, key=key)
    return row.value if row else None


def set_flag(conn: Connection, key: str, value: str) -> None:
    res = conn.execute(
        sa.update(registry_flags).where(registry_flags.c.key == key).values(value=value)
    )
    if res.rowcount == 0:
        conn.execute(sa.insert(registry_flags).values(key=key, value=value))
