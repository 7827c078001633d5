"""model registry and rollouts: every signed manifest (its id is the serial), rollouts
reshaped (one row per push, with its canary and abort settings) and one row per gateway
of a rollout. The old per-gateway ``model_rollouts`` table was never written: it is
dropped and made again in the new shape.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.db.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, cloud.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.drop_table("model_rollouts")
    op.create_table(
        "model_manifests",
        sa.Column("serial", _ID, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        _when("issued_at"),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_index(
        op.f("ix_model_manifests_model_id"), "model_manifests", ["model_id"], unique=False
    )
    op.create_table(
        "model_rollouts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("previous_model_id", sa.BigInteger(), nullable=True),
        sa.Column("rollback_of", sa.BigInteger(), nullable=True),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("canary_healthy_s", sa.Integer(), nullable=False),
        sa.Column("abort_failures", sa.Integer(), nullable=False),
        sa.Column("abort_failures_total", sa.Integer(), nullable=False),
        sa.Column("abort_fp_ratio", sa.Double(), nullable=False),
        sa.Column("fp_min_verdicts", sa.Integer(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("force_reason", sa.Text(), nullable=True),
        _when("healthy_since", nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(["model_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["previous_model_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["serial"], ["model_manifests.serial"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_model_rollouts_model_id"), "model_rollouts", ["model_id"])
    op.create_index(op.f("ix_model_rollouts_state"), "model_rollouts", ["state"])
    op.create_table(
        "model_rollout_gateways",
        sa.Column("rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        _when("sent_at", nullable=True),
        _when("answered_at", nullable=True),
        sa.Column("previous_version", sa.String(length=200), nullable=True),
        sa.Column("previous_model_id", sa.BigInteger(), nullable=True),
        sa.Column("running_version", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["gateway"], ["gateways.id"]),
        sa.ForeignKeyConstraint(["rollout_id"], ["model_rollouts.id"]),
        sa.PrimaryKeyConstraint("rollout_id", "gateway"),
    )
    op.create_index(
        "ix_model_rollout_gateways_gateway", "model_rollout_gateways", ["gateway"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_model_rollout_gateways_gateway", table_name="model_rollout_gateways")
    op.drop_table("model_rollout_gateways")
    op.drop_index(op.f("ix_model_rollouts_state"), table_name="model_rollouts")
    op.drop_index(op.f("ix_model_rollouts_model_id"), table_name="model_rollouts")
    op.drop_table("model_rollouts")
    op.drop_index(op.f("ix_model_manifests_model_id"), table_name="model_manifests")
    op.drop_table("model_manifests")
    op.create_table(
        "model_rollouts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        _when("updated_at"),
        sa.ForeignKeyConstraint(["gateway"], ["gateways.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "gateway", name="uq_rollout"),
    )
