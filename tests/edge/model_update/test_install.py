"""The gateway's model manager against a real HTTP file server and real onnxruntime
models: installs, every refusal (the old model keeps running, the reply says why, a
metric counts it), resumed downloads, and the trust state across restarts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from edge.config import ModelUpdateConfig
from edge.model_update.download import Credentials
from edge.model_update.install import ModelManager
from microbrain.protocol import Reply
from microbrain.site.cameras import DetectorConfig
from tests.edge.model_update.helpers import (
    PASSWORD,
    USER,
    FileServer,
    Registry,
    file_server,
    later,
    tiny_model,
    wrong_shape_model,
)

FAST = ModelUpdateConfig(download_attempts=3, retry_backoff_s=0.05, download_timeout_s=10)


def installs(outcome: str) -> float:
    return REGISTRY.get_sample_value("mb_edge_model_installs_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as s:
        yield s


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def site(tmp_path: Path) -> DetectorConfig:
    return DetectorConfig(type="onnx_yolo", model=str(tiny_model(tmp_path / "site.onnx", x=100)))


@pytest.fixture
def manager(
    tmp_path: Path, server: FileServer, registry: Registry, site: DetectorConfig
) -> Callable[..., ModelManager]:
    """``manager()`` → a booted manager on the site's tiny model; the same data dir each
    call (a restart)."""

    def make(key: Path | None = None, **over: object) -> ModelManager:
        kwargs: dict[str, object] = {
            "reply": lambda reply: None,
            "cloud_api": server.url,
            "credentials": Credentials(USER, PASSWORD),
            "settings": FAST,
        }
        kwargs.update(over)
        m = ModelManager.from_key_file(
            registry.key_file(tmp_path) if key is None else key, tmp_path / "models", **kwargs
        )
        m.boot(site, None)
        return m

    return make


def model_bytes(tmp_path: Path, x: float, name: str = "m") -> bytes:
    return tiny_model(tmp_path / f"{name}-{x:g}.onnx", x=x).read_bytes()


def test_a_signed_model_installs_and_is_trusted(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    swaps: list[int | None] = []
    m: ModelManager = manager()
    m.on_swap = lambda: swaps.append(m.running.serial if m.running else -1)
    site_model = m.running
    assert site_model is not None and site_model.serial is None  # the site's model
    data = model_bytes(tmp_path, 200)
    cmd = registry.install(registry.manifest(data, "2.0"), server.publish("1", data))
    before = installs("installed")
    reply = m.install(cmd)
    assert reply.ok, reply.reason
    assert reply.detail["state"] == "installed" and reply.detail["serial"] == 1
    assert reply.detail["version"] == "2.0" and reply.detail["rollout"] == 7
    assert float(reply.detail["smoke_ms"]) > 0
    running = m.running
    assert running is not None and running.serial == 1 and running.ref.version == "2.0"
    assert swaps == [1] and installs("installed") == before + 1
    # the model runs: its one detection is where this version puts it (x=200 of 320)
    found = running.detector.detect(np.zeros((320, 320, 3), np.uint8))
    assert found.names == ["person"] and found.xyxy[0][0] == pytest.approx(180, abs=1)
    state = json.loads((tmp_path / "models" / "trust.json").read_text())
    assert state["highest_serial"] == 1 and state["current"]["manifest"] == cmd.manifest
    # the request carried the gateway's credentials
    assert server.requests[-1].auth == server.auth and server.requests[-1].range is None

    # resent (the cloud did not hear the reply): harmless, answered "installed" again
    again = m.install(cmd)
    assert again.ok and again.detail["state"] == "installed" and len(server.requests) == 1


def _refused(m: ModelManager, reply: Reply, state: str, words: str) -> None:
    assert not reply.ok
    assert reply.detail["state"] == state, reply
    assert words in (reply.reason or ""), reply.reason
    assert m.running is not None and m.running.serial is None  # the site model runs on
    assert reply.detail["running_version"] == m.running.ref.version


@pytest.mark.parametrize(
    ("case", "state", "words", "outcome"),
    [
        ("one_byte_changed", "refused", "sha256", "bad_hash"),
        ("other_key", "refused", "does not verify", "bad_signature"),
        ("expired", "refused", "expired at", "expired"),
        ("gateway_too_old", "refused", "needs microbrain 9.0", "gateway_too_old"),
        ("wrong_output_shape", "failed", "unexpected output shape", "smoke_failed"),
        ("other_classes", "refused", "not the signed manifest's", "bad_classes"),
        ("bigger_than_signed", "refused", "more than the", "bad_size"),
        ("missing_file", "failed", "404", "download_failed"),
    ],
)
def test_refused_and_the_old_model_runs_on(
    manager, server: FileServer, registry: Registry, tmp_path: Path, case, state, words, outcome
) -> None:
    m: ModelManager = manager()
    data = model_bytes(tmp_path, 200)
    served, key = data, None
    over: dict[str, object] = {}
    if case == "one_byte_changed":
        served = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    elif case == "other_key":
        key = Ed25519PrivateKey.generate()
    elif case == "expired":
        over = {"issued": later(-10), "expires": later(-1)}
    elif case == "gateway_too_old":
        over = {"min_gateway_version": "9.0"}
    elif case == "wrong_output_shape":
        served = data = wrong_shape_model(tmp_path / "bad.onnx").read_bytes()
    elif case == "other_classes":
        over = {"classes": ("person", "ebike")}
    elif case == "bigger_than_signed":
        served = data + b"\0" * 10
    url = server.publish("1", served) if case != "missing_file" else "/api/models/9/file"
    cmd = registry.install(registry.manifest(data, "2.0", **over), url, key)
    before = installs(outcome)
    _refused(m, m.install(cmd), state, words)
    assert installs(outcome) == before + 1
    assert m.state.highest_serial == 0  # nothing refused is ever trusted
    assert not list((tmp_path / "models").glob("*.model"))  # no unchecked file kept


def test_no_key_configured_is_refused_naming_the_setting(
    tmp_path: Path, server: FileServer, registry: Registry, site: DetectorConfig
) -> None:
    m = ModelManager(tmp_path / "models", None, reply=lambda r: None, cloud_api=server.url)
    m.boot(site, None)
    data = model_bytes(tmp_path, 200)
    reply = m.install(registry.install(registry.manifest(data, "2"), server.publish("1", data)))
    _refused(m, reply, "refused", "set model_key")
    assert not server.requests  # nothing downloaded


def test_an_older_serial_is_refused_also_after_a_restart(
    manager, server: FileServer, registry: Registry, tmp_path: Path, site: DetectorConfig
) -> None:
    m: ModelManager = manager()
    old_data, new_data = model_bytes(tmp_path, 150), model_bytes(tmp_path, 250)
    old = registry.install(registry.manifest(old_data, "1.0"), server.publish("1", old_data))
    new = registry.install(registry.manifest(new_data, "2.0"), server.publish("2", new_data))
    assert m.install(old).ok and m.install(new).ok
    replay = m.install(old)
    assert not replay.ok and replay.detail["state"] == "refused"
    assert "not newer than 2" in (replay.reason or "")
    assert replay.detail["running_serial"] == 2 and replay.detail["serial"] == 1

    restarted: ModelManager = manager()  # same data dir: a new agent process
    assert restarted.running is not None and restarted.running.serial == 2
    assert restarted.running.ref.version == "2.0"
    again = restarted.install(old)
    assert not again.ok and "not newer than 2" in (again.reason or "")
    assert restarted.running.serial == 2

    # an explicit, newly signed rollback to the old model: allowed, and no download (the
    # previous model's file was kept)
    requests = len(server.requests)
    back = registry.install(
        registry.manifest(old_data, "1.0", rollback=True), server.publish("1", old_data)
    )
    reply = restarted.install(back)
    assert reply.ok and reply.detail["serial"] == 3 and restarted.running.ref.version == "1.0"
    assert len(server.requests) == requests


def test_an_interrupted_download_resumes_where_it_stopped(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    m: ModelManager = manager()
    data = model_bytes(tmp_path, 220)
    url = server.publish("5", data)
    half = len(data) // 2
    server.cut[url] = half  # the first response stops after half the file
    reply = m.install(registry.install(registry.manifest(data, "5"), url))
    assert reply.ok, reply.reason
    first, second = server.requests
    assert first.range is None and first.sent == half
    assert second.range == f"bytes={half}-" and second.sent == len(data) - half
    assert first.sent + second.sent == len(data)  # nothing fetched twice


def test_a_tampered_installed_file_falls_back_to_the_site_model_at_start(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    m: ModelManager = manager()
    data = model_bytes(tmp_path, 200)
    assert m.install(registry.install(registry.manifest(data, "2"), server.publish("1", data))).ok
    installed = next((tmp_path / "models").glob("*.model"))
    installed.write_bytes(installed.read_bytes()[:-1] + b"x")
    key = ("tampered",)
    before = REGISTRY.get_sample_value("mb_edge_model_startup_total", {"outcome": key[0]}) or 0
    restarted: ModelManager = manager()
    assert restarted.running is not None and restarted.running.serial is None
    after = REGISTRY.get_sample_value("mb_edge_model_startup_total", {"outcome": key[0]})
    assert after == before + 1
    assert restarted.state.highest_serial == 1  # the trust itself is not forgotten


def test_a_corrupt_trust_state_refuses_installs(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "trust.json").write_text('{"highest_serial": "many"')
    m: ModelManager = manager()
    data = model_bytes(tmp_path, 200)
    reply = m.install(registry.install(registry.manifest(data, "2"), server.publish("1", data)))
    _refused(m, reply, "refused", "trust state")
    assert "delete it" in (reply.reason or "")


def test_credentials_go_only_to_the_cloud_api(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    m: ModelManager = manager(cloud_api="http://127.0.0.1:9")  # another origin
    data = model_bytes(tmp_path, 200)
    url = server.url + server.publish("1", data)  # absolute, on a host that is not ours
    reply = m.install(registry.install(registry.manifest(data, "2"), url))
    assert not reply.ok and "401" in (reply.reason or "")
    assert server.requests and all(r.auth is None for r in server.requests)


def test_a_model_the_cloud_will_not_send_fails_without_blaming_the_password(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    m: ModelManager = manager()
    data = model_bytes(tmp_path, 200)
    url = server.publish("1", data)
    server.forbidden.add(url)  # good login, but no rollout of it targets this gateway
    reply = m.install(registry.install(registry.manifest(data, "2"), url))
    _refused(m, reply, "failed", "no rollout of it targets this gateway")
    assert "password" not in (reply.reason or "")
    assert len(server.requests) == 1  # not retried


def test_wrong_credentials_and_an_unreachable_cloud_fail_with_the_fix(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    data = model_bytes(tmp_path, 200)
    url = server.publish("1", data)
    wrong: ModelManager = manager(credentials=Credentials(USER, "not-it"))
    reply = wrong.install(registry.install(registry.manifest(data, "2"), url))
    _refused(wrong, reply, "failed", "check the gateway's broker password")
    assert len(server.requests) == 1  # a refusal of credentials is not retried

    down: ModelManager = manager(cloud_api="http://127.0.0.1:9")  # nothing listens there
    reply = down.install(registry.install(registry.manifest(data, "3"), url))
    _refused(down, reply, "failed", f"failed after {FAST.download_attempts} tries")


def test_an_unreadable_key_file_refuses_installs_naming_it(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key\n")
    m: ModelManager = manager(key=bad_key)
    data = model_bytes(tmp_path, 200)
    reply = m.install(registry.install(registry.manifest(data, "2"), server.publish("1", data)))
    _refused(m, reply, "refused", "set model_key")
    assert "not an Ed25519 public key" in (reply.reason or "")


def test_installs_queue_on_one_worker_and_a_flood_is_refused(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    replies: list[Reply] = []
    m: ModelManager = manager(reply=replies.append, queue_size=1)
    data = model_bytes(tmp_path, 200)
    url = server.publish("1", data)
    commands = [registry.install(registry.manifest(data, f"{n}"), url) for n in range(1, 9)]
    for cmd in commands:  # on the caller's (the MQTT) thread: returns at once
        m.submit(cmd)
    deadline = time.monotonic() + 60
    while len(replies) < len(commands) and time.monotonic() < deadline:
        time.sleep(0.01)
    m.stop()
    assert len(replies) == len(commands)
    busy = [r for r in replies if not r.ok and "busy" in (r.reason or "")]
    installed = [r for r in replies if r.ok]
    assert busy and installed  # the first ran, some waited, the rest were refused
    assert all(r.detail["state"] == "failed" for r in busy)
    # whatever ran, ran in order: the serials installed only go up
    serials = [int(r.detail["serial"]) for r in installed]
    assert serials == sorted(serials) and m.state.highest_serial == serials[-1]


def test_a_model_without_a_class_the_cameras_watch_is_refused_before_download(
    manager, server: FileServer, registry: Registry, tmp_path: Path
) -> None:
    """A model that cannot see dogs, pushed to a gateway whose courtyard camera watches
    for unleashed dogs, would leave that rule blind without a word: refused, naming the
    class. Watching ``ebike`` needs a bicycle or motorcycle class (the second stage
    judges those) or an ``ebike`` class of the model's own."""
    m: ModelManager = manager(watched=lambda: {"dog", "person", "ebike"})
    data = model_bytes(tmp_path, 200)
    blind = registry.install(
        registry.manifest(data, "2.0", classes=("person", "car")), server.publish("1", data)
    )
    before = installs("missing_classes")
    reply = m.install(blind)
    _refused(m, reply, "refused", "has no class dog, ebike, which this gateway's cameras watch")
    assert installs("missing_classes") == before + 1
    assert not server.requests  # refused on the signed manifest, before any download


@pytest.mark.parametrize(
    ("watched", "classes", "missing"),
    [
        ({"ebike"}, ("person", "motorcycle"), []),  # the second stage judges motorcycles
        ({"pedal_bike"}, ("bicycle",), []),
        ({"ebike"}, ("person", "ebike"), []),  # a retrained model's own class
        ({"ebike", "car"}, ("person",), ["car", "ebike"]),
        (set(), ("person",), []),  # a sensors-only gateway: nothing watched
    ],
)
def test_missing_classes(watched: set[str], classes: tuple[str, ...], missing: list[str]) -> None:
    from edge.model_update.install import missing_classes

    assert missing_classes(watched, classes) == missing
