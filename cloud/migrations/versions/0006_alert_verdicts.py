"""alerts: verdicts (confirmed / false positive) and the duty console's indexes

One verdict per alert (the latest; the alert's log keeps every one), and indexes for
the console's filters: a kind at a place (similar past alerts), an opened_at range and
the list's newest-change-first order, which otherwise scanned the whole table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_verdicts",
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    op.create_index(
        "ix_alerts_kind_place",
        "alerts",
        ["kind", "community", "compound", "building"],
        unique=False,
    )
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"], unique=False)
    op.create_index("ix_alerts_updated_at", "alerts", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_updated_at", table_name="alerts")
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
    op.drop_index("ix_alerts_kind_place", table_name="alerts")
    op.drop_table("alert_verdicts")
