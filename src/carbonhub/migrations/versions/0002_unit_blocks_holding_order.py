"""unit_blocks: index in take order per holding, so a batch reads only the front of a holding

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("unit_blocks", schema=None) as batch_op:
        batch_op.drop_index("ix_unit_blocks_account_class")
        batch_op.create_index(
            "ix_unit_blocks_holding_order",
            ["account_id", "unit_class", "origin", "batch", "start"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("unit_blocks", schema=None) as batch_op:
        batch_op.drop_index("ix_unit_blocks_holding_order")
        batch_op.create_index(
            "ix_unit_blocks_account_class", ["account_id", "unit_class"], unique=False
        )
