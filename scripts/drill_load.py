"""Load drill: N simulated gateways × M sensors (+ events with evidence) for T seconds
against one and then two `microbrain cloud serve` processes, loopback only.

    python scripts/drill_load.py --quick                 # about a minute
    python scripts/drill_load.py --gateways 100 --sensors 40 --seconds 60
    python scripts/drill_load.py --ladder                # the largest N×M sustained

Everything is real and started here: a private Mosquitto, a fresh PostgreSQL database
(or SQLite with --db sqlite), a generated site with the gateways and their sensors
(registered by the cloud at start, passwords from the environment), and the cloud
processes sharing the broker's subscription. Publishers run in their own processes (no
GIL shared with what is measured); each gateway publishes its sensors' readings once a
second (``--reading-s``; the gateways spread over the second), with its own sequence
numbers, and now and then raises a condition on one sensor (a new alert) whose snapshot
it then uploads over HTTP with the gateway's own credentials, as a gateway's uploader does.

Figures per configuration (1 and 2 cloud processes, the same load):
- offered / stored readings per second, and whether the load was sustained (everything
  stored, and the backlog left at the end drained within 5 % of the run's length, + 1 s:
  a cloud storing 95 % of the offered rate would leave that much);
- publish → alert latency, p50 and p99: the event's ``ts`` (stamped as it is published)
  → the alert's ``opened_at`` (the ingest's clock as it stores the batch, in the
  transaction that commits it);
- lost and duplicated readings and events (both must be 0) and evidence files stored;
- CPU (% of one core, mean over the run) and peak RSS of each cloud process.
The last line is one JSON object of them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil
import yaml

from microbrain.broker.embedded import MosquittoBroker, free_port
from microbrain.protocol import Event, EvidenceKind, EvidenceRef, GatewayPath, Reading, Severity

# sustained: the backlog left at the end drains within 5 % of the run (what a cloud
# storing 95 % of the offered rate leaves behind), plus a second for the polling
SUSTAINED_SHARE = 0.95
GENERATOR_LAG_S = 1.0
UPLOAD_S = 60.0  # evidence uploads still failing this long after the run are given up
DRAIN_S = 10.0  # the least time the drill waits for a backlog to drain (longer runs: T)
CONDITION = "hydrant_pressure_low"
PASSWORD = "drill-gateway-password"
ADMIN = "drill-admin-password"


@dataclass(frozen=True)
class Load:
    gateways: int
    sensors: int
    seconds: float
    reading_s: float = 1.0  # each sensor reports this often
    events_per_gateway_min: float = 2.0  # new conditions (alerts) a gateway raises a minute

    @property
    def offered_per_s(self) -> float:
        return self.gateways * self.sensors / self.reading_s


def gateway_path(i: int) -> GatewayPath:
    return GatewayPath(f"c{i // 50}", f"k{i}", f"gw-drill-{i}")


def sensor_id(gateway: int, sensor: int) -> str:
    return f"g{gateway}-s{sensor}"  # device ids are unique in a site


def write_site(load: Load, path: Path) -> None:
    """A site with the drill's gateways: 50 compounds a community, one building each."""
    communities: dict[str, dict[str, Any]] = {}
    for i in range(load.gateways):
        gw = gateway_path(i)
        community = communities.setdefault(
            gw.community, {"id": gw.community, "name": gw.community, "compounds": []}
        )
        community["compounds"].append(
            {
                "id": gw.compound,
                "name": gw.compound,
                "buildings": [
                    {"id": "b1", "name": "1幢", "category": "residential_highrise", "floors": 18}
                ],
                "gateways": [
                    {
                        "id": gw.gateway,
                        "password_env": f"MB_GW_DRILL_{i}_PASSWORD",
                        "sensors": [
                            {
                                "id": sensor_id(i, j),
                                "building": "b1",
                                "profile": "hydrant",
                                "topic": f"devices/hydrant/{j}",
                            }
                            for j in range(load.sensors)
                        ],
                    }
                ],
            }
        )
    site = {
        "schema": 1,
        "district": {"id": "drill", "name": "drill", "timezone": "Asia/Shanghai"},
        "sensor_profiles": [
            {
                "id": "hydrant",
                "kind": "hydrant_pressure",
                "fields": [{"name": "pressure_mpa", "path": "p", "unit": "MPa"}],
                "expected_interval_s": 3600,
                "rules": [
                    {
                        "type": "threshold",
                        "kind": CONDITION,
                        "field": "pressure_mpa",
                        "below": 0.07,
                        "clear_at": 0.08,
                    }
                ],
            }
        ],
        "communities": list(communities.values()),
    }
    path.write_text(yaml.safe_dump(site, sort_keys=False))


# --- the gateways ----------------------------------------------------------------------


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    image = np.full((240, 320, 3), 90, np.uint8)
    cv2.putText(image, "drill", (40, 130), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def _publisher(
    port: int, api: str, load: Load, first: int, count: int, start_at: float, out: Any
) -> None:
    """Gateways first..first+count: readings every reading_s, conditions with evidence."""
    import hashlib

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"drill-pub-{first}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    picture = _jpeg()
    digest = hashlib.sha256(picture).hexdigest()
    seqs = dict.fromkeys(range(first, first + count), 0)
    epoch = uuid.uuid4().hex[:16]
    readings: list[str] = []
    events: list[tuple[str, int]] = []  # (event id, gateway index)
    infos = []
    uploads: list[tuple[int, str, str]] = []  # (gateway, event id, name)
    raised = dict.fromkeys(seqs, 0)
    event_every = 60.0 / load.events_per_gateway_min if load.events_per_gateway_min else 0
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    tick = 0
    lag = 0.0
    while (elapsed := time.monotonic() - t0) < load.seconds:
        for n, i in enumerate(seqs):
            # gateways are not in step: each reports at its own moment of the period
            time.sleep(max(0.0, t0 + (tick + n / count) * load.reading_s - time.monotonic()))
            path = gateway_path(i)
            for j in range(load.sensors):
                seqs[i] += 1
                item = Reading(
                    seq=seqs[i],
                    epoch=epoch,
                    sensor=sensor_id(i, j),
                    kind="hydrant_pressure",
                    building="b1",
                    values={"pressure_mpa": 0.3},
                )
                readings.append(item.id)
                infos.append(client.publish(path.topic("reading"), item.to_json(), qos=1))
            # a new condition on the next sensor, staggered across gateways
            due = event_every and (elapsed + (i % 7)) >= (raised[i] + 1) * event_every
            if due and raised[i] < load.sensors:
                seqs[i] += 1
                name = f"ev{raised[i]}.jpg"
                event = Event(
                    seq=seqs[i],
                    epoch=epoch,
                    kind=CONDITION,
                    source=sensor_id(i, raised[i]),
                    building="b1",
                    severity=Severity.CRITICAL,
                    evidence=(
                        EvidenceRef(
                            kind=EvidenceKind.SNAPSHOT, name=name, sha256=digest, bytes=len(picture)
                        ),
                    ),
                )
                raised[i] += 1
                events.append((event.id, i))
                uploads.append((i, event.id, name))
                infos.append(client.publish(path.topic("event"), event.to_json(), qos=1))
        tick += 1
        # a generator behind its schedule cannot offer the rate asked of it
        lag = max(lag, time.monotonic() - (t0 + tick * load.reading_s))
        time.sleep(max(0.0, t0 + tick * load.reading_s - time.monotonic()))
    for info in infos:
        info.wait_for_publish(30)
    acked = sum(info.is_published() for info in infos)
    publish_s = time.monotonic() - t0  # until the broker acknowledged the last one
    published_at = time.time()
    # sent later than scheduled: the messages waited in the client's own queue
    lag = max(lag, publish_s - load.seconds - load.reading_s)
    client.disconnect()
    client.loop_stop()
    # the uploader: a few at a time, each retried while the cloud says 404 (its event is
    # not stored yet), all given up UPLOAD_S after the run
    deadline = time.monotonic() + UPLOAD_S

    def upload(item: tuple[int, str, str]) -> bool:
        i, event_id, name = item
        auth = base64.b64encode(f"{gateway_path(i).gateway}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"{api}/api/evidence/{event_id}/{name}",
            data=picture,
            method="PUT",
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/octet-stream"},
        )
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status == 201
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    return False
            except OSError:
                pass
            time.sleep(0.5)
        return False

    with ThreadPoolExecutor(8) as pool:
        stored_files = sum(pool.map(upload, uploads))
    out.put(
        {
            "readings": readings,
            "events": [e for e, _ in events],
            "acked": acked,
            "lag_s": lag,
            "publish_s": publish_s,
            "published_at": published_at,
            "published": len(infos),
            "files": stored_files,
        }
    )


# --- the cloud ---------------------------------------------------------------------------


def start_cloud(
    n: int, db: str, broker: int, site: Path, tmp: Path, load: Load
) -> list[tuple[subprocess.Popen[bytes], str]]:
    env = {
        **os.environ,
        "MB_CLOUD_ADMIN_PASSWORD": ADMIN,
        "MB_CLOUD_EVIDENCE_DIR": str(tmp / "evidence"),
        "MB_CLOUD_MODEL_KEY_FILE": str(tmp / "model-signing.key"),
        **{f"MB_GW_DRILL_{i}_PASSWORD": PASSWORD for i in range(load.gateways)},
    }
    procs = []
    for k in range(n):
        port = free_port()
        log = (tmp / f"cloud-{k}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "microbrain", "cloud", "serve", "--db", db]
            + ["--broker", f"mqtt://127.0.0.1:{broker}", "--site", str(site)]
            + ["--port", str(port)],
            cwd=ROOT,
            env={**env, "MB_CLOUD_INGEST_CLIENT_ID": f"drill-{k}-{uuid.uuid4().hex[:6]}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, f"http://127.0.0.1:{port}"))
        _wait_healthy(proc, procs[-1][1], tmp / f"cloud-{k}.log")  # one migrates at a time
    return procs


def _wait_healthy(proc: subprocess.Popen[bytes], api: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the cloud exited at start: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{api}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the cloud did not start within 180 s: {log.read_text()[-3000:]}")


class Sampler(threading.Thread):
    """CPU and RSS of each cloud process, and the CPU of the broker, of PostgreSQL's
    processes and of the whole machine, twice a second: what saturates first."""

    def __init__(self, pids: list[int], broker: int | None) -> None:
        super().__init__(daemon=True)
        self.procs = [psutil.Process(p) for p in pids]
        self.cpu: list[list[float]] = [[] for _ in pids]
        self.rss: list[float] = [0.0 for _ in pids]
        self.broker = psutil.Process(broker) if broker else None
        self.broker_cpu: list[float] = []
        self.postgres_cpu: list[float] = []
        self.machine_cpu: list[float] = []
        self.stop = threading.Event()
        self._postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
        for p in [*self.procs, *self._postgres, *([self.broker] if self.broker else [])]:
            p.cpu_percent(None)
        psutil.cpu_percent(None)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for k, p in enumerate(self.procs):
                try:
                    self.cpu[k].append(p.cpu_percent(None))
                    self.rss[k] = max(self.rss[k], p.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            try:
                if self.broker is not None:
                    self.broker_cpu.append(self.broker.cpu_percent(None))
            except psutil.Error:
                pass
            total = 0.0
            for p in self._postgres:
                with contextlib.suppress(psutil.Error):
                    total += p.cpu_percent(None)
            self.postgres_cpu.append(total)
            self.machine_cpu.append(psutil.cpu_percent(None) * psutil.cpu_count())


class StoredWatcher(threading.Thread):
    """The readings stored so far, sampled twice a second with the time: when the last
    one was stored, to the half second, however long the drill's own wrap-up takes."""

    def __init__(self, db: str) -> None:
        super().__init__(daemon=True)
        from cloud.db import make_engine

        self.engine = make_engine(db)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from sqlalchemy import func, select

        from cloud.db import models as m

        try:
            while not self.stop.wait(0.5):
                with contextlib.suppress(Exception):
                    with self.engine.connect() as conn:
                        n = conn.scalar(select(func.count()).select_from(m.ReadingRow)) or 0
                    self.samples.append((time.time(), n))
        finally:
            self.engine.dispose()

    def reached(self, total: int) -> float | None:
        return next((t for t, n in self.samples if n >= total), None)


def _counts(db: str, readings: list[str], events: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from cloud.db import make_engine, session_factory
    from cloud.db import models as m

    engine = make_engine(db)
    try:
        with session_factory(engine)() as s:
            rows = s.scalar(select(func.count()).select_from(m.ReadingRow)) or 0
            distinct = s.scalar(select(func.count(func.distinct(m.ReadingRow.id)))) or 0
            event_rows = s.scalar(select(func.count()).select_from(m.EventRow)) or 0
            alerts = s.execute(
                select(m.EventRow.ts, m.Alert.opened_at)
                .join(m.Alert, m.Alert.id == m.EventRow.alert_id)
                .where(m.EventRow.kind == CONDITION)
            ).all()
        return {
            "rows": rows,
            "distinct": distinct,
            "events": event_rows,
            "latencies_ms": [  # type: ignore[dict-item]
                (opened - ts).total_seconds() * 1000 for ts, opened in alerts
            ],
        }
    finally:
        engine.dispose()


def run(load: Load, processes: int, use_postgres: bool, tmp: Path) -> dict[str, Any]:
    """One configuration, on a fresh broker and database."""
    broker = MosquittoBroker("127.0.0.1", free_port(), tmp / f"broker-{processes}").start()
    db_url, drop = _database(use_postgres, tmp / f"cloud-{processes}.db")
    site = tmp / "site.yaml"
    write_site(load, site)
    work = tmp / f"run-{processes}"
    work.mkdir(exist_ok=True)
    clouds = start_cloud(processes, db_url, broker.port, site, work, load)
    sampler = Sampler([p.pid for p, _ in clouds], broker.pid)
    try:
        per = max(1, load.gateways // 2)  # two publisher processes
        out: Any = mp.Queue()
        start_at = time.time() + 1.0
        pubs = [
            mp.Process(
                target=_publisher,
                args=(broker.port, clouds[0][1], load, first, min(per, load.gateways - first))
                + (start_at, out),
            )
            for first in range(0, load.gateways, per)
        ]
        for p in pubs:
            p.start()
        sampler.start()
        watcher = StoredWatcher(db_url)
        watcher.start()
        results = [out.get(timeout=load.seconds + UPLOAD_S + 120) for _ in pubs]
        # the readings' end: the broker acknowledged the last one (evidence uploads, which
        # come after, are not part of the stream the backlog is measured on)
        end = max(r["published_at"] for r in results)
        for p in pubs:
            p.join(30)
        readings = [r for res in results for r in res["readings"]]
        events = [e for res in results for e in res["events"]]
        stored: dict[str, Any] = {}
        deadline = time.monotonic() + max(DRAIN_S, load.seconds)
        while time.monotonic() < deadline:
            stored = _counts(db_url, readings, events)
            if stored["distinct"] >= len(readings) and stored["events"] >= len(events):
                break
            time.sleep(0.5)
        watcher.stop.set()
        watcher.join(5)
        reached = watcher.reached(len(readings)) or time.time()
        drained_after = max(0.0, reached - end)
        sampler.stop.set()
        sampler.join(5)
    finally:
        for proc, _ in clouds:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in clouds:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        drop()
    # rates over the time the readings really took to go out (the generator may fall
    # behind its schedule on a small machine), and to be stored after that
    publish_s = max(load.seconds, *(r["publish_s"] for r in results))
    lag = max(r["lag_s"] for r in results)
    span = publish_s + drained_after
    stored_rate = stored["distinct"] / span
    offered = len(readings) / publish_s
    latencies = sorted(stored["latencies_ms"])
    return {
        "processes": processes,
        "offered_per_s": round(offered, 1),
        "stored_per_s": round(stored_rate, 1),
        "drained_after_s": round(drained_after, 2),
        "sustained": drained_after <= (1 - SUSTAINED_SHARE) * load.seconds + 1.0
        and stored["distinct"] == len(readings)
        and lag <= GENERATOR_LAG_S,
        # the load generator fell this far behind its schedule: above GENERATOR_LAG_S it,
        # not the cloud, is what could not keep up
        "generator_lag_s": round(lag, 2),
        "lost": len(readings) - stored["distinct"] + max(0, len(events) - stored["events"]),
        "duplicated": stored["rows"] - stored["distinct"],
        "events": len(events),
        "evidence_stored": sum(r["files"] for r in results),
        "alert_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "alert_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "cpu_percent": [round(statistics.fmean(c), 1) if c else 0.0 for c in sampler.cpu],
        "rss_mb": [round(r, 1) for r in sampler.rss],
        # % of one core, mean over the run; the machine's is over all its cores
        "broker_cpu_percent": _mean(sampler.broker_cpu),
        "postgres_cpu_percent": _mean(sampler.postgres_cpu),
        "machine_cpu_percent": _mean(sampler.machine_cpu),
        "machine_cores": psutil.cpu_count(),
    }


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 1) if values else 0.0


def _database(use_postgres: bool, sqlite_file: Path) -> tuple[str, Any]:
    if not use_postgres:
        return f"sqlite:///{sqlite_file}", lambda: None
    import psycopg

    name = f"mb_drill_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def _print(result: dict[str, Any], load: Load) -> None:
    print(
        f"{result['processes']} process(es), {load.gateways}×{load.sensors} sensors: "
        f"offered {result['offered_per_s']}/s, stored {result['stored_per_s']}/s "
        f"(drained {result['drained_after_s']} s after the end; "
        f"{'sustained' if result['sustained'] else 'NOT sustained'}; "
        f"the generator {result['generator_lag_s']} s behind its schedule at worst); "
        f"publish→alert p50 {result['alert_p50_ms']} ms, p99 {result['alert_p99_ms']} ms "
        f"over {result['events']} alerts; lost {result['lost']}, duplicated "
        f"{result['duplicated']}; evidence {result['evidence_stored']}/{result['events']}; "
        f"CPU {result['cpu_percent']} % of a core, RSS {result['rss_mb']} MB; broker "
        f"{result['broker_cpu_percent']} %, PostgreSQL {result['postgres_cpu_percent']} %, "
        f"the machine {result['machine_cpu_percent']} % of {result['machine_cores'] * 100}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--ci", action="store_true", help="a few seconds: the test's version")
    parser.add_argument("--ladder", action="store_true", help="double N until not sustained")
    parser.add_argument("--gateways", type=int, default=50)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--reading-s", type=float, default=1.0, help="each sensor's period")
    parser.add_argument(
        "--events-per-min", type=float, default=6.0, help="new conditions a gateway raises a minute"
    )
    parser.add_argument("--processes", default="1,2", help="cloud processes to compare")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    if args.ci:
        load = Load(4, 5, 5.0, events_per_gateway_min=30)
    elif args.quick:
        load = Load(20, 10, 15.0, events_per_gateway_min=12)
    else:
        load = Load(args.gateways, args.sensors, args.seconds, args.reading_s, args.events_per_min)
    processes = [int(p) for p in args.processes.split(",")]
    figures: dict[str, Any] = {"gateways": load.gateways, "sensors": load.sensors}
    with tempfile.TemporaryDirectory(prefix="mb-drill-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.ladder:
            best: Load | None = None
            current = load
            while True:
                result = run(current, max(processes), args.db == "postgres", tmp)
                _print(result, current)
                if not result["sustained"] or result["lost"] or result["duplicated"]:
                    break
                best = current
                current = Load(
                    current.gateways * 2,
                    current.sensors,
                    current.seconds,
                    current.reading_s,
                    current.events_per_gateway_min,
                )
            figures["largest_sustained_sensors"] = best.gateways * best.sensors if best else 0
            figures["largest_sustained_per_s"] = best.offered_per_s if best else 0
            figures["first_unsustained_per_s"] = current.offered_per_s
            # what gave out first there: the drill's own generator (it fell behind its
            # schedule: the machine, not the cloud, is full) or the cloud (a backlog)
            figures["stopped_by"] = (
                "load generator" if result["generator_lag_s"] > GENERATOR_LAG_S else "cloud"
            )
            figures["at_stop"] = {
                k: result[k]
                for k in (
                    "stored_per_s",
                    "alert_p50_ms",
                    "alert_p99_ms",
                    "cpu_percent",
                    "broker_cpu_percent",
                    "postgres_cpu_percent",
                    "machine_cpu_percent",
                )
            }
        else:
            for n in processes:
                result = run(load, n, args.db == "postgres", tmp)
                _print(result, load)
                for key, value in result.items():
                    if key != "processes":
                        figures[f"p{n}_{key}"] = value
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
