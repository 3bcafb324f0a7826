"""transfers: an index for a holder's surrenders of a year

Without it SQLite's planner reads a year's surrenders through the status index, every completed
transfer of the registry, for each entity whose standing it works out (quadratic in a
compliance cycle: 49 s of surrenders for 3,700 entities).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_transfers_surrenders",
        "transfers",
        ["from_account", "op", "status", "compliance_year"],
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_surrenders", table_name="transfers")
