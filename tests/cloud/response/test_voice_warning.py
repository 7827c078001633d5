"""A critical e-bike charging alert makes the real gateway agent speak (espeak-ng writes
the WAV), again after the repeat interval, never in quiet hours, and no more once the
violation has cleared: the cloud's responder and the agent over a private Mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import ManualClock
from cloud.commands import MqttCommandSender
from cloud.db import make_engine, session_factory, transaction
from cloud.response import load_response
from cloud.settings import Settings
from cloud.site_sync import sync_site
from edge.agent import GatewayAgent
from edge.config import load_gateway_config
from microbrain.protocol import EventState, GatewayPath, Reply, Severity
from microbrain.site import Site, load_site
from tests.cloud.helpers import event, ingest
from tests.utils.services import MosquittoProcess

GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
SHANGHAI = ZoneInfo("Asia/Shanghai")
WARNING = "请勿在楼道内为电动车充电"


def wait(cond: Callable[[], object], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


@pytest.fixture
def agent(
    tmp_path: Path, demo_site_path: Path, mosquitto: MosquittoProcess, monkeypatch
) -> Iterator[GatewayAgent]:
    monkeypatch.setenv("MB_GW_XIYUAN_1_PASSWORD", "unused-here")  # the test broker is anonymous
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": str(demo_site_path),
                "gateway": GW.gateway,
                "cloud": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"},
                "local_broker": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"},
                "data_dir": str(tmp_path / "data"),
                "audio": {"out_dir": "announcements"},
                "video": False,
            }
        )
    )
    cfg = load_gateway_config(config)
    gateway = GatewayAgent(cfg, load_site(cfg.site))
    thread = threading.Thread(target=gateway.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    assert gateway.uplink.wait_connected(10)
    yield gateway
    gateway.stop()
    thread.join(15)


class Replies:
    """The agent's answers to commands, as the cloud would see them."""

    def __init__(self, port: int) -> None:
        self.got: list[Reply] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.got.append(
            Reply.model_validate_json(msg.payload)
        )
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(GW.topic("reply", "announce"), qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _playbooks(tmp_path: Path, quiet_from: datetime) -> Path:
    local = quiet_from.astimezone(SHANGHAI)
    until = local + timedelta(hours=2)
    path = tmp_path / "playbooks.yaml"
    path.write_text(
        f"""schema: 1
quiet_hours: {{start: "{local:%H:%M}", end: "{until:%H:%M}"}}
playbooks:
  - id: charging
    kind: ebike_charging
    severities: [critical]
    announce: {{text: {WARNING}, repeat_every: 60s, max_times: 5}}
""",
        encoding="utf-8",
    )
    return path


def _db(url: str, site: Site, clock: ManualClock) -> sessionmaker[Session]:
    factory = session_factory(make_engine(url))
    with transaction(factory) as s:
        sync_site(s, site, clock=clock)
    return factory


def test_the_gateway_speaks_again_after_the_interval_but_not_in_quiet_hours(
    agent: GatewayAgent,
    mosquitto: MosquittoProcess,
    sqlite_cloud_url: str,
    demo_site_path: Path,
    tmp_path: Path,
) -> None:
    # the cloud's clock starts at the real time (the gateway refuses a command whose
    # expiry, set by that clock, has passed) and then moves only when the test says
    start = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(start)
    site = load_site(demo_site_path)
    factory = _db(sqlite_cloud_url, site, clock)
    quiet_from = start + timedelta(hours=3)
    setup = load_response(_playbooks(tmp_path, quiet_from), site=site, environ={})
    sender = MqttCommandSender(
        Settings(environment="test", broker_url=f"mqtt://127.0.0.1:{mosquitto.port}")
    )
    responder = setup.responder(factory, sender, secret="s", clock=clock)
    replies = Replies(mosquitto.port)
    wavs = tmp_path / "data" / "announcements"
    try:
        charging = event(
            1,
            kind="ebike_charging",
            severity=Severity.CRITICAL,
            source="cam-fire-lane",
            zone="fire-lane",
            ts=clock(),
        )
        ingest(factory, GW, [charging], now=clock())
        assert responder.step().announcements == 1
        assert wait(lambda: len(replies.got) == 1), "the gateway did not answer the warning"
        first = replies.got[0]
        assert first.ok, first.reason
        wav = wavs / str(first.detail["file"])
        assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 10_000  # espeak-ng spoke

        clock.advance(seconds=30)  # before the repeat interval: nothing
        assert responder.step().announcements == 0
        clock.advance(seconds=31)
        assert responder.step().announcements == 1
        assert wait(lambda: len(replies.got) == 2)

        clock.now = quiet_from + timedelta(minutes=5)  # in quiet hours: silent
        assert responder.step().announcements == 0
        clock.advance(minutes=1, seconds=1)
        assert responder.step().announcements == 0

        clock.now = quiet_from + timedelta(hours=2, minutes=1)  # quiet hours over
        assert responder.step().announcements == 1
        assert wait(lambda: len(replies.got) == 3)

        cleared = event(
            2,
            kind="ebike_charging",
            severity=Severity.CRITICAL,
            source="cam-fire-lane",
            zone="fire-lane",
            state=EventState.CLEARED,
            ts=clock(),
        )
        ingest(factory, GW, [cleared], now=clock())
        clock.advance(minutes=2)
        assert responder.step().announcements == 0  # the violation no longer stands
        assert len(replies.got) == 3 and all(r.ok for r in replies.got)
    finally:
        replies.close()
        sender.close()
