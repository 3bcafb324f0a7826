"""The tamper-evident journal: hash chain, daily Merkle checkpoints, receipts, and `verify(db)`
catching edits made behind the platform's back (DESIGN §4 journal, §10 invariants 1–3 and 6).

Like test_registry_service.py, this module shadows the conftest `db` fixture with one on a
settable clock (entries spread over several Shanghai days) and makes password hashing cheap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from carbonhub.core import journal, merkle
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.core.timefmt import iso, shanghai_day
from carbonhub.registry import store as s
from carbonhub.registry.service import RegistryService
from carbonhub.verify import verify
from tests.conftest import World
from tests.test_registry_service import no_fsync_wait

CEA = "CEA-2023"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "carbonhub.core.auth._hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(db_url: str, clock: Clock) -> Iterator[Database]:
    database = Database(Settings(database_url=db_url, check_invariants=True), clock=clock)
    no_fsync_wait(database)
    RegistryService(database).bootstrap()
    yield database
    database.dispose()


def journal_rows(db: Database) -> list[Any]:
    with db.uow() as uow:
        return list(journal.entries(uow.conn))


def execute(db: Database, sql: str, **params: Any) -> None:
    """Edit the database directly, the way an insider with SQL access would."""
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def move(w: World, quantity: int) -> None:
    w.reg.transfer(
        w.alice, w.key(), from_account=w.a, to_account=w.b, unit_class=CEA, quantity=quantity
    )


def middle_completed_seq(db: Database) -> int:
    rows = journal_rows(db)
    seqs = [r.seq for r in rows if r.type == "registry.transfer_completed" and r.seq < rows[-1].seq]
    return int(seqs[len(seqs) // 2])


# ---------------------------------------------------------------- the chain


def test_every_entry_links_to_the_previous_one(world: World) -> None:
    move(world, 10)
    rows = journal_rows(world.db)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == journal.GENESIS
    for prev, row in zip([None, *rows], rows, strict=False):
        if prev is not None:
            assert row.prev_hash == prev.hash
        assert row.hash == journal.entry_hash(
            row.prev_hash, row.seq, row.type, row.actor, row.time, row.payload
        )
        assert row.payload == journal.canonical(json.loads(row.payload))
        assert (
            row.day
            == shanghai_day(
                datetime.strptime(row.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            ).isoformat()
        )
    with world.db.uow() as uow:
        head = uow.conn.execute(sa.select(journal.journal_head)).one()
        assert (head.seq, head.hash) == (rows[-1].seq, rows[-1].hash)
        assert journal.verify_chain(uow.conn) == (len(rows), None)
        assert [e.seq for e in journal.recent(uow.conn, 3)] == [r.seq for r in rows[-1:-4:-1]]
    report = verify(world.db)
    assert report.ok and report.entries == len(rows)
    # every ledger change is journaled: the last entry is the transfer's completion
    last = json.loads(rows[-1].payload)
    assert rows[-1].type == "registry.transfer_completed" and last["quantity"] == 10


def test_entry_hash_covers_every_field() -> None:
    base = ("a" * 64, 7, "registry.x", "op1", "2025-03-03T02:00:00.000000Z", '{"q":1}')
    h = journal.entry_hash(*base)
    assert (
        h
        == hashlib.sha256(
            (
                base[0]
                + journal.canonical(
                    {
                        "actor": "op1",
                        "payload": '{"q":1}',
                        "seq": 7,
                        "time": base[4],
                        "type": "registry.x",
                    }
                )
            ).encode()
        ).hexdigest()
    )
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + "0" if isinstance(changed[i], str) else changed[i] + 1
        assert journal.entry_hash(*changed) != h


@given(st.text(), st.text(), st.text(), st.text(), st.integers(0, 2**62))
def test_entry_hash_spells_out_the_canonical_body(
    actor: str, type_: str, time: str, payload: str, seq: int
) -> None:
    """Any text (quotes, control characters, CJK, lone surrogates) hashes as `canonical` says."""
    body = journal.canonical(
        {"actor": actor, "payload": payload, "seq": seq, "time": time, "type": type_}
    )
    expected = hashlib.sha256(("p" + body).encode(errors="surrogatepass")).hexdigest()
    try:
        got = journal.entry_hash("p", seq, type_, actor, time, payload)
    except UnicodeEncodeError:  # a lone surrogate cannot be stored either way
        with pytest.raises(UnicodeEncodeError):
            hashlib.sha256(("p" + body).encode())
        return
    assert got == expected


def test_append_commits_or_rolls_back_with_its_transaction(db: Database) -> None:
    before = journal_rows(db)
    with db.uow() as uow:
        journal.append(uow, "test.rolled_back", "tester", {"x": 1})
    assert journal_rows(db) == before
    with db.uow() as uow:
        e = journal.append(uow, "test.kept", "tester", {"名称": "武汉", "n": [1, 2]})
        uow.commit()
    assert e.seq == len(before) + 1 and e.prev_hash == before[-1].hash
    with db.uow() as uow:
        got = journal.get(uow.conn, e.seq)
        assert journal.get(uow.conn, e.seq + 1) is None
    assert got is not None and got.payload == {"名称": "武汉", "n": [1, 2]} and got.hash == e.hash
    assert verify(db).ok


def test_entry_times_never_go_backwards(db: Database, clock: Clock) -> None:
    with db.uow() as uow:
        first = journal.append(uow, "test.a", "tester", {})
        uow.commit()
    clock.now -= timedelta(hours=3)  # the host clock steps back
    with db.uow() as uow:
        second = journal.append(uow, "test.b", "tester", {})
        uow.commit()
    assert second.time == first.time and second.day == first.day
    assert verify(db).ok


# ---------------------------------------------------------------- Merkle trees


def _hashes(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_merkle_root_shape() -> None:
    h = _hashes(3)
    leaf = [merkle.leaf_hash(x) for x in h]

    def node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    assert merkle.merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle.merkle_root(h[:1]) == leaf[0].hex()
    assert merkle.merkle_root(h[:2]) == node(leaf[0], leaf[1]).hex()
    assert merkle.merkle_root(h) == node(node(leaf[0], leaf[1]), leaf[2]).hex()
    assert merkle.leaf_hash(h[0]) == hashlib.sha256(b"\x00" + bytes.fromhex(h[0])).digest()


@pytest.mark.parametrize("n", [*range(1, 18), 31, 32, 33, 100])
def test_inclusion_proofs_for_every_leaf(n: int) -> None:
    h = _hashes(n)
    root = merkle.merkle_root(h)
    other = merkle.merkle_root(_hashes(n + 1))
    for i in range(n):
        proof = merkle.inclusion_proof(h, i)
        assert len(proof) <= max(1, (n - 1).bit_length())
        assert merkle.verify_inclusion(h[i], i, n, proof, root)
        assert not merkle.verify_inclusion(h[i], i, n, proof, other)
        assert not merkle.verify_inclusion(h[i], n, n, proof, root)
        if n > 1:
            assert not merkle.verify_inclusion(h[(i + 1) % n], i, n, proof, root)
            assert not merkle.verify_inclusion(h[i], (i + 1) % n, n, proof, root)
            bad = [proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1"), *proof[1:]]
            assert not merkle.verify_inclusion(h[i], i, n, bad, root)


# ---------------------------------------------------------------- receipts and checkpoints


def _three_days(w: World, clock: Clock) -> list[str]:
    """World built on day 1; transfers on days 2 and 3. Returns the Shanghai days in order."""
    move(w, 1)
    clock.now += timedelta(days=1)
    for q in (2, 3, 4, 5, 6):
        move(w, q)
    clock.now += timedelta(days=1)
    move(w, 7)
    days = sorted({r.day for r in journal_rows(w.db)})
    assert days == ["2025-03-03", "2025-03-04", "2025-03-05"]
    return days


def _check_receipts(db: Database, day: str, *, checkpointed: bool) -> int:
    rows = [r for r in journal_rows(db) if r.day == day]
    root = merkle.merkle_root([r.hash for r in rows])
    with db.uow() as uow:
        for i, row in enumerate(rows):
            rc = journal.receipt(uow.conn, row.seq)
            assert rc is not None
            assert rc["entry"]["hash"] == row.hash and rc["entry"]["seq"] == row.seq
            assert rc["entry"]["payload"] == json.loads(row.payload)
            assert (rc["day"], rc["leaf_index"], rc["tree_size"]) == (day, i, len(rows))
            assert rc["merkle_root"] == root and rc["checkpointed"] is checkpointed
            assert merkle.verify_inclusion(
                rc["entry"]["hash"],
                rc["leaf_index"],
                rc["tree_size"],
                rc["proof"],
                rc["merkle_root"],
            )
            # the proof is for this entry only
            if len(rows) > 1:
                other = rows[(i + 1) % len(rows)].hash
                assert not merkle.verify_inclusion(
                    other, rc["leaf_index"], rc["tree_size"], rc["proof"], rc["merkle_root"]
                )
    return len(rows)


def test_receipts_prove_every_entry_of_a_day(world: World, clock: Clock) -> None:
    days = _three_days(world, clock)
    with world.db.uow() as uow:
        assert journal.receipt(uow.conn, 10**6) is None
    for day in days:
        assert _check_receipts(world.db, day, checkpointed=False) >= 1


def test_close_days_writes_checkpoints_whose_roots_verify(world: World, clock: Clock) -> None:
    days = _three_days(world, clock)
    today = shanghai_day(clock.now)
    with world.db.uow() as uow:
        written = journal.close_days(uow, today)
        uow.commit()
    assert written == days[:2]  # today is not finished
    rows = journal_rows(world.db)
    with world.db.uow() as uow:
        cps = uow.conn.execute(
            sa.select(journal.checkpoints).order_by(journal.checkpoints.c.day)
        ).all()
        assert journal.close_days(uow, today) == []  # nothing left to close
    assert [c.day for c in cps] == days[:2]
    for cp in cps:
        day_rows = [r for r in rows if r.day == cp.day]
        assert (cp.first_seq, cp.last_seq, cp.entries) == (
            day_rows[0].seq,
            day_rows[-1].seq,
            len(day_rows),
        )
        assert cp.merkle_root == merkle.merkle_root([r.hash for r in day_rows])
        assert _check_receipts(world.db, cp.day, checkpointed=True) == cp.entries
    assert _check_receipts(world.db, days[2], checkpointed=False) >= 1
    assert verify(world.db).ok
    # the next day closes the third
    with world.db.uow() as uow:
        assert journal.close_days(uow, today + timedelta(days=1)) == [days[2]]
        uow.commit()
    assert verify(world.db).ok


# ---------------------------------------------------------------- tampering


def test_edited_journal_payload_is_named_by_seq(world: World) -> None:
    for q in (11, 12, 13):
        move(world, q)
    assert verify(world.db).ok
    seq = middle_completed_seq(world.db)
    row = next(r for r in journal_rows(world.db) if r.seq == seq)
    payload = json.loads(row.payload)
    payload["quantity"] += 1_000
    execute(
        world.db,
        "UPDATE journal SET payload = :p WHERE seq = :s",
        p=journal.canonical(payload),
        s=seq,
    )
    report = verify(world.db)
    assert not report.ok
    assert report.problems[0] == f"journal entry {seq}: hash does not match the entry's content"


def test_rehashed_entry_breaks_the_next_link(world: World) -> None:
    for q in (11, 12, 13):
        move(world, q)
    seq = middle_completed_seq(world.db)
    row = next(r for r in journal_rows(world.db) if r.seq == seq)
    payload = json.loads(row.payload)
    payload["to"] = world.a
    body = journal.canonical(payload)
    new_hash = journal.entry_hash(row.prev_hash, row.seq, row.type, row.actor, row.time, body)
    execute(
        world.db,
        "UPDATE journal SET payload = :p, hash = :h WHERE seq = :s",
        p=body,
        h=new_hash,
        s=seq,
    )
    report = verify(world.db)
    assert report.problems[0] == (
        f"journal entry {seq + 1}: prev_hash does not match the previous entry's hash"
    )


def test_rewritten_tail_is_caught_by_checkpoint_and_replay(world: World, clock: Clock) -> None:
    """An insider who recomputes every hash after the edit (and the head) keeps the chain
    intact, but the day's checkpoint no longer matches and the replay no longer adds up."""
    move(world, 11)
    clock.now += timedelta(days=1)
    move(world, 12)
    with world.db.uow() as uow:
        journal.close_days(uow, shanghai_day(clock.now))
        uow.commit()
    seq = middle_completed_seq(world.db)
    rows = journal_rows(world.db)
    prev = next(r for r in rows if r.seq == seq - 1).hash
    with world.db.engine.begin() as conn:
        for r in [r for r in rows if r.seq >= seq]:
            body = r.payload
            if r.seq == seq:
                p = json.loads(body)
                p["quantity"] += 5
                body = journal.canonical(p)
            h = journal.entry_hash(prev, r.seq, r.type, r.actor, r.time, body)
            conn.execute(
                sa.text(
                    "UPDATE journal SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s"
                ),
                {"p": body, "ph": prev, "h": h, "s": r.seq},
            )
            prev = h
        conn.execute(sa.text("UPDATE journal_head SET hash = :h"), {"h": prev})
    report = verify(world.db)
    assert not report.ok
    day = next(r.day for r in rows if r.seq == seq)
    first = next(r.seq for r in rows if r.day == day)
    assert report.problems[0] == (
        f"journal entry {first}: checkpoint of {day} does not match its entries"
    )
    assert any(p.startswith("invariant 6:") for p in report.problems)


@pytest.mark.parametrize("kind", ["user.created", "auth.login", "registry.transfer_proposed"])
def test_deleted_journal_row_is_named(world: World, kind: str) -> None:
    move(world, 5)
    move(world, 6)
    rows = journal_rows(world.db)
    seq = next(r.seq for r in rows[1:-1] if r.type == kind)
    execute(world.db, "DELETE FROM journal WHERE seq = :s", s=seq)
    report = verify(world.db)
    assert not report.ok
    assert report.problems[0] == f"journal entry {seq}: entry {seq} is missing"


def test_deleted_completed_transfer_row_is_named(world: World) -> None:
    move(world, 5)
    move(world, 6)
    seq = middle_completed_seq(world.db)
    execute(world.db, "DELETE FROM journal WHERE seq = :s", s=seq)
    report = verify(world.db)
    assert report.problems[0] == f"journal entry {seq}: entry {seq} is missing"


def test_deleted_last_journal_row_is_caught_by_the_head(world: World) -> None:
    move(world, 5)
    last = journal_rows(world.db)[-1].seq
    execute(world.db, "DELETE FROM journal WHERE seq = :s", s=last)
    report = verify(world.db)
    assert report.problems[0] == f"journal entry {last}: journal head does not match the last entry"


def test_edited_checkpoint_is_named(world: World, clock: Clock) -> None:
    clock.now += timedelta(days=1)
    move(world, 5)
    with world.db.uow() as uow:
        (day,) = journal.close_days(uow, shanghai_day(clock.now))
        uow.commit()
    first = journal_rows(world.db)[0].seq
    execute(
        world.db,
        "UPDATE journal_checkpoints SET merkle_root = :r WHERE day = :d",
        r="0" * 64,
        d=day,
    )
    report = verify(world.db)
    assert report.problems == [
        f"journal entry {first}: checkpoint of {day} does not match its entries"
    ]


def test_edited_holdings_row_is_caught_by_invariants(world: World) -> None:
    move(world, 100)
    execute(world.db, "UPDATE holdings SET posted = posted + 1 WHERE account_id = :a", a=world.b)
    report = verify(world.db)
    assert not report.ok
    assert not any(p.startswith("journal entry") for p in report.problems)  # the chain is fine
    assert any(p.startswith(f"invariant 1: {CEA}") for p in report.problems)
    assert any(p.startswith(f"invariant 3: {world.b} {CEA} blocks 100") for p in report.problems)
    assert any(p.startswith(f"invariant 6: {world.b} {CEA}") for p in report.problems)


def test_edited_pending_or_held_is_caught_by_replay(world: World) -> None:
    execute(world.db, "UPDATE holdings SET held = held + 7 WHERE account_id = :a", a=world.a)
    report = verify(world.db)
    assert report.problems == [
        f"invariant 6: {world.a} {CEA} stored [500000, 0, 7] ≠ replayed [500000, 0, 0]"
    ]


def test_edited_serial_blocks_are_caught(world: World) -> None:
    move(world, 100)
    b = s.unit_blocks
    with world.db.engine.begin() as conn:
        conn.execute(sa.update(b).where(b.c.account_id == world.b).values(start=b.c.start - 1))
    report = verify(world.db)
    assert any("serial blocks overlap" in p for p in report.problems)
    assert any(p.startswith(f"invariant 3: {world.b} {CEA} blocks 101") for p in report.problems)
    assert any(
        p == f"invariant 6: serial blocks of {world.b} differ from the journal's replay"
        for p in report.problems
    )


def test_verify_is_ok_on_a_fresh_and_a_busy_registry(world: World, clock: Clock) -> None:
    assert verify(world.db).ok
    for day in range(3):
        clock.now += timedelta(days=1)
        move(world, 10 + day)
        world.reg.surrender(
            world.bob,
            world.key(),
            from_account=world.b,
            unit_class=CEA,
            quantity=1,
            compliance_year=2023,
        )
        with world.db.uow() as uow:
            journal.close_days(uow, shanghai_day(clock.now))
            uow.commit()
    report = verify(world.db)
    assert report.ok, report.problems
    assert report.as_dict() == {"ok": True, "entries": len(journal_rows(world.db)), "problems": []}
    assert iso(clock.now) >= journal_rows(world.db)[-1].time
