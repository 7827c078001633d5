"""smart response: playbook runs, notifications and their delivery attempts, channel
leases, repeating voice warnings, single-use acknowledgement links, work-order deadlines

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:16:13.108379
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_leases",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("until", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel"),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_attempts_channel_at", ["channel", "at"], unique=False)

    op.create_table(
        "ack_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("created_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    with op.batch_alter_table("ack_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ack_links_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "announcements",
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("compound", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("speaker", sa.String(length=64), nullable=True),
        sa.Column("repeat_s", sa.Double(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("next_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    with op.batch_alter_table("announcements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_announcements_next_at"), ["next_at"], unique=False)

    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("contact", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=True),
        sa.Column("mobile", sa.String(length=32), nullable=True),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(
            "ix_notifications_due", ["channel", "status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "response_runs",
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("playbooks", sa.String(length=300), nullable=False),
        sa.Column("at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_steps", sa.JSON(), nullable=False),
        sa.Column("suggestions", sa.JSON(), nullable=False),
        sa.Column("work_order_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    op.create_table(
        "delivery_attempt_items",
        sa.Column("attempt_id", sa.BigInteger(), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["delivery_attempts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
        ),
        sa.PrimaryKeyConstraint("attempt_id", "notification_id"),
    )
    with op.batch_alter_table("delivery_attempt_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempt_items_notification_id"),
            ["notification_id"],
            unique=False,
        )

    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("due_at", cloud.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_work_orders_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_orders_due_at"))
        batch_op.drop_column("due_at")

    with op.batch_alter_table("delivery_attempt_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempt_items_notification_id"))

    op.drop_table("delivery_attempt_items")
    op.drop_table("response_runs")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_due")
        batch_op.drop_index(batch_op.f("ix_notifications_alert_id"))

    op.drop_table("notifications")
    with op.batch_alter_table("announcements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_announcements_next_at"))

    op.drop_table("announcements")
    with op.batch_alter_table("ack_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ack_links_alert_id"))

    op.drop_table("ack_links")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_attempts_channel_at")

    op.drop_table("delivery_attempts")
    op.drop_table("channel_leases")
