"""Tamper test through the CLI (DESIGN §4 journal, §10 invariants 3 and 6, §12).

Seed a market through the services, check `carbonhub verify` passes, then edit the database
behind the platform's back the way an insider with SQL access would, and check that
`carbonhub verify` (a separate process) exits non-zero and names the first break.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carbonhub.core import journal
from carbonhub.core.auth import AuthService
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.registry.service import RegistryService
from tests.conftest import World

CARBONHUB = Path(sys.executable).with_name("carbonhub")


def carbonhub(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CARBONHUB_DATABASE_URL=url, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [str(CARBONHUB), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def verify_json(url: str) -> tuple[int, dict[str, Any]]:
    r = carbonhub(url, "verify", "--json")
    return r.returncode, json.loads(r.stdout)


def execute(db: Database, sql: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def completed_seq(world: World) -> int:
    """The journal seq of a transfer_completed entry that is neither first nor last."""
    with world.db.uow() as uow:
        seqs = list(
            uow.conn.execute(
                sa.select(journal.journal.c.seq)
                .where(journal.journal.c.type == "registry.transfer_completed")
                .order_by(journal.journal.c.seq)
            ).scalars()
        )
        last = uow.conn.execute(sa.select(sa.func.max(journal.journal.c.seq))).scalar_one()
    candidates = [s for s in seqs if s < last]
    assert candidates, seqs
    return int(candidates[len(candidates) // 2])


def test_verify_passes_then_names_the_edited_journal_entry(world: World, db_url: str) -> None:
    world.reg.transfer(
        world.alice,
        world.key(),
        from_account=world.a,
        to_account=world.b,
        unit_class="CEA-2023",
        quantity=1_234,
    )
    ok = carbonhub(db_url, "verify")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok:"), ok.stdout

    n = completed_seq(world)
    with world.db.uow() as uow:
        payload = json.loads(
            uow.conn.execute(
                sa.select(journal.journal.c.payload).where(journal.journal.c.seq == n)
            ).scalar_one()
        )
    payload["quantity"] += 1  # one tonne more than really moved
    execute(
        world.db,
        "UPDATE journal SET payload = :p WHERE seq = :n",
        p=journal.canonical(payload),
        n=n,
    )

    bad = carbonhub(db_url, "verify")
    assert bad.returncode != 0
    assert "ok:" not in bad.stdout
    first = bad.stderr.splitlines()[0]
    assert f"journal entry {n}:" in first, bad.stderr
    assert "hash" in first, first

    code, report = verify_json(db_url)
    assert code != 0
    assert report["ok"] is False
    assert report["problems"][0].startswith(f"journal entry {n}:"), report
    # the entries before the edited one still verify, and are counted as such
    assert report["entries"] == n - 1


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        pytest.param("DELETE FROM journal WHERE seq = :n", "missing", id="deleted"),
        pytest.param(
            "UPDATE journal SET payload = 'garbage' WHERE seq = :n", "hash", id="not-json"
        ),
    ],
)
def test_verify_names_a_removed_or_garbled_journal_entry(
    world: World, db_url: str, sql: str, reason: str
) -> None:
    n = completed_seq(world)
    execute(world.db, sql, n=n)
    r = carbonhub(db_url, "verify")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    first = r.stderr.splitlines()[0]
    assert f"journal entry {n}:" in first and reason in first, r.stderr


def test_verify_names_invariants_when_a_balance_is_edited(world: World, db_url: str) -> None:
    assert carbonhub(db_url, "verify").returncode == 0
    execute(
        world.db,
        "UPDATE holdings SET posted = posted + 1 WHERE account_id = :a AND unit_class = :uc",
        a=world.a,
        uc="CEA-2023",
    )
    r = carbonhub(db_url, "verify")
    assert r.returncode != 0
    assert "ok:" not in r.stdout
    assert r.stderr.startswith("FAILED:"), r.stderr
    assert "invariant 3" in r.stderr or "invariant 6" in r.stderr, r.stderr

    code, report = verify_json(db_url)
    assert code != 0
    problems = report["problems"]
    # the journal itself is intact: the break is in the stored state, not the chain
    assert not any(p.startswith("journal entry") for p in problems), problems
    assert any(p.startswith("invariant 3") and world.a in p for p in problems), problems
    assert any(p.startswith("invariant 6") and world.a in p for p in problems), problems


def test_verify_catches_an_edited_serial_block(world: World, db_url: str) -> None:
    """Serials moved between accounts behind the ledger's back: no overlap, same class total."""
    world.reg.transfer(
        world.alice,
        world.key(),
        from_account=world.a,
        to_account=world.b,
        unit_class="CEA-2023",
        quantity=10,
    )
    assert carbonhub(db_url, "verify").returncode == 0
    # A keeps the lower range, B got the upper one; move the boundary by 10 serials so that the
    # blocks still tile the batch without gap or overlap
    with world.db.engine.begin() as conn:
        rows = {
            r.account_id: r
            for r in conn.execute(
                sa.text(
                    'SELECT id, account_id, start, "end" FROM unit_blocks WHERE account_id IN (:a, :b)'
                ),
                {"a": world.a, "b": world.b},
            )
        }
        assert set(rows) == {world.a, world.b}, rows
        assert rows[world.a].end + 1 == rows[world.b].start
        conn.execute(
            sa.text('UPDATE unit_blocks SET "end" = "end" - 10 WHERE id = :i'),
            {"i": rows[world.a].id},
        )
        conn.execute(
            sa.text("UPDATE unit_blocks SET start = start - 10 WHERE id = :i"),
            {"i": rows[world.b].id},
        )
    r = carbonhub(db_url, "verify", "--json")
    assert r.returncode != 0
    problems = json.loads(r.stdout)["problems"]
    assert any(p.startswith("invariant 3") for p in problems), problems


def test_a_rewritten_chain_is_caught_by_the_daily_checkpoint(db_url: str) -> None:
    """An insider who edits an entry and recomputes every later hash and the head defeats the
    chain alone; the closed day's Merkle root still names the day."""
    yesterday = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    db = Database(Settings(database_url=db_url), clock=lambda: yesterday)
    try:
        RegistryService(db).bootstrap()
        auth = AuthService(db)
        ent = auth.create_entity("武汉测试企业", "enterprise", "91420100MA4KX0009C")
        auth.create_user("mallory", "password-mallory", "enterprise", ent["id"])
        assert carbonhub(db_url, "journal", "checkpoint").returncode == 0
        ok = carbonhub(db_url, "verify")
        assert ok.returncode == 0, ok.stderr

        with db.engine.begin() as conn:
            rows = conn.execute(sa.select(journal.journal).order_by(journal.journal.c.seq)).all()
            target = next(r for r in rows if r.type == "user.created")
            prev_hash = journal.GENESIS
            for r in rows:
                payload = r.payload
                if r.seq == target.seq:
                    p = json.loads(payload)
                    p["role"] = "operator"  # rewrite history: mallory was always an operator
                    payload = journal.canonical(p)
                if r.seq >= target.seq:
                    h = journal.entry_hash(prev_hash, r.seq, r.type, r.actor, r.time, payload)
                    conn.execute(
                        sa.update(journal.journal)
                        .where(journal.journal.c.seq == r.seq)
                        .values(payload=payload, prev_hash=prev_hash, hash=h)
                    )
                    prev_hash = h
                else:
                    prev_hash = r.hash
            conn.execute(sa.update(journal.journal_head).values(hash=prev_hash))

        r = carbonhub(db_url, "verify")
        assert r.returncode != 0
        assert "checkpoint of 2025-03-14" in r.stderr, r.stderr
    finally:
        db.dispose()
