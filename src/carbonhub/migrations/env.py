"""Alembic environment: runs on the connection carbonhub hands it (see core/migrate.py)."""

from alembic import context

from carbonhub.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via core.migrate
    raise RuntimeError("run migrations with `carbonhub db upgrade`")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
