"""Registry use cases. Each command is one transaction through the unit of work: load state,
ask the model, write balances, blocks and the journal entry together, keep the idempotency key.

Every movement is a transfer row: proposed (pending reserves the sender's units), then posted,
voided or expired. Operations that need approval, a delay, or both, stay pending until due.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbonhub.core import idempotency, journal
from carbonhub.core.auth import SYSTEM, Actor, Role, entities, require_role
from carbonhub.core.db import Database, UnitOfWork, execute_many, fetch, insert_many, run
from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from carbonhub.core.fields import text as _text
from carbonhub.core.ids import new_id
from carbonhub.core.quantities import tonnes
from carbonhub.core.timefmt import iso, parse_iso
from carbonhub.registry import model as m
from carbonhub.registry import store as s

OPERATOR_CREDIT_CODE = "914201060000000001"
MARKET_SUSPENDED = "market_suspended"
EXCHANGE_USER = "exchange"  # the actor name under which the exchange reserves and delivers units
ALLOCATION_ORIGIN_DEFAULT = "420000"  # GB/T 2260 code of Hubei province


def _account_not_found(account_id: str) -> NotFound:
    return NotFound("ACCOUNT_NOT_FOUND", f"no account {account_id}", f"账户 {account_id} 不存在")


def _view(row: Any) -> m.AccountView:
    return m.AccountView(
        row.id, m.AccountType(row.type), m.AccountStatus(row.status), row.entity_id
    )


def transfer_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "op": row.op,
        "status": row.status,
        "from_account": row.from_account,
        "to_account": row.to_account,
        "unit_class": row.unit_class,
        "quantity": int(row.quantity),
        "proposed_by": row.proposed_by,
        "approved_by": row.approved_by,
        "created_at": row.created_at,
        "execute_after": row.execute_after,
        "expires_at": row.expires_at,
        "completed_at": row.completed_at,
        "reason": row.reason,
        "beneficiary": row.beneficiary,
        "legal_basis": row.legal_basis,
        "compliance_year": row.compliance_year,
        "reverses": row.reverses,
        "hold_id": row.hold_id,
        "batch_ref": row.batch_ref,
        "journal_seq": row.journal_seq,
    }


def _transfer_row(
    op: m.Op, frm: str | None, to: str, uc: str, q: int, by: str, now: str, **fields: Any
) -> dict[str, Any]:
    """A new `transfers` row, every column present (bulk inserts need them all), PENDING
    unless `fields` say otherwise."""
    row: dict[str, Any] = dict.fromkeys(s.transfers.c.keys())
    row.update(
        id=new_id(),
        op=op.value,
        status="PENDING",
        from_account=frm,
        to_account=to,
        unit_class=uc,
        quantity=q,
        proposed_by=by,
        created_at=now,
    )
    row.update(fields)
    return row


def _proposed_entry(
    row: dict[str, Any], by: str, consumed_hold_t: int = 0
) -> tuple[str, str, dict[str, Any]]:
    return (
        "registry.transfer_proposed",
        by,
        {
            "transfer_id": row["id"],
            "op": row["op"],
            "from": row["from_account"],
            "to": row["to_account"],
            "unit_class": row["unit_class"],
            "quantity": row["quantity"],
            "consumed_hold_t": consumed_hold_t,
        },
    )


def _completed_entry(
    t: Any, by: str, moved: Sequence[m.Block], **extra: Any
) -> tuple[str, str, dict[str, Any]]:
    """`t` is a `transfers` row (or one to be inserted, as a namespace)."""
    return (
        "registry.transfer_completed",
        by,
        {
            "transfer_id": t.id,
            "op": t.op,
            "from": t.from_account,
            "to": t.to_account,
            "unit_class": t.unit_class,
            "quantity": int(t.quantity),
            **extra,
            "blocks": [list(b.key()) for b in moved],
        },
    )


def _block_rows(transfer_id: str, moved: Sequence[m.Block]) -> list[dict[str, Any]]:
    """The `transfer_blocks` rows of what a transfer moved."""
    return [
        {
            "transfer_id": transfer_id,
            "unit_class": b.unit_class,
            "origin": b.origin,
            "batch": b.batch,
            "start": b.start,
            "end": b.end,
        }
        for b in moved
    ]


def account_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "entity_id": row.entity_id,
        "type": row.type,
        "status": row.status,
        "name": row.name,
        "requested_by": row.requested_by,
        "approved_by": row.approved_by,
        "created_at": row.created_at,
        "opened_at": row.opened_at,
        "closed_at": row.closed_at,
    }


def hold_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "account_id": row.account_id,
        "unit_class": row.unit_class,
        "quantity": int(row.quantity),
        "kind": row.kind,
        "status": row.status,
        "lien_holder": row.lien_holder,
        "legal_basis": row.legal_basis,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "released_by": row.released_by,
        "released_at": row.released_at,
    }


_REVERSAL = s.transfers.alias("reversal")
# a transfer that no completed reversal took back
_NOT_REVERSED = ~sa.exists().where(
    _REVERSAL.c.reverses == s.transfers.c.id,
    _REVERSAL.c.op == m.Op.REVERSAL.value,
    _REVERSAL.c.status == "COMPLETED",
)
# a year's surrenders from some accounts, per class, those reversed left out (prepared once)
_SURRENDERED = (
    sa.select(s.transfers.c.unit_class, sa.func.sum(s.transfers.c.quantity).label("quantity"))
    .where(
        s.transfers.c.op == m.Op.SURRENDER.value,
        s.transfers.c.status == "COMPLETED",
        s.transfers.c.compliance_year == sa.bindparam("year"),
        s.transfers.c.from_account.in_(sa.bindparam("accounts", expanding=True)),
        _NOT_REVERSED,
    )
    .group_by(s.transfers.c.unit_class)
)


class RegistryService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.registry = db.settings.registry_code
        self._system_accounts: dict[m.AccountType, str] = {}

    # ------------------------------------------------------------ bootstrap

    def bootstrap(self) -> dict[str, str]:
        """Create the registry operator's entity and its system accounts once."""
        with self.db.uow() as uow:
            journal.lock_head(uow)
            conn = uow.conn
            op_entity = conn.execute(
                sa.select(entities.c.id).where(entities.c.credit_code == OPERATOR_CREDIT_CODE)
            ).scalar()
            if op_entity is None:
                op_entity = new_id()
                conn.execute(
                    sa.insert(entities).values(
                        id=op_entity,
                        name="全国碳排放权注册登记结算机构",
                        name_en="Registry operator",
                        kind="registry",
                        credit_code=OPERATOR_CREDIT_CODE,
                        created_at=iso(uow.now),
                    )
                )
                journal.append(
                    uow, "entity.created", "system", {"entity_id": op_entity, "kind": "registry"}
                )
            ids: dict[str, str] = {}
            for type_ in (
                m.AccountType.ISSUANCE,
                m.AccountType.SURRENDER,
                m.AccountType.CANCELLATION,
            ):
                existing = conn.execute(
                    sa.select(s.accounts.c.id).where(s.accounts.c.type == type_.value)
                ).scalar()
                if existing is None:
                    existing = self._insert_account(
                        uow,
                        op_entity,
                        type_,
                        f"{type_.value.title()} account",
                        "system",
                        m.AccountStatus.OPEN,
                    )
                ids[type_.value] = existing
            uow.commit()
        return ids

    def system_account(self, conn: Connection, type_: m.AccountType) -> str:
        """The registry's own account of this type. Made once at bootstrap and never changed,
        so it is remembered: the lookup by type reads every account (no index on type)."""
        found = self._system_accounts.get(type_)
        if found is not None:
            return found
        acc = conn.execute(
            sa.select(s.accounts.c.id).where(s.accounts.c.type == type_.value)
        ).scalar()
        if acc is None:
            raise Conflict(
                "REGISTRY_NOT_BOOTSTRAPPED", "run `carbonhub db upgrade` first", "登记系统未初始化"
            )
        self._system_accounts[type_] = str(acc)
        return str(acc)

    def _insert_account(
        self,
        uow: UnitOfWork,
        entity_id: str,
        type_: m.AccountType,
        name: str,
        by: str,
        status: m.AccountStatus,
    ) -> str:
        seq = s.next_value(uow.conn, f"account:{type_.value}")
        account_id = m.make_account_id(self.registry, type_, seq)
        now = iso(uow.now)
        uow.conn.execute(
            sa.insert(s.accounts).values(
                id=account_id,
                entity_id=entity_id,
                type=type_.value,
                status=status.value,
                name=name,
                requested_by=by,
                created_at=now,
                opened_at=now if status is m.AccountStatus.OPEN else None,
                approved_by=by if status is m.AccountStatus.OPEN else None,
                holding_slot=entity_id if type_ is m.AccountType.HOLDING else None,
            )
        )
        journal.append(
            uow,
            "registry.account_created",
            by,
            {
                "account_id": account_id,
                "entity_id": entity_id,
                "type": type_.value,
                "status": status.value,
            },
        )
        return account_id

    # ------------------------------------------------------------ accounts

    def request_account(
        self, actor: Actor, key: str, *, type: str, name: str, entity_id: str | None = None
    ) -> dict[str, Any]:
        data = {"type": type, "name": name, "entity_id": entity_id}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            try:
                type_ = m.AccountType(type)
            except ValueError:
                raise InvalidInput(
                    "ACCOUNT_TYPE_UNKNOWN", f"unknown account type {type!r}", "未知账户类型"
                ) from None
            if type_ in m.SYSTEM_TYPES:
                raise InvalidInput(
                    "ACCOUNT_TYPE_SYSTEM",
                    "system accounts are created by the registry",
                    "系统账户由登记机构创建",
                )
            if actor.role not in (Role.OPERATOR, Role.ENTERPRISE, Role.MEMBER, Role.LENDER):
                raise Forbidden(
                    "ROLE_NOT_ALLOWED",
                    "this role cannot hold registry accounts",
                    "该角色不能开立登记账户",
                )
            if actor.is_operator and not entity_id:
                raise InvalidInput(
                    "ENTITY_REQUIRED",
                    "an operator opens an account for an entity: give entity_id",
                    "登记机构代为开户须指定主体 entity_id",
                    field="entity_id",
                )
            if not actor.is_operator and entity_id not in (None, actor.entity_id):
                raise Forbidden(
                    "NOT_ACCOUNT_HOLDER",
                    "you may request accounts only for your own entity",
                    "只能为本主体申请账户",
                )
            target = entity_id if actor.is_operator else actor.entity_id
            if not target:
                raise Forbidden(
                    "ROLE_NOT_ALLOWED",
                    "this role cannot hold registry accounts",
                    "该角色不能开立登记账户",
                )
            if not uow.conn.execute(
                sa.select(entities.c.id).where(entities.c.id == target)
            ).first():
                raise NotFound("ENTITY_NOT_FOUND", f"no entity {target}", "主体不存在")
            if (
                type_ is m.AccountType.HOLDING
                and uow.conn.execute(
                    sa.select(s.accounts.c.id).where(s.accounts.c.holding_slot == target)
                ).first()
            ):
                raise Conflict(
                    "HOLDING_ACCOUNT_EXISTS",
                    "this legal entity already has a holding account",
                    "该主体已有持有账户",
                )
            account_id = self._insert_account(
                uow,
                target,
                type_,
                _text(name, "name", required=True),
                actor.username,
                m.AccountStatus.REQUESTED,
            )
            return self._account(uow.conn, account_id)

        return idempotency.run(self.db, actor.username, key, "request_account", data, body)

    def decide_account(
        self, actor: Actor, key: str, account_id: str, *, approve: bool
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            row = self._locked_account(uow.conn, account_id)
            if row.status != m.AccountStatus.REQUESTED:
                raise Conflict(
                    "ACCOUNT_NOT_REQUESTED",
                    f"account {account_id} is {row.status}, not awaiting a decision",
                    "该账户不在待审批状态",
                )
            if row.requested_by == actor.username:
                raise Forbidden(
                    "SAME_OPERATOR",
                    "the requester cannot approve their own request",
                    "申请人不能审批自己的申请",
                )
            target = m.AccountStatus.OPEN if approve else m.AccountStatus.REJECTED
            self._set_status(
                uow,
                actor,
                row,
                target,
                reason="opening approved" if approve else "opening rejected",
            )
            return self._account(uow.conn, account_id)

        return idempotency.run(
            self.db,
            actor.username,
            key,
            "decide_account",
            {"account": account_id, "approve": approve},
            body,
        )

    def change_status(
        self, actor: Actor, key: str, account_id: str, *, status: str, reason: str
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            row = self._locked_account(uow.conn, account_id)
            if m.AccountType(row.type) in m.SYSTEM_TYPES:
                raise Conflict(
                    "SYSTEM_ACCOUNT", "system accounts keep their status", "系统账户状态不可更改"
                )
            if row.status == m.AccountStatus.REQUESTED:
                raise Conflict(
                    "ACCOUNT_NOT_DECIDED", "decide the opening request first", "请先审批开户申请"
                )
            self._set_status(
                uow, actor, row, status, reason=_text(reason, "reason", required=True, max_len=500)
            )
            return self._account(uow.conn, account_id)

        data = {"account": account_id, "status": status, "reason": reason}
        return idempotency.run(self.db, actor.username, key, "change_status", data, body)

    def _set_status(
        self, uow: UnitOfWork, actor: Actor, row: Any, target: str, *, reason: str
    ) -> None:
        totals = uow.conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(s.holdings.c.posted), 0),
                sa.func.coalesce(sa.func.sum(s.holdings.c.pending), 0),
            ).where(s.holdings.c.account_id == row.id)
        ).one()
        to = m.check_status_change(
            row.status, target, balance_t=int(totals[0]), pending_t=int(totals[1])
        )
        now = iso(uow.now)
        values: dict[str, Any] = {"status": to.value}
        if to is m.AccountStatus.OPEN and row.opened_at is None:
            values.update(opened_at=now, approved_by=actor.username)
        if to in (m.AccountStatus.CLOSED, m.AccountStatus.REJECTED):
            values.update(holding_slot=None, closed_at=now)
        uow.conn.execute(sa.update(s.accounts).where(s.accounts.c.id == row.id).values(**values))
        journal.append(
            uow,
            "registry.account_status",
            actor.username,
            {"account_id": row.id, "from": row.status, "to": to.value, "reason": reason},
        )

    def _locked_account(self, conn: Connection, account_id: str) -> Any:
        m.parse_account_id(account_id)
        rows = s.lock_accounts(conn, [account_id])
        if account_id not in rows:
            raise _account_not_found(account_id)
        return rows[account_id]

    def _account(self, conn: Connection, account_id: str) -> dict[str, Any]:
        row = conn.execute(sa.select(s.accounts).where(s.accounts.c.id == account_id)).first()
        if row is None:
            raise _account_not_found(account_id)
        return account_dict(row)

    # ------------------------------------------------------------ movements

    def issue(
        self,
        actor: Actor,
        key: str,
        *,
        unit_class: str,
        quantity: int,
        origin: str = ALLOCATION_ORIGIN_DEFAULT,
        reason: str = "",
    ) -> dict[str, Any]:
        data = {"unit_class": unit_class, "quantity": quantity, "origin": origin, "reason": reason}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            uc = m.parse_unit_class(unit_class)
            org = _text(origin, "origin", required=True, max_len=20).upper()
            if not m.ORIGIN.fullmatch(org) or (uc.project and org != uc.project):
                raise InvalidInput(
                    "ORIGIN_INVALID",
                    "origin: the province code for CEA, the project or method code for credits",
                    "来源代码错误",
                )
            self._ensure_unit_class(uow, uc)
            to = self.system_account(uow.conn, m.AccountType.ISSUANCE)
            return self._propose(
                uow,
                actor,
                m.operation(m.Op.ISSUE),
                None,
                to,
                uc.code,
                quantity,
                origin=org,
                reason=reason,
            )

        return idempotency.run(self.db, actor.username, key, "issue", data, body)

    def allocate(
        self,
        actor: Actor,
        key: str,
        *,
        to_account: str,
        unit_class: str,
        quantity: int,
        reason: str = "",
    ) -> dict[str, Any]:
        data = {"to": to_account, "unit_class": unit_class, "quantity": quantity, "reason": reason}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            src = self.system_account(uow.conn, m.AccountType.ISSUANCE)
            return self._propose(
                uow,
                actor,
                m.operation(m.Op.ALLOCATE),
                src,
                to_account,
                unit_class,
                quantity,
                reason=reason,
            )

        return idempotency.run(self.db, actor.username, key, "allocate", data, body)

    def allocate_bulk(
        self,
        actor: Actor,
        key: str,
        rows: Sequence[tuple[str, str, int]],
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Propose one allocation per row, all or none; the checker approves them as one batch."""
        if not rows:
            raise InvalidInput("BULK_EMPTY", "the allocation file has no rows", "分配文件为空")
        if len(rows) > self.db.settings.max_bulk_rows:
            raise InvalidInput(
                "BULK_TOO_LARGE", f"at most {self.db.settings.max_bulk_rows} rows", "行数超过上限"
            )

        batch_ref = new_id()  # one reference per bulk: two operators' batches never merge

        def body(uow: UnitOfWork) -> dict[str, Any]:
            moves = [(m.Op.ALLOCATE, a, uc, q, "") for a, uc, q in rows]
            ids = []
            for line, t in enumerate(self.propose_movements(uow, actor, moves, batch_ref), 1):
                if isinstance(t, DomainError):
                    t.message = f"row {line}: {t.message}"
                    t.message_zh = f"第 {line} 行: {t.message_zh}"
                    raise t
                ids.append(t["id"])
                if progress:
                    progress(line)
            return {
                "batch_ref": batch_ref,
                "transfers": ids,
                "count": len(ids),
                "quantity": sum(int(q) for _, _, q in rows),
            }

        return idempotency.run(
            self.db, actor.username, key, "allocate_bulk", [list(r) for r in rows], body
        )

    def transfer(
        self,
        actor: Actor,
        key: str,
        *,
        from_account: str,
        to_account: str,
        unit_class: str,
        quantity: int,
        reason: str = "",
    ) -> dict[str, Any]:
        cmd = {
            "key": key,
            "from_account": from_account,
            "to_account": to_account,
            "unit_class": unit_class,
            "quantity": quantity,
            "reason": reason,
        }
        outcome = self._transfer_batch(actor, [cmd])[0]
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def transfer_many(
        self, actor: Actor, commands: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Group commit: many transfers in one transaction, each with its own idempotency key,
        journal entries and result; a refused command is reported and changes nothing."""
        return [
            {"error": o.code, "detail": o.message} if isinstance(o, DomainError) else o
            for o in self._transfer_batch(actor, commands)
        ]

    def _transfer_batch(
        self, actor: Actor, commands: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any] | DomainError]:
        """Load what the batch touches in a few queries, let the model decide every command in
        memory (`model.decide_transfer`), then write the net change with bulk statements."""
        if len(commands) > self.db.settings.max_bulk_rows:
            raise InvalidInput("BATCH_TOO_LARGE", "too many commands in one batch", "批量过大")
        with self.db.uow() as uow:
            journal.lock_head(uow)
            conn, now = uow.conn, iso(uow.now)
            outcomes: list[dict[str, Any] | DomainError | None] = [None] * len(commands)
            parsed: dict[int, tuple[str, str, str, int, str, str]] = {}
            for n, c in enumerate(commands):
                try:
                    idempotency.check_key(c.get("key"))
                    data = {
                        "from": c.get("from_account"),
                        "to": c.get("to_account"),
                        "unit_class": c.get("unit_class"),
                        "quantity": c.get("quantity"),
                        "reason": c.get("reason", ""),
                    }
                    parsed[n] = (
                        m.parse_account_id(c.get("from_account")),
                        m.parse_account_id(c.get("to_account")),
                        m.parse_unit_class(c.get("unit_class")).code,
                        tonnes(c.get("quantity")),
                        _text(c.get("reason", ""), "reason", max_len=500),
                        idempotency.request_hash("transfer", data),
                    )
                except DomainError as err:
                    outcomes[n] = err
            ik = idempotency.idempotency
            keys = [commands[n]["key"] for n in parsed]
            prior = (
                {
                    r.key: r
                    for r in conn.execute(
                        sa.select(ik).where(ik.c.actor == actor.username, ik.c.key.in_(keys))
                    )
                }
                if keys
                else {}
            )
            book, initial = self._load_book(conn, [p[:4] for p in parsed.values()])
            loaded = dict(book.balances)  # as read: _write_book writes only what changed
            delay = self.db.settings.untrusted_delay_minutes
            transfer_rows: list[dict[str, Any]] = []
            block_rows: list[dict[str, Any]] = []
            entries: list[tuple[str, str, dict[str, Any]]] = []
            fresh: dict[str, tuple[str, dict[str, Any]]] = {}  # key → (digest, result)
            completed_at_entry: list[tuple[dict[str, Any], int]] = []
            for n, (frm, to, uc, q, reason, digest) in parsed.items():
                key = commands[n]["key"]
                seen = fresh.get(key) or (
                    (prior[key].request_hash, json.loads(prior[key].result))
                    if key in prior
                    else None
                )
                if seen is not None:
                    outcomes[n] = seen[1] if seen[0] == digest else idempotency.key_reused()
                    continue
                try:
                    decision = m.decide_transfer(
                        book,
                        actor.role.value,
                        actor.entity_id,
                        frm,
                        to,
                        uc,
                        q,
                        untrusted_limit_t=self.db.settings.untrusted_transfer_limit_t,
                        untrusted_delay=delay > 0,
                    )
                except DomainError as err:
                    outcomes[n] = err
                    continue
                row = _transfer_row(
                    m.Op.TRANSFER,
                    frm,
                    to,
                    uc,
                    q,
                    actor.username,
                    now,
                    status="PENDING" if decision.delayed else "COMPLETED",
                    execute_after=iso(uow.now + timedelta(minutes=delay))
                    if decision.delayed
                    else None,
                    completed_at=None if decision.delayed else now,
                    reason=reason,
                )
                if decision.delayed:  # waits out its delay: reserved now, posted by run_due
                    entries.append(_proposed_entry(row, actor.username))
                else:  # one entry: proposed and completed at once, never pending
                    entries.append(
                        _completed_entry(
                            SimpleNamespace(**row), actor.username, decision.moved, direct=True
                        )
                    )
                    completed_at_entry.append((row, len(entries) - 1))
                    block_rows.extend(_block_rows(row["id"], decision.moved))
                transfer_rows.append(row)
                outcomes[n] = row
                fresh[key] = (digest, row)
            written = journal.append_many(uow, entries)
            for row, index in completed_at_entry:
                row["journal_seq"] = written[index].seq
            self._write_book(conn, book, loaded, initial)
            if transfer_rows:
                insert_many(conn, s.transfers, transfer_rows)
            if block_rows:
                insert_many(conn, s.transfer_blocks, block_rows)
            if fresh:
                insert_many(
                    conn,
                    ik,
                    [
                        idempotency.key_row(actor.username, k, "transfer", d, r, now)
                        for k, (d, r) in fresh.items()
                    ],
                )
            if self.db.settings.check_invariants:
                problems = ledger_problems(conn)
                assert not problems, problems
            uow.commit()
        return [
            o if o is not None else InvalidInput("COMMAND_INVALID", "not decided") for o in outcomes
        ]

    def _load_book(
        self, conn: Connection, moves: Sequence[tuple[str, str, str, int]]
    ) -> tuple[m.Book, dict[tuple[str, str], dict[m.Block, int]]]:
        """Accounts, balances, serial blocks, exclusions and trust for these (from, to, class).

        Serial blocks are read for senders only, and only the first ones in take order that
        cover what the batch could take from them (a running sum in SQL): a holder's block list
        grows with every transfer it ever received, and a batch needs just its front. Where
        tainted or reserved serials must be stepped around, all of that sender's blocks are read.
        """
        ids = sorted({a for f, t_, _, _ in moves for a in (f, t_)})
        sending = sorted({f for f, _, _, _ in moves})
        classes = sorted({uc for _, _, uc, _ in moves})
        outflow: dict[tuple[str, str], int] = {}
        for f, _, uc, q in moves:
            outflow[(f, uc)] = outflow.get((f, uc), 0) + q
        rows = s.lock_accounts(conn, ids) if ids else {}
        accounts = {i: _view(r) for i, r in rows.items()}
        h, b = s.holdings, s.unit_blocks
        balances = (
            {
                (r.account_id, r.unit_class): m.Balance(int(r.posted), int(r.pending), int(r.held))
                for r in conn.execute(
                    sa.select(h).where(h.c.account_id.in_(ids), h.c.unit_class.in_(classes))
                )
            }
            if ids
            else {}
        )
        taints = {uc: s.active_taints(conn, uc) for uc in classes}
        senders = [f for f in sending if f in accounts]
        tr = s.transfers
        reversing = (
            set(
                conn.execute(
                    sa.select(tr.c.from_account).where(
                        tr.c.op == m.Op.REVERSAL.value,
                        tr.c.status == "PENDING",
                        tr.c.from_account.in_(senders),
                    )
                ).scalars()
            )
            if senders
            else set()
        )
        initial: dict[tuple[str, str], dict[m.Block, int]] = {}
        if senders:
            size = b.c.end - b.c.start + 1
            origin = b.c.origin.collate("C") if conn.dialect.name == "postgresql" else b.c.origin
            before = sa.func.sum(size).over(
                partition_by=(b.c.account_id, b.c.unit_class),
                order_by=(b.c.start - b.c.end, origin, b.c.batch, b.c.start),  # take order
                rows=(None, -1),
            )
            ranked = (
                sa.select(
                    b.c.id,
                    b.c.account_id,
                    b.c.unit_class,
                    b.c.origin,
                    b.c.batch,
                    b.c.start,
                    b.c.end,
                    before.label("before"),
                )
                .where(b.c.account_id.in_(senders), b.c.unit_class.in_(classes))
                .subquery()
            )
            full_accounts = sorted(reversing)
            full_classes = [uc for uc in classes if taints[uc]]
            cap = max(outflow.values())
            wanted = conn.execute(
                sa.select(ranked).where(
                    sa.or_(
                        ranked.c.before.is_(None),
                        ranked.c.before < cap,
                        ranked.c.account_id.in_(full_accounts),
                        ranked.c.unit_class.in_(full_classes),
                    )
                )
            ).tuples()
            for id_, acc, uc_, origin_, batch, start, end, before_t in wanted:
                whole = acc in reversing or bool(taints[uc_])
                if whole or before_t is None or before_t < outflow.get((acc, uc_), 0):
                    initial.setdefault((acc, uc_), {})[m.Block(uc_, origin_, batch, start, end)] = (
                        id_
                    )
        excluded: dict[tuple[str, str], list[m.Block]] = {}
        reserved: dict[tuple[str, str], int] = {}
        for f in senders:
            for uc in classes:
                ex, r_q = self._excluded(conn, f, uc) if taints[uc] or f in reversing else ([], 0)
                if ex:
                    excluded[(f, uc)], reserved[(f, uc)] = ex, r_q
        ta = s.trusted_accounts
        trusted = (
            {
                (r.account_id, r.trusted_id)
                for r in conn.execute(sa.select(ta).where(ta.c.account_id.in_(ids)))
            }
            if ids
            else set()
        )
        known = (
            set(
                conn.execute(
                    sa.select(s.unit_classes.c.code).where(s.unit_classes.c.code.in_(classes))
                ).scalars()
            )
            if classes
            else set()
        )
        book = m.Book(
            accounts,
            balances,
            {k: sorted(v, key=m.take_order) for k, v in initial.items()},
            excluded,
            reserved,
            trusted,
            known,
            s.flag(conn, MARKET_SUSPENDED) == "1",
        )
        return book, initial

    def _write_book(
        self,
        conn: Connection,
        book: m.Book,
        loaded: dict[tuple[str, str], m.Balance],
        initial: dict[tuple[str, str], dict[m.Block, int]],
    ) -> None:
        """Write the net change of balances and serial blocks with bulk statements.

        `loaded` holds the holdings rows as read (all that exist for the batch's accounts and
        classes), so a row absent from it is new and a row equal to it is left alone.
        """
        h, b = s.holdings, s.unit_blocks
        updates = [
            {"a": a, "c": c, "posted": v.posted, "pending": v.pending, "held": v.held}
            for (a, c), v in book.balances.items()
            if (a, c) in loaded and loaded[(a, c)] != v
        ]
        if updates:
            execute_many(
                conn,
                sa.update(h)
                .where(h.c.account_id == sa.bindparam("a"), h.c.unit_class == sa.bindparam("c"))
                .values(
                    posted=sa.bindparam("posted"),
                    pending=sa.bindparam("pending"),
                    held=sa.bindparam("held"),
                ),
                updates,
            )
        inserts = [
            {
                "account_id": a,
                "unit_class": c,
                "posted": v.posted,
                "pending": v.pending,
                "held": v.held,
            }
            for (a, c), v in book.balances.items()
            if (a, c) not in loaded
        ]
        if inserts:
            insert_many(conn, h, inserts)
        gone: list[int] = []
        new_rows: list[dict[str, Any]] = []
        for (a, c), blocks in book.blocks.items():
            before = initial.get((a, c), {})
            now_set = set(blocks)
            gone.extend(i for blk, i in before.items() if blk not in now_set)
            new_rows.extend(
                {
                    "account_id": a,
                    "unit_class": c,
                    "origin": blk.origin,
                    "batch": blk.batch,
                    "start": blk.start,
                    "end": blk.end,
                }
                for blk in blocks
                if blk not in before
            )
        for chunk in range(0, len(gone), 500):
            conn.execute(sa.delete(b).where(b.c.id.in_(gone[chunk : chunk + 500])))
        if new_rows:
            insert_many(conn, b, new_rows)

    def surrender(
        self,
        actor: Actor,
        key: str,
        *,
        from_account: str,
        unit_class: str,
        quantity: int,
        compliance_year: int,
    ) -> dict[str, Any]:
        data = {
            "from": from_account,
            "unit_class": unit_class,
            "quantity": quantity,
            "year": compliance_year,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            if (
                isinstance(compliance_year, bool)
                or not isinstance(compliance_year, int)
                or not (2000 <= compliance_year <= 2100)
            ):
                raise InvalidInput(
                    "COMPLIANCE_YEAR_INVALID", "compliance_year must be a year", "履约年度错误"
                )
            via = uow.conn.execute(
                sa.select(s.accounts.c.surrenders_via).where(
                    s.accounts.c.id == (from_account if isinstance(from_account, str) else "")
                )
            ).scalar()
            if via == "compliance":
                raise Conflict(
                    "SURRENDER_THROUGH_COMPLIANCE",
                    "this is a covered entity's holding account: it surrenders through the "
                    "compliance service (/api/v1/compliance/entities/{entity}/years/{year}/"
                    "surrender), where the year's rules are checked",
                    "纳入管控主体的登记账户须通过履约模块清缴",
                )
            to = self.system_account(uow.conn, m.AccountType.SURRENDER)
            return self._propose(
                uow,
                actor,
                m.operation(m.Op.SURRENDER),
                from_account,
                to,
                unit_class,
                quantity,
                compliance_year=compliance_year,
            )

        return idempotency.run(self.db, actor.username, key, "surrender", data, body)

    def cancel(
        self,
        actor: Actor,
        key: str,
        *,
        from_account: str,
        unit_class: str,
        quantity: int,
        beneficiary: str,
        reason: str = "",
    ) -> dict[str, Any]:
        data = {
            "from": from_account,
            "unit_class": unit_class,
            "quantity": quantity,
            "beneficiary": beneficiary,
            "reason": reason,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            to = self.system_account(uow.conn, m.AccountType.CANCELLATION)
            return self._propose(
                uow,
                actor,
                m.operation(m.Op.CANCEL),
                from_account,
                to,
                unit_class,
                quantity,
                beneficiary=_text(beneficiary, "beneficiary", required=True),
                reason=reason,
            )

        return idempotency.run(self.db, actor.username, key, "cancel", data, body)

    def court_transfer(
        self,
        actor: Actor,
        key: str,
        *,
        from_account: str,
        to_account: str,
        unit_class: str,
        quantity: int,
        legal_basis: str,
        hold_id: str | None = None,
    ) -> dict[str, Any]:
        data = {
            "from": from_account,
            "to": to_account,
            "unit_class": unit_class,
            "quantity": quantity,
            "legal_basis": legal_basis,
            "hold_id": hold_id,
        }
        return idempotency.run(
            self.db,
            actor.username,
            key,
            "court_transfer",
            data,
            lambda uow: self._propose(
                uow,
                actor,
                m.operation(m.Op.COURT_TRANSFER),
                from_account,
                to_account,
                unit_class,
                quantity,
                legal_basis=_text(legal_basis, "legal_basis", required=True),
                hold_id=hold_id,
            ),
        )

    def reverse(self, actor: Actor, key: str, *, transfer_id: str, reason: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)  # who may act, before anything about the row
            orig = uow.conn.execute(
                sa.select(s.transfers).where(s.transfers.c.id == transfer_id)
            ).first()
            if orig is None:
                raise NotFound("TRANSFER_NOT_FOUND", f"no transfer {transfer_id}", "业务不存在")
            op = m.operation(orig.op)
            if (
                orig.status != "COMPLETED"
                or op.reversal_window_days is None
                or orig.from_account is None
            ):
                raise Conflict(
                    "NOT_REVERSIBLE",
                    f"a {orig.status} {orig.op} cannot be reversed",
                    "该业务不可冲正",
                )
            if uow.now > parse_iso(orig.completed_at) + timedelta(days=op.reversal_window_days):
                raise Conflict(
                    "REVERSAL_WINDOW_PASSED",
                    f"{orig.op} may be reversed within {op.reversal_window_days} days",
                    f"已超过 {op.reversal_window_days} 天冲正期限",
                )
            if uow.conn.execute(
                sa.select(s.transfers.c.id).where(
                    s.transfers.c.reverses == transfer_id,
                    s.transfers.c.status.in_(["PENDING", "COMPLETED"]),
                )
            ).first():
                raise Conflict(
                    "ALREADY_REVERSED", "this transfer has a reversal already", "该业务已冲正"
                )
            return self._propose(
                uow,
                actor,
                m.operation(m.Op.REVERSAL),
                orig.to_account,
                orig.from_account,
                orig.unit_class,
                int(orig.quantity),
                reverses=transfer_id,
                reason=_text(reason, "reason", required=True),
            )

        return idempotency.run(
            self.db,
            actor.username,
            key,
            "reverse",
            {"transfer": transfer_id, "reason": reason},
            body,
        )

    def _propose(
        self,
        uow: UnitOfWork,
        actor: Actor,
        op: m.Operation,
        from_account: str | None,
        to_account: str,
        unit_class: str,
        quantity: int,
        *,
        origin: str | None = None,
        reason: str = "",
        beneficiary: str | None = None,
        legal_basis: str | None = None,
        compliance_year: int | None = None,
        reverses: str | None = None,
        hold_id: str | None = None,
        batch_ref: str | None = None,
    ) -> dict[str, Any]:
        conn = uow.conn
        q = tonnes(quantity)
        uc = m.parse_unit_class(unit_class)
        reason = _text(reason, "reason", max_len=500)
        if not op.passes_market_suspend and s.flag(conn, MARKET_SUSPENDED) == "1":
            raise m.market_suspended_error(op)
        ids = [to_account] + ([from_account] if from_account else [])
        for i in ids:
            m.parse_account_id(i)
        rows = s.lock_accounts(conn, ids)
        for i in ids:
            if i not in rows:
                raise _account_not_found(i)
        sender = _view(rows[from_account]) if from_account else None
        receiver = _view(rows[to_account])
        m.check_initiator(op, actor.role.value, actor.entity_id, sender)
        m.check_route(op, sender, receiver, uc.kind)
        if op.code is not m.Op.ISSUE and not fetch(conn, _UNIT_CLASS, code=uc.code):
            raise NotFound(
                "UNIT_CLASS_NOT_FOUND",
                f"no units of class {uc.code} were ever issued",
                "该单位类别不存在",
            )

        consumed_hold: dict[str, Any] | None = None
        if sender is not None:
            bal = s.balance(conn, sender.id, uc.code)
            extra = 0
            if hold_id is not None:
                hold = conn.execute(sa.select(s.holds).where(s.holds.c.id == hold_id)).first()
                if (
                    hold is None
                    or hold.status != "ACTIVE"
                    or hold.account_id != sender.id
                    or hold.unit_class != uc.code
                ):
                    raise Conflict(
                        "HOLD_NOT_APPLICABLE",
                        "the hold is not an active hold on this account and class",
                        "冻结记录不适用",
                    )
                if op.consumes_hold is None or hold.kind != op.consumes_hold:
                    raise Conflict(
                        "HOLD_NOT_APPLICABLE",
                        f"{op.code.value} cannot take units from a {hold.kind}",
                        "该业务不能使用此冻结",
                    )
                if q > hold.quantity:
                    raise Conflict(
                        "HOLD_TOO_SMALL",
                        f"the freeze covers {hold.quantity} t",
                        f"冻结数量仅 {hold.quantity} 吨",
                    )
                extra = q  # the court takes q of the frozen units; the rest stays frozen
                consumed_hold = {"id": hold.id, "quantity": q, "left": int(hold.quantity) - q}
            m.check_available(bal, q, extra_t=extra)
            if op.code is m.Op.REVERSAL:
                m.take_ranges(
                    [b for _, b in s.blocks_of(conn, sender.id, uc.code)],
                    self._moved_ranges(conn, reverses),
                )
            else:
                blocks = [b for _, b in s.blocks_of(conn, sender.id, uc.code)]
                excluded, reserved_by_reversals = self._excluded(conn, sender.id, uc.code)
                free = sum(b.size for b in m.subtract(blocks, excluded))
                if free - (bal.pending - reserved_by_reversals) < q:
                    raise Conflict(
                        "UNITS_TAINTED",
                        "some of these units carry a tainted-serial flag or are reserved",
                        "部分单位序列号被标记为可疑或已被预留",
                    )

        execute_after = None
        if (
            op.trusted_list_applies
            and sender is not None
            and from_account is not None
            and not self._trusted(conn, rows[from_account], rows[to_account])
        ):
            m.check_untrusted(self.db.settings.untrusted_transfer_limit_t, q)
            if self.db.settings.untrusted_delay_minutes > 0:
                execute_after = iso(
                    uow.now + timedelta(minutes=self.db.settings.untrusted_delay_minutes)
                )
        expires_at = (
            iso(uow.now + timedelta(minutes=self.db.settings.approval_expiry_minutes))
            if op.needs_approval
            else None
        )
        row = _transfer_row(
            op.code,
            from_account,
            to_account,
            uc.code,
            q,
            actor.username,
            iso(uow.now),
            origin=origin,
            execute_after=execute_after,
            expires_at=expires_at,
            reason=reason,
            beneficiary=beneficiary,
            legal_basis=legal_basis,
            compliance_year=compliance_year,
            reverses=reverses,
            hold_id=hold_id,
            batch_ref=batch_ref,
        )
        transfer_id = row["id"]
        insert_many(conn, s.transfers, [row])
        if consumed_hold is not None:
            conn.execute(
                sa.update(s.holds)
                .where(s.holds.c.id == hold_id)
                .values(
                    quantity=consumed_hold["left"] or int(consumed_hold["quantity"]),
                    status="ACTIVE" if consumed_hold["left"] else "CONSUMED",
                )
            )
            s.add_to_holding(conn, str(from_account), uc.code, held=-consumed_hold["quantity"])
        if from_account:
            s.add_to_holding(conn, from_account, uc.code, pending=q)
        consumed = int(consumed_hold["quantity"]) if consumed_hold else 0
        journal.append(uow, *_proposed_entry(row, actor.username, consumed))
        if not op.needs_approval and execute_after is None:
            self._post(uow, transfer_id, actor.username)
            return self._transfer(conn, transfer_id)
        return transfer_dict(SimpleNamespace(**row))

    def _trusted(self, conn: Connection, sender: Any, receiver: Any) -> bool:
        if sender.entity_id == receiver.entity_id:
            return True
        return (
            conn.execute(
                sa.select(s.trusted_accounts.c.account_id).where(
                    s.trusted_accounts.c.account_id == sender.id,
                    s.trusted_accounts.c.trusted_id == receiver.id,
                )
            ).first()
            is not None
        )

    def _excluded(
        self, conn: Connection, account_id: str, unit_class: str
    ) -> tuple[list[m.Block], int]:
        """Serials an ordinary movement must not take: tainted ranges, and ranges that pending
        reversals out of this account will take back; plus the quantity those reversals reserve."""
        excluded = s.active_taints(conn, unit_class)
        reserved = [
            m.Block(r.unit_class, r.origin, r.batch, r.start, r.end)
            for r in fetch(conn, _RESERVED_BY_REVERSALS, a=account_id, c=unit_class)
        ]
        return excluded + reserved, sum(b.size for b in reserved)

    def _moved_ranges(self, conn: Connection, transfer_id: str | None) -> list[m.Block]:
        rows = conn.execute(
            sa.select(s.transfer_blocks).where(s.transfer_blocks.c.transfer_id == transfer_id)
        )
        return [m.Block(r.unit_class, r.origin, r.batch, r.start, r.end) for r in rows]

    def _post(self, uow: UnitOfWork, transfer_id: str, by: str) -> None:
        """Move the units: balances and serial blocks in the caller's transaction."""
        conn = uow.conn
        t = fetch(conn, _TRANSFER_BY_ID, tid=transfer_id)[0]
        q, uc = int(t.quantity), t.unit_class
        op = m.operation(t.op)
        ids = [t.to_account] + ([t.from_account] if t.from_account else [])
        rows = s.lock_accounts(conn, ids)
        sender = _view(rows[t.from_account]) if t.from_account else None
        m.check_posting(op, _view(rows[t.to_account]), sender)
        if t.op == m.Op.ISSUE:
            batch = 1 + int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(s.issuance_batches.c.batch), 0)).where(
                        s.issuance_batches.c.unit_class == uc,
                        s.issuance_batches.c.origin == t.origin,
                    )
                ).scalar_one()
            )
            conn.execute(
                sa.insert(s.issuance_batches).values(
                    unit_class=uc,
                    origin=t.origin,
                    batch=batch,
                    quantity=q,
                    transfer_id=t.id,
                    issued_at=iso(uow.now),
                )
            )
            moved = [m.Block(uc, t.origin, batch, 1, q)]
        else:
            pool = s.blocks_of(conn, t.from_account, uc)
            held = [b for _, b in pool]
            if t.op == m.Op.REVERSAL:
                split = m.take_ranges(held, self._moved_ranges(conn, t.reverses))
            else:
                split = m.take_free(held, self._excluded(conn, t.from_account, uc)[0], q)
            by_block = {b: i for i, b in pool}
            run(conn, _DELETE_BLOCKS, ids=[by_block[b] for b in split.removed])
            if split.kept:
                insert_many(
                    conn,
                    s.unit_blocks,
                    [
                        dict(
                            account_id=t.from_account,
                            unit_class=uc,
                            origin=b.origin,
                            batch=b.batch,
                            start=b.start,
                            end=b.end,
                        )
                        for b in split.kept
                    ],
                )
            s.add_to_holding(conn, t.from_account, uc, posted=-q, pending=-q)
            moved = split.moved
        ranges = [
            dict(unit_class=uc, origin=b.origin, batch=b.batch, start=b.start, end=b.end)
            for b in moved
        ]
        insert_many(conn, s.unit_blocks, [dict(r, account_id=t.to_account) for r in ranges])
        insert_many(conn, s.transfer_blocks, [dict(r, transfer_id=t.id) for r in ranges])
        s.add_to_holding(conn, t.to_account, uc, posted=q)
        entry = journal.append(uow, *_completed_entry(t, by, moved))
        run(
            conn,
            _POSTED,
            tid=t.id,
            by=t.approved_by,  # as it stands: a post without approval has none
            st="COMPLETED",
            at=iso(uow.now),
            seq=entry.seq,
        )
        if self.db.settings.check_invariants:
            problems = ledger_problems(conn)
            assert not problems, problems

    def _end_pending(self, uow: UnitOfWork, t: Any, status: str, by: str, reason: str) -> None:
        conn = uow.conn
        restored = 0
        if t.hold_id and t.op == m.Op.COURT_TRANSFER:
            hold = conn.execute(sa.select(s.holds).where(s.holds.c.id == t.hold_id)).one()
            restored = int(t.quantity)  # the court order did not happen: refreeze what it took
            # a CONSUMED hold, or one RELEASED meanwhile, comes back with just what was taken
            new_quantity = restored + (int(hold.quantity) if hold.status == "ACTIVE" else 0)
            conn.execute(
                sa.update(s.holds)
                .where(s.holds.c.id == t.hold_id)
                .values(status="ACTIVE", quantity=new_quantity, released_at=None, released_by=None)
            )
        if t.from_account:
            s.add_to_holding(
                conn, t.from_account, t.unit_class, pending=-int(t.quantity), held=restored
            )
        conn.execute(
            sa.update(s.transfers)
            .where(s.transfers.c.id == t.id)
            .values(status=status, completed_at=iso(uow.now))
        )
        journal.append(
            uow,
            f"registry.transfer_{status.lower()}",
            by,
            {
                "transfer_id": t.id,
                "from": t.from_account,
                "unit_class": t.unit_class,
                "quantity": int(t.quantity),
                "restored_hold_t": restored,
                "reason": reason,
            },
        )

    def approve(self, actor: Actor, key: str, transfer_id: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            t = self._pending(uow.conn, transfer_id)
            self._approve_rows(uow, actor, [t])
            return self._transfer(uow.conn, transfer_id)

        return idempotency.run(
            self.db, actor.username, key, "approve", {"transfer": transfer_id}, body
        )

    def approve_batch(self, actor: Actor, key: str, batch_ref: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            rows = uow.conn.execute(
                sa.select(s.transfers)
                .where(s.transfers.c.batch_ref == batch_ref, s.transfers.c.status == "PENDING")
                .order_by(s.transfers.c.id)
            ).all()
            if not rows:
                raise NotFound(
                    "BATCH_NOT_FOUND",
                    f"no pending transfers in batch {batch_ref}",
                    "该批次无待审批业务",
                )
            self._approve_rows(uow, actor, rows)
            return {"batch_ref": batch_ref, "approved": len(rows)}

        return idempotency.run(
            self.db, actor.username, key, "approve_batch", {"batch": batch_ref}, body
        )

    def _approve_rows(self, uow: UnitOfWork, actor: Actor, rows: Sequence[Any]) -> None:
        """The checker approves these pending transfers, all or none, and those due now post.

        Plain movements post together against one in-memory book (`model.decide_posting`) and
        are written with bulk statements; an issuance or a reversal posts on its own (`_post`).
        The journal has each transfer's approval followed by its completion, in `rows`' order."""
        now = iso(uow.now)
        for t in rows:
            op = m.operation(t.op)
            if not op.needs_approval or t.approved_by is not None:
                raise Conflict(
                    "NOTHING_TO_APPROVE", "this transfer is not awaiting approval", "该业务无需审批"
                )
            if t.proposed_by == actor.username:
                raise Forbidden(
                    "SAME_OPERATOR",
                    "the proposer cannot approve their own proposal (maker–checker)",
                    "经办人不能复核自己的业务",
                )
            if t.expires_at is not None and now >= t.expires_at:
                raise Conflict("PROPOSAL_EXPIRED", "this proposal has expired", "该申请已过期")
        due = {t.id for t in rows if t.execute_after is None or t.execute_after <= now}
        if any(t.op in (m.Op.ISSUE, m.Op.REVERSAL) or not t.from_account for t in rows):
            for t in rows:
                run(uow.conn, _APPROVED_BY, tid=t.id, by=actor.username)
                journal.append(
                    uow, "registry.transfer_approved", actor.username, {"transfer_id": t.id}
                )
                if t.id in due:
                    self._post(uow, t.id, actor.username)
            return
        self._approve_and_post(uow, actor.username, rows, due)

    def _approve_and_post(
        self, uow: UnitOfWork, by: str, rows: Sequence[Any], due: set[str]
    ) -> None:
        """`_approve_rows` for plain movements (each with a sender): one book, bulk writes."""
        conn, now = uow.conn, iso(uow.now)
        moves = {t.id: (t.from_account, t.to_account, t.unit_class, int(t.quantity)) for t in rows}
        book, initial = self._load_book(conn, [moves[i] for i in moves if i in due])
        loaded = dict(book.balances)
        entries: list[tuple[str, str, dict[str, Any]]] = []
        posted: list[tuple[Any, int]] = []  # transfer, index of its completion entry
        block_rows: list[dict[str, Any]] = []
        for t in rows:
            entries.append(("registry.transfer_approved", by, {"transfer_id": t.id}))
            if t.id not in due:
                continue
            frm, to, uc, q = moves[t.id]
            moved = m.decide_posting(book, m.operation(t.op), frm, to, uc, q)
            entries.append(_completed_entry(t, by, moved))
            posted.append((t, len(entries) - 1))
            block_rows.extend(_block_rows(t.id, moved))
        written = journal.append_many(uow, entries)
        waiting = [{"tid": t.id, "by": by} for t in rows if t.id not in due]
        if waiting:
            execute_many(conn, _APPROVED_BY, waiting)
        if posted:
            execute_many(
                conn,
                _POSTED,
                [
                    {"tid": t.id, "by": by, "st": "COMPLETED", "at": now, "seq": written[i].seq}
                    for t, i in posted
                ],
            )
        self._write_book(conn, book, loaded, initial)
        if block_rows:
            insert_many(conn, s.transfer_blocks, block_rows)
        if self.db.settings.check_invariants:
            problems = ledger_problems(conn)
            assert not problems, problems

    def void(self, actor: Actor, key: str, transfer_id: str, *, reason: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            def may_void(t: Any) -> None:
                if actor.is_operator:
                    return
                # Holders may withdraw only what holders start; operators' proposals are theirs.
                sender = uow.conn.execute(
                    sa.select(s.accounts).where(s.accounts.c.id == t.from_account)
                ).first()
                holder_op = actor.role.value in m.operation(t.op).initiators
                if not holder_op or sender is None or sender.entity_id != actor.entity_id:
                    raise Forbidden(
                        "NOT_ACCOUNT_HOLDER",
                        "you may act only on your own accounts",
                        "只能操作本主体账户",
                    )

            t = self._pending(uow.conn, transfer_id, authorise=may_void)
            self._end_pending(
                uow,
                t,
                "VOIDED",
                actor.username,
                _text(reason, "reason", required=True, max_len=500),
            )
            return self._transfer(uow.conn, transfer_id)

        return idempotency.run(
            self.db, actor.username, key, "void", {"transfer": transfer_id, "reason": reason}, body
        )

    def run_due(self) -> dict[str, int]:
        """Post delayed transfers that are due and expire proposals nobody approved in time.

        A transfer that can no longer post (its account was suspended, its serials flagged) is
        voided with the rule it broke, alone; the others go on.
        """
        posted = expired = failed = 0
        with self.db.uow() as uow:
            journal.lock_head(uow)
            now = iso(uow.now)
            suspended = s.flag(uow.conn, MARKET_SUSPENDED) == "1"
            for t in uow.conn.execute(
                sa.select(s.transfers)
                .where(s.transfers.c.status == "PENDING")
                .order_by(s.transfers.c.id)
            ).all():
                op = m.operation(t.op)
                if op.needs_approval and t.approved_by is None:
                    if t.expires_at is not None and t.expires_at <= now:
                        self._end_pending(
                            uow, t, "EXPIRED", SYSTEM.username, "not approved in time"
                        )
                        expired += 1
                elif (
                    t.execute_after is not None
                    and t.execute_after <= now
                    and (op.passes_market_suspend or not suspended)
                ):
                    savepoint = uow.conn.begin_nested()
                    try:
                        self._post(uow, t.id, SYSTEM.username)
                        savepoint.commit()
                        posted += 1
                    except DomainError as err:
                        savepoint.rollback()
                        self._end_pending(uow, t, "VOIDED", SYSTEM.username, err.code)
                        failed += 1
            uow.commit()
        return {"posted": posted, "expired": expired, "failed": failed}

    def _pending(
        self, conn: Connection, transfer_id: str, authorise: Callable[[Any], None] | None = None
    ) -> Any:
        """The pending transfer, locked; who may act is checked before its state is revealed."""
        q = sa.select(s.transfers).where(s.transfers.c.id == transfer_id)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        t = conn.execute(q).first()
        if t is None:
            raise NotFound("TRANSFER_NOT_FOUND", f"no transfer {transfer_id}", "业务不存在")
        if authorise is not None:
            authorise(t)
        if t.status != "PENDING":
            raise Conflict(
                "TRANSFER_NOT_PENDING", f"transfer is {t.status}", f"该业务状态为 {t.status}"
            )
        return t

    def _transfer(self, conn: Connection, transfer_id: str) -> dict[str, Any]:
        return transfer_dict(fetch(conn, _TRANSFER_BY_ID, tid=transfer_id)[0])

    def _ensure_unit_class(self, uow: UnitOfWork, uc: m.UnitClass) -> None:
        if uow.conn.execute(
            sa.select(s.unit_classes.c.code).where(s.unit_classes.c.code == uc.code)
        ).first():
            return
        uow.conn.execute(
            sa.insert(s.unit_classes).values(
                code=uc.code,
                kind=uc.kind.value,
                period=uc.period,
                project=uc.project,
                created_at=iso(uow.now),
            )
        )

    # ------------------------------------------------------------ holds

    def place_hold(
        self,
        actor: Actor,
        key: str,
        *,
        account_id: str,
        unit_class: str,
        quantity: int,
        kind: str,
        lien_holder: str | None = None,
        legal_basis: str = "",
        reason: str = "",
        expires_at: str | None = None,
    ) -> dict[str, Any]:
        data = {
            "account": account_id,
            "unit_class": unit_class,
            "quantity": quantity,
            "kind": kind,
            "lien_holder": lien_holder,
            "legal_basis": legal_basis,
            "reason": reason,
            "expires_at": expires_at,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            q = tonnes(quantity)
            try:
                kind_ = m.HoldKind(kind)
            except ValueError:
                raise InvalidInput(
                    "HOLD_KIND_UNKNOWN", f"unknown hold kind {kind!r}", "未知冻结类型"
                ) from None
            uc = m.parse_unit_class(unit_class)
            row = self._locked_account(uow.conn, account_id)
            if actor.role.value not in m.HOLD_PLACERS[kind_]:
                raise Forbidden(
                    "ROLE_NOT_ALLOWED",
                    f"role {actor.role.value} may not place a {kind_.value}",
                    "无权设置该冻结",
                )
            if not actor.is_operator and row.entity_id != actor.entity_id:
                raise Forbidden(
                    "NOT_ACCOUNT_HOLDER",
                    "you may act only on your own accounts",
                    "只能操作本主体账户",
                )
            if m.AccountType(row.type) not in m.HOLDER_TYPES or row.status in (
                m.AccountStatus.CLOSED,
                m.AccountStatus.REQUESTED,
                m.AccountStatus.REJECTED,
            ):
                raise Conflict(
                    "ACCOUNT_NOT_HOLDABLE",
                    f"no hold can be placed on this {row.status} account",
                    "该账户不能设置冻结",
                )
            if kind_ is m.HoldKind.PLEDGE and (
                not lien_holder
                or not uow.conn.execute(
                    sa.select(entities.c.id).where(entities.c.id == lien_holder)
                ).first()
            ):
                raise InvalidInput(
                    "LIEN_HOLDER_REQUIRED",
                    "a pledge names an existing lien holder entity",
                    "质押须指定质权人",
                )
            if kind_ is m.HoldKind.JUDICIAL_FREEZE:
                _text(legal_basis, "legal_basis", required=True)
            if expires_at is not None:
                try:
                    parse_iso(expires_at)
                except (ValueError, TypeError):
                    raise InvalidInput(
                        "EXPIRY_INVALID",
                        "expires_at: YYYY-MM-DDTHH:MM:SS.ffffffZ",
                        "到期时间格式错误",
                    ) from None
            m.check_available(s.balance(uow.conn, row.id, uc.code), q)
            hold_id = new_id()
            uow.conn.execute(
                sa.insert(s.holds).values(
                    id=hold_id,
                    account_id=row.id,
                    unit_class=uc.code,
                    quantity=q,
                    kind=kind_.value,
                    status="ACTIVE",
                    lien_holder=lien_holder,
                    legal_basis=_text(legal_basis, "legal_basis"),
                    reason=_text(reason, "reason", max_len=500),
                    created_by=actor.username,
                    created_at=iso(uow.now),
                    expires_at=expires_at,
                )
            )
            s.add_to_holding(uow.conn, row.id, uc.code, held=q)
            journal.append(
                uow,
                "registry.hold_placed",
                actor.username,
                {
                    "hold_id": hold_id,
                    "account": row.id,
                    "unit_class": uc.code,
                    "quantity": q,
                    "kind": kind_.value,
                },
            )
            return hold_dict(
                uow.conn.execute(sa.select(s.holds).where(s.holds.c.id == hold_id)).one()
            )

        return idempotency.run(self.db, actor.username, key, "place_hold", data, body)

    def release_hold(
        self, actor: Actor, key: str, hold_id: str, *, reason: str = ""
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            hold = uow.conn.execute(sa.select(s.holds).where(s.holds.c.id == hold_id)).first()
            if hold is None:
                raise NotFound("HOLD_NOT_FOUND", f"no hold {hold_id}", "冻结记录不存在")
            account = self._locked_account(uow.conn, hold.account_id)
            allowed = (
                actor.is_operator
                or (hold.kind == m.HoldKind.PLEDGE and actor.entity_id == hold.lien_holder)
                or (
                    hold.kind == m.HoldKind.EXCHANGE_RESERVATION
                    and actor.entity_id == account.entity_id
                    and hold.created_by != EXCHANGE_USER  # an order's units: the exchange's to free
                )
            )
            if not allowed:
                raise Forbidden(
                    "RELEASE_NOT_ALLOWED",
                    "only the lien holder or the operator may release this hold",
                    "无权解除该冻结",
                )
            if hold.status != "ACTIVE":
                raise Conflict(
                    "HOLD_NOT_ACTIVE", f"hold is {hold.status}", f"冻结状态为 {hold.status}"
                )
            self._release(uow, hold, actor.username, reason)
            return hold_dict(
                uow.conn.execute(sa.select(s.holds).where(s.holds.c.id == hold_id)).one()
            )

        return idempotency.run(
            self.db, actor.username, key, "release_hold", {"hold": hold_id, "reason": reason}, body
        )

    def _release(self, uow: UnitOfWork, hold: Any, by: str, reason: str) -> None:
        uow.conn.execute(
            sa.update(s.holds)
            .where(s.holds.c.id == hold.id)
            .values(status="RELEASED", released_by=by, released_at=iso(uow.now))
        )
        s.add_to_holding(uow.conn, hold.account_id, hold.unit_class, held=-int(hold.quantity))
        journal.append(
            uow,
            "registry.hold_released",
            by,
            {
                "hold_id": hold.id,
                "account": hold.account_id,
                "unit_class": hold.unit_class,
                "quantity": int(hold.quantity),
                "reason": _text(reason, "reason", max_len=500),
            },
        )

    # ------------------------------------------------------------ for the exchange, in its transaction

    def reserve_units(
        self, uow: UnitOfWork, *, account_id: str, unit_class: str, quantity: int, reason: str
    ) -> str:
        """Reserves units for a sell order, a block deal or an auction; returns the hold id.
        The caller checked that its actor may trade this account."""
        q = tonnes(quantity)
        uc = m.parse_unit_class(unit_class)
        row = self._locked_account(uow.conn, account_id)
        if row.status != m.AccountStatus.OPEN or m.AccountType(row.type) not in m.HOLDER_TYPES:
            raise Conflict(
                "ACCOUNT_NOT_TRADABLE",
                f"account {account_id} is {row.status}: it cannot trade",
                f"账户 {account_id} 状态为 {row.status}，不能交易",
            )
        m.check_available(s.balance(uow.conn, row.id, uc.code), q)
        hold_id = new_id()
        uow.conn.execute(
            sa.insert(s.holds).values(
                id=hold_id,
                account_id=row.id,
                unit_class=uc.code,
                quantity=q,
                kind=m.HoldKind.EXCHANGE_RESERVATION.value,
                status="ACTIVE",
                lien_holder=None,
                legal_basis="",
                reason=_text(reason, "reason", max_len=500),
                created_by=EXCHANGE_USER,
                created_at=iso(uow.now),
                expires_at=None,
            )
        )
        s.add_to_holding(uow.conn, row.id, uc.code, held=q)
        journal.append(
            uow,
            "registry.hold_placed",
            EXCHANGE_USER,
            {
                "hold_id": hold_id,
                "account": row.id,
                "unit_class": uc.code,
                "quantity": q,
                "kind": m.HoldKind.EXCHANGE_RESERVATION.value,
            },
        )
        return hold_id

    def check_trading_account(self, conn: Connection, account_id: str, entity_id: str) -> None:
        """An entity's own holding or trading account, open: the only kind that may trade."""
        row = conn.execute(sa.select(s.accounts).where(s.accounts.c.id == account_id)).first()
        if row is None:
            raise _account_not_found(account_id)
        _check_tradable(row, entity_id)

    def cover_holding_account(self, conn: Connection, account_id: str, entity_id: str) -> None:
        """The entity's own holding account (登记账户), not closed, where compliance units go;
        from now on it surrenders through the compliance service only (`surrender_in`)."""
        row = conn.execute(sa.select(s.accounts).where(s.accounts.c.id == account_id)).first()
        if row is None:
            raise _account_not_found(account_id)
        if row.entity_id != entity_id or row.type != m.AccountType.HOLDING:
            raise Conflict(
                "NOT_A_HOLDING_ACCOUNT",
                f"account {account_id} is not a holding account of entity {entity_id}",
                f"账户 {account_id} 不是该主体的登记账户",
            )
        if row.status in (m.AccountStatus.CLOSURE_PENDING, m.AccountStatus.CLOSED):
            raise Conflict(
                "ACCOUNT_CLOSED",
                f"account {account_id} is {row.status}",
                f"账户 {account_id} 已关闭",
            )
        conn.execute(
            sa.update(s.accounts)
            .where(s.accounts.c.id == account_id)
            .values(surrenders_via="compliance")
        )

    def propose_allocation(
        self,
        uow: UnitOfWork,
        actor: Actor,
        *,
        to_account: str,
        unit_class: str,
        quantity: int,
        reason: str,
        batch_ref: str,
    ) -> dict[str, Any]:
        """In the caller's transaction (the compliance cycle's): an allocation from the issuance
        account, pending the checker's approval of its batch."""
        src = self.system_account(uow.conn, m.AccountType.ISSUANCE)
        op = m.operation(m.Op.ALLOCATE)
        return self._propose(
            uow,
            actor,
            op,
            src,
            to_account,
            unit_class,
            quantity,
            reason=reason,
            batch_ref=batch_ref,
        )

    def propose_movements(
        self,
        uow: UnitOfWork,
        actor: Actor,
        moves: Sequence[tuple[m.Op, str, str, int, str]],
        batch_ref: str,
    ) -> list[dict[str, Any] | DomainError]:
        """In the caller's transaction: many allocations (ALLOCATE, from the issuance account)
        and claw-backs (CLAWBACK, back to it), each `(op, holder's account, class, quantity,
        reason)`, pending the checker's approval of their batch. They are decided against one
        book in memory (`model.decide_proposal`, the checks `_propose` makes) and written with
        bulk statements; a refused one is its error and writes nothing."""
        conn, now = uow.conn, iso(uow.now)
        issuance = self.system_account(conn, m.AccountType.ISSUANCE)
        parsed: list[tuple[m.Operation, str, str, str, int, str] | DomainError] = []
        for op_code, account_id, unit_class, quantity, reason in moves:
            op = m.operation(op_code)
            if op.code not in (m.Op.ALLOCATE, m.Op.CLAWBACK):
                raise ValueError(f"not an allocation or claw-back: {op.code.value}")
            try:
                holder = m.parse_account_id(account_id)
                frm, to = (issuance, holder) if op.code is m.Op.ALLOCATE else (holder, issuance)
                uc = m.parse_unit_class(unit_class).code
                text = _text(reason, "reason", max_len=500)
                parsed.append((op, frm, to, uc, tonnes(quantity), text))
            except DomainError as err:
                parsed.append(err)
        book, initial = self._load_book(
            conn, [p[1:5] for p in parsed if not isinstance(p, DomainError)]
        )
        loaded = dict(book.balances)
        expires_at = iso(uow.now + timedelta(minutes=self.db.settings.approval_expiry_minutes))
        out: list[dict[str, Any] | DomainError] = []
        transfers: list[dict[str, Any]] = []
        entries: list[tuple[str, str, dict[str, Any]]] = []
        for p in parsed:
            if isinstance(p, DomainError):
                out.append(p)
                continue
            op, frm, to, uc, q, reason = p
            try:
                m.decide_proposal(book, op, actor.role.value, actor.entity_id, frm, to, uc, q)
            except DomainError as err:
                out.append(err)
                continue
            row = _transfer_row(
                op.code,
                frm,
                to,
                uc,
                q,
                actor.username,
                now,
                expires_at=expires_at,
                reason=reason,
                batch_ref=batch_ref,
            )
            transfers.append(row)
            entries.append(_proposed_entry(row, actor.username))
            out.append(transfer_dict(SimpleNamespace(**row)))
        self._write_book(conn, book, loaded, initial)
        if transfers:
            insert_many(conn, s.transfers, transfers)
        journal.append_many(uow, entries)
        if self.db.settings.check_invariants:
            problems = ledger_problems(conn)
            assert not problems, problems
        return out

    def surrender_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        *,
        from_account: str,
        unit_class: str,
        quantity: int,
        compliance_year: int,
    ) -> dict[str, Any]:
        """A surrender in the caller's transaction, so the compliance rules checked there (the
        CCER limit, say) still hold when it commits."""
        to = self.system_account(uow.conn, m.AccountType.SURRENDER)
        op = m.operation(m.Op.SURRENDER)
        return self._propose(
            uow, actor, op, from_account, to, unit_class, quantity, compliance_year=compliance_year
        )

    def transfer_status(self, conn: Connection, transfer_id: str) -> str | None:
        """PENDING, COMPLETED, VOIDED or EXPIRED; None for an unknown id."""
        return self.transfer_statuses(conn, [transfer_id]).get(transfer_id)

    def transfer_statuses(self, conn: Connection, transfer_ids: Sequence[str]) -> dict[str, str]:
        """Each known transfer's status, in one query per 500 ids."""
        t = s.transfers.c
        out: dict[str, str] = {}
        ids = list(transfer_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for r in conn.execute(sa.select(t.id, t.status).where(t.id.in_(chunk))):
                out[r.id] = str(r.status)
        return out

    def surrendered(
        self, conn: Connection, account_ids: Sequence[str], compliance_year: int
    ) -> dict[str, int]:
        """Units surrendered for a year from these accounts, per class, net of reversals."""
        rows = fetch(conn, _SURRENDERED, year=compliance_year, accounts=list(account_ids))
        return {r.unit_class: int(r.quantity) for r in rows}

    def net_sold(
        self, conn: Connection, entity_id: str, unit_classes: Sequence[str], before: str
    ) -> int:
        """Units of these classes an entity sold before `before` (UTC text): what its accounts
        delivered to other entities by transfer or trade, less what they received that way.
        Reversed transfers, court orders, allocations and moves between its own accounts count
        for nothing."""
        t, sender, receiver = s.transfers, s.accounts.alias("sender"), s.accounts.alias("receiver")
        out = sa.and_(sender.c.entity_id == entity_id, receiver.c.entity_id != entity_id)
        into = sa.and_(receiver.c.entity_id == entity_id, sender.c.entity_id != entity_id)
        signed = sa.case((out, t.c.quantity), (into, -t.c.quantity), else_=0)
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(signed), 0))
            .select_from(
                t.join(sender, sender.c.id == t.c.from_account).join(
                    receiver, receiver.c.id == t.c.to_account
                )
            )
            .where(
                t.c.status == "COMPLETED",
                t.c.op.in_([m.Op.TRANSFER.value, m.Op.TRADE_DELIVERY.value]),
                t.c.unit_class.in_(list(unit_classes)),
                t.c.created_at < before,
                sa.or_(out, into),
                _NOT_REVERSED,
            )
        ).scalar_one()
        return int(total)

    def unit_class_code(self, conn: Connection, code: str) -> str:
        """A unit class that exists in the registry."""
        uc = m.parse_unit_class(code)
        if not conn.execute(
            sa.select(s.unit_classes.c.code).where(s.unit_classes.c.code == uc.code)
        ).first():
            raise NotFound(
                "UNIT_CLASS_NOT_FOUND", f"no units of class {uc.code} exist", "该单位类别不存在"
            )
        return uc.code

    def is_market_suspended(self, conn: Connection) -> bool:
        return s.flag(conn, MARKET_SUSPENDED) == "1"

    def release_reserved(
        self, uow: UnitOfWork, hold_id: str, quantity: int, by: str, reason: str
    ) -> int:
        """Frees up to `quantity` of an exchange reservation (what an order no longer needs);
        a hold someone else already released frees nothing. Returns what it freed."""
        hold = uow.conn.execute(sa.select(s.holds).where(s.holds.c.id == hold_id)).first()
        if hold is None or hold.status != "ACTIVE" or quantity <= 0:
            return 0
        take = min(quantity, int(hold.quantity))
        left = int(hold.quantity) - take
        uow.conn.execute(
            sa.update(s.holds)
            .where(s.holds.c.id == hold_id)
            .values(
                quantity=left or int(hold.quantity),
                status="ACTIVE" if left else "RELEASED",
                released_by=None if left else by,
                released_at=None if left else iso(uow.now),
            )
        )
        s.add_to_holding(uow.conn, hold.account_id, hold.unit_class, held=-take)
        journal.append(
            uow,
            "registry.hold_released",
            by,
            {
                "hold_id": hold_id,
                "account": hold.account_id,
                "unit_class": hold.unit_class,
                "quantity": take,
                "left": left,
                "reason": _text(reason, "reason", max_len=500),
            },
        )
        return take

    def reservation_batch(
        self, uow: UnitOfWork, entries: list[tuple[str, str, dict[str, Any]]]
    ) -> ReservationBatch:
        """Exchange reservations in memory, written in bulk (order entry, the day's close)."""
        return ReservationBatch(uow, entries)

    def delivery_batch(
        self, uow: UnitOfWork, legs: Sequence[tuple[str, str, int]], by: str
    ) -> DeliveryBatch:
        """Settlement's units legs in bulk: load what (hold, receiver, quantity) legs touch."""
        return DeliveryBatch(self, uow, legs, by)

    def release_expired_holds(self) -> int:
        with self.db.uow() as uow:
            journal.lock_head(uow)
            rows = uow.conn.execute(
                sa.select(s.holds).where(
                    s.holds.c.status == "ACTIVE",
                    s.holds.c.expires_at.is_not(None),
                    s.holds.c.expires_at <= iso(uow.now),
                )
            ).all()
            for hold in rows:
                self._release(uow, hold, SYSTEM.username, "expired")
            uow.commit()
        return len(rows)

    # ------------------------------------------------------------ security controls

    def set_trusted(
        self, actor: Actor, key: str, account_id: str, trusted_id: str, *, trusted: bool
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            rows = {i: self._locked_account(uow.conn, i) for i in (account_id, trusted_id)}
            if not actor.is_operator and rows[account_id].entity_id != actor.entity_id:
                raise Forbidden(
                    "NOT_ACCOUNT_HOLDER",
                    "you may act only on your own accounts",
                    "只能操作本主体账户",
                )
            if account_id == trusted_id:
                raise InvalidInput(
                    "SAME_ACCOUNT", "an account need not trust itself", "不能信任自身"
                )
            t = s.trusted_accounts
            exists = uow.conn.execute(
                sa.select(t.c.account_id).where(
                    t.c.account_id == account_id, t.c.trusted_id == trusted_id
                )
            ).first()
            if trusted and not exists:
                uow.conn.execute(
                    sa.insert(t).values(
                        account_id=account_id,
                        trusted_id=trusted_id,
                        added_by=actor.username,
                        added_at=iso(uow.now),
                    )
                )
            elif not trusted and exists:
                uow.conn.execute(
                    sa.delete(t).where(t.c.account_id == account_id, t.c.trusted_id == trusted_id)
                )
            journal.append(
                uow,
                "registry.trusted_list",
                actor.username,
                {"account": account_id, "trusted": trusted_id, "on": trusted},
            )
            return {"account_id": account_id, "trusted_id": trusted_id, "trusted": trusted}

        data = {"account": account_id, "trusted": trusted_id, "on": trusted}
        return idempotency.run(self.db, actor.username, key, "set_trusted", data, body)

    def trusted_list(self, actor: Actor, account_id: str) -> list[dict[str, Any]]:
        with self.db.read() as uow:
            self._readable(uow.conn, actor, account_id)
            t = s.trusted_accounts
            rows = uow.conn.execute(
                sa.select(t).where(t.c.account_id == account_id).order_by(t.c.trusted_id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def flag_serials(
        self, actor: Actor, key: str, *, serial: str, reason: str, tainted: bool = True
    ) -> dict[str, Any]:
        """Mark a serial range tainted (stolen or disputed) so it cannot move, or clear the flag."""

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            b = m.parse_serial(serial, self.registry)
            tr = s.tainted_ranges
            if tainted:
                flag_id = new_id()
                uow.conn.execute(
                    sa.insert(tr).values(
                        id=flag_id,
                        unit_class=b.unit_class,
                        origin=b.origin,
                        batch=b.batch,
                        start=b.start,
                        end=b.end,
                        reason=_text(reason, "reason", required=True, max_len=500),
                        flagged_by=actor.username,
                        flagged_at=iso(uow.now),
                    )
                )
            else:
                res = uow.conn.execute(
                    sa.update(tr)
                    .where(
                        tr.c.unit_class == b.unit_class,
                        tr.c.origin == b.origin,
                        tr.c.batch == b.batch,
                        tr.c.start == b.start,
                        tr.c.end == b.end,
                        tr.c.cleared_at.is_(None),
                    )
                    .values(cleared_by=actor.username, cleared_at=iso(uow.now))
                )
                if res.rowcount == 0:
                    raise NotFound(
                        "FLAG_NOT_FOUND", "no active flag on exactly this range", "该区间无可疑标记"
                    )
            journal.append(
                uow,
                "registry.serials_flagged",
                actor.username,
                {"unit_class": b.unit_class, "range": list(b.key()), "tainted": tainted},
            )
            return {"serial": b.serial(self.registry), "tainted": tainted}

        data = {"serial": serial, "reason": reason, "tainted": tainted}
        return idempotency.run(self.db, actor.username, key, "flag_serials", data, body)

    def set_market_suspended(
        self, actor: Actor, key: str, *, suspended: bool, reason: str
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            s.set_flag(uow.conn, MARKET_SUSPENDED, "1" if suspended else "0")
            journal.append(
                uow,
                "registry.market_suspension",
                actor.username,
                {
                    "suspended": suspended,
                    "reason": _text(reason, "reason", required=True, max_len=500),
                },
            )
            return {"market_suspended": suspended}

        data = {"suspended": suspended, "reason": reason}
        return idempotency.run(self.db, actor.username, key, "market_suspend", data, body)

    def market_suspended(self) -> bool:
        with self.db.read() as uow:
            return s.flag(uow.conn, MARKET_SUSPENDED) == "1"

    # ------------------------------------------------------------ queries

    def _readable(self, conn: Connection, actor: Actor, account_id: str) -> Any:
        m.parse_account_id(account_id)
        row = conn.execute(sa.select(s.accounts).where(s.accounts.c.id == account_id)).first()
        if row is None:
            raise _account_not_found(account_id)
        if not (
            actor.is_operator or (actor.entity_id is not None and row.entity_id == actor.entity_id)
        ):
            raise Forbidden(
                "NOT_ACCOUNT_HOLDER", "you may see only your own accounts", "只能查看本主体账户"
            )
        return row

    def account(self, actor: Actor, account_id: str) -> dict[str, Any]:
        with self.db.read() as uow:
            row = self._readable(uow.conn, actor, account_id)
            out = account_dict(row)
            out["holdings"] = self._holdings(uow.conn, account_id)
            ent = uow.conn.execute(
                sa.select(entities.c.name).where(entities.c.id == row.entity_id)
            ).scalar()
            out["entity_name"] = ent
        return out

    def _holdings(self, conn: Connection, account_id: str) -> list[dict[str, Any]]:
        h = s.holdings
        rows = conn.execute(
            sa.select(h).where(h.c.account_id == account_id).order_by(h.c.unit_class)
        ).all()
        return [
            {
                "unit_class": r.unit_class,
                "posted": int(r.posted),
                "pending": int(r.pending),
                "held": int(r.held),
                "available": int(r.posted - r.pending - r.held),
            }
            for r in rows
        ]

    def list_accounts(
        self,
        actor: Actor,
        *,
        after: str | None = None,
        limit: int = 50,
        status: str | None = None,
        type: str | None = None,
    ) -> list[dict[str, Any]]:
        a = s.accounts
        q = (
            sa.select(a, entities.c.name.label("entity_name"))
            .join(entities, entities.c.id == a.c.entity_id)
            .order_by(a.c.id)
            .limit(min(max(limit, 1), self.db.settings.max_page_size))
        )
        if not actor.is_operator:
            if actor.entity_id is None:
                raise Forbidden(
                    "NOT_ACCOUNT_HOLDER", "only holders and operators see accounts", "无权查看账户"
                )
            q = q.where(a.c.entity_id == actor.entity_id)
        if after:
            q = q.where(a.c.id > after)
        if status:
            q = q.where(a.c.status == status)
        if type:
            q = q.where(a.c.type == type)
        with self.db.read() as uow:
            rows = uow.conn.execute(q).all()
        return [dict(account_dict(r), entity_name=r.entity_name) for r in rows]

    def blocks(
        self, actor: Actor, account_id: str, unit_class: str | None = None
    ) -> list[dict[str, Any]]:
        with self.db.read() as uow:
            self._readable(uow.conn, actor, account_id)
            b = s.unit_blocks
            q = sa.select(b).where(b.c.account_id == account_id)
            if unit_class:
                q = q.where(b.c.unit_class == unit_class)
            rows = uow.conn.execute(
                q.order_by(b.c.unit_class, b.c.origin, b.c.batch, b.c.start)
            ).all()
            taints = {uc: s.active_taints(uow.conn, uc) for uc in {r.unit_class for r in rows}}
        out = []
        for r in rows:
            blk = m.Block(r.unit_class, r.origin, r.batch, r.start, r.end)
            out.append(
                {
                    "serial": blk.serial(self.registry),
                    "unit_class": r.unit_class,
                    "origin": r.origin,
                    "batch": r.batch,
                    "start": int(r.start),
                    "end": int(r.end),
                    "size": blk.size,
                    "tainted": any(blk.overlaps(t) for t in taints[r.unit_class]),
                }
            )
        return out

    def transfers(
        self,
        actor: Actor,
        *,
        account_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 50,
        op: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `after` is the last id of the previous page (ids are time-ordered)."""
        t = s.transfers
        q = (
            sa.select(t)
            .order_by(t.c.id.desc())
            .limit(min(max(limit, 1), self.db.settings.max_page_size))
        )
        with self.db.read() as uow:
            if account_id:
                self._readable(uow.conn, actor, account_id)
                q = q.where(sa.or_(t.c.from_account == account_id, t.c.to_account == account_id))
            elif not actor.is_operator:
                if actor.entity_id is None:
                    raise Forbidden(
                        "NOT_ACCOUNT_HOLDER",
                        "only holders and operators see transfers",
                        "无权查看业务",
                    )
                own = sa.select(s.accounts.c.id).where(s.accounts.c.entity_id == actor.entity_id)
                q = q.where(sa.or_(t.c.from_account.in_(own), t.c.to_account.in_(own)))
            if status:
                q = q.where(t.c.status == status)
            if op:
                q = q.where(t.c.op == op)
            if after:
                q = q.where(t.c.id < after)
            rows = uow.conn.execute(q).all()
        return [transfer_dict(r) for r in rows]

    def transfer_detail(self, actor: Actor, transfer_id: str) -> dict[str, Any]:
        with self.db.read() as uow:
            row = uow.conn.execute(
                sa.select(s.transfers).where(s.transfers.c.id == transfer_id)
            ).first()
            if row is None:
                raise NotFound("TRANSFER_NOT_FOUND", f"no transfer {transfer_id}", "业务不存在")
            if not actor.is_operator:
                owners = set(
                    uow.conn.execute(
                        sa.select(s.accounts.c.entity_id).where(
                            s.accounts.c.id.in_([row.from_account, row.to_account])
                        )
                    ).scalars()
                )
                if actor.entity_id not in owners:
                    raise Forbidden(
                        "NOT_ACCOUNT_HOLDER",
                        "you may see only your own transfers",
                        "只能查看本主体业务",
                    )
            out = transfer_dict(row)
            out["blocks"] = [
                m.Block(b.unit_class, b.origin, b.batch, b.start, b.end).serial(self.registry)
                for b in uow.conn.execute(
                    sa.select(s.transfer_blocks)
                    .where(s.transfer_blocks.c.transfer_id == transfer_id)
                    .order_by(s.transfer_blocks.c.id)
                )
            ]
        return out

    def approval_queue(self, actor: Actor) -> list[dict[str, Any]]:
        require_role(actor, Role.OPERATOR)
        t = s.transfers
        with self.db.read() as uow:
            rows = uow.conn.execute(
                sa.select(t)
                .where(
                    t.c.status == "PENDING",
                    t.c.approved_by.is_(None),
                    t.c.op.in_([o.code.value for o in m.OPERATIONS.values() if o.needs_approval]),
                )
                .order_by(t.c.id)
            ).all()
        return [transfer_dict(r) for r in rows]

    def holds_list(
        self, actor: Actor, *, account_id: str | None = None, status: str | None = "ACTIVE"
    ) -> list[dict[str, Any]]:
        h = s.holds
        q = sa.select(h).order_by(h.c.created_at.desc())
        with self.db.read() as uow:
            if account_id:
                self._readable(uow.conn, actor, account_id)
                q = q.where(h.c.account_id == account_id)
            elif not actor.is_operator:
                if actor.entity_id is None:
                    raise Forbidden(
                        "NOT_ACCOUNT_HOLDER",
                        "only holders, lien holders and operators see holds",
                        "无权查看冻结记录",
                    )
                own = sa.select(s.accounts.c.id).where(s.accounts.c.entity_id == actor.entity_id)
                q = q.where(sa.or_(h.c.account_id.in_(own), h.c.lien_holder == actor.entity_id))
            if status:
                q = q.where(h.c.status == status)
            rows = uow.conn.execute(q).all()
        return [hold_dict(r) for r in rows]

    def serial(self, actor: Actor, serial: str) -> dict[str, Any]:
        """Where serial X is now, and every completed transfer that moved it."""
        b = m.parse_serial(serial, self.registry)
        ub, tb, t = s.unit_blocks, s.transfer_blocks, s.transfers
        with self.db.read() as uow:
            holders = uow.conn.execute(
                sa.select(ub, s.accounts.c.entity_id)
                .join(s.accounts, s.accounts.c.id == ub.c.account_id)
                .where(
                    ub.c.unit_class == b.unit_class,
                    ub.c.origin == b.origin,
                    ub.c.batch == b.batch,
                    ub.c.start <= b.end,
                    ub.c.end >= b.start,
                )
                .order_by(ub.c.start)
            ).all()
            if not holders:
                raise NotFound(
                    "SERIAL_NOT_FOUND", f"no units with serial {serial}", "该序列号不存在"
                )
            visible = actor.is_operator or all(h.entity_id == actor.entity_id for h in holders)
            if not visible:
                raise Forbidden(
                    "NOT_ACCOUNT_HOLDER",
                    "only the holder or the operator may trace these serials",
                    "无权查询该序列号",
                )
            history = uow.conn.execute(
                sa.select(t, tb.c.start.label("b_start"), tb.c.end.label("b_end"))
                .join(t, t.c.id == tb.c.transfer_id)
                .where(
                    tb.c.unit_class == b.unit_class,
                    tb.c.origin == b.origin,
                    tb.c.batch == b.batch,
                    tb.c.start <= b.end,
                    tb.c.end >= b.start,
                )
                .order_by(t.c.journal_seq)
            ).all()
            taints = [x for x in s.active_taints(uow.conn, b.unit_class) if x.overlaps(b)]
        return {
            "query": b.serial(self.registry),
            "blocks": [
                {
                    "account_id": h.account_id,
                    "serial": m.Block(h.unit_class, h.origin, h.batch, h.start, h.end).serial(
                        self.registry
                    ),
                    "start": int(h.start),
                    "end": int(h.end),
                }
                for h in holders
            ],
            "tainted": bool(taints),
            "history": [
                dict(transfer_dict(r), range=[int(r.b_start), int(r.b_end)]) for r in history
            ],
        }

    def totals(self) -> list[dict[str, Any]]:
        """Public registry totals per unit class: issued, in holder accounts, surrendered, cancelled."""
        h, a = s.holdings, s.accounts
        with self.db.read() as uow:
            rows = uow.conn.execute(
                sa.select(h.c.unit_class, a.c.type, sa.func.sum(h.c.posted))
                .join(a, a.c.id == h.c.account_id)
                .group_by(h.c.unit_class, a.c.type)
            ).all()
            issued = dict(
                uow.conn.execute(
                    sa.select(
                        s.issuance_batches.c.unit_class, sa.func.sum(s.issuance_batches.c.quantity)
                    ).group_by(s.issuance_batches.c.unit_class)
                ).all()
            )
        out: dict[str, dict[str, Any]] = {}
        for uc, type_, total in rows:
            d = out.setdefault(
                uc,
                {
                    "unit_class": uc,
                    "issued": int(issued.get(uc, 0)),
                    "unallocated": 0,
                    "held": 0,
                    "surrendered": 0,
                    "cancelled": 0,
                },
            )
            key = {
                "ISSUANCE": "unallocated",
                "SURRENDER": "surrendered",
                "CANCELLATION": "cancelled",
            }.get(type_, "held")
            d[key] += int(total)
        return [out[k] for k in sorted(out)]


# ------------------------------------------------------------ invariants (DESIGN §10: 1–3)


def _check_tradable(row: Any, entity_id: str) -> None:
    """An entity's own holding or trading account, open: the only kind that may trade."""
    if row.entity_id != entity_id or m.AccountType(row.type) not in (
        m.AccountType.HOLDING,
        m.AccountType.TRADING,
    ):
        raise Conflict(
            "ACCOUNT_NOT_TRADABLE",
            "a member trades from a holding or trading account of its own",
            "会员只能使用本主体的登记或交易账户",
        )
    if row.status != m.AccountStatus.OPEN:
        raise Conflict(
            "ACCOUNT_NOT_TRADABLE",
            f"account {row.id} is {row.status}: it cannot trade",
            f"账户 {row.id} 状态为 {row.status}，不能交易",
        )


_UNIT_CLASS = sa.select(s.unit_classes.c.code).where(s.unit_classes.c.code == sa.bindparam("code"))
_TRANSFER_BY_ID = sa.select(s.transfers).where(s.transfers.c.id == sa.bindparam("tid"))
_DELETE_BLOCKS = sa.delete(s.unit_blocks).where(
    s.unit_blocks.c.id.in_(sa.bindparam("ids", expanding=True))
)
# the serials pending reversals out of an account will take back
_RESERVED_BY_REVERSALS = sa.select(s.transfer_blocks).where(
    s.transfer_blocks.c.transfer_id.in_(
        sa.select(s.transfers.c.reverses).where(
            s.transfers.c.op == m.Op.REVERSAL.value,
            s.transfers.c.status == "PENDING",
            s.transfers.c.from_account == sa.bindparam("a"),
            s.transfers.c.unit_class == sa.bindparam("c"),
        )
    )
)
_APPROVED_BY = (
    sa.update(s.transfers)
    .where(s.transfers.c.id == sa.bindparam("tid"))
    .values(approved_by=sa.bindparam("by"))
)
_POSTED = (
    sa.update(s.transfers)
    .where(s.transfers.c.id == sa.bindparam("tid"))
    .values(
        approved_by=sa.bindparam("by"),
        status=sa.bindparam("st"),
        completed_at=sa.bindparam("at"),
        journal_seq=sa.bindparam("seq"),
    )
)
_HOLD_CHANGES = (
    sa.update(s.holds)
    .where(s.holds.c.id == sa.bindparam("hid"))
    .values(
        quantity=sa.bindparam("q"),
        status=sa.bindparam("st"),
        released_by=sa.bindparam("by"),
        released_at=sa.bindparam("at"),
    )
)
_ACCOUNTS_BY_ID = sa.select(s.accounts).where(
    s.accounts.c.id.in_(sa.bindparam("ids", expanding=True))
)
_BALANCES_OF = sa.select(
    s.holdings.c.account_id,
    s.holdings.c.unit_class,
    s.holdings.c.posted,
    s.holdings.c.pending,
    s.holdings.c.held,
).where(s.holdings.c.account_id.in_(sa.bindparam("ids", expanding=True)))
_HOLDS_BY_ID = sa.select(s.holds).where(s.holds.c.id.in_(sa.bindparam("ids", expanding=True)))
_ADD_HELD = (
    sa.update(s.holdings)
    .where(
        s.holdings.c.account_id == sa.bindparam("a"),
        s.holdings.c.unit_class == sa.bindparam("c"),
    )
    .values(held=s.holdings.c.held + sa.bindparam("d"))
)


def _write_hold_changes(
    conn: Connection,
    holds: dict[str, list[Any]],
    loaded: dict[str, tuple[Any, ...]],
    by: str,
    now: str,
) -> None:
    """The quantity and status of every loaded hold a batch changed (`[account, class,
    quantity, status, …]` per hold id), in one statement; one that ended records who ended
    it and when, as a single release does."""
    changed = []
    for i, v in holds.items():
        if i in loaded and tuple(v) != loaded[i]:
            released_by, released_at = _ended(v[3], by, now)
            changed.append({"hid": i, "q": v[2], "st": v[3], "by": released_by, "at": released_at})
    if changed:
        execute_many(conn, _HOLD_CHANGES, changed)


def _ended(status: str, by: str, now: str) -> tuple[str | None, str | None]:
    """A hold's `released_by` and `released_at` for its status: set once it is not active."""
    return (None, None) if status == "ACTIVE" else (by, now)


class ReservationBatch:
    """Units reserved for orders and freed again, decided in memory and written in bulk.

    Journal entries go into the caller's ordered list (`entries`), so the exchange appends them
    with its own in the order things happened. `check_*` refuse without changing anything.
    """

    def __init__(self, uow: UnitOfWork, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.uow, self.entries = uow, entries
        self.at = iso(uow.now)
        self.accounts: dict[str, Any] = {}
        self.balances: dict[tuple[str, str], list[int]] = {}  # posted, pending, held
        self.held_change: dict[tuple[str, str], int] = {}
        self.holds: dict[str, list[Any]] = {}  # id → [account, class, quantity, status]
        self.loaded_holds: dict[str, tuple[Any, ...]] = {}
        self.new_holds: dict[str, dict[str, Any]] = {}
        self.known_holds: dict[str, list[Any]] = {}  # active, as stored: from earlier batches

    def preload(self, account_ids: Sequence[str]) -> None:
        """These accounts and all their balances, in two statements."""
        ids = sorted(set(account_ids) - set(self.accounts))
        if not ids:
            return
        for row in fetch(self.uow.conn, _ACCOUNTS_BY_ID, ids=ids):
            self.accounts[row.id] = row
        for r in fetch(self.uow.conn, _BALANCES_OF, ids=ids):
            self.balances.setdefault((r.account_id, r.unit_class), [r.posted, r.pending, r.held])

    def _account(self, account_id: str) -> Any:
        if account_id not in self.accounts:
            row = self.uow.conn.execute(
                sa.select(s.accounts).where(s.accounts.c.id == account_id)
            ).first()
            if row is None:
                raise _account_not_found(account_id)
            self.accounts[account_id] = row
        return self.accounts[account_id]

    def _balance(self, account_id: str, unit_class: str) -> list[int]:
        key = (account_id, unit_class)
        if key not in self.balances:
            b = s.balance(self.uow.conn, account_id, unit_class)
            self.balances[key] = [b.posted, b.pending, b.held]
        return self.balances[key]

    def check_tradable(self, account_id: str, entity_id: str) -> None:
        """An entity's own holding or trading account, open: the only kind that may trade."""
        row = self._account(account_id)
        _check_tradable(row, entity_id)

    def check_reserve(self, account_id: str, entity_id: str, unit_class: str, qty: int) -> None:
        self.check_tradable(account_id, entity_id)
        posted, pending, held = self._balance(account_id, unit_class)
        m.check_available(m.Balance(posted, pending, held), qty)

    def reserve(
        self, account_id: str, entity_id: str, unit_class: str, qty: int, reason: str
    ) -> str:
        self.check_reserve(account_id, entity_id, unit_class, qty)
        key = (account_id, unit_class)
        self.balances[key][2] += qty
        self.held_change[key] = self.held_change.get(key, 0) + qty
        hold_id = new_id()
        self.holds[hold_id] = [account_id, unit_class, qty, "ACTIVE"]
        self.new_holds[hold_id] = {
            "id": hold_id,
            "account_id": account_id,
            "unit_class": unit_class,
            "kind": m.HoldKind.EXCHANGE_RESERVATION.value,
            "lien_holder": None,
            "legal_basis": "",
            "reason": reason[:500],
            "created_by": EXCHANGE_USER,
            "created_at": self.at,
            "expires_at": None,
        }
        self.entries.append(
            (
                "registry.hold_placed",
                EXCHANGE_USER,
                {
                    "hold_id": hold_id,
                    "account": account_id,
                    "unit_class": unit_class,
                    "quantity": qty,
                    "kind": m.HoldKind.EXCHANGE_RESERVATION.value,
                },
            )
        )
        return hold_id

    def preload_holds(self, hold_ids: Sequence[str]) -> None:
        """Loads many holds in a few statements (the day's close frees every open order's)."""
        ids = []
        for h in sorted({h for h in hold_ids if h not in self.holds}):
            known = self.known_holds.pop(h, None)
            if known is None:
                ids.append(h)
            else:
                self.holds[h], self.loaded_holds[h] = known, tuple(known)
        for n in range(0, len(ids), 500):
            for row in fetch(self.uow.conn, _HOLDS_BY_ID, ids=ids[n : n + 500]):
                self.holds[row.id] = [row.account_id, row.unit_class, int(row.quantity), row.status]
                self.loaded_holds[row.id] = tuple(self.holds[row.id])

    def release(self, hold_id: str, qty: int, reason: str) -> int:
        """Frees up to `qty` of a reservation; one someone else already released frees nothing."""
        if hold_id not in self.holds:
            self.preload_holds([hold_id])
            if hold_id not in self.holds:
                return 0
        hold = self.holds[hold_id]
        if hold[3] != "ACTIVE" or qty <= 0:
            return 0
        take = min(qty, int(hold[2]))
        left = int(hold[2]) - take
        hold[2], hold[3] = (left, "ACTIVE") if left else (hold[2], "RELEASED")
        key = (hold[0], hold[1])
        self._balance(*key)[2] -= take
        self.held_change[key] = self.held_change.get(key, 0) - take
        self.entries.append(
            (
                "registry.hold_released",
                EXCHANGE_USER,
                {
                    "hold_id": hold_id,
                    "account": hold[0],
                    "unit_class": hold[1],
                    "quantity": take,
                    "left": left,
                    "reason": reason[:500],
                },
            )
        )
        return take

    def write(self) -> None:
        conn, now = self.uow.conn, self.at
        if self.new_holds:
            rows = []
            for i, row in self.new_holds.items():
                _, _, quantity, status = self.holds[i]
                released_by, released_at = _ended(status, EXCHANGE_USER, now)
                rows.append(
                    dict(
                        row,
                        quantity=quantity,
                        status=status,
                        released_by=released_by,
                        released_at=released_at,
                    )
                )
            insert_many(conn, s.holds, rows)
        _write_hold_changes(conn, self.holds, self.loaded_holds, EXCHANGE_USER, now)
        deltas = [{"a": a, "c": c, "d": d} for (a, c), d in self.held_change.items() if d]
        if deltas:
            execute_many(conn, _ADD_HELD, deltas)
        self.new_holds.clear()
        self.held_change.clear()
        self.loaded_holds = {i: tuple(v) for i, v in self.holds.items()}

    def resume(self, uow: UnitOfWork, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Goes on in a new transaction with what it knows after `write`: right only when no
        other connection wrote in between (the exchange's writer checks `commit_stamp`). Holds
        no longer active are let go; asked for again, they load as any other."""
        if self.new_holds or self.held_change:
            raise RuntimeError("a reservation batch resumes only after its write")
        self.uow, self.entries, self.at = uow, entries, iso(uow.now)
        for i, hold in self.holds.items():
            if hold[3] == "ACTIVE":
                self.known_holds[i] = hold
            else:
                self.known_holds.pop(i, None)
        self.holds, self.loaded_holds = {}, {}


class DeliveryBatch:
    """Exchange deliveries decided in memory (`model.decide_delivery`) and written in bulk.

    Each `deliver` either moves its units (in the batch's memory) or raises and changes nothing,
    so the settlement run can pair it with the cash leg, both or neither; `write` stores the net
    change, the transfers, their serial ranges and journal entries in the caller's transaction.
    """

    def __init__(
        self,
        registry: RegistryService,
        uow: UnitOfWork,
        legs: Sequence[tuple[str, str, int]],
        by: str,
    ) -> None:
        self.registry, self.uow, self.by = registry, uow, by
        conn = uow.conn
        ids = sorted({h for h, _, _ in legs})
        self.holds: dict[str, list[Any]] = {}
        for n in range(0, len(ids), 500):
            for r in conn.execute(sa.select(s.holds).where(s.holds.c.id.in_(ids[n : n + 500]))):
                self.holds[r.id] = [r.account_id, r.unit_class, int(r.quantity), r.status, r.kind]
        self.loaded_holds = {k: tuple(v) for k, v in self.holds.items()}
        moves = [
            (self.holds[h][0], to, self.holds[h][1], q) for h, to, q in legs if h in self.holds
        ]
        self.book, self.initial = registry._load_book(conn, moves)
        self.loaded = dict(self.book.balances)
        self.transfers: list[dict[str, Any]] = []
        self.blocks: list[dict[str, Any]] = []
        self.entries: list[tuple[str, str, dict[str, Any]]] = []

    def deliver(self, hold_id: str, to_account: str, quantity: int, reason: str) -> str:
        hold = self.holds.get(hold_id)
        if hold is None:
            raise NotFound("HOLD_NOT_FOUND", f"no hold {hold_id}", "冻结记录不存在")
        account, uc, left, status, kind = hold
        if status != "ACTIVE" or kind != m.HoldKind.EXCHANGE_RESERVATION:
            raise Conflict(
                "HOLD_NOT_APPLICABLE",
                f"the exchange reservation is {status}",
                f"交易冻结状态为 {status}",
            )
        if quantity > left:
            raise Conflict("HOLD_TOO_SMALL", f"the hold covers {left} t", f"冻结数量仅 {left} 吨")
        moved = m.decide_delivery(self.book, account, to_account, uc, quantity)
        hold[2], hold[3] = (left - quantity, "ACTIVE") if left > quantity else (left, "CONSUMED")
        now = iso(self.uow.now)
        row = _transfer_row(
            m.Op.TRADE_DELIVERY,
            account,
            to_account,
            uc,
            quantity,
            self.by,
            now,
            status="COMPLETED",
            completed_at=now,
            reason=_text(reason, "reason", max_len=500),
            hold_id=hold_id,
        )
        self.transfers.append(row)
        self.entries.append(
            _completed_entry(
                SimpleNamespace(**row), self.by, moved, direct=True, consumed_hold_t=quantity
            )
        )
        self.blocks.extend(_block_rows(row["id"], moved))
        return str(row["id"])

    def release(self, hold_id: str, quantity: int, reason: str) -> int:
        """Frees what a failed trade had reserved (if the hold is still there)."""
        hold = self.holds.get(hold_id)
        if hold is None or hold[3] != "ACTIVE" or quantity <= 0:
            return 0
        account, uc, left = hold[0], hold[1], int(hold[2])
        take = min(quantity, left)
        hold[2], hold[3] = (left - take, "ACTIVE") if left > take else (left, "RELEASED")
        key = (account, uc)
        bal = self.book.balances[key]
        self.book.balances[key] = m.Balance(bal.posted, bal.pending, bal.held - take)
        self.entries.append(
            (
                "registry.hold_released",
                self.by,
                {
                    "hold_id": hold_id,
                    "account": account,
                    "unit_class": uc,
                    "quantity": take,
                    "left": left - take if left > take else 0,
                    "reason": _text(reason, "reason", max_len=500),
                },
            )
        )
        return take

    def write(self) -> None:
        conn = self.uow.conn
        written = journal.append_many(self.uow, self.entries) if self.entries else []
        seqs = iter(
            e.seq
            for e, (type_, _, _) in zip(written, self.entries, strict=True)
            if type_ == "registry.transfer_completed"
        )
        for row in self.transfers:
            row["journal_seq"] = next(seqs)
        self.registry._write_book(conn, self.book, self.loaded, self.initial)
        if self.transfers:
            insert_many(conn, s.transfers, self.transfers)
        if self.blocks:
            insert_many(conn, s.transfer_blocks, self.blocks)
        _write_hold_changes(conn, self.holds, self.loaded_holds, self.by, iso(self.uow.now))


def ledger_problems(conn: Connection) -> list[str]:
    """Invariants 1–3 from the stored tables; an empty list means they all hold."""
    problems: list[str] = []
    h, b = s.holdings, s.unit_blocks
    issued = dict(
        conn.execute(
            sa.select(
                s.issuance_batches.c.unit_class, sa.func.sum(s.issuance_batches.c.quantity)
            ).group_by(s.issuance_batches.c.unit_class)
        ).all()
    )
    posted = dict(
        conn.execute(
            sa.select(h.c.unit_class, sa.func.sum(h.c.posted)).group_by(h.c.unit_class)
        ).all()
    )
    for uc in sorted(set(issued) | set(posted)):
        if int(issued.get(uc, 0)) != int(posted.get(uc, 0)):
            problems.append(
                f"invariant 1: {uc} issued {issued.get(uc, 0)} ≠ held+surrendered+cancelled {posted.get(uc, 0)}"
            )
    for r in conn.execute(
        sa.select(h).where(
            sa.or_(
                h.c.posted < 0, h.c.pending < 0, h.c.held < 0, h.c.pending + h.c.held > h.c.posted
            )
        )
    ):
        problems.append(
            f"invariant 2: {r.account_id} {r.unit_class} posted {r.posted} pending {r.pending} held {r.held}"
        )
    sums = dict(
        ((r.account_id, r.unit_class), int(r.total))
        for r in conn.execute(
            sa.select(
                b.c.account_id, b.c.unit_class, sa.func.sum(b.c.end - b.c.start + 1).label("total")
            ).group_by(b.c.account_id, b.c.unit_class)
        )
    )
    balances = {(r.account_id, r.unit_class): int(r.posted) for r in conn.execute(sa.select(h))}
    for k in sorted(set(sums) | set(balances)):
        if sums.get(k, 0) != balances.get(k, 0):
            problems.append(
                f"invariant 3: {k[0]} {k[1]} blocks {sums.get(k, 0)} ≠ balance {balances.get(k, 0)}"
            )
    prev: Any = None
    for r in conn.execute(sa.select(b).order_by(b.c.unit_class, b.c.origin, b.c.batch, b.c.start)):
        if (
            prev is not None
            and (prev.unit_class, prev.origin, prev.batch) == (r.unit_class, r.origin, r.batch)
            and r.start <= prev.end
        ):
            problems.append(
                f"invariant 3: serial blocks overlap in {r.unit_class} {r.origin} batch {r.batch} at {r.start}"
            )
        prev = r
    return problems


def replay_problems(conn: Connection) -> list[str]:
    """Invariant 6: replaying the journal rebuilds the stored balances and serial blocks."""
    ledger = m.Ledger()
    for row in journal.entries(conn):
        if row.type.startswith("registry."):
            try:
                ledger.apply(row.type, json.loads(row.payload))
            except (DomainError, KeyError, ValueError, TypeError, AssertionError) as err:
                return [f"invariant 6: replay cannot apply journal entry {row.seq}: {err}"]
    problems = []
    stored = {
        (r.account_id, r.unit_class): [int(r.posted), int(r.pending), int(r.held)]
        for r in conn.execute(sa.select(s.holdings))
    }
    rebuilt = {k: v for k, v in ledger.balances.items() if any(v) or k in stored}
    for k in sorted(set(stored) | set(rebuilt)):
        if stored.get(k, [0, 0, 0]) != rebuilt.get(k, [0, 0, 0]):
            problems.append(
                f"invariant 6: {k[0]} {k[1]} stored {stored.get(k)} ≠ replayed {rebuilt.get(k)}"
            )
    blocks: dict[str, set[m.Block]] = {}
    for r in conn.execute(sa.select(s.unit_blocks)):
        blocks.setdefault(r.account_id, set()).add(
            m.Block(r.unit_class, r.origin, r.batch, r.start, r.end)
        )
    for acc in sorted(set(blocks) | set(ledger.blocks)):
        if blocks.get(acc, set()) != ledger.blocks.get(acc, set()):
            problems.append(f"invariant 6: serial blocks of {acc} differ from the journal's replay")
    return problems
