"""ingest: outbox epochs, seq collisions, undeclared devices counted, the recheck's gateway

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # outbox epochs: sequences are unique per (gateway, epoch); "" is an older gateway's
    with op.batch_alter_table("ingest_ledger", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("epoch", sa.String(length=32), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_ledger_gateway_seq", type_="unique")
        batch_op.create_unique_constraint(
            "uq_ledger_gateway_epoch_seq", ["gateway", "epoch", "seq"]
        )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("epochs_seen", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("seq_collisions", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("unknown_device_items", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "gateway_epochs",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("first_seen", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "epoch"),
    )
    # a recheck's reply counts only from the gateway it was sent to
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recheck_gateway", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.drop_column("recheck_gateway")
    op.drop_table("gateway_epochs")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("unknown_device_items")
        batch_op.drop_column("seq_collisions")
        batch_op.drop_column("epochs_seen")
        batch_op.drop_column("epoch")
    # seqs that repeat across epochs cannot go back under (gateway, seq): keep the oldest
    op.execute(
        "UPDATE ingest_ledger SET seq = NULL WHERE epoch <> '' AND seq IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM ingest_ledger o WHERE o.gateway = ingest_ledger.gateway "
        "AND o.seq = ingest_ledger.seq AND o.received_at < ingest_ledger.received_at)"
    )
    with op.batch_alter_table("ingest_ledger", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ledger_gateway_epoch_seq", type_="unique")
        batch_op.create_unique_constraint("uq_ledger_gateway_seq", ["gateway", "seq"])
        batch_op.drop_column("epoch")
