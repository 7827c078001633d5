"""device liveness states and flapping: device_liveness (one
row per gateway, camera and sensor: observed and debounced state, recent down-episodes,
flapping) and liveness_sweeps (the row each sweep locks first)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_liveness",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("observed", sa.String(length=8), nullable=False),
        sa.Column("observed_since", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("state_since", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.Column("downs", sa.JSON(), nullable=False),
        sa.Column("last_change_at", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("flap_count", sa.Integer(), nullable=False),
        sa.Column("flapping_since", cloud.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("gateway", "type", "device"),
    )
    op.create_table(
        "liveness_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_at", cloud.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sweeps", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("liveness_sweeps")
    op.drop_table("device_liveness")
