"""`microbrain broker config` output, run by a real private Mosquitto: passwords and the
access rules keep every gateway inside its own prefix, out of the cloud's shared
subscription and out of other gateways' sessions."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from microbrain.broker.embedded import free_port
from microbrain.broker.mosquitto_conf import (
    BrokerConfigError,
    gateway_client_id,
    hash_password,
    write_broker_config,
)
from microbrain.cli import app
from microbrain.protocol import GatewayPath
from microbrain.site import load_site
from tests.edge.uplink.conftest import CloudStore
from tests.edge.uplink.gateway_rig import event, make_rig
from tests.utils.services import MosquittoProcess, private_mosquitto

PASSWORDS = {
    "MB_GW_XIYUAN_1_PASSWORD": "pw-x1-secret",
    "MB_GW_XIYUAN_2_PASSWORD": "pw-x2-secret",
    "MB_GW_DONGCHENG_GARDEN_PASSWORD": "pw-dg",
    "MB_GW_DONGCHENG_PLAZA_PASSWORD": "pw-dp",
    "MB_CLOUD_PASSWORD": "pw-cloud",
}
X1 = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
X2 = GatewayPath("xiyuan", "xiyuan-2", "gw-xiyuan-2")


@pytest.fixture
def acl_broker(tmp_path: Path, demo_site_path: Path) -> Iterator[MosquittoProcess]:
    files = write_broker_config(
        load_site(demo_site_path),
        tmp_path / "broker",
        env=PASSWORDS,
        port=free_port(),
        bind="127.0.0.1",
        run_as="root" if os.geteuid() == 0 else None,
    )
    with private_mosquitto(tmp_path / "broker", conf=files.conf, port=files.port) as proc:
        yield proc


def client(
    port: int,
    user: str | None,
    password: str | None,
    client_id: str | None = None,
    *,
    session_expiry: int = 0,
) -> tuple[mqtt.Client, dict]:
    """A connected MQTT 5 client; a gateway's login gets the client id bound to it unless
    ``client_id`` says otherwise. ``session_expiry`` > 0: resume/keep a persistent session."""
    seen: dict = {"connack": None, "suback": None, "messages": [], "pubacks": {}, "disconnects": []}
    gateway = {X1.gateway: X1, X2.gateway: X2}.get(user or "")
    if client_id is None:
        client_id = gateway_client_id(gateway) if gateway else ""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if user:
        c.username_pw_set(user, password)

    def on_connect(cl: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        seen["connack"] = rc
        if rc.is_failure:
            cl.disconnect()  # refused: no reconnect, so loop_stop() need not wait out its delay

    c.on_connect = on_connect
    c.on_disconnect = lambda cl, u, f, rc, p: seen["disconnects"].append(rc)
    c.on_subscribe = lambda cl, u, mid, rcs, p: seen.__setitem__("suback", rcs)
    c.on_message = lambda cl, u, m: seen["messages"].append(m.topic)
    c.on_publish = lambda cl, u, mid, rc, p: seen["pubacks"].__setitem__(mid, rc)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    c.connect("127.0.0.1", port, clean_start=session_expiry == 0, properties=props)
    c.loop_start()
    return c, seen


def wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(cond())


def test_password_hash_format() -> None:
    h = hash_password("x", salt=b"0" * 12)
    assert h.startswith("$7$101$") and h.count("$") == 4


def test_missing_password_env_is_a_clear_error(tmp_path: Path, demo_site_path: Path) -> None:
    env = dict(PASSWORDS)
    del env["MB_GW_XIYUAN_2_PASSWORD"]
    with pytest.raises(BrokerConfigError, match="MB_GW_XIYUAN_2_PASSWORD"):
        write_broker_config(load_site(demo_site_path), tmp_path, env=env)


def test_cli_writes_the_config_and_the_accounts(
    tmp_path: Path, demo_site_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in PASSWORDS.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(
        app, ["broker", "config", "--site", str(demo_site_path), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    conf = (tmp_path / "b" / "mosquitto.conf").read_text()
    assert "autosave_interval 1" in conf and "allow_anonymous false" in conf
    assert "plugin_opt_config_file" in conf and "acl_file" not in conf
    accounts = json.loads((tmp_path / "b" / "dynamic-security.json").read_text())
    assert "pw-x1-secret" not in json.dumps(accounts)
    assert (tmp_path / "b" / "dynamic-security.json").stat().st_mode & 0o777 == 0o600
    monkeypatch.delenv("MB_CLOUD_PASSWORD")
    bad = CliRunner().invoke(
        app, ["broker", "config", "--site", str(demo_site_path), "--out", str(tmp_path / "c")]
    )
    assert bad.exit_code == 2 and "MB_CLOUD_PASSWORD" in bad.output


@pytest.mark.parametrize(
    "user, password",
    [
        ("gw-xiyuan-1", "wrong"),
        ("gw-xiyuan-1", "pw-x2-secret"),
        ("nobody", "x"),
        (None, None),
    ],
)
def test_wrong_credentials_refused(
    acl_broker: MosquittoProcess, user: str | None, password: str | None
) -> None:
    c, seen = client(acl_broker.port, user, password)
    try:
        assert wait(lambda: seen["connack"] is not None)
        assert seen["connack"].is_failure
    finally:
        c.loop_stop()


def test_uplink_with_wrong_password_never_connects(
    tmp_path: Path, acl_broker: MosquittoProcess
) -> None:
    rig = make_rig(X1, tmp_path / "o.db", acl_broker.port, username="gw-xiyuan-1", password="wrong")
    rig.uplink.start()
    rig.outbox.append(event(0))
    assert wait(lambda: len(rig.uplink.connect_refusals) >= 2, 10)  # keeps retrying, with backoff
    assert not rig.uplink.connected.is_set() and rig.outbox.depth == 1
    rig.close()


def test_gateway_confined_to_its_prefix(tmp_path: Path, acl_broker: MosquittoProcess) -> None:
    cloud, cloud_seen = client(acl_broker.port, "cloud", "pw-cloud")
    assert wait(lambda: cloud_seen["connack"] is not None) and not cloud_seen["connack"].is_failure
    cloud.subscribe("mb/v1/#", qos=1)
    assert wait(lambda: cloud_seen["suback"] is not None)

    gw, seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret")
    assert wait(lambda: seen["connack"] is not None) and not seen["connack"].is_failure
    own = gw.publish(X1.topic("event"), event(0).to_json(), qos=1)
    other = gw.publish(X2.topic("event"), event(1).to_json(), qos=1)
    own_cmd = gw.publish(X1.topic("cmd", "ack"), b"{}", qos=1)
    outside = gw.publish("elsewhere/topic", b"{}", qos=1)
    assert wait(lambda: len(seen["pubacks"]) == 4)
    assert not seen["pubacks"][own.mid].is_failure
    for refused in (other, own_cmd, outside):
        assert seen["pubacks"][refused.mid].is_failure  # MQTT 5: Not authorized
    assert wait(lambda: X1.topic("event") in cloud_seen["messages"])
    time.sleep(0.3)
    assert cloud_seen["messages"] == [X1.topic("event")]

    # another gateway's commands never reach it (mosquitto grants the subscription and
    # filters on delivery); its own do — the positive control
    gw.subscribe([(X2.subscription("cmd"), 1), (X1.subscription("cmd"), 1)])
    assert wait(lambda: seen["suback"] is not None)
    cloud.publish(X2.topic("cmd", "ack"), b"{}", qos=1)
    cloud.publish(X1.topic("cmd", "ack"), b"{}", qos=1)
    assert wait(lambda: X1.topic("cmd", "ack") in seen["messages"])
    time.sleep(0.3)
    assert X2.topic("cmd", "ack") not in seen["messages"]
    gw.loop_stop()
    cloud.loop_stop()


def test_authenticated_uplink_end_to_end(
    tmp_path: Path, acl_broker: MosquittoProcess, cloud_store
) -> None:
    store: CloudStore = cloud_store(acl_broker.port, "cloud", "pw-cloud")
    rig = make_rig(
        X1, tmp_path / "o.db", acl_broker.port, username="gw-xiyuan-1", password="pw-x1-secret"
    )
    rig.uplink.start()
    ids = [rig.outbox.append(event(k)).id for k in range(200)]
    rows = store.wait_for(str(X1), 200, 20)
    assert [i for _, i in rows] == ids
    assert wait(lambda: rig.outbox.depth == 0, 10)  # the cloud's acks passed the ACL too
    assert rig.uplink.refused_publishes == 0
    # the uplink's own attempt outside its prefix is refused by the broker
    rig.uplink.publish_raw(X2.topic("event"), event(9).to_json())
    assert wait(lambda: rig.uplink.refused_publishes == 1)
    rig.close()


def test_cloud_reads_through_a_shared_subscription(acl_broker: MosquittoProcess) -> None:
    cloud, cloud_seen = client(acl_broker.port, "cloud", "pw-cloud")
    assert wait(lambda: cloud_seen["connack"] is not None)
    cloud.subscribe("$share/cloud/mb/v1/+/+/+/#", qos=1)
    assert wait(lambda: cloud_seen["suback"] is not None)
    gw, seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret")
    assert wait(lambda: seen["connack"] is not None)
    gw.publish(X1.topic("reading"), b"{}", qos=1)
    assert wait(lambda: X1.topic("reading") in cloud_seen["messages"])
    gw.loop_stop()
    cloud.loop_stop()


def subscribed(c: mqtt.Client, seen: dict, topic_filter: str) -> list[ReasonCode]:
    """SUBSCRIBE one filter and wait for its SUBACK's reason codes."""
    seen["suback"] = None
    c.subscribe(topic_filter, qos=1)
    assert wait(lambda: seen["suback"] is not None), topic_filter
    return list(seen["suback"])


# issue 9 item 7: with the ACL file a gateway on $share/cloud/... took half the cloud's events
STOLEN_FILTERS = [
    "$share/cloud/mb/v1/+/+/+/event",
    "$share/x/mb/v1/#",
    "mb/v1/#",
    "#",
    "$share/cloud/" + X2.subscription("cmd"),
    X1.subscription("cmd"),
    "$CONTROL/dynamic-security/#",
    "$SYS/#",
]


def test_a_gateway_cannot_join_the_clouds_shared_subscription(acl_broker: MosquittoProcess) -> None:
    cloud, cloud_seen = client(acl_broker.port, "cloud", "pw-cloud", "mb-cloud-ingest-a")
    assert wait(lambda: cloud_seen["connack"] is not None) and not cloud_seen["connack"].is_failure
    assert not subscribed(cloud, cloud_seen, "$share/cloud/mb/v1/+/+/+/event")[0].is_failure
    thief, seen = client(acl_broker.port, "gw-xiyuan-2", "pw-x2-secret")
    assert wait(lambda: seen["connack"] is not None) and not seen["connack"].is_failure
    for topic_filter in STOLEN_FILTERS:
        codes = subscribed(thief, seen, topic_filter)
        assert codes[0].is_failure, (topic_filter, codes)  # refused in the SUBACK
    # its own commands stay open to it (the positive control)
    assert not subscribed(thief, seen, X2.subscription("cmd"))[0].is_failure

    gw, gw_seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret")
    assert wait(lambda: gw_seen["connack"] is not None) and not gw_seen["connack"].is_failure
    sent = [gw.publish(X1.topic("event"), event(k).to_json(), qos=1) for k in range(40)]
    assert wait(lambda: len(gw_seen["pubacks"]) == len(sent))
    assert not any(rc.is_failure for rc in gw_seen["pubacks"].values())
    # every PUBACKed event reaches the cloud, none the thief
    assert wait(lambda: len(cloud_seen["messages"]) == len(sent)), len(cloud_seen["messages"])
    cloud.publish(X2.topic("cmd", "ack"), b"{}", qos=1)  # a message the thief may get: a barrier
    assert wait(lambda: X2.topic("cmd", "ack") in seen["messages"])
    assert seen["messages"] == [X2.topic("cmd", "ack")]
    for c in (cloud, thief, gw):
        c.loop_stop()


# issue 9 item 8: a gateway's password with another gateway's client id
def test_a_gateway_cannot_take_over_another_gateways_session(acl_broker: MosquittoProcess) -> None:
    victim, seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret", session_expiry=3600)
    assert wait(lambda: seen["connack"] is not None) and not seen["connack"].is_failure
    assert not subscribed(victim, seen, X1.subscription("cmd"))[0].is_failure
    thief, thief_seen = client(
        acl_broker.port, "gw-xiyuan-2", "pw-x2-secret", gateway_client_id(X1)
    )
    assert wait(lambda: thief_seen["connack"] is not None)
    assert thief_seen["connack"].is_failure  # not authorised: the id is gw-xiyuan-1's
    thief.loop_stop()
    cloud, cloud_seen = client(acl_broker.port, "cloud", "pw-cloud", "mb-cloud-cmd-a")
    assert wait(lambda: cloud_seen["connack"] is not None) and not cloud_seen["connack"].is_failure
    cloud.publish(X1.topic("cmd", "ack"), b"1", qos=1)
    assert wait(lambda: X1.topic("cmd", "ack") in seen["messages"])
    assert seen["disconnects"] == [] and victim.is_connected()  # never kicked off

    # offline: commands queue in its session; a thief with a clean start must not wipe it
    victim.disconnect()
    victim.loop_stop()
    cloud.publish(X1.topic("cmd", "recheck"), b"2", qos=1)
    assert wait(lambda: len(cloud_seen["pubacks"]) == 2)
    thief, thief_seen = client(
        acl_broker.port, "gw-xiyuan-2", "pw-x2-secret", gateway_client_id(X1)
    )
    assert wait(lambda: thief_seen["connack"] is not None) and thief_seen["connack"].is_failure
    thief.loop_stop()
    back, back_seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret", session_expiry=3600)
    assert wait(lambda: X1.topic("cmd", "recheck") in back_seen["messages"])  # the session lived
    back.loop_stop()

    # its own login is bound to its own id: another id is refused, so no second copy of it
    other, other_seen = client(acl_broker.port, "gw-xiyuan-1", "pw-x1-secret", "mb-anything")
    assert wait(lambda: other_seen["connack"] is not None) and other_seen["connack"].is_failure
    other.loop_stop()
    # the cloud's logins are not bound: two ingest workers under one user coexist
    second, second_seen = client(acl_broker.port, "cloud", "pw-cloud", "mb-cloud-cmd-b")
    assert wait(lambda: second_seen["connack"] is not None)
    assert not second_seen["connack"].is_failure
    second.publish(X1.topic("cmd", "ack"), b"3", qos=1)
    assert wait(lambda: len(second_seen["pubacks"]) == 1)
    assert cloud.is_connected() and cloud_seen["disconnects"] == []
    cloud.loop_stop()
    second.loop_stop()
