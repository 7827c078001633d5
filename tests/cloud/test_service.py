"""The whole service (API + ingest + scheduler) under uvicorn, against the real broker:
an event published by a gateway shows up on the live stream; the CLI starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from cloud.app import CloudService
from cloud.db import transaction
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.broker.embedded import free_port
from tests.cloud.helpers import (
    DEVICES,
    event,
    mqtt_client,
    publish_all,
    topic,
    unique_gateway,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


def _serve(service: CloudService, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(service.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    return server, thread


def test_published_event_reaches_the_live_stream(broker, cloud_url):
    host, bport = broker
    settings = Settings(
        database_url=cloud_url,
        broker_url=f"mqtt://{host}:{bport}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
        admin_password=SecretStr(f"pw-{uuid.uuid4().hex}"),
    )
    service = CloudService(settings)
    port = free_port()
    server, thread = _serve(service, port)
    gw = unique_gateway()
    try:
        with transaction(service.factory) as s:
            register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        base = f"http://127.0.0.1:{port}"
        # the first admin exists only on a fresh database; otherwise make our own user
        from cloud import auth

        name = f"duty-{uuid.uuid4().hex[:6]}"
        with transaction(service.factory) as s:
            auth.create_user(
                s, name, "a long password", "duty", now=service.clock(), community=gw.community
            )
        token = httpx.post(
            f"{base}/api/auth/token", json={"username": name, "password": "a long password"}
        ).json()["access_token"]
        seen: list[dict] = []
        streaming = threading.Event()

        def listen() -> None:
            with httpx.stream(
                "GET", f"{base}/api/stream/alerts", params={"access_token": token}, timeout=30
            ) as r:
                for line in r.iter_lines():
                    streaming.set()  # the first line (": connected") comes after the start point
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
                        if len(seen) >= 2:
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert streaming.wait(10)
        wait_for(lambda: httpx.get(f"{base}/healthz").json().get("ingest_subscribed"), timeout=20)
        with mqtt_client(host, bport) as pub:
            publish_all(pub, [topic(gw, event(1))])
        wait_for(lambda: seen, timeout=10)
        assert (seen[0]["action"], seen[0]["status"], seen[0]["compound"]) == (
            "opened",
            "open",
            gw.compound,
        )
        alert_id = seen[0]["alert_id"]
        r = httpx.post(
            f"{base}/api/alerts/{alert_id}/acknowledge",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        listener.join(10)
        assert seen[1]["action"] == "acknowledged"
        assert httpx.get(f"{base}/healthz").json() == {"ok": True, "ingest_subscribed": True}
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/api/stream/alerts").status_code == 401
    finally:
        server.should_exit = True
        thread.join(20)


def test_service_starts_without_the_broker_and_subscribes_once_it_is_up(cloud_url, tmp_path):
    from tests.utils.services import private_mosquitto

    bport = free_port()  # nothing listens here yet
    settings = Settings(
        database_url=cloud_url,
        broker_url=f"mqtt://127.0.0.1:{bport}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
        admin_password=SecretStr(f"pw-{uuid.uuid4().hex}"),
    )
    service = CloudService(settings)
    port = free_port()
    server, thread = _serve(service, port)
    try:
        health = f"http://127.0.0.1:{port}/healthz"
        assert httpx.get(health).json() == {"ok": True, "ingest_subscribed": False}
        with private_mosquitto(tmp_path / "late-broker", port=bport):
            wait_for(lambda: _subscribed(health), timeout=30, every=0.2)
    finally:
        server.should_exit = True
        thread.join(20)


def test_cli_serve_starts_and_answers(broker, sqlite_url, demo_site_path):
    host, bport = broker
    port = free_port()
    env = {
        **os.environ,
        "MB_CLOUD_INGEST_GROUP": f"t{uuid.uuid4().hex[:10]}",
        "MB_CLOUD_SESSION_EXPIRY_S": "0",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from microbrain.cli import main; main()",
            "cloud",
            "serve",
            "--db",
            sqlite_url,
            "--broker",
            f"mqtt://{host}:{bport}",
            "--site",
            str(demo_site_path),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=30, every=0.2)
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/token",
            json={"username": "admin", "password": "changethis"},
        ).json()["access_token"]
        tree = httpx.get(
            f"http://127.0.0.1:{port}/api/site", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert {c["id"] for c in tree["communities"]} == {"xiyuan", "dongcheng"}
    finally:
        proc.terminate()
        proc.wait(20)


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _subscribed(url: str) -> bool:
    try:
        return bool(httpx.get(url, timeout=1).json().get("ingest_subscribed"))
    except (httpx.HTTPError, ValueError):
        return False


def test_cli_refuses_bad_settings():
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from microbrain.cli import main; main()",
            "cloud",
            "serve",
            "--broker",
            "http://x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "mqtt://host:1883" in r.stderr


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_processes_start_together_and_share_the_ingest(broker, tmp_path, store, demo_site_path):
    from contextlib import ExitStack

    from sqlalchemy import func, select

    from cloud.db import make_engine, session_factory
    from cloud.db import models as m
    from tests.utils.services import postgres_database

    host, bport = broker
    with ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'shared.db'}"
            if store == "sqlite"
            else stack.enter_context(postgres_database())
        )
        env = {**os.environ, "MB_CLOUD_INGEST_GROUP": f"t{uuid.uuid4().hex[:10]}"}
        ports = [free_port(), free_port()]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from microbrain.cli import main; main()",
                    "cloud",
                    "serve",
                    "--db",
                    url,
                    "--broker",
                    f"mqtt://{host}:{bport}",
                    "--site",
                    str(demo_site_path),
                    "--port",
                    str(p),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for p in ports
        ]
        for p in procs:
            stack.callback(p.wait, 20)
            stack.callback(p.terminate)
        for port in ports:  # both migrated/started on an empty database at once, and subscribed
            wait_for(
                partial(_subscribed, f"http://127.0.0.1:{port}/healthz"), timeout=60, every=0.2
            )
        engine = make_engine(url)
        stack.callback(engine.dispose)
        factory = session_factory(engine)
        gw = unique_gateway()
        with transaction(factory) as s:
            register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        with mqtt_client(host, bport) as pub:
            publish_all(pub, [topic(gw, event(i, zone=f"z{i % 4}")) for i in range(1, 401)])

        def stored() -> int:
            with factory() as s:
                return s.scalars(
                    select(func.count())
                    .select_from(m.EventRow)
                    .where(m.EventRow.gateway == gw.gateway)
                ).one()

        wait_for(lambda: stored() == 400, timeout=30)
        time.sleep(0.5)
        with factory() as s:
            counts = sorted(s.scalars(select(m.Alert.count).where(m.Alert.gateway == gw.gateway)))
        assert stored() == 400 and counts == [100, 100, 100, 100]
        # both processes are alive and took a share (neither lost a race loading the site)
        assert [p.poll() for p in procs] == [None, None]
        assert all(_stored_metric(f"http://127.0.0.1:{p}/metrics") > 0 for p in ports)


def _stored_metric(url: str) -> float:
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith("mb_ingest_messages_total{") and 'outcome="stored"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
