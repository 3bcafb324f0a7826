"""Settlement tables (SQLAlchemy Core).

cash_accounts:  one per entity at its settlement bank, plus the exchange's fee account;
                balance and frozen in fen (checked: 0 ≤ frozen ≤ balance)
cash_entries:   append-only ledger of every change to a cash account
cash_freezes:   what an order, a deal or a bid has frozen, by reference, and what is left of it
settlements:    one row per trade: settled (both legs) or failed (neither), with the reason
settlement_runs: one row per trading day settled, with the checksum of its trade list
"""

from __future__ import annotations

import sqlalchemy as sa

from carbonhub.core.db import metadata

_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

cash_accounts = sa.Table(
    "cash_accounts",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # MEMBER or FEES
    sa.Column("entity_id", sa.String(36), sa.ForeignKey("entities.id"), nullable=True, unique=True),
    sa.Column("bank_entity_id", sa.String(36), sa.ForeignKey("entities.id"), nullable=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("frozen", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.CheckConstraint("frozen >= 0 AND frozen <= balance", name="frozen_within_balance"),
)

cash_entries = sa.Table(
    "cash_entries",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(20), sa.ForeignKey("cash_accounts.id"), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # signed change of the balance
    sa.Column("frozen_change", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("ref", sa.String(80), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Index("ix_cash_entries_account", "account_id", "id"),
)

cash_freezes = sa.Table(
    "cash_freezes",
    metadata,
    sa.Column("ref", sa.String(80), primary_key=True),
    sa.Column("account_id", sa.String(20), sa.ForeignKey("cash_accounts.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # what is still frozen
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.CheckConstraint("amount >= 0", name="non_negative"),
)

settlements = sa.Table(
    "settlements",
    metadata,
    sa.Column("trade_id", sa.String(100), primary_key=True),  # every trade settles once
    sa.Column("trading_day", sa.String(10), nullable=False, index=True),
    sa.Column("mode", sa.String(12), nullable=False),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # SETTLED or FAILED
    sa.Column("reason", sa.String(200), nullable=False, server_default=""),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("buyer_entity", sa.String(36), nullable=False, index=True),
    sa.Column("seller_entity", sa.String(36), nullable=False, index=True),
    sa.Column("buyer_pays", sa.BigInteger, nullable=False),
    sa.Column("seller_receives", sa.BigInteger, nullable=False),
    sa.Column("fee_buyer", sa.BigInteger, nullable=False),
    sa.Column("fee_seller", sa.BigInteger, nullable=False),
    sa.Column("transfer_id", sa.String(36), nullable=True),
    sa.Column("settled_at", sa.String(32), nullable=False),
)

settlement_runs = sa.Table(
    "settlement_runs",
    metadata,
    sa.Column("trading_day", sa.String(10), primary_key=True),
    sa.Column("trades", sa.Integer, nullable=False),
    sa.Column("settled", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("run_by", sa.String(64), nullable=False),
    sa.Column("run_at", sa.String(32), nullable=False),
)
