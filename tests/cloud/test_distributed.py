"""Distributed mode: two `microbrain cloud serve` processes on one PostgreSQL and one
Mosquitto share the ingest (the broker's shared subscription) and run the scheduler
side by side. One is SIGKILLed mid-stream: every message is still stored exactly once
(the gateway's outbox resends what the dead process never acknowledged, the ledger
refuses the second copy), each alert escalates exactly once while both run, and a
console's live stream on the survivor keeps going, showing changes either process made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.db import make_engine, session_factory
from cloud.db import models as m
from microbrain.broker.embedded import free_port
from microbrain.cli.up import demo_site
from microbrain.protocol import Event, GatewayPath, Reading, Severity
from tests.cloud.helpers import wait_for
from tests.edge.uplink.gateway_rig import make_rig
from tests.utils.services import MosquittoProcess, postgres_database

ROOT = Path(__file__).resolve().parents[2]
GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
# gw-xiyuan-1's sensors in the demo site and a condition of each: one alert each
SOURCES = {
    "b1-hydrant-top": "hydrant_pressure_low",
    "b2-hydrant-top": "hydrant_pressure_low",
    "b1-elevator-a": "elevator_fault",
    "b2-elevator-a": "elevator_fault",
    "b3-smoke-stair": "smoke_alarm",
}
PASSWORD = "distributed-test-admin"
READINGS = 600


def _serve(
    name: str, db: str, broker_port: int, site: Path, tmp: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MB_CLOUD_INGEST_CLIENT_ID": f"dist-{name}",
        "MB_CLOUD_ADMIN_PASSWORD": PASSWORD,
        "MB_CLOUD_EVIDENCE_DIR": str(tmp / f"evidence-{name}"),
        "MB_CLOUD_MODEL_KEY_FILE": str(tmp / "model-signing.key"),
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp / f"cloud-{name}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microbrain",
            "cloud",
            "serve",
            "--db",
            db,
            "--broker",
            f"mqtt://127.0.0.1:{broker_port}",
            "--site",
            str(site),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def _json(url: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _healthy(api: str) -> bool:
    try:
        return bool(_json(f"{api}/healthz")["ok"])
    except OSError:
        return False


class LiveStream:
    """A console's live stream (server-sent events) on one process, read in a thread."""

    def __init__(self, api: str, token: str) -> None:
        self.changes: list[dict] = []
        self._response = urllib.request.urlopen(
            f"{api}/api/stream/alerts?access_token={token}", timeout=60
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self._response:
            line = raw.decode().strip()
            if line.startswith("data: "):
                self.changes.append(json.loads(line[6:]))

    def actions(self, alert_id: int) -> list[str]:
        return [c["action"] for c in self.changes if c["alert_id"] == alert_id]

    def close(self) -> None:
        self._response.close()


def test_two_processes_one_killed_mid_stream(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    site = demo_site(ROOT / "configs" / "demo" / "site.yaml", tmp_path / "site.yaml")  # 15 s
    with postgres_database() as db:
        a, api_a = _serve("a", db, mosquitto.port, site, tmp_path)
        b, api_b = _serve("b", db, mosquitto.port, site, tmp_path)
        rig = None
        live = None
        engine = make_engine(db)
        factory = session_factory(engine)
        try:
            assert wait_for(lambda: _healthy(api_a) and _healthy(api_b), 120), (
                tmp_path / "cloud-a.log"
            ).read_text()[-3000:] + (tmp_path / "cloud-b.log").read_text()[-3000:]
            token = _json(f"{api_b}/api/auth/token", {"username": "admin", "password": PASSWORD})[
                "access_token"
            ]
            live = LiveStream(api_b, token)
            rig = make_rig(GW, tmp_path / "outbox.db", mosquitto.port, resend_after_s=3.0)
            rig.uplink.start()

            # five conditions raised while both processes run: five alerts, opened by
            # whichever process took each message, all shown on B's stream
            events = [
                rig.outbox.append(Event(kind=kind, source=s, severity=Severity.CRITICAL)).id
                for s, kind in SOURCES.items()
            ]

            def alerts() -> list[m.Alert]:
                with factory() as s:
                    return list(
                        s.scalars(select(m.Alert).where(m.Alert.gateway == GW.gateway)).all()
                    )

            assert wait_for(lambda: len(alerts()) == len(SOURCES), 60)
            ids = [a.id for a in alerts()]
            assert wait_for(lambda: all("opened" in live.actions(i) for i in ids), 30), live.changes

            # readings stream in; A dies a third of the way through
            readings: list[str] = []
            for n in range(READINGS):
                reading = Reading(
                    sensor="b1-hydrant-top",
                    kind="hydrant_pressure",
                    values={"pressure_mpa": 0.3 + n * 1e-5},
                )
                readings.append(rig.outbox.append(reading).id)
                if n == READINGS // 3:
                    a.send_signal(signal.SIGKILL)
                    a.wait(10)
                time.sleep(0.005)

            def stored(model: type[m.ReadingRow | m.EventRow], wanted: list[str]) -> int:
                with factory() as s:
                    return (
                        s.scalar(
                            select(func.count()).select_from(model).where(model.id.in_(wanted))
                        )
                        or 0
                    )

            assert wait_for(lambda: stored(m.ReadingRow, readings) == READINGS, 90), (
                f"{stored(m.ReadingRow, readings)} of {READINGS} readings stored"
            )
            assert wait_for(lambda: rig.outbox.depth == 0, 60), "the survivor never acked"
            with factory() as s:  # exactly once: no id twice
                distinct = s.scalar(
                    select(func.count(func.distinct(m.ReadingRow.id))).where(
                        m.ReadingRow.gateway == GW.gateway
                    )
                )
                total = s.scalar(
                    select(func.count())
                    .select_from(m.ReadingRow)
                    .where(m.ReadingRow.gateway == GW.gateway)
                )
            assert distinct == total == READINGS
            assert stored(m.EventRow, events) == len(SOURCES)

            # the building level's 15 s passed: each alert climbed once, not once a process
            assert wait_for(lambda: all(a.level != "building" for a in alerts()), 60)
            with factory() as s:
                climbs = s.execute(
                    select(m.AlertTransition.alert_id, func.count())
                    .where(
                        m.AlertTransition.alert_id.in_(ids),
                        m.AlertTransition.action == "escalated",
                    )
                    .group_by(m.AlertTransition.alert_id)
                ).all()
            levels = {a.id: a.level for a in alerts()}
            for alert_id, count in climbs:
                # one escalation per level climbed, however many schedulers ran
                assert count == ["building", "compound", "community"].index(levels[alert_id])

            # the survivor's stream goes on: an acknowledgement made now is on it
            _json(f"{api_b}/api/alerts/{ids[0]}/acknowledge", {"note": "on it"}, token)
            assert wait_for(lambda: "acknowledged" in live.actions(ids[0]), 30), live.changes
            assert len(alerts()) == len(SOURCES)  # nothing opened twice meanwhile
        finally:
            if live is not None:
                live.close()
            if rig is not None:
                rig.close()
            for proc in (a, b):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            engine.dispose()


pytestmark = pytest.mark.timeout(400)
