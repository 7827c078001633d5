"""Simulated gateways for rollouts: real MQTT, real HTTP downloads, real signature and
hash checks, but no detector. Each one answers ``cmd/model`` as the gateway's model
manager does (the reply contract of issue #13) and then heartbeats the new serial; the
real gateway agent is tested in tests/edge. Used by the end-to-end test and by
scripts/bench_rollout.py (100 of them on loopback)."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.protocol import (
    GatewayPath,
    Health,
    ModelInstall,
    ModelRef,
    Reply,
    Status,
    decode,
)
from microbrain.protocol.payloads import GatewayState
from microbrain.signing import SignatureError, parse_public_key, verify_manifest


@dataclass
class Sim:
    """One simulated gateway: what it runs and the highest serial it trusts."""

    path: GatewayPath
    password: str
    model: tuple[str, str] = ("coco-ssd", "0")
    serial: int | None = None
    installed_at: float | None = None  # time.monotonic() of the swap
    received: list[int] = field(default_factory=list)  # serials of the commands it got


class SimulatedGateways:
    """Gateways answering model installs on the real broker: download with their own
    credentials, verify signature, serial, size and sha256, reply, heartbeat."""

    def __init__(
        self, host: str, port: int, cloud_api: str, public_key: str, *, workers: int = 8
    ) -> None:
        self.cloud_api = cloud_api.rstrip("/")
        self.key = parse_public_key(public_key)
        self.sims: dict[str, Sim] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="simgw")
        self.http = httpx.Client(timeout=30)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-simgw-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def add(self, path: GatewayPath, password: str, *, online: bool = True) -> Sim:
        sim = Sim(path, password)
        with self.lock:
            self.sims[path.gateway] = sim
        info = self.client.subscribe(path.topic("cmd", "model"), qos=1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS
        if online:
            self.heartbeat(sim)
        return sim

    def heartbeat(self, sim: Sim) -> None:
        health = Health(
            cpu_percent=5,
            memory_mb=200,
            disk_free_mb=5000,
            model=ModelRef(name=sim.model[0], version=sim.model[1]),
            model_serial=sim.serial,
        )
        status = Status(state=GatewayState.ONLINE, health=health, ts=datetime.now(UTC))
        self.client.publish(sim.path.topic("status"), status.to_json(), qos=1, retain=True)

    def offline(self, sim: Sim) -> None:
        status = Status(state=GatewayState.OFFLINE, ts=datetime.now(UTC))
        self.client.publish(sim.path.topic("status"), status.to_json(), qos=1, retain=True)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = decode(msg.topic, bytes(msg.payload)).payload
        if isinstance(command, ModelInstall):
            sim = self.sims.get(msg.topic.split("/")[4])
            if sim is not None:
                self.pool.submit(self._install, sim, command)

    def _reply(self, sim: Sim, command: ModelInstall, ok: bool, reason: str | None,
               **detail: str | float) -> None:  # fmt: skip
        if command.rollout is not None:
            detail["rollout"] = command.rollout
        reply = Reply(command_id=command.id, name="model", ok=ok, reason=reason, detail=detail)
        self.client.publish(sim.path.topic("reply", "model"), reply.to_json(), qos=1)

    def _install(self, sim: Sim, command: ModelInstall) -> None:
        try:
            manifest = verify_manifest(self.key, command.manifest, command.signature)
        except SignatureError as err:
            self._reply(sim, command, False, str(err), state="refused")
            return
        sim.received.append(manifest.serial)
        running = {"running_version": sim.model[1]}
        if sim.serial is not None and manifest.serial == sim.serial:
            self._reply(sim, command, True, None, state="installed", serial=manifest.serial,
                        model=manifest.name, version=manifest.version, smoke_ms=1.0)  # fmt: skip
            return
        if sim.serial is not None and manifest.serial < sim.serial:
            self._reply(sim, command, False, "serial not newer than the trusted one",
                        state="refused", serial=manifest.serial, **running)  # fmt: skip
            return
        url = command.url if "://" in command.url else self.cloud_api + command.url
        r = self.http.get(url, auth=(sim.path.gateway, sim.password))
        if r.status_code != 200:
            self._reply(sim, command, False, f"download: HTTP {r.status_code}",
                        state="failed", serial=manifest.serial, **running)  # fmt: skip
            return
        if len(r.content) != manifest.bytes or (
            hashlib.sha256(r.content).hexdigest() != manifest.sha256
        ):
            self._reply(sim, command, False, "the file's sha256 does not match the manifest",
                        state="refused", serial=manifest.serial, **running)  # fmt: skip
            return
        sim.model, sim.serial, sim.installed_at = (
            (manifest.name, manifest.version),
            manifest.serial,
            time.monotonic(),
        )
        self._reply(sim, command, True, None, state="installed", serial=manifest.serial,
                    model=manifest.name, version=manifest.version, smoke_ms=1.0)  # fmt: skip
        self.heartbeat(sim)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for sim in self.sims.values():  # no retained status left behind on the shared broker
            self.client.publish(sim.path.topic("status"), b"", qos=1, retain=True).wait_for_publish(
                5
            )
        self.client.disconnect()
        self.client.loop_stop()
        self.http.close()
