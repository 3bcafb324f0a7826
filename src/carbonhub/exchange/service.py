"""Exchange use cases: instruments, members, the four trading modes, market data.

Order commands go through one writer with group commit: each batch is one transaction, each
command with its own idempotency key and result. Under the API the writer is a child process
(`order_writer`, settings.order_writer = "process"); elsewhere a thread or the caller itself.
Per command: check the rules (model), freeze what it needs (units through the registry, cash
through settlement), apply it to the book (engine), write the order, trades and the command log,
journal it.

Books live in memory per process and are caught up from the durable command log under the
database write lock: a book whose `seq` is behind the log replays the missing commands, one that
may be ahead (a rolled-back batch) is rebuilt. So the log, not the memory, is the truth.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbonhub.core import idempotency, journal
from carbonhub.core.auth import Actor, Role, entities, require_role
from carbonhub.core.db import (
    Database,
    UnitOfWork,
    commit_stamp,
    execute_many,
    fetch,
    first,
    insert_many,
    is_memory_url,
)
from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from carbonhub.core.groupcommit import GroupCommit, WriterProcess, outcome
from carbonhub.core.ids import new_id
from carbonhub.core.quantities import yuan_from_fen
from carbonhub.core.settings import Settings
from carbonhub.core.timefmt import SHANGHAI, iso, parse_day, parse_iso
from carbonhub.exchange import engine as e
from carbonhub.exchange import model as m
from carbonhub.exchange import store as s
from carbonhub.registry.service import EXCHANGE_USER, RegistryService, ReservationBatch
from carbonhub.settlement.service import CashBatch, CashService

TRADER_ROLES = (Role.MEMBER, Role.ENTERPRISE)
_PRICE = re.compile(r"^\d{1,9}(\.\d{1,2})?$")


def parse_price(text: object, field: str = "price") -> int:
    """'80.25' → 8025 fen. More than two decimals is off the 0.01 tick: an error, not a rounding."""
    if not isinstance(text, str) or not _PRICE.fullmatch(text):
        raise InvalidInput(
            "PRICE_OFF_TICK",
            f"{field} must be a yuan amount on the 0.01 tick, like '80.25'",
            "价格须为0.01元的整数倍",
            field=field,
        )
    whole, _, cents = text.partition(".")
    fen = int(whole) * 100 + int((cents + "00")[:2])
    if fen <= 0:
        raise InvalidInput("PRICE_OFF_TICK", f"{field} must be positive", "价格须为正数")
    return fen


def order_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "instrument": r.instrument,
        "mode": r.mode,
        "kind": r.kind,
        "entity_id": r.entity_id,
        "account_id": r.account_id,
        "side": r.side,
        "price": yuan_from_fen(int(r.price)),
        "quantity": int(r.quantity),
        "open": int(r.open),
        "filled": int(r.filled),
        "tif": r.tif,
        "status": r.status,
        "reason": r.reason,
        "target": r.target,
        "trading_day": r.trading_day,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def trade_dict(r: Any, *, private: bool = False) -> dict[str, Any]:
    out = {
        "id": r.id,
        "instrument": r.instrument,
        "mode": r.mode,
        "trading_day": r.trading_day,
        "price": yuan_from_fen(int(r.price)),
        "quantity": int(r.quantity),
        "value": yuan_from_fen(int(r.price) * int(r.quantity)),
        "taker_side": r.taker_side,
        "at": r.at,
    }
    if private:
        out.update(
            buy_order=r.buy_order,
            sell_order=r.sell_order,
            buyer_entity=r.buyer_entity,
            seller_entity=r.seller_entity,
            fee_buyer=yuan_from_fen(int(r.fee_buyer)),
            fee_seller=yuan_from_fen(int(r.fee_seller)),
        )
    return out


ORDER_COMMANDS = frozenset({"place_order", "take", "cancel_order", "amend_order"})


@dataclass(frozen=True)
class Command:
    """One order command for the writer; `name` is one of ORDER_COMMANDS."""

    actor: Actor
    key: str
    name: str
    data: dict[str, Any]
    at: datetime | None = None  # the API's clock when it took the command (a writer process)


class Feed:
    """In-process fan-out of trades and depth to WebSocket subscribers, after commit."""

    def __init__(self) -> None:
        self._subscribers: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> int:
        with self._lock:
            self._next += 1
            self._subscribers[self._next] = callback
            return self._next

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)

    def publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for callback in subscribers:
            callback(message)


class ExchangeService:
    def __init__(self, db: Database, registry: RegistryService, cash: CashService) -> None:
        self.db = db
        self.registry = registry
        self.cash = cash
        self.feed = Feed()
        self._books: dict[str, e._Book] = {}
        self._writer: GroupCommit[Command] | WriterProcess[Command] | None = None
        self._mem = threading.RLock()  # books in memory: one thread at a time
        self._published: list[dict[str, Any]] = []  # block and auction trades, sent after commit
        self._rules_by_text: dict[str, dict[m.Mode, m.ModeRules]] = {}
        self._prev_closes: dict[tuple[str, date, int], int] = {}
        self._batch = threading.local()  # per-batch memo of what order commands only read
        # the writer process's: what a batch knew goes on to the next if no other connection
        # committed in between (`commit_stamp`)
        self._carry_memo = False
        self._carried: _Carried | None = None

    # ------------------------------------------------------------ the writer

    def start_writer(self) -> None:
        """Order entry through one writer with group commit (the API does this): a child
        process unless settings say "thread" or the database lives in this process's memory."""
        if self._writer is not None:
            return
        settings = self.db.settings
        if settings.order_writer == "process" and not is_memory_url(settings.database_url):
            try:  # the API's loop, when there is one: the answers are read on it
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            self._writer = WriterProcess(
                order_writer,
                (settings,),
                after=self.publish,
                name="exchange-writer",
                loop=loop,
            )
        else:
            self._writer = GroupCommit(self._run_batch, name="exchange-writer")

    def stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _submit(self, actor: Actor, key: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
        cmd = Command(actor, key, name, data, self.db.clock())
        if self._writer is not None:
            result: dict[str, Any] = self._writer.submit(cmd)
            return result
        done: dict[str, Any] = outcome(self._run_batch([cmd])[0])
        return done

    async def submit_async(
        self, actor: Actor, key: str, name: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """`place_order`, `take`, `cancel_order` or `amend_order` (by `name`, with the same
        fields) for an event loop: the API awaits the writer's commit instead of parking a
        thread-pool thread on it for every order."""
        if name not in ORDER_COMMANDS:
            raise ValueError(f"not an order command: {name}")
        if self._writer is None:
            return await asyncio.to_thread(self._submit, actor, key, name, data)
        cmd = Command(actor, key, name, data, self.db.clock())
        result: dict[str, Any] = outcome(await self._writer.call(cmd))
        return result

    def _run_batch(self, commands: Sequence[Command]) -> list[dict[str, Any] | DomainError]:
        results, outbox = self._write_batch(commands)
        self.publish(outbox)
        return results

    def publish(self, messages: Sequence[dict[str, Any]]) -> None:
        """Sends committed trades and depth to the live feed's subscribers."""
        for message in messages:
            self.feed.publish(message)

    def _write_batch(
        self, commands: Sequence[Command]
    ) -> tuple[list[dict[str, Any] | DomainError], list[dict[str, Any]]]:
        """One transaction for many order commands. Each is decided against the batch's memory
        (checks first, then the book, then the freezes, which cannot fail after their checks),
        so a refused command changes nothing; the batch writes everything at the end. Returns
        the results and the market-data messages to publish now that it has committed."""
        handlers: dict[str, Callable[[_Batch, Actor, dict[str, Any]], dict[str, Any]]] = {
            "place_order": self._place,
            "take": self._take,
            "cancel_order": self._cancel,
            "amend_order": self._amend,
        }
        results: list[dict[str, Any] | DomainError] = []
        with self._mem:
            carried, self._carried = self._carried, None
            try:
                with self.db.uow() as uow:
                    journal.lock_head(uow)
                    stamp = commit_stamp(uow) if self._carry_memo else None
                    if carried is None or stamp is None or stamp != carried.stamp:
                        carried = None
                    self._batch.memo = carried.memo if carried is not None else {}
                    batch = _Batch(self, uow, carried)
                    batch.prepare(commands)
                    for c in commands:
                        try:
                            results.append(batch.once(c, handlers[c.name]))
                        except DomainError as err:
                            results.append(err)
                    batch.write()
                    uow.commit()
                    if stamp is not None:
                        self._carried = batch.carry(stamp, self._batch.memo)
            except BaseException:
                self._books.clear()  # memory may be ahead of the log: rebuild from it next time
                raise
            finally:
                self._batch.memo = None
        return results, batch.outbox

    # ------------------------------------------------------------ instruments, calendar, members

    def create_instrument(
        self,
        actor: Actor,
        key: str,
        *,
        code: str,
        unit_class: str,
        name: str,
        reference_price: str,
        preset: str | None = "national",
        rules: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = {
            "code": code,
            "unit_class": unit_class,
            "name": name,
            "reference_price": reference_price,
            "preset": preset,
            "rules": rules,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            m.check_instrument_code(code)
            if rules is not None:
                parsed = m.parse_rules(rules)
            elif preset in m.MODE_PRESETS:
                parsed = m.MODE_PRESETS[preset]
            else:
                raise InvalidInput(
                    "PRESET_UNKNOWN",
                    f"preset is one of {', '.join(m.MODE_PRESETS)}, or give rules",
                    "未知规则预设",
                )
            uc = self.registry.unit_class_code(uow.conn, unit_class)
            ref = parse_price(reference_price, "reference_price")
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise InvalidInput("NAME_INVALID", "name: 1–200 characters", "名称须为1–200个字符")
            if uow.conn.execute(
                sa.select(s.instruments.c.code).where(s.instruments.c.code == code)
            ).first():
                raise Conflict("INSTRUMENT_EXISTS", f"instrument {code} exists", "该交易产品已存在")
            uow.conn.execute(
                sa.insert(s.instruments).values(
                    code=code,
                    unit_class=uc,
                    name=name.strip(),
                    rules=json.dumps(m.rules_dict(parsed), sort_keys=True),
                    reference_price=ref,
                    status="ACTIVE",
                    created_at=iso(uow.now),
                )
            )
            for mode in parsed:
                if mode in m.BOOK_MODES:
                    uow.conn.execute(
                        sa.insert(s.books).values(
                            id=f"{code}:{mode.value}",
                            instrument=code,
                            mode=mode.value,
                            seq=0,
                            trading_day=None,
                        )
                    )
            journal.append(
                uow,
                "exchange.instrument_created",
                actor.username,
                {"code": code, "unit_class": uc, "rules": m.rules_dict(parsed), "reference": ref},
            )
            return self._instrument(uow.conn, code)

        return idempotency.run(self.db, actor.username, key, "create_instrument", data, body)

    def set_instrument_status(
        self, actor: Actor, key: str, code: str, *, suspended: bool, reason: str = ""
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            self._instrument_row(uow.conn, code)
            status = "SUSPENDED" if suspended else "ACTIVE"
            uow.conn.execute(
                sa.update(s.instruments).where(s.instruments.c.code == code).values(status=status)
            )
            journal.append(
                uow,
                "exchange.instrument_status",
                actor.username,
                {"code": code, "status": status, "reason": reason[:500]},
            )
            return self._instrument(uow.conn, code)

        data = {"code": code, "suspended": suspended, "reason": reason}
        return idempotency.run(self.db, actor.username, key, "instrument_status", data, body)

    def add_holiday(self, actor: Actor, key: str, *, day: str, name: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            d = parse_day(day)
            if not isinstance(name, str) or not name.strip() or len(name) > 100:
                raise InvalidInput("NAME_INVALID", "name: 1–100 characters", "名称须为1–100个字符")
            if uow.conn.execute(
                sa.select(s.holidays.c.day).where(s.holidays.c.day == d.isoformat())
            ).first():
                raise Conflict("HOLIDAY_EXISTS", f"{d} is already a holiday", "该日已是休市日")
            uow.conn.execute(sa.insert(s.holidays).values(day=d.isoformat(), name=name.strip()))
            journal.append(
                uow, "exchange.holiday_added", actor.username, {"day": d.isoformat(), "name": name}
            )
            return {"day": d.isoformat(), "name": name.strip()}

        data = {"day": day, "name": name}
        return idempotency.run(self.db, actor.username, key, "add_holiday", data, body)

    def calendar(self, start: date, days: int) -> list[dict[str, Any]]:
        if start > date.max - timedelta(days=400):
            raise InvalidInput("DAY_INVALID", "start is too far in the future", "日期超出范围")
        with self.db.read() as ro:
            names = {r.day: r.name for r in ro.conn.execute(sa.select(s.holidays))}
        hol = {date.fromisoformat(d) for d in names}
        out = []
        for n in range(min(max(days, 1), 400)):
            d = start + timedelta(days=n)
            out.append(
                {
                    "day": d.isoformat(),
                    "trading": m.is_trading_day(d, hol),
                    "holiday": names.get(d.isoformat()),
                }
            )
        return out

    def admit_member(
        self, actor: Actor, key: str, *, entity_id: str, account_id: str
    ) -> dict[str, Any]:
        """An entity becomes a member trading from one registry account of its own."""
        data = {"entity_id": entity_id, "account_id": account_id}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            if not uow.conn.execute(
                sa.select(entities.c.id).where(entities.c.id == entity_id)
            ).first():
                raise NotFound("ENTITY_NOT_FOUND", f"no entity {entity_id}", "主体不存在")
            self.registry.check_trading_account(uow.conn, account_id, entity_id)
            if uow.conn.execute(
                sa.select(s.members.c.entity_id).where(s.members.c.entity_id == entity_id)
            ).first():
                raise Conflict(
                    "MEMBER_EXISTS", "this entity is a member already", "该主体已是交易会员"
                )
            uow.conn.execute(
                sa.insert(s.members).values(
                    entity_id=entity_id,
                    account_id=account_id,
                    status="ACTIVE",
                    created_at=iso(uow.now),
                )
            )
            journal.append(uow, "exchange.member_admitted", actor.username, data)
            return self._member(uow.conn, entity_id)

        return idempotency.run(self.db, actor.username, key, "admit_member", data, body)

    def set_member_status(
        self, actor: Actor, key: str, entity_id: str, *, suspended: bool
    ) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            self._member(uow.conn, entity_id)
            status = "SUSPENDED" if suspended else "ACTIVE"
            uow.conn.execute(
                sa.update(s.members).where(s.members.c.entity_id == entity_id).values(status=status)
            )
            journal.append(
                uow,
                "exchange.member_status",
                actor.username,
                {"entity_id": entity_id, "status": status},
            )
            return self._member(uow.conn, entity_id)

        data = {"entity_id": entity_id, "suspended": suspended}
        return idempotency.run(self.db, actor.username, key, "member_status", data, body)

    def _member(self, conn: Connection, entity_id: str | None) -> dict[str, Any]:
        found = self._members(conn, [entity_id]) if entity_id else {}
        if entity_id not in found:
            raise NotFound("MEMBER_NOT_FOUND", "not an exchange member", "非交易会员")
        return found[entity_id]

    def _members(self, conn: Connection, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = fetch(conn, s.MEMBERS_BY_ENTITY, ids=list(entity_ids))
        return {
            row.entity_id: {
                "entity_id": row.entity_id,
                "name": row.name,
                "account_id": row.account_id,
                "status": row.status,
                "created_at": row.created_at,
            }
            for row in rows
        }

    def members(self) -> list[dict[str, Any]]:
        with self.db.read() as ro:
            conn = ro.conn
            ids = [r.entity_id for r in conn.execute(sa.select(s.members.c.entity_id))]
            return [self._member(conn, i) for i in sorted(ids)]

    def member_of(self, actor: Actor) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            return self._member(conn, actor.entity_id)

    def _memo(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        """Within one order batch, what its commands only read is loaded once."""
        memo: dict[tuple[Any, ...], Any] | None = getattr(self._batch, "memo", None)
        if memo is None:
            return load()
        if key not in memo:
            memo[key] = load()
        return memo[key]

    def _instrument_row(self, conn: Connection, code: str) -> Any:
        def load() -> Any:
            row = first(conn, s.INSTRUMENT_BY_CODE, code=code)
            if row is None:
                raise NotFound("INSTRUMENT_NOT_FOUND", f"no instrument {code}", "交易产品不存在")
            return row

        return self._memo(("instrument", code), load)

    def _rules(self, row: Any) -> dict[m.Mode, m.ModeRules]:
        rules = self._rules_by_text.get(row.rules)
        if rules is None:
            rules = self._rules_by_text[row.rules] = m.parse_rules(json.loads(row.rules))
        return rules

    def _instrument(self, conn: Connection, code: str) -> dict[str, Any]:
        row = self._instrument_row(conn, code)
        today = m.trading_day(self.db.clock())
        prev = self._prev_close(conn, row, today)
        rules = self._rules(row)
        return {
            "code": row.code,
            "unit_class": row.unit_class,
            "name": row.name,
            "status": row.status,
            "rules": m.rules_dict(rules),
            "mode_codes": {mode.value: m.MODE_CODES[mode] for mode in rules},
            "reference_price": yuan_from_fen(int(row.reference_price)),
            "prev_close": yuan_from_fen(prev),
            "bands": {
                mode.value: [yuan_from_fen(x) for x in m.band(prev, r.band_bps)]
                for mode, r in rules.items()
            },
            "tick": "0.01",
            "lot": 1,
        }

    def instruments(self) -> list[dict[str, Any]]:
        with self.db.read() as ro:
            conn = ro.conn
            codes = [r.code for r in conn.execute(sa.select(s.instruments.c.code))]
            return [self._instrument(conn, c) for c in sorted(codes)]

    def instrument(self, code: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            return self._instrument(conn, code)

    def _holidays(self, conn: Connection) -> set[date]:
        def load() -> set[date]:
            return {date.fromisoformat(r.day) for r in fetch(conn, s.HOLIDAY_DAYS)}

        holidays: set[date] = self._memo(("holidays",), load)
        return holidays

    def _prev_close(self, conn: Connection, inst: Any, day: date) -> int:
        """Kept across batches: it follows from days that are over (their trades, the close
        published for them), which nothing changes afterwards."""
        key = (inst.code, day, int(inst.reference_price))
        close = self._prev_closes.get(key)
        if close is None:
            close = self._load_prev_close(conn, inst, day)
            if len(self._prev_closes) > 10_000:
                self._prev_closes.clear()
            self._prev_closes[key] = close
        return close

    def _load_prev_close(self, conn: Connection, inst: Any, day: date) -> int:
        """The close of the last published day before `day`, else the instrument's reference."""
        md = s.market_days.c
        row = conn.execute(
            sa.select(md.close)
            .where(md.instrument == inst.code, md.day < day.isoformat())
            .order_by(md.day.desc())
            .limit(1)
        ).first()
        last_trade_day = conn.execute(
            sa.select(sa.func.max(s.trades.c.trading_day)).where(
                s.trades.c.instrument == inst.code, s.trades.c.trading_day < day.isoformat()
            )
        ).scalar_one()
        published = conn.execute(
            sa.select(sa.func.max(md.day)).where(md.instrument == inst.code)
        ).scalar_one()
        if last_trade_day is not None and (published is None or published < last_trade_day):
            # a day traded but was never closed (no settlement run yet): derive it now
            return self._derive_close(conn, inst, date.fromisoformat(last_trade_day))
        return int(row.close) if row else int(inst.reference_price)

    def _derive_close(self, conn: Connection, inst: Any, day: date) -> int:
        t = s.trades.c
        rows = conn.execute(
            sa.select(t.mode, t.price, t.quantity)
            .where(t.instrument == inst.code, t.trading_day == day.isoformat())
            .order_by(t.at, t.id)
        ).all()
        prev = self._prev_close(conn, inst, day)
        return m.day_bar(prev, [(r.mode, int(r.price), int(r.quantity)) for r in rows]).close

    # ------------------------------------------------------------ trading checks

    def _trader(self, conn: Connection, actor: Actor) -> dict[str, Any]:
        if actor.role not in TRADER_ROLES:
            raise Forbidden(
                "ROLE_NOT_ALLOWED", f"role {actor.role.value} may not trade", "该角色不能交易"
            )
        member: dict[str, Any] = self._memo(
            ("member", actor.entity_id), lambda: self._member(conn, actor.entity_id)
        )
        if member["status"] != "ACTIVE":
            raise Conflict("MEMBER_SUSPENDED", "your membership is suspended", "交易会员资格已暂停")
        return member

    def _tradable(
        self, uow: UnitOfWork, code: object, mode_name: object
    ) -> tuple[Any, m.Mode, m.ModeRules, int]:
        """The instrument, mode and rules if trading is open now; the band's reference price."""
        if not isinstance(code, str):
            raise InvalidInput("INSTRUMENT_INVALID", "instrument is a code", "产品代码错误")
        inst = self._instrument_row(uow.conn, code)
        try:
            mode = m.Mode(str(mode_name))
        except ValueError:
            raise InvalidInput(
                "MODE_UNKNOWN", f"unknown trading mode {mode_name!r}", "未知交易方式"
            ) from None
        rules = self._rules(inst)
        if mode not in rules:
            raise Conflict(
                "MODE_NOT_OFFERED",
                f"{code} does not trade in {mode.value}",
                "该产品不支持此交易方式",
            )
        if inst.status != "ACTIVE":
            raise Conflict("INSTRUMENT_SUSPENDED", f"{code} is suspended", "该产品已停牌")
        if self._memo(("suspended",), lambda: self.registry.is_market_suspended(uow.conn)):
            raise Conflict("MARKET_SUSPENDED", "the market is suspended", "市场已暂停交易")
        m.check_session(uow.now, rules[mode], self._holidays(uow.conn))
        today = m.trading_day(uow.now)
        return inst, mode, rules[mode], self._prev_close(uow.conn, inst, today)

    # ------------------------------------------------------------ books in memory, log on disk

    def _book(self, b: _Batch, book_id: str) -> e._Book:
        """The book caught up with its durable log; opens the trading day if it is a new one."""
        if book_id in b.books:
            return self._books[book_id]
        uow = b.uow
        row = b.book_rows.get(book_id) or first(uow.conn, s.BOOK_FOR_UPDATE, id=book_id)
        if row is None:
            raise NotFound("BOOK_NOT_FOUND", f"no book {book_id}", "订单簿不存在")
        book = self._caught_up(uow.conn, row)
        b.books[book_id] = [row.instrument, row.mode, row.trading_day]
        today = m.trading_day(uow.now).isoformat()
        if row.trading_day != today:
            if row.trading_day is not None:
                self._close_book(b, book_id)
            inst = self._instrument_row(uow.conn, row.instrument)
            prev = self._prev_close(uow.conn, inst, date.fromisoformat(today))
            self._log(b, book_id, book, {"k": "reference", "price": prev})
            b.books[book_id][2] = today
        return book

    def _caught_up(self, conn: Connection, row: Any) -> e._Book:
        """The book in memory brought up to its log as `row` (a `books` row) has it; rebuilt
        from the log when memory is ahead of it (a rolled-back batch) or empty."""
        book = self._books.get(row.id)
        if book is None or book.seq > int(row.seq):
            book = self._fresh_book(conn, row)
        if book.seq < int(row.seq):
            bc = s.book_commands.c
            for r in conn.execute(
                sa.select(bc.command)
                .where(bc.book_id == row.id, bc.seq > book.seq, bc.seq <= int(row.seq))
                .order_by(bc.seq)
            ):
                e.apply(book, json.loads(r.command))
        self._books[row.id] = book
        return book

    def _fresh_book(self, conn: Connection, row: Any) -> e._Book:
        inst = self._instrument_row(conn, row.instrument)
        rules = self._rules(inst)[m.Mode(row.mode)]
        return e.new_book(row.mode, rules.price_rule)

    def _log(self, b: _Batch, book_id: str, book: e._Book, cmd: dict[str, Any]) -> list[e.Event]:
        """Applies a command to the book and logs it (written with the batch)."""
        try:
            events = e.apply(book, cmd)
        except e.EngineError as err:
            raise Conflict(err.code, str(err), str(err)) from None
        b.commands.append(
            {
                "book_id": book_id,
                "seq": book.seq,
                "command": orjson.dumps(cmd, option=orjson.OPT_SORT_KEYS).decode(),
                "at": b.at,
            }
        )
        return events

    def replay_problems(self, conn: Connection) -> list[str]:
        """Invariant: replaying each book's log rebuilds its open orders and its trades."""
        problems: list[str] = []
        for row in conn.execute(sa.select(s.books)).all():
            book = self._fresh_book(conn, row)
            bc = s.book_commands.c
            trades: list[tuple[str, int, int, str, str]] = []
            for r in conn.execute(
                sa.select(bc.command).where(bc.book_id == row.id).order_by(bc.seq)
            ):
                for ev in e.apply(book, json.loads(r.command)):
                    if ev[0] == e.TRADE:
                        trades.append(
                            (
                                _trade_id(row.id, int(ev[1])),
                                int(ev[2]),
                                int(ev[3]),
                                str(ev[4]),
                                str(ev[5]),
                            )
                        )
            if book.seq != int(row.seq):
                problems.append(f"book {row.id}: log has {book.seq} commands, book says {row.seq}")
            t = s.trades.c
            stored = [
                (r.id, int(r.price), int(r.quantity), r.buy_order, r.sell_order)
                for r in conn.execute(
                    sa.select(t.id, t.price, t.quantity, t.buy_order, t.sell_order)
                    .where(t.instrument == row.instrument, t.mode == row.mode)
                    .order_by(t.id)
                )
            ]
            if sorted(trades) != stored:
                problems.append(f"book {row.id}: replayed trades differ from the stored trades")
            o = s.orders.c
            live = {
                (r.id, int(r.price), int(r.open))
                for r in conn.execute(
                    sa.select(o.id, o.price, o.open).where(o.book_id == row.id, o.status == "OPEN")
                )
            }
            if {(oid, price, qty) for oid, _, _, price, qty in book.open_orders()} != live:
                problems.append(f"book {row.id}: replayed open orders differ from the stored ones")
        return problems

    # ------------------------------------------------------------ order entry (public API)

    def place_order(
        self,
        actor: Actor,
        key: str,
        *,
        instrument: str,
        mode: str,
        side: str,
        price: str,
        quantity: int,
        tif: str = e.LIMIT,
    ) -> dict[str, Any]:
        data = {
            "instrument": instrument,
            "mode": mode,
            "side": side,
            "price": price,
            "quantity": quantity,
            "tif": tif,
        }
        return self._submit(actor, key, "place_order", data)

    def take(self, actor: Actor, key: str, *, order_id: str, quantity: int) -> dict[str, Any]:
        """摘牌: trade `quantity` with one listing among the best five levels, at its price."""
        return self._submit(actor, key, "take", {"order_id": order_id, "quantity": quantity})

    def cancel_order(self, actor: Actor, key: str, order_id: str) -> dict[str, Any]:
        return self._submit(actor, key, "cancel_order", {"order_id": order_id})

    def amend_order(
        self, actor: Actor, key: str, order_id: str, *, quantity: int
    ) -> dict[str, Any]:
        """Quantity down only; the order keeps its place in the queue."""
        return self._submit(actor, key, "amend_order", {"order_id": order_id, "quantity": quantity})

    # ------------------------------------------------------------ order entry (inside the batch)

    def _place(self, b: _Batch, actor: Actor, d: dict[str, Any]) -> dict[str, Any]:
        uow = b.uow
        member = self._trader(uow.conn, actor)
        inst, mode, rules, prev = self._tradable(uow, d["instrument"], d["mode"])
        if mode not in m.BOOK_MODES:
            raise Conflict(
                "MODE_HAS_NO_BOOK",
                f"{mode.value} trades through its own commands, not orders",
                "该交易方式不使用订单簿",
            )
        side = d["side"]
        if side not in (e.BUY, e.SELL):
            raise InvalidInput("SIDE_INVALID", "side is B (buy) or S (sell)", "买卖方向须为 B 或 S")
        tif = d["tif"]
        allowed = (e.LIMIT,) if mode is m.Mode.LISTING else (e.LIMIT, e.IOC, e.FOK)
        if tif not in allowed:
            raise InvalidInput(
                "TIF_INVALID", f"{mode.value} takes {', '.join(allowed)}", "不支持的订单有效期"
            )
        price = m.check_price(parse_price(d["price"]), prev, rules)
        qty = m.check_quantity(d["quantity"], rules)
        book_id = f"{inst.code}:{mode.value}"
        self._check_freeze(b, member, inst, side, price, qty, rules)
        book = self._book(b, book_id)
        oid = new_id()
        cmd: dict[str, Any] = {
            "k": "post" if mode is m.Mode.LISTING else "place",
            "oid": oid,
            "owner": member["entity_id"],
            "side": side,
            "price": price,
            "qty": qty,
        }
        if mode is m.Mode.CONTINUOUS:
            cmd["tif"] = tif
        events = self._log(b, book_id, book, cmd)  # the last step that may refuse
        hold_id, cash_ref = self._freeze(b, member, inst, side, price, qty, rules, oid)
        b.new_order(
            actor,
            oid,
            book_id,
            inst,
            mode,
            "ORDER",
            member,
            side,
            price,
            qty,
            tif,
            hold_id,
            cash_ref,
            None,
        )
        trades = self._apply_events(b, inst, mode, rules, book_id, events)
        b.entries.append(
            (
                "exchange.order_placed",
                actor.username,
                {
                    "order": oid,
                    "book": book_id,
                    "side": side,
                    "price": price,
                    "qty": qty,
                    "tif": tif,
                    "seq": book.seq,
                    "trades": [t["id"] for t in trades],
                },
            )
        )
        self._queue_depth(b, inst.code, mode, book)
        return b.result(oid, trades)

    def _check_freeze(
        self,
        b: _Batch,
        member: dict[str, Any],
        inst: Any,
        side: str,
        price: int,
        qty: int,
        rules: m.ModeRules,
    ) -> None:
        if side == e.SELL:
            b.units.check_reserve(member["account_id"], member["entity_id"], inst.unit_class, qty)
        else:
            b.units.check_tradable(member["account_id"], member["entity_id"])
            b.cash.check_freeze(member["entity_id"], m.buy_freeze(price, qty, rules.fee_bps))

    def _freeze(
        self,
        b: _Batch,
        member: dict[str, Any],
        inst: Any,
        side: str,
        price: int,
        qty: int,
        rules: m.ModeRules,
        ref_id: str,
    ) -> tuple[str | None, str | None]:
        """Units for a sell (a registry reservation), cash plus fees for a buy (a cash freeze)."""
        if side == e.SELL:
            hold_id = b.units.reserve(
                member["account_id"],
                member["entity_id"],
                inst.unit_class,
                qty,
                f"exchange {ref_id}",
            )
            return hold_id, None
        cash_ref = f"order:{ref_id}"
        b.cash.freeze(
            member["entity_id"], m.buy_freeze(price, qty, rules.fee_bps), cash_ref, EXCHANGE_USER
        )
        return None, cash_ref

    def _freeze_now(
        self,
        uow: UnitOfWork,
        member: dict[str, Any],
        inst: Any,
        side: str,
        price: int,
        qty: int,
        rules: m.ModeRules,
        ref_id: str,
    ) -> tuple[str | None, str | None]:
        """`_freeze` for the commands outside order batches (block deals, auctions)."""
        if side == e.SELL:
            hold_id = self.registry.reserve_units(
                uow,
                account_id=member["account_id"],
                unit_class=inst.unit_class,
                quantity=qty,
                reason=f"exchange {ref_id}",
            )
            return hold_id, None
        self.registry.check_trading_account(uow.conn, member["account_id"], member["entity_id"])
        cash_ref = f"order:{ref_id}"
        self.cash.freeze(
            uow,
            member["entity_id"],
            m.buy_freeze(price, qty, rules.fee_bps),
            cash_ref,
            EXCHANGE_USER,
        )
        return None, cash_ref

    def _apply_events(
        self,
        b: _Batch,
        inst: Any,
        mode: m.Mode,
        rules: m.ModeRules,
        book_id: str,
        events: list[e.Event],
    ) -> list[dict[str, Any]]:
        """What the book decided, in the batch: trades, fills, cancels, and the freezes they free."""
        now, day = b.at, b.day
        # the orders these events touch (makers, mostly), with their holds and freezes, at once
        b.preload_orders(
            [str(x) for ev in events for x in (ev[4:6] if ev[0] == e.TRADE else ev[1:2])]
        )
        trades: list[dict[str, Any]] = []
        for ev in events:
            kind = ev[0]
            if kind == e.TRADE:
                _, trade_no, p, q, buy_oid, sell_oid, taker_side = ev
                buy, sell = b.order(buy_oid), b.order(sell_oid)
                value = p * q
                fee = m.fee(value, rules.fee_bps)
                trade = {
                    "id": _trade_id(book_id, trade_no),
                    "instrument": inst.code,
                    "unit_class": inst.unit_class,
                    "mode": mode.value,
                    "trading_day": day,
                    "price": p,
                    "quantity": q,
                    "buy_order": buy["id"],
                    "sell_order": sell["id"],
                    "buyer_entity": buy["entity_id"],
                    "seller_entity": sell["entity_id"],
                    "buyer_account": buy["account_id"],
                    "seller_account": sell["account_id"],
                    "buyer_cash_ref": buy["cash_ref"],
                    "seller_hold_id": sell["hold_id"],
                    "fee_buyer": fee,
                    "fee_seller": fee,
                    "taker_side": taker_side,
                    "at": now,
                }
                b.trades.append(trade)
                trades.append(trade)
                # the buy order froze limit × q (+ fee) for these q tonnes: keep what the trade
                # will pay, free the rest (model.fee truncates, so this is never negative)
                limit, open_before = buy["price"], buy["open"]
                excess = (
                    m.buy_freeze(limit, open_before, rules.fee_bps)
                    - m.buy_freeze(limit, open_before - q, rules.fee_bps)
                    - (value + fee)
                )
                if excess:
                    b.cash.release(buy["cash_ref"], excess, EXCHANGE_USER)
                for r in (buy, sell):
                    r["open"] -= q
                    r["filled"] += q
                    r["status"] = "OPEN" if r["open"] else "FILLED"
                    r["updated_at"] = now
                b.outbox.append(
                    {
                        "type": "trade",
                        "instrument": inst.code,
                        "mode": mode.value,
                        "id": trade["id"],
                        "price": yuan_from_fen(p),
                        "quantity": q,
                        "taker_side": taker_side,
                        "at": now,
                    }
                )
            elif kind == e.CANCELLED:
                _, oid, qty, reason = ev
                r = b.order(oid)
                self._unfreeze(b, r, qty, rules)
                r["open"] -= qty
                r["status"] = "EXPIRED" if reason == e.R_CLOSE else "CANCELLED"
                r["reason"] = reason
                r["updated_at"] = now
            elif kind == e.AMENDED:
                _, oid, new_open = ev
                r = b.order(oid)
                self._unfreeze(b, r, r["open"] - new_open, rules)
                r["open"] = new_open
                r["updated_at"] = now
        return trades

    def _unfreeze(self, b: _Batch, r: dict[str, Any], qty: int, rules: m.ModeRules) -> None:
        """Frees what `qty` open tonnes of an order had frozen."""
        if qty <= 0:
            return
        if r["side"] == e.SELL:
            b.units.release(r["hold_id"], qty, f"order {r['id']}")
        else:
            open_now, limit = r["open"], r["price"]
            amount = m.buy_freeze(limit, open_now, rules.fee_bps) - m.buy_freeze(
                limit, open_now - qty, rules.fee_bps
            )
            b.cash.release(r["cash_ref"], amount, EXCHANGE_USER)

    def _owned_open_order(self, b: _Batch, actor: Actor, order_id: object) -> dict[str, Any]:
        if not isinstance(order_id, str):
            raise NotFound("ORDER_NOT_FOUND", f"no order {order_id}", "订单不存在")
        r = b.order(order_id, missing_ok=True)
        if r is None:
            raise NotFound("ORDER_NOT_FOUND", f"no order {order_id}", "订单不存在")
        if not (actor.is_operator or r["entity_id"] == actor.entity_id):
            raise Forbidden(
                "NOT_YOUR_ORDER", "you may act only on your own orders", "只能操作本方订单"
            )
        if r["status"] != "OPEN" or r["kind"] != "ORDER":
            raise Conflict("ORDER_NOT_OPEN", f"order {order_id} is {r['status']}", "订单已不在簿中")
        order: dict[str, Any] = r
        return order

    def _cancel(self, b: _Batch, actor: Actor, d: dict[str, Any]) -> dict[str, Any]:
        r = self._owned_open_order(b, actor, d["order_id"])
        inst = self._instrument_row(b.uow.conn, r["instrument"])
        mode = m.Mode(r["mode"])
        rules = self._rules(inst)[mode]
        book = self._book(b, r["book_id"])
        if r["id"] not in book.orders:  # the day's close expired it before this cancel came
            return b.result(r["id"], [])
        events = self._log(b, r["book_id"], book, {"k": "cancel", "oid": r["id"]})
        self._apply_events(b, inst, mode, rules, r["book_id"], events)
        b.entries.append(
            ("exchange.order_cancelled", actor.username, {"order": r["id"], "seq": book.seq})
        )
        self._queue_depth(b, inst.code, mode, book)
        return b.result(r["id"], [])

    def _amend(self, b: _Batch, actor: Actor, d: dict[str, Any]) -> dict[str, Any]:
        r = self._owned_open_order(b, actor, d["order_id"])
        inst = self._instrument_row(b.uow.conn, r["instrument"])
        mode = m.Mode(r["mode"])
        rules = self._rules(inst)[mode]
        qty = d["quantity"]
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise InvalidInput("QUANTITY_NOT_LOT", "quantity is whole tonnes", "数量须为整数吨")
        book = self._book(b, r["book_id"])
        if r["id"] not in book.orders:
            raise Conflict("ORDER_NOT_OPEN", f"order {r['id']} is no longer open", "订单已不在簿中")
        events = self._log(b, r["book_id"], book, {"k": "amend", "oid": r["id"], "qty": qty})
        self._apply_events(b, inst, mode, rules, r["book_id"], events)
        b.entries.append(
            (
                "exchange.order_amended",
                actor.username,
                {"order": r["id"], "open": qty, "seq": book.seq},
            )
        )
        self._queue_depth(b, inst.code, mode, book)
        return b.result(r["id"], [])

    def _take(self, b: _Batch, actor: Actor, d: dict[str, Any]) -> dict[str, Any]:
        uow = b.uow
        member = self._trader(uow.conn, actor)
        target = b.order(d["order_id"], missing_ok=True) if isinstance(d["order_id"], str) else None
        if target is None or target["mode"] != m.Mode.LISTING.value or target["kind"] != "ORDER":
            raise NotFound("LISTING_NOT_FOUND", f"no listing {d['order_id']}", "挂单不存在")
        inst, mode, rules, _prev = self._tradable(uow, target["instrument"], m.Mode.LISTING.value)
        qty = d["quantity"]
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise InvalidInput("QUANTITY_NOT_LOT", "quantity is whole tonnes", "数量须为整数吨")
        side = e.SELL if target["side"] == e.BUY else e.BUY
        price = target["price"]
        self._check_freeze(b, member, inst, side, price, qty, rules)
        book = self._book(b, target["book_id"])
        if target["id"] not in book.orders:
            raise Conflict("ORDER_NOT_OPEN", "that listing is gone", "该挂单已不存在")
        oid = new_id()
        events = self._log(
            b,
            target["book_id"],
            book,
            {
                "k": "take",
                "oid": oid,
                "owner": member["entity_id"],
                "target": target["id"],
                "qty": qty,
            },
        )
        hold_id, cash_ref = self._freeze(b, member, inst, side, price, qty, rules, oid)
        b.new_order(
            actor,
            oid,
            target["book_id"],
            inst,
            mode,
            "TAKE",
            member,
            side,
            price,
            qty,
            "FOK",
            hold_id,
            cash_ref,
            target["id"],
        )
        trades = self._apply_events(b, inst, mode, rules, target["book_id"], events)
        b.entries.append(
            (
                "exchange.listing_taken",
                actor.username,
                {
                    "order": oid,
                    "target": target["id"],
                    "qty": qty,
                    "price": price,
                    "trades": [t["id"] for t in trades],
                },
            )
        )
        self._queue_depth(b, inst.code, mode, book)
        return b.result(oid, trades)

    def _queue_depth(self, b: _Batch, code: str, mode: m.Mode, book: e._Book) -> None:
        """The book's depth goes out once, after the batch's trades: a snapshot per command
        would describe states that no one could trade against any more (a conflated feed)."""
        b.depth_due[(code, mode.value)] = book

    # ------------------------------------------------------------ day close (for settlement)

    def _close_book(self, b: _Batch, book_id: str) -> None:
        """Day end for one book: every resting order expires and frees what it froze."""
        book = self._book_for_close(b, book_id)
        b.preload_open_orders(book_id)
        instrument, mode_name, day = b.books[book_id]
        inst = self._instrument_row(b.uow.conn, instrument)
        mode = m.Mode(mode_name)
        events = self._log(b, book_id, book, {"k": "close"})
        self._apply_events(b, inst, mode, self._rules(inst)[mode], book_id, events)
        if events:
            self._queue_depth(b, inst.code, mode, book)
        b.books[book_id][2] = None
        b.entries.append(
            (
                "exchange.book_closed",
                EXCHANGE_USER,
                {"book": book_id, "day": day, "expired": len(events), "seq": book.seq},
            )
        )

    def _book_for_close(self, b: _Batch, book_id: str) -> e._Book:
        """The book as its log has it, without opening a new day (which `_book` would do)."""
        if book_id not in b.books:
            row = b.uow.conn.execute(sa.select(s.books).where(s.books.c.id == book_id)).one()
            self._caught_up(b.uow.conn, row)
            b.books[book_id] = [row.instrument, row.mode, row.trading_day]
        return self._books[book_id]

    def close_past_days(self) -> list[str]:
        """A duty: every book still open for a past day closes (its orders expire) and that day
        is published, without waiting for the settlement run or the next order."""
        closed: list[str] = []
        messages: list[dict[str, Any]] = []
        with self.books_lock(), self.db.uow() as uow:
            journal.lock_head(uow)
            today = m.trading_day(uow.now).isoformat()
            days = sorted(
                {
                    r.trading_day
                    for r in uow.conn.execute(
                        sa.select(s.books.c.trading_day).where(s.books.c.trading_day < today)
                    )
                }
            )
            for day in days:
                messages += self.close_day(uow, date.fromisoformat(day))
                closed.append(day)
            uow.commit()
        self.publish(messages)
        return closed

    def books_lock(self) -> AbstractContextManager[Any]:
        """Held while the books in memory change. Take it *before* opening the transaction
        that changes them, as the order writer does: the other order deadlocks against it
        (the writer holds this lock and waits for the database's)."""
        return self._mem

    def close_day(self, uow: UnitOfWork, day: date) -> list[dict[str, Any]]:
        """After the close: books expire their orders, auctions finish, the day is published.
        The caller holds `books_lock` from before it opened `uow`, and hands what this returns
        to `publish` once it has committed: the emptied books' depth and the trades of the
        auctions that ended with the day, for the live feed."""
        with self._mem:
            try:
                b = _Batch(self, uow, None)
                for row in uow.conn.execute(
                    sa.select(s.books.c.id).where(s.books.c.trading_day <= day.isoformat())
                ).all():
                    self._close_book(b, row.id)
                b.write()
            except BaseException:
                self._books.clear()
                raise
        day_end = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(days=1)
        self._published = []
        self._finish_auctions(uow, until=day_end)  # the day's auctions; later ones stay open
        messages, self._published = [*b.outbox, *self._published], []
        self._expire_deals(uow, day)
        for inst in uow.conn.execute(sa.select(s.instruments)).all():
            self._publish_day(uow, inst, day)
        self._publish_index(uow, day)
        return messages

    def _publish_day(self, uow: UnitOfWork, inst: Any, day: date) -> None:
        md = s.market_days.c
        if uow.conn.execute(
            sa.select(md.day).where(md.instrument == inst.code, md.day == day.isoformat())
        ).first():
            return
        t = s.trades.c
        rows = uow.conn.execute(
            sa.select(t.mode, t.price, t.quantity)
            .where(t.instrument == inst.code, t.trading_day == day.isoformat())
            .order_by(t.at, t.id)
        ).all()
        if not rows and not m.is_trading_day(day, self._holidays(uow.conn)):
            return
        prev = self._prev_close(uow.conn, inst, day)
        bar = m.day_bar(prev, [(r.mode, int(r.price), int(r.quantity)) for r in rows])
        uow.conn.execute(
            sa.insert(s.market_days).values(
                instrument=inst.code,
                day=day.isoformat(),
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                prev_close=bar.prev_close,
                volume=json.dumps(bar.volume, sort_keys=True),
                value=json.dumps(bar.value, sort_keys=True),
            )
        )

    def _publish_index(self, uow: UnitOfWork, day: date) -> None:
        """The composite over vintages (model.composite), with its level on base 1000."""
        conn = uow.conn
        if conn.execute(
            sa.select(s.index_days.c.day).where(s.index_days.c.day == day.isoformat())
        ).first():
            return
        md = s.market_days.c
        closes: dict[str, int] = {}
        for inst in conn.execute(sa.select(s.instruments.c.code, s.instruments.c.unit_class)).all():
            if not inst.unit_class.startswith("CEA"):
                continue  # the index is over allowance vintages
            r = conn.execute(
                sa.select(md.close)
                .where(md.instrument == inst.code, md.day <= day.isoformat())
                .order_by(md.day.desc())
                .limit(1)
            ).first()
            if r is not None:
                closes[inst.code] = int(r.close)
        if not closes:
            return
        window_days = [
            r.day
            for r in conn.execute(
                sa.select(md.day)
                .where(md.day <= day.isoformat())
                .distinct()
                .order_by(md.day.desc())
                .limit(m.INDEX_WINDOW)
            )
        ]
        volume: dict[str, int] = {}
        for r in conn.execute(sa.select(md.instrument, md.volume).where(md.day.in_(window_days))):
            if r.instrument in closes:
                volume[r.instrument] = volume.get(r.instrument, 0) + sum(
                    json.loads(r.volume).values()
                )
        price = m.composite(closes, volume)
        first = conn.execute(sa.select(s.index_days).order_by(s.index_days.c.day).limit(1)).first()
        base = int(first.price) if first else price
        conn.execute(
            sa.insert(s.index_days).values(
                day=day.isoformat(),
                price=price,
                level=m.index_level(price, base),
                weights=json.dumps(volume, sort_keys=True),
            )
        )

    def trades_to_settle(self, conn: Connection, day: date) -> list[dict[str, Any]]:
        t = s.trades.c
        return [
            dict(r._mapping, trade_id=r.id)
            for r in conn.execute(
                sa.select(s.trades).where(t.trading_day == day.isoformat()).order_by(t.id)
            )
        ]

    # ------------------------------------------------------------ block deals (大宗协议)

    def quote(
        self,
        actor: Actor,
        key: str,
        *,
        instrument: str,
        side: str,
        price: str,
        quantity: int,
    ) -> dict[str, Any]:
        data = {"instrument": instrument, "side": side, "price": price, "quantity": quantity}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            inst, _mode, rules, prev = self._tradable(uow, instrument, m.Mode.BLOCK.value)
            if side not in (e.BUY, e.SELL):
                raise InvalidInput("SIDE_INVALID", "side is B or S", "买卖方向须为 B 或 S")
            p = m.check_price(parse_price(price), prev, rules)
            q = m.check_quantity(quantity, rules)
            deal_id = new_id()
            now = iso(uow.now)
            uow.conn.execute(
                sa.insert(s.deals).values(
                    id=deal_id,
                    instrument=inst.code,
                    initiator=member["entity_id"],
                    counterparty=None,
                    side=side,
                    price=p,
                    quantity=q,
                    version=1,
                    confirmed="[]",
                    status=m.DealStatus.QUOTED.value,
                    trading_day=m.trading_day(uow.now).isoformat(),
                    trade_id=None,
                    history=json.dumps([{"by": member["entity_id"], "quote": [p, q], "at": now}]),
                    created_at=now,
                    updated_at=now,
                )
            )
            journal.append(
                uow,
                "exchange.block_quoted",
                actor.username,
                {"deal": deal_id, "instrument": inst.code, "side": side, "price": p, "qty": q},
            )
            return self._deal(uow.conn, deal_id)

        return idempotency.run(self.db, actor.username, key, "block_quote", data, body)

    def _deal_row(self, conn: Connection, deal_id: str) -> Any:
        q = sa.select(s.deals).where(s.deals.c.id == deal_id)
        row = conn.execute(q).first()
        if row is None:
            raise NotFound("DEAL_NOT_FOUND", f"no block deal {deal_id}", "大宗协议不存在")
        return row

    def _deal_state(self, row: Any) -> m.Deal:
        return m.Deal(
            initiator=row.initiator,
            side=row.side,
            price=int(row.price),
            qty=int(row.quantity),
            status=m.DealStatus(row.status),
            counterparty=row.counterparty,
            version=int(row.version),
            confirmed=frozenset(json.loads(row.confirmed)),
        )

    def _deal(self, conn: Connection, deal_id: str) -> dict[str, Any]:
        r = self._deal_row(conn, deal_id)
        return {
            "id": r.id,
            "instrument": r.instrument,
            "initiator": r.initiator,
            "counterparty": r.counterparty,
            "side": r.side,
            "price": yuan_from_fen(int(r.price)),
            "quantity": int(r.quantity),
            "version": int(r.version),
            "confirmed": json.loads(r.confirmed),
            "status": r.status,
            "trading_day": r.trading_day,
            "trade_id": r.trade_id,
            "history": [_quote_in_yuan(h) for h in json.loads(r.history)],
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }

    def _release_deal(self, uow: UnitOfWork, r: Any, rules: m.ModeRules) -> None:
        if r.seller_hold_id:
            self.registry.release_reserved(
                uow, r.seller_hold_id, int(r.quantity), EXCHANGE_USER, f"deal {r.id}"
            )
        if r.buyer_cash_ref:
            self.cash.release(uow, r.buyer_cash_ref, None, EXCHANGE_USER)
        uow.conn.execute(
            sa.update(s.deals)
            .where(s.deals.c.id == r.id)
            .values(seller_hold_id=None, buyer_cash_ref=None)
        )

    def counter(
        self, actor: Actor, key: str, deal_id: str, *, price: str, quantity: int
    ) -> dict[str, Any]:
        data = {"deal": deal_id, "price": price, "quantity": quantity}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            r = self._deal_row(uow.conn, deal_id)
            _inst, _mode, rules, prev = self._tradable(uow, r.instrument, m.Mode.BLOCK.value)
            p = m.check_price(parse_price(price), prev, rules)
            q = m.check_quantity(quantity, rules)
            deal = m.counter(self._deal_state(r), member["entity_id"], p, q)
            self._release_deal(uow, r, rules)
            history = [
                *json.loads(r.history),
                {"by": member["entity_id"], "counter": [p, q], "at": iso(uow.now)},
            ]
            self._save_deal(uow, r.id, deal, history)
            journal.append(
                uow,
                "exchange.block_countered",
                actor.username,
                {"deal": r.id, "price": p, "qty": q, "version": deal.version},
            )
            return self._deal(uow.conn, r.id)

        return idempotency.run(self.db, actor.username, key, "block_counter", data, body)

    def _save_deal(
        self, uow: UnitOfWork, deal_id: str, deal: m.Deal, history: list[Any], **extra: Any
    ) -> None:
        uow.conn.execute(
            sa.update(s.deals)
            .where(s.deals.c.id == deal_id)
            .values(
                counterparty=deal.counterparty,
                price=deal.price,
                quantity=deal.qty,
                version=deal.version,
                confirmed=json.dumps(sorted(deal.confirmed)),
                status=deal.status.value,
                history=json.dumps(history),
                updated_at=iso(uow.now),
                **extra,
            )
        )

    def confirm(self, actor: Actor, key: str, deal_id: str, *, version: int) -> dict[str, Any]:
        """Either party confirms the current terms, freezing its side; both → a trade."""
        data = {"deal": deal_id, "version": version}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            r = self._deal_row(uow.conn, deal_id)
            inst, _mode, rules, prev = self._tradable(uow, r.instrument, m.Mode.BLOCK.value)
            m.check_price(int(r.price), prev, rules)  # the band may have moved since the quote
            deal = m.confirm(self._deal_state(r), member["entity_id"], version)
            party_side = r.side if member["entity_id"] == r.initiator else _other(r.side)
            extra: dict[str, Any] = {}
            if party_side == e.SELL:
                extra["seller_hold_id"] = self._freeze_now(
                    uow, member, inst, e.SELL, int(r.price), int(r.quantity), rules, r.id
                )[0]
            else:
                extra["buyer_cash_ref"] = self._freeze_now(
                    uow,
                    member,
                    inst,
                    e.BUY,
                    int(r.price),
                    int(r.quantity),
                    rules,
                    f"{r.id}:v{deal.version}",
                )[1]
            history = [
                *json.loads(r.history),
                {"by": member["entity_id"], "confirm": deal.version, "at": iso(uow.now)},
            ]
            if deal.status is m.DealStatus.DONE:
                r2 = dict(r._mapping, **extra)
                trade_id = f"{inst.code}:BLOCK:{r.id}"
                buyer = r.initiator if r.side == e.BUY else deal.counterparty
                seller = deal.counterparty if r.side == e.BUY else r.initiator
                self._block_trade(uow, inst, rules, trade_id, r2, str(buyer), str(seller))
                extra["trade_id"] = trade_id
            self._save_deal(uow, r.id, deal, history, **extra)
            journal.append(
                uow,
                "exchange.block_confirmed",
                actor.username,
                {"deal": r.id, "version": deal.version, "status": deal.status.value},
            )
            return self._deal(uow.conn, r.id)

        result: dict[str, Any] = self._publishing(
            lambda: idempotency.run(self.db, actor.username, key, "block_confirm", data, body)
        )
        return result

    def _publishing(self, run: Callable[[], Any]) -> Any:
        """Runs a command that may trade outside the books; its trades go out after commit."""
        with self._mem:
            self._published = []
            try:
                result = run()
                sent, self._published = self._published, []
            finally:
                self._published = []
        self.publish(sent)
        return result

    def _block_trade(
        self,
        uow: UnitOfWork,
        inst: Any,
        rules: m.ModeRules,
        trade_id: str,
        r: dict[str, Any],
        buyer: str,
        seller: str,
    ) -> None:
        accounts = {
            x.entity_id: x.account_id
            for x in uow.conn.execute(
                sa.select(s.members).where(s.members.c.entity_id.in_([buyer, seller]))
            )
        }
        value = int(r["price"]) * int(r["quantity"])
        self._insert_trade(
            uow,
            inst,
            m.Mode.BLOCK,
            trade_id,
            int(r["price"]),
            int(r["quantity"]),
            buyer,
            seller,
            accounts[buyer],
            accounts[seller],
            str(r["buyer_cash_ref"]),
            str(r["seller_hold_id"]),
            m.fee(value, rules.fee_bps),
            None,
            None,
            None,
        )

    def _insert_trade(
        self,
        uow: UnitOfWork,
        inst: Any,
        mode: m.Mode,
        trade_id: str,
        price: int,
        qty: int,
        buyer: str,
        seller: str,
        buyer_account: str,
        seller_account: str,
        cash_ref: str,
        hold_id: str,
        fee_each: int,
        buy_order: str | None,
        sell_order: str | None,
        taker_side: str | None,
    ) -> None:
        now = iso(uow.now)
        uow.conn.execute(
            sa.insert(s.trades).values(
                id=trade_id,
                instrument=inst.code,
                unit_class=inst.unit_class,
                mode=mode.value,
                trading_day=m.trading_day(uow.now).isoformat(),
                price=price,
                quantity=qty,
                buy_order=buy_order,
                sell_order=sell_order,
                buyer_entity=buyer,
                seller_entity=seller,
                buyer_account=buyer_account,
                seller_account=seller_account,
                buyer_cash_ref=cash_ref,
                seller_hold_id=hold_id,
                fee_buyer=fee_each,
                fee_seller=fee_each,
                taker_side=taker_side,
                at=now,
            )
        )
        self._published.append(
            {
                "type": "trade",
                "instrument": inst.code,
                "mode": mode.value,
                "id": trade_id,
                "price": yuan_from_fen(price),
                "quantity": qty,
                "taker_side": taker_side,
                "at": now,
            }
        )

    def withdraw(self, actor: Actor, key: str, deal_id: str) -> dict[str, Any]:
        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            r = self._deal_row(uow.conn, deal_id)
            if member["entity_id"] not in (r.initiator, r.counterparty):
                raise Forbidden("NOT_YOUR_DEAL", "not a party to this deal", "非该协议当事方")
            state = self._deal_state(r)
            if state.status not in (m.DealStatus.QUOTED, m.DealStatus.NEGOTIATING):
                raise Conflict("DEAL_CLOSED", f"this block deal is {r.status}", "该大宗协议已结束")
            inst = self._instrument_row(uow.conn, r.instrument)
            self._release_deal(uow, r, self._rules(inst)[m.Mode.BLOCK])
            history = [*json.loads(r.history), {"by": member["entity_id"], "withdraw": True}]
            uow.conn.execute(
                sa.update(s.deals)
                .where(s.deals.c.id == r.id)
                .values(status="WITHDRAWN", history=json.dumps(history), updated_at=iso(uow.now))
            )
            journal.append(uow, "exchange.block_withdrawn", actor.username, {"deal": r.id})
            return self._deal(uow.conn, r.id)

        return idempotency.run(
            self.db, actor.username, key, "block_withdraw", {"deal": deal_id}, body
        )

    def _expire_deals(self, uow: UnitOfWork, day: date) -> None:
        for r in uow.conn.execute(
            sa.select(s.deals).where(
                s.deals.c.status.in_(("QUOTED", "NEGOTIATING")),
                s.deals.c.trading_day <= day.isoformat(),
            )
        ).all():
            inst = self._instrument_row(uow.conn, r.instrument)
            self._release_deal(uow, r, self._rules(inst)[m.Mode.BLOCK])
            uow.conn.execute(
                sa.update(s.deals)
                .where(s.deals.c.id == r.id)
                .values(status="EXPIRED", updated_at=iso(uow.now))
            )
            journal.append(uow, "exchange.block_expired", EXCHANGE_USER, {"deal": r.id})

    def deals(
        self, actor: Actor, *, instrument: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Open quotes are public; a party also sees its own negotiations and history."""
        d = s.deals.c
        q = sa.select(d.id).order_by(d.created_at.desc()).limit(200)
        if instrument:
            q = q.where(d.instrument == instrument)
        if status:
            q = q.where(d.status == status)
        if not actor.is_operator:
            mine = actor.entity_id or ""
            q = q.where(sa.or_(d.status == "QUOTED", d.initiator == mine, d.counterparty == mine))
        with self.db.read() as ro:
            conn = ro.conn
            return [self._deal(conn, r.id) for r in conn.execute(q)]

    def deal(self, actor: Actor, deal_id: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            out = self._deal(conn, deal_id)
        if not (
            actor.is_operator
            or out["status"] == "QUOTED"
            or actor.entity_id in (out["initiator"], out["counterparty"])
        ):
            raise Forbidden("NOT_YOUR_DEAL", "not a party to this deal", "非该协议当事方")
        return out

    # ------------------------------------------------------------ one-sided auctions (单向竞价)

    def announce(
        self,
        actor: Actor,
        key: str,
        *,
        instrument: str,
        side: str,
        quantity: int,
        reserve_price: str,
        opens_at: str,
        closes_at: str,
    ) -> dict[str, Any]:
        data = {
            "instrument": instrument,
            "side": side,
            "quantity": quantity,
            "reserve_price": reserve_price,
            "opens_at": opens_at,
            "closes_at": closes_at,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            inst = self._instrument_row(uow.conn, instrument)
            rules_all = self._rules(inst)
            if m.Mode.AUCTION not in rules_all:
                raise Conflict(
                    "MODE_NOT_OFFERED", f"{instrument} has no auctions", "该产品不支持单向竞价"
                )
            rules = rules_all[m.Mode.AUCTION]
            if inst.status != "ACTIVE":
                raise Conflict("INSTRUMENT_SUSPENDED", f"{instrument} is suspended", "该产品已停牌")
            if side not in (e.BUY, e.SELL):
                raise InvalidInput("SIDE_INVALID", "side is B or S", "买卖方向须为 B 或 S")
            try:
                opens, closes = parse_iso(opens_at), parse_iso(closes_at)
            except (TypeError, ValueError):
                raise InvalidInput(
                    "WINDOW_INVALID",
                    "opens_at and closes_at: YYYY-MM-DDTHH:MM:SS.ffffffZ",
                    "竞价时间格式错误",
                ) from None
            if not uow.now <= closes or not opens < closes:
                raise InvalidInput(
                    "WINDOW_INVALID",
                    "the window must end in the future, after it opens",
                    "竞价时间窗口无效",
                )
            for moment in (opens, closes - timedelta(microseconds=1)):
                m.check_session(moment, rules, self._holidays(uow.conn))
            if m.trading_day(opens) != m.trading_day(closes):
                raise InvalidInput(
                    "WINDOW_INVALID",
                    "an auction opens and closes on one day",
                    "竞价须在同一交易日内",
                )
            prev = self._prev_close(uow.conn, inst, m.trading_day(opens))
            reserve = m.check_price(parse_price(reserve_price, "reserve_price"), prev, rules)
            q = m.check_quantity(quantity, rules)
            auction_id = new_id()
            hold_id, cash_ref = self._freeze_now(
                uow, member, inst, side, reserve, q, rules, auction_id
            )
            uow.conn.execute(
                sa.insert(s.auctions).values(
                    id=auction_id,
                    instrument=inst.code,
                    announcer=member["entity_id"],
                    side=side,
                    quantity=q,
                    reserve_price=reserve,
                    opens_at=iso(opens),
                    closes_at=iso(closes),
                    status="OPEN",
                    hold_id=hold_id,
                    cash_ref=cash_ref,
                    awarded=0,
                    trading_day=m.trading_day(opens).isoformat(),
                    created_at=iso(uow.now),
                )
            )
            journal.append(
                uow,
                "exchange.auction_announced",
                actor.username,
                {
                    "auction": auction_id,
                    "instrument": inst.code,
                    "side": side,
                    "qty": q,
                    "reserve": reserve,
                },
            )
            return self._auction(uow.conn, actor, auction_id)

        return idempotency.run(self.db, actor.username, key, "auction_announce", data, body)

    def bid(
        self, actor: Actor, key: str, auction_id: str, *, price: str, quantity: int
    ) -> dict[str, Any]:
        data = {"auction": auction_id, "price": price, "quantity": quantity}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            member = self._trader(uow.conn, actor)
            a = uow.conn.execute(sa.select(s.auctions).where(s.auctions.c.id == auction_id)).first()
            if a is None:
                raise NotFound("AUCTION_NOT_FOUND", f"no auction {auction_id}", "竞价不存在")
            if a.status != "OPEN" or not parse_iso(a.opens_at) <= uow.now < parse_iso(a.closes_at):
                raise Conflict(
                    "AUCTION_CLOSED", "this auction is not taking bids now", "该竞价不在申报时间内"
                )
            if member["entity_id"] == a.announcer:
                raise Conflict(
                    "SELF_TRADE", "you may not bid in your own auction", "不能参与本方竞价"
                )
            inst, _mode, rules, prev = self._tradable(uow, a.instrument, m.Mode.AUCTION.value)
            p = m.check_price(parse_price(price), prev, rules)
            if (p < int(a.reserve_price)) if a.side == e.SELL else (p > int(a.reserve_price)):
                raise InvalidInput(
                    "PRICE_BEYOND_RESERVE",
                    f"bids must be {'at or above' if a.side == e.SELL else 'at or below'} the reserve {yuan_from_fen(int(a.reserve_price))}",
                    "申报价格不满足底价要求",
                )
            q = m.check_quantity(quantity, rules)
            if q > int(a.quantity):
                raise InvalidInput(
                    "QUANTITY_OUTSIDE_LIMITS",
                    "a bid cannot exceed the auction",
                    "申报数量超过竞价数量",
                )
            bid_id = new_id()
            hold_id, cash_ref = self._freeze_now(
                uow, member, inst, _other(a.side), p, q, rules, bid_id
            )
            seq = 1 + int(
                uow.conn.execute(
                    sa.select(sa.func.count())
                    .select_from(s.bids)
                    .where(s.bids.c.auction_id == a.id)
                ).scalar_one()
            )
            uow.conn.execute(
                sa.insert(s.bids).values(
                    id=bid_id,
                    auction_id=a.id,
                    bidder=member["entity_id"],
                    account_id=member["account_id"],
                    price=p,
                    quantity=q,
                    seq=seq,
                    awarded=0,
                    hold_id=hold_id,
                    cash_ref=cash_ref,
                    created_at=iso(uow.now),
                )
            )
            journal.append(
                uow,
                "exchange.auction_bid",
                actor.username,
                {"auction": a.id, "bid": bid_id, "price": p, "qty": q},
            )
            return {
                "id": bid_id,
                "auction_id": a.id,
                "price": yuan_from_fen(p),
                "quantity": q,
                "seq": seq,
            }

        return idempotency.run(self.db, actor.username, key, "auction_bid", data, body)

    def finish_due_auctions(self) -> int:
        """Allocates every auction whose window has ended (a duty; settlement also runs it)."""

        def run() -> int:
            with self.db.uow() as uow:
                journal.lock_head(uow)
                n = self._finish_auctions(uow, until=uow.now)
                uow.commit()
            return n

        done: int = self._publishing(run)
        return done

    def _finish_auctions(self, uow: UnitOfWork, until: datetime) -> int:
        a_c = s.auctions.c
        q = sa.select(s.auctions).where(a_c.status == "OPEN", a_c.closes_at <= iso(until))
        due = uow.conn.execute(q.order_by(a_c.closes_at, a_c.id)).all()
        for a in due:
            self._finish(uow, a)
        return len(due)

    def _finish(self, uow: UnitOfWork, a: Any) -> None:
        inst = self._instrument_row(uow.conn, a.instrument)
        rules = self._rules(inst)[m.Mode.AUCTION]
        bid_rows = uow.conn.execute(
            sa.select(s.bids).where(s.bids.c.auction_id == a.id).order_by(s.bids.c.seq)
        ).all()
        awards = m.allocate(
            int(a.quantity),
            int(a.reserve_price),
            [m.Bid(b.id, b.bidder, int(b.price), int(b.quantity), int(b.seq)) for b in bid_rows],
            selling=a.side == e.SELL,
        )
        by_id = {b.id: b for b in bid_rows}
        announcer = self._member(uow.conn, a.announcer)
        awarded = 0
        for n, award in enumerate(awards, 1):
            b = by_id[award.bid_id]
            value = award.price * award.qty
            fee_each = m.fee(value, rules.fee_bps)
            if a.side == e.SELL:  # bidders buy: their cash freeze pays, the announcer's units go
                buyer, seller = b.bidder, a.announcer
                accounts = (b.account_id, announcer["account_id"])
                cash_ref, hold_id = b.cash_ref, a.hold_id
                # the bid froze price × its quantity; free what the award does not take
                self.cash.release(
                    uow,
                    b.cash_ref,
                    m.buy_freeze(award.price, int(b.quantity), rules.fee_bps) - (value + fee_each),
                    EXCHANGE_USER,
                )
            else:  # the announcer buys at each winning offer's price, below its reserve
                buyer, seller = a.announcer, b.bidder
                accounts = (announcer["account_id"], b.account_id)
                cash_ref, hold_id = a.cash_ref, b.hold_id
                self.registry.release_reserved(
                    uow, b.hold_id, int(b.quantity) - award.qty, EXCHANGE_USER, f"bid {b.id}"
                )
            self._insert_trade(
                uow,
                inst,
                m.Mode.AUCTION,
                f"{inst.code}:AUCTION:{a.id}:{n}",
                award.price,
                award.qty,
                buyer,
                seller,
                accounts[0],
                accounts[1],
                str(cash_ref),
                str(hold_id),
                fee_each,
                None,
                None,
                None,
            )
            uow.conn.execute(sa.update(s.bids).where(s.bids.c.id == b.id).values(awarded=award.qty))
            awarded += award.qty
        won = {x.bid_id for x in awards}
        for b in bid_rows:  # losing bids get everything back
            if b.id not in won:
                if b.cash_ref:
                    self.cash.release(uow, b.cash_ref, None, EXCHANGE_USER)
                if b.hold_id:
                    self.registry.release_reserved(
                        uow, b.hold_id, int(b.quantity), EXCHANGE_USER, f"bid {b.id}"
                    )
        if a.side == e.SELL:
            self.registry.release_reserved(
                uow, a.hold_id, int(a.quantity) - awarded, EXCHANGE_USER, f"auction {a.id} unsold"
            )
        else:
            spent = sum(x.price * x.qty + m.fee(x.price * x.qty, rules.fee_bps) for x in awards)
            self.cash.release(
                uow,
                a.cash_ref,
                m.buy_freeze(int(a.reserve_price), int(a.quantity), rules.fee_bps) - spent,
                EXCHANGE_USER,
            )
        uow.conn.execute(
            sa.update(s.auctions)
            .where(s.auctions.c.id == a.id)
            .values(status="DONE", awarded=awarded)
        )
        journal.append(
            uow,
            "exchange.auction_done",
            EXCHANGE_USER,
            {
                "auction": a.id,
                "awarded": awarded,
                "awards": [[x.bid_id, x.price, x.qty] for x in awards],
            },
        )

    def _auction(self, conn: Connection, actor: Actor, auction_id: str) -> dict[str, Any]:
        a = conn.execute(sa.select(s.auctions).where(s.auctions.c.id == auction_id)).first()
        if a is None:
            raise NotFound("AUCTION_NOT_FOUND", f"no auction {auction_id}", "竞价不存在")
        out: dict[str, Any] = {
            "id": a.id,
            "instrument": a.instrument,
            "announcer": a.announcer,
            "side": a.side,
            "quantity": int(a.quantity),
            "reserve_price": yuan_from_fen(int(a.reserve_price)),
            "opens_at": a.opens_at,
            "closes_at": a.closes_at,
            "status": a.status,
            "awarded": int(a.awarded),
        }
        rows = conn.execute(
            sa.select(s.bids).where(s.bids.c.auction_id == a.id).order_by(s.bids.c.seq)
        ).all()
        out["bids"] = len(rows)
        if a.status == "DONE":  # results are published: every bid's price, size and award
            out["results"] = [
                {
                    "seq": int(b.seq),
                    "price": yuan_from_fen(int(b.price)),
                    "quantity": int(b.quantity),
                    "awarded": int(b.awarded),
                    "mine": b.bidder == actor.entity_id,
                }
                for b in rows
            ]
        else:
            out["my_bids"] = [
                {"id": b.id, "price": yuan_from_fen(int(b.price)), "quantity": int(b.quantity)}
                for b in rows
                if b.bidder == actor.entity_id
            ]
        return out

    def auctions(self, actor: Actor, *, instrument: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(s.auctions.c.id).order_by(s.auctions.c.created_at.desc()).limit(200)
        if instrument:
            q = q.where(s.auctions.c.instrument == instrument)
        with self.db.read() as ro:
            conn = ro.conn
            return [self._auction(conn, actor, r.id) for r in conn.execute(q)]

    def auction(self, actor: Actor, auction_id: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            return self._auction(conn, actor, auction_id)

    # ------------------------------------------------------------ market data

    def depth(self, instrument: str, mode: str, levels: int = 5) -> dict[str, Any]:
        book_id = f"{instrument}:{mode}"
        with self._mem:
            book = self._current_book(book_id)
            return {"instrument": instrument, "mode": mode, **_depth_view(book, levels)}

    def _current_book(self, book_id: str) -> e._Book:
        """The book as of the last commit, from memory when no other process wrote since;
        else caught up from the log (replay is cheap; no write lock is needed to read it)."""
        with self.db.read() as ro:
            conn = ro.conn
            row = conn.execute(sa.select(s.books).where(s.books.c.id == book_id)).first()
            if row is None:
                raise NotFound("BOOK_NOT_FOUND", f"no book {book_id}", "订单簿不存在")
            if row.trading_day is not None and row.trading_day < m.trading_day(ro.now).isoformat():
                return e.new_book(row.mode)  # a past day's orders have expired, closed or not
            return self._caught_up(conn, row)

    def listings(self, instrument: str, side: str, levels: int = 5) -> list[dict[str, Any]]:
        """The orders a taker may choose from: every listing at the best five levels."""
        if side not in (e.BUY, e.SELL):
            raise InvalidInput("SIDE_INVALID", "side is B or S", "买卖方向须为 B 或 S")
        with self._mem:
            book = self._current_book(f"{instrument}:{m.Mode.LISTING.value}")
            book_side = book.bids if side == e.BUY else book.asks
            return [
                {
                    "id": str(o[0]),
                    "side": str(o[2]),
                    "price": yuan_from_fen(int(o[3])),  # type: ignore[call-overload]
                    "open": int(o[4]),  # type: ignore[call-overload]
                }
                for price in book_side.prices(min(levels, e.LISTING_LEVELS))
                for o in book_side.live_orders(price)
            ]

    def trades(
        self,
        actor: Actor,
        *,
        instrument: str | None = None,
        day: str | None = None,
        mine: bool = False,
        limit: int = 100,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        t = s.trades.c
        q = sa.select(s.trades).order_by(t.at.desc(), t.id.desc()).limit(limit)
        if instrument:
            q = q.where(t.instrument == instrument)
        if day:
            q = q.where(t.trading_day == parse_day(day).isoformat())
        if before:
            q = q.where(t.at < before)
        if mine:
            q = q.where(
                sa.or_(t.buyer_entity == actor.entity_id, t.seller_entity == actor.entity_id)
            )
        with self.db.read() as ro:
            conn = ro.conn
            rows = conn.execute(q).all()
        return [
            trade_dict(
                r,
                private=actor.is_operator or actor.entity_id in (r.buyer_entity, r.seller_entity),
            )
            for r in rows
        ]

    def orders(
        self,
        actor: Actor,
        *,
        instrument: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        o = s.orders.c
        q = sa.select(s.orders).order_by(o.created_at.desc(), o.id.desc()).limit(limit)
        if not actor.is_operator:
            q = q.where(o.entity_id == (actor.entity_id or ""))
        if instrument:
            q = q.where(o.instrument == instrument)
        if status:
            q = q.where(o.status == status)
        if before:
            q = q.where(o.created_at < before)
        with self.db.read() as ro:
            conn = ro.conn
            return [order_dict(r) for r in conn.execute(q)]

    def order(self, actor: Actor, order_id: str) -> dict[str, Any]:
        with self.db.read() as ro:
            conn = ro.conn
            r = conn.execute(sa.select(s.orders).where(s.orders.c.id == order_id)).first()
            if r is None:
                raise NotFound("ORDER_NOT_FOUND", f"no order {order_id}", "订单不存在")
            if not (actor.is_operator or r.entity_id == actor.entity_id):
                raise Forbidden("NOT_YOUR_ORDER", "not your order", "非本方订单")
            out = order_dict(r)
            t = s.trades.c
            # an order trades on its own day only: that day's trades of its instrument (the
            # day's index), not every trade there ever was
            out["trades"] = [
                trade_dict(x)
                for x in conn.execute(
                    sa.select(s.trades)
                    .where(
                        t.trading_day == r.trading_day,
                        t.instrument == r.instrument,
                        sa.or_(t.buy_order == order_id, t.sell_order == order_id),
                    )
                    .order_by(t.id)
                )
            ]
            return out

    def bars(
        self, instrument: str, *, interval: str, day: str | None = None, limit: int = 400
    ) -> list[dict[str, Any]]:
        """OHLCV: 1-minute bars of one day, or daily bars (the published days)."""
        with self.db.read() as ro:
            conn = ro.conn
            inst = self._instrument_row(conn, instrument)
            if interval == "1d":
                md = s.market_days.c
                rows = conn.execute(
                    sa.select(s.market_days)
                    .where(md.instrument == inst.code)
                    .order_by(md.day.desc())
                    .limit(limit)
                ).all()
                return [
                    {
                        "t": r.day,
                        "o": yuan_from_fen(int(r.open)) if r.open is not None else None,
                        "h": yuan_from_fen(int(r.high)) if r.high is not None else None,
                        "l": yuan_from_fen(int(r.low)) if r.low is not None else None,
                        "c": yuan_from_fen(int(r.close)),
                        "prev_close": yuan_from_fen(int(r.prev_close)),
                        "v": sum(json.loads(r.volume).values()),
                        "value": yuan_from_fen(sum(json.loads(r.value).values())),
                    }
                    for r in reversed(rows)
                ]
            if interval != "1m":
                raise InvalidInput("INTERVAL_INVALID", "interval is 1m or 1d", "周期须为 1m 或 1d")
            d = parse_day(day) if day else m.trading_day(self.db.clock())
            t = s.trades.c
            rows = conn.execute(
                sa.select(t.at, t.price, t.quantity)
                .where(t.instrument == inst.code, t.trading_day == d.isoformat())
                .order_by(t.at, t.id)
            ).all()
        bars = m.ohlcv(
            [(m.bar_minute(parse_iso(r.at)), int(r.price), int(r.quantity)) for r in rows]
        )
        return [
            {
                **b,
                "o": yuan_from_fen(b["o"]),
                "h": yuan_from_fen(b["h"]),
                "l": yuan_from_fen(b["l"]),
                "c": yuan_from_fen(b["c"]),
                "value": yuan_from_fen(b["value"]),
            }
            for b in bars[-limit:]
        ]

    def quote_summary(self, instrument: str, day: str | None = None) -> dict[str, Any]:
        """Today's (or a day's) open, high, low, last, VWAP close so far, volume and value."""
        with self.db.read() as ro:
            conn = ro.conn
            inst = self._instrument_row(conn, instrument)
            d = parse_day(day) if day else m.trading_day(self.db.clock())
            t = s.trades.c
            rows = conn.execute(
                sa.select(t.mode, t.price, t.quantity)
                .where(t.instrument == inst.code, t.trading_day == d.isoformat())
                .order_by(t.at, t.id)
            ).all()
            prev = self._prev_close(conn, inst, d)
        bar = m.day_bar(prev, [(r.mode, int(r.price), int(r.quantity)) for r in rows])
        change = bar.close - prev
        return {
            "instrument": inst.code,
            "day": d.isoformat(),
            "open": yuan_from_fen(bar.open) if bar.open is not None else None,
            "high": yuan_from_fen(bar.high) if bar.high is not None else None,
            "low": yuan_from_fen(bar.low) if bar.low is not None else None,
            "last": yuan_from_fen(int(rows[-1].price)) if rows else None,
            "close": yuan_from_fen(bar.close),
            "prev_close": yuan_from_fen(prev),
            "change": yuan_from_fen(change),
            "change_pct": f"{change * 100 / prev:.2f}" if prev else "0.00",
            "volume": {k: v for k, v in bar.volume.items()},
            "value": {k: yuan_from_fen(v) for k, v in bar.value.items()},
        }

    def index(self, limit: int = 400) -> list[dict[str, Any]]:
        with self.db.read() as ro:
            conn = ro.conn
            rows = conn.execute(
                sa.select(s.index_days).order_by(s.index_days.c.day.desc()).limit(limit)
            ).all()
        return [
            {
                "day": r.day,
                "price": yuan_from_fen(int(r.price)),
                "level": r.level,
                "weights": json.loads(r.weights),
            }
            for r in reversed(rows)
        ]

    def average_price(
        self, conn: Connection, first_day: date, last_day: date, unit_kind: str = "CEA"
    ) -> int | None:
        """Value-weighted average price (fen per t, half-up) of every mode's trades in a unit
        kind over a span of trading days: the monthly average a penalty is priced at."""
        t = s.trades.c
        volume, value = conn.execute(
            sa.select(sa.func.sum(t.quantity), sa.func.sum(t.price * t.quantity)).where(
                t.trading_day >= first_day.isoformat(),
                t.trading_day <= last_day.isoformat(),
                t.unit_class.like(f"{unit_kind}-%"),
            )
        ).one()
        return m.average_price(int(value or 0), int(volume or 0))

    def statistics(self, day: str | None = None) -> dict[str, Any]:
        """What an operator publishes: per mode and in total, the day's, the year's and the
        cumulative volume (t) and value (yuan), from the published market days."""
        with self.db.read() as ro:
            conn = ro.conn
            d = parse_day(day) if day else m.trading_day(self.db.clock())
            rows = conn.execute(
                sa.select(s.market_days.c.day, s.market_days.c.volume, s.market_days.c.value).where(
                    s.market_days.c.day <= d.isoformat()
                )
            ).all()
            t = s.trades.c
            today = conn.execute(
                sa.select(t.mode, sa.func.sum(t.quantity), sa.func.sum(t.price * t.quantity))
                .where(t.trading_day == d.isoformat())
                .group_by(t.mode)
            ).all()
        periods: dict[str, dict[str, list[int]]] = {"year": {}, "cumulative": {}}
        published_today = False
        for r in rows:
            keys = ["cumulative"] + (["year"] if r.day[:4] == d.isoformat()[:4] else [])
            published_today |= r.day == d.isoformat()
            vol, val = json.loads(r.volume), json.loads(r.value)
            for mode in vol:
                for k in keys:
                    acc = periods[k].setdefault(mode, [0, 0])
                    acc[0] += int(vol[mode])
                    acc[1] += int(val[mode])
        day_figs = {r[0]: [int(r[1]), int(r[2])] for r in today}
        if not published_today:  # the day is still open: add what has traded so far
            for mode, (v, x) in day_figs.items():
                for k in ("year", "cumulative"):
                    acc = periods[k].setdefault(mode, [0, 0])
                    acc[0] += v
                    acc[1] += x

        def average(value: int, volume: int) -> str | None:
            fen = m.average_price(value, volume)
            return None if fen is None else yuan_from_fen(fen)

        def view(figs: dict[str, list[int]]) -> dict[str, Any]:
            modes = {
                mode: {
                    "volume": v,
                    "value": yuan_from_fen(x),
                    "average": average(x, v),
                }
                for mode, (v, x) in sorted(figs.items())
            }
            tv, tx = sum(v for v, _ in figs.values()), sum(x for _, x in figs.values())
            return {
                "modes": modes,
                "total": {
                    "volume": tv,
                    "value": yuan_from_fen(tx),
                    "average": average(tx, tv),
                },
            }

        return {
            "day": d.isoformat(),
            "today": view(day_figs),
            "year": view(periods["year"]),
            "cumulative": view(periods["cumulative"]),
        }


class _CommandClock:
    """A writer process's clock: each batch runs at the time the API stamped on its last
    command, so both processes agree on sessions and trading days (and tests' clocks hold)."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        if self.at is None:
            raise RuntimeError("the order writer runs only stamped commands")
        return self.at


def order_writer(
    settings: Settings, *, carry: bool = True
) -> Callable[[Sequence[Command]], tuple[list[dict[str, Any] | DomainError], list[dict[str, Any]]]]:
    """Set-up inside the writer process (`WriterProcess`): its own engine and services.
    `carry` False reads everything afresh each batch (tests compare the two)."""
    clock = _CommandClock()
    db = Database(settings, clock)
    exchange = ExchangeService(db, RegistryService(db), CashService(db))
    exchange._carry_memo = carry  # every transaction on this engine is an order batch

    def run(
        commands: Sequence[Command],
    ) -> tuple[list[dict[str, Any] | DomainError], list[dict[str, Any]]]:
        clock.at = max(c.at for c in commands if c.at is not None)
        return exchange._write_batch(commands)

    return run


def _as_stored(order: dict[str, Any]) -> tuple[Any, ...]:
    """What a batch may change of an order: compared at the write with what was read."""
    return tuple(order[k] for k in s.ORDER_CHANGING)


def _quote_in_yuan(step: dict[str, Any]) -> dict[str, Any]:
    """A deal's quote or counter-quote as [price in yuan, tonnes]: stored in fen, shown as the
    deal's own price is."""
    for k in ("quote", "counter"):
        if k in step:
            price, quantity = step[k]
            return {**step, k: [yuan_from_fen(int(price)), int(quantity)]}
    return step


def _trade_id(book_id: str, trade_no: int) -> str:
    return f"{book_id}:{trade_no:010d}"


def _other(side: str) -> str:
    return e.SELL if side == e.BUY else e.BUY


def _depth_view(book: e._Book, levels: int = 5) -> dict[str, Any]:
    d = book.depth(levels)
    return {
        side: [{"price": yuan_from_fen(p), "quantity": q, "orders": n} for p, q, n in d[side]]
        for side in ("bids", "asks")
    }


class _Batch:
    """One order batch: what it read, what it decided, what it will write, in one transaction.

    Orders, reservations and cash live here in memory while the commands are decided; `write`
    stores the orders, trades, command log, freezes, journal entries and idempotency keys with
    bulk statements, in the order things happened."""

    def __init__(self, service: ExchangeService, uow: UnitOfWork, carried: _Carried | None) -> None:
        self.service, self.uow = service, uow
        self.at = iso(uow.now)  # one time for the whole batch, as text
        self.day = m.trading_day(uow.now).isoformat()
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self.orders: dict[str, dict[str, Any] | None] = {}  # what this batch reads or makes
        self.loaded: dict[str, tuple[Any, ...]] = {}  # their ORDER_CHANGING values as stored
        # open orders and books as earlier batches left them (the writer process's)
        self.known_orders: dict[str, dict[str, Any]]
        self.book_rows: dict[str, Any]
        if carried is None:
            self.units = service.registry.reservation_batch(uow, self.entries)
            self.cash = service.cash.batch(uow)
            self.known_orders, self.book_rows = {}, {}
        else:
            self.units, self.cash = carried.units, carried.cash
            self.units.resume(uow, self.entries)
            self.cash.resume(uow)
            self.known_orders, self.book_rows = carried.orders, carried.books
        self.new_orders: list[str] = []
        self.trades: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.books: dict[str, list[Any]] = {}  # id → [instrument, mode, trading day]
        self.keys: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        self.new_keys: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.depth_due: dict[tuple[str, str], e._Book] = {}

    # -------------------------------------------------------- idempotency

    def prepare(self, commands: Sequence[Command]) -> None:
        """What the batch's commands will read, loaded with a few statements instead of a few
        per command: their idempotency keys, members, registry accounts and balances, and cash
        accounts. What is not found here is looked up (and refused) as before."""
        conn = self.uow.conn
        pairs = {(c.actor.username, c.key) for c in commands if isinstance(c.key, str)}
        actors = sorted({a for a, _ in pairs})
        keys = sorted({k for _, k in pairs})
        for n in range(0, len(keys), 500):
            part = keys[n : n + 500]
            for r in fetch(conn, idempotency.KEYS_OF_ACTORS, actors=actors, keys=part):
                if (r.actor, r.key) in pairs:
                    self.keys[(r.actor, r.key)] = (r.request_hash, r.command, json.loads(r.result))
        traders = sorted(
            {
                c.actor.entity_id
                for c in commands
                if c.actor.entity_id and c.actor.role in TRADER_ROLES
            }
        )
        if not traders:
            return
        memo: dict[tuple[Any, ...], Any] = self.service._batch.memo
        members = {t: memo[("member", t)] for t in traders if ("member", t) in memo}
        missing = [t for t in traders if t not in members]
        if missing:
            found = self.service._members(conn, missing)
            memo.update({("member", entity_id): mb for entity_id, mb in found.items()})
            members.update(found)
        self.units.preload([mb["account_id"] for mb in members.values()])
        self.cash.preload_entities(traders)

    def once(
        self,
        c: Command,
        handler: Callable[[_Batch, Actor, dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """A retry with the same key and input returns the first result, even in one batch."""
        idempotency.check_key(c.key)
        digest = idempotency.request_hash(c.name, c.data)
        prior = self.keys.get((c.actor.username, c.key))
        if prior is not None:
            if prior[0] != digest or prior[1] != c.name:
                raise idempotency.key_reused()
            return prior[2]
        result = handler(self, c.actor, c.data)
        self.keys[(c.actor.username, c.key)] = (digest, c.name, result)
        self.new_keys.append(
            idempotency.key_row(c.actor.username, c.key, c.name, digest, result, self.at)
        )
        return result

    # -------------------------------------------------------- orders

    def order(self, oid: str, *, missing_ok: bool = False) -> Any:
        if oid not in self.orders:
            self.preload_orders([oid])
        r = self.orders[oid]
        if r is None and not missing_ok:
            raise NotFound("ORDER_NOT_FOUND", f"no order {oid}", "订单不存在")
        return r

    def preload_orders(self, oids: Sequence[str]) -> None:
        """These orders (the makers a command traded with), with their holds and freezes, in
        a few statements; an id not found is remembered as missing."""
        wanted = []
        for oid in dict.fromkeys(oids):
            if oid in self.orders:
                continue
            known = self.known_orders.pop(oid, None)
            if known is None:
                wanted.append(oid)
            else:
                self.orders[oid] = known
                self.loaded[oid] = _as_stored(known)
        if wanted:
            for oid in wanted:
                self.orders[oid] = None
            self._keep_orders(fetch(self.uow.conn, s.ORDERS_BY_ID, ids=wanted))

    def preload_open_orders(self, book_id: str) -> None:
        """Every open order of a book, with its holds and freezes, in a few statements."""
        self._keep_orders(fetch(self.uow.conn, s.OPEN_ORDERS_OF_BOOK, book_id=book_id))

    def _keep_orders(self, rows: Sequence[Any]) -> None:
        for row in rows:
            if self.orders.get(row.id) is None:
                self.orders[row.id] = r = row._asdict()
                self.loaded[row.id] = _as_stored(r)
        self.units.preload_holds([r.hold_id for r in rows if r.hold_id])
        self.cash.preload_freezes([r.cash_ref for r in rows if r.cash_ref])

    def new_order(
        self,
        actor: Actor,
        oid: str,
        book_id: str,
        inst: Any,
        mode: m.Mode,
        kind: str,
        member: dict[str, Any],
        side: str,
        price: int,
        qty: int,
        tif: str,
        hold_id: str | None,
        cash_ref: str | None,
        target: str | None,
    ) -> None:
        now = self.at
        self.orders[oid] = {
            "id": oid,
            "book_id": book_id,
            "instrument": inst.code,
            "mode": mode.value,
            "kind": kind,
            "entity_id": member["entity_id"],
            "account_id": member["account_id"],
            "side": side,
            "price": price,
            "quantity": qty,
            "open": qty,
            "filled": 0,
            "tif": tif,
            "status": "OPEN",
            "reason": "",
            "target": target,
            "hold_id": hold_id,
            "cash_ref": cash_ref,
            "trading_day": self.day,
            "seq": 0,
            "created_by": actor.username,
            "created_at": now,
            "updated_at": now,
        }
        self.new_orders.append(oid)

    def result(self, oid: str, trades: list[dict[str, Any]]) -> dict[str, Any]:
        """The order as it stands after this command, with the trades this command made."""
        out = order_dict(SimpleNamespace(**self.order(oid)))
        out["trades"] = [trade_dict(SimpleNamespace(**t)) for t in trades]
        return out

    # -------------------------------------------------------- write

    def write(self) -> None:
        conn = self.uow.conn
        self.units.write()  # holds first: orders and trades refer to them
        self.cash.write()
        if self.new_orders:
            insert_many(conn, s.orders, [self.order(i) for i in self.new_orders])
        fresh = set(self.new_orders)
        changed = []
        for oid, r in self.orders.items():
            if r is None or oid in fresh:
                continue
            now = _as_stored(r)
            if now != self.loaded[oid]:
                changed.append({"oid": oid, **{f"v_{k}": r[k] for k in s.ORDER_CHANGING}})
        if changed:
            execute_many(conn, s.ORDER_CHANGES, changed)
        if self.trades:
            insert_many(conn, s.trades, self.trades)
        if self.commands:
            insert_many(conn, s.book_commands, self.commands)
            books = self.service._books
            execute_many(
                conn,
                s.BOOK_POSITION,
                [
                    {"bid": i, "bseq": books[i].seq, "bday": v[2]}
                    for i, v in self.books.items()
                    if i in books
                ],
            )
        if self.entries:
            journal.append_many(self.uow, self.entries)
        if self.new_keys:
            insert_many(conn, idempotency.idempotency, self.new_keys)
        for (code, mode), book in self.depth_due.items():
            self.outbox.append(
                {"type": "depth", "instrument": code, "mode": mode, **_depth_view(book)}
            )

    def carry(self, stamp: Any, memo: dict[tuple[Any, ...], Any]) -> _Carried:
        """After the commit, what memory holds is what the database holds: the open orders,
        the reservations and cash, the books' positions. Orders no longer open are let go."""
        orders = self.known_orders
        for i, r in self.orders.items():
            if r is not None and r["status"] == "OPEN":
                orders[i] = r
            else:
                orders.pop(i, None)
        books = self.book_rows
        for i, (instrument, mode, day) in self.books.items():
            if i in self.service._books:
                books[i] = SimpleNamespace(
                    id=i,
                    instrument=instrument,
                    mode=mode,
                    seq=self.service._books[i].seq,
                    trading_day=day,
                )
        return _Carried(stamp, memo, self.units, self.cash, orders, books)


@dataclass
class _Carried:
    """What the writer process's last batch knew once it committed. The next batch starts
    from it instead of reading it again, but only if no other connection committed in between
    (`commit_stamp`, SQLite's data_version): then nothing but this writer changed the database."""

    stamp: Any
    memo: dict[tuple[Any, ...], Any]  # members, instruments, holidays, the market's flag
    units: ReservationBatch
    cash: CashBatch
    orders: dict[str, dict[str, Any]]  # the open orders it read or made, as stored
    books: dict[str, Any]  # id → the `books` row as it stands
