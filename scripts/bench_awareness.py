"""Benchmark the awareness loop's liveness sweep (issue #12): one cycle over 10,000
devices, goal < 1 s.

    python scripts/bench_awareness.py --quick           # SQLite, about half a minute
    python scripts/bench_awareness.py --db both          # SQLite and PostgreSQL, 60 cycles

A site of --gateways (500) gateways × --devices (20: half cameras, half sensors) is
seeded straight into a migrated database (SQLite in a temporary folder, or a scratch
PostgreSQL database made and dropped by the run). Then cycles 30 s apart on a manual
clock; between cycles (not timed) the gateways' heartbeats are written as the ingest
writes them, with:

- an outage rolling through the site: 20 gateways (4 %) at a time silent for 5 minutes,
  so every 10 cycles 20 ``gateway_offline`` alerts are raised and 20 cleared;
- 5 gateways flapping (a last will every third cycle): ``device_flapping`` items;
- 50 gateways a cycle reporting one camera offline in their health (back the next).

Timed: ``cloud.awareness.liveness_sweep.run`` alone (its own transaction, commit
included), wall clock and this process's CPU time (on a shared, loaded machine the CPU
time is the steadier figure; the 1-minute load average is printed with it). The first
cycle, which makes the 10,500 state rows, is reported apart. The reference, measured
in the same run: the reads every cycle must make, alone (the gateways, the devices, the
state rows' keys), with no logic and no writes: the floor a set-based sweep cannot go
under.

Last line: one JSON object ({"devices": .., "cycle_median_s": .., "cycle_p95_s": ..,
"goal_s": 1.0, ...}; with --db both, one object per store under "stores").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.awareness.liveness_sweep import run
from cloud.db import make_engine, session_factory, transaction, upgrade
from cloud.db import models as m

GOAL_S = 1.0
STEP = timedelta(seconds=30)
T0 = datetime(2026, 12, 1, tzinfo=UTC)
OUTAGE_GATEWAYS = 20
OUTAGE_CYCLES = 10
FLAPPERS = 5
CAMERA_CHURN = 50


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def seed(factory: sessionmaker[Session], gateways: int, per_gateway: int) -> list[str]:
    cams = per_gateway // 2
    ids = [f"gw-{i:05d}" for i in range(gateways)]
    with transaction(factory) as s:
        s.execute(insert(m.Community), [{"id": f"c{c}", "name": f"社区{c}"} for c in range(10)])
        s.execute(
            insert(m.Compound),
            [{"community": f"c{k % 10}", "id": f"k{k}", "name": f"小区{k}"} for k in range(50)],
        )
        s.execute(
            insert(m.Gateway),
            [
                {
                    "id": gid,
                    "community": f"c{(i % 50) % 10}",
                    "compound": f"k{i % 50}",
                    "building": f"b{i % 7}",
                    "name": f"网关{i}",
                    "heartbeat_s": 30.0,
                    "state": "online",
                    "last_seen": T0,
                    "health": health(cams, ()),
                }
                for i, gid in enumerate(ids)
            ],
        )
        s.execute(
            insert(m.Device),
            [
                {
                    "gateway": gid,
                    "id": f"cam-{j}" if j < cams else f"s-{j - cams}",
                    "type": "camera" if j < cams else "sensor",
                    "kind": "camera" if j < cams else "smoke",
                    "name": None,
                    "building": f"b{i % 7}",
                }
                for i, gid in enumerate(ids)
                for j in range(per_gateway)
            ],
        )
    return ids


def health(cams: int, off: tuple[int, ...]) -> dict[str, Any]:
    return {
        "cpu_percent": 5.0,
        "memory_mb": 200.0,
        "disk_free_mb": 5000.0,
        "cameras": {f"cam-{j}": ("offline" if j in off else "online") for j in range(cams)},
        "sensors_silent": [],
    }


def heartbeats(
    factory: sessionmaker[Session],
    ids: list[str],
    cycle: int,
    now: datetime,
    cams: int,
    rng: random.Random,
    churned: set[str],
) -> set[str]:
    """What the ingest would have written since the last cycle (not timed)."""
    window = (cycle // OUTAGE_CYCLES) % (len(ids) // OUTAGE_GATEWAYS)
    silent = set(ids[window * OUTAGE_GATEWAYS : (window + 1) * OUTAGE_GATEWAYS])
    flappers = set(ids[-FLAPPERS:])
    wills = flappers if cycle % 3 == 0 else set()
    churn = set(rng.sample(ids, CAMERA_CHURN))
    g = cast(Table, m.Gateway.__table__)
    with transaction(factory) as s:
        s.execute(
            update(m.Gateway)
            .where(m.Gateway.id.in_([i for i in ids if i not in silent and i not in wills]))
            .values(last_seen=now, state="online")
            .execution_options(synchronize_session=False)
        )
        if wills:
            s.execute(
                update(m.Gateway)
                .where(m.Gateway.id.in_(wills))
                .values(last_seen=now, state="offline")
                .execution_options(synchronize_session=False)
            )
        changed = [
            {"gid": gid, "health": health(cams, (rng.randrange(cams),) if gid in churn else ())}
            for gid in churn | churned
        ]
        s.connection().execute(
            update(g).where(g.c.id == bindparam("gid")).values(health=bindparam("health")),
            changed,
        )
    return churn


def read_floor(factory: sessionmaker[Session]) -> float:
    t = m.DeviceLiveness
    start = time.perf_counter()
    with factory() as s:
        s.scalars(select(m.Gateway)).all()
        conn = s.connection()
        conn.execute(select(m.Device.gateway, m.Device.type, m.Device.id, m.Device.building)).all()
        conn.execute(select(t.gateway, t.type, t.device)).all()
    return time.perf_counter() - start


def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    rng = random.Random(12)
    cams = args.devices // 2
    try:
        ids = seed(factory, args.gateways, args.devices)
        now = T0
        first = time.perf_counter()
        report = run(factory, now)
        first_s = time.perf_counter() - first
        devices = report.devices
        times: list[float] = []
        cpus: list[float] = []  # this process's CPU: SQLite's work included, not PostgreSQL's
        floors: list[float] = []
        totals = {"raised": 0, "cleared": 0, "flapping_started": 0, "downs": 0, "written": 0}
        churned: set[str] = set()
        for cycle in range(1, args.cycles + 1):
            now += STEP
            churned = heartbeats(factory, ids, cycle, now, cams, rng, churned)
            start, cpu = time.perf_counter(), time.process_time()
            report = run(factory, now)
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            floors.append(read_floor(factory))
            for k in totals:
                totals[k] += getattr(report, k)
        with factory() as s:
            offline_alerts = s.scalar(
                select(m.Alert.id).where(m.Alert.kind == "gateway_offline").limit(1)
            )
    finally:
        engine.dispose()
    return {
        "store": url.split(":", 1)[0].split("+", 1)[0],
        "devices": devices,
        "gateways": args.gateways,
        "cycles": len(times),
        "cycle_median_s": round(statistics.median(times), 4),
        "cycle_p95_s": round(pct(times, 95), 4),
        "cycle_max_s": round(max(times), 4),
        "cycle_cpu_median_s": round(statistics.median(cpus), 4),
        "first_cycle_s": round(first_s, 4),
        "reference_reads_median_s": round(statistics.median(floors), 4),
        "goal_s": GOAL_S,
        "goal_met": pct(times, 95) < GOAL_S,
        "gateway_offline_raised": totals["raised"],
        "gateway_offline_cleared": totals["cleared"],
        "flapping_started": totals["flapping_started"],
        "down_episodes": totals["downs"],
        "rows_written_per_cycle": round(totals["written"] / max(1, len(times)), 1),
        "alerts_made": offline_alerts is not None,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'awareness.db'}"
        return
    from tests.utils.services import postgres_database

    with postgres_database() as url:
        yield url


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="20 cycles (about half a minute)")
    ap.add_argument("--cycles", type=int, help="cycles timed (20 quick, else 60)")
    ap.add_argument("--gateways", type=int, default=500, help="gateways (500)")
    ap.add_argument("--devices", type=int, default=20, help="cameras + sensors each (20)")
    ap.add_argument(
        "--db",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="store(s): SQLite in a temporary folder, a scratch PostgreSQL database",
    )
    args = ap.parse_args()
    if args.gateways < OUTAGE_GATEWAYS or args.devices < 2:
        ap.error(f"need at least {OUTAGE_GATEWAYS} gateways and 2 devices each")
    args.cycles = args.cycles or (20 if args.quick else 60)
    stores = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for kind in stores:
        with (
            tempfile.TemporaryDirectory(prefix="bench-awareness-") as tmp,
            database(kind, Path(tmp)) as url,
        ):
            r = bench(url, args)
        results.append(r)
        print(
            f"{r['store']}: {r['devices']} devices + {r['gateways']} gateways, {r['cycles']} "
            f"cycles: median {r['cycle_median_s']} s, p95 {r['cycle_p95_s']} s, max "
            f"{r['cycle_max_s']} s (goal < {GOAL_S} s: {'met' if r['goal_met'] else 'NOT met'}), "
            f"this process's CPU median {r['cycle_cpu_median_s']} s; "
            f"reference (the reads alone) {r['reference_reads_median_s']} s; first cycle "
            f"(makes the rows) {r['first_cycle_s']} s; {r['gateway_offline_raised']} offline "
            f"raised, {r['gateway_offline_cleared']} cleared, {r['flapping_started']} flapping; "
            f"load average {r['load_average_1m']} on {os.cpu_count()} CPUs",
            flush=True,
        )
    print(json.dumps(results[0] if len(results) == 1 else {"stores": results, "goal_s": GOAL_S}))


if __name__ == "__main__":
    main()
