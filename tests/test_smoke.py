import re
import warnings

import sqlalchemy as sa

from carbonhub.core.db import Database
from carbonhub.verify import verify
from tests.conftest import World


def test_world_verifies(world: World) -> None:
    assert world.reg.account(world.alice, world.a)["holdings"][0]["posted"] == 500_000
    assert verify(world.db).ok


def test_migrations_match_the_tables(db: Database) -> None:
    """The schema Alembic builds is the one the code declares (types and lengths included:
    PostgreSQL enforces a VARCHAR length that SQLite ignores)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from carbonhub.tables import metadata

    with db.engine.connect() as conn, warnings.catch_warnings():
        # Alembic cannot reflect expression indexes; the test below checks the one we have
        warnings.filterwarnings("ignore", "autogenerate skipping", UserWarning)
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrations_build_the_take_order_index(db: Database) -> None:
    if db.backend == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_unit_blocks_take_order'"
    else:
        query = "SELECT sql FROM sqlite_master WHERE name = 'ix_unit_blocks_take_order'"
    with db.engine.connect() as conn:
        definition = conn.execute(sa.text(query)).scalar_one()
    columns = re.sub(r'[\s"()]', "", definition.split("(", 1)[1])
    assert columns == "account_id,unit_class,start-end,origin,batch,start", definition


def test_execute_many_writes_what_conn_execute_would(db: Database) -> None:
    """Plain values go straight to the driver; a type that converts values (Boolean here) goes
    through SQLAlchemy; an update with bind parameters works on both paths."""
    from carbonhub.core.db import execute_many, insert_many

    meta = sa.MetaData()
    plain = sa.Table(
        "t_many_plain",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20)),
    )
    typed = sa.Table(
        "t_many_typed",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("flag", sa.Boolean),
    )
    meta.create_all(db.engine)
    try:
        with db.uow() as uow:
            for _ in range(2):  # the second round runs from the compiled-statement cache
                uow.conn.execute(sa.delete(plain))
                uow.conn.execute(sa.delete(typed))
                insert_many(uow.conn, plain, [{"id": i, "name": f"n{i}"} for i in range(3)])
                insert_many(uow.conn, typed, [{"id": i, "flag": i % 2 == 0} for i in range(3)])
                execute_many(
                    uow.conn,
                    sa.update(plain)
                    .where(plain.c.id == sa.bindparam("i"))
                    .values(name=sa.bindparam("n")),
                    [{"i": 1, "n": "one"}, {"i": 2, "n": "two"}],
                )
            names = uow.conn.execute(sa.select(plain.c.name).order_by(plain.c.id)).scalars()
            flags = uow.conn.execute(sa.select(typed.c.flag).order_by(typed.c.id)).scalars()
            assert list(names) == ["n0", "one", "two"]
            assert list(flags) == [True, False, True]
    finally:
        meta.drop_all(db.engine)
