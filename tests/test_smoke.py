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
