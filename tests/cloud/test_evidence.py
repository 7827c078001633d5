"""Evidence uploads: gateway credentials, sha256 checked against the event, scoped reads."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.db import transaction
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import EvidenceKind, EvidenceRef
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway

JPEG = b"\xff\xd8\xff\xe0" + b"snapshot with boxes" * 100 + b"\xff\xd9"


@pytest.fixture
def client(factory, tmp_path):
    state = ApiState(
        settings=Settings(environment="test", evidence_dir=tmp_path / "evidence"), factory=factory
    )
    with TestClient(create_api(state)) as c:
        yield c


def test_upload_checked_against_the_declared_hash(client, factory, gw):
    other = unique_gateway()
    with transaction(factory) as s:
        register_gateway(
            s, other.community, other.compound, other.gateway, building="b1", **DEVICES
        )
        auth.set_gateway_password(s, gw.gateway, "gw-password", now=datetime.now(UTC))
        auth.set_gateway_password(s, other.gateway, "other-password", now=datetime.now(UTC))
        duty = auth.create_user(
            s,
            f"d-{uuid.uuid4().hex[:6]}",
            "duty-password",
            "duty",
            now=datetime.now(UTC),
            community=gw.community,
        ).username
        outsider = auth.create_user(
            s,
            f"o-{uuid.uuid4().hex[:6]}",
            "duty-password",
            "duty",
            now=datetime.now(UTC),
            community=other.community,
        ).username
    ref = EvidenceRef(
        kind=EvidenceKind.SNAPSHOT,
        name="snap.jpg",
        sha256=hashlib.sha256(JPEG).hexdigest(),
        bytes=len(JPEG),
    )
    ev = event(1, evidence=(ref,))
    ingest(factory, gw, [ev])
    url = f"/api/evidence/{ev.id}/snap.jpg"
    assert client.put(url, content=JPEG).status_code == 401
    assert client.put(url, content=JPEG, auth=(gw.gateway, "wrong")).status_code == 401
    # another gateway's event reads as missing (ids tell nothing of others' events)
    assert client.put(url, content=JPEG, auth=(other.gateway, "other-password")).status_code == 404
    bad = client.put(url, content=JPEG[:-1] + b"x", auth=(gw.gateway, "gw-password"))
    assert bad.status_code == 422 and "does not match" in bad.json()["detail"]
    assert (
        client.put(url, content=JPEG + b"more", auth=(gw.gateway, "gw-password")).status_code == 422
    )
    assert (
        client.put(
            f"/api/evidence/{ev.id}/other.jpg", content=JPEG, auth=(gw.gateway, "gw-password")
        ).status_code
        == 404
    )
    assert client.put(url, content=JPEG, auth=(gw.gateway, "gw-password")).status_code == 201
    assert (
        client.put(url, content=JPEG, auth=(gw.gateway, "gw-password")).status_code == 201
    )  # again: harmless
    assert client.get(url).status_code == 401
    tokens = {}
    for name in (duty, outsider):
        r = client.post("/api/auth/token", json={"username": name, "password": "duty-password"})
        tokens[name] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    got = client.get(url, headers=tokens[duty])
    assert (
        got.status_code == 200
        and got.content == JPEG
        and got.headers["content-type"] == "image/jpeg"
    )
    assert client.get(url, headers=tokens[outsider]).status_code == 404  # outside: as if not there


def test_upload_is_refused_before_its_body_is_read(factory, gw, tmp_path):
    # a raw request announcing a huge body and sending none of it: the answer (401 without
    # credentials, 404 for an undeclared file) must come without waiting for the body
    import base64
    import socket

    from tests.utils.api_server import serve

    with transaction(factory) as s:
        auth.set_gateway_password(s, gw.gateway, "gw-password", now=datetime.now(UTC))
    ev = event(1)
    ingest(factory, gw, [ev])
    state = ApiState(
        settings=Settings(environment="test", evidence_dir=tmp_path / "evidence"), factory=factory
    )
    with serve(create_api(state)) as server:
        basic = base64.b64encode(f"{gw.gateway}:gw-password".encode()).decode()
        for headers, expected in (("", b" 401 "), (f"Authorization: Basic {basic}\r\n", b" 404 ")):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    f"PUT /api/evidence/{ev.id}/clip.mp4 HTTP/1.1\r\nHost: x\r\n{headers}"
                    f"Content-Length: {400 * 1024 * 1024}\r\n\r\n".encode()
                )
                status_line = sock.recv(200).split(b"\r\n", 1)[0]
            assert expected in status_line, status_line
