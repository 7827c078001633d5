"""Registry fixtures: a real (tiny) ONNX model, the API over a migrated database with a
clock the test moves, a command sender on the real broker, gateways with credentials."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.commands import MqttCommandSender
from cloud.console import mount_console
from cloud.db import transaction
from cloud.ingest.store import Incoming, store_batch
from cloud.permissions import Role
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath, Health, ModelRef, Reply, Status
from microbrain.protocol.payloads import GatewayState
from tests.cloud.helpers import DEVICES, unique_gateway

PASSWORD = "correct horse battery"
GATEWAY_PASSWORD = "gw-secret-1"


def onnx_model(
    path: Path, *, names: str | None = "{0: 'person', 1: 'ebike', 2: 'dog'}", scale: float = 1.0
) -> Path:
    """A tiny real ONNX model (images × scale) with ultralytics-style metadata."""
    weight = numpy_helper.from_array(np.array([scale], dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["images", "w"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 64, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        for key, value in (("names", names), ("imgsz", "[64, 64]")):
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
    onnx.save(model, path)
    return path


def evaluation(candidate_map: float = 0.6, deployed_map: float = 0.5) -> dict[str, Any]:
    def scores(name: str, map50: float) -> dict[str, Any]:
        return {
            "model": name,
            "map50": map50,
            "map50_95": map50 / 2,
            "event_precision": 0.9,
            "event_recall": 0.8,
            "events_expected": 10,
            "events_raised": 9,
        }

    return {
        "candidate": scores("cand", candidate_map),
        "deployed": scores("dep", deployed_map),
        "images": 20,
        "scenarios": 3,
    }


def registered_gateway(
    factory: sessionmaker[Session], now: datetime, compound: str = "compound-1"
) -> GatewayPath:
    """A gateway unique to the test, registered, with broker credentials."""
    path = unique_gateway(compound)
    with transaction(factory) as s:
        register_gateway(s, path.community, path.compound, path.gateway, building="b1", **DEVICES)
        auth.set_gateway_password(s, path.gateway, GATEWAY_PASSWORD, now=now)
    return path


@dataclass
class Registry:
    """The API with the registry, a clock, the command sender, and helpers."""

    client: TestClient
    factory: sessionmaker[Session]
    clock: ManualClock
    settings: Settings
    state: ApiState
    tmp: Path
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # model names unique to the test: PostgreSQL's database is shared by the session
    name: str = field(default_factory=lambda: f"m-{uuid.uuid4().hex[:8]}")

    def user(self, role: Role, **scope: str | None) -> dict[str, str]:
        name = self.named_user(role, **scope)
        r = self.client.post("/api/auth/token", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def named_user(self, role: Role, **scope: str | None) -> str:
        name = f"u-{uuid.uuid4().hex[:8]}"
        with transaction(self.factory) as s:
            auth.create_user(s, name, PASSWORD, role, now=self.clock(), **scope)
        return name

    def gateway(self, compound: str = "compound-1") -> GatewayPath:
        return registered_gateway(self.factory, self.clock(), compound)

    def upload(self, name: str, version: str, headers: dict[str, str], **form: Any) -> Any:
        path = onnx_model(self.tmp / f"{uuid.uuid4().hex[:8]}.onnx", scale=float(len(version)))
        form.setdefault("evaluation", json.dumps(evaluation()))
        with path.open("rb") as f:
            return self.client.post(
                "/api/models",
                headers=headers,
                files={"file": (path.name, f, "application/octet-stream")},
                data={"name": name, "version": version, **form},
            )

    def ingest(self, gw: GatewayPath, *payloads: Status | Reply) -> None:
        now = self.clock()
        msgs = [
            Incoming(gw.topic(p.type, p.name if isinstance(p, Reply) else None), p.to_json(), now)
            for p in payloads
        ]
        with self.factory() as session, session.begin():
            store_batch(session, msgs, now)

    def heartbeat(
        self, gw: GatewayPath, model: tuple[str, str] | None = None, serial: int | None = None
    ) -> None:
        health = Health(
            cpu_percent=10,
            memory_mb=100,
            disk_free_mb=1000,
            model=ModelRef(name=model[0], version=model[1]) if model else None,
            model_serial=serial,
        )
        self.ingest(gw, Status(state=GatewayState.ONLINE, ts=self.clock(), health=health))

    def offline(self, gw: GatewayPath) -> None:
        self.ingest(gw, Status(state=GatewayState.OFFLINE, ts=self.clock()))

    def reply(self, gw: GatewayPath, ok: bool, reason: str | None = None, **detail: Any) -> None:
        self.ingest(gw, Reply(name="model", ok=ok, reason=reason, detail=detail, ts=self.clock()))


@pytest.fixture
def registry(factory, broker, tmp_path) -> Iterator[Registry]:
    host, port = broker
    settings = Settings(
        environment="test",
        broker_url=f"mqtt://{host}:{port}",
        evidence_dir=tmp_path / "evidence",
        model_resend_s=60,
    )
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    sender = MqttCommandSender(settings)
    state = ApiState(settings=settings, factory=factory, clock=clock, commands=sender)
    app = create_api(state)
    mount_console(app, state)  # the models page reads the same views
    try:
        with TestClient(app) as client:
            reg = Registry(client, factory, clock, settings, state, tmp_path)
            reg.headers["engineer"] = reg.user(Role.ENGINEER)
            yield reg
    finally:
        sender.close()
