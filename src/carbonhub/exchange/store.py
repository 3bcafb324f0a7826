"""Exchange tables (SQLAlchemy Core).

instruments:    one per unit class and period, with its trading rules per mode (JSON)
holidays:       exchange-announced closed days besides weekends
members:        exchange members: an entity and the registry account it trades from
books:          one per instrument and book mode (listing, continuous): its command sequence
book_commands:  the durable command log; replaying it rebuilds the books, orders and trades
orders:         every order and take, with what it froze and what is left open
trades:         every trade, with the clearing inputs (fees, the buyer's cash freeze, the
                seller's unit hold)
deals:          block deals (大宗协议): quote → counter-quote → both confirm
auctions, bids: one-sided auctions (单向竞价) and their bids
market_days:    the published day per instrument: open, high, low, close, volume and value
index_days:     the daily composite price over vintages and its index level
"""

from __future__ import annotations

import sqlalchemy as sa

from carbonhub.core.auth import entities
from carbonhub.core.db import metadata

_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("unit_class", sa.String(40), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("rules", sa.Text, nullable=False),
    sa.Column("reference_price", sa.BigInteger, nullable=False),  # the first day's previous close
    sa.Column("status", sa.String(12), nullable=False),  # ACTIVE or SUSPENDED
    sa.Column("created_at", sa.String(32), nullable=False),
)

holidays = sa.Table(
    "exchange_holidays",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("entity_id", sa.String(36), sa.ForeignKey("entities.id"), primary_key=True),
    sa.Column("account_id", sa.String(20), nullable=False, unique=True),
    sa.Column("status", sa.String(12), nullable=False),  # ACTIVE or SUSPENDED
    sa.Column("created_at", sa.String(32), nullable=False),
)

books = sa.Table(
    "books",
    metadata,
    sa.Column("id", sa.String(48), primary_key=True),  # {instrument}:{mode}
    sa.Column("instrument", sa.String(32), sa.ForeignKey("instruments.code"), nullable=False),
    sa.Column("mode", sa.String(12), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # last command in the log
    sa.Column("trading_day", sa.String(10), nullable=True),  # the day the book is open for
)

book_commands = sa.Table(
    "book_commands",
    metadata,
    sa.Column("book_id", sa.String(48), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("command", sa.Text, nullable=False),  # canonical JSON the engine replays
    sa.Column("at", sa.String(32), nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("book_id", sa.String(48), nullable=False),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("mode", sa.String(12), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # ORDER (rests or matches) or TAKE
    sa.Column("entity_id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(20), nullable=False),
    sa.Column("side", sa.String(1), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("open", sa.BigInteger, nullable=False),
    sa.Column("filled", sa.BigInteger, nullable=False),
    sa.Column("tif", sa.String(8), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # OPEN FILLED CANCELLED EXPIRED
    sa.Column("reason", sa.String(40), nullable=False, server_default=""),
    sa.Column("target", sa.String(36), nullable=True),  # a take's listing
    sa.Column("hold_id", sa.String(36), nullable=True),  # a sell's unit reservation
    sa.Column("cash_ref", sa.String(80), nullable=True),  # a buy's cash freeze
    sa.Column("trading_day", sa.String(10), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.CheckConstraint("open >= 0 AND filled >= 0 AND open + filled <= quantity", name="qty"),
    sa.Index("ix_orders_entity", "entity_id", "created_at"),
    sa.Index("ix_orders_book_status", "book_id", "status"),
)

trades = sa.Table(
    "trades",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("unit_class", sa.String(40), nullable=False),
    sa.Column("mode", sa.String(12), nullable=False),
    sa.Column("trading_day", sa.String(10), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("buy_order", sa.String(36), nullable=True),
    sa.Column("sell_order", sa.String(36), nullable=True),
    sa.Column("buyer_entity", sa.String(36), nullable=False),
    sa.Column("seller_entity", sa.String(36), nullable=False),
    sa.Column("buyer_account", sa.String(20), nullable=False),
    sa.Column("seller_account", sa.String(20), nullable=False),
    sa.Column("buyer_cash_ref", sa.String(80), nullable=False),
    sa.Column("seller_hold_id", sa.String(36), nullable=False),
    sa.Column("fee_buyer", sa.BigInteger, nullable=False),
    sa.Column("fee_seller", sa.BigInteger, nullable=False),
    sa.Column("taker_side", sa.String(1), nullable=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Index("ix_trades_day", "trading_day", "instrument"),
    sa.Index("ix_trades_instrument_at", "instrument", "at"),
)

deals = sa.Table(
    "deals",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("initiator", sa.String(36), nullable=False),
    sa.Column("counterparty", sa.String(36), nullable=True),
    sa.Column("side", sa.String(1), nullable=False),  # the initiator's side
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("confirmed", sa.Text, nullable=False),  # JSON list of entity ids
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("trading_day", sa.String(10), nullable=False),
    sa.Column("trade_id", sa.String(100), nullable=True),
    sa.Column("seller_hold_id", sa.String(36), nullable=True),  # frozen at the seller's confirm
    sa.Column("buyer_cash_ref", sa.String(80), nullable=True),  # frozen at the buyer's confirm
    sa.Column("history", sa.Text, nullable=False),  # JSON list of every quote and confirmation
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

auctions = sa.Table(
    "auctions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("announcer", sa.String(36), nullable=False),
    sa.Column("side", sa.String(1), nullable=False),  # the announcer's side
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("reserve_price", sa.BigInteger, nullable=False),
    sa.Column("opens_at", sa.String(32), nullable=False),
    sa.Column("closes_at", sa.String(32), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # OPEN, DONE, CANCELLED
    sa.Column("hold_id", sa.String(36), nullable=True),
    sa.Column("cash_ref", sa.String(80), nullable=True),
    sa.Column("awarded", sa.BigInteger, nullable=False),
    sa.Column("trading_day", sa.String(10), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

bids = sa.Table(
    "auction_bids",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("auction_id", sa.String(36), sa.ForeignKey("auctions.id"), nullable=False),
    sa.Column("bidder", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(20), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("awarded", sa.BigInteger, nullable=False),
    sa.Column("hold_id", sa.String(36), nullable=True),
    sa.Column("cash_ref", sa.String(80), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("auction_id", "seq"),
)

market_days = sa.Table(
    "market_days",
    metadata,
    sa.Column("instrument", sa.String(32), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("open", sa.BigInteger, nullable=True),
    sa.Column("high", sa.BigInteger, nullable=True),
    sa.Column("low", sa.BigInteger, nullable=True),
    sa.Column("close", sa.BigInteger, nullable=False),
    sa.Column("prev_close", sa.BigInteger, nullable=False),
    sa.Column("volume", sa.Text, nullable=False),  # JSON {mode: tonnes}
    sa.Column("value", sa.Text, nullable=False),  # JSON {mode: fen}
)

index_days = sa.Table(
    "index_days",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("weights", sa.Text, nullable=False),  # JSON {instrument: window volume}
)


# ---------------------------------------------------------------- the order writer's statements
# Built once: `core.db.fetch`/`run`/`execute_many` compile each a single time per dialect.


def _ids(name: str) -> sa.BindParameter[str]:
    return sa.bindparam(name, expanding=True)


ORDERS_BY_ID = sa.select(orders).where(orders.c.id.in_(_ids("ids")))
OPEN_ORDERS_OF_BOOK = sa.select(orders).where(
    orders.c.book_id == sa.bindparam("book_id"), orders.c.status == "OPEN"
)
BOOK_FOR_UPDATE = sa.select(books).where(books.c.id == sa.bindparam("id")).with_for_update()
INSTRUMENT_BY_CODE = sa.select(instruments).where(instruments.c.code == sa.bindparam("code"))
HOLIDAY_DAYS = sa.select(holidays.c.day)
ORDER_CHANGING = ("open", "filled", "status", "reason", "updated_at")  # what a batch may change
ORDER_CHANGES = (
    sa.update(orders)
    .where(orders.c.id == sa.bindparam("oid"))
    .values(**{k: sa.bindparam(f"v_{k}") for k in ORDER_CHANGING})
)
BOOK_POSITION = (
    sa.update(books)
    .where(books.c.id == sa.bindparam("bid"))
    .values(seq=sa.bindparam("bseq"), trading_day=sa.bindparam("bday"))
)
MEMBERS_BY_ENTITY = (
    sa.select(members, entities.c.name)
    .join(entities, entities.c.id == members.c.entity_id)
    .where(members.c.entity_id.in_(_ids("ids")))
)
