"""The registry over HTTP: upload, the card, the signed manifest, downloads by gateways."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from sqlalchemy import select

from cloud.db import models as m
from cloud.model_registry import keys, manifests, store
from cloud.permissions import Role
from microbrain.signing import SignatureError, parse_public_key, verify_manifest
from tests.cloud.model_registry.conftest import GATEWAY_PASSWORD, Registry, onnx_model


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_upload_reads_the_card_from_the_file_and_keeps_it_under_its_hash(registry: Registry):
    eng = registry.headers["engineer"]
    r = registry.upload(registry.name, "1.0.0", eng, notes="first")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["card"]["classes"] == ["person", "ebike", "dog"]
    assert body["card"]["input_size"] == 64 and body["card"]["notes"] == "first"
    assert body["gate"] == []
    kept = registry.settings.model_files / f"{body['sha256']}.onnx"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == body["sha256"]
    assert kept.stat().st_size == body["bytes"]
    # no temporary file is left behind
    assert [p.name for p in registry.settings.model_files.iterdir()] == [kept.name]
    assert registry.client.get(f"/api/models/{body['id']}", headers=eng).json()["id"] == body["id"]
    listed = registry.client.get("/api/models", headers=eng).json()
    assert body["id"] in [x["id"] for x in listed]
    # the same name and version again: refused
    again = registry.upload(registry.name, "1.0.0", eng)
    assert again.status_code == 409 and "new version" in again.json()["detail"]


@pytest.mark.parametrize(
    ("content", "form", "words"),
    [
        (b"not a model at all", {}, "onnxruntime cannot load it"),
        (b"", {}, "empty"),
        (None, {"evaluation": "{not json"}, "card is invalid"),
        (None, {"version": "1 0/../x"}, "card is invalid"),
    ],
    ids=["garbage", "empty", "bad-evaluation", "bad-version"],
)
def test_bad_uploads_are_refused_with_a_reason(registry: Registry, content, form, words):
    eng = registry.headers["engineer"]
    path = onnx_model(registry.tmp / "ok.onnx")
    data = path.read_bytes() if content is None else content
    fields = {"name": registry.name, "version": "1", **form}
    before = (
        set(registry.settings.model_files.glob("*"))
        if registry.settings.model_files.exists()
        else set()
    )
    r = registry.client.post(
        "/api/models", headers=eng, files={"file": ("m.onnx", data)}, data=fields
    )
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]
    after = (
        set(registry.settings.model_files.glob("*"))
        if registry.settings.model_files.exists()
        else set()
    )
    assert after == before  # nothing kept, not even a temporary file


def test_a_file_without_class_names_needs_them_in_the_card(registry: Registry):
    eng = registry.headers["engineer"]
    path = onnx_model(registry.tmp / "bare.onnx", names=None)
    with path.open("rb") as f:
        r = registry.client.post(
            "/api/models",
            headers=eng,
            files={"file": ("m.onnx", f)},
            data={"name": registry.name, "version": "1"},
        )
    assert r.status_code == 422 and "classes" in r.json()["detail"]
    with path.open("rb") as f:
        r = registry.client.post(
            "/api/models",
            headers=eng,
            files={"file": ("m.onnx", f)},
            data={"name": registry.name, "version": "1", "classes": "person, leash"},
        )
    assert r.status_code == 201, r.text
    assert r.json()["card"]["classes"] == ["person", "leash"]
    assert r.json()["card"]["input_size"] == 64  # from the fixed input shape


def test_duty_users_may_not_touch_the_registry(registry: Registry):
    duty = registry.user(Role.DUTY)
    assert registry.upload(registry.name, "1", duty).status_code == 403
    assert registry.client.get("/api/models", headers=duty).status_code == 403
    assert registry.client.get("/api/rollouts", headers=duty).status_code == 403
    r = registry.client.post(
        "/api/rollouts", headers=duty, json={"model_id": 1, "target": {"kind": "all"}}
    )
    assert r.status_code == 403


def test_manifests_verify_with_the_served_key_and_serials_increase(registry: Registry):
    key_text = registry.client.get("/api/models/key").text.strip()
    public = parse_public_key(key_text)
    eng = registry.headers["engineer"]
    model_id = registry.upload(registry.name, "2.0.0", eng).json()["id"]
    key = keys.signing_key(registry.settings.model_key_path)
    serials = []
    with registry.factory() as s, s.begin():
        model = s.get_one(m.ModelVersion, model_id)
        for _ in range(3):
            row = manifests.issue(s, key, model, actor="t", now=registry.clock())
            manifest = verify_manifest(public, row.text, row.signature)
            serials.append(manifest.serial)
            assert manifest.sha256 == model.sha256 and manifest.bytes == model.bytes
            assert manifest.classes == ("person", "ebike", "dog") and manifest.input_size == 64
            command = manifests.install_command(row, 7)
            assert command.url == f"/api/models/{model_id}/file" and command.rollout == 7
        # one changed byte of the signed text no longer verifies
        with pytest.raises(SignatureError):
            verify_manifest(
                public, row.text.replace('"rollback":false', '"rollback":true'), row.signature
            )
    assert serials == sorted(serials) and len(set(serials)) == 3
    # the key file is private
    assert registry.settings.model_key_path.stat().st_mode & 0o077 == 0


def test_gateways_download_only_what_a_rollout_sends_them_and_resume_with_range(
    registry: Registry,
):
    eng = registry.headers["engineer"]
    targeted, other = registry.gateway(), registry.gateway()
    for gw in (targeted, other):
        registry.heartbeat(gw)
    model = registry.upload(registry.name, "3.0.0", eng).json()
    second = registry.upload(registry.name, "3.0.1", eng).json()
    r = registry.client.post(
        "/api/rollouts",
        headers=eng,
        json={"model_id": model["id"], "target": {"kind": "gateway", "ids": [targeted.gateway]}},
    )
    assert r.status_code == 201, r.text
    url = f"/api/models/{model['id']}/file"
    whole = registry.client.get(url, headers=_basic(targeted.gateway, GATEWAY_PASSWORD))
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == model["sha256"]
    # resume after 100 bytes: 206 and the rest
    part = registry.client.get(
        url, headers={**_basic(targeted.gateway, GATEWAY_PASSWORD), "Range": "bytes=100-"}
    )
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-{model['bytes'] - 1}/{model['bytes']}"
    assert part.content == whole.content[100:]
    past = registry.client.get(
        url,
        headers={**_basic(targeted.gateway, GATEWAY_PASSWORD), "Range": f"bytes={model['bytes']}-"},
    )
    assert past.status_code == 416
    # another gateway, a wrong password, a model no rollout sends it
    assert (
        registry.client.get(url, headers=_basic(other.gateway, GATEWAY_PASSWORD)).status_code == 403
    )
    assert registry.client.get(url, headers=_basic(targeted.gateway, "wrong")).status_code == 401
    assert registry.client.get(url, headers=_basic("nobody", "x")).status_code == 401
    r = registry.client.get(
        f"/api/models/{second['id']}/file", headers=_basic(targeted.gateway, GATEWAY_PASSWORD)
    )
    assert r.status_code == 403 and "no active rollout" in r.json()["detail"]
    # engineers may fetch any; duty users and strangers may not
    assert registry.client.get(url, headers=eng).status_code == 200
    assert registry.client.get(url, headers=registry.user(Role.DUTY)).status_code == 403
    assert registry.client.get(url).status_code == 401


def test_range_download_over_a_real_server(registry: Registry):
    from tests.utils.api_server import serve

    eng = registry.headers["engineer"]
    gw = registry.gateway()
    registry.heartbeat(gw)
    model = registry.upload(registry.name, "4.0.0", eng).json()
    r = registry.client.post(
        "/api/rollouts",
        headers=eng,
        json={"model_id": model["id"], "target": {"kind": "gateway", "ids": [gw.gateway]}},
    )
    assert r.status_code == 201
    with serve(registry.client.app) as served:
        url = f"{served.url}/api/models/{model['id']}/file"
        auth = (gw.gateway, GATEWAY_PASSWORD)
        head = httpx.get(url, auth=auth, headers={"Range": "bytes=0-9"}).content
        rest = httpx.get(url, auth=auth, headers={"Range": "bytes=10-"})
        assert rest.status_code == 206
        assert hashlib.sha256(head + rest.content).hexdigest() == model["sha256"]
    with registry.factory() as s:
        assert s.scalars(
            select(m.ModelVersion.sha256).where(m.ModelVersion.id == model["id"])
        ).one()
    assert store.model_file(registry.settings.model_files, model["sha256"]).is_file()
