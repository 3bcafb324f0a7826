"""unit_blocks: index a holding in the new take order, largest block first

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_unit_blocks_holding_order", table_name="unit_blocks")
    op.create_index(
        "ix_unit_blocks_take_order",
        "unit_blocks",
        ["account_id", "unit_class", sa.text('(start - "end")'), "origin", "batch", "start"],
    )


def downgrade() -> None:
    op.drop_index("ix_unit_blocks_take_order", table_name="unit_blocks")
    op.create_index(
        "ix_unit_blocks_holding_order",
        "unit_blocks",
        ["account_id", "unit_class", "origin", "batch", "start"],
    )
