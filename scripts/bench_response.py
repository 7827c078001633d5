"""Benchmark smart response (issue #11): alert opened → webhook received, at 100 alerts/min.

    python scripts/bench_response.py --quick    # about a minute: 60 alerts
    python scripts/bench_response.py            # 5 minutes of load: 500 alerts
    MB_CLOUD_RESPONSE_INTERVAL_S=0.05 python scripts/bench_response.py --quick

The cloud (CloudService: API + ingest + scheduler + responder, MB_CLOUD_PLAYBOOKS set to
a playbook file written for this run) runs in its own process, as ``microbrain cloud
serve`` does, against a private Mosquitto on a free loopback port and SQLite in a
temporary folder (or ``--db``). Its MB_CLOUD_* settings come from the environment as in
production, so the knobs that matter here (MB_CLOUD_RESPONSE_INTERVAL_S,
MB_CLOUD_INGEST_BATCH_LATENCY_S) can be tried without a code change; the values it ran
with are printed and put in the JSON.

One playbook covers illegal_parking and notifies one contact through ``--channels`` (3)
webhook channels, each posting to its own local HTTP receiver (tests/utils/http_receiver)
on a free loopback port. Each channel's budget_per_minute is 600 (the most the config
allows), far above the load, so every alert goes alone and no digest is made: this is
the latency of the normal path, not of a flood.

A gateway (declared with its cameras, straight into the database) publishes an
illegal_parking event over MQTT (QoS 1) every 0.6 s (100 alerts/min), each in a zone of
its own so that each opens a new alert. After --warmup alerts (not counted: first-use
costs), the run measures, for the same alerts, side by side:

- reference: publish → the alert's "opened" change on the cloud's live stream
  (/api/stream/alerts, SSE, as bench_ingest times it): the ingest alone
- figure: publish → each channel's receiver has the POST that carries the alert;
  p50/p95/max per channel and over all (goal: p95 < 1000 ms), and alert opened (its
  opened_at, the ingest's clock) → POST
- where the time goes, from the rows' timestamps (one machine, one wall clock): publish →
  the ingest batch that opened the alert (its opened_at) → the responder's round that
  applied the playbook (response_runs.at) → the channel's delivery round that sent it
  (notifications.sent_at) → POST received; and the live stream's share after opened_at
- POSTs received vs 3 × alerts sent: lost, duplicated and digests are figures too
- the cloud process's CPU (% of one core) for 5 s idle before the load, and during it:
  what a shorter MB_CLOUD_RESPONSE_INTERVAL_S costs (each channel thread polls at that
  interval too)

All times are taken in this process (time.monotonic(); the rows' UTC times are put on the
same clock by one offset), the cloud's own in its rows. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.broker.embedded import MosquittoBroker, free_port
from microbrain.protocol import Event, GatewayPath, Severity
from tests.utils.http_receiver import Receiver, http_receiver

PASSWORD = "bench response password"
CAMERAS = ("cam-0", "cam-1", "cam-2")
KIND = "illegal_parking"
BUDGET_PER_MINUTE = 600  # the config's maximum: far above the load, so no digest
GOALS = {"publish_to_webhook_p95_ms": 1000.0}
IDLE_S = 5.0  # the cloud's CPU is sampled this long with nothing to do, before the load
CLOUD: list[subprocess.Popen[bytes]] = []  # the cloud's process, for a stack dump

# --- the cloud, in its own process ---------------------------------------------------


def serve_main(db: str, broker_port: int, port: int, group: str, playbooks: Path) -> None:
    """``--serve``: the cloud as ``microbrain cloud serve --playbooks`` runs it, quieter;
    the MB_CLOUD_* settings not given here come from the environment."""
    import faulthandler

    import uvicorn

    from cloud.app import CloudService
    from cloud.settings import Settings

    # every thread's stack into the log on SIGUSR1: sent when the cloud stops answering
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = Settings(
        database_url=db,
        broker_url=f"mqtt://127.0.0.1:{broker_port}",
        environment="test",
        ingest_group=group,
        session_expiry_s=0,
        playbooks=playbooks,
    )
    used = {
        "response_interval_s": settings.response_interval_s,
        "ingest_batch_latency_s": settings.ingest_batch_latency_s,
        "ingest_batch_size": settings.ingest_batch_size,
    }
    (playbooks.parent / "settings.json").write_text(json.dumps(used))
    service = CloudService(settings)
    uvicorn.run(service.app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def cloud_process(db: str, broker_port: int, playbooks: Path, log_path: Path) -> Iterator[str]:
    port = free_port()
    group = f"bench{uuid.uuid4().hex[:8]}"
    args = [sys.executable, __file__, "--serve", "--db", db, "--broker-port", str(broker_port)]
    args += ["--port", str(port), "--group", group, "--playbooks", str(playbooks)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    CLOUD.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the cloud exited at start-up: see {log_path}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).json().get("ingest_subscribed"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cloud did not subscribe in 60 s: see {log_path}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- the data ------------------------------------------------------------------------


class Site:
    """This run's gateway and duty officer, put straight into the database."""

    def __init__(self, db: str) -> None:
        from cloud import auth
        from cloud.db import make_engine, session_factory, transaction, upgrade
        from cloud.db import models as m
        from cloud.site_sync import register_gateway

        upgrade(db)
        self.engine = make_engine(db)
        self.factory = session_factory(self.engine)
        tag = uuid.uuid4().hex[:8]
        self.gw = GatewayPath(f"bench-{tag}", "compound-1", f"gw-{tag}")
        self.user = f"duty-{tag}"
        self.seq = 0
        with transaction(self.factory) as s:
            register_gateway(
                s,
                self.gw.community,
                self.gw.compound,
                self.gw.gateway,
                building="b1",
                cameras=CAMERAS,
                sensors=(),
            )
            s.add(
                m.User(
                    username=self.user,
                    password_hash=auth.hash_password(PASSWORD),
                    role="duty",
                    community=self.gw.community,
                    compound=self.gw.compound,
                    active=True,
                    created_at=datetime.now(UTC),
                )
            )

    def event(self) -> Event:
        """An illegal_parking event in a zone of its own: a new alert."""
        self.seq += 1
        return Event(
            seq=self.seq,
            kind=KIND,
            source=CAMERAS[self.seq % 3],
            zone=f"zone-{self.seq}",
            building="b1",
            severity=Severity.WARNING,
        )


def write_playbooks(path: Path, receivers: list[Receiver], user: str) -> list[str]:
    """One playbook for KIND: one contact, one webhook channel per receiver."""
    ids = [f"hook-{i + 1}" for i in range(len(receivers))]
    lines = [
        "schema: 1",
        "console_url: http://127.0.0.1:8000",
        "channels:",
    ]
    for cid, rec in zip(ids, receivers, strict=True):
        lines += [
            f"  - id: {cid}",
            "    type: webhook",
            f"    url: {rec.url}",
            f"    budget_per_minute: {BUDGET_PER_MINUTE}",
        ]
    lines += [
        "contacts:",
        "  - id: bench-duty",
        "    name: bench duty desk",
        f"    channels: [{', '.join(ids)}]",
        f"    user: {user}",
        "playbooks:",
        "  - id: bench-parking",
        f"    kind: {KIND}",
        "    notify: [bench-duty]",
    ]
    path.write_text("\n".join(lines) + "\n")
    return ids


# --- the reference: the live stream --------------------------------------------------


@dataclass
class Stream:
    """The cloud's alert stream, read in a thread: when each alert's "opened" arrived."""

    url: str
    token: str
    opened: dict[int, float] = field(default_factory=dict)  # alert id → time.monotonic()
    ready: threading.Event = field(default_factory=threading.Event)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=None))
    closing: bool = False

    def start(self) -> None:
        threading.Thread(target=self._listen, name="sse", daemon=True).start()
        if not self.ready.wait(30):
            raise TimeoutError("the live stream did not open in 30 s")

    def _listen(self) -> None:
        try:
            with self.client.stream(
                "GET", f"{self.url}/api/stream/alerts", params={"access_token": self.token}
            ) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    self.ready.set()
                    if line.startswith("data: "):
                        change = json.loads(line[6:])
                        if change.get("action") == "opened":
                            self.opened.setdefault(change["alert_id"], time.monotonic())
        except Exception as err:  # noqa: BLE001 - closed by close(), or the figure is missing
            if not self.closing:
                print(f"live stream ended: {err!r}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.closing = True
        self.client.close()


# --- the run -------------------------------------------------------------------------


@dataclass
class Sent:
    event_id: str
    at: float  # time.monotonic() just before publish
    warmup: bool


def cpu_pct(proc: psutil.Process, during: Callable[[], None]) -> float:
    """The CPU ``proc`` used while ``during`` ran, in % of one core."""
    cpu0, wall0 = sum(proc.cpu_times()[:2]), time.monotonic()
    during()
    return (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0) * 100


def mqtt_publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-response-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "n": 0}
    return {
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(pct(values, 95), 1),
        "max_ms": round(max(values), 1),
        "n": len(values),
    }


def posts_in(receivers: list[Receiver]) -> int:
    return sum(len(r.requests) for r in receivers)


def load(
    site: Site,
    port: int,
    receivers: list[Receiver],
    n: int,
    warmup: int,
    period_s: float,
    drain_s: float,
) -> list[Sent]:
    """Publish ``warmup + n`` events, one every ``period_s`` on a fixed schedule; then wait
    up to ``drain_s`` for the last POSTs. Progress on stderr every 10 alerts."""
    client = mqtt_publisher(port)
    sent: list[Sent] = []
    total = warmup + n
    try:
        time.sleep(0.3)  # connected
        start = time.monotonic()
        for i in range(total):
            delay = start + i * period_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ev = site.event()
            payload = ev.to_json()
            t0 = time.monotonic()
            client.publish(site.gw.topic(ev.type), payload, qos=1)
            sent.append(Sent(ev.id, t0, warmup=i < warmup))
            done = i + 1
            if done in (warmup, total) or (done > warmup and (done - warmup) % 10 == 0):
                what = "warm-up" if done <= warmup else f"{done - warmup}/{n} measured"
                print(
                    f"  {time.monotonic() - start:5.1f} s  {what}; "
                    f"POSTs in {posts_in(receivers)}/{done * len(receivers)}",
                    file=sys.stderr,
                    flush=True,
                )
        expected = total * len(receivers)
        deadline = time.monotonic() + drain_s
        while posts_in(receivers) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a late duplicate or digest would show now
        print(f"  drained: POSTs in {posts_in(receivers)}/{expected}", file=sys.stderr, flush=True)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


@dataclass
class Rows:
    """What the cloud wrote for one alert, each time on this process's monotonic clock."""

    alert_id: int
    opened: float  # the alert's opened_at: the clock of the ingest batch that stored it
    run: float | None  # the playbook run (the responder's round)
    rounds: dict[str, float]  # channel → the delivery round that sent it (its "now")


def rows_of(site: Site, sent: list[Sent], offset: float) -> dict[str, Rows]:
    """event id → its alert's rows; ``offset`` = time.time() − time.monotonic()."""
    from sqlalchemy import select

    from cloud.db import models as m

    def mono(at: datetime) -> float:
        return at.timestamp() - offset

    ids = [s.event_id for s in sent]
    out: dict[str, Rows] = {}
    with site.factory() as s:
        events = s.execute(
            select(m.EventRow.id, m.EventRow.alert_id).where(m.EventRow.id.in_(ids))
        ).all()
        alert_ids = {a for _, a in events if a is not None}
        opened = dict(
            s.execute(select(m.Alert.id, m.Alert.opened_at).where(m.Alert.id.in_(alert_ids))).all()
        )
        runs = dict(
            s.execute(
                select(m.ResponseRun.alert_id, m.ResponseRun.at).where(
                    m.ResponseRun.alert_id.in_(alert_ids)
                )
            ).all()
        )
        rounds: dict[int, dict[str, float]] = {}
        for of_alert, channel, sent_at in s.execute(
            select(m.Notification.alert_id, m.Notification.channel, m.Notification.sent_at).where(
                m.Notification.alert_id.in_(alert_ids)
            )
        ).all():
            if sent_at is not None:
                rounds.setdefault(of_alert, {})[channel] = mono(sent_at)
    for event_id, alert_id in events:
        if alert_id is None:
            continue
        run = runs.get(alert_id)
        out[event_id] = Rows(
            alert_id,
            mono(opened[alert_id]),
            mono(run) if run is not None else None,
            rounds.get(alert_id, {}),
        )
    return out


def line(name: str, value: float | None, unit: str, note: str = "") -> None:
    if value is None:
        shown = f"{'—':>9}"
    else:
        shown = f"{value:>9d}" if isinstance(value, int) else f"{value:>9.1f}"
    print(f"{name:<58} {shown} {unit:<3} {note}".rstrip(), flush=True)


def analyse(
    sent: list[Sent],
    rows: dict[str, Rows],
    stream: Stream,
    receivers: list[Receiver],
    channels: list[str],
) -> dict[str, Any]:
    measured = [x for x in sent if not x.warmup]
    # first receipt of each (channel, alert); duplicates and digests counted
    first: dict[str, dict[int, float]] = {c: {} for c in channels}
    duplicates = digests = 0
    for cid, rec in zip(channels, receivers, strict=True):
        for req in rec.requests:
            ids = req.json().get("alert_ids") or []
            digests += len(ids) > 1
            for alert_id in ids:
                if alert_id in first[cid]:
                    duplicates += 1
                else:
                    first[cid][alert_id] = req.at
    ref: list[float] = []
    per_channel: dict[str, list[float]] = {c: [] for c in channels}
    from_opened: list[float] = []
    last_of_all: list[float] = []
    stages: dict[str, list[float]] = {
        "publish_to_ingest_batch": [],
        "alert_opened_to_stream": [],
        "alert_opened_to_playbook_run": [],
        "playbook_run_to_delivery_round": [],
        "delivery_round_to_post_received": [],
    }
    received = 0
    no_alert = 0
    for x in measured:
        r = rows.get(x.event_id)
        if r is None:
            no_alert += 1
            continue
        if r.alert_id in stream.opened:
            ref.append((stream.opened[r.alert_id] - x.at) * 1000)
            stages["alert_opened_to_stream"].append((stream.opened[r.alert_id] - r.opened) * 1000)
        stages["publish_to_ingest_batch"].append((r.opened - x.at) * 1000)
        if r.run is not None:
            stages["alert_opened_to_playbook_run"].append((r.run - r.opened) * 1000)
        got = []
        for cid in channels:
            at = first[cid].get(r.alert_id)
            if at is None:
                continue
            received += 1
            got.append(at)
            per_channel[cid].append((at - x.at) * 1000)
            from_opened.append((at - r.opened) * 1000)
            if cid in r.rounds:
                stages["delivery_round_to_post_received"].append((at - r.rounds[cid]) * 1000)
                if r.run is not None:
                    stages["playbook_run_to_delivery_round"].append((r.rounds[cid] - r.run) * 1000)
        if len(got) == len(channels):
            last_of_all.append((max(got) - x.at) * 1000)
    everything = [v for vs in per_channel.values() for v in vs]
    expected = len(measured) * len(channels)
    return {
        "reference": summary(ref),
        "figure": summary(everything),
        "per_channel": {c: summary(v) for c, v in per_channel.items()},
        "from_opened": summary(from_opened),
        "last_of_all": summary(last_of_all),
        "stages": {k: summary(v) for k, v in stages.items()},
        "alerts": len(measured),
        "alerts_without_alert_row": no_alert,
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "duplicates": duplicates,
        "digests": digests,
        "posts_total": posts_in(receivers),
    }


def report(
    a: dict[str, Any], args: argparse.Namespace, used: dict[str, Any], idle: float, cpu: float
) -> dict[str, Any]:
    ref, fig = a["reference"], a["figure"]
    goal = GOALS["publish_to_webhook_p95_ms"]
    met = fig["p95_ms"] is not None and fig["p95_ms"] < goal and a["lost"] == 0
    ratio = (
        round(fig["p95_ms"] / ref["p95_ms"], 2)
        if fig["p95_ms"] is not None and ref["p95_ms"]
        else None
    )
    n_ch = len(a["per_channel"])
    print(
        f"{a['alerts']} alerts at {args.rate:g}/min, {n_ch} webhook channels each "
        f"(budget_per_minute {BUDGET_PER_MINUTE}: no digests), after {args.warmup} warm-up; "
        f"cloud: response_interval_s {used.get('response_interval_s')}, "
        f"ingest_batch_latency_s {used.get('ingest_batch_latency_s')}",
        flush=True,
    )
    line("reference: publish → alert opened on the live stream, p50", ref["p50_ms"], "ms")
    line("reference: publish → alert opened on the live stream, p95", ref["p95_ms"], "ms")
    line("figure: publish → webhook POST received (all channels), p50", fig["p50_ms"], "ms")
    verdict = "PASS" if met else "MISS"
    line(
        "figure: publish → webhook POST received (all channels), p95",
        fig["p95_ms"],
        "ms",
        f"goal < {goal:.0f}  {verdict}",
    )
    line("figure: publish → webhook POST received, max", fig["max_ms"], "ms")
    for cid, s in a["per_channel"].items():
        line(f"  {cid}: p50 / p95 {s['p50_ms']} /", s["p95_ms"], "ms", f"max {s['max_ms']}")
    line("figure: publish → all channels have it, p95", a["last_of_all"]["p95_ms"], "ms")
    line("figure: alert opened_at → webhook POST received, p95", a["from_opened"]["p95_ms"], "ms")
    line("ratio: figure p95 ÷ reference p95", ratio, "×")
    line("POSTs: expected (alerts × channels)", a["expected"], "")
    line("POSTs: received (first per alert and channel)", a["received"], "")
    line("POSTs: lost", a["lost"], "", "goal 0")
    line("POSTs: duplicated / digests", a["duplicates"], "", f"digests {a['digests']}")
    line(f"cloud process CPU, idle ({IDLE_S:g} s before the load)", idle, "%", "of one core")
    line("cloud process CPU during the load", cpu, "%", "of one core")
    print("where the time goes (p50 / p95 ms, from the rows' timestamps):", flush=True)
    for name, s in a["stages"].items():
        print(f"  {name:<40} {s['p50_ms']} / {s['p95_ms']}", flush=True)
    return {
        "alerts_sent": a["alerts"],
        "alerts_per_min": args.rate,
        "warmup_alerts_not_counted": args.warmup,
        "channels_per_alert": n_ch,
        "channel_budget_per_minute": BUDGET_PER_MINUTE,
        "reference_publish_to_stream_opened_p50_ms": ref["p50_ms"],
        "reference_publish_to_stream_opened_p95_ms": ref["p95_ms"],
        "reference_publish_to_stream_opened_max_ms": ref["max_ms"],
        "reference_alerts_seen_on_stream": ref["n"],
        "publish_to_webhook_p50_ms": fig["p50_ms"],
        "publish_to_webhook_p95_ms": fig["p95_ms"],
        "publish_to_webhook_max_ms": fig["max_ms"],
        "publish_to_webhook_by_channel": a["per_channel"],
        "publish_to_last_of_channels_p95_ms": a["last_of_all"]["p95_ms"],
        "alert_opened_to_webhook_p50_ms": a["from_opened"]["p50_ms"],
        "alert_opened_to_webhook_p95_ms": a["from_opened"]["p95_ms"],
        "alert_opened_to_webhook_max_ms": a["from_opened"]["max_ms"],
        "ratio_webhook_p95_to_reference_p95": ratio,
        "webhook_posts_expected": a["expected"],
        "webhook_posts_received": a["received"],
        "webhook_posts_lost": a["lost"],
        "webhook_posts_duplicated": a["duplicates"],
        "webhook_digests": a["digests"],
        "alerts_without_alert_row": a["alerts_without_alert_row"],
        "stages_ms": {k: {"p50": s["p50_ms"], "p95": s["p95_ms"]} for k, s in a["stages"].items()},
        "goal_publish_to_webhook_p95_ms": goal,
        "goal_met": met,
        "cloud_cpu_pct_of_one_core_idle": round(idle, 1),
        "cloud_cpu_pct_of_one_core_during_load": round(cpu, 1),
        "cloud_settings": used,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a bounded run of about a minute")
    ap.add_argument("--alerts", type=int, help="alerts measured (60 quick; 5 minutes' worth)")
    ap.add_argument("--rate", type=float, default=100.0, help="new alerts a minute (100)")
    ap.add_argument("--channels", type=int, default=3, help="webhook channels per alert (3)")
    ap.add_argument("--warmup", type=int, default=3, help="alerts sent first, not counted (3)")
    ap.add_argument("--drain", type=float, default=30.0, help="s to wait for the last POSTs")
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    ap.add_argument("--log-lines", type=int, default=40, help="cloud log lines shown on failure")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--broker-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--group", help=argparse.SUPPRESS)
    ap.add_argument("--playbooks", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_main(args.db, args.broker_port, args.port, args.group, args.playbooks)
        return
    period = 60.0 / args.rate if args.rate > 0 else 0.0
    n = args.alerts or (60 if args.quick else round(300 / period) if period else 0)
    if not 1 <= args.channels <= 20 or not 1 <= args.rate <= 600 or not 1 <= n <= 5000:
        sys.exit("--channels must be 1..20, --rate 1..600 (a minute) and --alerts 1..5000")
    work = Path(tempfile.mkdtemp(prefix="bench-response-"))
    db = args.db or f"sqlite:///{work / 'cloud.db'}"
    log = work / "cloud.log"
    try:
        with ExitStack() as stack:
            broker = MosquittoBroker("127.0.0.1", free_port(), work / "broker").start()
            stack.callback(broker.stop)
            receivers = [stack.enter_context(http_receiver()) for _ in range(args.channels)]
            site = Site(db)
            stack.callback(site.engine.dispose)
            playbooks = work / "playbooks.yaml"
            channels = write_playbooks(playbooks, receivers, site.user)
            url = stack.enter_context(cloud_process(db, broker.port, playbooks, log))
            used = json.loads((work / "settings.json").read_text())
            print(
                f"cloud at {url}, broker 127.0.0.1:{broker.port}, db {db.split('@')[-1]}; "
                f"{args.warmup} + {n} alerts, one every {period:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            token = httpx.post(
                f"{url}/api/auth/token",
                json={"username": site.user, "password": PASSWORD},
                timeout=30,
            ).json()["access_token"]
            stream = Stream(url, token)
            stream.start()
            stack.callback(stream.close)
            offset = time.time() - time.monotonic()
            cloud = psutil.Process(CLOUD[-1].pid)
            idle = cpu_pct(cloud, lambda: time.sleep(IDLE_S))
            sent: list[Sent] = []

            def run_load() -> None:
                sent.extend(load(site, broker.port, receivers, n, args.warmup, period, args.drain))

            cpu = cpu_pct(cloud, run_load)
            rows = rows_of(site, sent, offset)
            a = analyse(sent, rows, stream, receivers, channels)
            figures = report(a, args, used, idle, cpu)
    except BaseException:
        if log.exists():  # the cloud's side of what went wrong
            tail = log.read_text(errors="replace").splitlines()[-args.log_lines :]
            print("--- cloud.log (tail)", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["database"] = db.split(":")[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
