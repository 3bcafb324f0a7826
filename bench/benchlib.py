"""What the exchange benchmarks share: a stopped clock, a fresh database per run (a temporary
SQLite file, or a scratch database on the PostgreSQL server CARBONHUB_DATABASE_URL names, dropped
afterwards), and the facts a figure must carry: durability settings, machine and code version."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from carbonhub.core import migrate
from carbonhub.core.auth import Actor, AuthService, Role
from carbonhub.core.db import Database, normalise_url
from carbonhub.core.quantities import yuan_from_fen
from carbonhub.core.settings import Settings
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService, SettlementService


class Clock:
    """The services' clock: stopped at an instant the bench moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ------------------------------------------------------------------ databases


def bench_settings(url: str) -> Settings:
    # Pinned so the environment cannot turn the run into something else (see registry_transfers).
    return Settings(database_url=url, check_invariants=False, untrusted_delay_minutes=0)


@contextlib.contextmanager
def fresh_database(base_url: str | None) -> Iterator[Database]:
    """A fresh, empty carbonhub database: a temp SQLite file, or a new PostgreSQL database."""
    if base_url is None:
        tmp = Path(tempfile.mkdtemp(prefix="carbonhub-bench-"))
        db = Database(bench_settings(f"sqlite:///{tmp / 'carbonhub.db'}"))
        try:
            yield db
        finally:
            db.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    admin = sa.create_engine(
        make_url(normalise_url(base_url)).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    name = f"carbonhub_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(normalise_url(base_url)).set(database=name)
        db = Database(bench_settings(url.render_as_string(hide_password=False)))
        try:
            yield db
        finally:
            db.dispose()
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def durability_settings(db: Database) -> dict[str, Any]:
    with db.engine.connect() as c:
        if db.backend == "sqlite":
            return {
                "journal_mode": c.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    int(c.exec_driver_sql("PRAGMA synchronous").scalar() or 0), "?"
                ),
                "sqlite_version": c.exec_driver_sql("select sqlite_version()").scalar(),
            }
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        return {n: c.exec_driver_sql(f"SHOW {n}").scalar() for n in names}


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
    }


def code_version() -> dict[str, Any]:
    """The git commit, whether the tree differs from it, and a digest of the carbonhub sources."""
    import carbonhub

    src = Path(carbonhub.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(src.rglob("*.py")):
        digest.update(f.relative_to(src).as_posix().encode())
        digest.update(f.read_bytes())
    out: dict[str, Any] = {"sources_sha256": digest.hexdigest()[:16]}
    try:

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", "-C", str(src), *a], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()

        out["commit"] = git("rev-parse", "--short", "HEAD")
        out["dirty"] = bool(git("status", "--porcelain", "--", "."))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ------------------------------------------------------------------ setup (not timed)

HUBEI_UNIT_CLASS = "CEA-2023"
HUBEI_INSTRUMENT = "HBEA2023"
HUBEI_REFERENCE_FEN = 8000


@dataclass
class BenchMarket:
    db: Database
    clock: Clock
    exchange: ExchangeService
    settlement: SettlementService
    auth: AuthService
    operator: Actor
    members: list[Actor]


@dataclass
class Holders:
    """Two operators (maker and checker) and enterprises, each with a user and an open holding
    account holding freshly issued and allocated units."""

    reg: RegistryService
    auth: AuthService
    op1: Actor
    op2: Actor
    key: Callable[[], str]  # a fresh idempotency key for more set-up
    actors: list[Actor]  # the enterprise users, in account order
    accounts: list[str]


def setup_holders(
    db: Database, enterprises: int, allocation: int, unit_class: str, tag: str, label: str
) -> Holders:
    """`enterprises` holders of `allocation` t each of `unit_class`, through the services;
    `label` names them ("基准企业 007", user "bench-e007" for label "企业")."""
    migrate.upgrade(db)
    reg, auth = RegistryService(db), AuthService(db)
    reg.bootstrap()
    serial = iter(range(1_000_000))

    def key() -> str:
        return f"bench-setup-{tag}-{next(serial):07d}"

    for name in ("bench-op1", "bench-op2"):
        auth.create_user(name, f"password-{name}", "operator")
    op1 = auth.authenticate("bench-op1", "password-bench-op1")
    op2 = auth.authenticate("bench-op2", "password-bench-op2")
    short = {"企业": "e", "会员": "m"}.get(label, "x")
    actors: list[Actor] = []
    accounts: list[str] = []
    for i in range(enterprises):
        ent = auth.create_entity(
            f"基准{label} {i:03d}",
            "enterprise",
            f"91420100MA{i:08d}",
            name_en=f"Bench {i:03d}",
            sector="power",
        )
        user = auth.create_user(
            f"bench-{short}{i:03d}", f"password-{short}{i:03d}", "enterprise", ent["id"]
        )
        # The Actor authenticate() would return, without a second Argon2 round per user.
        actor = Actor(user["id"], user["username"], Role(user["role"]), user["entity_id"])
        acc = reg.request_account(
            actor, key(), type="HOLDING", name=f"基准{label} {i:03d} 持有账户"
        )
        reg.decide_account(op1, key(), acc["id"], approve=True)
        actors.append(actor)
        accounts.append(acc["id"])
    issued = reg.issue(op1, key(), unit_class=unit_class, quantity=allocation * enterprises)
    reg.approve(op2, key(), issued["id"])
    bulk = reg.allocate_bulk(op1, key(), [(a, unit_class, allocation) for a in accounts])
    reg.approve_batch(op2, key(), bulk["batch_ref"])
    return Holders(reg, auth, op1, op2, key, actors, accounts)


def setup_hubei_market(
    db: Database, members: int, *, units_each: int, cash_each: str, tag: str, at: datetime
) -> BenchMarket:
    """`setup_holders`' enterprises as exchange members, each with a cash account at a bank
    funded with `cash_each` yuan, and HBEA2023 listed under the "hubei" preset (reference price
    80.00); everything through the services, on a settable clock at `at`."""
    clock = Clock(at)
    db.clock = clock
    h = setup_holders(db, members, units_each, HUBEI_UNIT_CLASS, tag, "会员")
    reg, auth, op1, key = h.reg, h.auth, h.op1, h.key
    cash = CashService(db)
    exchange = ExchangeService(db, reg, cash)
    bank_entity = auth.create_entity("基准银行", "bank", "91420100MB00000001")["id"]
    auth.create_user("bench-bank", "password-bench-bank", "bank", bank_entity)
    bank = auth.authenticate("bench-bank", "password-bench-bank")
    for actor, account in zip(h.actors, h.accounts, strict=True):
        ca = cash.open_account(bank, key(), entity_id=actor.entity_id)["id"]
        cash.fund(bank, key(), account_id=ca, amount=cash_each)
        exchange.admit_member(op1, key(), entity_id=actor.entity_id, account_id=account)
    exchange.create_instrument(
        op1,
        key(),
        code=HUBEI_INSTRUMENT,
        unit_class=HUBEI_UNIT_CLASS,
        name="湖北碳排放权 HBEA2023",
        reference_price=yuan_from_fen(HUBEI_REFERENCE_FEN),
        preset="hubei",
    )
    settlement = SettlementService(db, reg, cash, exchange)
    return BenchMarket(db, clock, exchange, settlement, auth, op1, h.actors)
