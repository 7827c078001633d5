"""The whole gateway agent against real brokers: sensors in, store out, heartbeats,
commands, garbage floods, a full outbox, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.agent import GatewayAgent, ReloadError
from edge.config import GatewayConfigError, load_gateway_config
from microbrain.protocol import (
    Announce,
    ConfigReload,
    GatewayPath,
    ModelInstall,
    Recheck,
    Reply,
    Status,
)
from microbrain.site import load_site
from tests.edge.uplink.conftest import ROOT, CloudStore
from tests.utils.services import MosquittoProcess

GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
HYDRANT = "devices/hydrant/b1-top"


def write_config(tmp_path: Path, demo_site_path: Path, port: int, **over: object) -> Path:
    cfg = {
        "site": str(demo_site_path),
        "gateway": "gw-xiyuan-1",
        "cloud": {"url": f"mqtt://127.0.0.1:{port}"},
        "local_broker": {"url": f"mqtt://127.0.0.1:{port}"},
        "data_dir": str(tmp_path / "data"),
        "heartbeat_s": 1,
        "reading_min_interval_s": 0,
        "audio": {"out_dir": "announcements"},
        "video": False,
        "outbox": {"resend_after_s": 3},
    }
    cfg.update(over)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True)
def no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # the private test broker is anonymous; the site names a password variable
    monkeypatch.setenv("MB_GW_XIYUAN_1_PASSWORD", "unused-here")


class Observer:
    """The cloud's side of the wire for tests: sees status and replies, sends commands."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), m.retain)
        )
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(GW.topic("status"), 1), (GW.subscription("reply"), 1)])
        self.client.loop_start()

    def statuses(self) -> list[Status]:
        return [
            Status.model_validate_json(p)
            for t, p, _ in list(self.messages)
            if t.endswith("/status")
        ]

    def replies(self) -> list[Reply]:
        return [Reply.model_validate_json(p) for t, p, _ in list(self.messages) if "/reply/" in t]

    def send(self, name: str, payload: bytes) -> None:
        self.client.publish(GW.topic("cmd", name), payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait(cond: Callable[[], object], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


@pytest.fixture
def running(
    tmp_path: Path, demo_site_path: Path, mosquitto: MosquittoProcess
) -> Iterator[Callable[..., GatewayAgent]]:
    agents: list[tuple[GatewayAgent, threading.Thread]] = []

    def start(**over: object) -> GatewayAgent:
        cfg = load_gateway_config(write_config(tmp_path, demo_site_path, mosquitto.port, **over))
        agent = GatewayAgent(cfg, load_site(cfg.site))
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        agents.append((agent, thread))
        assert agent.uplink.wait_connected(10)
        assert wait(lambda: agent.local is not None and agent.local.subscribed)
        return agent

    yield start
    for agent, thread in agents:
        agent.stop()
        thread.join(15)


def sensor_client(port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_readings_and_events_reach_the_store_and_heartbeat_reports(
    running, mosquitto: MosquittoProcess, cloud_store
) -> None:
    store: CloudStore = cloud_store(mosquitto.port)
    observer = Observer(mosquitto.port)
    agent = running()
    dev = sensor_client(mosquitto.port)
    dev.publish(HYDRANT, b'{"data": {"p_kpa": 320}}', qos=1)
    dev.publish(
        "devices/elevator/b1-a",
        b'{"status": {"running": true, "floor": 3}, "fault": {"code": "E01"}}',
        qos=1,
    )
    rows = store.wait_for(str(GW), 3, 10)
    kinds = [json.loads(p)["type"] for p in _payloads(store)]
    assert len(rows) == 3 and kinds.count("reading") == 2 and kinds.count("event") == 1
    event = next(json.loads(p) for p in _payloads(store) if json.loads(p)["type"] == "event")
    assert event["kind"] == "elevator_fault" and event["detail"]["fault"] == "trapped_passenger"
    assert wait(lambda: agent.outbox.depth == 0)
    assert wait(lambda: any(s.health for s in observer.statuses()))
    health = [s.health for s in observer.statuses() if s.health][-1]
    assert health.memory_mb > 0
    status = [s for s in observer.statuses() if s.health][-1]
    assert status.state == "online"
    dev.loop_stop()
    observer.close()


def _payloads(store: CloudStore) -> list[bytes]:
    import sqlite3

    with sqlite3.connect(store.db) as conn:
        return [r[0] for r in conn.execute("SELECT payload FROM items ORDER BY seq")]


def test_commands_announce_recheck_refusals(
    running, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    observer = Observer(mosquitto.port)
    agent = running()
    dev = sensor_client(mosquitto.port)
    dev.publish(HYDRANT, b'{"data": {"p_kpa": 300}}', qos=1)
    assert wait(lambda: agent.hub.last_reading("b1-hydrant-top") is not None)

    announce = Announce(text="请勿在消防通道停车", repeat=2)
    observer.send("announce", announce.to_json())
    recheck = Recheck(source="b1-hydrant-top", kind="hydrant_pressure_low")
    observer.send("recheck", recheck.to_json())
    observer.send("recheck", Recheck(source="cam-fire-lane").to_json())
    observer.send(
        "model",
        ModelInstall(manifest="{}", signature="A" * 86 + "==", url="/api/models/1/file").to_json(),
    )
    observer.send("self_destruct", b'{"name": "self_destruct"}')
    observer.send("announce", b'{"name": "announce", "text": "x", "clip": "y"}')
    observer.send("announce", b"\x00not json")
    assert wait(lambda: len(observer.replies()) == 7, 10)
    replies = observer.replies()
    by_id = {r.command_id: r for r in replies if r.command_id}
    ok = by_id[announce.id]
    assert ok.ok and ok.detail["repeat"] == 2
    wav = tmp_path / "data" / "announcements" / str(ok.detail["file"])
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 10_000
    assert by_id[recheck.id].ok and by_id[recheck.id].detail["value_pressure_mpa"] == pytest.approx(
        0.3
    )
    assert (
        by_id[recheck.id].detail["present"] is False
    )  # 0.3 MPa: the low-pressure condition is gone
    refused = [r for r in replies if not r.ok]
    assert len(refused) == 5
    reasons = " | ".join(r.reason or "" for r in refused)
    assert "set model_key" in reasons and "exactly one of 'clip' or 'text'" in reasons
    assert "not valid JSON" in reasons
    assert {r.name for r in refused} >= {"self_destruct", "model", "recheck", "announce"}
    # refused commands ran nothing: exactly one WAV was written
    assert len(list((tmp_path / "data" / "announcements").iterdir())) == 1
    observer.close()
    dev.loop_stop()


def test_garbage_flood_is_rejected_and_the_agent_keeps_going(
    running, mosquitto: MosquittoProcess, cloud_store
) -> None:
    store: CloudStore = cloud_store(mosquitto.port)
    agent = running()
    rss_before = psutil.Process().memory_info().rss
    garbage = [
        b"not json",
        b'{"data": {"p_kpa": NaN}}',
        b'{"data": {"p_kpa": 1e9}}',
        b'{"data": {"p_kpa": "high"}}',
        b"\xff" * 100,
        b'{"data": {}}',
    ]
    dev = sensor_client(mosquitto.port)
    dev.publish(HYDRANT, b'{"data": {"p_kpa": "' + b"x" * 1_000_000 + b'"}}', qos=0)  # 1 MB
    sent, start = 0, time.monotonic()
    # a fixed 20k at most ~10k msg/s (as fast as paho goes): a count, not a time, so that a
    # loaded machine floods as much, only slower
    while sent < 20_000:
        for g in garbage:
            dev.publish(HYDRANT, g, qos=0)
            sent += 1
        if sent % 600 == 0:
            time.sleep(max(0.0, start + sent / 10_000 - time.monotonic()))
    dev.publish(HYDRANT, b'{"data": {"p_kpa": 310}}', qos=1)  # a good one after the flood
    assert wait(lambda: agent.hub.rejected > 1000, 30)
    rows = store.wait_for(str(GW), 1, 30)
    assert len(rows) == 1  # only the good reading went to the cloud
    grown_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
    assert grown_mb < 60, f"memory grew {grown_mb:.0f} MB under the flood"
    assert agent.status().health.rejected == agent.hub.rejected
    dev.loop_stop()


def test_full_outbox_keeps_critical_and_reports_evictions(
    running, mosquitto: MosquittoProcess
) -> None:
    observer = Observer(mosquitto.port)  # no store: nothing is ever acknowledged
    agent = running(outbox={"max_items": 20, "resend_after_s": 60})
    dev = sensor_client(mosquitto.port)
    dev.publish("devices/elevator/b1-a", b'{"fault": {"code": "E01"}}', qos=1)
    assert wait(lambda: agent.outbox.depth == 2)  # the reading and the critical event
    for n in range(40):
        dev.publish(HYDRANT, json.dumps({"data": {"p_kpa": 300 + n}}).encode(), qos=1)
    assert wait(lambda: agent.outbox.evicted >= 22, 10)
    kept = [json.loads(i.payload) for i in agent.outbox.after(0)]
    assert any(k["type"] == "event" and k["kind"] == "elevator_fault" for k in kept)
    assert len(kept) == 20
    assert wait(
        lambda: any(s.health and s.health.outbox_evicted >= 22 for s in observer.statuses()), 5
    )
    beat = [s.health for s in observer.statuses() if s.health][-1]
    assert beat.outbox_depth == 20
    dev.loop_stop()
    observer.close()


def test_config_errors_are_named(tmp_path: Path, demo_site_path: Path) -> None:
    path = write_config(tmp_path, demo_site_path, 1883, cloud={"url": "http://x"}, typo=1)
    with pytest.raises(GatewayConfigError) as err:
        load_gateway_config(path)
    assert "cloud.url" in str(err.value) and "typo" in str(err.value)


def test_cli_runs_and_stops_cleanly_on_sigterm(
    tmp_path: Path, demo_site_path: Path, mosquitto: MosquittoProcess
) -> None:
    config = write_config(tmp_path, demo_site_path, mosquitto.port)
    observer = Observer(mosquitto.port)
    env = {**os.environ, "MB_GW_XIYUAN_1_PASSWORD": "x"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "microbrain.cli", "edge", "run", "--config", str(config)]
        if (ROOT / "microbrain" / "cli" / "__main__.py").exists()
        else [
            str(Path(sys.executable).parent / "microbrain"),
            "edge",
            "run",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait(lambda: any(s.state == "online" for s in observer.statuses()), 20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert wait(lambda: observer.statuses()[-1].state == "offline", 5)
        # the agent's own clean "offline", not the broker's last will: the will was made
        # when the client was, so it is older than every "online" heartbeat; and no will
        # follows (a clean DISCONNECT discards it)
        statuses = observer.statuses()
        last = statuses[-1]
        assert all(last.ts > s.ts for s in statuses if s.state == "online")
        time.sleep(1.0)
        assert observer.statuses()[-1] == last
    finally:
        if proc.poll() is None:
            proc.kill()
        observer.close()


def test_cli_refuses_a_missing_password(
    tmp_path: Path, demo_site_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from microbrain.cli import app

    monkeypatch.delenv("MB_GW_XIYUAN_1_PASSWORD")
    config = write_config(tmp_path, demo_site_path, 1)
    result = CliRunner().invoke(app, ["edge", "run", "--config", str(config)])
    assert result.exit_code == 2 and "MB_GW_XIYUAN_1_PASSWORD" in result.output


def test_cameras_emit_through_the_outbox_to_the_store(
    tmp_path: Path,
    demo_site_path: Path,
    mosquitto: MosquittoProcess,
    cloud_store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The video seam: gw-xiyuan-2's camera (dog.jpg, no person) raises unleashed_dog,
    which goes through agent.emit → outbox → uplink → store, evidence attached."""
    monkeypatch.setenv("MB_GW_XIYUAN_2_PASSWORD", "unused-here")
    store: CloudStore = cloud_store(mosquitto.port)
    path = write_config(
        tmp_path,
        demo_site_path,
        mosquitto.port,
        gateway="gw-xiyuan-2",
        video=True,
        local_broker=None,
    )
    cfg = load_gateway_config(path)
    agent = GatewayAgent(cfg, load_site(cfg.site))
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        rows = store.wait_for("xiyuan/xiyuan-2/gw-xiyuan-2", 1, 40)
        assert rows and rows[0][0] == 1
        event = json.loads(_payloads(store)[0])
        assert event["kind"] == "unleashed_dog" and event["source"] == "cam-courtyard"
        snapshot = event["evidence"][0]["name"]
        assert (tmp_path / "data" / "evidence" / snapshot).is_file()
        health = agent.status().health
        assert health is not None
        assert health.cameras == {"cam-courtyard": "online"} and health.model is not None
    finally:
        agent.stop()
        thread.join(20)


def test_config_reload_applies_a_valid_site_and_refuses_a_broken_one(
    running, mosquitto: MosquittoProcess, tmp_path: Path, demo_site_path: Path
) -> None:
    site_file = tmp_path / "site.yaml"
    data = yaml.safe_load(demo_site_path.read_text(encoding="utf-8"))
    gateway = data["communities"][0]["compounds"][0]["gateways"][0]
    cameras = gateway.pop("cameras")  # video on, but no cameras until the last reload
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    observer = Observer(mosquitto.port)
    agent = running(site=str(site_file), video=True)
    dev = sensor_client(mosquitto.port)
    # a fault raised before the reload on a sensor the reload does not change
    dev.publish("devices/elevator/b1-a", b'{"fault": {"code": "E01"}}', qos=1)
    assert wait(lambda: agent.hub.active_kinds("b1-elevator-a") == {"elevator_fault"})
    hub_before = agent.hub

    # a new smoke detector is added in the site file, then the cloud says "reload"
    gateway["sensors"].append(
        {
            "id": "b1-smoke-new",
            "building": "b1",
            "profile": "smoke-generic",
            "topic": "devices/smoke/b1-new",
        }
    )
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    good = ConfigReload()
    observer.send("config_reload", good.to_json())
    assert wait(lambda: any(r.command_id == good.id for r in observer.replies()), 15)
    reply = next(r for r in observer.replies() if r.command_id == good.id)
    assert reply.ok and reply.detail["sensors"] == len(gateway["sensors"])
    assert "video_error" not in reply.detail
    # the unchanged elevator kept its raised fault (a new hub, the same rule state)
    assert agent.hub is not hub_before
    assert agent.hub.active_kinds("b1-elevator-a") == {"elevator_fault"}
    assert wait(lambda: agent.local is not None and agent.local.subscribed)
    dev.publish("devices/smoke/b1-new", b'{"alarm": false}', qos=1)
    assert wait(lambda: agent.hub.last_reading("b1-smoke-new") is not None)

    # a broken file changes nothing, and the reason goes back to the cloud
    site_file.write_text("communities: [", encoding="utf-8")
    bad = ConfigReload()
    observer.send("config_reload", bad.to_json())
    assert wait(lambda: any(r.command_id == bad.id for r in observer.replies()), 15)
    refused = next(r for r in observer.replies() if r.command_id == bad.id)
    assert not refused.ok and "config not reloaded" in (refused.reason or "")
    assert "not valid YAML" in (refused.reason or "")
    dev.publish("devices/smoke/b1-new", b'{"alarm": true}', qos=1)
    assert wait(lambda: agent.hub.last_reading("b1-smoke-new").values.get("smoke") is True)

    # cameras whose detector cannot load: the sensors run, and the reply says the video failed
    gateway["cameras"] = cameras
    gateway["detector"] = {"type": "onnx_yolo", "model": "no-such-model.onnx"}
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    novideo = ConfigReload()
    observer.send("config_reload", novideo.to_json())
    assert wait(lambda: any(r.command_id == novideo.id for r in observer.replies()), 15)
    reply = next(r for r in observer.replies() if r.command_id == novideo.id)
    assert reply.ok and reply.detail["cameras"] == len(cameras)
    assert "no-such-model.onnx" in str(reply.detail["video_error"]) and agent.video is None
    assert agent.hub.active_kinds("b1-elevator-a") == {"elevator_fault"}

    # a reload that races the shutdown does not restart the inputs
    agent.stop()
    with pytest.raises(ReloadError, match="stopping"):
        agent.reload()
    observer.close()


def test_mqtts_cloud_uses_tls_with_the_system_cas(tmp_path: Path, demo_site_path: Path) -> None:
    """An mqtts:// cloud link without a tls: block still uses TLS (verified against the
    system's CAs); a plain mqtt:// link does not."""
    cfg = load_gateway_config(
        write_config(tmp_path, demo_site_path, 1883, cloud={"url": "mqtts://cloud.example"})
    )
    agent = GatewayAgent(cfg, load_site(cfg.site))
    try:
        settings = agent.uplink.settings
        assert settings.tls and settings.tls_ca is None and settings.port == 8883
        context = agent.uplink._client._ssl_context
        assert context is not None and context.verify_mode.name == "CERT_REQUIRED"
        assert context.cert_store_stats()["x509_ca"] > 0  # the system's CAs are loaded
    finally:
        agent.outbox.close()
        agent.evidence_queue.close()
    plain = load_gateway_config(write_config(tmp_path, demo_site_path, 1883))
    agent = GatewayAgent(plain, load_site(plain.site))
    try:
        assert not agent.uplink.settings.tls and agent.uplink._client._ssl_context is None
    finally:
        agent.outbox.close()
        agent.evidence_queue.close()


@pytest.mark.parametrize(
    "local",
    [{"url": "mqtts://127.0.0.1"}, {"url": "mqtt://127.0.0.1", "tls": {"ca_file": "ca.pem"}}],
)
def test_tls_to_the_local_sensor_broker_is_refused(
    tmp_path: Path, demo_site_path: Path, local: dict
) -> None:
    path = write_config(tmp_path, demo_site_path, 1883, local_broker=local)
    with pytest.raises(GatewayConfigError, match=r"local_broker: TLS .* not supported"):
        load_gateway_config(path)
