"""Admins reset passwords and reactivate users, within their subtree, through the real
API on both stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.settings import Settings
from microbrain.protocol import GatewayPath

OLD, NEW = "correct horse", "battery staple"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def client(factory: sessionmaker[Session], clock: ManualClock) -> Iterator[TestClient]:
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    with TestClient(create_api(state)) as c:
        yield c


def _user(
    factory: sessionmaker[Session], clock: ManualClock, role: str = "duty", **scope: str
) -> tuple[int, str]:
    name = f"u-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        return auth.create_user(s, name, OLD, role, now=clock(), **scope).id, name


def _login(client: TestClient, name: str, password: str) -> dict[str, str] | None:
    r = client.post("/api/auth/token", json={"username": name, "password": password})
    return {"Authorization": f"Bearer {r.json()['access_token']}"} if r.status_code == 200 else None


def _audit(factory: sessionmaker[Session], user_id: int) -> list[str]:
    with factory() as s:
        rows = s.query(m.AuditEntry).filter(m.AuditEntry.target == f"user:{user_id}")
        return [r.action for r in rows.order_by(m.AuditEntry.id)]


def test_an_admin_resets_a_password_and_ends_the_old_sessions(
    client: TestClient, factory: sessionmaker[Session], clock: ManualClock, gw: GatewayPath
) -> None:
    admin_id, admin_name = _user(factory, clock, "admin", community=gw.community)
    admin = _login(client, admin_name, OLD)
    target_id, target_name = _user(factory, clock, community=gw.community, compound=gw.compound)
    session = _login(client, target_name, OLD)
    assert admin and session and client.get("/api/alerts", headers=session).status_code == 200

    r = client.post(f"/api/users/{target_id}/password", headers=admin, json={"password": NEW})
    assert r.status_code == 200 and r.json()["id"] == target_id, r.text
    assert client.get("/api/alerts", headers=session).status_code == 401  # token ended
    assert _login(client, target_name, OLD) is None
    assert _login(client, target_name, NEW) is not None
    assert _audit(factory, target_id) == ["password_reset"]
    with factory() as s:
        (row,) = s.query(m.AuditEntry).filter(m.AuditEntry.target == f"user:{target_id}")
        assert NEW not in (row.note or "") and row.actor == admin_name

    short = client.post(f"/api/users/{target_id}/password", headers=admin, json={"password": "x"})
    assert short.status_code == 422
    own = client.post(f"/api/users/{admin_id}/password", headers=admin, json={"password": NEW})
    assert own.status_code == 409  # not one's own, with a token alone


def test_a_deactivated_user_is_reactivated_without_their_old_sessions(
    client: TestClient, factory: sessionmaker[Session], clock: ManualClock, gw: GatewayPath
) -> None:
    _, admin_name = _user(factory, clock, "admin", community=gw.community)
    admin = _login(client, admin_name, OLD)
    target_id, target_name = _user(factory, clock, community=gw.community)
    session = _login(client, target_name, OLD)
    assert admin and session
    assert client.post(f"/api/users/{target_id}/deactivate", headers=admin).status_code == 200
    assert _login(client, target_name, OLD) is None
    r = client.post(f"/api/users/{target_id}/reactivate", headers=admin, json={"note": "back"})
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert client.get("/api/alerts", headers=session).status_code == 401  # stays ended
    assert _login(client, target_name, OLD) is not None
    assert _audit(factory, target_id) == ["user_deactivated", "user_reactivated"]


@pytest.mark.parametrize("path", ["password", "reactivate"])
def test_outside_the_subtree_reads_as_missing_and_other_roles_are_refused(
    client: TestClient,
    factory: sessionmaker[Session],
    clock: ManualClock,
    gw: GatewayPath,
    path: str,
) -> None:
    _, admin_name = _user(factory, clock, "admin", community=gw.community)
    admin = _login(client, admin_name, OLD)
    elsewhere_id, elsewhere_name = _user(factory, clock, community=f"{gw.community}-other")
    body = {"password": NEW} if path == "password" else {}
    assert admin
    outside = client.post(f"/api/users/{elsewhere_id}/{path}", headers=admin, json=body)
    missing = client.post(f"/api/users/987654321/{path}", headers=admin, json=body)
    assert outside.status_code == missing.status_code == 404
    assert outside.json()["detail"].replace(str(elsewhere_id), "<id>") == missing.json()[
        "detail"
    ].replace("987654321", "<id>")
    assert _login(client, elsewhere_name, OLD) is not None  # untouched
    # a supervisor may not manage users at all: the same 403 whatever the id
    _, sup_name = _user(factory, clock, "supervisor", community=gw.community)
    sup = _login(client, sup_name, OLD)
    target_id, _ = _user(factory, clock, community=gw.community)
    assert sup
    assert client.post(f"/api/users/{target_id}/{path}", headers=sup, json=body).status_code == 403
    assert client.post(f"/api/users/987654321/{path}", headers=sup, json=body).status_code == 403
