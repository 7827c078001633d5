"""The embedded broker candidates against what microbrain needs from MQTT.

Every broker here is private to the test (a free port, its own data dir); paho-mqtt 2
clients talk to the real thing. Known defects of a candidate are ``xfail(strict=True)``:
the test fails the day the defect is fixed, so docs/embedded-broker.md gets updated.
"""

from __future__ import annotations

import os
import queue
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from microbrain.broker import embedded
from microbrain.broker.embedded import (
    AmqttBroker,
    BrokerStartError,
    IotcoreBroker,
    MosquittoBroker,
    free_port,
    start_embedded_broker,
)
from microbrain.broker.mosquitto_conf import write_broker_config
from microbrain.site import load_site

HOST = "127.0.0.1"
# the three embedded brokers; each is a context manager as well as an EmbeddedBroker
AnyBroker = MosquittoBroker | IotcoreBroker | AmqttBroker
WAIT_S = 5.0


@dataclass(frozen=True)
class Target:
    """Where a client of one MQTT version reaches the broker under test."""

    broker: str
    port: int
    version: int  # 5 or 311

    @property
    def protocol(self) -> int:
        return mqtt.MQTTv5 if self.version == 5 else mqtt.MQTTv311


def start_broker(name: str, data_dir: Path, mqtt311_port: int | None = None):
    port = free_port()
    if name == "mosquitto":
        return MosquittoBroker(HOST, port, data_dir).start()
    if name == "iotcore":
        return IotcoreBroker(HOST, port, data_dir, mqtt311_port=mqtt311_port).start()
    return AmqttBroker(HOST, port).start()


def amqtt_defect(reason: str):
    return pytest.param(("amqtt", 311), marks=pytest.mark.xfail(strict=True, reason=reason))


# (broker, MQTT version) pairs: Mosquitto serves both versions on one port; iotcore's
# rumqttd needs a second listener for 3.1.1; amqtt speaks 3.1.1 only.
EVERY_TARGET = [
    ("mosquitto", 5),
    ("mosquitto", 311),
    ("iotcore", 5),
    ("iotcore", 311),
    ("amqtt", 311),
]


def target_id(param: tuple[str, int]) -> str:
    return f"{param[0]}-v{param[1]}"


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    name, version = request.param
    v311 = free_port() if (name, version) == ("iotcore", 311) else None
    broker = start_broker(name, tmp_path / name, mqtt311_port=v311)
    try:
        yield Target(name, v311 or broker.port, version)
    finally:
        broker.stop()


@dataclass
class Conn:
    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    connack: queue.Queue[tuple[str, bool]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[object] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.client.subscribe(topic, qos)
        self.subacks.get(timeout=WAIT_S)

    def take(self, n: int, timeout: float = WAIT_S) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        got: list[mqtt.MQTTMessage] = []
        while len(got) < n:
            got.append(self.messages.get(timeout=max(deadline - time.monotonic(), 0.01)))
        return got

    def nothing_more(self, within: float = 0.3) -> bool:
        try:
            self.messages.get(timeout=within)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without a DISCONNECT packet, as a gateway that loses power.

        Only for a client connected with ``threaded=False``: no network thread to stop
        (paho's loop_stop waits up to a second) and none to reconnect behind our back.
        """
        sock = self.client.socket()
        assert sock is not None
        sock.close()


def connect(
    t: Target,
    client_id: str = "",
    *,
    clean: bool = True,
    expiry_s: int | None = None,
    will: tuple[str, bytes] | None = None,
    threaded: bool = True,
) -> Conn:
    """A connected paho client; waits for the CONNACK and fails on a refusal.

    ``threaded=False`` runs no network thread: the client only connects (see drop()).
    """
    if t.version == 5:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean,
        )
    c.max_inflight_messages_set(200)
    conn = Conn(c)
    c.on_message = lambda _c, _u, msg: conn.messages.put(msg)
    c.on_connect = lambda _c, _u, flags, rc, _p: conn.connack.put((str(rc), flags.session_present))
    c.on_subscribe = lambda *_a: conn.subacks.put(True)
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)
    if t.version == 5:
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry_s
        c.connect(HOST, t.port, keepalive=10, clean_start=clean, properties=props)
    else:
        c.connect(HOST, t.port, keepalive=10)
    if threaded:
        c.loop_start()
    else:
        deadline = time.monotonic() + WAIT_S
        while conn.connack.empty() and time.monotonic() < deadline:
            c.loop(0.02)
    rc, _present = conn.connack.get(timeout=WAIT_S)
    conn.connack.put((rc, _present))  # leave it for session_present()
    assert rc == "Success", f"{t.broker} refused the connection: {rc}"
    return conn


def session_present(conn: Conn) -> bool:
    return conn.connack.queue[-1][1]


def publish_all(
    conn: Conn, topic: str, payloads: list[bytes], *, qos: int = 1, retain: bool = False
) -> None:
    infos = [conn.client.publish(topic, p, qos=qos, retain=retain) for p in payloads]
    for info in infos:
        info.wait_for_publish(WAIT_S)


# --- QoS 1 delivery -----------------------------------------------------------------


@pytest.mark.parametrize("target", EVERY_TARGET, indirect=True, ids=target_id)
def test_qos1_messages_arrive_once_and_in_order(target: Target) -> None:
    sub = connect(target, "sub")
    sub.subscribe("mb/v1/c/k/gw/event", qos=1)
    pub = connect(target, "pub")
    sent = [f'{{"seq": {i}}}'.encode() for i in range(300)]
    publish_all(pub, "mb/v1/c/k/gw/event", sent)
    got = sub.take(len(sent))
    assert [m.payload for m in got] == sent
    assert all(m.qos == 1 for m in got)
    assert sub.nothing_more(), "a message arrived twice"
    pub.close()
    sub.close()


# --- retained messages --------------------------------------------------------------


@pytest.mark.parametrize("target", EVERY_TARGET, indirect=True, ids=target_id)
def test_retained_status_reaches_a_late_subscriber_and_can_be_cleared(target: Target) -> None:
    pub = connect(target, "gw")
    publish_all(pub, "mb/v1/c/k/gw/status", [b'{"state": "online"}'], retain=True)
    late = connect(target, "late")
    late.subscribe("mb/v1/c/k/+/status")
    (msg,) = late.take(1)
    assert (msg.payload, msg.retain) == (b'{"state": "online"}', True)
    late.close()
    # an empty retained payload clears it: a later subscriber gets nothing
    publish_all(pub, "mb/v1/c/k/gw/status", [b""], retain=True)
    later = connect(target, "later")
    later.subscribe("mb/v1/c/k/+/status")
    assert later.nothing_more()
    later.close()
    pub.close()


# --- last will ----------------------------------------------------------------------


@pytest.mark.parametrize("target", EVERY_TARGET, indirect=True, ids=target_id)
def test_last_will_is_published_and_retained_when_a_gateway_vanishes(target: Target) -> None:
    watcher = connect(target, "cloud")
    watcher.subscribe("mb/v1/c/k/+/status")
    gw = connect(
        target, "gw-1", will=("mb/v1/c/k/gw-1/status", b'{"state": "offline"}'), threaded=False
    )
    gw.drop()
    (msg,) = watcher.take(1)
    assert (msg.topic, msg.payload) == ("mb/v1/c/k/gw-1/status", b'{"state": "offline"}')
    # retained: a console that connects later still sees the gateway offline
    late = connect(target, "console")
    late.subscribe("mb/v1/c/k/+/status")
    assert late.take(1)[0].payload == b'{"state": "offline"}'
    late.close()
    watcher.close()


@pytest.mark.parametrize("target", EVERY_TARGET, indirect=True, ids=target_id)
def test_no_will_after_a_clean_disconnect(target: Target) -> None:
    watcher = connect(target, "cloud")
    watcher.subscribe("mb/v1/c/k/+/status")
    gw = connect(target, "gw-1", will=("mb/v1/c/k/gw-1/status", b'{"state": "offline"}'))
    gw.close()
    assert watcher.nothing_more(0.5)
    watcher.close()


# --- persistent sessions ------------------------------------------------------------


@pytest.mark.parametrize("target", EVERY_TARGET, indirect=True, ids=target_id)
def test_persistent_session_gets_what_was_published_while_away(target: Target) -> None:
    ingest = connect(target, "ingest", clean=False, expiry_s=3600)
    ingest.subscribe("mb/v1/+/+/+/event")
    ingest.close()
    pub = connect(target, "gw")
    sent = [f'{{"seq": {i}}}'.encode() for i in range(200)]
    publish_all(pub, "mb/v1/c/k/gw/event", sent)
    back = connect(target, "ingest", clean=False, expiry_s=3600)
    assert session_present(back)
    assert sorted(m.payload for m in back.take(len(sent))) == sorted(sent)
    assert back.nothing_more()
    back.close()
    pub.close()


@pytest.mark.parametrize(
    "target",
    [
        ("mosquitto", 5),
        ("mosquitto", 311),
        ("iotcore", 5),
        amqtt_defect("amqtt re-sends queued messages with the retain flag set"),
    ],
    indirect=True,
    ids=target_id,
)
def test_queued_messages_are_not_flagged_retained(target: Target) -> None:
    ingest = connect(target, "ingest", clean=False, expiry_s=3600)
    ingest.subscribe("mb/v1/+/+/+/event")
    ingest.close()
    pub = connect(target, "gw")
    publish_all(pub, "mb/v1/c/k/gw/event", [b'{"seq": 1}'])
    back = connect(target, "ingest", clean=False, expiry_s=3600)
    (msg,) = back.take(1)
    assert msg.retain is False
    back.close()
    pub.close()


@pytest.mark.parametrize(
    "target",
    [
        ("mosquitto", 5),
        ("mosquitto", 311),
        ("iotcore", 5),
        amqtt_defect(
            "amqtt sends a reconnecting persistent "
            "session the retained messages of every "
            "other client's subscriptions"
        ),
    ],
    indirect=True,
    ids=target_id,
)
def test_reconnecting_session_gets_only_its_own_topics(target: Target) -> None:
    # another client's subscription and a retained message outside our filter
    other = connect(target, "other")
    other.subscribe("mb/v1/c/k/+/status")
    pub = connect(target, "gw")
    publish_all(pub, "mb/v1/c/k/gw/status", [b'{"state": "online"}'], retain=True)
    mine = connect(target, "gw-2-cmd", clean=False, expiry_s=3600)
    mine.subscribe("mb/v1/c/k/gw-2/cmd/#")
    mine.close()
    back = connect(target, "gw-2-cmd", clean=False, expiry_s=3600)
    assert back.nothing_more(0.5), "received a topic it never subscribed to"
    back.close()
    other.close()
    pub.close()


@pytest.mark.parametrize(
    "target",
    [
        ("mosquitto", 5),
        pytest.param(
            ("iotcore", 5),
            marks=pytest.mark.xfail(
                strict=True,
                reason="rumqttd ignores MQTT 5 session expiry: the session lives until restart",
            ),
        ),
    ],
    indirect=True,
    ids=target_id,
)
def test_session_expires_after_its_interval(target: Target) -> None:
    s = connect(target, "short", clean=False, expiry_s=1)
    s.subscribe("mb/v1/+/+/+/event")
    s.close()
    time.sleep(2.5)
    pub = connect(target, "gw")
    publish_all(pub, "mb/v1/c/k/gw/event", [b'{"seq": 1}'])
    back = connect(target, "short", clean=False, expiry_s=1)
    assert not session_present(back)
    assert back.nothing_more()
    back.close()
    pub.close()


def test_amqtt_expires_idle_persistent_sessions_after_its_global_interval() -> None:
    # MQTT 3.1.1 has no per-session expiry; amqtt applies one broker-wide interval
    with AmqttBroker(HOST, free_port(), session_expiry_s=1) as broker:
        t = Target("amqtt", broker.port, 311)
        s = connect(t, "short", clean=False)
        s.subscribe("mb/v1/+/+/+/event")
        s.close()
        time.sleep(2.5)  # amqtt's session monitor runs once a second
        back = connect(t, "short", clean=False)
        assert not session_present(back)
        back.close()


# --- what the cloud's ingest needs: MQTT 5 and shared subscriptions -----------------


@pytest.mark.parametrize(
    "target",
    [
        ("mosquitto", 5),
        ("mosquitto", 311),
        ("iotcore", 5),
        amqtt_defect("amqtt has no shared subscriptions"),
    ],
    indirect=True,
    ids=target_id,
)
def test_shared_subscription_splits_the_stream_between_workers(target: Target) -> None:
    workers = [connect(target, f"w{i}") for i in range(2)]
    for w in workers:
        w.subscribe("$share/cloud/mb/v1/+/+/+/event")
    pub = connect(target, "gw")
    sent = [f'{{"seq": {i}}}'.encode() for i in range(100)]
    publish_all(pub, "mb/v1/c/k/gw/event", sent)
    deadline = time.monotonic() + 30  # all delivered, however loaded the machine
    while sum(w.messages.qsize() for w in workers) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a duplicate would come right behind
    counts = [w.messages.qsize() for w in workers]
    got = [w.messages.get_nowait().payload for w in workers for _ in range(w.messages.qsize())]
    assert sorted(got) == sorted(sent), f"not exactly once across the group: {counts}"
    assert all(c > 0 for c in counts), f"one worker got everything: {counts}"
    for c in (*workers, pub):
        c.close()


def test_amqtt_refuses_mqtt5_clients(tmp_path: Path) -> None:
    # why start_embedded_broker never picks amqtt: microbrain's uplink, ingest and
    # command clients all speak MQTT 5
    with AmqttBroker(HOST, free_port()) as broker:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        codes: queue.Queue[str] = queue.Queue()
        c.on_connect = lambda _c, _u, _f, rc, _p: codes.put(str(rc))
        c.connect(HOST, broker.port)
        c.loop_start()
        try:
            assert codes.get(timeout=WAIT_S) == "Unsupported protocol version"
        finally:
            c.disconnect()
            c.loop_stop()


# --- surviving a broker restart -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "survives"), [("mosquitto", True), ("iotcore", False), ("amqtt", False)]
)
def test_what_a_broker_restart_keeps(name: str, survives: bool, tmp_path: Path) -> None:
    """Mosquitto persists sessions and queues on disk; the embedded fallbacks do not."""
    port = free_port()
    make: dict[str, Callable[[], AnyBroker]] = {
        "mosquitto": lambda: MosquittoBroker(HOST, port, tmp_path),
        "iotcore": lambda: IotcoreBroker(HOST, port, tmp_path),
        "amqtt": lambda: AmqttBroker(HOST, port),
    }
    t = Target(name, port, 311 if name == "amqtt" else 5)
    with make[name]():
        ingest = connect(t, "ingest", clean=False, expiry_s=3600)
        ingest.subscribe("mb/v1/+/+/+/event")
        ingest.close()
        pub = connect(t, "gw")
        publish_all(pub, "mb/v1/c/k/gw/event", [b'{"seq": 1}', b'{"seq": 2}'])
        pub.close()
    with make[name]():
        back = connect(t, "ingest", clean=False, expiry_s=3600)
        queued = [m.payload for m in back.take(2)] if survives else []
        assert back.nothing_more(0.5)
        assert session_present(back) is survives
        assert queued == ([b'{"seq": 1}', b'{"seq": 2}'] if survives else [])
        back.close()


# --- starting and stopping ----------------------------------------------------------


@pytest.mark.parametrize("name", ["mosquitto", "iotcore", "amqtt"])
def test_a_taken_port_gives_an_error_that_names_the_fix(name: str, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        brokers: dict[str, AnyBroker] = {
            "mosquitto": MosquittoBroker(HOST, port, tmp_path),
            "iotcore": IotcoreBroker(HOST, port, tmp_path),
            "amqtt": AmqttBroker(HOST, port),
        }
        broker = brokers[name]
        with pytest.raises(
            BrokerStartError, match=f"{HOST}:{port} is already in use.*another port"
        ):
            broker.start()
        assert not broker.running


@pytest.mark.parametrize("name", ["mosquitto", "iotcore", "amqtt"])
def test_stop_releases_the_port_for_a_new_broker(name: str, tmp_path: Path) -> None:
    port = free_port()
    for _ in range(2):
        brokers: dict[str, AnyBroker] = {
            "mosquitto": MosquittoBroker(HOST, port, tmp_path),
            "iotcore": IotcoreBroker(HOST, port, tmp_path),
            "amqtt": AmqttBroker(HOST, port),
        }
        broker = brokers[name].start()
        assert broker.running
        conn = connect(Target(name, port, 311 if name == "amqtt" else 5), "c")
        conn.close()
        broker.stop()
        broker.stop()  # twice is harmless
        assert not broker.running


def test_a_broken_mosquitto_config_names_the_log(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1 127.0.0.1\nno_such_option true\n")
    with pytest.raises(BrokerStartError, match=r"mosquitto exited at start-up.*mosquitto.log"):
        MosquittoBroker(HOST, free_port(), tmp_path, conf=conf).start()


def test_a_mosquitto_that_never_listens_is_stopped_not_orphaned(tmp_path: Path) -> None:
    # it runs, but on another port than the one waited for: start() times out and must
    # not leave the process holding that other port
    other = free_port()
    conf = tmp_path / "elsewhere.conf"
    conf.write_text(f"listener {other} {HOST}\nallow_anonymous true\n")
    broker = MosquittoBroker(HOST, free_port(), tmp_path, conf=conf)
    with pytest.raises(BrokerStartError, match="did not listen"):
        broker.start(timeout=1.0)
    assert not broker.running
    with socket.socket() as probe:
        probe.bind((HOST, other))  # free again: the process is gone


def test_importing_the_brokers_does_not_load_amqtt() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from microbrain.broker.embedded import free_port, MosquittoBroker; "
        "sys.exit('amqtt' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


def test_mosquitto_runs_the_site_config_with_passwords(
    tmp_path: Path, demo_site_path: Path
) -> None:
    # `microbrain up` with a site: the credentials and ACL from `microbrain broker config`
    env = {
        "MB_CLOUD_PASSWORD": "pw-cloud",
        "MB_GW_XIYUAN_1_PASSWORD": "pw-x1",
        "MB_GW_XIYUAN_2_PASSWORD": "pw-x2",
        "MB_GW_DONGCHENG_GARDEN_PASSWORD": "pw-dg",
        "MB_GW_DONGCHENG_PLAZA_PASSWORD": "pw-dp",
    }
    files = write_broker_config(
        load_site(demo_site_path),
        tmp_path / "site",
        env=env,
        port=free_port(),
        bind=HOST,
        run_as="root" if os.geteuid() == 0 else None,
    )
    with MosquittoBroker(HOST, files.port, tmp_path / "site", conf=files.conf) as broker:
        codes: list[str] = []
        for user, password in ((None, None), ("cloud", "wrong"), ("cloud", "pw-cloud")):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            if user:
                c.username_pw_set(user, password)
            got: queue.Queue[str] = queue.Queue()
            c.on_connect = lambda _c, _u, _f, rc, _p, got=got: got.put(str(rc))
            c.connect(HOST, broker.port)
            c.loop_start()
            codes.append(got.get(timeout=WAIT_S))
            c.disconnect()
            c.loop_stop()
    assert codes[0] != "Success" and codes[1] != "Success", codes
    assert codes[2] == "Success"


def test_auto_prefers_the_system_mosquitto(tmp_path: Path) -> None:
    broker = start_embedded_broker(HOST, free_port(), data_dir=tmp_path)
    try:
        assert isinstance(broker, MosquittoBroker)
        connect(Target("mosquitto", broker.port, 5), "c").close()
    finally:
        broker.stop()


def test_auto_falls_back_to_iotcore_without_mosquitto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "mosquitto_executable", lambda: None)
    broker = start_embedded_broker(HOST, free_port(), data_dir=tmp_path)
    try:
        assert isinstance(broker, IotcoreBroker)
        connect(Target("iotcore", broker.port, 5), "c").close()
    finally:
        broker.stop()


def test_auto_without_any_broker_names_both_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "mosquitto_executable", lambda: None)
    monkeypatch.setattr(embedded, "iotcore_available", lambda: False)
    with pytest.raises(BrokerStartError, match=r"apt-get install mosquitto.*pip install iotcore"):
        start_embedded_broker(HOST, free_port(), data_dir=tmp_path)


def test_mosquitto_missing_names_the_install_command(tmp_path: Path) -> None:
    broker = MosquittoBroker(HOST, free_port(), tmp_path)
    broker.executable = None
    with pytest.raises(BrokerStartError, match="apt-get install mosquitto"):
        broker.start()
