"""`broker config --cloud-db`: the broker trusts exactly the passwords the cloud manages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud import auth
from cloud.clock import system_clock
from cloud.db import make_engine, session_factory, transaction
from cloud.site_sync import sync_site
from microbrain.broker.embedded import free_port
from microbrain.site import load_site
from tests.utils.services import private_mosquitto

ROOT = Path(__file__).resolve().parents[2]


def _connects(port: int, username: str, password: str, client_id: str = "") -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    try:
        return client.connect(
            "127.0.0.1", port, keepalive=5
        ) == mqtt.MQTT_ERR_SUCCESS and _wait_connack(client)
    finally:
        client.disconnect()


def _wait_connack(client: mqtt.Client) -> bool:
    result: list[bool] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(not rc.is_failure)
    for _ in range(50):
        client.loop(0.1)
        if result:
            return result[0]
    return False


def test_broker_config_from_the_cloud_database(
    sqlite_cloud_url: str, demo_site_path: Path, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_cloud_url)
    factory = session_factory(engine)
    with transaction(factory) as s:
        sync_site(s, load_site(demo_site_path))
        auth.set_gateway_password(s, "gw-xiyuan-1", "managed-in-the-cloud", now=system_clock())
    engine.dispose()

    port = free_port()
    out = tmp_path / "broker"
    env = {**os.environ, "MB_CLOUD_PASSWORD": "cloud-secret"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "microbrain",
            "broker",
            "config",
            "--site",
            str(demo_site_path),
            "--out",
            str(out),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--user",
            "root",
            "--cloud-db",
            sqlite_cloud_url,
        ],
        env=env,
        check=False,  # the exit status is asserted below
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    accounts = (out / "dynamic-security.json").read_text()
    assert "managed-in-the-cloud" not in accounts
    # cloud + one gateway, bound to the uplink's client id
    clients = json.loads(accounts)["clients"]
    assert [(c["username"], c.get("clientid")) for c in clients] == [
        ("cloud", None),
        ("gw-xiyuan-1", "mb-xiyuan-xiyuan-1-gw-xiyuan-1"),
    ]

    (tmp_path / "run").mkdir()
    with private_mosquitto(tmp_path / "run", conf=out / "mosquitto.conf", port=port):
        assert _connects(
            port, "gw-xiyuan-1", "managed-in-the-cloud", "mb-xiyuan-xiyuan-1-gw-xiyuan-1"
        )
        assert _connects(port, "cloud", "cloud-secret")
        assert not _connects(port, "gw-xiyuan-1", "managed-in-the-cloud", "mb-someone-else")
        assert not _connects(port, "gw-xiyuan-1", "wrong", "mb-xiyuan-xiyuan-1-gw-xiyuan-1")
        assert not _connects(port, "gw-xiyuan-2", "anything")  # no credentials in the cloud


def test_broker_config_from_an_empty_cloud_database_says_what_to_do(
    sqlite_cloud_url: str, demo_site_path: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "MB_CLOUD_PASSWORD": "x"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "microbrain",
            "broker",
            "config",
            "--site",
            str(demo_site_path),
            "--out",
            str(tmp_path),
            "--cloud-db",
            sqlite_cloud_url,
        ],
        env=env,
        check=False,  # the exit status is asserted below
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "stores no gateway credentials" in result.stderr
