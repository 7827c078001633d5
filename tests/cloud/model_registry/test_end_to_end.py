"""The whole cloud (API, ingest, scheduler) under uvicorn on the real broker, rolling a
model out to simulated gateways that download it over HTTP with their credentials and
answer on MQTT: canary first, the rest after its healthy time, an offline gateway when it
is back, then a signed rollback."""

from __future__ import annotations

import json
import uuid

import httpx
from pydantic import SecretStr

from cloud import auth
from cloud.app import CloudService
from cloud.db import models as m
from cloud.db import transaction
from cloud.permissions import Role
from cloud.settings import Settings
from tests.cloud.helpers import wait_for
from tests.cloud.model_registry.conftest import (
    GATEWAY_PASSWORD,
    PASSWORD,
    evaluation,
    onnx_model,
    registered_gateway,
)
from tests.cloud.model_registry.simulated import SimulatedGateways
from tests.utils.api_server import serve


def test_rollout_through_the_running_cloud_to_simulated_gateways(
    broker, sqlite_cloud_url, tmp_path
):
    host, port = broker
    settings = Settings(
        database_url=sqlite_cloud_url,  # both stores: the other tests here
        broker_url=f"mqtt://{host}:{port}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
        admin_password=SecretStr(f"pw-{uuid.uuid4().hex}"),
        evidence_dir=tmp_path / "evidence",
        scheduler_interval_s=0.1,
        model_resend_s=5,
    )
    service = CloudService(settings)
    with serve(service.app) as served:  # stopped after the simulated gateways
        base = served.url
        name = f"m-{uuid.uuid4().hex[:8]}"
        user = f"eng-{uuid.uuid4().hex[:6]}"
        with transaction(service.factory) as s:
            auth.create_user(s, user, PASSWORD, Role.ENGINEER, now=service.clock())
        paths = [registered_gateway(service.factory, service.clock()) for _ in range(3)]
        sims = SimulatedGateways(host, port, base, httpx.get(f"{base}/api/models/key").text)
        try:
            http = httpx.Client(base_url=base, timeout=30)
            token = http.post("/api/auth/token", json={"username": user, "password": PASSWORD})
            http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            ids: list[int] = []
            for version in ("1.0.0", "1.1.0"):
                model = onnx_model(tmp_path / f"{version}.onnx", scale=float(len(ids) + 1))
                with model.open("rb") as f:
                    r = http.post(
                        "/api/models",
                        files={"file": (model.name, f)},
                        data={
                            "name": name,
                            "version": version,
                            "evaluation": json.dumps(evaluation()),
                        },
                    )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            a, b, c = (sims.add(p, GATEWAY_PASSWORD, online=p is not paths[2]) for p in paths)
            for sim in (a, b, c):
                sim.model = (name, "1.0.0")
            sims.offline(c)
            for sim in (a, b):
                sims.heartbeat(sim)

            def gateway_states() -> dict[str, str]:
                with service.factory() as s:
                    return {p.gateway: s.get_one(m.Gateway, p.gateway).state for p in paths}

            expected = {
                a.path.gateway: "online",
                b.path.gateway: "online",
                c.path.gateway: "offline",
            }
            wait_for(lambda: gateway_states() == expected)
            r = http.post(
                "/api/rollouts",
                json={
                    "model_id": ids[1],
                    "target": {"kind": "gateway", "ids": [p.gateway for p in paths]},
                    "canary": [a.path.gateway],
                    "canary_healthy_s": 2,
                },
            )
            assert r.status_code == 201, r.text
            made = r.json()

            def rollout(rid: int) -> dict:
                return http.get(f"/api/rollouts/{rid}").json()

            wait_for(lambda: a.serial == made["serial"])
            assert b.received == [] and c.received == []  # the canary alone, first
            wait_for(lambda: b.serial == made["serial"])
            assert b.installed_at is not None and a.installed_at is not None
            assert b.installed_at - a.installed_at >= 2.0  # after the canary's healthy time
            assert c.received == [] and rollout(made["id"])["state"] == "rolling"
            # the offline gateway comes back: it gets the model and the rollout completes
            sims.heartbeat(c)
            wait_for(lambda: rollout(made["id"])["state"] == "done")
            body = rollout(made["id"])
            assert body["counts"] == {"installed": 3}
            assert {g["running_version"] for g in body["gateways"]} == {f"{name}@1.1.0"}
            # the signed way back: a higher serial, the old version, accepted by every gateway
            r = http.post(f"/api/rollouts/{made['id']}/rollback", json={})
            assert r.status_code == 201, r.text
            back = r.json()
            assert back["serial"] > made["serial"] and back["rollback"]
            wait_for(lambda: rollout(back["id"])["state"] == "done")
            assert {sim.model for sim in (a, b, c)} == {(name, "1.0.0")}
            assert {sim.serial for sim in (a, b, c)} == {back["serial"]}
            wait_for(
                lambda: (
                    {r["gateway"] for r in http.get(f"/api/models/{ids[0]}").json()["running_on"]}
                    == {p.gateway for p in paths}
                )
            )
        finally:
            sims.close()
