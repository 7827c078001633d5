"""fusion links between related alerts: the pair (lower id first, unique), the rule, its
reason and the severity it raised both to

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_links",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_lo", sa.BigInteger(), nullable=False),
        sa.Column("alert_hi", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("raised_to", sa.Integer(), nullable=True),
        sa.Column("created_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_lo"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["alert_hi"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_lo", "alert_hi", name="uq_alert_links_pair"),
    )
    with op.batch_alter_table("alert_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_links_alert_hi"), ["alert_hi"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_links_alert_hi"))
    op.drop_table("alert_links")
