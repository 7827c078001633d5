"""`microbrain simulate sensors` against a real Mosquitto: every message it reports as
delivered reached a subscriber, and a broker that refuses it is an error, not a silent run."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from microbrain.broker.embedded import free_port
from microbrain.cli import app
from tests.utils.services import MosquittoProcess, private_mosquitto


def _simulate(demo_site_path: Path, port: int, *extra: str):
    return CliRunner().invoke(
        app,
        [
            "simulate",
            "sensors",
            "--site",
            str(demo_site_path),
            "--gateway",
            "gw-dongcheng-garden",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--seed",
            "3",
            *extra,
        ],
    )


def test_every_message_reported_delivered_reaches_a_subscriber(
    mosquitto: MosquittoProcess, demo_site_path: Path
) -> None:
    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.max_inflight_messages_set(1000)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("devices/#", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        # a fast burst, so publishes are still in flight when the run ends: the count it
        # reports as delivered (PUBACKed) is what a subscriber got
        result = _simulate(demo_site_path, mosquitto.port, "--rate", "20000", "--duration", "0.5")
        assert result.exit_code == 0, result.output
        found = re.search(r"sent (\d+) message\(s\)", result.output)
        assert found, result.output
        sent = int(found[1])
        assert sent > 1000, result.output
        deadline = time.monotonic() + 10
        while len(got) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) == sent
        assert f"sent {sent} message(s), {sent} delivered" in result.output
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_a_refusing_broker_is_exit_2_with_the_reason(tmp_path: Path, demo_site_path: Path) -> None:
    with private_mosquitto(tmp_path / "broker", extra="allow_anonymous false\n") as refusing:
        result = _simulate(demo_site_path, refusing.port, "--duration", "0.5")
    assert result.exit_code == 2, result.output
    assert "refused the connection" in result.output and "authori" in result.output.lower()


def test_an_unreachable_broker_is_exit_2(demo_site_path: Path) -> None:
    result = _simulate(demo_site_path, free_port(), "--duration", "0.5")
    assert result.exit_code == 2, result.output
    assert "cannot reach the broker" in result.output
