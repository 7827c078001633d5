"""The hourly rollup over a real database (SQLite and PostgreSQL): completed hours rolled
once from their readings, the medians equal to ``downsample``'s, late readings rolled
in, a clock stepped back, and the retention.

Each test first runs a cycle at its own time (years apart from the other tests': the
PostgreSQL database and its one rollup mark are shared by the session), so that what
follows counts only its readings.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models as m
from cloud.db import transaction
from cloud.ingest.items import insert_many
from cloud.warning import rollup
from cloud.warning.trend import downsample
from microbrain.protocol import GatewayPath

Reading = tuple[datetime, str, dict[str, Any]]  # ts, sensor, values


def put(factory: sessionmaker[Session], gw: GatewayPath, readings: list[Reading]) -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "gateway": gw.gateway,
            "seq": None,
            "ts": ts,
            "sensor": sensor,
            "kind": "water_tank",
            "community": gw.community,
            "compound": gw.compound,
            "building": "b1",
            "values": values,
            "units": {},
            "faults": [],
            "samples": 1,
        }
        for ts, sensor, values in readings
    ]
    with transaction(factory) as s:
        insert_many(s, m.ReadingRow, rows)


def cycle(factory: sessionmaker[Session], now: datetime) -> rollup.RollupReport:
    """A cycle as ``warning.run`` makes it: catch-ups until none is behind (a test's
    first, at its own time, may find the mark years away); their counts added up."""
    total = rollup.RollupReport()
    while True:
        with transaction(factory) as s:
            report = rollup.catch_up(s, now)
        for name in ("new_hours", "readings", "late_readings", "rerolled", "written"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.stepped_back |= report.stepped_back
        total.through_hour = report.through_hour
        if not report.behind:
            return total


def rolled(factory: sessionmaker[Session], gw: GatewayPath) -> dict[tuple[str, str, int], Any]:
    """(sensor, field, hour) → (t, value, n) of this gateway's rollups."""
    with factory() as s:
        rows = s.execute(
            select(
                m.ReadingSeries.sensor,
                m.ReadingSeries.field,
                m.ReadingRollup.hour,
                m.ReadingRollup.t,
                m.ReadingRollup.value,
                m.ReadingRollup.n,
            )
            .join(m.ReadingSeries, m.ReadingSeries.id == m.ReadingRollup.series)
            .where(m.ReadingSeries.gateway == gw.gateway)
        ).all()
    return {(sensor, name, hour): (t, v, n) for sensor, name, hour, t, v, n in rows}


def test_completed_hours_are_rolled_once_as_downsample_makes_them(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    base = datetime(2031, 1, 1, tzinfo=UTC)
    cycle(factory, base)  # this test's time: the mark is here, nothing of ours yet
    rng = np.random.default_rng(4)
    # every 7 minutes for 3 hours, at odd seconds; a second numeric field, a flag and text
    stamps = [base + timedelta(seconds=int(s)) for s in np.arange(0, 3 * 3600, 420) + 13]
    level = np.round(2.0 + rng.normal(0, 0.05, len(stamps)), 2)  # ties: to 0.01
    put(
        factory,
        gw,
        [
            (ts, "t1", {"level_m": float(v), "temp_c": 5 + i, "ok": True, "note": "x"})
            for i, (ts, v) in enumerate(zip(stamps, level, strict=True))
        ],
    )
    half = cycle(factory, base + timedelta(hours=2, minutes=30))  # hours 0 and 1 complete
    assert half.new_hours == 2 and half.late_readings == 0
    assert half.readings == sum(1 for ts in stamps if ts < base + timedelta(hours=2))
    got = rolled(factory, gw)
    h0 = rollup.hour_of(base)
    assert {(k[1], k[2]) for k in got} == {
        (f, h0 + i) for f in ("level_m", "temp_c") for i in (0, 1)
    }
    t_s = np.array([ts.timestamp() for ts in stamps])
    ht, hv = downsample(t_s, level)
    for i in (0, 1):
        t, v, n = got["t1", "level_m", h0 + i]
        assert (t, v) == (ht[i], hv[i])  # to the bit: the fit sees what downsample made
        assert n == sum(1 for ts in stamps if rollup.hour_of(ts) == h0 + i)
    again = cycle(factory, base + timedelta(hours=2, minutes=40))  # 10 minutes on: nothing
    assert (again.new_hours, again.readings, again.written) == (0, 0, 0)
    last = cycle(factory, base + timedelta(hours=3, minutes=1))  # the third hour is over
    assert last.new_hours == 1
    assert last.readings == sum(1 for ts in stamps if rollup.hour_of(ts) == h0 + 2)
    assert len(rolled(factory, gw)) == 6
    with factory() as s:
        (series,) = s.scalars(
            select(m.ReadingSeries).where(
                m.ReadingSeries.gateway == gw.gateway, m.ReadingSeries.field == "level_m"
            )
        )
    assert series.building == "b1" and series.last_hour == h0 + 2


def test_late_readings_roll_their_hour_again(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    base = datetime(2032, 1, 1, tzinfo=UTC)
    cycle(factory, base)
    put(
        factory, gw, [(base + timedelta(minutes=10 * i), "t1", {"level_m": 1.0}) for i in range(12)]
    )
    cycle(factory, base + timedelta(hours=2, minutes=5))
    h0 = rollup.hour_of(base)
    assert rolled(factory, gw)["t1", "level_m", h0][1:] == (1.0, 6)
    # an outbox delivers, a day later, three readings of the first hour and one of a
    # sensor the rollup has not seen
    put(
        factory,
        gw,
        [
            (base + timedelta(minutes=5), "t1", {"level_m": 9.0}),
            (base + timedelta(minutes=15), "t1", {"level_m": 9.0}),
            (base + timedelta(minutes=25), "t1", {"level_m": 9.0}),
            (base + timedelta(minutes=75), "t2", {"level_m": 3.0}),
        ],
    )
    late = cycle(factory, base + timedelta(days=1))
    assert late.late_readings == 4
    assert late.rerolled == 2  # t1's first hour and t2's second
    got = rolled(factory, gw)
    assert got["t1", "level_m", h0][1:] == (1.0, 9)  # median of six 1.0 and three 9.0
    assert got["t2", "level_m", h0 + 1][1:] == (3.0, 1)
    assert got["t1", "level_m", h0 + 1][1:] == (1.0, 6)  # untouched
    quiet = cycle(factory, base + timedelta(days=1, minutes=10))
    assert quiet.late_readings == 0 and quiet.readings == 0


def test_a_clock_stepped_back_rolls_the_hours_again_when_it_gets_there(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    base = datetime(2033, 1, 1, tzinfo=UTC)
    cycle(factory, base)
    put(
        factory,
        gw,
        [(base + timedelta(minutes=30 * i), "t1", {"level_m": float(i)}) for i in range(8)],
    )
    cycle(factory, base + timedelta(hours=4))
    assert len(rolled(factory, gw)) == 4
    back = cycle(factory, base + timedelta(hours=2))
    assert back.stepped_back and back.through_hour == rollup.hour_of(base) + 2
    assert len(rolled(factory, gw)) == 2  # the hours it has not reached again are gone
    forward = cycle(factory, base + timedelta(hours=4))
    assert forward.new_hours == 2 and len(rolled(factory, gw)) == 4


def test_prune_follows_the_readings_retention(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    base = datetime(2034, 1, 1, tzinfo=UTC)
    cycle(factory, base)
    put(factory, gw, [(base + timedelta(minutes=10), "old", {"level_m": 1.0})])
    put(factory, gw, [(base + timedelta(days=5, minutes=10), "new", {"level_m": 1.0})])
    cycle(factory, base + timedelta(hours=2))
    cycle(factory, base + timedelta(days=5, hours=1))
    assert {k[0] for k in rolled(factory, gw)} == {"old", "new"}
    with transaction(factory) as s:
        gone = rollup.prune(s, now=base + timedelta(days=6), keep_days=3)
    assert gone >= 1
    assert {k[0] for k in rolled(factory, gw)} == {"new"}
    with factory() as s:
        sensors = s.scalars(
            select(m.ReadingSeries.sensor).where(m.ReadingSeries.gateway == gw.gateway)
        ).all()
    assert list(sensors) == ["new"]  # the series with no hour left went too


def test_a_long_gap_is_rolled_a_few_hours_a_transaction(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    base = datetime(2035, 1, 1, tzinfo=UTC)
    cycle(factory, base)
    put(
        factory, gw, [(base + timedelta(minutes=30 * i), "t1", {"level_m": 1.0}) for i in range(10)]
    )
    steps = []
    for _ in range(3):
        with transaction(factory) as s:
            r = rollup.catch_up(s, base + timedelta(hours=5, minutes=1), max_hours=2)
        steps.append((r.new_hours, r.behind))
    assert steps == [(2, 3), (2, 1), (1, 0)]
    assert len(rolled(factory, gw)) == 5
