"""Readings partitioned by month on PostgreSQL: the migration keeps every row, the
ingest's COPY lands in the right month, a month made later takes its rows out of the
default partition, and retention drops whole months instead of deleting rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import func, insert, select, text

from cloud import retention
from cloud.db import make_engine, partitions, session_factory, upgrade
from cloud.db import models as m
from cloud.db.migrate import alembic_config
from cloud.site_sync import register_gateway
from tests.cloud.helpers import DEVICES, ingest, reading, unique_gateway
from tests.utils.services import postgres_database


def _row(pk_id: str, ts: datetime) -> dict:
    return {
        "id": pk_id,
        "gateway": "gw-part",
        "seq": None,
        "ts": ts,
        "sensor": "s1",
        "kind": "hydrant_pressure",
        "community": "c",
        "compound": "k",
        "building": None,
        "values": {"p": 0.3},
        "units": {},
        "faults": [],
        "samples": 1,
    }


def _where(conn, reading_id: str) -> str:
    return conn.scalar(
        text("SELECT tableoid::regclass::text FROM readings WHERE id = :id"), {"id": reading_id}
    )


def test_the_migration_partitions_by_month_and_keeps_every_row() -> None:
    with postgres_database() as url:
        upgrade(url, "0015")
        engine = make_engine(url)
        now = datetime.now(UTC)
        rows = [
            _row("now", now),
            _row("last-month", now - timedelta(days=31)),
            _row("ancient", now - timedelta(days=5 * 365)),  # beyond 24 months back
        ]
        with engine.begin() as conn:
            conn.execute(insert(m.ReadingRow), rows)
        engine.dispose()
        upgrade(url)  # 0016
        engine = make_engine(url)
        with engine.begin() as conn:
            assert partitions.is_partitioned(conn)
            assert conn.scalar(select(func.count()).select_from(m.ReadingRow)) == 3
            this_month = partitions.month_start(now)
            have = partitions.months(conn)
            for n in (-1, 0, 1, 2):
                assert partitions.add_months(this_month, n) in have
            assert _where(conn, "now") == partitions.partition_name(this_month)
            assert _where(conn, "ancient") == partitions.DEFAULT
            # the sequence moved with the column: new rows get new keys
            conn.execute(insert(m.ReadingRow), [_row("after", now)])
            keys = conn.scalars(select(m.ReadingRow.pk)).all()
            assert len(set(keys)) == 4
        engine.dispose()
        # and back: a plain table with the same rows
        command.downgrade(alembic_config(url), "0015")
        engine = make_engine(url)
        with engine.begin() as conn:
            assert not partitions.is_partitioned(conn)
            assert conn.scalar(select(func.count()).select_from(m.ReadingRow)) == 4
        engine.dispose()


def test_a_month_made_later_takes_its_rows_from_the_default_partition() -> None:
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        far = datetime(2031, 5, 10, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(m.ReadingRow), [_row("early", far)])
            assert _where(conn, "early") == partitions.DEFAULT
        with engine.begin() as conn:
            report = partitions.ensure_months(conn, far, ahead=1)
        assert report.created == ["readings_p2031_05", "readings_p2031_06"]
        with engine.begin() as conn:
            assert _where(conn, "early") == "readings_p2031_05"
            assert conn.scalar(select(func.count()).select_from(m.ReadingRow)) == 1
            # a second run (another process's step) finds nothing to do
            assert partitions.ensure_months(conn, far, ahead=1).created == []
        engine.dispose()


def test_the_ingest_copies_into_partitions_and_retention_drops_whole_months() -> None:
    with postgres_database() as url:
        upgrade(url)
        factory = session_factory(make_engine(url))
        gw = unique_gateway()
        with factory() as s, s.begin():
            register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        t0 = datetime(2032, 1, 15, tzinfo=UTC)
        with factory() as s, s.begin():
            partitions.ensure_months(s.connection(), t0 - timedelta(days=62), ahead=3)
        # 60 readings a month over three months: ≥ 50 in a batch takes the COPY path
        items = [
            reading(i + 1, ts=t0 - timedelta(days=31 * (i // 60)) - timedelta(minutes=i % 60))
            for i in range(180)
        ]
        ingest(factory, gw, items, now=t0)
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(m.ReadingRow)) == 180
            assert s.scalar(text("SELECT count(*) FROM readings_default")) == 0, (
                "every reading found its month"
            )
        # keep 40 days from 2032-02-20: November and December go whole, January by rows
        with factory() as s, s.begin():
            gone = retention.prune_readings(s, now=datetime(2032, 2, 20, tzinfo=UTC), keep_days=40)
        with factory() as s:
            left = s.scalars(select(m.ReadingRow.ts)).all()
            have = partitions.months(s.connection())
        assert gone == 180 - len(left)
        assert all(ts >= datetime(2032, 1, 11, tzinfo=UTC) for ts in left) and left
        assert datetime(2031, 11, 1, tzinfo=UTC) not in have
        assert datetime(2031, 12, 1, tzinfo=UTC) not in have
        assert datetime(2032, 1, 1, tzinfo=UTC) in have


def test_sqlite_has_no_partitions_and_retention_deletes_rows(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        assert not partitions.is_partitioned(conn)
        assert partitions.ensure_months(conn, datetime.now(UTC)).created == []
        conn.execute(insert(m.ReadingRow), [_row("old", datetime(2001, 1, 1, tzinfo=UTC))])
    factory = session_factory(engine)
    with factory() as s, s.begin():
        assert retention.prune_readings(s, now=datetime(2002, 1, 1, tzinfo=UTC), keep_days=30) == 1
    engine.dispose()
