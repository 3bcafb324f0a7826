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

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
