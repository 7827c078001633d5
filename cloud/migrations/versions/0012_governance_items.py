"""hotspots as governance items (治理事项): governance_items (kind and place, open or
closed, count, who closed it and why) and their history, governance_item_alerts (one
row per alert, keyed by the alert)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "governance_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("compound", sa.String(length=64), nullable=False),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("closed_at", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("close_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("governance_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_governance_items_place_status",
            ["community", "compound", "building", "status"],
            unique=False,
        )
        batch_op.create_index(
            "uq_governance_items_open_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "governance_item_alerts",
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["governance_items.id"]),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    with op.batch_alter_table("governance_item_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_item_alerts_item_id"), ["item_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("governance_item_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_item_alerts_item_id"))
    op.drop_table("governance_item_alerts")
    with op.batch_alter_table("governance_items", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_governance_items_open_key",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch_op.drop_index("ix_governance_items_place_status")
    op.drop_table("governance_items")
