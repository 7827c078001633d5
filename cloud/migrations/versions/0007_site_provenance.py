"""site_config: where each node of the loaded site was declared (file:line)

The console's site page shows, beside each community, compound, building, gateway,
device and department, the line of the YAML file it came from. Rows loaded before this
revision have none recorded ({}), and the page says so.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("site_config", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("site_config", schema=None) as batch_op:
        batch_op.drop_column("sources")
