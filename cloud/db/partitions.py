"""Monthly partitions of the readings table on PostgreSQL (native range partitioning).

Readings are most of a district's rows (500 compounds × 40 sensors at one a minute is
about 29 million a day), and retention used to delete them row by row: hours of I/O and
a bloated table each night. Partitioned by the month of ``ts``, retention drops a whole
month's table in milliseconds (:func:`drop_months_before`), and queries on a time range
read only the months they touch.

Migration 0016 turns the table into a partitioned one. Each month needs its partition
before its readings arrive: :func:`ensure_months` (a scheduler step, and at start)
creates this month's and the next ``AHEAD_MONTHS``. Rows outside every month (a
gateway's clock years off) land in ``readings_default``; a month created later takes
its rows out of the default partition first, so nothing is refused or lost.

SQLite has no partitions: every function here does nothing there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

PARENT = "readings"
DEFAULT = "readings_default"
AHEAD_MONTHS = 2
_NAME = re.compile(r"^readings_p(\d{4})_(\d{2})$")
# one process at a time changes the partitions (several cloud processes run the step)
_LOCK_KEY = 0x6D625F7061727473  # "mb_parts"


def month_start(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"readings_p{month:%Y_%m}"


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(
        conn.scalar(
            text(
                "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                "WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
            ),
            {"name": PARENT},
        )
    )


def months(conn: Connection) -> dict[datetime, str]:
    """The monthly partitions that exist: month start → table name."""
    names = conn.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"
        ),
        {"parent": PARENT},
    ).all()
    out = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            out[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return out


def _lock(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _create_month(conn: Connection, month: datetime) -> None:
    """Create ``month``'s partition, first taking its rows out of the default partition
    (PostgreSQL refuses a new partition while the default one holds rows of its range)."""
    name, lo, hi = partition_name(month), month, add_months(month, 1)
    bounds = {"lo": lo, "hi": hi}
    stranded = conn.scalar(
        text(f'SELECT count(*) FROM "{DEFAULT}" WHERE ts >= :lo AND ts < :hi'), bounds
    )
    if stranded:
        conn.execute(text(f'ALTER TABLE "{PARENT}" DETACH PARTITION "{DEFAULT}"'))
    conn.execute(
        text(
            f'CREATE TABLE "{name}" PARTITION OF "{PARENT}" '
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
    )
    if stranded:
        conn.execute(
            text(f'INSERT INTO "{PARENT}" SELECT * FROM "{DEFAULT}" WHERE ts >= :lo AND ts < :hi'),
            bounds,
        )
        conn.execute(text(f'DELETE FROM "{DEFAULT}" WHERE ts >= :lo AND ts < :hi'), bounds)
        conn.execute(text(f'ALTER TABLE "{PARENT}" ATTACH PARTITION "{DEFAULT}" DEFAULT'))
        log.info("partition %s: moved %d reading(s) out of %s", name, stranded, DEFAULT)


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_dropped: int = 0


def ensure_months(conn: Connection, now: datetime, ahead: int = AHEAD_MONTHS) -> PartitionReport:
    """Create the partitions of this month and the next ``ahead`` that are missing."""
    report = PartitionReport()
    if not is_partitioned(conn):
        return report
    _lock(conn)
    have = months(conn)
    first = month_start(now)
    for n in range(ahead + 1):
        month = add_months(first, n)
        if month not in have:
            _create_month(conn, month)
            report.created.append(partition_name(month))
    if report.created:
        log.info("readings partitions created: %s", ", ".join(report.created))
    return report


def drop_months_before(conn: Connection, cutoff: datetime) -> PartitionReport:
    """Drop every monthly partition that ends at or before ``cutoff`` (retention); the
    rows they held are counted first, for the log and the caller."""
    report = PartitionReport()
    if not is_partitioned(conn):
        return report
    _lock(conn)
    for month, name in sorted(months(conn).items()):
        if add_months(month, 1) > cutoff:
            continue
        report.rows_dropped += conn.scalar(text(f'SELECT count(*) FROM "{name}"')) or 0
        conn.execute(text(f'DROP TABLE "{name}"'))
        report.dropped.append(name)
    if report.dropped:
        log.info(
            "retention dropped readings partitions %s (%d rows)",
            ", ".join(report.dropped),
            report.rows_dropped,
        )
    return report
