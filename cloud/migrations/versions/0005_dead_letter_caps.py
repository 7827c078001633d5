"""dead letters: a cap per gateway (the dropped count, an index for the window)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dead_letters_dropped", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_index(
        "ix_dead_letters_gateway_received", "dead_letters", ["gateway", "received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_gateway_received", table_name="dead_letters")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("dead_letters_dropped")
