"""BufferedClient against a real Mosquitto: every packet arrives, whole and in order, and
packets already read into the buffer are handled in the same ``loop_read``."""

from __future__ import annotations

import select
import socket
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from microbrain.broker.buffered_client import READ_CHUNK, BufferedClient
from tests.utils.services import MosquittoProcess


def _subscriber(port: int, topic: str, got: list[bytes]) -> BufferedClient:
    sub = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id=f"buf-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    sub.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    sub.connect("127.0.0.1", port)
    subscribed: list[int] = []
    sub.on_subscribe = lambda *_a: subscribed.append(1)
    sub.subscribe(topic, qos=0)
    deadline = time.monotonic() + 10
    while not subscribed and time.monotonic() < deadline:
        sub.loop(timeout=0.1)
    assert subscribed, "no SUBACK within 10 s"
    return sub


def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def _wait_readable_bytes(sock: socket.socket, n: int, timeout: float = 10.0) -> None:
    """Poll (not sleep) until ``n`` bytes wait in the socket, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([sock], [], [], 0.05)
        if len(sock.recv(n, socket.MSG_PEEK | socket.MSG_DONTWAIT)) >= n:
            return
    raise AssertionError(f"{n} bytes did not arrive within {timeout} s")


def test_buffered_packets_are_handled_in_one_loop_read(mosquitto: MosquittoProcess) -> None:
    # plain paho handles one packet per loop_read here (nothing of ours is in flight):
    # the others would wait in our buffer, unseen by select(), until more bytes came
    topic = f"t/{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    sub = _subscriber(mosquitto.port, topic, got)
    payloads = [f"m{i:04d}".encode() for i in range(200)]
    _publish(mosquitto.port, topic, payloads)
    sock = sub.socket()
    assert isinstance(sock, socket.socket)
    # each PUBLISH: 2 header bytes, 2 + len(topic), 1 (no properties), the payload
    _wait_readable_bytes(sock, 200 * (2 + 2 + len(topic) + 1 + 5))
    assert sub.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == payloads
    sub.disconnect()


def test_large_payloads_across_chunks_arrive_whole_and_in_order(
    mosquitto: MosquittoProcess,
) -> None:
    topic = f"t/{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    sub = _subscriber(mosquitto.port, topic, got)
    sub.loop_start()
    # sizes around and above the read chunk: a packet split over two or more reads
    sizes = [10, READ_CHUNK - 7, 3, 3 * READ_CHUNK + 11, 1, READ_CHUNK, 500] * 5
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    _publish(mosquitto.port, topic, payloads)
    deadline = time.monotonic() + 30
    while len(got) < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.02)
    sub.disconnect()
    sub.loop_stop()
    assert got == payloads
