"""Subscribe to the devices' topics on the gateway's local broker and feed the hub.

Messages are handled on paho's network thread one at a time, so a flooding device is
slowed down by TCP and the broker's own per-client queue limit, never buffered here.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.sensors.hub import SensorHub

log = logging.getLogger(__name__)


class LocalSensorClient:
    def __init__(
        self,
        hub: SensorHub,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
        keepalive_s: int = 30,
    ) -> None:
        self.hub = hub
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.client.username_pw_set(username, password)
        # paho annotates the delays as int; it only multiplies and sleeps them, 0.5 s works
        self.client.reconnect_delay_set(0.5, 30)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.keepalive_s = keepalive_s
        # True once the broker granted every topic (its SUBACK), not when we asked
        self.subscribed = False
        self._subscribe_mid: int | None = None

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, self.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> str | None:
        """Send a command to a device on the local broker; None when it went out (or, at
        QoS 1, is in flight), else why not. Never queued while disconnected: a command
        that arrives late (doors held for an e-bike long gone) is worse than none."""
        if not self.client.is_connected():
            return f"the local broker {self.host}:{self.port} is not connected"
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}"
        return None

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("local sensor broker refused us: %s", reason_code)
            return
        self.subscribed = False
        topics = self.hub.topics
        if not topics:
            self.subscribed = True  # nothing to ask for
            return
        _, self._subscribe_mid = client.subscribe([(t, 1) for t in topics])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [t for t, rc in zip(self.hub.topics, reason_codes, strict=False) if rc.is_failure]
        if refused:
            log.error("local sensor broker refused the subscription to %s", ", ".join(refused[:5]))
            return
        self.subscribed = True
        log.info(
            "listening to %d sensor topic(s) on %s:%s", len(self.hub.topics), self.host, self.port
        )

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self.hub.handle(message.topic, bytes(message.payload))
        except Exception:  # one bad message must never stop the sensors
            log.exception("sensor message on %s could not be handled", message.topic[:128])
