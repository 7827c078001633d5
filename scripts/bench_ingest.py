"""Benchmark the cloud ingest against the raw broker → subscriber rate, in one run.

    python scripts/bench_ingest.py --quick      # about a minute

Figures (last line, JSON):
- raw_msgs_per_s: one paho subscriber taking QoS 1 messages from a private Mosquitto
- ingest_sqlite_msgs_per_s / ratio: the same messages decoded, deduped, stored and
  (10 % events) folded into alerts, committed and acknowledged, on SQLite (WAL)
- the same on PostgreSQL, and with two workers sharing the subscription
- stream latency: publish of a new event → its "opened" change on the SSE stream,
  p50/p99, while 1,000 readings/s flow in the background
The publisher runs in its own process so that it does not share the GIL with what is
measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.broker.embedded import MosquittoBroker, free_port
from microbrain.protocol import Event, GatewayPath, Reading, Severity

GW = GatewayPath("bench", "compound-1", "gw-bench")
# the devices the bench sends from, declared on its gateway (the ingest refuses others)
DEVICES = {"cameras": ("cam-1",), "sensors": tuple(f"s{i}" for i in range(20))}


def messages(n: int, seq0: int = 1) -> list[tuple[str, bytes]]:
    """n items: 90 % readings, 10 % events over 50 spots (so alerts fold repeats)."""
    out = []
    for i in range(n):
        seq = seq0 + i
        if i % 10 == 0:
            item = Event(
                seq=seq,
                kind="illegal_parking",
                source="cam-1",
                zone=f"z{(i // 10) % 50}",
                building="b1",
                severity=Severity.WARNING,
            )
        else:
            item = Reading(
                seq=seq,
                sensor=f"s{i % 20}",
                kind="hydrant_pressure",
                building="b1",
                values={"pressure_mpa": 0.3 + (i % 7) * 0.01},
            )
        out.append((GW.topic(item.type), item.to_json()))
    return out


def _publish_proc(port: int, items: list[tuple[str, bytes]], rate: float, go) -> None:  # type: ignore[no-untyped-def]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    go.wait()
    start = time.perf_counter()
    infos: deque = deque()
    for i, (topic, payload) in enumerate(items):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        # message ids are 16 bits: keep well under 65,535 unacknowledged publishes
        while len(infos) >= 20_000:
            infos.popleft().wait_for_publish(60)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def publisher(port: int, items: list[tuple[str, bytes]], rate: float = 0.0):  # type: ignore[no-untyped-def]
    go = mp.Event()
    proc = mp.Process(target=_publish_proc, args=(port, items, rate, go), daemon=True)
    proc.start()
    time.sleep(0.5)  # connected
    return proc, go


def raw_rate(port: int, n: int) -> float:
    got = 0
    done = threading.Event()
    first = [0.0]
    last = [0.0]

    def on_message(_c, _u, _msg):  # type: ignore[no-untyped-def]
        nonlocal got
        got += 1
        if got == 1:
            first[0] = time.perf_counter()
        if got == n:
            last[0] = time.perf_counter()
            done.set()

    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("$share/raw/mb/v1/+/+/+/#", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    proc, go = publisher(port, messages(n))
    go.set()
    done.wait(300)
    sub.disconnect()
    sub.loop_stop()
    proc.join(30)
    return n / (last[0] - first[0])


def ingest_rate(port: int, url: str, n: int, workers: int) -> dict:
    """Messages/s from the first publish until all ``n`` are committed. One worker runs in
    this process; ``workers`` > 1 run as that many ``python -m cloud.ingest`` processes,
    as a scaled-out deployment would (threads would share one GIL)."""
    from sqlalchemy import func, select

    from cloud.db import make_engine, session_factory, transaction, upgrade
    from cloud.db import models as m
    from cloud.ingest import IngestWorker
    from cloud.settings import Settings
    from cloud.site_sync import register_gateway

    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with transaction(factory) as s:
        register_gateway(s, GW.community, GW.compound, GW.gateway, building="b1", **DEVICES)
    group = f"b{uuid.uuid4().hex[:8]}"
    lock = threading.Lock()
    stored = 0
    done = threading.Event()

    def on_commit(result) -> None:  # type: ignore[no-untyped-def]
        nonlocal stored
        with lock:
            stored += result.stored
            if stored >= n:
                done.set()

    def count() -> int:
        with factory() as s:
            return s.scalar(select(func.count()).select_from(m.Ledger)) or 0

    ws: list[IngestWorker] = []
    procs: list[subprocess.Popen[bytes]] = []
    if workers == 1:
        settings = Settings(
            database_url=url,
            broker_url=f"mqtt://127.0.0.1:{port}",
            environment="test",
            ingest_group=group,
            session_expiry_s=0,
        )
        ws.append(IngestWorker(settings, factory, on_commit=on_commit).start())
    else:
        env = {
            **os.environ,
            "MB_CLOUD_DATABASE_URL": url,
            "MB_CLOUD_BROKER_URL": f"mqtt://127.0.0.1:{port}",
            "MB_CLOUD_INGEST_GROUP": group,
            "MB_CLOUD_ENVIRONMENT": "test",
            "PYTHONPATH": str(ROOT),
        }
        for _ in range(workers):
            proc = subprocess.Popen(
                [sys.executable, "-m", "cloud.ingest"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert proc.stdout is not None and b"ingest ready" in proc.stdout.readline()
            procs.append(proc)
    pub, go = publisher(port, messages(n))
    start = time.perf_counter()
    go.set()
    if workers == 1:
        ok = done.wait(600)
    else:
        deadline = time.monotonic() + 600
        while (stored := count()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        ok = stored >= n
    elapsed = time.perf_counter() - start
    for w in ws:
        w.stop()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    pub.join(30)
    with factory() as s:
        alerts = s.scalar(select(func.count()).select_from(m.Alert))
        folded = s.scalar(select(func.sum(m.Alert.count)))
    engine.dispose()
    return {
        "msgs_per_s": round(n / elapsed, 1) if ok else 0.0,
        "stored": count(),
        "alerts": alerts,
        "events_folded": folded,
    }


def stream_latency(port: int, url: str, probes: int, background_rate: float) -> dict:
    import uvicorn

    from cloud import auth
    from cloud.app import CloudService
    from cloud.db import transaction
    from cloud.settings import Settings
    from cloud.site_sync import register_gateway

    settings = Settings(
        database_url=url,
        broker_url=f"mqtt://127.0.0.1:{port}",
        environment="test",
        ingest_group=f"l{uuid.uuid4().hex[:8]}",
        session_expiry_s=0,
    )
    service = CloudService(settings)
    api_port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(service.app, host="127.0.0.1", port=api_port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with transaction(service.factory) as s:
        register_gateway(s, GW.community, GW.compound, GW.gateway, building="b1", **DEVICES)
        auth.create_user(s, "bench", "bench-password", "duty", now=service.clock())
    base = f"http://127.0.0.1:{api_port}"
    seconds = probes * 0.1 + 2
    background = [
        (
            GW.topic("reading"),
            Reading(
                seq=0,
                sensor=f"s{i % 20}",
                kind="hydrant_pressure",
                building="b1",
                values={"p": 0.3},
            ).to_json(),
        )
        for i in range(int(background_rate * seconds))
    ]
    proc, go = publisher(port, background, rate=background_rate)
    go.set()
    time.sleep(1.0)  # background flowing
    # the console side (SSE client) and the probing gateway run in their own process, as
    # they would in life; only the cloud (API + ingest) runs here
    results: mp.Queue = mp.Queue()
    prober = mp.Process(target=_probe_proc, args=(base, port, probes, results), daemon=True)
    prober.start()
    lat = results.get(timeout=probes * 0.1 + 60)
    prober.join(10)
    proc.join(30)
    server.should_exit = True
    time.sleep(0.5)
    if not lat:
        return {"p50_ms": None, "p99_ms": None, "received": 0}
    lat.sort()
    return {
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "received": len(lat),
        "sent": probes,
    }


def _probe_proc(base: str, port: int, probes: int, results) -> None:  # type: ignore[no-untyped-def]
    import httpx

    token = httpx.post(
        f"{base}/api/auth/token", json={"username": "bench", "password": "bench-password"}
    ).json()["access_token"]
    seen: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", f"{base}/api/stream/alerts", params={"access_token": token}, timeout=None
        ) as r:
            for line in r.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    change = json.loads(line[6:])
                    if change["action"] == "opened":
                        seen[change["kind"]] = time.perf_counter()
                if len(seen) >= probes:
                    return

    threading.Thread(target=listen, daemon=True).start()
    ready.wait(10)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-probe-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.3)
    sent: dict[str, float] = {}
    for i in range(probes):
        kind = f"probe_{i}"
        payload = Event(kind=kind, source="cam-1", zone="z", building="b1").to_json()
        sent[kind] = time.perf_counter()
        client.publish(GW.topic("event"), payload, qos=1)
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while len(seen) < probes and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    results.put([(seen[k] - sent[k]) * 1000 for k in sent if k in seen])


def postgres_url() -> str | None:
    try:
        import psycopg

        name = f"mb_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:5432/{name}"
    except Exception as err:  # noqa: BLE001
        print(f"PostgreSQL not available ({err}); skipping its figures", file=sys.stderr)
        return None


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--part", choices=("all", "throughput", "latency"), default="all")
    args = parser.parse_args()
    n = args.messages or (15_000 if args.quick else 100_000)
    probes = 100 if args.quick else 500
    tmp = Path(tempfile.mkdtemp(prefix="mb-bench-"))
    broker = MosquittoBroker(port=free_port(), data_dir=tmp).start()
    port = broker.port
    figures: dict[str, object] = {"messages": n}
    try:
        if args.part != "latency":
            throughput(port, n, tmp, figures)
        if args.part != "throughput":
            latency(port, probes, tmp, figures)
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures))


def throughput(port: int, n: int, tmp: Path, figures: dict) -> None:
    """Raw broker → subscriber rate, then the ingest on SQLite and PostgreSQL: one worker
    in this process, and two worker processes sharing the subscription."""
    # the machine may be shared: the reference is taken before and after the SQLite runs
    # (their mean is the divisor), as bench_uplink does around its replay
    raw_before = raw_rate(port, n)
    print(f"raw broker → subscriber: {raw_before:.0f} msg/s", file=sys.stderr)
    sq = ingest_rate(port, f"sqlite:///{tmp / 'one.db'}", n, 1)
    print(f"sqlite, 1 worker: {sq}", file=sys.stderr)
    sq2 = ingest_rate(port, f"sqlite:///{tmp / 'two.db'}", n, 2)
    raw_after = raw_rate(port, n)
    print(f"raw broker → subscriber (again): {raw_after:.0f} msg/s", file=sys.stderr)
    raw = (raw_before + raw_after) / 2
    figures["raw_broker_to_subscriber_msgs_per_s"] = round(raw, 1)
    figures["raw_broker_to_subscriber_before_after_msgs_per_s"] = [
        round(raw_before, 1),
        round(raw_after, 1),
    ]
    figures["ingest_sqlite_msgs_per_s"] = sq["msgs_per_s"]
    figures["ingest_sqlite_ratio_to_raw"] = round(sq["msgs_per_s"] / raw, 3)
    figures["ingest_sqlite_alerts"] = sq["alerts"]
    figures["ingest_sqlite_events_folded"] = sq["events_folded"]
    figures["ingest_sqlite_2workers_msgs_per_s"] = sq2["msgs_per_s"]
    figures["ingest_sqlite_2workers_ratio_to_raw"] = round(sq2["msgs_per_s"] / raw, 3)
    print(f"sqlite, 2 workers: {sq2}", file=sys.stderr)
    for workers in (1, 2):
        pg = postgres_url()
        if pg:
            try:
                r = ingest_rate(port, pg, n, workers)
            finally:
                drop_postgres(pg)
            key = "ingest_postgres" if workers == 1 else "ingest_postgres_2workers"
            figures[f"{key}_msgs_per_s"] = r["msgs_per_s"]
            figures[f"{key}_ratio_to_raw"] = round(r["msgs_per_s"] / raw, 3)
            print(f"postgres, {workers} worker(s): {r}", file=sys.stderr)


def latency(port: int, probes: int, tmp: Path, figures: dict) -> None:
    """Publish → "opened" on the live stream, with 1,000 readings/s in the background."""
    lat = stream_latency(port, f"sqlite:///{tmp / 'latency.db'}", probes, 1000.0)
    figures["stream_latency_p50_ms"] = lat["p50_ms"]
    figures["stream_latency_p99_ms"] = lat["p99_ms"]
    figures["stream_latency_probes_received"] = lat["received"]
    figures["stream_background_readings_per_s"] = 1000
    print(f"publish → live stream: {lat}", file=sys.stderr)


if __name__ == "__main__":
    main()
