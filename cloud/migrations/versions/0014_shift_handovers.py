"""shift handovers and stored daily reports (交接班、日报): one row per desk and shift
start, and per desk and day, each unique so that one process makes it; and the daily
report's indexes (a covering index of the day's alerts, the alert log by action and time
and by alert and action)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shift_handovers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("desk", sa.String(length=64), nullable=False),
        sa.Column("desk_name", sa.String(length=100), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=True),
        sa.Column("compound", sa.String(length=64), nullable=True),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("shift_start", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("previous_start", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("made_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("desk", "shift_start", name="uq_shift_handover"),
    )
    with op.batch_alter_table("shift_handovers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shift_handovers_shift_start"), ["shift_start"], unique=False
        )

    op.create_table(
        "daily_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("desk", sa.String(length=64), nullable=False),
        sa.Column("desk_name", sa.String(length=100), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=True),
        sa.Column("compound", sa.String(length=64), nullable=True),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("made_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("desk", "day", name="uq_daily_report"),
    )
    with op.batch_alter_table("daily_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_daily_reports_day"), ["day"], unique=False)

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_day_report",
            ["opened_at", "severity", "kind", "community", "compound", "building"],
            unique=False,
        )
    with op.batch_alter_table("alert_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_alert_transitions_action_at", ["action", "at"], unique=False)
        batch_op.create_index(
            "ix_alert_transitions_alert_action", ["alert_id", "action", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_transitions_alert_action")
        batch_op.drop_index("ix_alert_transitions_action_at")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_day_report")
    with op.batch_alter_table("daily_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_daily_reports_day"))
    op.drop_table("daily_reports")
    with op.batch_alter_table("shift_handovers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shift_handovers_shift_start"))
    op.drop_table("shift_handovers")
