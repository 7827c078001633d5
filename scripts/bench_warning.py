"""Benchmark the trend-to-threshold early warning (issue #12): one cycle over 10,000
sensors × 7 days of readings, goal < 10 s.

    python scripts/bench_warning.py --quick     # about a minute
    python scripts/bench_warning.py             # every raw reading seeded (10 million)
    python scripts/bench_warning.py --db postgresql://user:pw@127.0.0.1/empty_db

The data: ``--sensors`` hydrant-pressure sensors (20 to a gateway, gateways registered
with their community, compound and building), one reading every ``--interval-min``
minutes (10, as NB-IoT hydrant monitors report) for ``--days`` days, each at its slot
plus up to a minute of jitter; values about 0.30 MPa with noise, to 0.001 MPa (so values
tie, as real ones do); 1 % of the sensors decaying towards the 0.07 MPa limit (they are
warned in the cycle: the alert writes are part of it).

Seeding (not timed): the hourly rollups of every sensor for the week before the last
hour, computed in numpy from the generated readings (the same medians
``cloud.warning.rollup`` makes: the bench checks a few against it), and the mark that
says so; raw readings of the last hour for every sensor; and the raw readings of the
whole week for every sensor (``--quick``: only for the ``--old-sample`` sensors the old
path reads, so the readings table is smaller than in production). Then, as arrivals
since the previous cycle: the last 10 minutes of readings, and ``--late`` readings of 5
hours ago from a few gateways' outboxes.

Timed, side by side in the same run:

- figure: one cycle as ``warning.run`` does it: the rollup's catch-up (the last hour,
  complete now: the heaviest of the six cycles in an hour; the late readings' hours
  again) in one transaction, then the evaluation of every sensor over its 168-h window
  (two queries, the vectorised Theil–Sen, the alerts) in another.
- reference: the OLD path (before the rollup) on ``--old-sample`` sensors: per sensor, its
  raw readings in the window, hourly medians, scipy's theilslopes, the gateway and its
  live alert; extrapolated to all sensors (plus, with every reading seeded, the old
  path's query for the sensors in the window, timed once).

Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, session_factory, transaction, upgrade
from cloud.db import models as m
from cloud.ingest.items import insert_many
from cloud.warning import DEFAULT_RULES, rollup
from cloud.warning.config import TrendRule
from cloud.warning.service import _window, backfill_h, evaluate
from cloud.warning.trend import HOUR_S, crossing, downsample, fit, fit_many

GOAL_S = 10.0
END = datetime(2026, 11, 30, tzinfo=UTC)  # the cycle runs a minute after this hour began
PER_GATEWAY = 20
KIND, FIELD = "hydrant_pressure", "pressure_mpa"


@dataclass
class Data:
    times: np.ndarray  # (sensors, readings) POSIX seconds
    values: np.ndarray
    gateways: list[str]
    sensors: list[str]


def log(text: str) -> None:
    print(text, flush=True)


@contextmanager
def timed(label: str, into: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    into[label] = time.perf_counter() - t0


def generate(sensors: int, days: int, interval_min: int, seed: int = 12) -> Data:
    rng = np.random.default_rng(seed)
    per_hour = 60 // interval_min
    n = days * 24 * per_hour
    start = (END - timedelta(days=days)).timestamp()
    slots = start + np.arange(n) * interval_min * 60.0
    times = slots[None, :] + rng.uniform(0, 60, (sensors, n))
    level = rng.uniform(0.25, 0.35, (sensors, 1))
    values = level + rng.normal(0, 0.003, (sensors, n))
    decaying = rng.random(sensors) < 0.01
    days_to_end = (END.timestamp() - times[decaying]) / 86_400
    # reaching 0.085 MPa at the end, 0.01 MPa a day down: under 0.07 within two days
    values[decaying] = 0.085 + 0.01 * days_to_end + rng.normal(0, 0.003, days_to_end.shape)
    values = np.round(values, 3)
    gateways = [f"gw-{i // PER_GATEWAY:04d}" for i in range(sensors)]
    names = [f"h{i % PER_GATEWAY:02d}" for i in range(sensors)]
    return Data(times, values, gateways, names)


def bulk(session: Session, model: type[m.Base], rows: list[dict[str, Any]]) -> None:
    """COPY on PostgreSQL; on SQLite the driver's executemany with the stored formats
    (SQLAlchemy's per-row processing would make the seed minutes longer)."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        insert_many(session, model, rows)
        return
    table = cast(Table, model.__table__)
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(cols))})'

    def plain(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(v, dict | list):
            return json.dumps(v)
        return v

    raw = conn.connection.driver_connection
    raw.executemany(sql, [tuple(plain(r[c]) for c in cols) for r in rows])  # type: ignore[union-attr]


def seed_site(factory: sessionmaker[Session], data: Data) -> None:
    with transaction(factory) as s:
        s.add(m.Community(id="bench", name="bench"))
        s.flush()
        s.add(m.Compound(community="bench", id="c1", name="c1"))
        s.flush()
        for b in sorted(set(data.gateways)):
            s.add(
                m.Building(community="bench", compound="c1", id=b, name=b, category="residential")
            )
            s.add(m.Gateway(id=b, community="bench", compound="c1", building=b))


def reading_rows(data: Data, rows: np.ndarray, keep: np.ndarray) -> list[dict[str, Any]]:
    """Reading rows of sensors ``rows``, the readings where ``keep`` (same shape)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        for t, v in zip(data.times[r][keep[r]], data.values[r][keep[r]], strict=True):
            out.append(
                {
                    "id": str(uuid.uuid4()),
                    "gateway": data.gateways[r],
                    "seq": None,
                    "ts": datetime.fromtimestamp(float(t), UTC),
                    "sensor": data.sensors[r],
                    "kind": KIND,
                    "community": "bench",
                    "compound": "c1",
                    "building": data.gateways[r],
                    "values": {FIELD: float(v)},
                    "units": {FIELD: "MPa"},
                    "faults": [],
                    "samples": 1,
                }
            )
    return out


def store_readings(
    factory: sessionmaker[Session], data: Data, rows: np.ndarray, keep: np.ndarray
) -> int:
    stored = 0
    for lo in range(0, rows.size, 200):
        chunk = reading_rows(data, rows[lo : lo + 200], keep)
        with transaction(factory) as s:
            bulk(s, m.ReadingRow, chunk)
        stored += len(chunk)
    return stored


def seed_rollups(factory: sessionmaker[Session], data: Data, per_hour: int, end_hour: int) -> int:
    """The hourly medians of every sensor for the hours before ``end_hour`` - 1, and the
    mark: the state a running cloud has when the last hour has just ended."""
    sensors, n = data.times.shape
    hours = n // per_hour
    first = end_hour - hours
    t_med = np.median(data.times.reshape(sensors, hours, per_hour), axis=2)
    v_med = np.median(data.values.reshape(sensors, hours, per_hour), axis=2)
    rolled = hours - 1  # the last hour is the cycle's to roll
    with transaction(factory) as s:
        s.execute(
            insert(m.ReadingSeries),
            [
                {
                    "id": i + 1,
                    "gateway": data.gateways[i],
                    "sensor": data.sensors[i],
                    "kind": KIND,
                    "field": FIELD,
                    "building": data.gateways[i],
                    "last_hour": end_hour - 2,
                }
                for i in range(sensors)
            ],
        )
    written = 0
    for lo in range(0, sensors, 500):
        rows = [
            {
                "series": i + 1,
                "hour": first + h,
                "t": float(t_med[i, h]),
                "value": float(v_med[i, h]),
                "n": per_hour,
            }
            for i in range(lo, min(lo + 500, sensors))
            for h in range(rolled)
        ]
        with transaction(factory) as s:
            bulk(s, m.ReadingRollup, rows)
        written += len(rows)
    return written


def set_mark(factory: sessionmaker[Session], through_hour: int) -> None:
    with transaction(factory) as s:
        max_pk = int(s.scalar(select(func.max(m.ReadingRow.pk))) or 0)
        s.merge(
            m.RollupMark(
                name=rollup.MARK, through_hour=through_hour, seen_pk=max_pk, updated_at=END
            )
        )


def old_assess(session: Session, rule: TrendRule, gateway: str, sensor: str, now: datetime) -> Any:
    """The per-sensor path the evaluation had before the rollup (its reads and its fit;
    a quiet sensor writes nothing there either)."""
    since = now - timedelta(hours=rule.window_h)
    rows = session.execute(
        select(m.ReadingRow.ts, m.ReadingRow.values, m.ReadingRow.building)
        .where(
            m.ReadingRow.gateway == gateway,
            m.ReadingRow.sensor == sensor,
            m.ReadingRow.ts > since,
            m.ReadingRow.ts <= now,
            m.ReadingRow.kind == rule.kind,
        )
        .order_by(m.ReadingRow.ts)
    ).all()
    times = np.array([ts.timestamp() for ts, _, _ in rows])
    values = np.array([float(v[rule.field]) for _, v, _ in rows])
    ht, hv = downsample(times, values, HOUR_S)
    f = fit(ht, hv, rule.confidence)
    c = crossing(f, rule.limit, rule.direction, now.timestamp())
    session.get(m.Gateway, gateway)
    session.execute(
        select(m.Alert)
        .where(m.Alert.key == f"{rule.alert_kind}|x|{sensor}", m.Alert.active.is_(True))
        .with_for_update()
    ).one_or_none()
    return f, c


def old_devices(session: Session, rule: TrendRule, now: datetime) -> int:
    since = now - timedelta(hours=rule.window_h)
    return len(
        session.execute(
            select(m.ReadingRow.gateway, m.ReadingRow.sensor)
            .where(m.ReadingRow.ts > since, m.ReadingRow.ts <= now, m.ReadingRow.kind == rule.kind)
            .distinct()
        ).all()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="raw week only for the sample")
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--interval-min", type=int, default=10, choices=[1, 2, 5, 10, 15, 30])
    parser.add_argument("--old-sample", type=int, default=200, help="sensors the old path reads")
    parser.add_argument("--late", type=int, default=100, help="late readings in the cycle")
    parser.add_argument("--db", default=None, help="an empty database (default: SQLite file)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_warning_"))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    rule = DEFAULT_RULES.rules[0].model_copy(update={"window_h": 24.0 * args.days})
    now = END + timedelta(minutes=1)
    end_hour = rollup.hour_of(END)
    per_hour = 60 // args.interval_min
    seed_s: dict[str, float] = {}
    try:
        upgrade(url)
        engine = make_engine(url)
        factory = session_factory(engine)
        log(
            f"store: {engine.dialect.name}; {args.sensors} sensors × {args.days} days, a reading "
            f"every {args.interval_min} min ({per_hour}/h), {'quick' if args.quick else 'full'}"
        )
        data = generate(args.sensors, args.days, args.interval_min)
        sensors = np.arange(args.sensors)
        sample = np.linspace(0, args.sensors - 1, min(args.old_sample, args.sensors)).astype(int)
        last_hour_start = (END - timedelta(hours=1)).timestamp()
        ten_min = (END - timedelta(minutes=10)).timestamp()
        before_ten = data.times < ten_min
        with timed("site", seed_s):
            seed_site(factory, data)
        with timed("rollups", seed_s):
            rollups = seed_rollups(factory, data, per_hour, end_hour)
        with timed("readings", seed_s):
            if args.quick:
                week = np.zeros(data.times.shape, dtype=bool)
                week[sample] = True
                raw = store_readings(factory, data, sample, week & before_ten)
                last_hour = (data.times >= last_hour_start) & before_ten
                last_hour[sample] = False
                raw += store_readings(factory, data, sensors, last_hour)
            else:
                raw = store_readings(factory, data, sensors, before_ten)
        set_mark(factory, end_hour - 1)
        # arrivals since the previous cycle: the last 10 minutes, and late ones
        arrivals = store_readings(factory, data, sensors, ~before_ten)
        late_rows = []
        for i in range(args.late):  # a few gateways' outboxes, 5 hours late
            r = (i * 7) % args.sensors
            one = reading_rows(data, np.array([r]), (data.times == data.times[r, 0]))[0]
            late_rows.append(one | {"ts": END - timedelta(hours=5, minutes=-(i % 50))})
        with transaction(factory) as s:
            bulk(s, m.ReadingRow, late_rows)
        raw += arrivals + len(late_rows)
        log(
            f"seeded in {sum(seed_s.values()):.0f} s: {rollups} rollup rows, {raw} raw readings "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in seed_s.items())})"
        )

        # the reference: the old per-sensor path on the sample, before the cycle
        old: dict[str, float] = {}
        old_fits = {}
        with factory() as s, timed("sample", old):
            for r in sample:
                old_fits[int(r)] = old_assess(s, rule, data.gateways[r], data.sensors[r], now)
        per_sensor = old["sample"] / sample.size
        old_total = per_sensor * args.sensors
        if not args.quick:
            with factory() as s, timed("devices", old):
                found = old_devices(s, rule, now)
            old_total += old["devices"]
            log(f"old path: sensors-in-window query {old['devices']:.2f} s ({found} sensors)")
        log(
            f"old path: {per_sensor * 1000:.1f} ms a sensor on {sample.size} sensors → "
            f"{old_total:.1f} s for {args.sensors}"
        )

        # the figure: one cycle, as warning.run does it
        cycle: dict[str, float] = {}
        t0, cpu0 = time.perf_counter(), time.process_time()
        with timed("catch_up", cycle), transaction(factory) as s:
            rolled = rollup.catch_up(s, now, backfill_h=backfill_h([rule]))
        with timed("evaluate", cycle), transaction(factory) as s:
            report = evaluate(s, [rule], now, catch_up=False)
        cycle_s = time.perf_counter() - t0
        # this process's CPU time in the cycle: on a shared machine the wall time also
        # counts the waits for a core (SQLite runs in this process too)
        cycle_cpu_s = time.process_time() - cpu0
        # where the evaluation's time goes (again, outside the figure)
        with factory() as s, timed("read", cycle):
            metas, times, values = _window(s, rule, now)
        with timed("fit", cycle):
            fits = fit_many(times, values, rule.confidence)
        log(
            f"cycle: {cycle_s:.2f} s (goal < {GOAL_S:g} s; CPU {cycle_cpu_s:.2f} s) = "
            f"catch-up {cycle['catch_up']:.2f} s "
            f"({rolled.readings} readings, {rolled.new_hours} new hour, {rolled.late_readings} "
            f"late → {rolled.rerolled} hours again, {rolled.written} rows) + evaluation "
            f"{cycle['evaluate']:.2f} s (of which rollup read ~{cycle['read']:.2f} s, "
            f"vectorised fit ~{cycle['fit']:.2f} s)"
        )
        log(
            f"evaluated {report.evaluated}, raised {report.raised}, insufficient "
            f"{report.insufficient}"
        )
        # the two paths agree: the same slopes from raw readings and from the rollup
        row_of = {(meta.gateway, meta.sensor): i for i, meta in enumerate(metas)}
        diffs = []
        for r, (f_old, _) in old_fits.items():
            i = row_of[data.gateways[r], data.sensors[r]]
            diffs.append(abs(f_old.per_day(f_old.slope) - fits.fit(i).per_day(fits.slope[i])))
        slope_diff = max(diffs) if diffs else math.nan
        log(
            f"old vs new slope on the sample: max |difference| {slope_diff:.2e} MPa/day "
            "(windows differ by the hour in progress)"
        )
        figures = {
            "sensors": args.sensors,
            "days": args.days,
            "interval_min": args.interval_min,
            "store": engine.dialect.name,
            "quick": args.quick,
            "raw_readings": raw,
            "rollup_rows": rollups,
            "cycle_s": round(cycle_s, 3),
            "goal_s": GOAL_S,
            "cycle_cpu_s": round(cycle_cpu_s, 3),
            "catch_up_s": round(cycle["catch_up"], 3),
            "evaluate_s": round(cycle["evaluate"], 3),
            "fit_s": round(cycle["fit"], 3),
            "caught_up_readings": rolled.readings,
            "late_readings": rolled.late_readings,
            "evaluated": report.evaluated,
            "raised": report.raised,
            "old_path_per_sensor_ms": round(per_sensor * 1000, 2),
            "old_path_sample": int(sample.size),
            "old_path_extrapolated_s": round(old_total, 2),
            "speedup": round(old_total / cycle_s, 1),
            "max_slope_diff_per_day": slope_diff,
        }
        engine.dispose()
        print(json.dumps(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
