"""Small factories for the cloud tests: a real paho publisher, a waiting helper,
a unique gateway, workers against the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.protocol import Ack, Event, GatewayPath, Reading, decode

# the cameras and sensors the factories below send from: register them with the gateway
# (``register_gateway(..., **DEVICES)``), or the ingest refuses their items (unknown_device)
DEVICES: dict[str, tuple[str, ...]] = {"cameras": ("cam-0", "cam-1", "cam-2"), "sensors": ("h1",)}


def unique_gateway(compound: str = "compound-1") -> GatewayPath:
    tag = uuid.uuid4().hex[:8]
    return GatewayPath(f"t-{tag}", compound, f"gw-{tag}")


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, every: float = 0.02) -> Any:
    # polled: a generous deadline costs nothing when the condition comes true, and a
    # loaded machine (load 11 on 2 cores) took more than 10 s to store one batch
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


@contextmanager
def mqtt_client(host: str, port: int, client_id: str | None = None) -> Iterator[mqtt.Client]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def ack_of(msg: mqtt.MQTTMessage) -> Ack:
    """The :class:`Ack` a cmd/ack message carries (a test subscribes to that topic only)."""
    ack = decode(msg.topic, bytes(msg.payload)).payload
    assert isinstance(ack, Ack), f"{msg.topic}: expected an Ack, got {type(ack).__name__}"
    return ack


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes]], qos: int = 1) -> None:
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(10)


def event(seq: int, **kw: Any) -> Event:
    base: dict[str, Any] = {
        "seq": seq,
        "kind": "illegal_parking",
        "source": "cam-1",
        "zone": "fire-lane",
        "building": "b1",
    }
    base.update(kw)
    return Event(**base)


def reading(seq: int, **kw: Any) -> Reading:
    base: dict[str, Any] = {
        "seq": seq,
        "sensor": "h1",
        "kind": "hydrant_pressure",
        "building": "b1",
        "values": {"pressure_mpa": 0.3},
    }
    base.update(kw)
    return Reading(**base)


def topic(gw: GatewayPath, item: Event | Reading) -> tuple[str, bytes]:
    return gw.topic(item.type), item.to_json()


def ingest(factory, gw: GatewayPath, items, now=None):
    """Store items through the real decode/store path in one transaction (no MQTT)."""
    from datetime import UTC, datetime

    from cloud.ingest.store import Incoming, store_batch

    now = now or datetime.now(UTC)
    msgs = [Incoming(*topic(gw, i), now) if not isinstance(i, Incoming) else i for i in items]
    with factory() as session, session.begin():
        return store_batch(session, msgs, now)
