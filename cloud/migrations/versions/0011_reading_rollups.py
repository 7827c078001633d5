"""hourly reading rollups for early warning at district size

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reading_series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("sensor", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("last_hour", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway", "sensor", "kind", "field", name="uq_reading_series"),
    )
    with op.batch_alter_table("reading_series", schema=None) as batch_op:
        batch_op.create_index("ix_reading_series_kind_field", ["kind", "field"], unique=False)

    op.create_table(
        "reading_rollups",
        sa.Column("series", sa.BigInteger(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("t", sa.Double(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["series"], ["reading_series.id"]),
        sa.PrimaryKeyConstraint("series", "hour"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("reading_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_reading_rollups_hour", ["hour"], unique=False)

    op.create_table(
        "reading_rollup_marks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("through_hour", sa.Integer(), nullable=False),
        sa.Column("seen_pk", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("reading_rollup_marks")
    with op.batch_alter_table("reading_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_rollups_hour")
    op.drop_table("reading_rollups")
    with op.batch_alter_table("reading_series", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_series_kind_field")
    op.drop_table("reading_series")
