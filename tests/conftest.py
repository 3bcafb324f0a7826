"""Fixtures on a real database: SQLite by default, PostgreSQL when CARBONHUB_DATABASE_URL is set.

SQLite: the schema is migrated once into a template file, copied for each test.
PostgreSQL: one database per test session, migrated once, the tables a test wrote truncated
before the next.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from carbonhub.core import migrate
from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database, normalise_url
from carbonhub.core.settings import Settings
from carbonhub.core.timefmt import SHANGHAI
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService, ledger_problems, replay_problems
from carbonhub.settlement.service import CashService, SettlementService
from carbonhub.settlement.service import ledger_problems as cash_problems
from carbonhub.tables import metadata

# CI runs the property tests on a fixed seed, so a landing never hinges on a lucky draw;
# locally every run explores new examples.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

PG_URL = os.environ.get("CARBONHUB_DATABASE_URL", "")
ON_PG = PG_URL.startswith("postgres")


def _pg_admin_url(url: str, dbname: str) -> str:
    base = normalise_url(url).rsplit("/", 1)[0]
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if ON_PG:
        name = f"carbonhub_test_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(_pg_admin_url(PG_URL, "postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = _pg_admin_url(PG_URL, name)
        db = Database(Settings(database_url=url))
        migrate.upgrade(db)
        db.dispose()
        yield url
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        template = tmp_path_factory.mktemp("tpl") / "template.db"
        db = Database(Settings(database_url=f"sqlite:///{template}"))
        migrate.upgrade(db)
        db.dispose()  # the last connection's close checkpoints the WAL into the file
        yield str(template)


_USED_TABLES = " UNION ALL ".join(
    f"SELECT '{t.name}' WHERE EXISTS (SELECT 1 FROM \"{t.name}\")" for t in metadata.sorted_tables
)
_pg_engines: dict[str, sa.Engine] = {}


def fresh_url(database_url: str, tmp_path: Path) -> str:
    if ON_PG:
        # only the tables the last test wrote: TRUNCATE costs a few ms a table, empty or not
        engine = _pg_engines.get(database_url)
        if engine is None:
            engine = _pg_engines[database_url] = sa.create_engine(normalise_url(database_url))
        with engine.begin() as c:
            used = [f'"{name}"' for (name,) in c.exec_driver_sql(_USED_TABLES)]
            if used:
                c.exec_driver_sql(f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE")
        return database_url
    target = tmp_path / "carbonhub.db"
    shutil.copy(database_url, target)
    return f"sqlite:///{target}"


@pytest.fixture
def db_url(database_url: str, tmp_path: Path) -> str:
    return fresh_url(database_url, tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(Settings(database_url=db_url, check_invariants=True))
    RegistryService(database).bootstrap()
    yield database
    database.dispose()


class Keys:
    """Fresh idempotency keys for tests."""

    def __call__(self) -> str:
        return f"test-{uuid.uuid4().hex}"


@dataclass
class World:
    """A small market: two operators, two enterprises with open holding accounts, a verifier,
    1,000,000 t of CEA-2023 issued and 500,000 t allocated to the first enterprise."""

    db: Database
    auth: AuthService
    reg: RegistryService
    op1: Actor
    op2: Actor
    alice: Actor  # enterprise A
    bob: Actor  # enterprise B
    verifier: Actor
    public: Actor
    a: str  # A's holding account
    b: str  # B's holding account
    entity_a: str
    entity_b: str
    key: Keys

    def issue_and_allocate(
        self, to: str, quantity: int, unit_class: str = "CEA-2023"
    ) -> dict[str, Any]:
        t = self.reg.issue(self.op1, self.key(), unit_class=unit_class, quantity=quantity)
        self.reg.approve(self.op2, self.key(), t["id"])
        al = self.reg.allocate(
            self.op1, self.key(), to_account=to, unit_class=unit_class, quantity=quantity
        )
        return self.reg.approve(self.op2, self.key(), al["id"])


@pytest.fixture
def world(db: Database) -> World:
    auth, reg, key = AuthService(db), RegistryService(db), Keys()
    ea = auth.create_entity(
        "华能武汉发电有限公司", "enterprise", "91420100MA4KX0001A", sector="power"
    )
    eb = auth.create_entity("武汉钢铁有限公司", "enterprise", "91420100MA4KX0002B", sector="steel")
    users = [
        ("op1", "operator", None),
        ("op2", "operator", None),
        ("alice", "enterprise", ea["id"]),
        ("bob", "enterprise", eb["id"]),
        ("vera", "verifier", None),
    ]
    for name, role, ent in users:
        auth.create_user(name, "password-" + name, role, ent)
    op1, op2, alice, bob, vera = (auth.authenticate(n, "password-" + n) for n, _, _ in users)
    a = reg.request_account(alice, key(), type="HOLDING", name="华能武汉 持有账户")["id"]
    b = reg.request_account(bob, key(), type="HOLDING", name="武钢 持有账户")["id"]
    reg.decide_account(op1, key(), a, approve=True)
    reg.decide_account(op1, key(), b, approve=True)
    from carbonhub.core.auth import PUBLIC

    w = World(db, auth, reg, op1, op2, alice, bob, vera, PUBLIC, a, b, ea["id"], eb["id"], key)
    t = reg.issue(op1, key(), unit_class="CEA-2023", quantity=1_000_000)
    reg.approve(op2, key(), t["id"])
    al = reg.allocate(op1, key(), to_account=a, unit_class="CEA-2023", quantity=500_000)
    reg.approve(op2, key(), al["id"])
    return w


class Clock:
    """A settable clock for the services: tests move time through sessions and days."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, day: str, hhmm: str) -> None:
        """Moves to a local (Asia/Shanghai) time on a day."""
        h, m = map(int, hhmm.split(":"))
        y, mo, d = map(int, day.split("-"))
        self.now = datetime(y, mo, d, h, m, tzinfo=SHANGHAI).astimezone(UTC)


@dataclass
class Market:
    """`World` plus an exchange: a bank, funded cash accounts, both enterprises as members,
    CEA2023 under national rules (listing, block, auction) and HBEA2023 under Hubei's
    (continuous, middle price rule), reference price 80.00, on Monday 2026-11-23 at 10:00."""

    w: World
    clock: Clock
    exchange: ExchangeService
    cash: CashService
    settlement: SettlementService
    bank: Actor
    cash_a: str
    cash_b: str

    def fund(self, account: str, yuan: str) -> None:
        self.cash.fund(self.bank, self.w.key(), account_id=account, amount=yuan)

    def problems(self) -> list[str]:
        with self.w.db.read() as ro:
            return (
                cash_problems(ro.conn)
                + self.exchange.replay_problems(ro.conn)
                + ledger_problems(ro.conn)
                + replay_problems(ro.conn)
            )


@pytest.fixture
def market(world: World) -> Market:
    w = world
    clock = Clock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # Monday 10:00 in Shanghai
    w.db.clock = clock
    bank_entity = w.auth.create_entity("汉口银行", "bank", "91420100MA4KX0009K")
    w.auth.create_user("hankou", "password-hankou", "bank", bank_entity["id"])
    bank = w.auth.authenticate("hankou", "password-hankou")
    cash = CashService(w.db)
    exchange = ExchangeService(w.db, w.reg, cash)
    settlement = SettlementService(w.db, w.reg, cash, exchange)
    cash_a = cash.open_account(bank, w.key(), entity_id=w.entity_a)["id"]
    cash_b = cash.open_account(bank, w.key(), entity_id=w.entity_b)["id"]
    for account in (cash_a, cash_b):
        cash.fund(bank, w.key(), account_id=account, amount="100000000.00")
    exchange.admit_member(w.op1, w.key(), entity_id=w.entity_a, account_id=w.a)
    exchange.admit_member(w.op1, w.key(), entity_id=w.entity_b, account_id=w.b)
    for code, preset in (("CEA2023", "national"), ("HBEA2023", "hubei")):
        exchange.create_instrument(
            w.op1,
            w.key(),
            code=code,
            unit_class="CEA-2023",
            name=f"{code} allowance",
            reference_price="80.00",
            preset=preset,
        )
    return Market(w, clock, exchange, cash, settlement, bank, cash_a, cash_b)
