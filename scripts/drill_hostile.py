"""The hostile drill: replay what a hostile tester did to the cloud (issue 9), on loopback.

    python scripts/drill_hostile.py --quick     # about a minute

It starts its own Mosquitto (the generated config of configs/demo/site.yaml: per-gateway
passwords, made up for this run, and access rules) and a cloud (``microbrain cloud
serve`` on a temporary SQLite database, the site loaded) as child processes, logs in as
the site's gateways and replays, each as one small function:

  outbox_reset         a gateway's outbox starts over (seq back at 1, a new epoch): the
                       new items must be stored, not taken for duplicates
  idless_repeats       the same reading without an id, sent three times: stored once
  poison               seq 2^63, a time at the calendar's edge (0001-01-01T00:00:00+08:00)
                       and an int value 2^63 among valid readings: refused, the rest stored
  junk_flood           200 distinct 250 KB junk messages from one gateway: what is kept
                       stays under the dead-letter cap; the database barely grows
  invalid_utf8_seq     a payload that is not UTF-8 but carries a seq: acknowledged
  ghost_device         an event from a camera the site does not declare: no alert
  share_subscription   a gateway subscribes to $share/cloud/...: refused, steals nothing
  client_id_takeover   one gateway's password with another's client id: refused, the
                       victim stays connected
  foreign_recheck      another gateway answers a work order's recheck: it does not count
                       (the right gateway's answer does)

and measures the ingest slowdown: the time for --readings valid readings (3,000) with
1 % poison ÷ without, medians over --repeats runs of each, alternated in the same run
(goal ≤ 1.2).

Each case prints one line (stderr) saying what it expected and what happened; the drill
reports what the code does, it does not stop at a failed case. The last line printed
(stdout) is one JSON object: sent, stored, dead_lettered, lost_valid, duplicated,
server_errors, ingest_slowdown_with_poison, and per case what was seen. Valid items are
counted in the database at the end: lost_valid are valid items with no row, duplicated
the rows beyond the first of one item. server_errors: API answers of 5xx plus tracebacks
in the cloud's log.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.broker.embedded import free_port
from microbrain.broker.mosquitto_conf import gateway_client_id, write_broker_config
from microbrain.protocol import Event, GatewayPath, Reading
from microbrain.site import load_site
from tests.utils.services import private_mosquitto

SITE = ROOT / "configs" / "demo" / "site.yaml"
X1 = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
X2 = GatewayPath("xiyuan", "xiyuan-2", "gw-xiyuan-2")
DG = GatewayPath("dongcheng", "dongcheng-garden", "gw-dongcheng-garden")
PASSWORD_ENV = {
    X1.gateway: "MB_GW_XIYUAN_1_PASSWORD",
    X2.gateway: "MB_GW_XIYUAN_2_PASSWORD",
    DG.gateway: "MB_GW_DONGCHENG_GARDEN_PASSWORD",
    "gw-dongcheng-plaza": "MB_GW_DONGCHENG_PLAZA_PASSWORD",
    "cloud": "MB_CLOUD_PASSWORD",
}
EPOCHS = "epoch" in Reading.model_fields  # outbox epochs (issue 9 item 1), where the code has them
POISON = ({"seq": 2**63}, {"ts": "0001-01-01T00:00:00+08:00"}, {"values": {"pressure_mpa": 2**63}})


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def wait_until(pred: Callable[[], Any], timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return bool(pred())


# --- what the drill sent, and what it expects to find ---------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One valid item: found in the database by where it came from and its time."""

    table: str  # readings | events
    gateway: str
    device: str
    ts: datetime  # UTC, naive


@dataclass
class Tally:
    sent: int = 0
    valid: list[Key] = field(default_factory=list)
    api_5xx: int = 0
    duplicated: int = 0  # rows beyond the first of items not in ``valid`` (id-less repeats)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=2))

    def next_ts(self) -> datetime:
        # every valid item its own time, a millisecond apart, in the recent past
        self.clock += timedelta(milliseconds=1)
        return self.clock


def reading(
    tally: Tally,
    gw: GatewayPath,
    sensor: str,
    seq: int,
    epoch: str | None,
    *,
    valid: bool = True,
    override: dict[str, Any] | None = None,
) -> bytes:
    ts = tally.next_ts()
    item = Reading(
        seq=seq, sensor=sensor, kind="hydrant_pressure", ts=ts, values={"pressure_mpa": 0.3}
    )
    body = json.loads(item.to_json())
    if EPOCHS and epoch:
        body["epoch"] = epoch
    body.update(override or {})
    if valid:
        tally.valid.append(Key("readings", gw.gateway, sensor, ts.replace(tzinfo=None)))
    return json.dumps(body).encode()


def event(
    tally: Tally,
    gw: GatewayPath,
    source: str,
    zone: str,
    seq: int,
    epoch: str | None,
    *,
    valid: bool = True,
    kind: str = "illegal_parking",
    building: str | None = "b1",
) -> bytes:
    ts = tally.next_ts()
    body = json.loads(
        Event(seq=seq, kind=kind, source=source, zone=zone, building=building, ts=ts).to_json()
    )
    if EPOCHS and epoch:
        body["epoch"] = epoch
    if valid:
        tally.valid.append(Key("events", gw.gateway, source, ts.replace(tzinfo=None)))
    return json.dumps(body).encode()


def new_epoch() -> str:
    return secrets.token_hex(8)


# --- the rig: broker, cloud, gateways -----------------------------------------------


class Client:
    """An MQTT 5 login to the drill's broker; keeps what it receives."""

    def __init__(self, port: int, user: str, password: str, client_id: str) -> None:
        self.connack: Any = None
        self.suback: Any = None
        self.disconnects: list[Any] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(60, 120)  # a refused login must not retry during the drill
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: setattr(self, "suback", rcs)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(rc)
        self.client.on_message = lambda c, u, msg: self.messages.append(msg)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, 10)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        self.suback = None
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: self.suback is not None, 5)

    def publish(self, tally: Tally, items: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in items]
        tally.sent += len(items)
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rig:
    work: Path
    port: int
    api: str
    db: Path
    passwords: dict[str, str]
    token: str
    log: Path
    gateways: dict[str, Client]

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(query, args).fetchall()

    def one(self, query: str, *args: Any) -> Any:
        rows = self.sql(query, *args)
        return rows[0][0] if rows else None

    def call(self, tally: Tally, method: str, path: str, **kw: Any) -> httpx.Response:
        r = httpx.request(
            method,
            f"{self.api}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kw,
        )
        if r.status_code >= 500:
            tally.api_5xx += 1
        return r

    def gw(self, path: GatewayPath) -> Client:
        return self.gateways[path.gateway]


def start_rig(work: Path, stack: list[Callable[[], None]]) -> Rig:
    env = {var: secrets.token_urlsafe(12) for var in PASSWORD_ENV.values()}
    port = free_port()
    files = write_broker_config(
        load_site(SITE),
        work / "broker",
        env=env,
        port=port,
        bind="127.0.0.1",
        run_as="root" if os.geteuid() == 0 else None,
    )
    broker_cm = private_mosquitto(work / "broker", conf=files.conf, port=files.port)
    broker_cm.__enter__()

    def stop_broker() -> None:
        broker_cm.__exit__(None, None, None)

    stack.append(stop_broker)
    db = work / "cloud.db"
    api_port = free_port()
    admin = secrets.token_urlsafe(12)
    log = work / "cloud.log"
    cloud_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT),
        "MB_CLOUD_ENVIRONMENT": "test",
        "MB_CLOUD_ADMIN_PASSWORD": admin,
        "MB_CLOUD_BROKER_USERNAME": "cloud",
        "MB_CLOUD_BROKER_PASSWORD": env["MB_CLOUD_PASSWORD"],
        "MB_CLOUD_EVIDENCE_DIR": str(work / "evidence"),
        "MB_CLOUD_INGEST_CLIENT_ID": "mb-cloud-drill",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "microbrain",
                "cloud",
                "serve",
                "--db",
                f"sqlite:///{db}",
                "--broker",
                f"mqtt://127.0.0.1:{port}",
                "--site",
                str(SITE),
                "--port",
                str(api_port),
            ],
            cwd=work,
            env=cloud_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def stop_cloud() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    stack.append(stop_cloud)
    api = f"http://127.0.0.1:{api_port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the cloud exited with {proc.returncode}: "
                + log.read_text(errors="replace")[-2000:]
            )
        try:
            return bool(httpx.get(f"{api}/healthz", timeout=2).json().get("ingest_subscribed"))
        except (httpx.HTTPError, ValueError):
            return False

    if not wait_until(ready, 90, every=0.2):
        raise RuntimeError("the cloud did not come up: " + log.read_text(errors="replace")[-2000:])
    token = httpx.post(
        f"{api}/api/auth/token", json={"username": "admin", "password": admin}, timeout=30
    ).json()["access_token"]
    passwords = {user: env[var] for user, var in PASSWORD_ENV.items()}
    gateways = {}
    for path in (X1, X2, DG):
        c = Client(port, path.gateway, passwords[path.gateway], gateway_client_id(path))
        if not c.accepted:
            raise RuntimeError(f"the broker refused gateway {path.gateway}: {c.connack}")
        c.subscribe(f"{path.prefix}/cmd/#")
        gateways[path.gateway] = c
        stack.append(c.close)
    return Rig(work, port, api, db, passwords, token, log, gateways)


# --- the cases ----------------------------------------------------------------------


def stored_count(rig: Rig, keys: list[Key]) -> int:
    """How many of ``keys`` have at least one row."""
    found = _rows(rig, keys)
    return sum(1 for k in keys if found[k])


def _rows(rig: Rig, keys: list[Key]) -> Counter[Key]:
    tables = {k.table for k in keys}
    have: Counter[Key] = Counter()
    for table in tables:
        device = "sensor" if table == "readings" else "source"
        gateways = sorted({k.gateway for k in keys if k.table == table})
        marks = ",".join("?" * len(gateways))
        for gateway, dev, ts in rig.sql(
            f"SELECT gateway, {device}, ts FROM {table} WHERE gateway IN ({marks})", *gateways
        ):
            have[Key(table, gateway, dev, datetime.fromisoformat(ts).replace(tzinfo=None))] += 1
    return have


def outbox_reset(rig: Rig, tally: Tally, n: int) -> dict[str, Any]:
    before = len(tally.valid)
    first, second = new_epoch(), new_epoch()
    wire = [
        (X1.topic("reading"), reading(tally, X1, "b1-hydrant-top", s, first))
        for s in range(1, n + 1)
    ]
    rig.gw(X1).publish(tally, wire)
    keys_first = tally.valid[before:]
    wait_until(lambda: stored_count(rig, keys_first) == n, 30, every=0.1)
    mark = len(tally.valid)
    # the outbox file is made anew: seq starts at 1 again, under a new epoch
    wire = [
        (X1.topic("reading"), reading(tally, X1, "b1-hydrant-top", s, second))
        for s in range(1, n + 1)
    ]
    rig.gw(X1).publish(tally, wire)
    keys_second = tally.valid[mark:]
    wait_until(lambda: stored_count(rig, keys_second) == n, 30, every=0.1)
    got = stored_count(rig, keys_second)
    return {
        "ok": got == n,
        "sent_after_reset": n,
        "stored_after_reset": got,
        "epochs_in_protocol": EPOCHS,
    }


def idless_repeats(rig: Rig, tally: Tally) -> dict[str, Any]:
    """Stored once (a deterministic id) or refused (dead-lettered, naming the id): either
    is a design; three rows is the bug."""
    since = rig.one("SELECT COALESCE(MAX(pk), 0) FROM dead_letters")
    body = json.loads(reading(tally, X2, "x2-b1-water", 0, None, valid=False))
    key = Key(
        "readings",
        X2.gateway,
        "x2-b1-water",
        datetime.fromisoformat(body["ts"]).astimezone(UTC).replace(tzinfo=None),
    )
    body.pop("id")
    body.pop("seq", None)
    raw = json.dumps(body).encode()
    rig.gw(X2).publish(tally, [(X2.topic("reading"), raw)] * 3)

    def refused() -> int:
        return int(
            rig.one(
                "SELECT COALESCE(SUM(count), 0) FROM dead_letters WHERE pk > ? AND gateway = ?",
                since,
                X2.gateway,
            )
        )

    wait_until(lambda: _rows(rig, [key])[key] + refused() >= 3 or _rows(rig, [key])[key] > 1, 10)
    time.sleep(1.0)  # give the repeats the time to arrive (if they would be stored, they are now)
    rows = _rows(rig, [key])[key]
    tally.duplicated += max(0, rows - 1)
    return {
        "ok": rows <= 1 and rows + min(refused(), 3) >= 1,
        "sent": 3,
        "rows": rows,
        "refused": refused(),
        "design": "stored once" if rows == 1 else "refused",
    }


def _poison_wire(
    tally: Tally, n: int, every: int, epoch: str, seq0: int = 1
) -> tuple[list[tuple[str, bytes]], int]:
    wire, poison = [], 0
    seq = seq0
    for i in range(n):
        wire.append((X1.topic("reading"), reading(tally, X1, "b2-hydrant-top", seq, epoch)))
        seq += 1
        if every and i % every == every - 1:
            extra = POISON[poison % len(POISON)]
            wire.append(
                (
                    X1.topic("reading"),
                    reading(tally, X1, "b2-hydrant-top", seq, epoch, valid=False, override=extra),
                )
            )
            seq += 1
            poison += 1
    return wire, poison


def poison(rig: Rig, tally: Tally) -> dict[str, Any]:
    since = rig.one("SELECT COALESCE(MAX(pk), 0) FROM dead_letters")
    mark = len(tally.valid)
    wire, bad = _poison_wire(tally, 90, 30, new_epoch())
    rig.gw(X1).publish(tally, wire)
    keys = tally.valid[mark:]
    wait_until(lambda: stored_count(rig, keys) == len(keys), 30, every=0.1)
    wait_until(
        lambda: (
            rig.one(
                "SELECT COUNT(*) FROM dead_letters WHERE pk > ? AND gateway = ?", since, X1.gateway
            )
            >= bad
        ),
        10,
    )
    fields = sorted(
        f or "?"
        for (f,) in rig.sql(
            "SELECT field FROM dead_letters WHERE pk > ? AND gateway = ?", since, X1.gateway
        )
    )
    got = stored_count(rig, keys)
    return {
        "ok": got == len(keys) and len(fields) == bad,
        "valid": len(keys),
        "stored": got,
        "poison": bad,
        "dead_lettered_fields": fields,
    }


def junk_flood(rig: Rig, tally: Tally, n: int) -> dict[str, Any]:
    def size() -> int:
        return sum(p.stat().st_size for p in (rig.db, Path(f"{rig.db}-wal")) if p.exists())

    before = size()
    rng = random.Random(9)
    started = time.monotonic()
    rig.gw(DG).publish(tally, [(DG.topic("reading"), rng.randbytes(250_000)) for _ in range(n)])
    seconds = time.monotonic() - started

    def settled() -> bool:
        kept = rig.one(
            "SELECT COALESCE(SUM(count), 0) FROM dead_letters WHERE gateway = ?", DG.gateway
        )
        dropped = rig.one("SELECT dead_letters_dropped FROM gateways WHERE id = ?", DG.gateway) or 0
        return bool(kept + dropped >= n)

    has_cap = bool(
        rig.sql("SELECT 1 FROM pragma_table_info('gateways') WHERE name = 'dead_letters_dropped'")
    )
    if has_cap:
        wait_until(settled, 60, every=0.2)
    else:
        wait_until(
            lambda: rig.one("SELECT COUNT(*) FROM dead_letters WHERE gateway = ?", DG.gateway) >= n,
            60,
            every=0.2,
        )
    rows, kept_bytes = rig.sql(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM dead_letters WHERE gateway = ?",
        DG.gateway,
    )[0]
    dropped = (
        rig.one("SELECT dead_letters_dropped FROM gateways WHERE id = ?", DG.gateway)
        if has_cap
        else 0
    )
    alert = rig.one(
        "SELECT COUNT(*) FROM alerts WHERE gateway = ? AND kind = 'gateway_junk'", DG.gateway
    )
    grown = size() - before
    return {
        "ok": grown < 5 * 1024 * 1024 and rows + (dropped or 0) == n,
        "sent": n,
        "sent_mb": round(n * 250_000 / 1e6, 1),
        "publish_s": round(seconds, 1),
        "rows_kept": rows,
        "payload_bytes_kept": kept_bytes,
        "dropped_counted": dropped,
        "junk_alerts": alert,
        "db_growth_mb": round(grown / 1e6, 2),
    }


def invalid_utf8_seq(rig: Rig, tally: Tally) -> dict[str, Any]:
    epoch = new_epoch()
    seq = 777
    raw = (
        b'{"type": "reading", "seq": %d, %s"sensor": "x2-b1-water", "kind": "water_level", '
        b'"values": {"level_m": 1}, "note": "\xff\xfe broken"}'
        % (seq, f'"epoch": "{epoch}", '.encode() if EPOCHS else b"")
    )
    x2 = rig.gw(X2)
    seen = len(x2.messages)
    x2.publish(tally, [(X2.topic("reading"), raw)])

    def acked() -> bool:
        for msg in x2.messages[seen:]:
            if msg.topic.endswith("/cmd/ack"):
                ranges = json.loads(msg.payload).get("ranges", [])
                if any(a <= seq <= b for a, b in ranges):
                    return True
        return False

    ok = wait_until(acked, 10)
    kept = rig.one(
        "SELECT COUNT(*) FROM dead_letters WHERE gateway = ? AND topic = ?",
        X2.gateway,
        X2.topic("reading"),
    )
    return {"ok": ok, "acknowledged": ok, "dead_letters_on_topic": kept}


def ghost_device(rig: Rig, tally: Tally) -> dict[str, Any]:
    since = rig.one("SELECT COALESCE(MAX(pk), 0) FROM dead_letters")
    raw = event(tally, X1, "ghost-cam", "fire-lane", 0, None, valid=False, kind="crowd_gathering")
    rig.gw(X1).publish(tally, [(X1.topic("event"), raw)])
    wait_until(
        lambda: (
            rig.one("SELECT COUNT(*) FROM dead_letters WHERE pk > ?", since)
            or rig.one("SELECT COUNT(*) FROM alerts WHERE source = 'ghost-cam'")
        ),
        10,
    )
    alerts = rig.one("SELECT COUNT(*) FROM alerts WHERE source = 'ghost-cam'")
    reasons = [r for (r,) in rig.sql("SELECT reason FROM dead_letters WHERE pk > ?", since)]
    return {
        "ok": alerts == 0 and bool(reasons),
        "alerts_opened": alerts,
        "dead_letter": reasons[0][:120] if reasons else None,
    }


def share_subscription(rig: Rig, tally: Tally, n: int) -> dict[str, Any]:
    thief = rig.gw(X2)
    thief.subscribe("$share/cloud/mb/v1/+/+/+/event")
    code = thief.suback[0] if thief.suback else None
    seen = len(thief.messages)
    mark = len(tally.valid)
    epoch = new_epoch()
    wire = [
        (X1.topic("event"), event(tally, X1, "cam-fire-lane", "fire-lane", s, epoch))
        for s in range(1, n + 1)
    ]
    rig.gw(X1).publish(tally, wire)
    keys = tally.valid[mark:]
    wait_until(lambda: stored_count(rig, keys) == n, 20, every=0.1)
    time.sleep(0.5)
    stolen = sum(1 for msg in thief.messages[seen:] if msg.topic.endswith("/event"))
    thief.client.unsubscribe("$share/cloud/mb/v1/+/+/+/event")
    got = stored_count(rig, keys)
    return {
        "ok": (code is not None and code.is_failure) and stolen == 0 and got == n,
        "suback": str(code),
        "events_sent": n,
        "stolen": stolen,
        "stored": got,
    }


def client_id_takeover(rig: Rig, tally: Tally) -> dict[str, Any]:
    victim = rig.gw(X1)
    drops = len(victim.disconnects)
    thief = Client(rig.port, X2.gateway, rig.passwords[X2.gateway], gateway_client_id(X1))
    time.sleep(1.0)
    refused = not thief.accepted
    thief.close()
    victim_dropped = len(victim.disconnects) > drops
    if victim_dropped:  # reconnects by itself; let it come back before the next case
        wait_until(victim.client.is_connected, 30)
    mark = len(tally.valid)
    epoch = new_epoch()
    victim.publish(
        tally,
        [(X1.topic("reading"), reading(tally, X1, "b1-elevator-a", s, epoch)) for s in range(1, 6)],
    )
    keys = tally.valid[mark:]
    wait_until(lambda: stored_count(rig, keys) == 5, 15, every=0.1)
    return {
        "ok": refused and not victim_dropped,
        "thief_connack": str(thief.connack),
        "victim_disconnected": victim_dropped,
        "victim_stored_after": stored_count(rig, keys),
    }


def foreign_recheck(rig: Rig, tally: Tally) -> dict[str, Any]:
    x1, x2 = rig.gw(X1), rig.gw(X2)
    x1.publish(
        tally,
        [
            (
                X1.topic("event"),
                event(tally, X1, "cam-entrance", "entrance", 0, None, kind="ebike_charging"),
            )
        ],
    )
    wait_until(
        lambda: rig.one("SELECT id FROM alerts WHERE source = 'cam-entrance' AND active"), 10
    )
    alert = rig.one("SELECT id FROM alerts WHERE source = 'cam-entrance' AND active")
    if alert is None:
        return {"ok": False, "why": "the event opened no alert"}
    wo = rig.call(tally, "POST", f"/api/alerts/{alert}/dispatch", json={}).json().get("id")
    for action in ("accept", "start", "done"):
        rig.call(tally, "POST", f"/api/work-orders/{wo}/{action}", json={})
    seen = len(x1.messages)
    r = rig.call(tally, "POST", f"/api/work-orders/{wo}/verify", json={})

    def recheck() -> mqtt.MQTTMessage | None:
        return next((m for m in x1.messages[seen:] if m.topic.endswith("/cmd/recheck")), None)

    if r.status_code != 200 or not wait_until(recheck, 10):
        return {"ok": False, "why": f"no recheck sent (verify answered {r.status_code})"}
    command = json.loads(recheck().payload)["id"]  # type: ignore[union-attr]

    def reply(gw: GatewayPath) -> bytes:
        return json.dumps(
            {
                "type": "reply",
                "name": "recheck",
                "command_id": command,
                "ok": True,
                "detail": {"present": False},
            }
        ).encode()

    def status() -> str:
        return str(rig.one("SELECT status FROM work_orders WHERE id = ?", wo))

    x2.publish(tally, [(X2.topic("reply", "recheck"), reply(X2))])  # on its own reply topic
    time.sleep(1.5)
    after_foreign = status()
    x1.publish(tally, [(X1.topic("reply", "recheck"), reply(X1))])
    wait_until(lambda: status() != after_foreign, 10)
    after_own = status()
    return {
        "ok": after_foreign == "verifying" and after_own == "verified",
        "after_foreign_reply": after_foreign,
        "after_own_reply": after_own,
    }


def slowdown(rig: Rig, tally: Tally, n: int, repeats: int) -> dict[str, Any]:
    """Seconds from the first publish until all ``n`` valid readings are stored, with 1 %
    poison and without, runs alternated so that both see the same machine."""
    times: dict[str, list[float]] = {"clean": [], "poison": []}
    for run in range(repeats * 2):
        kind = "clean" if run % 2 == 0 else "poison"
        mark = len(tally.valid)
        wire, _ = _poison_wire(tally, n, 100 if kind == "poison" else 0, new_epoch())
        keys = tally.valid[mark:]
        lo, hi = (k.ts.isoformat(sep=" ", timespec="microseconds") for k in (keys[0], keys[-1]))
        started = time.perf_counter()
        rig.gw(X1).publish(tally, wire)

        def all_stored(lo: str = lo, hi: str = hi) -> bool:
            return bool(
                rig.one(
                    "SELECT COUNT(*) FROM readings WHERE gateway = ? AND sensor = ? "
                    "AND ts BETWEEN ? AND ?",
                    X1.gateway,
                    "b2-hydrant-top",
                    lo,
                    hi,
                )
                >= n
            )

        done = wait_until(all_stored, 300, every=0.02)
        times[kind].append(time.perf_counter() - started if done else float("inf"))
        say(f"  {kind:6s} run {run // 2 + 1}: {times[kind][-1]:.2f} s for {n} readings")
    clean, dirty = statistics.median(times["clean"]), statistics.median(times["poison"])
    ratio = round(dirty / clean, 3) if clean and clean != float("inf") else None
    return {
        "ok": ratio is not None and ratio <= 1.2,
        "readings": n,
        "poison_per_run": n // 100,
        "clean_s": [round(t, 2) for t in times["clean"]],
        "poison_s": [round(t, 2) for t in times["poison"]],
        "ratio": ratio,
    }


# --- the whole drill ------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mb-drill-hostile-"))
    stack: list[Callable[[], None]] = []
    tally = Tally()
    try:
        rig = start_rig(work, stack)
        say(f"broker on 127.0.0.1:{rig.port}, cloud at {rig.api}, database {rig.db}")
        cases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("outbox_reset", lambda: outbox_reset(rig, tally, args.reset_items)),
            ("idless_repeats", lambda: idless_repeats(rig, tally)),
            ("poison", lambda: poison(rig, tally)),
            ("junk_flood", lambda: junk_flood(rig, tally, args.junk)),
            ("invalid_utf8_seq", lambda: invalid_utf8_seq(rig, tally)),
            ("ghost_device", lambda: ghost_device(rig, tally)),
            ("share_subscription", lambda: share_subscription(rig, tally, 20)),
            ("client_id_takeover", lambda: client_id_takeover(rig, tally)),
            ("foreign_recheck", lambda: foreign_recheck(rig, tally)),
            ("slowdown", lambda: slowdown(rig, tally, args.readings, args.repeats)),
        ]
        for name, case in cases:
            try:
                result = case()
            except Exception as err:  # noqa: BLE001 - a drill reports, it does not stop
                result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            tally.cases[name] = result
            say(
                f"{'PASS' if result.get('ok') else 'FAIL'} {name}: "
                + json.dumps({k: v for k, v in result.items() if k != "ok"})
            )
        time.sleep(0.5)
        found = _rows(rig, tally.valid)
        dead = rig.one("SELECT COALESCE(SUM(count), 0) FROM dead_letters") or 0
        has_cap = bool(
            rig.sql(
                "SELECT 1 FROM pragma_table_info('gateways') WHERE name = 'dead_letters_dropped'"
            )
        )
        dropped = (
            rig.one("SELECT COALESCE(SUM(dead_letters_dropped), 0) FROM gateways") if has_cap else 0
        )
        tracebacks = rig.log.read_text(errors="replace").count("Traceback")
        figures: dict[str, Any] = {
            "sent": tally.sent,
            "stored": sum(found[k] for k in tally.valid),
            "dead_lettered": int(dead) + int(dropped or 0),
            "lost_valid": sum(1 for k in tally.valid if not found[k]),
            "duplicated": sum(max(0, found[k] - 1) for k in tally.valid) + tally.duplicated,
            "server_errors": tally.api_5xx + tracebacks,
            "ingest_slowdown_with_poison": tally.cases.get("slowdown", {}).get("ratio"),
            "valid_sent": len(tally.valid),
            "dead_letters_dropped_over_cap": int(dropped or 0),
            "cases_passed": sorted(n for n, r in tally.cases.items() if r.get("ok")),
            "cases_failed": sorted(n for n, r in tally.cases.items() if not r.get("ok")),
            "cases": tally.cases,
        }
        return figures
    finally:
        for undo in reversed(stack):
            try:
                undo()
            except Exception as err:  # noqa: BLE001 - clean up the rest regardless
                say(f"cleanup: {type(err).__name__}: {err}")
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: 5 runs of each slowdown variant, smaller cases",
    )
    parser.add_argument(
        "--readings",
        type=int,
        default=3000,
        help="valid readings per slowdown run (default 3000; 1 %% poison added)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="slowdown runs of each variant (default 9, --quick 5)",
    )
    parser.add_argument("--junk", type=int, default=200, help="250 KB junk messages (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, database)")
    args = parser.parse_args()
    args.repeats = args.repeats or (5 if args.quick else 9)
    args.reset_items = 50 if args.quick else 500
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
