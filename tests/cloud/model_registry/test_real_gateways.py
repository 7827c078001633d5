"""The whole model lifecycle with nothing simulated: the cloud (API, ingest, scheduler)
under uvicorn, two real gateway agents running a real ONNX model on their cameras, a
private Mosquitto between them. A model uploaded to the registry rolls out canary
first; the second gateway, off during the rollout, gets it when it comes back; both
heartbeats show the new version. A model whose stored file was altered on the cloud's
disk is refused by the gateway (its sha256 is not the signed one), the rollout aborts,
and the previous model keeps running."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from cloud import auth
from cloud.app import CloudService
from cloud.db import transaction
from cloud.permissions import Role
from cloud.settings import Settings
from edge.agent import GatewayAgent
from edge.config import load_gateway_config
from microbrain.site import load_site
from tests.cloud.helpers import wait_for
from tests.cloud.model_registry.conftest import PASSWORD, evaluation
from tests.edge.model_update.helpers import tiny_model, watch_what_tiny_models_see
from tests.utils.api_server import serve
from tests.utils.services import MosquittoProcess

GATEWAYS = {"gw-xiyuan-1": "MB_GW_XIYUAN_1_PASSWORD", "gw-xiyuan-2": "MB_GW_XIYUAN_2_PASSWORD"}


def _site(demo_site_path: Path, tmp_path: Path, model: Path) -> Path:
    """The demo site with one camera and the small ONNX model on each xiyuan gateway."""
    doc = yaml.safe_load(demo_site_path.read_text())
    for community in doc["communities"]:
        for compound in community["compounds"]:
            for gw in compound.get("gateways", []):
                if gw["id"] in GATEWAYS:
                    gw["cameras"] = [watch_what_tiny_models_see(gw["cameras"][0])]
                    gw["detector"] = {"type": "onnx_yolo", "model": str(model)}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


class Agents:
    def __init__(self, site: Path, broker: int, api: str, key: Path, tmp: Path) -> None:
        self.site, self.broker, self.api, self.key, self.tmp = site, broker, api, key, tmp
        self.running: dict[str, tuple[GatewayAgent, threading.Thread]] = {}

    def start(self, gateway: str) -> GatewayAgent:
        config = self.tmp / f"{gateway}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "site": str(self.site),
                    "gateway": gateway,
                    "cloud": {"url": f"mqtt://127.0.0.1:{self.broker}"},
                    "cloud_api": self.api,
                    "data_dir": str(self.tmp / gateway),
                    "heartbeat_s": 1,
                    "loop_recordings": True,
                    "model_key": str(self.key),
                    "model_update": {"retry_backoff_s": 0.1},
                }
            )
        )
        cfg = load_gateway_config(config)
        agent = GatewayAgent(cfg, load_site(cfg.site))
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        assert agent.uplink.wait_connected(15)
        self.running[gateway] = (agent, thread)
        return agent

    def stop_all(self) -> None:
        for agent, thread in self.running.values():
            agent.stop()
            thread.join(20)


@pytest.fixture
def cloud(
    mosquitto: MosquittoProcess,
    sqlite_cloud_url: str,
    tmp_path: Path,
    demo_site_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[CloudService, str, Path]]:
    for variable in GATEWAYS.values():  # the cloud stores them as the gateways' logins
        monkeypatch.setenv(variable, f"pw-{variable.lower()}")
    site = _site(demo_site_path, tmp_path, tiny_model(tmp_path / "site-model.onnx", 100))
    settings = Settings(
        database_url=sqlite_cloud_url,
        broker_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
        admin_password=SecretStr(f"pw-{uuid.uuid4().hex}"),
        evidence_dir=tmp_path / "evidence",
        scheduler_interval_s=0.2,
        model_resend_s=3,
    )
    service = CloudService(settings, site=load_site(site), site_path=site)
    with serve(service.app, start_timeout=60) as served:
        yield service, served.url, site


def test_a_rollout_reaches_real_gateway_agents(
    cloud: tuple[CloudService, str, Path], mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    service, base, site = cloud
    key = tmp_path / "model.key"
    key.write_text(httpx.get(f"{base}/api/models/key").text)
    agents = Agents(site, mosquitto.port, base, key, tmp_path)
    user = f"eng-{uuid.uuid4().hex[:6]}"
    with transaction(service.factory) as s:
        auth.create_user(s, user, PASSWORD, Role.ENGINEER, now=service.clock())
    http = httpx.Client(base_url=base, timeout=30)
    token = http.post("/api/auth/token", json={"username": user, "password": PASSWORD})
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def upload(version: str, x: float) -> dict:
        model = tiny_model(tmp_path / f"{version}.onnx", x)
        with model.open("rb") as f:
            r = http.post(
                "/api/models",
                files={"file": (model.name, f)},
                data={
                    "name": "mb-test",
                    "version": version,
                    "evaluation": json.dumps(evaluation()),
                },
            )
        assert r.status_code == 201, r.text
        return r.json()

    def rollout(rollout_id: int) -> dict:
        return http.get(f"/api/rollouts/{rollout_id}").json()

    def gateway_state(rollout_id: int, gateway: str) -> str:
        return next(g["state"] for g in rollout(rollout_id)["gateways"] if g["gateway"] == gateway)

    def runs(agent: GatewayAgent, serial: int | None) -> bool:
        health = agent.status().health
        return health is not None and health.model_serial == serial

    try:
        first = agents.start("gw-xiyuan-1")
        model = upload("2.0", 200)
        r = http.post(
            "/api/rollouts",
            json={
                "model_id": model["id"],
                "target": {"kind": "community", "ids": ["xiyuan"]},
                "canary": ["gw-xiyuan-1"],
                "canary_healthy_s": 2,
            },
        )
        assert r.status_code == 201, r.text
        roll = r.json()
        serial = roll["serial"]
        # the canary installs it; the other gateway (off) waits
        assert wait_for(lambda: gateway_state(roll["id"], "gw-xiyuan-1") == "installed", 90)
        assert wait_for(lambda: runs(first, serial), 30)
        health = first.status().health
        assert health is not None and health.model is not None
        assert health.model.version == "2.0"
        assert gateway_state(roll["id"], "gw-xiyuan-2") in ("pending", "sent")
        # promoted after its healthy time, the second gets it once it is back
        assert wait_for(lambda: rollout(roll["id"])["state"] == "rolling", 60)
        second = agents.start("gw-xiyuan-2")
        assert wait_for(lambda: gateway_state(roll["id"], "gw-xiyuan-2") == "installed", 90)
        assert wait_for(lambda: runs(second, serial), 30)
        assert wait_for(lambda: rollout(roll["id"])["state"] == "done", 30)
        # the cloud sees the new model on both, from their heartbeats
        assert wait_for(
            lambda: (
                {g["gateway"] for g in http.get(f"/api/models/{model['id']}").json()["running_on"]}
                >= set(GATEWAYS)
            ),
            30,
        )

        # a file altered on the cloud's disk after it was registered: refused, aborted
        bad = upload("3.0", 240)
        stored = service.settings.model_files / f"{bad['sha256']}.onnx"
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        r = http.post(
            "/api/rollouts",
            json={
                "model_id": bad["id"],
                "target": {"kind": "gateway", "ids": ["gw-xiyuan-1"]},
                "canary": ["gw-xiyuan-1"],
                "canary_healthy_s": 2,
            },
        )
        assert r.status_code == 201, r.text
        bad_roll = r.json()
        assert wait_for(lambda: rollout(bad_roll["id"])["state"] == "aborted", 90)
        refused = next(g for g in rollout(bad_roll["id"])["gateways"])
        assert refused["state"] in ("refused", "failed")
        assert "sha256" in (refused["reason"] or ""), refused
        assert runs(first, serial)  # the previous model still runs
    finally:
        agents.stop_all()
        http.close()
