"""Fixtures on a real database: SQLite by default, PostgreSQL when CARBONHUB_DATABASE_URL is set.

SQLite: the schema is migrated once into a template file, copied for each test.
PostgreSQL: one database per test session, migrated once, every table truncated between tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from carbonhub.core import migrate
from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database, normalise_url
from carbonhub.core.settings import Settings
from carbonhub.registry.service import RegistryService
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


def fresh_url(database_url: str, tmp_path: Path) -> str:
    if ON_PG:
        engine = sa.create_engine(database_url)
        with engine.begin() as c:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            c.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        engine.dispose()
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
