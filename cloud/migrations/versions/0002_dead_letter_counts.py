"""dead letters: one row per distinct bad item, with a count

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("digest", sa.String(length=64), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("count", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "dead_letters",
        sa.Column("last_seen", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_dead_letters_gateway_digest", "dead_letters", ["gateway", "digest"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_gateway_digest", table_name="dead_letters")
    op.drop_column("dead_letters", "last_seen")
    op.drop_column("dead_letters", "count")
    op.drop_column("dead_letters", "digest")
