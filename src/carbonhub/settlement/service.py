"""Settlement use cases: cash accounts, freezes for the exchange, and the end-of-day DvP run.

`CashService` owns every cash movement. The exchange calls its in-transaction methods
(`freeze`, `release`) from its own unit of work; no other context writes these tables.
`SettlementService` settles a trading day trade by trade, delivery versus payment: the units
legs through the registry's `DeliveryBatch`, the cash legs through `CashBatch`, decided in
memory per trade (both legs or neither) and written together in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbonhub.core import idempotency, journal
from carbonhub.core.auth import Actor, Role, entities, require_role
from carbonhub.core.db import Database, UnitOfWork, execute_many, fetch, insert_many
from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from carbonhub.core.quantities import fen_from_yuan, yuan_from_fen
from carbonhub.core.timefmt import SHANGHAI, iso
from carbonhub.registry.service import RegistryService
from carbonhub.settlement import model as m
from carbonhub.settlement import store as s

FEE_ACCOUNT = "CA-FEES"
DAY_CLOSE = "15:00"  # the last session of every mode ends here (Asia/Shanghai)
BANK_ROLES = (Role.BANK,)


def cash_account_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "entity_id": row.entity_id,
        "bank_entity_id": row.bank_entity_id,
        "balance": yuan_from_fen(int(row.balance)),
        "frozen": yuan_from_fen(int(row.frozen)),
        "available": yuan_from_fen(int(row.balance) - int(row.frozen)),
        "status": row.status,
        "created_at": row.created_at,
    }


def _amount(text: object) -> int:
    if not isinstance(text, str):
        raise InvalidInput(
            "MONEY_INVALID", "amount is a yuan string like '1000.00'", "金额格式错误"
        )
    fen = fen_from_yuan(text)
    if fen <= 0:
        raise InvalidInput("AMOUNT_NOT_POSITIVE", "amount must be positive", "金额必须为正数")
    return fen


class CashService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ accounts, funding

    def ensure_fee_account(self, uow: UnitOfWork) -> None:
        if not uow.conn.execute(
            sa.select(s.cash_accounts.c.id).where(s.cash_accounts.c.id == FEE_ACCOUNT)
        ).first():
            uow.conn.execute(
                sa.insert(s.cash_accounts).values(
                    id=FEE_ACCOUNT,
                    kind="FEES",
                    entity_id=None,
                    bank_entity_id=None,
                    balance=0,
                    frozen=0,
                    status="OPEN",
                    created_at=iso(uow.now),
                )
            )

    def open_account(
        self, actor: Actor, key: str, *, entity_id: str, bank_entity_id: str | None = None
    ) -> dict[str, Any]:
        """A bank opens a cash account for an entity at itself (the operator may name the bank)."""
        data = {"entity_id": entity_id, "bank_entity_id": bank_entity_id}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.BANK, Role.OPERATOR)
            bank = actor.entity_id if actor.role is Role.BANK else bank_entity_id
            if actor.role is Role.BANK and bank_entity_id not in (None, actor.entity_id):
                raise Forbidden(
                    "NOT_YOUR_BANK", "a bank opens accounts at itself", "只能在本行开户"
                )
            conn = uow.conn
            for eid in (entity_id, bank):
                if (
                    not isinstance(eid, str)
                    or not conn.execute(
                        sa.select(entities.c.id).where(entities.c.id == eid)
                    ).first()
                ):
                    raise NotFound("ENTITY_NOT_FOUND", f"no entity {eid}", "主体不存在")
            if conn.execute(
                sa.select(s.cash_accounts.c.id).where(s.cash_accounts.c.entity_id == entity_id)
            ).first():
                raise Conflict(
                    "CASH_ACCOUNT_EXISTS",
                    "this entity already has a cash account",
                    "该主体已开立资金账户",
                )
            self.ensure_fee_account(uow)
            n = int(
                conn.execute(sa.select(sa.func.count()).select_from(s.cash_accounts)).scalar_one()
            )
            account_id = f"CA-{n:08d}"
            conn.execute(
                sa.insert(s.cash_accounts).values(
                    id=account_id,
                    kind="MEMBER",
                    entity_id=entity_id,
                    bank_entity_id=bank,
                    balance=0,
                    frozen=0,
                    status="OPEN",
                    created_at=iso(uow.now),
                )
            )
            journal.append(
                uow,
                "settlement.cash_account_opened",
                actor.username,
                {"account": account_id, "entity": entity_id, "bank": bank},
            )
            return self._account(conn, account_id)

        return idempotency.run(self.db, actor.username, key, "open_cash_account", data, body)

    def _account(self, conn: Connection, account_id: str) -> dict[str, Any]:
        row = conn.execute(
            sa.select(s.cash_accounts).where(s.cash_accounts.c.id == account_id)
        ).first()
        if row is None:
            raise NotFound(
                "CASH_ACCOUNT_NOT_FOUND", f"no cash account {account_id}", "资金账户不存在"
            )
        return cash_account_dict(row)

    def _move(
        self,
        uow: UnitOfWork,
        account_id: str,
        kind: str,
        amount: int,
        frozen_change: int,
        ref: str,
        by: str,
    ) -> None:
        """The one place a cash account changes: the row and its ledger entry together."""
        c = s.cash_accounts.c
        row = uow.conn.execute(
            sa.update(s.cash_accounts)
            .where(c.id == account_id)
            .values(balance=c.balance + amount, frozen=c.frozen + frozen_change)
            .returning(c.balance)
        ).one()
        uow.conn.execute(
            sa.insert(s.cash_entries).values(
                account_id=account_id,
                kind=kind,
                amount=amount,
                frozen_change=frozen_change,
                balance_after=int(row.balance),
                ref=ref,
                by=by,
                at=iso(uow.now),
            )
        )

    def _bank_account(self, conn: Connection, actor: Actor, account_id: str) -> Any:
        require_role(actor, Role.BANK)
        row = conn.execute(
            sa.select(s.cash_accounts).where(s.cash_accounts.c.id == account_id)
        ).first()
        if row is None:
            raise NotFound(
                "CASH_ACCOUNT_NOT_FOUND", f"no cash account {account_id}", "资金账户不存在"
            )
        if row.bank_entity_id != actor.entity_id:
            raise Forbidden(
                "NOT_YOUR_BANK", "this account is kept at another bank", "该账户不在本行"
            )
        return row

    def fund(self, actor: Actor, key: str, *, account_id: str, amount: str) -> dict[str, Any]:
        """入金: the settlement bank credits money it has received for the entity."""

        def body(uow: UnitOfWork) -> dict[str, Any]:
            fen = _amount(amount)
            self._bank_account(uow.conn, actor, account_id)
            self._move(uow, account_id, "FUND", fen, 0, "bank", actor.username)
            journal.append(
                uow,
                "settlement.funded",
                actor.username,
                {"account": account_id, "amount": fen},
            )
            return self._account(uow.conn, account_id)

        data = {"account": account_id, "amount": amount}
        return idempotency.run(self.db, actor.username, key, "fund", data, body)

    def defund(self, actor: Actor, key: str, *, account_id: str, amount: str) -> dict[str, Any]:
        """出金: only money that nothing has frozen may leave."""

        def body(uow: UnitOfWork) -> dict[str, Any]:
            fen = _amount(amount)
            row = self._bank_account(uow.conn, actor, account_id)
            m.check_available_cash(int(row.balance), int(row.frozen), fen)
            self._move(uow, account_id, "DEFUND", -fen, 0, "bank", actor.username)
            journal.append(
                uow,
                "settlement.defunded",
                actor.username,
                {"account": account_id, "amount": fen},
            )
            return self._account(uow.conn, account_id)

        data = {"account": account_id, "amount": amount}
        return idempotency.run(self.db, actor.username, key, "defund", data, body)

    # ------------------------------------------------------------ queries

    def _readable(self, conn: Connection, actor: Actor, account_id: str) -> dict[str, Any]:
        acct = self._account(conn, account_id)
        if not (
            actor.is_operator
            or acct["entity_id"] == actor.entity_id
            or (actor.role is Role.BANK and acct["bank_entity_id"] == actor.entity_id)
        ):
            raise Forbidden("NOT_ACCOUNT_HOLDER", "not your cash account", "无权查看该资金账户")
        return acct

    def account(self, actor: Actor, account_id: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            return self._readable(conn, actor, account_id)

    def account_of(self, actor: Actor, entity_id: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            row = conn.execute(
                sa.select(s.cash_accounts.c.id).where(s.cash_accounts.c.entity_id == entity_id)
            ).first()
            if row is None:
                raise NotFound(
                    "CASH_ACCOUNT_NOT_FOUND", "this entity has no cash account", "该主体无资金账户"
                )
            return self._readable(conn, actor, row.id)

    def accounts(
        self, actor: Actor, *, limit: int, cursor: str | None = None
    ) -> list[dict[str, Any]]:
        c = s.cash_accounts.c
        q = sa.select(s.cash_accounts).order_by(c.id).limit(limit)
        if cursor:
            q = q.where(c.id > cursor)
        if actor.role is Role.BANK:
            q = q.where(c.bank_entity_id == actor.entity_id)
        elif not actor.is_operator:
            q = q.where(c.entity_id == actor.entity_id)
        with self.db.read() as ro:
            conn = ro.conn
            return [cash_account_dict(r) for r in conn.execute(q)]

    def entries(
        self, actor: Actor, account_id: str, *, limit: int, before: int | None = None
    ) -> list[dict[str, Any]]:
        c = s.cash_entries.c
        with self.db.read() as ro:
            conn = ro.conn
            self._readable(conn, actor, account_id)
            q = sa.select(s.cash_entries).where(c.account_id == account_id)
            if before is not None:
                q = q.where(c.id < before)
            rows = conn.execute(q.order_by(c.id.desc()).limit(limit)).all()
        return [
            {
                "id": int(r.id),
                "kind": r.kind,
                "amount": yuan_from_fen(int(r.amount)),
                "frozen_change": yuan_from_fen(int(r.frozen_change)),
                "balance_after": yuan_from_fen(int(r.balance_after)),
                "ref": r.ref,
                "at": r.at,
            }
            for r in rows
        ]

    # ------------------------------------------------------------ for the exchange, in its transaction

    def freeze(self, uow: UnitOfWork, entity_id: str, amount: int, ref: str, by: str) -> None:
        """Freezes `amount` under a new reference `ref`, or refuses."""
        c = s.cash_accounts.c
        row = uow.conn.execute(
            sa.select(c.id, c.status, c.balance, c.frozen).where(c.entity_id == entity_id)
        ).first()
        if row is None or row.status != "OPEN":
            raise Conflict(
                "NO_CASH_ACCOUNT", "this entity has no open cash account", "该主体无可用资金账户"
            )
        m.check_available_cash(int(row.balance), int(row.frozen), amount)
        uow.conn.execute(
            sa.insert(s.cash_freezes).values(
                ref=ref, account_id=row.id, amount=amount, created_at=iso(uow.now)
            )
        )
        if amount:
            self._move(uow, row.id, "FREEZE", 0, amount, ref, by)

    def release(self, uow: UnitOfWork, ref: str, amount: int | None, by: str) -> int:
        """Unfreezes `amount` (all, if None) of what `ref` froze; returns what it released."""
        f = s.cash_freezes.c
        row = uow.conn.execute(sa.select(s.cash_freezes).where(f.ref == ref)).first()
        if row is None:
            return 0
        take = int(row.amount) if amount is None else min(amount, int(row.amount))
        if take <= 0:
            return 0
        uow.conn.execute(
            sa.update(s.cash_freezes).where(f.ref == ref).values(amount=f.amount - take)
        )
        self._move(uow, row.account_id, "UNFREEZE", 0, -take, ref, by)
        return take

    def batch(self, uow: UnitOfWork) -> CashBatch:
        """Cash moves in memory, written in bulk: order entry and the settlement run."""
        return CashBatch(self, uow)


_FREEZES_BY_REF = sa.select(s.cash_freezes).where(
    s.cash_freezes.c.ref.in_(sa.bindparam("refs", expanding=True))
)
_ACCOUNTS_BY_ID = sa.select(s.cash_accounts).where(
    s.cash_accounts.c.id.in_(sa.bindparam("ids", expanding=True))
)
_ACCOUNTS_OF_ENTITIES = sa.select(s.cash_accounts).where(
    s.cash_accounts.c.entity_id.in_(sa.bindparam("ids", expanding=True))
)
_FREEZE_AMOUNT = (
    sa.update(s.cash_freezes)
    .where(s.cash_freezes.c.ref == sa.bindparam("r"))
    .values(amount=sa.bindparam("a"))
)
_ACCOUNT_BALANCES = (
    sa.update(s.cash_accounts)
    .where(s.cash_accounts.c.id == sa.bindparam("i"))
    .values(balance=sa.bindparam("b"), frozen=sa.bindparam("f"))
)


class CashBatch:
    """Cash moves decided in memory and written in bulk, for order entry and the settlement run.

    Every `check…` refuses without changing anything; the move it guards cannot fail after it.
    Accounts and freezes load on first use (or up front with `preload`); `write` stores the net
    change with bulk statements in the caller's transaction."""

    def __init__(self, cash: CashService, uow: UnitOfWork) -> None:
        self.cash, self.uow = cash, uow
        self.at = iso(uow.now)
        self.freezes: dict[str, list[Any] | None] = {}  # ref → [account, amount], None = absent
        self.loaded_freezes: dict[str, int] = {}
        self.new_freezes: set[str] = set()
        self.accounts: dict[str, list[Any]] = {}  # id → [balance, frozen, status]
        self.loaded_accounts: dict[str, tuple[int, int]] = {}
        self.by_entity: dict[str, str | None] = {}
        self.entries: list[dict[str, Any]] = []
        self.known_freezes: dict[str, list[Any]] = {}  # unspent, as stored: from earlier batches
        self.moved: set[str] = set()  # accounts whose balance or frozen amount changed

    def preload(self, refs: Sequence[str]) -> None:
        """Every account (the fee account too) and the named freezes (the settlement run)."""
        self.cash.ensure_fee_account(self.uow)
        for r in self.uow.conn.execute(sa.select(s.cash_accounts)):
            self._keep_account(r)
        self.preload_freezes(refs)

    def preload_freezes(self, refs: Sequence[str]) -> None:
        """The named freezes and their accounts, in a few statements (a book's day close)."""
        conn = self.uow.conn
        unique = []
        for ref in sorted({r for r in refs if r not in self.freezes}):
            known = self.known_freezes.pop(ref, None)
            if known is None:
                unique.append(ref)
            else:  # its account is known too: it stays for the writer's life
                self.freezes[ref], self.loaded_freezes[ref] = known, int(known[1])
        their_accounts: set[str] = set()
        for n in range(0, len(unique), 500):
            part = unique[n : n + 500]
            for ref in part:
                self.freezes[ref] = None
            for r in fetch(conn, _FREEZES_BY_REF, refs=part):
                self.freezes[r.ref] = [r.account_id, int(r.amount)]
                self.loaded_freezes[r.ref] = int(r.amount)
                their_accounts.add(r.account_id)
        missing = sorted(their_accounts - set(self.accounts))
        for n in range(0, len(missing), 500):
            ids = missing[n : n + 500]
            for r in fetch(conn, _ACCOUNTS_BY_ID, ids=ids):
                self._keep_account(r)

    def preload_entities(self, entity_ids: Sequence[str]) -> None:
        """These entities' cash accounts in one statement (an order batch)."""
        wanted = sorted(set(entity_ids) - set(self.by_entity))
        if not wanted:
            return
        for entity_id in wanted:
            self.by_entity[entity_id] = None
        for r in fetch(self.uow.conn, _ACCOUNTS_OF_ENTITIES, ids=wanted):
            self._keep_account(r)

    def _keep_account(self, r: Any) -> None:
        if r.id not in self.accounts:
            self.accounts[r.id] = [int(r.balance), int(r.frozen), r.status]
            self.loaded_accounts[r.id] = (int(r.balance), int(r.frozen))
        if r.entity_id:
            self.by_entity[r.entity_id] = r.id

    def account_of(self, entity_id: str) -> str:
        if entity_id not in self.by_entity:
            self.by_entity[entity_id] = None
            row = self.uow.conn.execute(
                sa.select(s.cash_accounts).where(s.cash_accounts.c.entity_id == entity_id)
            ).first()
            if row is not None:
                self._keep_account(row)
        account_id = self.by_entity[entity_id]
        if account_id is None or self.accounts[account_id][2] != "OPEN":
            raise Conflict(
                "NO_CASH_ACCOUNT", "this entity has no open cash account", "该主体无可用资金账户"
            )
        return account_id

    def _freeze(self, ref: str) -> list[Any] | None:
        if ref not in self.freezes:
            self.preload_freezes([ref])
        return self.freezes[ref]

    def _move(
        self, account_id: str, kind: str, amount: int, frozen: int, ref: str, by: str
    ) -> None:
        acct = self.accounts[account_id]
        acct[0] += amount
        acct[1] += frozen
        self.moved.add(account_id)
        self.entries.append(
            {
                "account_id": account_id,
                "kind": kind,
                "amount": amount,
                "frozen_change": frozen,
                "balance_after": acct[0],
                "ref": ref,
                "by": by,
                "at": self.at,
            }
        )

    def check_freeze(self, entity_id: str, amount: int) -> None:
        acct = self.accounts[self.account_of(entity_id)]
        m.check_available_cash(acct[0], acct[1], amount)

    def freeze(self, entity_id: str, amount: int, ref: str, by: str) -> None:
        """Freezes `amount` under a new `ref`; `check_freeze` first."""
        self.check_freeze(entity_id, amount)
        account_id = self.account_of(entity_id)
        self.freezes[ref] = [account_id, amount]
        self.new_freezes.add(ref)
        if amount:
            self._move(account_id, "FREEZE", 0, amount, ref, by)

    def release(self, ref: str, amount: int | None, by: str) -> int:
        """Unfreezes `amount` (all, if None) of what `ref` froze; returns what it released."""
        frozen = self._freeze(ref)
        if frozen is None or frozen[0] not in self.accounts:
            return 0
        take = int(frozen[1]) if amount is None else min(amount, int(frozen[1]))
        if take > 0:
            frozen[1] -= take
            self._move(frozen[0], "UNFREEZE", 0, -take, ref, by)
        return take

    def check_pay(self, buyer_ref: str, seller_entity: str, legs: m.Legs) -> None:
        frozen = self._freeze(buyer_ref)
        if frozen is None or frozen[1] < legs.buyer_pays or self.accounts[frozen[0]][2] != "OPEN":
            raise Conflict(
                "CASH_NOT_FROZEN",
                "the buyer's frozen cash does not cover this trade",
                "买方冻结资金不足以交收",
            )
        try:
            self.account_of(seller_entity)
        except Conflict:
            raise Conflict(
                "NO_CASH_ACCOUNT", "the seller has no open cash account", "卖方无可用资金账户"
            ) from None

    def pay(self, buyer_ref: str, seller_entity: str, legs: m.Legs, trade_id: str, by: str) -> None:
        """The cash leg of a trade: the buyer's frozen payment to the seller, fees to the
        exchange; `check_pay` first."""
        self.check_pay(buyer_ref, seller_entity, legs)
        frozen = self.freezes[buyer_ref]
        assert frozen is not None
        frozen[1] -= legs.buyer_pays
        self._move(frozen[0], "PAY", -legs.buyer_pays, -legs.buyer_pays, trade_id, by)
        self._move(self.account_of(seller_entity), "RECEIVE", legs.seller_receives, 0, trade_id, by)
        if legs.fee_buyer + legs.fee_seller:
            if FEE_ACCOUNT not in self.accounts:
                self.cash.ensure_fee_account(self.uow)
                fee_row = self.uow.conn.execute(
                    sa.select(s.cash_accounts).where(s.cash_accounts.c.id == FEE_ACCOUNT)
                ).one()
                self._keep_account(fee_row)
            self._move(FEE_ACCOUNT, "FEE", legs.fee_buyer + legs.fee_seller, 0, trade_id, by)

    def write(self) -> None:
        conn, now = self.uow.conn, self.at
        inserts = []
        for r in sorted(self.new_freezes):
            frozen = self.freezes[r]
            assert frozen is not None
            inserts.append(
                {"ref": r, "account_id": frozen[0], "amount": frozen[1], "created_at": now}
            )
        if inserts:
            insert_many(conn, s.cash_freezes, inserts)
        updates = [
            {"r": k, "a": v[1]}
            for k, v in self.freezes.items()
            if v is not None and k in self.loaded_freezes and v[1] != self.loaded_freezes[k]
        ]
        if updates:
            execute_many(conn, _FREEZE_AMOUNT, updates)
        accounts = [
            {"i": k, "b": v[0], "f": v[1]}
            for k, v in ((k, self.accounts[k]) for k in sorted(self.moved))
            if (v[0], v[1]) != self.loaded_accounts[k]
        ]
        if accounts:
            execute_many(conn, _ACCOUNT_BALANCES, accounts)
        if self.entries:
            insert_many(conn, s.cash_entries, self.entries)
        self.new_freezes.clear()
        self.loaded_freezes = {k: v[1] for k, v in self.freezes.items() if v is not None}
        for k in self.moved:
            self.loaded_accounts[k] = (self.accounts[k][0], self.accounts[k][1])
        self.moved.clear()
        self.entries = []

    def resume(self, uow: UnitOfWork) -> None:
        """Goes on in a new transaction with what it knows after `write`: right only when no
        other connection wrote in between (the exchange's writer checks `commit_stamp`). Spent
        freezes and ones found absent are let go; asked for again, they load as any other."""
        if self.entries or self.new_freezes:
            raise RuntimeError("a cash batch resumes only after its write")
        self.uow, self.at = uow, iso(uow.now)
        for ref, frozen in self.freezes.items():
            if frozen is not None and frozen[1] > 0:
                self.known_freezes[ref] = frozen
            else:
                self.known_freezes.pop(ref, None)
        self.freezes, self.loaded_freezes = {}, {}


def ledger_problems(conn: Connection) -> list[str]:
    """Invariant 4: cash is conserved (Σ balances = funded − defunded), every balance is the sum
    of its entries, frozen ≤ balance and equals the sum of its freezes."""
    problems: list[str] = []
    e, a, f = s.cash_entries.c, s.cash_accounts.c, s.cash_freezes.c
    outside = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(e.amount), 0)).where(e.kind.in_(("FUND", "DEFUND")))
    ).scalar_one()
    total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(a.balance), 0))).scalar_one()
    if int(outside) != int(total):
        problems.append(f"cash not conserved: balances {total} ≠ funded − defunded {outside}")
    sums = {
        r.account_id: (int(r.amount), int(r.frozen))
        for r in conn.execute(
            sa.select(
                e.account_id,
                sa.func.sum(e.amount).label("amount"),
                sa.func.sum(e.frozen_change).label("frozen"),
            ).group_by(e.account_id)
        )
    }
    freezes = {
        r.account_id: int(r.amount)
        for r in conn.execute(
            sa.select(f.account_id, sa.func.sum(f.amount).label("amount")).group_by(f.account_id)
        )
    }
    for r in conn.execute(sa.select(s.cash_accounts)):
        bal, frz = sums.get(r.id, (0, 0))
        if (int(r.balance), int(r.frozen)) != (bal, frz):
            problems.append(
                f"cash account {r.id}: row ({r.balance}, {r.frozen}) ≠ entries ({bal}, {frz})"
            )
        if int(r.frozen) != freezes.get(r.id, 0):
            problems.append(
                f"cash account {r.id}: frozen {r.frozen} ≠ freezes {freezes.get(r.id, 0)}"
            )
        if not 0 <= int(r.frozen) <= int(r.balance):
            problems.append(f"cash account {r.id}: frozen {r.frozen} outside 0..{r.balance}")
    return problems


def settlement_problems(conn: Connection, trades: TradeSource) -> list[str]:
    """Invariant 5: on every settled day, each trade has exactly one settlement, settled with
    its registry transfer or failed with a reason."""
    problems: list[str] = []
    for run in conn.execute(sa.select(s.settlement_runs)).all():
        day = date.fromisoformat(run.trading_day)
        expected = {t["trade_id"] for t in trades.trades_to_settle(conn, day)}
        rows = conn.execute(
            sa.select(s.settlements).where(s.settlements.c.trading_day == run.trading_day)
        ).all()
        got = {r.trade_id for r in rows}
        if expected != got:
            problems.append(
                f"{run.trading_day}: {len(expected - got)} trades unsettled, "
                f"{len(got - expected)} settlements without a trade"
            )
        for r in rows:
            if r.status == "SETTLED" and not r.transfer_id:
                problems.append(f"trade {r.trade_id} settled without a registry transfer")
            if r.status == "FAILED" and not r.reason:
                problems.append(f"trade {r.trade_id} failed without a reason")
    return problems


class TradeSource(Protocol):
    """What settlement needs from the exchange (injected, so neither module imports the other)."""

    def books_lock(self) -> AbstractContextManager[Any]: ...

    def close_day(self, uow: UnitOfWork, day: date) -> list[dict[str, Any]]: ...

    def publish(self, messages: Sequence[dict[str, Any]]) -> None: ...

    def trades_to_settle(self, conn: Connection, day: date) -> list[dict[str, Any]]: ...


class SettlementService:
    def __init__(
        self, db: Database, registry: RegistryService, cash: CashService, trades: TradeSource
    ) -> None:
        self.db = db
        self.registry = registry
        self.cash = cash
        self.trades = trades

    def settle_day(self, actor: Actor, day: date) -> dict[str, Any]:
        """Closes the day's books, then settles each unsettled trade of the day, DvP.

        Idempotent by construction: a trade with a settlement row is never touched again, so a
        second run finds nothing to do and changes nothing."""
        require_role(actor, Role.OPERATOR)
        with self.trades.books_lock(), self.db.uow() as uow:
            journal.lock_head(uow)
            here = uow.now.astimezone(SHANGHAI)
            if here.date() < day or (here.date() == day and here.strftime("%H:%M") < DAY_CLOSE):
                raise Conflict(
                    "DAY_NOT_CLOSED",
                    f"{day} settles after its close (15:00 Asia/Shanghai)",
                    "当日收市后方可结算",
                )
            closing = self.trades.close_day(uow, day)  # for the live feed once committed
            done = {
                r.trade_id
                for r in uow.conn.execute(
                    sa.select(s.settlements.c.trade_id).where(
                        s.settlements.c.trading_day == day.isoformat()
                    )
                )
            }
            todo = [
                t for t in self.trades.trades_to_settle(uow.conn, day) if t["trade_id"] not in done
            ]
            settled, failed = self._settle_trades(uow, actor, todo)
            all_ids = [*done, *(t["trade_id"] for t in todo)]
            r = s.settlement_runs
            ran_before = uow.conn.execute(
                sa.select(r.c.trading_day).where(r.c.trading_day == day.isoformat())
            ).first()
            if todo or not ran_before:
                counts = self._counts(uow.conn, day)
                values = dict(
                    trades=len(all_ids),
                    settled=counts["SETTLED"],
                    failed=counts["FAILED"],
                    checksum=m.checksum(all_ids),
                    run_by=actor.username,
                    run_at=iso(uow.now),
                )
                if ran_before:
                    uow.conn.execute(
                        sa.update(r).where(r.c.trading_day == day.isoformat()).values(**values)
                    )
                else:
                    uow.conn.execute(sa.insert(r).values(trading_day=day.isoformat(), **values))
                journal.append(
                    uow,
                    "settlement.day_settled",
                    actor.username,
                    {
                        "day": day.isoformat(),
                        "settled": settled,
                        "failed": failed,
                        "checksum": values["checksum"],
                    },
                )
            uow.commit()
        self.trades.publish(closing)
        return {
            "day": day.isoformat(),
            "settled_now": settled,
            "failed_now": failed,
            **self.report(day),
        }

    def _counts(self, conn: Connection, day: date) -> dict[str, int]:
        c = s.settlements.c
        out = {"SETTLED": 0, "FAILED": 0}
        for r in conn.execute(
            sa.select(c.status, sa.func.count())
            .where(c.trading_day == day.isoformat())
            .group_by(c.status)
        ):
            out[r[0]] = int(r[1])
        return out

    def _settle_trades(
        self, uow: UnitOfWork, actor: Actor, todo: Sequence[dict[str, Any]]
    ) -> tuple[int, int]:
        """DvP per trade, in memory: the cash leg is checked, then the units move (or the trade
        fails changing nothing), then the cash moves, which a passed check guarantees. Both
        legs or neither; then everything is written with bulk statements."""
        by = actor.username
        units = self.registry.delivery_batch(
            uow, [(t["seller_hold_id"], t["buyer_account"], int(t["quantity"])) for t in todo], by
        )
        money = self.cash.batch(uow)
        money.preload([t["buyer_cash_ref"] for t in todo])
        rows: list[dict[str, Any]] = []
        entries: list[tuple[str, str, dict[str, Any]]] = []
        now = iso(uow.now)
        settled = failed = 0
        for t in todo:
            legs = m.legs(
                int(t["price"]), int(t["quantity"]), int(t["fee_buyer"]), int(t["fee_seller"])
            )
            status, reason, transfer_id = "SETTLED", "", None
            try:
                money.check_pay(t["buyer_cash_ref"], t["seller_entity"], legs)
                transfer_id = units.deliver(
                    t["seller_hold_id"], t["buyer_account"], legs.quantity, f"trade {t['trade_id']}"
                )
                money.pay(t["buyer_cash_ref"], t["seller_entity"], legs, t["trade_id"], by)
                settled += 1
            except DomainError as err:
                status, reason = "FAILED", f"{err.code}: {err.message}"[:200]
                # neither leg moved: each side gets back what this trade had reserved
                money.release(t["buyer_cash_ref"], legs.buyer_pays, by)
                units.release(t["seller_hold_id"], legs.quantity, f"trade {t['trade_id']} failed")
                failed += 1
            rows.append(
                {
                    "trade_id": t["trade_id"],
                    "trading_day": t["trading_day"],
                    "mode": t["mode"],
                    "instrument": t["instrument"],
                    "status": status,
                    "reason": reason,
                    "quantity": legs.quantity,
                    "value": legs.value,
                    "buyer_entity": t["buyer_entity"],
                    "seller_entity": t["seller_entity"],
                    "buyer_pays": legs.buyer_pays,
                    "seller_receives": legs.seller_receives,
                    "fee_buyer": legs.fee_buyer,
                    "fee_seller": legs.fee_seller,
                    "transfer_id": transfer_id,
                    "settled_at": now,
                }
            )
            entries.append(
                (
                    "settlement.trade_settled"
                    if status == "SETTLED"
                    else "settlement.trade_failed",
                    by,
                    {
                        "trade_id": t["trade_id"],
                        "quantity": legs.quantity,
                        "buyer_pays": legs.buyer_pays,
                        "seller_receives": legs.seller_receives,
                        "transfer_id": transfer_id,
                        "reason": reason,
                    },
                )
            )
        units.write()
        money.write()
        if rows:
            insert_many(uow.conn, s.settlements, rows)
            journal.append_many(uow, entries)
        return settled, failed

    # ------------------------------------------------------------ reports

    def _rows(
        self, conn: Connection, day: date, entity_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        c = s.settlements.c
        q = sa.select(s.settlements).where(c.trading_day == day.isoformat())
        if status is not None:
            q = q.where(c.status == status)
        if entity_id is not None:
            q = q.where(sa.or_(c.buyer_entity == entity_id, c.seller_entity == entity_id))
        return [
            dict(r._mapping, price=int(r.value) // int(r.quantity))
            for r in conn.execute(q.order_by(c.trade_id))
        ]

    def report(
        self, day: date, modes: Sequence[str] = ("LISTING", "BLOCK", "AUCTION", "CONTINUOUS")
    ) -> dict[str, Any]:
        """The daily clearing report by mode; its parts add up to its totals."""
        with self.db.read() as ro:
            conn = ro.conn
            rows = self._rows(conn, day)
            run = conn.execute(
                sa.select(s.settlement_runs).where(
                    s.settlement_runs.c.trading_day == day.isoformat()
                )
            ).first()
        report = m.clearing_report(rows, modes)
        return {
            "modes": {mode: _in_yuan(b, _BLOCK_MONEY) for mode, b in report["modes"].items()},
            "total": _in_yuan(report["total"], _BLOCK_MONEY),
            "day": day.isoformat(),
            "run": dict(run._mapping) if run else None,
        }

    def statement(self, actor: Actor, entity_id: str, day: date) -> dict[str, Any]:
        if not (actor.is_operator or actor.entity_id == entity_id):
            raise Forbidden(
                "NOT_YOUR_STATEMENT", "you may read only your own statement", "只能查看本主体结算单"
            )
        with self.db.read() as ro:
            conn = ro.conn
            rows = self._rows(conn, day, entity_id)
        out = _in_yuan(m.statement(entity_id, rows), _STATEMENT_MONEY)
        out["lines"] = [_in_yuan(line, _LINE_MONEY) for line in out["lines"]]
        out["day"] = day.isoformat()
        return out

    def failures(self, actor: Actor, day: date) -> list[dict[str, Any]]:
        require_role(actor, Role.OPERATOR)
        with self.db.read() as ro:
            conn = ro.conn
            return [_in_yuan(r, _SETTLEMENT_MONEY) for r in self._rows(conn, day, status="FAILED")]


# Money leaves the service as yuan strings, as everywhere in the API (DESIGN §4); the model
# adds up fen. A price is yuan per tonne.
_BLOCK_MONEY = ("value", "average", "high", "low", "fees")
_STATEMENT_MONEY = ("cash_received", "cash_paid", "net_cash", "fees")
_LINE_MONEY = ("value", "fee", "cash")
_SETTLEMENT_MONEY = ("price", "value", "buyer_pays", "seller_receives", "fee_buyer", "fee_seller")


def _in_yuan(figures: dict[str, Any], money: Sequence[str]) -> dict[str, Any]:
    return {
        k: yuan_from_fen(int(v)) if k in money and v is not None else v for k, v in figures.items()
    }
