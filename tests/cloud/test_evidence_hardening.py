"""Evidence hardening: uploads must be the media type their event declares (sniffed from
the first bytes), downloads say what they are and forbid sniffing, the scope is settled
before anything the event declares is told, and a sender that goes away mid-body leaves
one log line and no file."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth, evidence
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Invalid
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import Event, EvidenceRef, GatewayPath
from tests.cloud.helpers import event, ingest, unique_gateway, wait_for
from tests.utils.api_server import serve

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"pixels" * 50 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"pixels" * 50
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"mdat" * 50
AVI = b"RIFF\x10\x00\x00\x00AVI LIST" + b"movi" * 50
# an EBML header as libvpx/FFmpeg writes it: the DocType element (42 82, length 4) at 23
EBML = b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08"
WEBM = EBML + b"B\x82\x84webmB\x87\x81\x02B\x85\x81\x02" + b"cluster" * 30
MKV = EBML + b"B\x82\x88matroskaB\x87\x81\x04" + b"cluster" * 30
HTML = b"<!doctype html><script>alert(1)</script>" + b" " * 50


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (JPEG, "image/jpeg"),
        (PNG, "image/png"),
        (MP4, "video/mp4"),
        (b"\x00\x00\x00\x1cftypmp42\x00\x00\x00\x00", "video/mp4"),
        (AVI, "video/x-msvideo"),
        (WEBM, "video/webm"),
        (MKV, "video/x-matroska"),  # Matroska that is not WebM: not evidence
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (HTML, "text/html"),
        (b"\xef\xbb\xbf  <svg onload=x>", "text/html"),  # after a BOM and blanks
        (b'{"not": "a picture"}', "application/json"),
        (b"\xff\xd8", evidence.UNKNOWN),  # a JPEG's start, too short to be one
        (b"RIFF\x10\x00\x00\x00", evidence.UNKNOWN),  # RIFF of no known form
        (b"", evidence.UNKNOWN),
        (bytes(range(16)), evidence.UNKNOWN),
    ],
)
def test_sniff_tells_the_type_from_the_first_bytes(head: bytes, expected: str) -> None:
    assert evidence.sniff(head[: evidence.SNIFF_BYTES]) == expected


@pytest.mark.parametrize(
    ("declared", "body", "looks_like"),
    [
        ("image/jpeg", PNG, "image/png"),
        ("image/jpeg", HTML, "text/html"),
        ("image/jpeg", b"", "nothing (the file is empty)"),
        ("video/mp4", AVI, "video/x-msvideo"),
        ("video/x-msvideo", MP4, "video/mp4"),
        ("video/webm", MKV, "video/x-matroska"),
        ("video/webm", AVI, "video/x-msvideo"),
        ("image/png", JPEG, "image/jpeg"),
        ("video/mp4", bytes(range(16)), "no known type (first bytes 00 01 02 03 04 05 06 07)"),
        ("text/html", HTML, "is not kept as evidence"),
    ],
)
def test_check_type_refuses_naming_what_the_bytes_look_like(
    declared: str, body: bytes, looks_like: str
) -> None:
    with pytest.raises(Invalid) as refused:
        evidence.check_type(declared, body[: evidence.SNIFF_BYTES])
    assert looks_like in str(refused.value)


@pytest.mark.parametrize(
    ("declared", "body"),
    [
        ("image/jpeg", JPEG),
        ("image/png", PNG),
        ("video/webm", WEBM),
        ("video/mp4", MP4),
        ("video/x-msvideo", AVI),
    ],
)
def test_check_type_accepts_what_is_what_it_declares(declared: str, body: bytes) -> None:
    evidence.check_type(declared, body[: evidence.SNIFF_BYTES])


def _uploads(outcome: str) -> float:
    return REGISTRY.get_sample_value("mb_evidence_uploads_total", {"outcome": outcome}) or 0.0


def _event_with(
    factory: sessionmaker[Session], gw: GatewayPath, seq: int, *files: tuple[str, bytes, str]
) -> Event:
    refs = tuple(
        EvidenceRef.model_validate(
            {
                "kind": "clip" if ctype.startswith("video/") else "snapshot",
                "name": name,
                "sha256": hashlib.sha256(body).hexdigest(),
                "bytes": len(body),
                "content_type": ctype,
            }
        )
        for name, body, ctype in files
    )
    ev = event(seq, evidence=refs)
    assert ingest(factory, gw, [ev]).stored == 1
    return ev


@pytest.fixture
def evidence_dir(tmp_path: Path) -> Path:
    return tmp_path / "evidence"


@pytest.fixture
def client(factory: sessionmaker[Session], evidence_dir: Path) -> Iterator[TestClient]:
    state = ApiState(
        settings=Settings(environment="test", evidence_dir=evidence_dir), factory=factory
    )
    with TestClient(create_api(state)) as c:
        yield c


@pytest.fixture
def people(factory: sessionmaker[Session], gw: GatewayPath) -> dict[str, dict[str, str]]:
    """Gateway password set; bearer headers of a duty user here and one elsewhere (their
    tokens issued directly: they never log in, so no argon2 runs)."""
    now = datetime.now(UTC)
    tokens = {}
    with transaction(factory) as s:
        auth.set_gateway_password(s, gw.gateway, "gw-password", now=now)
        for who, community in (("here", gw.community), ("elsewhere", f"t-{uuid.uuid4().hex[:8]}")):
            user = m.User(
                username=f"{who}-{uuid.uuid4().hex[:6]}",
                password_hash="!",
                role="duty",
                community=community,
                active=True,
                created_at=now,
            )
            s.add(user)
            s.flush()
            token = auth.issue_token(s, user, now=now, ttl_s=3600)
            tokens[who] = {"Authorization": f"Bearer {token}"}
    return tokens


def test_an_upload_that_is_not_what_it_declares_is_refused(
    client,
    factory,
    gw,
    people,
    evidence_dir,
):
    # the hash and size match: only the type check can refuse these
    ev = _event_with(
        factory,
        gw,
        1,
        ("snap.jpg", PNG, "image/jpeg"),
        ("page.jpg", HTML, "image/jpeg"),
        ("clip.avi", AVI, "video/x-msvideo"),
        ("clip.mp4", MP4, "video/mp4"),
    )
    login = (gw.gateway, "gw-password")
    before = _uploads("wrong_type")
    for name, body, looks_like in (("snap.jpg", PNG, "image/png"), ("page.jpg", HTML, "text/html")):
        r = client.put(f"/api/evidence/{ev.id}/{name}", content=body, auth=login)
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (
            f"upload is not the image/jpeg its event declared: its bytes look like {looks_like}"
        )
    assert _uploads("wrong_type") == before + 2
    kept = sorted(p.name for p in evidence_dir.rglob("*") if p.is_file())
    assert kept == []  # neither the refused files nor their temporaries
    for name, body in (("clip.avi", AVI), ("clip.mp4", MP4)):
        assert (
            client.put(f"/api/evidence/{ev.id}/{name}", content=body, auth=login).status_code == 201
        )
    got = client.get(f"/api/evidence/{ev.id}/clip.avi", headers=people["here"])
    assert got.status_code == 200 and got.content == AVI
    assert got.headers["content-type"] == "video/x-msvideo"
    assert got.headers["x-content-type-options"] == "nosniff"


def test_a_download_carries_nosniff_and_only_the_checked_type(
    client,
    factory,
    gw,
    people,
    evidence_dir,
):
    ev = _event_with(
        factory, gw, 2, ("snap.jpg", JPEG, "image/jpeg"), ("old.jpg", HTML, "image/jpeg")
    )
    assert (
        client.put(
            f"/api/evidence/{ev.id}/snap.jpg", content=JPEG, auth=(gw.gateway, "gw-password")
        ).status_code
        == 201
    )
    got = client.get(f"/api/evidence/{ev.id}/snap.jpg", headers=people["here"])
    assert got.status_code == 200 and got.content == JPEG
    assert got.headers["content-type"] == "image/jpeg"
    assert got.headers["x-content-type-options"] == "nosniff"
    # a file kept before uploads were type-checked is not served as the image it claims
    legacy = evidence.path_for(evidence_dir, _row(factory, ev.id), "old.jpg")
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(HTML)
    got = client.get(f"/api/evidence/{ev.id}/old.jpg", headers=people["here"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment")


def _row(factory: sessionmaker[Session], event_id: str) -> m.EventRow:
    with factory() as s:
        row = s.scalars(select(m.EventRow).where(m.EventRow.id == event_id)).one()
        s.expunge(row)
        return row


def test_out_of_scope_answers_like_a_missing_event_before_looking_at_the_file(
    client, factory, gw, people
):
    """Authenticate, find the event, check the scope (404), only then the declared file:
    an outsider asking for a file the event does not declare must not learn that the
    event exists (before, the answer was "declares no evidence named ...")."""
    ev = _event_with(factory, gw, 3, ("snap.jpg", JPEG, "image/jpeg"))
    missing = client.get(
        "/api/evidence/01ZZZZZZZZZZZZZZZZZZZZZZZZ/nothing.jpg", headers=people["elsewhere"]
    )
    assert missing.status_code == 404
    for name in ("snap.jpg", "nothing.jpg"):
        out = client.get(f"/api/evidence/{ev.id}/{name}", headers=people["elsewhere"])
        assert out.status_code == 404
        assert out.json()["detail"] == missing.json()["detail"].replace(
            "01ZZZZZZZZZZZZZZZZZZZZZZZZ", ev.id
        )
    # the same for another gateway uploading to this gateway's event
    other = unique_gateway()
    with transaction(factory) as s:
        register_gateway(s, other.community, other.compound, other.gateway, building="b1")
        auth.set_gateway_password(s, other.gateway, "other-password", now=datetime.now(UTC))
    login = (other.gateway, "other-password")
    missing = client.put(
        "/api/evidence/01ZZZZZZZZZZZZZZZZZZZZZZZZ/nothing.jpg", content=JPEG, auth=login
    )
    for name in ("snap.jpg", "nothing.jpg"):
        out = client.put(f"/api/evidence/{ev.id}/{name}", content=JPEG, auth=login)
        assert out.status_code == 404
        assert out.json()["detail"] == missing.json()["detail"].replace(
            "01ZZZZZZZZZZZZZZZZZZZZZZZZ", ev.id
        )
    # inside the scope the file's absence is told as such
    here = client.get(f"/api/evidence/{ev.id}/nothing.jpg", headers=people["here"])
    assert (
        here.status_code == 404
        and "declares no evidence named 'nothing.jpg'" in here.json()["detail"]
    )


class _Records(logging.Handler):
    """Every record of every logger (uvicorn's own included: the server below runs with
    log_config=None, so its loggers propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_sender_that_disconnects_mid_upload_leaves_one_line_and_no_file(
    factory, gw, people, evidence_dir
):
    body = JPEG + b"\x00" * 200_000  # big enough to be read in several chunks
    ev = _event_with(factory, gw, 4, ("snap.jpg", body, "image/jpeg"))
    state = ApiState(
        settings=Settings(environment="test", evidence_dir=evidence_dir), factory=factory
    )
    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        with serve(create_api(state), log_level="info", log_config=None) as server:
            before = _uploads("disconnected")
            basic = base64.b64encode(f"{gw.gateway}:gw-password".encode()).decode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(
                    f"PUT /api/evidence/{ev.id}/snap.jpg HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Basic {basic}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                )
                sock.sendall(body[: len(body) // 2])
                # the upload has begun (its temporary file is there) before we go away
                wait_for(
                    lambda: any(p.name.startswith(".upload-") for p in evidence_dir.rglob("*")),
                    timeout=20,
                )
            wait_for(lambda: _uploads("disconnected") == before + 1, timeout=20)
            wait_for(lambda: not any(evidence_dir.rglob(".upload-*")), timeout=20)
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    assert not evidence.path_for(evidence_dir, _row(factory, ev.id), "snap.jpg").exists()
    tracebacks = [r for r in records.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    lines = [r.getMessage() for r in records.records if r.name == "cloud.api.routes.evidence"]
    assert len(lines) == 1, lines
    # how much of the half sent had reached the route when the close came is the server's
    # business; the line says it
    assert re.fullmatch(
        rf"evidence snap\.jpg of event {ev.id}: the sender disconnected after "
        rf"\d+ of {len(body)} bytes; discarded",
        lines[0],
    ), lines[0]
    assert not [r for r in records.records if r.levelno >= logging.ERROR]
