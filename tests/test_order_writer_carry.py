"""The writer process's batches start from what the last one knew (orders, reservations, cash,
book positions) while no other connection committed in between. That must decide exactly as
reading everything again does, and must notice another connection's commit."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carbonhub.core.auth import Actor
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError
from carbonhub.core.settings import Settings
from carbonhub.exchange import store as xs
from carbonhub.exchange.service import Command, order_writer
from carbonhub.registry import store as rs
from carbonhub.settlement import store as ss
from tests.conftest import ON_PG, Market

pytestmark = pytest.mark.skipif(ON_PG, reason="SQLite's data_version: PostgreSQL never carries")

Writer = Any  # order_writer's batch function


def copy_of(db: Database, path: Path) -> Database:
    """A second database, byte for byte the first (SQLite's backup: the WAL included)."""
    source = sqlite3.connect(db.engine.url.database or "")
    target = sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    return Database(Settings(database_url=f"sqlite:///{path}", check_invariants=True), db.clock)


def stream(market: Market, seed: int, n: int) -> list[tuple[Actor, str, dict[str, Any]]]:
    """Orders of both members on both instruments (Alice mostly sells, Bob mostly buys; only
    Alice has units), with refusals (a seller without units,
    prices off the band, a buy beyond the cash), cancels, amends and takes of earlier orders
    (by their place in the stream, resolved in each run: ids differ between runs)."""
    rng = random.Random(seed)
    alice, bob = market.w.alice, market.w.bob
    out: list[tuple[Actor, str, dict[str, Any]]] = []
    for i in range(n):
        actor = alice if rng.random() < 0.5 else bob
        roll = rng.random()
        earlier = rng.randrange(i) if i else 0
        if roll < 0.15 and i:
            out.append((actor, "cancel_order", {"order_id": earlier}))
        elif roll < 0.25 and i:
            out.append(
                (actor, "amend_order", {"order_id": earlier, "quantity": rng.randint(1, 30)})
            )
        elif roll < 0.32 and i:
            out.append((actor, "take", {"order_id": earlier, "quantity": rng.randint(1, 40)}))
        else:
            listing = rng.random() < 0.3
            fen = 8000 + rng.randint(-60, 60) + (2000 if rng.random() < 0.03 else 0)
            qty = 1_500_000 if rng.random() < 0.02 else rng.randint(1, 80)
            out.append(
                (
                    actor,
                    "place_order",
                    {
                        "instrument": "CEA2023" if listing else "HBEA2023",
                        "mode": "LISTING" if listing else "CONTINUOUS",
                        "side": ("S" if actor is alice else "B")
                        if rng.random() < 0.95
                        else ("B" if actor is alice else "S"),
                        "price": f"{fen // 100}.{fen % 100:02d}",
                        "quantity": qty,
                        "tif": "LIMIT" if listing else rng.choice(["LIMIT", "LIMIT", "IOC", "FOK"]),
                    },
                )
            )
    return out


def drive(
    run: Writer, market: Market, commands: list[tuple[Actor, str, dict[str, Any]]], seed: int
) -> list[Any]:
    """The stream in batches of 1–6; each answer with its run's ids replaced by their order of
    first appearance, a refusal by its code."""
    rng = random.Random(seed)
    placed: list[str | None] = []  # the order id each command made, by its place
    names: dict[str, int] = {}
    answers: list[Any] = []
    at = market.clock()
    n = 0
    while n < len(commands):
        part = commands[n : n + rng.randint(1, 6)]
        batch = []
        for j, (actor, name, data) in enumerate(part, start=n):
            if "order_id" in data:
                target = placed[data["order_id"]] if data["order_id"] < len(placed) else None
                data = dict(data, order_id=target or "no-such-order")
            batch.append(Command(actor, f"carry-{seed}-{j}", name, data, at))
        results, _ = run(batch)
        for result in results:
            if isinstance(result, DomainError):
                answers.append(result.code)
                placed.append(None)
                continue
            placed.append(result["id"])
            for oid in (result["id"], result.get("target")):
                if oid is not None:
                    names.setdefault(oid, len(names))
            answers.append(
                dict(
                    result,
                    id=names[result["id"]],
                    target=names.get(result["target"]),
                    created_at=None,
                    updated_at=None,
                )
            )
        n += len(part)
    return answers


def ledger(db: Database) -> dict[str, Any]:
    """What the runs must agree on, without ids that differ between runs."""
    with db.read() as ro:
        c = ro.conn

        def rows(q: Any) -> list[Any]:
            return sorted(tuple(r) for r in c.execute(q))

        h, ca, f, o, t = rs.holdings.c, ss.cash_accounts.c, ss.cash_freezes.c, xs.orders, xs.trades
        return {
            "holdings": rows(sa.select(h.account_id, h.unit_class, h.posted, h.pending, h.held)),
            "cash": rows(sa.select(ca.id, ca.balance, ca.frozen)),
            "freezes": rows(sa.select(f.account_id, f.amount)),
            "holds": rows(sa.select(rs.holds.c.account_id, rs.holds.c.quantity, rs.holds.c.status)),
            "orders": rows(
                sa.select(o.c.side, o.c.price, o.c.quantity, o.c.open, o.c.filled, o.c.status)
            ),
            "trades": rows(sa.select(t.c.id, t.c.price, t.c.quantity, t.c.fee_buyer)),
            "books": rows(sa.select(xs.books.c.id, xs.books.c.seq)),
        }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_carrying_writer_decides_as_one_that_reads_everything_again(
    market: Market, tmp_path: Path, seed: int
) -> None:
    commands = stream(market, seed, 200)
    twin = copy_of(market.w.db, tmp_path / "twin.db")
    carried = drive(order_writer(market.w.db.settings), market, commands, seed)
    fresh = drive(order_writer(twin.settings, carry=False), market, commands, seed)
    assert carried == fresh
    assert ledger(market.w.db) == ledger(twin)
    codes = {a for a in carried if isinstance(a, str)}
    assert "INSUFFICIENT_AVAILABLE" in codes  # the stream reaches refusals, and trades
    assert len(codes) >= 5
    assert len(ledger(twin)["trades"]) >= 4  # makers from earlier batches among them
    assert market.problems() == []
    twin.dispose()


def test_another_connections_commit_is_seen_by_the_next_batch(market: Market) -> None:
    """Bob's buy freezes most of his cash; the bank then pays out the rest from another
    connection, and units are frozen on Alice's account by the registry. The writer's next
    batch must see both: what it carried is stale."""
    run = order_writer(market.w.db.settings)
    at, key, w = market.clock(), market.w.key, market.w

    def place(actor: Actor, side: str, qty: int, price: str = "80.00") -> Any:
        data = {
            "instrument": "HBEA2023",
            "mode": "CONTINUOUS",
            "side": side,
            "price": price,
            "quantity": qty,
            "tif": "LIMIT",
        }
        results, _ = run([Command(actor, key(), "place_order", data, at)])
        return results[0]

    first = place(w.bob, "B", 1_000_000)  # 80,000,000 yuan and its fee of 100,000,000
    assert first["status"] == "OPEN"
    sale = place(w.alice, "S", 400_000, "87.00")  # rests: above bob's bid
    assert sale["status"] == "OPEN"
    market.cash.defund(market.bank, key(), account_id=market.cash_b, amount="19000000.00")
    w.reg.place_hold(
        w.op1,
        key(),
        account_id=w.a,
        unit_class="CEA-2023",
        quantity=90_000,
        kind="JUDICIAL_FREEZE",
        legal_basis="(2026) 鄂01执7号",
    )
    refused = place(w.bob, "B", 12_000)  # 960,000 yuan: fitted before the payout
    assert isinstance(refused, DomainError) and refused.code == "INSUFFICIENT_CASH"
    refused = place(w.alice, "S", 20_000, "87.00")  # 10,000 t are left unfrozen
    assert isinstance(refused, DomainError) and refused.code == "INSUFFICIENT_AVAILABLE"
    assert market.problems() == []
