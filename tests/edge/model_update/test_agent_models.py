"""The whole gateway agent over a real broker: a camera on real video runs a real ONNX
model; signed models arrive on ``cmd/model``, download from a real HTTP server with the
gateway's credentials, and show in the heartbeat; a bad one is refused with the old
model still running; an install sent while the gateway is offline arrives when it is
back; an old serial replayed after a restart is refused."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from edge.agent import GatewayAgent
from edge.config import load_gateway_config
from microbrain.protocol import Reply, Status
from microbrain.site import load_site
from tests.edge.model_update.helpers import (
    FileServer,
    Registry,
    file_server,
    tiny_model,
    watch_what_tiny_models_see,
)
from tests.edge.uplink.test_agent import Observer, wait
from tests.utils.services import MosquittoProcess

PASSWORD = "gw-password"


@pytest.fixture(autouse=True)
def gateway_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_GW_XIYUAN_1_PASSWORD", PASSWORD)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as s:
        # the agent's own credentials: its gateway id and broker password
        s.auth = "Basic " + base64.b64encode(f"gw-xiyuan-1:{PASSWORD}".encode()).decode()
        yield s


def one_camera_site(tmp_path: Path, demo_site_path: Path, model: Path) -> Path:
    """The demo site, its gateway with one camera (vtest) and a small ONNX model."""
    doc = yaml.safe_load(demo_site_path.read_text())

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("id") == "gw-xiyuan-1":
                node["cameras"] = [watch_what_tiny_models_see(node["cameras"][0])]
                node["detector"] = {"type": "onnx_yolo", "model": str(model)}
                return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


@pytest.fixture
def agents(
    tmp_path: Path,
    demo_site_path: Path,
    mosquitto: MosquittoProcess,
    server: FileServer,
    registry: Registry,
) -> Iterator[Callable[[], tuple[GatewayAgent, threading.Thread]]]:
    site = one_camera_site(tmp_path, demo_site_path, tiny_model(tmp_path / "site.onnx", 100))
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "site": str(site),
                "gateway": "gw-xiyuan-1",
                "cloud": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"},
                "cloud_api": server.url,
                "data_dir": str(tmp_path / "data"),
                "heartbeat_s": 1,
                "loop_recordings": True,
                "model_key": str(registry.key_file(tmp_path)),
                "model_update": {"retry_backoff_s": 0.1},
            }
        )
    )
    started: list[tuple[GatewayAgent, threading.Thread]] = []

    def start() -> tuple[GatewayAgent, threading.Thread]:
        cfg = load_gateway_config(cfg_path)
        agent = GatewayAgent(cfg, load_site(cfg.site))
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        started.append((agent, thread))
        assert agent.uplink.wait_connected(15)
        return agent, thread

    yield start
    for agent, thread in started:
        agent.stop()
        thread.join(20)


@pytest.fixture
def registry() -> Registry:
    return Registry()


def reply_to(observer: Observer, command_id: str, timeout: float = 60) -> Reply:
    def find() -> Reply | None:
        return next((r for r in observer.replies() if r.command_id == command_id), None)

    assert wait(find, timeout), f"no reply to {command_id}"
    reply = find()
    assert reply is not None
    return reply


def heartbeat_serial(observer: Observer, serial: int | None, version: str | None) -> bool:
    def beats() -> list[Status]:
        return [s for s in observer.statuses() if s.health is not None]

    def shows() -> bool:
        last = beats()
        if not last or last[-1].health is None:
            return False
        h = last[-1].health
        return h.model_serial == serial and (
            version is None or (h.model is not None and h.model.version == version)
        )

    return wait(shows, 30)


def test_models_install_over_the_broker_and_show_in_the_heartbeat(
    agents, mosquitto: MosquittoProcess, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    observer = Observer(mosquitto.port)
    agent, thread = agents()
    assert wait(lambda: agent.video is not None and agent.video.workers[0].pipeline.stats.frames)
    assert heartbeat_serial(observer, None, None)  # the site's model, never installed

    first = tiny_model(tmp_path / "v1.onnx", 200).read_bytes()
    cmd1 = registry.install(registry.manifest(first, "1.0"), server.publish("1", first))
    observer.send("model", cmd1.to_json())
    reply = reply_to(observer, cmd1.id)
    assert reply.ok and reply.detail["serial"] == 1 and reply.detail["rollout"] == 7, reply
    assert heartbeat_serial(observer, 1, "1.0")
    pipeline = agent.video.workers[0].pipeline if agent.video else None
    assert pipeline is not None
    assert wait(lambda: pipeline.model.version == "1.0")  # the camera runs it
    assert server.requests[-1].auth == server.auth

    # a file with one byte changed: refused, serial 1 runs on, the reason says why
    second = tiny_model(tmp_path / "v2.onnx", 240).read_bytes()
    bad = second[:50] + bytes([second[50] ^ 0xFF]) + second[51:]
    cmd_bad = registry.install(registry.manifest(second, "2.0"), server.publish("2", bad))
    observer.send("model", cmd_bad.to_json())
    refused = reply_to(observer, cmd_bad.id)
    assert not refused.ok and refused.detail["state"] == "refused"
    assert "sha256" in (refused.reason or "") and refused.detail["running_serial"] == 1
    assert pipeline.model.version == "1.0" and heartbeat_serial(observer, 1, "1.0")

    # the gateway goes offline; the install sent meanwhile arrives when it is back
    agent.stop()
    thread.join(20)
    third = tiny_model(tmp_path / "v3.onnx", 260).read_bytes()
    cmd3 = registry.install(registry.manifest(third, "3.0"), server.publish("3", third))
    observer.send("model", cmd3.to_json())
    observer.messages.clear()
    agent2, _ = agents()
    # the trusted model runs from the start (serial 1), then the queued one installs
    assert reply_to(observer, cmd3.id).ok
    assert heartbeat_serial(observer, 3, "3.0")
    assert agent2.video is not None
    assert wait(
        lambda: agent2.video is not None and agent2.video.workers[0].pipeline.model.version == "3.0"
    )

    # an older signed serial replayed after the restart: refused, 3 runs on
    observer.send("model", cmd1.to_json())
    replay = reply_to(observer, cmd1.id)
    assert not replay.ok and "not newer than 3" in (replay.reason or "")
    assert agent2.status().health is not None and agent2.status().health.model_serial == 3
    observer.close()
