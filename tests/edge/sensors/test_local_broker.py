"""The sensor client reports ``subscribed`` only once the broker granted the topics."""

from __future__ import annotations

import socket
import threading
import time

from edge.sensors.hub import SensorHub
from edge.sensors.local_broker import LocalSensorClient
from microbrain.site.model import Site
from tests.utils.services import MosquittoProcess


def wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


def sensor_client(demo_site: Site, port: int) -> LocalSensorClient:
    hub = SensorHub(demo_site, demo_site.gateway("gw-xiyuan-1"), lambda items: None)
    return LocalSensorClient(hub, "127.0.0.1", port, client_id="mb-sensors-test")


def test_subscribed_after_the_suback(demo_site: Site, mosquitto: MosquittoProcess) -> None:
    client = sensor_client(demo_site, mosquitto.port)
    client.start()
    try:
        assert wait(lambda: client.subscribed)
    finally:
        client.stop()


class HoldingProxy:
    """A TCP relay to the broker that passes the broker's CONNACK (4 bytes in MQTT
    3.1.1) and holds everything after it until :meth:`release`: the SUBACK is late."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.released = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.socks: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        down, _ = self.server.accept()
        up = socket.create_connection(("127.0.0.1", self.target))
        self.socks += [down, up]
        threading.Thread(target=self._pipe, args=(down, up, None), daemon=True).start()
        self._pipe(up, down, 4)

    def _pipe(self, src: socket.socket, dst: socket.socket, free: int | None) -> None:
        try:
            while data := src.recv(65536):
                if free is not None:
                    dst.sendall(data[:free])
                    data, free = data[free:], max(0, free - len(data))
                    if not free:
                        self.released.wait()
                        free = None
                if data:
                    dst.sendall(data)
        except OSError:
            pass

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        for s in self.socks:
            s.close()


def test_not_subscribed_until_the_broker_acknowledges(
    demo_site: Site, mosquitto: MosquittoProcess
) -> None:
    proxy = HoldingProxy(mosquitto.port)
    client = sensor_client(demo_site, proxy.port)
    client.start()
    try:
        assert wait(client.client.is_connected)  # CONNACK through, SUBACK held
        time.sleep(0.5)
        assert not client.subscribed
        proxy.release()
        assert wait(lambda: client.subscribed)
    finally:
        client.stop()
        proxy.close()


def test_a_device_command_goes_out_and_a_broker_gone_is_named_not_queued(
    demo_site: Site, mosquitto: MosquittoProcess
) -> None:
    """The elevator guard's commands (hold the doors) go out on the local broker; with
    the broker gone the client says so at once instead of queueing a command that would
    reach the lift long after the e-bike left."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[bytes] = []
    lift = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lift")
    lift.on_message = lambda c, u, m: got.append(bytes(m.payload))
    granted = threading.Event()
    lift.on_subscribe = lambda *_: granted.set()
    lift.connect("127.0.0.1", mosquitto.port)
    lift.subscribe("devices/elevator/b1-a/cmd", qos=1)
    lift.loop_start()
    client = sensor_client(demo_site, mosquitto.port)
    client.start()
    try:
        assert granted.wait(30) and wait(lambda: client.subscribed)
        assert client.publish("devices/elevator/b1-a/cmd", b'{"cmd":"hold_door_open"}', 1) is None
        assert wait(lambda: got == [b'{"cmd":"hold_door_open"}'])
        mosquitto.stop()
        assert wait(lambda: not client.client.is_connected())
        reason = client.publish("devices/elevator/b1-a/cmd", b'{"cmd":"release_door"}', 1)
        assert reason == f"the local broker 127.0.0.1:{mosquitto.port} is not connected"
    finally:
        lift.loop_stop()
        client.stop()
