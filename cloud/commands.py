"""Commands to gateways (``cmd/<name>``), published by the cloud after its commits."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.settings import Settings
from microbrain.protocol import Command, GatewayPath

log = logging.getLogger(__name__)


class CommandSender(Protocol):
    def send(self, path: GatewayPath, command: Command) -> None: ...


class MqttCommandSender:
    """A small QoS 1 publisher of its own (the ingest's client is busy with its batches)."""

    def __init__(self, settings: Settings) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"mb-cloud-cmd-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        user, password = settings.broker_credentials
        if user:
            self.client.username_pw_set(user, password)
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a, **k: self._connected.clear()
        self.client.connect_async(settings.broker_host, settings.broker_port)
        self.client.loop_start()

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _props: Properties | None = None,
    ) -> None:
        # a refused CONNACK (bad credentials, not authorised) is not a connection
        if reason_code.is_failure:
            log.error("broker refused the command connection: %s", reason_code)
            return
        self._connected.set()

    def send(self, path: GatewayPath, command: Command) -> None:
        topic = path.topic("cmd", command.name)
        self._connected.wait(5)
        self.client.publish(topic, command.to_json(), qos=1)
        log.info("sent %s to %s", command.name, path)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
