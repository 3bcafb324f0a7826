"""Concurrency test (DESIGN §12): many clients on the same accounts at once.

Threads (and processes) move units back and forth between the same two holding accounts, place
and release holds and surrender, each command with its own idempotency key. Some commands fail
with a Conflict (not enough available units): that is expected. What must hold at the end: the
journal verifies, units are conserved, serial blocks agree with balances, and the balances are
exactly what the successful commands imply (no lost update, nothing done twice).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from carbonhub.core.auth import Actor, AuthService, Role
from carbonhub.core.db import Database
from carbonhub.core.errors import Conflict
from carbonhub.core.settings import Settings
from carbonhub.registry import store as s
from carbonhub.registry.service import RegistryService
from carbonhub.verify import verify
from tests.conftest import ON_PG

UC = "CEA-2023"
ALLOWED_CONFLICTS = {"INSUFFICIENT_AVAILABLE"}


@dataclass
class Tally:
    """What the successful commands imply, per account: posted and held deltas."""

    posted: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    ops: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.posted.update(other.posted)
        self.held.update(other.held)
        self.ops.update(other.ops)
        self.conflicts.update(other.conflicts)
        self.errors.extend(other.errors)


def key(tag: str) -> str:
    return f"cc-{tag}-{uuid.uuid4().hex}"


def workload(
    reg: RegistryService,
    me: Actor,
    other: Actor,
    mine: str,
    theirs: str,
    surrender_acc: str,
    seed: int,
    rounds: int,
) -> Tally:
    """One client: transfers both ways' worth of load, holds, releases and surrenders."""
    rng = random.Random(seed)
    tally = Tally()
    for i in range(rounds):
        roll = rng.random()
        try:
            if roll < 0.6:
                q = rng.randint(1, 120_000)
                t = reg.transfer(
                    me,
                    key(f"t{seed}-{i}"),
                    from_account=mine,
                    to_account=theirs,
                    unit_class=UC,
                    quantity=q,
                )
                assert t["status"] == "COMPLETED", t
                tally.posted[mine] -= q
                tally.posted[theirs] += q
                tally.ops["transfer"] += 1
            elif roll < 0.8:
                q = rng.randint(1, 60_000)
                h = reg.place_hold(
                    me,
                    key(f"h{seed}-{i}"),
                    account_id=mine,
                    unit_class=UC,
                    quantity=q,
                    kind="EXCHANGE_RESERVATION",
                )
                tally.held[mine] += q
                tally.ops["hold"] += 1
                if rng.random() < 0.8:
                    reg.release_hold(me, key(f"r{seed}-{i}"), h["id"], reason="order cancelled")
                    tally.held[mine] -= q
                    tally.ops["release"] += 1
            else:
                q = rng.randint(1, 2_000)
                reg.surrender(
                    me,
                    key(f"s{seed}-{i}"),
                    from_account=mine,
                    unit_class=UC,
                    quantity=q,
                    compliance_year=2023,
                )
                tally.posted[mine] -= q
                tally.posted[surrender_acc] += q
                tally.ops["surrender"] += 1
        except Conflict as err:
            tally.conflicts[err.code] += 1
            if err.code not in ALLOWED_CONFLICTS:
                tally.errors.append(f"{err.code}: {err.message}")
        except Exception as err:  # anything else is a failure of the test
            tally.errors.append(f"{type(err).__name__}: {err}")
    return tally


def snapshot(db: Database) -> dict[str, tuple[int, int, int]]:
    with db.uow() as uow:
        return {
            r.account_id: (int(r.posted), int(r.pending), int(r.held))
            for r in uow.conn.execute(sa.select(s.holdings).where(s.holdings.c.unit_class == UC))
        }


def check_end_state(
    db: Database, before: dict[str, tuple[int, int, int]], tally: Tally, issued: int
) -> None:
    assert not tally.errors, tally.errors[:5]
    report = verify(db)
    assert report.ok, report.problems[:5]
    after = snapshot(db)
    # Σ balances conserved: everything issued sits in exactly one account
    with db.uow() as uow:
        batches = uow.conn.execute(
            sa.select(sa.func.sum(s.issuance_batches.c.quantity)).where(
                s.issuance_batches.c.unit_class == UC
            )
        ).scalar_one()
    assert int(batches) == issued
    assert sum(p for p, _, _ in after.values()) == issued
    # the balances are exactly what the acknowledged commands imply
    for acc in set(before) | set(after) | set(tally.posted):
        p0, _, h0 = before.get(acc, (0, 0, 0))
        p1, pending, h1 = after.get(acc, (0, 0, 0))
        assert p1 == p0 + tally.posted[acc], acc
        assert h1 == h0 + tally.held[acc], acc
        assert pending == 0, acc
        assert 0 <= h1 <= p1, acc
    # serial blocks agree with balances, account by account
    with db.uow() as uow:
        b = s.unit_blocks
        sums = dict(
            uow.conn.execute(
                sa.select(b.c.account_id, sa.func.sum(b.c.end - b.c.start + 1))
                .where(b.c.unit_class == UC)
                .group_by(b.c.account_id)
            ).all()
        )
    assert {a: int(v) for a, v in sums.items() if v} == {
        a: p for a, (p, _, _) in after.items() if p
    }


@dataclass
class Market:
    """Two operators, two enterprises with open holding accounts holding 500,000 t each."""

    db: Database
    reg: RegistryService
    op1: Actor
    op2: Actor
    alice: Actor
    bob: Actor
    a: str
    b: str
    entity_b: str
    surrender: str

    def issue_and_allocate(self, to: str, quantity: int) -> dict[str, Any]:
        t = self.reg.issue(self.op1, key("i"), unit_class=UC, quantity=quantity)
        self.reg.approve(self.op2, key("ia"), t["id"])
        al = self.reg.allocate(self.op1, key("a"), to_account=to, unit_class=UC, quantity=quantity)
        return self.reg.approve(self.op2, key("aa"), al["id"])


@pytest.fixture
def market(db_url: str) -> Iterator[Market]:
    """Seeded through the services; actors are built from the created users (no logins, which
    would only add Argon2 time)."""
    db = Database(Settings(database_url=db_url))
    reg, auth = RegistryService(db), AuthService(db)
    surrender = reg.bootstrap()["SURRENDER"]
    ea = auth.create_entity("华能武汉发电有限公司", "enterprise", "91420100MA4KX0001A")
    eb = auth.create_entity("武汉钢铁有限公司", "enterprise", "91420100MA4KX0002B")
    actors = {}
    for name, role, ent in [
        ("op1", "operator", None),
        ("op2", "operator", None),
        ("alice", "enterprise", ea["id"]),
        ("bob", "enterprise", eb["id"]),
    ]:
        u = auth.create_user(name, f"password-{name}", role, ent)
        actors[name] = Actor(u["id"], name, Role(role), ent)
    a = reg.request_account(actors["alice"], key("ra"), type="HOLDING", name="A")["id"]
    b = reg.request_account(actors["bob"], key("rb"), type="HOLDING", name="B")["id"]
    reg.decide_account(actors["op1"], key("da"), a, approve=True)
    reg.decide_account(actors["op1"], key("db"), b, approve=True)
    m = Market(
        db,
        reg,
        actors["op1"],
        actors["op2"],
        actors["alice"],
        actors["bob"],
        a,
        b,
        eb["id"],
        surrender,
    )
    m.issue_and_allocate(a, 500_000)
    m.issue_and_allocate(b, 500_000)
    yield m
    db.dispose()


def run_threads(fns: list[Callable[[], Tally]]) -> Tally:
    total, lock = Tally(), threading.Lock()
    start = threading.Barrier(len(fns))

    def run(fn: Callable[[], Tally]) -> None:
        start.wait()
        t = fn()
        with lock:
            total.merge(t)

    threads = [threading.Thread(target=run, args=(f,)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return total


def test_many_threads_on_the_same_accounts(market: Market) -> None:
    world, db, surrender_acc, reg = market, market.db, market.surrender, market.reg
    before = snapshot(db)
    fns: list[Callable[[], Tally]] = []
    for n in range(8):
        me, other, mine, theirs = (
            (world.alice, world.bob, world.a, world.b)
            if n % 2 == 0
            else (world.bob, world.alice, world.b, world.a)
        )
        fns.append(
            lambda me=me, other=other, mine=mine, theirs=theirs, n=n: workload(
                reg, me, other, mine, theirs, surrender_acc, seed=n, rounds=24
            )
        )
    t0 = time.monotonic()
    tally = run_threads(fns)
    elapsed = time.monotonic() - t0
    print(f"{db.backend}: {dict(tally.ops)} conflicts {dict(tally.conflicts)} in {elapsed:.1f} s")
    assert tally.ops["transfer"] > 20 and tally.ops["hold"] > 5
    check_end_state(db, before, tally, issued=1_000_000)


def test_one_key_sent_by_many_threads_moves_units_once(market: Market) -> None:
    world, db, reg = market, market.db, market.reg
    before = snapshot(db)
    k = key("same")
    results: list[str] = []
    lock = threading.Lock()

    def send() -> Tally:
        r = reg.transfer(
            world.alice, k, from_account=world.a, to_account=world.b, unit_class=UC, quantity=777
        )
        with lock:
            results.append(r["id"])
        return Tally()

    run_threads([send] * 8)
    assert len(results) == 8 and len(set(results)) == 1
    after = snapshot(db)
    assert after[world.a][0] == before[world.a][0] - 777
    assert after[world.b][0] == before[world.b][0] + 777
    with db.uow() as uow:
        n = uow.conn.execute(
            sa.select(sa.func.count())
            .select_from(s.transfers)
            .where(s.transfers.c.op == "TRANSFER")
        ).scalar_one()
    assert n == 1
    assert verify(db).ok


# ------------------------------------------------------------ two commands racing on one row


def race(db: Database, account_ids: list[str], fns: list[Callable[[], Any]]) -> list[Any]:
    """Start every fn while another transaction holds the accounts' row locks (PostgreSQL) or
    the write lock (SQLite), so that all of them are past their first reads and waiting; then
    let go. Returns each fn's result or the exception it raised."""
    out: list[Any] = [None] * len(fns)
    conn = db.engine.connect()
    tx = conn.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
    if ON_PG:
        conn.execute(
            sa.select(s.accounts.c.id)
            .where(s.accounts.c.id.in_(sorted(account_ids)))
            .order_by(s.accounts.c.id)
            .with_for_update()
        ).all()

    def run(i: int) -> None:
        try:
            out[i] = fns[i]()
        except Exception as err:
            out[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    try:
        if ON_PG:
            waiting, deadline = 0, time.monotonic() + 30
            with db.engine.connect() as probe:
                while waiting < len(fns) and time.monotonic() < deadline:
                    waiting = probe.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar_one()
                    time.sleep(0.05)
        else:
            time.sleep(1.0)
    finally:
        tx.commit()
        conn.close()
    for t in threads:
        t.join(timeout=60)
    return out


def test_two_concurrent_releases_of_one_hold_release_it_once(market: Market) -> None:
    world, db, reg = market, market.db, market.reg
    h = reg.place_hold(
        world.op1,
        key("h"),
        account_id=world.a,
        unit_class=UC,
        quantity=40_000,
        kind="PLEDGE",
        lien_holder=world.entity_b,
    )
    before = snapshot(db)
    results = race(
        db,
        [world.a],
        [
            lambda: reg.release_hold(world.op1, key("r1"), h["id"], reason="repaid"),
            lambda: reg.release_hold(world.op2, key("r2"), h["id"], reason="repaid"),
        ],
    )
    ok = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 1, results
    assert len(failed) == 1 and isinstance(failed[0], Conflict), results
    assert failed[0].code == "HOLD_NOT_ACTIVE"
    assert snapshot(db)[world.a][2] == before[world.a][2] - 40_000
    assert verify(db).ok


def test_two_concurrent_reversals_of_one_transfer(market: Market) -> None:
    world, db, reg = market, market.db, market.reg
    # B holds 500,000 from its allocation; a second allocation of 1,000 is the one reversed
    al = world.issue_and_allocate(world.b, 1_000)
    assert al["status"] == "COMPLETED"
    results = race(
        db,
        [world.b, al["from_account"]],
        [
            lambda: reg.reverse(
                world.op1, key("rv1"), transfer_id=al["id"], reason="wrong account"
            ),
            lambda: reg.reverse(
                world.op2, key("rv2"), transfer_id=al["id"], reason="wrong account"
            ),
        ],
    )
    ok = [r for r in results if isinstance(r, dict)]
    assert len(ok) == 1, results
    with db.uow() as uow:
        n = uow.conn.execute(
            sa.select(sa.func.count())
            .select_from(s.transfers)
            .where(s.transfers.c.reverses == al["id"])
        ).scalar_one()
    assert n == 1
    assert verify(db).ok


# ------------------------------------------------------------ several processes


def process_worker(
    url: str,
    me: Actor,
    other: Actor,
    mine: str,
    theirs: str,
    surrender_acc: str,
    seed: int,
    rounds: int,
) -> Tally:
    db = Database(Settings(database_url=url))
    try:
        return workload(RegistryService(db), me, other, mine, theirs, surrender_acc, seed, rounds)
    finally:
        db.dispose()


def test_several_processes_on_the_same_accounts(market: Market) -> None:
    world, db, surrender_acc = market, market.db, market.surrender
    url = db.engine.url.render_as_string(False)
    before = snapshot(db)
    db.engine.dispose()  # no pooled connection crosses into the children
    args = [
        (url, world.alice, world.bob, world.a, world.b, surrender_acc, 100, 20),
        (url, world.bob, world.alice, world.b, world.a, surrender_acc, 101, 20),
        (url, world.alice, world.bob, world.a, world.b, surrender_acc, 102, 20),
    ]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(args)) as pool:
        tallies = pool.starmap(process_worker, args, chunksize=1)
    total = Tally()
    for t in tallies:
        total.merge(t)
    print(f"{db.backend} processes: {dict(total.ops)} conflicts {dict(total.conflicts)}")
    assert total.ops["transfer"] > 10
    check_end_state(db, before, total, issued=1_000_000)
