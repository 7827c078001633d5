"""readings partitioned by month on PostgreSQL (native range partitioning on ts), so
retention drops a month's partition instead of deleting rows one by one; SQLite is
unchanged

The primary key becomes (pk, ts) and the unique id (id, ts): PostgreSQL requires the
partition key in every unique constraint. Nothing relied on ``id`` alone being unique in
the table: the ingest's ledger is what refuses a resent reading. Partitions are made for
the months that hold readings (up to 24 back) and this month and the next two; older
rows go to the default partition. ``cloud.db.partitions`` makes later months ahead.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 07:20:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

MONTHS_BACK = 24
MONTHS_AHEAD = 2


def _month(year: int, month: int) -> datetime:
    index = year * 12 + month - 1
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ex = op.execute
    ex("ALTER TABLE readings RENAME TO readings_unpartitioned")
    ex("ALTER INDEX ix_readings_device_ts RENAME TO ix_readings_unpartitioned_device_ts")
    ex("ALTER INDEX ix_readings_ts RENAME TO ix_readings_unpartitioned_ts")
    ex("ALTER INDEX readings_pkey RENAME TO readings_unpartitioned_pkey")
    ex("ALTER INDEX readings_id_key RENAME TO readings_unpartitioned_id_key")
    ex(
        "CREATE TABLE readings (LIKE readings_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (ts)"
    )
    ex("ALTER TABLE readings ADD CONSTRAINT readings_pkey PRIMARY KEY (pk, ts)")
    ex("ALTER TABLE readings ADD CONSTRAINT readings_id_key UNIQUE (id, ts)")
    ex("CREATE INDEX ix_readings_device_ts ON readings (gateway, sensor, ts)")
    ex("CREATE INDEX ix_readings_ts ON readings (ts)")
    ex("ALTER SEQUENCE readings_pk_seq OWNED BY readings.pk")
    ex("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    now = bind.scalar(sa.text("SELECT now()"))
    oldest = bind.scalar(sa.text("SELECT min(ts) FROM readings_unpartitioned"))
    this_month = _month(now.year, now.month)
    first = this_month
    if oldest is not None:
        oldest_month = _month(oldest.year, oldest.month)
        first = max(min(oldest_month, this_month), _month(now.year, now.month - MONTHS_BACK))
    month = first
    while month <= _month(now.year, now.month + MONTHS_AHEAD):
        nxt = _month(month.year, month.month + 1)
        ex(
            f"CREATE TABLE readings_p{month:%Y_%m} PARTITION OF readings "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{nxt.isoformat()}')"
        )
        month = nxt
    ex("INSERT INTO readings SELECT * FROM readings_unpartitioned")
    ex("DROP TABLE readings_unpartitioned")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ex = op.execute
    ex("ALTER TABLE readings RENAME TO readings_partitioned")
    ex("ALTER INDEX ix_readings_device_ts RENAME TO ix_readings_partitioned_device_ts")
    ex("ALTER INDEX ix_readings_ts RENAME TO ix_readings_partitioned_ts")
    ex("ALTER INDEX readings_pkey RENAME TO readings_partitioned_pkey")
    ex("ALTER INDEX readings_id_key RENAME TO readings_partitioned_id_key")
    ex("CREATE TABLE readings (LIKE readings_partitioned INCLUDING DEFAULTS)")
    ex("ALTER TABLE readings ADD CONSTRAINT readings_pkey PRIMARY KEY (pk)")
    ex("ALTER TABLE readings ADD CONSTRAINT readings_id_key UNIQUE (id)")
    ex("CREATE INDEX ix_readings_device_ts ON readings (gateway, sensor, ts)")
    ex("CREATE INDEX ix_readings_ts ON readings (ts)")
    ex("ALTER SEQUENCE readings_pk_seq OWNED BY readings.pk")
    ex("INSERT INTO readings SELECT * FROM readings_partitioned")
    ex("DROP TABLE readings_partitioned CASCADE")
