"""`core.db.fetch`, `run` and `execute_many` run compiled-once statements on the driver's
cursor: they must read and write exactly what SQLAlchemy's own `conn.execute` does, on SQLite
and on PostgreSQL, for lists of every length (empty too), literals baked into the statement and
named parameters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonhub.core import db as db_module
from carbonhub.core.db import Database, execute_many, fetch, insert_many, run
from carbonhub.exchange import store as s

ROWS = [
    {"code": f"I{i:02d}", "unit_class": f"C-{i % 3}", "name": f"n{i}", "status": st}
    for i, st in enumerate(["ACTIVE", "SUSPENDED"] * 6)
]
BY_CODES_AND_STATUS = sa.select(s.instruments.c.code, s.instruments.c.unit_class).where(
    s.instruments.c.code.in_(sa.bindparam("codes", expanding=True)),
    s.instruments.c.status == "ACTIVE",  # a literal in the statement
    s.instruments.c.unit_class.in_(sa.bindparam("classes", expanding=True)),
)
RENAME = (
    sa.update(s.instruments)
    .where(s.instruments.c.code == sa.bindparam("c"))
    .values(name=sa.bindparam("n"))
)


def _seed(db: Database) -> None:
    with db.uow() as uow:
        insert_many(
            uow.conn,
            s.instruments,
            [
                {**r, "rules": "{}", "reference_price": 8000, "created_at": "2026-01-01"}
                for r in ROWS
            ],
        )
        uow.commit()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    codes=st.lists(st.sampled_from([r["code"] for r in ROWS] + ["NONE"]), max_size=6),
    classes=st.lists(st.sampled_from(["C-0", "C-1", "C-2", "C-9"]), max_size=3),
)
def test_fetch_reads_what_sqlalchemy_reads(
    db: Database, codes: list[str], classes: list[str]
) -> None:
    with db.read() as ro:
        empty = not fetch(ro.conn, sa.select(s.instruments.c.code))
    if empty:  # hypothesis runs every example on the same database
        _seed(db)
    with db.read() as ro:
        ours = fetch(ro.conn, BY_CODES_AND_STATUS, codes=codes, classes=classes)
        theirs = ro.conn.execute(BY_CODES_AND_STATUS, {"codes": codes, "classes": classes}).all()
        # the same rows, with their columns named as SQLAlchemy names them
        assert sorted(sorted(r._asdict().items()) for r in ours) == sorted(
            sorted(r._asdict().items()) for r in theirs
        )


def test_run_and_execute_many_write_what_they_are_given(db: Database) -> None:
    _seed(db)
    with db.uow() as uow:
        run(uow.conn, RENAME, c="I00", n="renamed")
        execute_many(uow.conn, RENAME, [{"c": "I01", "n": "one"}, {"c": "I02", "n": "two"}])
        uow.commit()
    with db.read() as ro:
        names: dict[str, Any] = dict(
            ro.conn.execute(sa.select(s.instruments.c.code, s.instruments.c.name)).all()
        )
    assert (names["I00"], names["I01"], names["I02"], names["I03"]) == (
        "renamed",
        "one",
        "two",
        "n3",
    )


BY_CODE = sa.select(s.instruments.c.name).where(s.instruments.c.code == sa.bindparam("c"))
FORGET = sa.delete(s.instruments).where(s.instruments.c.code == sa.bindparam("c"))


def test_statements_with_one_parameter(db: Database) -> None:
    """One bind parameter is the driver's one-value tuple (operator.itemgetter's own answer
    for one name is the bare value)."""
    _seed(db)
    with db.uow() as uow:
        assert [r.name for r in fetch(uow.conn, BY_CODE, c="I04")] == ["n4"]
        execute_many(uow.conn, FORGET, [{"c": "I04"}, {"c": "I05"}])
        run(uow.conn, FORGET, c="I06")
        assert fetch(uow.conn, BY_CODE, c="I05") == []
        uow.commit()
    with db.read() as ro:
        left = set(ro.conn.execute(sa.select(s.instruments.c.code)).scalars())
    assert left == {r["code"] for r in ROWS} - {"I04", "I05", "I06"}


def test_a_statement_built_twice_is_still_one_statement(db: Database) -> None:
    """Fresh statements with the same structure but other literals must not share SQL."""
    _seed(db)
    with db.read() as ro:
        for status in ("ACTIVE", "SUSPENDED"):
            q = sa.select(s.instruments.c.code).where(s.instruments.c.status == status)
            assert len(fetch(ro.conn, q)) == 6
            assert {r.code for r in fetch(ro.conn, q)} == {
                r["code"] for r in ROWS if r["status"] == status
            }


def test_a_statement_built_for_one_call_is_not_compiled_again_and_again(db: Database) -> None:
    """An inline statement goes through SQLAlchemy (its cache knows the structure); the same
    statement object met again is compiled once and then found by identity."""
    _seed(db)
    with db.read() as ro:
        before = len(db_module._prepared)
        for _ in range(3):
            q = sa.select(s.instruments.c.code).where(s.instruments.c.status == "ACTIVE")
            assert len(fetch(ro.conn, q)) == 6
        assert len(db_module._prepared) == before
        constant = sa.select(s.instruments.c.code).where(s.instruments.c.status == "SUSPENDED")
        answers = [sorted(r.code for r in fetch(ro.conn, constant)) for _ in range(3)]
        assert answers[0] == answers[1] == answers[2]
        assert answers[0] == sorted(r["code"] for r in ROWS if r["status"] == "SUSPENDED")
        assert db_module._prepared[(ro.conn.dialect.name, id(constant))].statement is constant
