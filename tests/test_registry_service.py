"""Registry use cases end to end through RegistryService on a real database (SQLite or PostgreSQL).

Every test ends with `verify(db)` where it changed the ledger. The bad-input table checks that each
rejected command raises the right DomainError code AND leaves every ledger table as it was.

This module shadows the conftest `db` fixture with one that has a controllable clock and takes
settings from a `db_settings` fixture (parametrize it to change them); conftest's `world` builds
on top of it. Password hashing is made cheap here so `world` costs milliseconds, not seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from carbonhub.core import idempotency, journal
from carbonhub.core.auth import Actor, Role
from carbonhub.core.db import Database
from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from carbonhub.core.ids import new_id
from carbonhub.core.settings import Settings
from carbonhub.registry import model as m
from carbonhub.registry import store as s
from carbonhub.registry.service import RegistryService
from carbonhub.verify import verify
from tests.conftest import World

CEA = "CEA-2023"
START = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)


class Clock:
    """A settable clock that ticks one millisecond per reading (so entry times stay distinct)."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "carbonhub.core.auth._hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def no_fsync_wait(database: Database) -> None:
    """Durability is not under test here: on PostgreSQL let commits return before the WAL
    flush (synchronous_commit=off, per session) so a test costs less. SQLite is left as is."""
    if database.backend == "postgresql":

        @sa.event.listens_for(database.engine, "connect")
        def _no_wait(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def db(db_url: str, clock: Clock, db_settings: dict[str, Any]) -> Iterator[Database]:
    settings = Settings(database_url=db_url, check_invariants=True, **db_settings)
    database = Database(settings, clock=clock)
    no_fsync_wait(database)
    RegistryService(database).bootstrap()
    yield database
    database.dispose()


# ---------------------------------------------------------------- helpers


def snapshot(db: Database) -> dict[str, Any]:
    """Everything a rejected command must leave alone."""

    def rows(table: sa.Table, *order: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in uow.conn.execute(sa.select(table).order_by(*order))]

    with db.uow() as uow:
        head = uow.conn.execute(sa.select(journal.journal_head)).first()
        b = s.unit_blocks
        return {
            "journal_head": tuple(head) if head else None,
            "journal_rows": uow.conn.execute(
                sa.select(sa.func.count()).select_from(journal.journal)
            ).scalar_one(),
            "holdings": rows(s.holdings, s.holdings.c.account_id, s.holdings.c.unit_class),
            "unit_blocks": sorted(
                (r.account_id, r.unit_class, r.origin, r.batch, r.start, r.end)
                for r in uow.conn.execute(sa.select(b))
            ),
            "transfers": rows(s.transfers, s.transfers.c.id),
            "holds": rows(s.holds, s.holds.c.id),
            "accounts": rows(s.accounts, s.accounts.c.id),
            "issuance_batches": rows(
                s.issuance_batches, s.issuance_batches.c.unit_class, s.issuance_batches.c.batch
            ),
            "tainted": rows(s.tainted_ranges, s.tainted_ranges.c.id),
            "trusted": rows(s.trusted_accounts, s.trusted_accounts.c.account_id),
            "flags": rows(s.registry_flags, s.registry_flags.c.key),
            "idempotency": rows(idempotency.idempotency, idempotency.idempotency.c.key),
        }


def expect(exc: type[DomainError], code: str, fn: Callable[[], object]) -> DomainError:
    with pytest.raises(exc) as info:
        fn()
    assert info.value.code == code, f"{info.value.code} ≠ {code}: {info.value.message}"
    return info.value


def holding(w: World, account: str, unit_class: str = CEA) -> dict[str, int]:
    for h in w.reg.account(w.op1, account)["holdings"]:
        if h["unit_class"] == unit_class:
            return h
    return {"unit_class": unit_class, "posted": 0, "pending": 0, "held": 0, "available": 0}


def posted(w: World, account: str, unit_class: str = CEA) -> int:
    return holding(w, account, unit_class)["posted"]


def blocks(w: World, account: str, unit_class: str = CEA) -> list[tuple[int, int]]:
    return [(b["start"], b["end"]) for b in w.reg.blocks(w.op1, account, unit_class)]


def system(w: World, type_: m.AccountType) -> str:
    with w.db.uow() as uow:
        return w.reg.system_account(uow.conn, type_)


def assert_verifies(w: World) -> None:
    report = verify(w.db)
    assert report.ok, report.problems


def open_account(w: World, holder: Actor, type_: str = "TRADING", name: str = "acct") -> str:
    acc = w.reg.request_account(holder, w.key(), type=type_, name=name)["id"]
    w.reg.decide_account(w.op1 if holder is not w.op1 else w.op2, w.key(), acc, approve=True)
    return acc


def operator(name: str) -> Actor:
    return Actor(new_id(), name, Role.OPERATOR, None)


# ---------------------------------------------------------------- issuance (maker–checker)


def test_issuance_needs_a_second_operator(world: World) -> None:
    w = world
    iss = system(w, m.AccountType.ISSUANCE)
    before = posted(w, iss)
    t = w.reg.issue(w.op1, w.key(), unit_class="CCER-2021-P0001", quantity=5_000, origin="P0001")
    assert t["status"] == "PENDING" and t["from_account"] is None and t["to_account"] == iss
    assert posted(w, iss, "CCER-2021-P0001") == 0
    assert [q["id"] for q in w.reg.approval_queue(w.op2)] == [t["id"]]

    expect(Forbidden, "SAME_OPERATOR", lambda: w.reg.approve(w.op1, w.key(), t["id"]))
    expect(Forbidden, "ROLE_NOT_ALLOWED", lambda: w.reg.approve(w.alice, w.key(), t["id"]))
    done = w.reg.approve(w.op2, w.key(), t["id"])
    assert done["status"] == "COMPLETED" and done["approved_by"] == "op2"
    assert posted(w, iss, "CCER-2021-P0001") == 5_000
    assert blocks(w, iss, "CCER-2021-P0001") == [(1, 5_000)]
    assert posted(w, iss) == before
    assert w.reg.approval_queue(w.op2) == []
    expect(Conflict, "TRANSFER_NOT_PENDING", lambda: w.reg.approve(w.op2, w.key(), t["id"]))

    # a second batch of the same class numbers from 1 again, as batch 2
    t2 = w.reg.issue(w.op2, w.key(), unit_class="CCER-2021-P0001", quantity=10, origin="P0001")
    w.reg.approve(w.op1, w.key(), t2["id"])
    detail = w.reg.transfer_detail(w.op1, t2["id"])
    assert detail["blocks"] == [m.Block("CCER-2021-P0001", "P0001", 2, 1, 10).serial("CN")]
    totals = {r["unit_class"]: r for r in w.reg.totals()}
    assert totals["CCER-2021-P0001"]["issued"] == 5_010
    assert totals[CEA] == {
        "unit_class": CEA,
        "issued": 1_000_000,
        "unallocated": 500_000,
        "held": 500_000,
        "surrendered": 0,
        "cancelled": 0,
    }
    assert_verifies(w)


def test_issuance_refusals(world: World) -> None:
    w = world
    expect(
        Forbidden,
        "INITIATOR_NOT_ALLOWED",
        lambda: w.reg.issue(w.alice, w.key(), unit_class=CEA, quantity=1),
    )
    expect(
        InvalidInput,
        "ORIGIN_INVALID",
        lambda: w.reg.issue(
            w.op1, w.key(), unit_class="CCER-2021-P0001", quantity=1, origin="P0002"
        ),
    )
    expect(
        InvalidInput,
        "ORIGIN_INVALID",
        lambda: w.reg.issue(w.op1, w.key(), unit_class=CEA, quantity=1, origin="42-00"),
    )
    expect(
        InvalidInput,
        "UNIT_CLASS_MALFORMED",
        lambda: w.reg.issue(w.op1, w.key(), unit_class="CEA-2023-X", quantity=1),
    )


def test_void_of_a_pending_issuance(world: World) -> None:
    w = world
    t = w.reg.issue(w.op1, w.key(), unit_class=CEA, quantity=7)
    expect(
        Forbidden, "NOT_ACCOUNT_HOLDER", lambda: w.reg.void(w.alice, w.key(), t["id"], reason="no")
    )
    expect(InvalidInput, "FIELD_REQUIRED", lambda: w.reg.void(w.op2, w.key(), t["id"], reason=""))
    v = w.reg.void(w.op2, w.key(), t["id"], reason="wrong figure")
    assert v["status"] == "VOIDED"
    expect(Conflict, "TRANSFER_NOT_PENDING", lambda: w.reg.approve(w.op2, w.key(), t["id"]))
    assert {r["unit_class"]: r for r in w.reg.totals()}[CEA]["issued"] == 1_000_000
    assert_verifies(w)


# ---------------------------------------------------------------- allocation


def test_allocation_single_and_bulk_with_approve_batch(world: World) -> None:
    w = world
    iss = system(w, m.AccountType.ISSUANCE)
    custody = open_account(w, w.bob, "CUSTODY", "custody")
    rows = [(w.a, CEA, 100), (w.b, CEA, 200), (custody, CEA, 300)]
    seen: list[int] = []
    batch_key = w.key()
    res = w.reg.allocate_bulk(w.op1, batch_key, rows, progress=seen.append)
    batch_key = res["batch_ref"]  # the batch reference is the registry's, not the caller's key
    assert res["count"] == 3 and res["quantity"] == 600 and seen == [1, 2, 3]
    assert holding(w, iss)["pending"] == 600 and holding(w, iss)["available"] == 500_000 - 600
    assert posted(w, w.b) == 0

    expect(Forbidden, "SAME_OPERATOR", lambda: w.reg.approve_batch(w.op1, w.key(), batch_key))
    assert posted(w, w.b) == 0  # all or nothing: the refusal rolled every row back
    ok = w.reg.approve_batch(w.op2, w.key(), batch_key)
    assert ok == {"batch_ref": batch_key, "approved": 3}
    assert (posted(w, w.a), posted(w, w.b), posted(w, custody)) == (500_100, 200, 300)
    assert holding(w, iss) == {
        "unit_class": CEA,
        "posted": 499_400,
        "pending": 0,
        "held": 0,
        "available": 499_400,
    }
    expect(NotFound, "BATCH_NOT_FOUND", lambda: w.reg.approve_batch(w.op2, w.key(), batch_key))
    assert_verifies(w)


def test_bulk_allocation_is_all_or_none(world: World) -> None:
    w = world
    before = snapshot(w.db)
    unknown = m.make_account_id("CN", m.AccountType.HOLDING, 999)
    err = expect(
        NotFound,
        "ACCOUNT_NOT_FOUND",
        lambda: w.reg.allocate_bulk(
            w.op1, w.key(), [(w.a, CEA, 1), (unknown, CEA, 1), (w.b, CEA, 1)]
        ),
    )
    assert err.message.startswith("row 2:")
    err = expect(
        InvalidInput,
        "QUANTITY_NOT_POSITIVE",
        lambda: w.reg.allocate_bulk(w.op1, w.key(), [(w.a, CEA, 1), (w.b, CEA, 0)]),
    )
    assert err.message.startswith("row 2:")
    expect(InvalidInput, "BULK_EMPTY", lambda: w.reg.allocate_bulk(w.op1, w.key(), []))
    expect(
        Conflict,
        "INSUFFICIENT_AVAILABLE",
        lambda: w.reg.allocate_bulk(w.op1, w.key(), [(w.a, CEA, 400_000), (w.b, CEA, 100_001)]),
    )
    assert snapshot(w.db) == before


def test_allocation_to_restricted_but_not_suspended(world: World) -> None:
    w = world
    w.reg.change_status(w.op1, w.key(), w.b, status="RESTRICTED", reason="audit")
    t = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=10)
    w.reg.approve(w.op2, w.key(), t["id"])
    assert posted(w, w.b) == 10
    w.reg.change_status(w.op1, w.key(), w.b, status="SUSPENDED", reason="court")
    expect(
        Conflict,
        "RECEIVER_STATUS",
        lambda: w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=10),
    )
    expect(
        Forbidden,
        "INITIATOR_NOT_ALLOWED",
        lambda: w.reg.allocate(w.alice, w.key(), to_account=w.a, unit_class=CEA, quantity=10),
    )
    assert_verifies(w)


# ---------------------------------------------------------------- transfer


def test_transfer_moves_the_upper_range_and_sender_keeps_the_lower(world: World) -> None:
    w = world
    assert blocks(w, w.a) == [(500_001, 1_000_000)]
    t = w.reg.transfer(
        w.alice,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=1_000,
        reason="sale",
    )
    assert t["status"] == "COMPLETED" and t["op"] == "TRANSFER" and t["journal_seq"] > 0
    assert blocks(w, w.a) == [(500_001, 999_000)]
    assert blocks(w, w.b) == [(999_001, 1_000_000)]
    assert (posted(w, w.a), posted(w, w.b)) == (499_000, 1_000)
    # a second move from b splits again; the first block is never renumbered
    w.reg.transfer(w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=1)
    assert blocks(w, w.b) == [(999_001, 999_999)]
    assert blocks(w, w.a) == [(500_001, 999_000), (1_000_000, 1_000_000)]
    # the holder sees their own transfers, not others'
    assert {x["id"] for x in w.reg.transfers(w.bob)} >= {t["id"]}
    expect(Forbidden, "NOT_ACCOUNT_HOLDER", lambda: w.reg.account(w.bob, w.a))
    expect(Forbidden, "NOT_ACCOUNT_HOLDER", lambda: w.reg.blocks(w.verifier, w.a))
    assert_verifies(w)


def test_transfer_between_own_accounts_and_holder_roles(world: World) -> None:
    w = world
    trading = open_account(w, w.alice)
    w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=trading, unit_class=CEA, quantity=50
    )
    expect(
        Forbidden,
        "INITIATOR_NOT_ALLOWED",
        lambda: w.reg.transfer(
            w.verifier, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1
        ),
    )
    expect(
        InvalidInput,
        "SAME_ACCOUNT",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.a, unit_class=CEA, quantity=1
        ),
    )
    expect(
        InvalidInput,
        "RECEIVER_TYPE_NOT_ALLOWED",
        lambda: w.reg.transfer(
            w.alice,
            w.key(),
            from_account=w.a,
            to_account=system(w, m.AccountType.SURRENDER),
            unit_class=CEA,
            quantity=1,
        ),
    )
    expect(
        NotFound,
        "UNIT_CLASS_NOT_FOUND",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class="CEA-2030", quantity=1
        ),
    )
    assert posted(w, trading) == 50
    assert_verifies(w)


def test_transfer_many_rolls_back_only_the_failing_command(world: World) -> None:
    w = world
    k1, k2, k3 = w.key(), w.key(), w.key()
    cmds = [
        {"key": k1, "from_account": w.a, "to_account": w.b, "unit_class": CEA, "quantity": 10},
        {"key": k2, "from_account": w.a, "to_account": w.b, "unit_class": CEA, "quantity": 10**9},
        {"key": k3, "from_account": w.a, "to_account": w.b, "unit_class": CEA, "quantity": 5},
    ]
    res = w.reg.transfer_many(w.alice, cmds)
    assert res[0]["status"] == "COMPLETED" and res[2]["status"] == "COMPLETED"
    assert res[1]["error"] == "INSUFFICIENT_AVAILABLE"
    assert posted(w, w.b) == 15
    again = w.reg.transfer_many(w.alice, [cmds[0], dict(cmds[2], quantity=6)])
    assert again[0] == res[0] and again[1]["error"] == "IDEMPOTENCY_KEY_REUSED"
    assert posted(w, w.b) == 15
    assert_verifies(w)


# ---------------------------------------------------------------- trusted list, limit, delay

DELAYED = {"untrusted_delay_minutes": 60, "untrusted_transfer_limit_t": 10_000}


@pytest.mark.parametrize("db_settings", [DELAYED])
def test_untrusted_limit_and_delay_then_trusted_list(world: World, clock: Clock) -> None:
    w = world
    expect(
        Conflict,
        "UNTRUSTED_LIMIT_EXCEEDED",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10_001
        ),
    )
    t = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10_000
    )
    assert t["status"] == "PENDING" and t["execute_after"] > t["created_at"]
    assert holding(w, w.a) == {
        "unit_class": CEA,
        "posted": 500_000,
        "pending": 10_000,
        "held": 0,
        "available": 490_000,
    }
    assert posted(w, w.b) == 0
    clock.advance(minutes=59)
    assert w.reg.run_due() == {"posted": 0, "expired": 0, "failed": 0}
    clock.advance(minutes=2)
    assert w.reg.run_due() == {"posted": 1, "expired": 0, "failed": 0}
    assert posted(w, w.b) == 10_000 and holding(w, w.a)["pending"] == 0
    assert w.reg.transfer_detail(w.alice, t["id"])["status"] == "COMPLETED"

    # own accounts are always trusted; others once listed
    trading = open_account(w, w.alice)
    own = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=trading, unit_class=CEA, quantity=20_000
    )
    assert own["status"] == "COMPLETED"
    expect(
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
        lambda: w.reg.set_trusted(w.bob, w.key(), w.a, w.b, trusted=True),
    )
    expect(
        InvalidInput,
        "SAME_ACCOUNT",
        lambda: w.reg.set_trusted(w.alice, w.key(), w.a, w.a, trusted=True),
    )
    w.reg.set_trusted(w.alice, w.key(), w.a, w.b, trusted=True)
    assert [r["trusted_id"] for r in w.reg.trusted_list(w.alice, w.a)] == [w.b]
    big = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=50_000
    )
    assert big["status"] == "COMPLETED" and big["execute_after"] is None
    # trust is one way: b → a is still delayed
    back = w.reg.transfer(
        w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=1
    )
    assert back["status"] == "PENDING"
    w.reg.set_trusted(w.alice, w.key(), w.a, w.b, trusted=False)
    assert w.reg.trusted_list(w.alice, w.a) == []
    expect(
        Conflict,
        "UNTRUSTED_LIMIT_EXCEEDED",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=50_000
        ),
    )
    # the holder may void their own delayed transfer; the receiver may not
    expect(
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
        lambda: w.reg.void(w.alice, w.key(), back["id"], reason="not mine"),
    )
    assert w.reg.void(w.bob, w.key(), back["id"], reason="changed mind")["status"] == "VOIDED"
    assert_verifies(w)


@pytest.mark.parametrize("db_settings", [DELAYED])
def test_run_due_posts_delayed_and_expires_unapproved(world: World, clock: Clock) -> None:
    w = world
    iss = system(w, m.AccountType.ISSUANCE)
    delayed = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=100
    )
    alloc = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=1_000)
    late = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=7)
    assert holding(w, iss)["pending"] == 1_007
    clock.advance(days=7, minutes=1)
    # past its expiry but not yet swept: approval is refused all the same
    expect(Conflict, "PROPOSAL_EXPIRED", lambda: w.reg.approve(w.op2, w.key(), late["id"]))
    assert w.reg.run_due() == {"posted": 1, "expired": 2, "failed": 0}
    assert w.reg.transfer_detail(w.op1, delayed["id"])["status"] == "COMPLETED"
    assert w.reg.transfer_detail(w.op1, alloc["id"])["status"] == "EXPIRED"
    expect(Conflict, "TRANSFER_NOT_PENDING", lambda: w.reg.approve(w.op2, w.key(), alloc["id"]))
    assert holding(w, iss)["pending"] == 0 and posted(w, w.b) == 100
    assert w.reg.run_due() == {"posted": 0, "expired": 0, "failed": 0}
    assert_verifies(w)


# ---------------------------------------------------------------- holds


def test_pledge_released_by_the_lien_holder_only(world: World) -> None:
    w = world
    h = w.reg.place_hold(
        w.alice,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=400_000,
        kind="PLEDGE",
        lien_holder=w.entity_b,
        reason="loan 1",
    )
    assert h["status"] == "ACTIVE" and h["created_by"] == "alice"
    assert holding(w, w.a) == {
        "unit_class": CEA,
        "posted": 500_000,
        "pending": 0,
        "held": 400_000,
        "available": 100_000,
    }
    expect(
        Conflict,
        "INSUFFICIENT_AVAILABLE",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=100_001
        ),
    )
    expect(
        Conflict,
        "INSUFFICIENT_AVAILABLE",
        lambda: w.reg.surrender(
            w.alice,
            w.key(),
            from_account=w.a,
            unit_class=CEA,
            quantity=100_001,
            compliance_year=2023,
        ),
    )
    expect(
        Conflict,
        "INSUFFICIENT_AVAILABLE",
        lambda: w.reg.place_hold(
            w.alice,
            w.key(),
            account_id=w.a,
            unit_class=CEA,
            quantity=100_001,
            kind="PLEDGE",
            lien_holder=w.entity_b,
        ),
    )
    # bob (the lien holder) sees the hold; the pledgor cannot lift it
    assert [x["id"] for x in w.reg.holds_list(w.bob)] == [h["id"]]
    expect(Forbidden, "RELEASE_NOT_ALLOWED", lambda: w.reg.release_hold(w.alice, w.key(), h["id"]))
    r = w.reg.release_hold(w.bob, w.key(), h["id"], reason="repaid")
    assert r["status"] == "RELEASED" and r["released_by"] == "bob"
    assert holding(w, w.a)["available"] == 500_000
    expect(Conflict, "HOLD_NOT_ACTIVE", lambda: w.reg.release_hold(w.op1, w.key(), h["id"]))
    expect(NotFound, "HOLD_NOT_FOUND", lambda: w.reg.release_hold(w.op1, w.key(), new_id()))
    # a pledge names an existing lien holder; holders pledge only their own accounts
    expect(
        InvalidInput,
        "LIEN_HOLDER_REQUIRED",
        lambda: w.reg.place_hold(
            w.alice, w.key(), account_id=w.a, unit_class=CEA, quantity=1, kind="PLEDGE"
        ),
    )
    expect(
        InvalidInput,
        "LIEN_HOLDER_REQUIRED",
        lambda: w.reg.place_hold(
            w.alice,
            w.key(),
            account_id=w.a,
            unit_class=CEA,
            quantity=1,
            kind="PLEDGE",
            lien_holder=new_id(),
        ),
    )
    expect(
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
        lambda: w.reg.place_hold(
            w.bob,
            w.key(),
            account_id=w.a,
            unit_class=CEA,
            quantity=1,
            kind="PLEDGE",
            lien_holder=w.entity_b,
        ),
    )
    expect(
        InvalidInput,
        "HOLD_KIND_UNKNOWN",
        lambda: w.reg.place_hold(
            w.alice, w.key(), account_id=w.a, unit_class=CEA, quantity=1, kind="LIEN"
        ),
    )
    assert_verifies(w)


def test_judicial_freeze_by_operator_only(world: World) -> None:
    w = world
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.place_hold(
            w.alice,
            w.key(),
            account_id=w.a,
            unit_class=CEA,
            quantity=1,
            kind="JUDICIAL_FREEZE",
            legal_basis="(2025)鄂01执1号",
        ),
    )
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.place_hold(
            w.op1, w.key(), account_id=w.a, unit_class=CEA, quantity=1, kind="JUDICIAL_FREEZE"
        ),
    )
    f = w.reg.place_hold(
        w.op1,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=1_000,
        kind="JUDICIAL_FREEZE",
        legal_basis="(2025)鄂01执1号",
    )
    assert holding(w, w.a)["held"] == 1_000
    expect(Forbidden, "RELEASE_NOT_ALLOWED", lambda: w.reg.release_hold(w.alice, w.key(), f["id"]))
    expect(Forbidden, "RELEASE_NOT_ALLOWED", lambda: w.reg.release_hold(w.bob, w.key(), f["id"]))
    w.reg.release_hold(w.op2, w.key(), f["id"], reason="order lifted")
    assert holding(w, w.a)["held"] == 0
    # an exchange reservation is the holder's own to release
    r = w.reg.place_hold(
        w.alice, w.key(), account_id=w.a, unit_class=CEA, quantity=5, kind="EXCHANGE_RESERVATION"
    )
    w.reg.release_hold(w.alice, w.key(), r["id"])
    # no hold on a system account
    expect(
        Conflict,
        "ACCOUNT_NOT_HOLDABLE",
        lambda: w.reg.place_hold(
            w.op1,
            w.key(),
            account_id=system(w, m.AccountType.ISSUANCE),
            unit_class=CEA,
            quantity=1,
            kind="JUDICIAL_FREEZE",
            legal_basis="x",
        ),
    )
    assert_verifies(w)


def test_holds_expire(world: World, clock: Clock) -> None:
    w = world
    expires = (clock.now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    h = w.reg.place_hold(
        w.alice,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=9,
        kind="EXCHANGE_RESERVATION",
        expires_at=expires,
    )
    expect(
        InvalidInput,
        "EXPIRY_INVALID",
        lambda: w.reg.place_hold(
            w.alice,
            w.key(),
            account_id=w.a,
            unit_class=CEA,
            quantity=9,
            kind="EXCHANGE_RESERVATION",
            expires_at="tomorrow",
        ),
    )
    assert w.reg.release_expired_holds() == 0
    clock.advance(hours=2)
    assert w.reg.release_expired_holds() == 1
    assert w.reg.holds_list(w.op1, status="RELEASED")[0]["id"] == h["id"]
    assert holding(w, w.a)["held"] == 0
    assert_verifies(w)


def test_court_transfer_consumes_a_freeze(world: World) -> None:
    w = world
    f = w.reg.place_hold(
        w.op1,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=1_000,
        kind="JUDICIAL_FREEZE",
        legal_basis="(2025)鄂01执1号",
    )
    p = w.reg.place_hold(
        w.alice,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=10,
        kind="PLEDGE",
        lien_holder=w.entity_b,
    )
    w.reg.change_status(w.op1, w.key(), w.a, status="SUSPENDED", reason="court order")
    expect(
        Conflict,
        "SENDER_STATUS",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1
        ),
    )
    expect(
        Forbidden,
        "INITIATOR_NOT_ALLOWED",
        lambda: w.reg.court_transfer(
            w.alice,
            w.key(),
            from_account=w.a,
            to_account=w.b,
            unit_class=CEA,
            quantity=1,
            legal_basis="x",
            hold_id=f["id"],
        ),
    )
    expect(
        Conflict,
        "HOLD_NOT_APPLICABLE",
        lambda: w.reg.court_transfer(
            w.op1,
            w.key(),
            from_account=w.a,
            to_account=w.b,
            unit_class=CEA,
            quantity=1,
            legal_basis="x",
            hold_id=p["id"],
        ),
    )
    expect(
        Conflict,
        "HOLD_NOT_APPLICABLE",
        lambda: w.reg.court_transfer(
            w.op1,
            w.key(),
            from_account=w.a,
            to_account=w.b,
            unit_class=CEA,
            quantity=1,
            legal_basis="x",
            hold_id=new_id(),
        ),
    )
    expect(
        Conflict,
        "HOLD_TOO_SMALL",
        lambda: w.reg.court_transfer(
            w.op1,
            w.key(),
            from_account=w.a,
            to_account=w.b,
            unit_class=CEA,
            quantity=1_001,
            legal_basis="x",
            hold_id=f["id"],
        ),
    )
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.court_transfer(
            w.op1,
            w.key(),
            from_account=w.a,
            to_account=w.b,
            unit_class=CEA,
            quantity=1,
            legal_basis=" ",
            hold_id=f["id"],
        ),
    )

    t = w.reg.court_transfer(
        w.op1,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=1_000,
        legal_basis="(2025)鄂01执1号",
        hold_id=f["id"],
    )
    assert t["status"] == "PENDING" and t["hold_id"] == f["id"]
    assert holding(w, w.a) == {
        "unit_class": CEA,
        "posted": 500_000,
        "pending": 1_000,
        "held": 10,
        "available": 498_990,
    }
    assert w.reg.holds_list(w.op1, account_id=w.a, status="CONSUMED")[0]["id"] == f["id"]
    expect(Forbidden, "SAME_OPERATOR", lambda: w.reg.approve(w.op1, w.key(), t["id"]))
    done = w.reg.approve(w.op2, w.key(), t["id"])
    assert done["status"] == "COMPLETED"
    assert (posted(w, w.a), posted(w, w.b)) == (499_000, 1_000)
    assert holding(w, w.a)["held"] == 10
    assert_verifies(w)


def test_void_of_a_court_transfer_restores_the_freeze(world: World) -> None:
    w = world
    f = w.reg.place_hold(
        w.op1,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=300,
        kind="JUDICIAL_FREEZE",
        legal_basis="(2025)鄂01执2号",
    )
    t = w.reg.court_transfer(
        w.op1,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=300,
        legal_basis="(2025)鄂01执2号",
        hold_id=f["id"],
    )
    assert holding(w, w.a)["held"] == 0
    w.reg.void(w.op2, w.key(), t["id"], reason="order withdrawn")
    assert holding(w, w.a) == {
        "unit_class": CEA,
        "posted": 500_000,
        "pending": 0,
        "held": 300,
        "available": 499_700,
    }
    assert w.reg.holds_list(w.op1, account_id=w.a)[0]["status"] == "ACTIVE"
    assert_verifies(w)


# ---------------------------------------------------------------- surrender, cancel, reversal


def test_surrender_and_its_reversal_within_the_window(world: World, clock: Clock) -> None:
    w = world
    sur = system(w, m.AccountType.SURRENDER)
    t = w.reg.surrender(
        w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=123_456, compliance_year=2023
    )
    assert t["status"] == "COMPLETED" and t["compliance_year"] == 2023 and t["to_account"] == sur
    assert posted(w, sur) == 123_456 and posted(w, w.a) == 376_544
    moved = w.reg.transfer_detail(w.alice, t["id"])["blocks"]
    expect(
        InvalidInput,
        "COMPLIANCE_YEAR_INVALID",
        lambda: w.reg.surrender(
            w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, compliance_year=23
        ),
    )
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.reverse(w.alice, w.key(), transfer_id=t["id"], reason="oops"),
    )

    clock.advance(days=13)
    r = w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="wrong year")
    assert r["status"] == "PENDING" and r["reverses"] == t["id"]
    assert (r["from_account"], r["to_account"], r["quantity"]) == (sur, w.a, 123_456)
    expect(Forbidden, "SAME_OPERATOR", lambda: w.reg.approve(w.op1, w.key(), r["id"]))
    w.reg.approve(w.op2, w.key(), r["id"])
    assert posted(w, sur) == 0 and posted(w, w.a) == 500_000
    # the very serials that went out came back
    assert w.reg.transfer_detail(w.op1, r["id"])["blocks"] == moved
    expect(
        Conflict,
        "ALREADY_REVERSED",
        lambda: w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="again"),
    )
    expect(
        Conflict,
        "NOT_REVERSIBLE",
        lambda: w.reg.reverse(w.op1, w.key(), transfer_id=r["id"], reason="reverse the reversal"),
    )
    assert_verifies(w)


def test_reversal_refused_after_the_window(world: World, clock: Clock) -> None:
    w = world
    t = w.reg.surrender(
        w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=10, compliance_year=2023
    )
    c = w.reg.cancel(
        w.alice,
        w.key(),
        from_account=w.a,
        unit_class=CEA,
        quantity=10,
        beneficiary="Wuhan Marathon 2025",
    )
    al = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=10)
    al = w.reg.approve(w.op2, w.key(), al["id"])
    clock.advance(days=14, minutes=1)
    before = snapshot(w.db)
    for done in (t, c):
        expect(
            Conflict,
            "REVERSAL_WINDOW_PASSED",
            lambda d=done: w.reg.reverse(w.op1, w.key(), transfer_id=d["id"], reason="late"),
        )
    assert snapshot(w.db) == before
    # allocations have 30 days
    r = w.reg.reverse(w.op1, w.key(), transfer_id=al["id"], reason="over-allocated")
    w.reg.approve(w.op2, w.key(), r["id"])
    assert posted(w, w.b) == 0
    clock.advance(days=30)
    al2 = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=10)
    w.reg.approve(w.op2, w.key(), al2["id"])
    clock.advance(days=30, seconds=1)
    expect(
        Conflict,
        "REVERSAL_WINDOW_PASSED",
        lambda: w.reg.reverse(w.op1, w.key(), transfer_id=al2["id"], reason="late"),
    )
    assert_verifies(w)


def test_what_cannot_be_reversed(world: World) -> None:
    w = world
    tr = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=5
    )
    iss = w.reg.transfers(w.op1, op="ISSUE")[0]
    pending = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=5)
    for t in (tr, iss, pending):
        expect(
            Conflict,
            "NOT_REVERSIBLE",
            lambda t=t: w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="no"),
        )
    expect(
        NotFound,
        "TRANSFER_NOT_FOUND",
        lambda: w.reg.reverse(w.op1, w.key(), transfer_id=new_id(), reason="no"),
    )


def test_cancel_with_beneficiary(world: World) -> None:
    w = world
    can = system(w, m.AccountType.CANCELLATION)
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.cancel(
            w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, beneficiary="  "
        ),
    )
    expect(
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
        lambda: w.reg.cancel(
            w.bob, w.key(), from_account=w.a, unit_class=CEA, quantity=1, beneficiary="x"
        ),
    )
    t = w.reg.cancel(
        w.alice,
        w.key(),
        from_account=w.a,
        unit_class=CEA,
        quantity=2_500,
        beneficiary="武汉马拉松 2025",
        reason="event offset",
    )
    assert t["status"] == "COMPLETED" and t["beneficiary"] == "武汉马拉松 2025"
    assert posted(w, can) == 2_500
    assert {r["unit_class"]: r for r in w.reg.totals()}[CEA]["cancelled"] == 2_500
    r = w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="double entry")
    w.reg.approve(w.op2, w.key(), r["id"])
    assert posted(w, can) == 0 and posted(w, w.a) == 500_000
    assert_verifies(w)


def test_restricted_account_may_surrender_but_not_transfer(world: World) -> None:
    w = world
    w.reg.change_status(w.op1, w.key(), w.a, status="RESTRICTED", reason="non-compliance")
    expect(
        Conflict,
        "SENDER_STATUS",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1
        ),
    )
    expect(
        Conflict,
        "SENDER_STATUS",
        lambda: w.reg.cancel(
            w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, beneficiary="x"
        ),
    )
    w.reg.surrender(
        w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, compliance_year=2023
    )
    w.reg.change_status(w.op1, w.key(), w.a, status="SUSPENDED", reason="court")
    expect(
        Conflict,
        "SENDER_STATUS",
        lambda: w.reg.surrender(
            w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, compliance_year=2023
        ),
    )
    assert_verifies(w)


# ---------------------------------------------------------------- security controls


def test_tainted_serial_flag_blocks_a_transfer(world: World) -> None:
    w = world
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=100)
    (bob_block,) = w.reg.blocks(w.bob, w.b)
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.flag_serials(w.alice, w.key(), serial=bob_block["serial"], reason="stolen"),
    )
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.flag_serials(w.op1, w.key(), serial=bob_block["serial"], reason=""),
    )
    w.reg.flag_serials(w.op1, w.key(), serial=bob_block["serial"], reason="phishing theft")
    assert w.reg.blocks(w.bob, w.b)[0]["tainted"] is True
    assert w.reg.serial(w.op1, bob_block["serial"])["tainted"] is True
    before = snapshot(w.db)
    for fn in (
        lambda: w.reg.transfer(
            w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=1
        ),
        lambda: w.reg.surrender(
            w.bob, w.key(), from_account=w.b, unit_class=CEA, quantity=1, compliance_year=2023
        ),
    ):
        expect(Conflict, "UNITS_TAINTED", fn)
    assert snapshot(w.db) == before
    # alice's own units are not affected
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=7)
    expect(
        Conflict,
        "UNITS_TAINTED",
        lambda: w.reg.transfer(
            w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=8
        ),
    )
    w.reg.transfer(w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=7)
    # clearing the flag frees them
    expect(
        NotFound,
        "FLAG_NOT_FOUND",
        lambda: w.reg.flag_serials(
            w.op1,
            w.key(),
            serial=m.Block(CEA, "420000", 1, 1, 2).serial("CN"),
            reason="x",
            tainted=False,
        ),
    )
    w.reg.flag_serials(
        w.op1, w.key(), serial=bob_block["serial"], reason="recovered", tainted=False
    )
    w.reg.transfer(w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=100)
    assert posted(w, w.b) == 0
    assert_verifies(w)


def test_taint_on_one_serial_leaves_the_rest_of_the_block_movable(world: World) -> None:
    w = world
    one = m.Block(CEA, "420000", 1, 1_000_000, 1_000_000).serial("CN")
    w.reg.flag_serials(w.op1, w.key(), serial=one, reason="stolen")
    w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1_000
    )
    assert posted(w, w.b) == 1_000


def test_market_suspension_blocks_transfer_but_not_allocation_or_surrender(
    world: World,
) -> None:
    w = world
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.set_market_suspended(w.alice, w.key(), suspended=True, reason="x"),
    )
    w.reg.set_market_suspended(w.op1, w.key(), suspended=True, reason="registry breach")
    assert w.reg.market_suspended() is True
    expect(
        Conflict,
        "MARKET_SUSPENDED",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1
        ),
    )
    expect(
        Conflict,
        "MARKET_SUSPENDED",
        lambda: w.reg.cancel(
            w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=1, beneficiary="x"
        ),
    )
    al = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=50)
    w.reg.approve(w.op2, w.key(), al["id"])
    w.reg.surrender(
        w.bob, w.key(), from_account=w.b, unit_class=CEA, quantity=20, compliance_year=2023
    )
    i = w.reg.issue(w.op1, w.key(), unit_class=CEA, quantity=1)
    w.reg.approve(w.op2, w.key(), i["id"])
    assert posted(w, w.b) == 30
    w.reg.set_market_suspended(w.op2, w.key(), suspended=False, reason="resolved")
    assert w.reg.market_suspended() is False
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1)
    assert posted(w, w.b) == 31
    assert_verifies(w)


@pytest.mark.parametrize("db_settings", [DELAYED])
def test_delayed_transfer_waits_while_the_market_is_suspended(world: World, clock: Clock) -> None:
    w = world
    t = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10
    )
    w.reg.set_market_suspended(w.op1, w.key(), suspended=True, reason="breach")
    clock.advance(hours=2)
    assert w.reg.run_due() == {"posted": 0, "expired": 0, "failed": 0}
    w.reg.set_market_suspended(w.op1, w.key(), suspended=False, reason="over")
    assert w.reg.run_due() == {"posted": 1, "expired": 0, "failed": 0}
    assert w.reg.transfer_detail(w.op1, t["id"])["status"] == "COMPLETED"
    assert_verifies(w)


# ---------------------------------------------------------------- accounts


def test_account_opening_by_request_and_approval(world: World) -> None:
    w = world
    acc = w.reg.request_account(w.alice, w.key(), type="TRADING", name="  交易账户 ")
    assert acc["status"] == "REQUESTED" and acc["entity_id"] == w.entity_a
    assert acc["name"] == "交易账户" and acc["opened_at"] is None
    m.parse_account_id(acc["id"])
    expect(
        Conflict,
        "RECEIVER_STATUS",
        lambda: w.reg.transfer(
            w.alice, w.key(), from_account=w.a, to_account=acc["id"], unit_class=CEA, quantity=1
        ),
    )
    expect(
        Conflict,
        "ACCOUNT_NOT_DECIDED",
        lambda: w.reg.change_status(w.op1, w.key(), acc["id"], status="OPEN", reason="x"),
    )
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.decide_account(w.alice, w.key(), acc["id"], approve=True),
    )
    opened = w.reg.decide_account(w.op2, w.key(), acc["id"], approve=True)
    assert opened["status"] == "OPEN" and opened["approved_by"] == "op2" and opened["opened_at"]

    # an operator opening for an entity cannot approve their own request
    carrier = w.auth.create_entity("湖北碳资产公司", "enterprise", "91420100MA4KX0003C")
    req = w.reg.request_account(
        w.op1, w.key(), type="HOLDING", name="湖北碳资产", entity_id=carrier["id"]
    )
    assert req["entity_id"] == carrier["id"] and req["requested_by"] == "op1"
    expect(
        Forbidden,
        "SAME_OPERATOR",
        lambda: w.reg.decide_account(w.op1, w.key(), req["id"], approve=True),
    )
    rej = w.reg.decide_account(w.op2, w.key(), req["id"], approve=False)
    assert rej["status"] == "REJECTED" and rej["closed_at"]
    expect(
        Conflict,
        "ACCOUNT_NOT_REQUESTED",
        lambda: w.reg.decide_account(w.op2, w.key(), req["id"], approve=True),
    )
    # a rejected request frees the entity's holding slot
    again = w.reg.request_account(
        w.op1, w.key(), type="HOLDING", name="湖北碳资产", entity_id=carrier["id"]
    )
    assert again["status"] == "REQUESTED"

    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.request_account(w.verifier, w.key(), type="HOLDING", name="v"),
    )
    expect(
        InvalidInput,
        "ACCOUNT_TYPE_UNKNOWN",
        lambda: w.reg.request_account(w.alice, w.key(), type="SAVINGS", name="x"),
    )
    expect(
        InvalidInput,
        "ACCOUNT_TYPE_SYSTEM",
        lambda: w.reg.request_account(w.op1, w.key(), type="ISSUANCE", name="x"),
    )
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.request_account(w.alice, w.key(), type="CUSTODY", name=" "),
    )
    expect(
        NotFound,
        "ENTITY_NOT_FOUND",
        lambda: w.reg.request_account(w.op1, w.key(), type="CUSTODY", name="x", entity_id=new_id()),
    )
    mine = {a["id"] for a in w.reg.list_accounts(w.alice)}
    assert mine == {w.a, acc["id"]}
    assert_verifies(w)


def test_one_holding_account_per_entity(world: World) -> None:
    w = world
    expect(
        Conflict,
        "HOLDING_ACCOUNT_EXISTS",
        lambda: w.reg.request_account(w.alice, w.key(), type="HOLDING", name="second"),
    )
    expect(
        Conflict,
        "HOLDING_ACCOUNT_EXISTS",
        lambda: w.reg.request_account(
            w.op1, w.key(), type="HOLDING", name="second", entity_id=w.entity_b
        ),
    )
    # other types are not limited
    open_account(w, w.alice, "TRADING", "t1")
    open_account(w, w.alice, "TRADING", "t2")


def test_status_changes_and_closed_never_reopens(world: World) -> None:
    w = world
    for status in ("SUSPENDED", "RESTRICTED", "OPEN", "CLOSURE_PENDING"):
        assert (
            w.reg.change_status(w.op1, w.key(), w.a, status=status, reason="x")["status"] == status
        )
    expect(
        Conflict,
        "ACCOUNT_NOT_EMPTY",
        lambda: w.reg.change_status(w.op1, w.key(), w.a, status="CLOSED", reason="x"),
    )
    expect(
        Forbidden,
        "ROLE_NOT_ALLOWED",
        lambda: w.reg.change_status(w.alice, w.key(), w.a, status="OPEN", reason="x"),
    )
    expect(
        InvalidInput,
        "STATUS_UNKNOWN",
        lambda: w.reg.change_status(w.op1, w.key(), w.a, status="GONE", reason="x"),
    )
    expect(
        InvalidInput,
        "FIELD_REQUIRED",
        lambda: w.reg.change_status(w.op1, w.key(), w.a, status="OPEN", reason=""),
    )
    expect(
        Conflict,
        "SYSTEM_ACCOUNT",
        lambda: w.reg.change_status(
            w.op1, w.key(), system(w, m.AccountType.SURRENDER), status="SUSPENDED", reason="x"
        ),
    )

    w.reg.change_status(w.op1, w.key(), w.b, status="CLOSURE_PENDING", reason="merger")
    w.reg.change_status(w.op1, w.key(), w.b, status="CLOSED", reason="merger")
    closed = w.reg.account(w.op1, w.b)
    assert closed["status"] == "CLOSED" and closed["closed_at"]
    for status in ("OPEN", "RESTRICTED", "SUSPENDED", "CLOSURE_PENDING", "CLOSED"):
        expect(
            Conflict,
            "STATUS_TRANSITION_NOT_ALLOWED",
            lambda st=status: w.reg.change_status(w.op1, w.key(), w.b, status=st, reason="reopen"),
        )
    expect(
        Conflict,
        "ACCOUNT_NOT_REQUESTED",
        lambda: w.reg.decide_account(w.op2, w.key(), w.b, approve=True),
    )
    expect(
        Conflict,
        "RECEIVER_STATUS",
        lambda: w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=1),
    )
    # closing freed bob's holding slot: a new holding account may be opened
    new = open_account(w, w.bob, "HOLDING", "武钢 新持有账户")
    assert new != w.b
    assert_verifies(w)


def test_units_or_holds_block_closure_until_moved_out(world: World) -> None:
    w = world
    trading = open_account(w, w.bob)
    w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=trading, unit_class=CEA, quantity=5
    )
    h = w.reg.place_hold(
        w.bob, w.key(), account_id=trading, unit_class=CEA, quantity=5, kind="EXCHANGE_RESERVATION"
    )
    w.reg.change_status(w.op1, w.key(), trading, status="CLOSURE_PENDING", reason="x")
    expect(
        Conflict,
        "ACCOUNT_NOT_EMPTY",
        lambda: w.reg.change_status(w.op1, w.key(), trading, status="CLOSED", reason="x"),
    )
    # CLOSURE_PENDING lets nothing out: reopen, empty it, close
    w.reg.change_status(w.op1, w.key(), trading, status="OPEN", reason="empty it first")
    w.reg.release_hold(w.bob, w.key(), h["id"])
    w.reg.transfer(w.bob, w.key(), from_account=trading, to_account=w.b, unit_class=CEA, quantity=5)
    w.reg.change_status(w.op1, w.key(), trading, status="CLOSURE_PENDING", reason="x")
    assert (
        w.reg.change_status(w.op1, w.key(), trading, status="CLOSED", reason="x")["status"]
        == "CLOSED"
    )
    assert_verifies(w)


# ---------------------------------------------------------------- serial lookup


def test_serial_lookup_returns_the_holding_block_and_full_history(world: World) -> None:
    w = world
    t1 = w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=1_000
    )
    t2 = w.reg.transfer(
        w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=400
    )
    # bob kept 999,001–999,600; serial 999,500 is there, moved by issue, allocation and t1
    found = w.reg.serial(w.bob, "CN-CEA-2023-420000-1-999500")
    assert [(b["account_id"], b["start"], b["end"]) for b in found["blocks"]] == [
        (w.b, 999_001, 999_600)
    ]
    assert found["blocks"][0]["serial"] == m.Block(CEA, "420000", 1, 999_001, 999_600).serial("CN")
    assert [h["op"] for h in found["history"]] == ["ISSUE", "ALLOCATE", "TRANSFER"]
    assert found["history"][-1]["id"] == t1["id"]
    assert [h["range"] for h in found["history"]] == [
        [1, 1_000_000],
        [500_001, 1_000_000],
        [999_001, 1_000_000],
    ]
    assert found["tainted"] is False
    # serial 999,700 went back to alice with t2
    back = w.reg.serial(w.op1, "CN-CEA-2023-420000-1-999700")
    assert back["blocks"][0]["account_id"] == w.a
    assert back["history"][-1]["id"] == t2["id"]
    # a range spanning two holders lists both blocks for the operator
    span = m.Block(CEA, "420000", 1, 999_000, 999_001).serial("CN")
    assert {b["account_id"] for b in w.reg.serial(w.op1, span)["blocks"]} == {w.a, w.b}
    expect(Forbidden, "NOT_ACCOUNT_HOLDER", lambda: w.reg.serial(w.alice, span))
    expect(
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
        lambda: w.reg.serial(w.alice, "CN-CEA-2023-420000-1-999500"),
    )
    expect(NotFound, "SERIAL_NOT_FOUND", lambda: w.reg.serial(w.op1, "CN-CEA-2023-420000-2-1"))
    expect(InvalidInput, "SERIAL_MALFORMED", lambda: w.reg.serial(w.op1, "CN-CEA-2023"))
    expect(
        InvalidInput,
        "SERIAL_CHECK_DIGITS",
        lambda: w.reg.serial(w.op1, "CN-CEA-2023-420000-1-1-100-95"),
    )


# ---------------------------------------------------------------- idempotency


def test_same_key_same_input_returns_the_first_result_and_does_nothing_twice(
    world: World,
) -> None:
    w = world
    k = w.key()
    first = w.reg.transfer(
        w.alice, k, from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10
    )
    before = snapshot(w.db)
    again = w.reg.transfer(
        w.alice, k, from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10
    )
    assert again == first
    assert snapshot(w.db) == before
    assert posted(w, w.b) == 10
    # the key belongs to its actor: bob's identical key is a separate command
    w.reg.transfer(w.bob, k, from_account=w.b, to_account=w.a, unit_class=CEA, quantity=1)
    assert posted(w, w.b) == 9

    ka = w.key()
    i = w.reg.issue(w.op1, ka, unit_class=CEA, quantity=3)
    kb = w.reg.approve(w.op2, ka, i["id"])
    assert w.reg.approve(w.op2, ka, i["id"]) == kb
    assert {r["unit_class"]: r for r in w.reg.totals()}[CEA]["issued"] == 1_000_003


def test_a_failed_command_leaves_its_key_free(world: World) -> None:
    w = world
    k = w.key()
    expect(
        Conflict,
        "INSUFFICIENT_AVAILABLE",
        lambda: w.reg.transfer(
            w.bob, k, from_account=w.b, to_account=w.a, unit_class=CEA, quantity=5
        ),
    )
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=5)
    t = w.reg.transfer(w.bob, k, from_account=w.b, to_account=w.a, unit_class=CEA, quantity=5)
    assert t["status"] == "COMPLETED"


# ---------------------------------------------------------------- bad input changes nothing

UNKNOWN = m.make_account_id("CN", m.AccountType.HOLDING, 9_999_999)
GOOD_BLOCK = m.Block(CEA, "420000", 1, 500_001, 500_010).serial("CN")


def _closed_trading(w: World) -> str:
    acc = open_account(w, w.bob)
    w.reg.change_status(w.op1, w.key(), acc, status="CLOSURE_PENDING", reason="x")
    w.reg.change_status(w.op1, w.key(), acc, status="CLOSED", reason="x")
    return acc


def _transfer(w: World, **kw: Any) -> Callable[[], object]:
    args: dict[str, Any] = {
        "from_account": w.a,
        "to_account": w.b,
        "unit_class": CEA,
        "quantity": 10,
    }
    args.update(kw)
    actor = args.pop("actor", w.alice)
    key = args.pop("key", None) or w.key()
    return lambda: w.reg.transfer(actor, key, **args)


def _reused_key(w: World) -> Callable[[], object]:
    k = w.key()
    w.reg.transfer(w.alice, k, from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10)
    return _transfer(w, key=k, quantity=11)


def _reused_key_other_command(w: World) -> Callable[[], object]:
    k = w.key()
    w.reg.transfer(w.alice, k, from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10)
    return lambda: w.reg.surrender(
        w.alice, k, from_account=w.a, unit_class=CEA, quantity=10, compliance_year=2023
    )


def _self_approval(w: World) -> Callable[[], object]:
    t = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=10)
    return lambda: w.reg.approve(w.op1, w.key(), t["id"])


def _self_batch_approval(w: World) -> Callable[[], object]:
    k = w.reg.allocate_bulk(w.op1, w.key(), [(w.a, CEA, 1), (w.b, CEA, 2)])["batch_ref"]
    return lambda: w.reg.approve_batch(w.op1, w.key(), k)


def _self_account_approval(w: World) -> Callable[[], object]:
    acc = w.reg.request_account(w.op1, w.key(), type="CUSTODY", name="c", entity_id=w.entity_a)
    return lambda: w.reg.decide_account(w.op1, w.key(), acc["id"], approve=True)


def _after_hold(w: World, held: int, quantity: int) -> Callable[[], object]:
    """A fresh account of alice's with 100 t, `held` of them reserved."""
    acc = open_account(w, w.alice)
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=acc, unit_class=CEA, quantity=100)
    w.reg.place_hold(
        w.alice, w.key(), account_id=acc, unit_class=CEA, quantity=held, kind="EXCHANGE_RESERVATION"
    )
    return _transfer(w, from_account=acc, quantity=quantity)


def _wrong_cc(acc: str) -> str:
    cc = int(acc[-2:])
    return f"{acc[:-2]}{(cc + 1) % 100:02d}"


BAD: list[tuple[str, Callable[[World], Callable[[], object]], type[DomainError], str]] = [
    ("negative", lambda w: _transfer(w, quantity=-5), InvalidInput, "QUANTITY_NOT_POSITIVE"),
    ("zero", lambda w: _transfer(w, quantity=0), InvalidInput, "QUANTITY_NOT_POSITIVE"),
    ("fractional", lambda w: _transfer(w, quantity=1.5), InvalidInput, "QUANTITY_NOT_INTEGER"),
    ("whole float", lambda w: _transfer(w, quantity=2.0), InvalidInput, "QUANTITY_NOT_INTEGER"),
    ("bool", lambda w: _transfer(w, quantity=True), InvalidInput, "QUANTITY_NOT_INTEGER"),
    ("string", lambda w: _transfer(w, quantity="10"), InvalidInput, "QUANTITY_NOT_INTEGER"),
    ("none", lambda w: _transfer(w, quantity=None), InvalidInput, "QUANTITY_NOT_INTEGER"),
    ("huge", lambda w: _transfer(w, quantity=10**13), InvalidInput, "QUANTITY_TOO_LARGE"),
    (
        "issue fractional",
        lambda w: lambda: w.reg.issue(w.op1, w.key(), unit_class=CEA, quantity=0.5),
        InvalidInput,
        "QUANTITY_NOT_INTEGER",
    ),
    (
        "issue huge",
        lambda w: lambda: w.reg.issue(w.op1, w.key(), unit_class=CEA, quantity=10**13),
        InvalidInput,
        "QUANTITY_TOO_LARGE",
    ),
    (
        "allocate negative",
        lambda w: (
            lambda: w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=-1)
        ),
        InvalidInput,
        "QUANTITY_NOT_POSITIVE",
    ),
    (
        "surrender bool",
        lambda w: (
            lambda: w.reg.surrender(
                w.alice,
                w.key(),
                from_account=w.a,
                unit_class=CEA,
                quantity=False,
                compliance_year=2023,
            )
        ),
        InvalidInput,
        "QUANTITY_NOT_INTEGER",
    ),
    (
        "cancel string",
        lambda w: (
            lambda: w.reg.cancel(
                w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity="1", beneficiary="x"
            )
        ),
        InvalidInput,
        "QUANTITY_NOT_INTEGER",
    ),
    (
        "hold zero",
        lambda w: (
            lambda: w.reg.place_hold(
                w.alice,
                w.key(),
                account_id=w.a,
                unit_class=CEA,
                quantity=0,
                kind="PLEDGE",
                lien_holder=w.entity_b,
            )
        ),
        InvalidInput,
        "QUANTITY_NOT_POSITIVE",
    ),
    (
        "hold huge",
        lambda w: (
            lambda: w.reg.place_hold(
                w.op1,
                w.key(),
                account_id=w.a,
                unit_class=CEA,
                quantity=10**13,
                kind="JUDICIAL_FREEZE",
                legal_basis="x",
            )
        ),
        InvalidInput,
        "QUANTITY_TOO_LARGE",
    ),
    (
        "court fractional",
        lambda w: (
            lambda: w.reg.court_transfer(
                w.op1,
                w.key(),
                from_account=w.a,
                to_account=w.b,
                unit_class=CEA,
                quantity=1.5,
                legal_basis="x",
            )
        ),
        InvalidInput,
        "QUANTITY_NOT_INTEGER",
    ),
    ("unknown receiver", lambda w: _transfer(w, to_account=UNKNOWN), NotFound, "ACCOUNT_NOT_FOUND"),
    ("unknown sender", lambda w: _transfer(w, from_account=UNKNOWN), NotFound, "ACCOUNT_NOT_FOUND"),
    (
        "allocate to unknown",
        lambda w: (
            lambda: w.reg.allocate(w.op1, w.key(), to_account=UNKNOWN, unit_class=CEA, quantity=1)
        ),
        NotFound,
        "ACCOUNT_NOT_FOUND",
    ),
    (
        "hold on unknown",
        lambda w: (
            lambda: w.reg.place_hold(
                w.op1,
                w.key(),
                account_id=UNKNOWN,
                unit_class=CEA,
                quantity=1,
                kind="JUDICIAL_FREEZE",
                legal_basis="x",
            )
        ),
        NotFound,
        "ACCOUNT_NOT_FOUND",
    ),
    (
        "closed receiver",
        lambda w: _transfer(w, to_account=_closed_trading(w)),
        Conflict,
        "RECEIVER_STATUS",
    ),
    (
        "closed sender",
        lambda w: _transfer(w, actor=w.bob, from_account=_closed_trading(w)),
        Conflict,
        "SENDER_STATUS",
    ),
    (
        "not the holder",
        lambda w: _transfer(w, actor=w.bob, to_account=open_account(w, w.bob)),
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
    ),
    (
        "surrender not the holder",
        lambda w: (
            lambda: w.reg.surrender(
                w.bob, w.key(), from_account=w.a, unit_class=CEA, quantity=1, compliance_year=2023
            )
        ),
        Forbidden,
        "NOT_ACCOUNT_HOLDER",
    ),
    (
        "more than available",
        lambda w: _transfer(w, quantity=500_001),
        Conflict,
        "INSUFFICIENT_AVAILABLE",
    ),
    (
        "more than available after a hold",
        lambda w: _after_hold(w, 95, 6),
        Conflict,
        "INSUFFICIENT_AVAILABLE",
    ),
    (
        "surrender too much",
        lambda w: (
            lambda: w.reg.surrender(
                w.alice,
                w.key(),
                from_account=w.a,
                unit_class=CEA,
                quantity=500_001,
                compliance_year=2023,
            )
        ),
        Conflict,
        "INSUFFICIENT_AVAILABLE",
    ),
    (
        "allocate more than unallocated",
        lambda w: (
            lambda: w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=500_001)
        ),
        Conflict,
        "INSUFFICIENT_AVAILABLE",
    ),
    (
        "malformed account id",
        lambda w: _transfer(w, to_account="CN-200-12"),
        InvalidInput,
        "ACCOUNT_ID_MALFORMED",
    ),
    (
        "account id not text",
        lambda w: _transfer(w, to_account=12),
        InvalidInput,
        "ACCOUNT_ID_MALFORMED",
    ),
    (
        "wrong check digits",
        lambda w: _transfer(w, to_account=_wrong_cc(w.b)),
        InvalidInput,
        "ACCOUNT_ID_CHECK_DIGITS",
    ),
    (
        "wrong check digits sender",
        lambda w: _transfer(w, from_account=_wrong_cc(w.a)),
        InvalidInput,
        "ACCOUNT_ID_CHECK_DIGITS",
    ),
    (
        "status change wrong cc",
        lambda w: (
            lambda: w.reg.change_status(
                w.op1, w.key(), _wrong_cc(w.a), status="SUSPENDED", reason="x"
            )
        ),
        InvalidInput,
        "ACCOUNT_ID_CHECK_DIGITS",
    ),
    (
        "malformed serial",
        lambda w: (
            lambda: w.reg.flag_serials(w.op1, w.key(), serial="CN-CEA-2023-420000", reason="x")
        ),
        InvalidInput,
        "SERIAL_MALFORMED",
    ),
    (
        "serial wrong check digits",
        lambda w: (
            lambda: w.reg.flag_serials(
                w.op1,
                w.key(),
                serial=GOOD_BLOCK[:-2] + f"{(int(GOOD_BLOCK[-2:]) + 1) % 100:02d}",
                reason="x",
            )
        ),
        InvalidInput,
        "SERIAL_CHECK_DIGITS",
    ),
    (
        "serial of another registry",
        lambda w: (
            lambda: w.reg.flag_serials(
                w.op1, w.key(), serial=m.Block(CEA, "420000", 1, 1, 2).serial("GB"), reason="x"
            )
        ),
        InvalidInput,
        "SERIAL_REGISTRY",
    ),
    (
        "malformed unit class",
        lambda w: _transfer(w, unit_class="CEA2023"),
        InvalidInput,
        "UNIT_CLASS_MALFORMED",
    ),
    (
        "never issued class",
        lambda w: _transfer(w, unit_class="CEA-2024"),
        NotFound,
        "UNIT_CLASS_NOT_FOUND",
    ),
    ("reason not text", lambda w: _transfer(w, reason=5), InvalidInput, "FIELD_INVALID"),
    ("reason too long", lambda w: _transfer(w, reason="x" * 501), InvalidInput, "FIELD_TOO_LONG"),
    ("invalid key", lambda w: _transfer(w, key="short"), InvalidInput, "IDEMPOTENCY_KEY_INVALID"),
    ("reused key, other input", _reused_key, Conflict, "IDEMPOTENCY_KEY_REUSED"),
    ("reused key, other command", _reused_key_other_command, Conflict, "IDEMPOTENCY_KEY_REUSED"),
    ("approval by the proposer", _self_approval, Forbidden, "SAME_OPERATOR"),
    ("batch approval by the proposer", _self_batch_approval, Forbidden, "SAME_OPERATOR"),
    ("account approval by the requester", _self_account_approval, Forbidden, "SAME_OPERATOR"),
    (
        "approve unknown transfer",
        lambda w: lambda: w.reg.approve(w.op2, w.key(), new_id()),
        NotFound,
        "TRANSFER_NOT_FOUND",
    ),
    (
        "enterprise approves",
        lambda w: (lambda t: lambda: w.reg.approve(w.alice, w.key(), t))(
            w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=1)["id"]
        ),
        Forbidden,
        "ROLE_NOT_ALLOWED",
    ),
    (
        "release by the pledgor",
        lambda w: (lambda h: lambda: w.reg.release_hold(w.alice, w.key(), h))(
            w.reg.place_hold(
                w.alice,
                w.key(),
                account_id=w.a,
                unit_class=CEA,
                quantity=1,
                kind="PLEDGE",
                lien_holder=w.entity_b,
            )["id"]
        ),
        Forbidden,
        "RELEASE_NOT_ALLOWED",
    ),
]


def test_bad_input_is_refused_and_changes_nothing(world: World) -> None:
    """One world for the whole table (a world per case costs too much on PostgreSQL): each case
    prepares what it needs, then the snapshot is taken, then the bad command must fail with its
    code and leave the snapshot as it was. Case set-ups do not interfere with each other."""
    w = world
    failures: list[str] = []
    for name, make, error, code in BAD:
        call = make(w)
        before = snapshot(w.db)
        try:
            call()
        except DomainError as err:
            if not isinstance(err, error) or err.code != code:
                failures.append(f"{name}: {type(err).__name__} {err.code}, expected {code}")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__} {exc}, expected {code}")
        else:
            failures.append(f"{name}: accepted, expected {code}")
        if snapshot(w.db) != before:
            failures.append(f"{name}: the refused command changed the database")
    assert not failures, "\n".join(failures)
    assert len(BAD) >= 45
    assert_verifies(w)


def test_holder_cannot_void_an_operators_proposal_from_their_account(world: World) -> None:
    w = world
    court = w.reg.court_transfer(
        w.op1,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=100,
        legal_basis="(2025)鄂01执3号",
    )
    s1 = w.reg.surrender(
        w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=5, compliance_year=2023
    )
    back = w.reg.reverse(w.op1, w.key(), transfer_id=s1["id"], reason="wrong year")
    al = w.reg.allocate(w.op1, w.key(), to_account=w.a, unit_class=CEA, quantity=5)
    for t in (court, back, al):
        expect(
            Forbidden,
            "NOT_ACCOUNT_HOLDER",
            lambda t=t: w.reg.void(w.alice, w.key(), t["id"], reason="I object"),
        )
        assert w.reg.transfer_detail(w.op1, t["id"])["status"] == "PENDING"
    assert w.reg.void(w.op2, w.key(), court["id"], reason="order withdrawn")["status"] == "VOIDED"
    assert_verifies(w)


def test_an_operator_cannot_move_a_holders_units_without_a_court_order(world: World) -> None:
    w = world
    before = snapshot(w.db)
    for fn in (
        lambda: w.reg.transfer(
            w.op1, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=500_000
        ),
        lambda: w.reg.surrender(
            w.op1, w.key(), from_account=w.a, unit_class=CEA, quantity=1, compliance_year=2023
        ),
        lambda: w.reg.cancel(
            w.op1, w.key(), from_account=w.a, unit_class=CEA, quantity=1, beneficiary="x"
        ),
    ):
        expect(Forbidden, "INITIATOR_NOT_ALLOWED", fn)
    assert snapshot(w.db) == before
    # the court order route exists, and needs a second operator
    t = w.reg.court_transfer(
        w.op1,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=10,
        legal_basis="(2025)鄂01执5号",
    )
    assert t["status"] == "PENDING" and posted(w, w.b) == 0


# ---------------------------------------------------------------- found defects (xfail strict)


def test_void_of_court_transfer_after_the_unfrozen_rest_was_spent(world: World) -> None:
    w = world
    f = w.reg.place_hold(
        w.op1,
        w.key(),
        account_id=w.a,
        unit_class=CEA,
        quantity=1_000,
        kind="JUDICIAL_FREEZE",
        legal_basis="(2025)鄂01执4号",
    )
    t = w.reg.court_transfer(
        w.op1,
        w.key(),
        from_account=w.a,
        to_account=w.b,
        unit_class=CEA,
        quantity=600,
        legal_basis="(2025)鄂01执4号",
        hold_id=f["id"],
    )
    free = holding(w, w.a)["available"]
    assert free == 500_000 - 1_000  # the court takes 600; the other 400 stay frozen
    w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=free
    )
    with contextlib.suppress(DomainError):  # a clean refusal would be acceptable
        w.reg.void(w.op2, w.key(), t["id"], reason="order withdrawn")
    assert_verifies(w)
    h = holding(w, w.a)
    assert h["pending"] + h["held"] <= h["posted"]


def test_pending_reversal_keeps_its_serials(world: World) -> None:
    w = world
    y = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=1_000)
    w.reg.approve(w.op2, w.key(), y["id"])
    x = w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=100)
    x = w.reg.approve(w.op2, w.key(), x["id"])  # gets the lowest serials bob holds
    r = w.reg.reverse(w.op1, w.key(), transfer_id=x["id"], reason="wrong entity")
    assert holding(w, w.b)["available"] == 1_000
    w.reg.transfer(w.bob, w.key(), from_account=w.b, to_account=w.a, unit_class=CEA, quantity=1_000)
    done = w.reg.approve(w.op2, w.key(), r["id"])
    assert done["status"] == "COMPLETED"


def test_voided_reversal_does_not_block_a_new_one(world: World) -> None:
    w = world
    t = w.reg.surrender(
        w.alice, w.key(), from_account=w.a, unit_class=CEA, quantity=10, compliance_year=2023
    )
    r = w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="typo")
    w.reg.void(w.op2, w.key(), r["id"], reason="entered twice")
    r2 = w.reg.reverse(w.op1, w.key(), transfer_id=t["id"], reason="second try")
    assert r2["status"] == "PENDING"


def test_approval_does_not_post_into_a_closed_account(world: World) -> None:
    w = world
    acc = open_account(w, w.bob)
    t = w.reg.allocate(w.op1, w.key(), to_account=acc, unit_class=CEA, quantity=10)
    w.reg.change_status(w.op1, w.key(), acc, status="CLOSURE_PENDING", reason="x")
    w.reg.change_status(w.op1, w.key(), acc, status="CLOSED", reason="x")
    with contextlib.suppress(DomainError):
        w.reg.approve(w.op2, w.key(), t["id"])
    assert posted(w, acc) == 0


@pytest.mark.parametrize("db_settings", [DELAYED])
def test_run_due_does_not_move_units_out_of_a_suspended_account(world: World, clock: Clock) -> None:
    w = world
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10)
    w.reg.change_status(w.op1, w.key(), w.a, status="SUSPENDED", reason="fraud inquiry")
    clock.advance(hours=2)
    with contextlib.suppress(DomainError):
        w.reg.run_due()
    assert posted(w, w.b) == 0


@pytest.mark.parametrize("db_settings", [DELAYED])
def test_run_due_is_not_blocked_by_one_failing_transfer(world: World, clock: Clock) -> None:
    w = world
    w.reg.transfer(w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=10)
    (alice_block,) = w.reg.blocks(w.alice, w.a)
    w.reg.flag_serials(w.op1, w.key(), serial=alice_block["serial"], reason="stolen")
    w.reg.allocate(w.op1, w.key(), to_account=w.b, unit_class=CEA, quantity=5)
    clock.advance(days=8)
    result = w.reg.run_due()
    assert result["expired"] == 1


def test_transfer_many_checks_idempotency_keys(world: World) -> None:
    w = world
    cmd = {"from_account": w.a, "to_account": w.b, "unit_class": CEA, "quantity": 1}
    (res,) = w.reg.transfer_many(w.alice, [dict(cmd, key="x")])
    assert res.get("error") == "IDEMPOTENCY_KEY_INVALID"


def test_bulk_batches_of_two_operators_stay_apart(world: World) -> None:
    w = world
    k = "batch-2025-000001"
    r1 = w.reg.allocate_bulk(w.op1, k, [(w.a, CEA, 1)])
    r2 = w.reg.allocate_bulk(w.op2, k, [(w.b, CEA, 2)])
    assert r1["batch_ref"] != r2["batch_ref"]


def test_decide_account_only_decides_requests(world: World) -> None:
    w = world
    w.reg.change_status(w.op1, w.key(), w.b, status="SUSPENDED", reason="fraud inquiry")
    with pytest.raises(DomainError):
        w.reg.decide_account(w.op2, w.key(), w.b, approve=True)
    assert w.reg.account(w.op1, w.b)["status"] == "SUSPENDED"
