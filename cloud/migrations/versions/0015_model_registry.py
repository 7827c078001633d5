"""model registry and rollouts (placeholder: filled in by the registry work)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
