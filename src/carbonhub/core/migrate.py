"""Schema migrations (Alembic), applied by `carbonhub db upgrade` and at server start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from carbonhub.core.db import Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(db: Database) -> None:
    cfg = _config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def revision(db: Database, message: str) -> None:
    """Developer aid: autogenerate a migration from the tables' metadata."""
    cfg = _config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
