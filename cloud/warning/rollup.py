"""Hourly rollups of the readings (整点汇总): the median of every numeric value of every
sensor in each completed hour, kept up to date a cycle at a time from a watermark.

The early warning fits hourly medians over a week for every sensor; reading the raw
readings for that (10,000 sensors × 7 days × every 10 minutes = 10 million rows) each
cycle is what made it slow. The rollup keeps one row per (series, hour), where a series
is one (gateway, sensor, kind, field): the median time and value (as
:func:`cloud.warning.trend.downsample` makes them, to the bit) and the count. Every
numeric field of every kind is rolled, not only those a rule names, so that a rule added
to the configuration finds its history there.

A cycle (:func:`catch_up`) does two things, under a lock on the one mark row (two
processes never roll at once; the second waits, then finds nothing to do):

- **new hours**: the hours that completed since the last cycle (``through_hour`` up to
  the hour ``now`` is in) are rolled from their readings, read by time
  (``ix_readings_ts``). An hour is rolled once it is over; the warning therefore sees
  readings up to the last full hour (it lags at most an hour, against horizons of days).
- **late readings**: a reading stored since the last cycle (its ``pk`` above the mark's
  ``seen_pk``) whose hour was rolled already (a gateway's outbox delivering after an
  outage) has its (gateway, sensor, hour) rolled again from all its readings, however
  late, back to :data:`LATE_LIMIT_H` (no rule's window is longer). This costs a scan of
  the readings stored since the last cycle (by primary key: two columns, no JSON).

  One gap is known and accepted: on PostgreSQL a late reading whose transaction commits
  after the cycle read ``max(pk)``, but with a lower ``pk`` than one committed before,
  is not seen as new; ingest transactions last milliseconds, and the next late reading
  for the same hour rolls it in. SQLite has one writer at a time.

A first cycle (or one after a long stop) rolls the last week (``backfill_h``) six hours
a transaction (``max_hours``; :func:`cloud.warning.run` calls again while ``behind``), so
that the ingest is never held up for long by SQLite's one writer lock (10,000 sensors:
about 15 s a transaction, against 2-3 s for the one hour of a normal cycle).

A clock stepped back (``now`` before the hours already rolled) drops the rollups of the
hours it has not reached yet and rolls them again as it gets there. The rollups age out
with the readings: call :func:`prune` beside :func:`cloud.retention.prune_readings`,
with the same ``keep_days``.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.db import rowcount

log = logging.getLogger(__name__)

MARK = "hourly"
HOUR_S = 3_600
LATE_LIMIT_H = 24 * 31  # the longest window a rule may have (TrendRule.window_h)
DEFAULT_BACKFILL_H = 24 * 7  # what a first cycle rolls (or one after a long stop)
MAX_HOURS = 6  # new hours one transaction rolls (10,000 sensors: 360,000 readings)
BLOCK_H = 6  # new hours are read this many at a time (bounded memory on a backfill)

ROLLED = Counter("mb_warning_rollup_hours_total", "series-hours rolled, by why", ["why"])
LATE = Counter("mb_warning_rollup_late_readings_total", "readings stored after their hour rolled")

Key = tuple[str, str, str, str]  # gateway, sensor, kind, field
_R = m.ReadingRow.__table__.c
_READ = (_R.gateway, _R.sensor, _R.kind, _R.building, _R.ts, _R["values"])


@dataclass(slots=True)
class RollupReport:
    """What one :func:`catch_up` did."""

    through_hour: int = 0  # hours before this are rolled now
    new_hours: int = 0  # completed hours rolled for the first time
    readings: int = 0  # readings read (new hours and late ones' hours)
    late_readings: int = 0  # stored after their hour was rolled
    rerolled: int = 0  # (series, hour) rolled again for them
    written: int = 0  # rollup rows written
    stepped_back: bool = False  # the clock was behind the mark: future hours dropped
    behind: int = 0  # completed hours still to roll (beyond max_hours): call again
    new_series: int = 0


@dataclass(slots=True)
class _Bucket:
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    last_ts: float = -math.inf
    building: str | None = None


def hour_of(when: datetime | float) -> int:
    """Hours since 1970-01-01 UTC of a time (or POSIX seconds)."""
    posix = when.timestamp() if isinstance(when, datetime) else when
    return math.floor(posix / HOUR_S)


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


def _numbers(values: dict[str, Any] | None) -> Iterable[tuple[str, float]]:
    for name, value in (values or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        number = float(value)
        if math.isfinite(number):
            yield name, number


def _bucket(
    rows: Iterable[Sequence[Any]],
    keep: set[tuple[str, str, int]] | None = None,
) -> dict[tuple[Key, int], _Bucket]:
    """Rows of (gateway, sensor, kind, building, ts, values) into hourly buckets per
    series (only the (gateway, sensor, hour) in ``keep`` when given)."""
    buckets: dict[tuple[Key, int], _Bucket] = defaultdict(_Bucket)
    for gateway, sensor, kind, building, ts, values in rows:
        posix = ts.timestamp()
        hour = math.floor(posix / HOUR_S)
        if keep is not None and (gateway, sensor, hour) not in keep:
            continue
        for name, number in _numbers(values):
            b = buckets[(gateway, sensor, kind, name), hour]
            b.times.append(posix)
            b.values.append(number)
            if posix >= b.last_ts:
                b.last_ts, b.building = posix, building
    return buckets


def _series_ids(session: Session, keys: set[Key]) -> tuple[dict[Key, int], dict[int, int]]:
    """Ids (made where missing) of the series in ``keys``, and each one's last hour."""
    ids: dict[Key, int] = {}
    last: dict[int, int] = {}
    gateways = sorted({k[0] for k in keys})
    for lo in range(0, len(gateways), 500):
        for sid, gw, sensor, kind, name, last_hour in session.execute(
            select(
                m.ReadingSeries.id,
                m.ReadingSeries.gateway,
                m.ReadingSeries.sensor,
                m.ReadingSeries.kind,
                m.ReadingSeries.field,
                m.ReadingSeries.last_hour,
            ).where(m.ReadingSeries.gateway.in_(gateways[lo : lo + 500]))
        ):
            key = (gw, sensor, kind, name)
            if key in keys:
                ids[key] = sid
                last[sid] = last_hour
    missing = sorted(keys - ids.keys())
    if missing:
        made = session.execute(
            insert(m.ReadingSeries).returning(
                m.ReadingSeries.id,
                m.ReadingSeries.gateway,
                m.ReadingSeries.sensor,
                m.ReadingSeries.kind,
                m.ReadingSeries.field,
            ),
            [
                {
                    "gateway": gw,
                    "sensor": sensor,
                    "kind": kind,
                    "field": name,
                    "building": None,
                    "last_hour": -1,
                }
                for gw, sensor, kind, name in missing
            ],
        )
        for sid, gw, sensor, kind, name in made:
            ids[gw, sensor, kind, name] = sid
            last[sid] = -1
    return ids, last


def _write(session: Session, buckets: dict[tuple[Key, int], _Bucket], why: str) -> tuple[int, int]:
    """Store the buckets' medians, replacing what those (series, hour) had; move each
    series' building and last hour on. Returns (rows written, series made)."""
    if not buckets:
        return 0, 0
    keys = {key for key, _ in buckets}
    ids, last = _series_ids(session, keys)
    made = sum(1 for v in last.values() if v == -1)
    by_series: dict[int, list[int]] = defaultdict(list)
    rows: list[dict[str, Any]] = []
    moved: dict[int, tuple[int, str | None]] = {}
    for (key, hour), b in buckets.items():
        sid = ids[key]
        by_series[sid].append(hour)
        rows.append(
            {
                "series": sid,
                "hour": hour,
                "t": statistics.median(b.times),
                "value": statistics.median(b.values),
                "n": len(b.values),
            }
        )
        newest = moved.get(sid, (last[sid], None))
        if hour >= newest[0]:
            moved[sid] = (hour, b.building)
    # replace: one DELETE per run of series with the same hours (a new hour: all of them)
    by_hours: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for sid, series_hours in by_series.items():
        by_hours[tuple(sorted(series_hours))].append(sid)
    for hours, sids in by_hours.items():
        for lo in range(0, len(sids), 1000):
            session.execute(
                delete(m.ReadingRollup).where(
                    m.ReadingRollup.series.in_(sids[lo : lo + 1000]),
                    m.ReadingRollup.hour.in_(hours),
                )
            )
    session.execute(insert(m.ReadingRollup), rows)
    if moved:
        session.execute(
            update(m.ReadingSeries),
            [{"id": sid, "last_hour": h, "building": bld} for sid, (h, bld) in moved.items()],
        )
    ROLLED.labels(why).inc(len(rows))
    return len(rows), made


def _mark(session: Session, end: int, backfill_h: int) -> tuple[m.RollupMark, bool]:
    """The mark row, locked, and whether it is new: made on the first cycle (hours from
    ``backfill_h`` ago on; nothing is late yet, the new hours read them all by time)."""
    query = select(m.RollupMark).where(m.RollupMark.name == MARK).with_for_update()
    mark = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if mark is not None:
        return mark, False
    try:
        with session.begin_nested():
            session.add(
                m.RollupMark(
                    name=MARK,
                    through_hour=end - backfill_h,
                    seen_pk=0,
                    updated_at=hour_start(end),
                )
            )
    except IntegrityError:
        # another process made it a moment ago: take its row (and its late readings)
        return session.scalars(query.execution_options(populate_existing=True)).one(), False
    return session.scalars(query.execution_options(populate_existing=True)).one(), True


def _late(
    session: Session, seen_pk: int, max_pk: int, through: int, end: int
) -> tuple[set[tuple[str, str, int]], int]:
    """(gateway, sensor, hour) of readings stored since ``seen_pk`` whose hour was
    rolled already, and how many such readings there are."""
    lo = hour_start(end - LATE_LIMIT_H)
    rows = session.execute(
        select(m.ReadingRow.gateway, m.ReadingRow.sensor, m.ReadingRow.ts).where(
            m.ReadingRow.pk > seen_pk,
            m.ReadingRow.pk <= max_pk,
            m.ReadingRow.ts < hour_start(min(through, end)),
            m.ReadingRow.ts >= lo,
        )
    ).all()
    return {(gw, sensor, hour_of(ts)) for gw, sensor, ts in rows}, len(rows)


def _reroll(session: Session, affected: set[tuple[str, str, int]]) -> tuple[int, int, int]:
    """Roll the (gateway, sensor, hour) in ``affected`` again from all their readings:
    a query per gateway over its sensors' index. Returns (readings, rows, series made)."""
    per_gateway: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for gw, sensor, hour in affected:
        per_gateway[gw].append((sensor, hour))
    read = written = made = 0
    for gw, pairs in sorted(per_gateway.items()):
        sensors = sorted({s for s, _ in pairs})
        hours = [h for _, h in pairs]
        rows = (
            session.connection()
            .execute(  # Core rows: no ORM row objects to build
                select(*_READ)
                .where(
                    m.ReadingRow.gateway == gw,
                    m.ReadingRow.sensor.in_(sensors),
                    m.ReadingRow.ts >= hour_start(min(hours)),
                    m.ReadingRow.ts < hour_start(max(hours) + 1),
                )
                .order_by(m.ReadingRow.ts)
            )
            .all()
        )
        read += len(rows)
        w, n = _write(session, _bucket(rows, keep=affected), "late")
        written, made = written + w, made + n
    return read, written, made


def _roll_new(session: Session, start: int, end: int) -> tuple[int, int, int]:
    """Roll the hours [start, end) from their readings, ``BLOCK_H`` hours at a time."""
    read = written = made = 0
    for lo in range(start, end, BLOCK_H):
        hi = min(lo + BLOCK_H, end)
        rows = (
            session.connection()
            .execute(  # Core rows: no ORM row objects to build
                select(*_READ)
                .where(m.ReadingRow.ts >= hour_start(lo), m.ReadingRow.ts < hour_start(hi))
                .order_by(m.ReadingRow.ts)
            )
            .all()
        )
        read += len(rows)
        w, n = _write(session, _bucket(rows), "new")
        written, made = written + w, made + n
    return read, written, made


def catch_up(
    session: Session,
    now: datetime,
    *,
    backfill_h: int = DEFAULT_BACKFILL_H,
    max_hours: int = MAX_HOURS,
) -> RollupReport:
    """Roll the hours completed since the last cycle (at most ``max_hours`` of them) and
    re-roll the hours that got late readings; the caller commits (which releases the
    mark's lock). ``report.behind`` says how many completed hours are left: call again,
    in a new transaction (a first cycle's week is 28 of them: the ingest is not held up
    by one long transaction on SQLite's single writer lock).

    ``backfill_h``: how far back a first cycle (or one after a stop longer than that)
    starts; pass the longest rule window.
    """
    end = hour_of(now)  # the hour now is in: not complete, not rolled
    report = RollupReport()
    mark, fresh = _mark(session, end, backfill_h)
    max_pk = int(session.scalar(select(func.max(m.ReadingRow.pk))) or 0)
    through = mark.through_hour
    if end < through:
        # the clock went back: hours it has not reached again are rolled when it does
        session.execute(delete(m.ReadingRollup).where(m.ReadingRollup.hour >= end))
        report.stepped_back = True
        log.warning("rollup: clock %s is behind the rolled hours; rolling them again", now)
        through = end
    if not fresh and max_pk > mark.seen_pk:
        affected, late = _late(session, mark.seen_pk, max_pk, through, end)
        if affected:
            LATE.inc(late)
            read, written, made = _reroll(session, affected)
            report.late_readings, report.rerolled = late, written
            report.readings += read
            report.written += written
            report.new_series += made
    start = max(through, end - backfill_h)
    stop = min(end, start + max_hours)
    if start < stop:
        read, written, made = _roll_new(session, start, stop)
        report.new_hours = stop - start
        report.readings += read
        report.written += written
        report.new_series += made
    mark.through_hour = max(stop, through)
    report.behind = end - mark.through_hour
    mark.seen_pk = max(max_pk, mark.seen_pk)
    mark.updated_at = now
    report.through_hour = mark.through_hour
    return report


def prune(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete the rollups of hours older than ``keep_days`` (the readings' retention)
    and the series left with none; returns how many rollup rows went.

    Call it where the readings are pruned, with the same ``keep_days``::

        retention.prune_readings(s, now=now, keep_days=keep_days)
        warning.prune_rollups(s, now=now, keep_days=keep_days)
    """
    cutoff = hour_of(now - timedelta(days=keep_days))
    gone = rowcount(session.execute(delete(m.ReadingRollup).where(m.ReadingRollup.hour < cutoff)))
    session.execute(delete(m.ReadingSeries).where(m.ReadingSeries.last_hour < cutoff))
    return gone


__all__ = [
    "DEFAULT_BACKFILL_H",
    "LATE_LIMIT_H",
    "RollupReport",
    "catch_up",
    "hour_of",
    "hour_start",
    "prune",
]
