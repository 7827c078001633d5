"""Sessions end: an open live stream closes when its token expires, is revoked, or its
user is deactivated (checked every ``stream_auth_check_s`` on the injected clock), REST
answers 401, and the change is in the audit log. Served by uvicorn, read over HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.settings import Settings
from tests.cloud.helpers import wait_for
from tests.utils.api_server import serve

CHECK_S = 30.0
TTL_S = 3600
_HASH: list[str] = []


@dataclass
class Served:
    base: str
    clock: ManualClock
    factory: sessionmaker[Session]

    def user(self, role: str, ttl_s: int = TTL_S) -> tuple[int, str]:
        """A user bound to the district and a token of theirs (issued directly: argon2
        is not what these tests are about)."""
        if not _HASH:
            _HASH.append(auth.hash_password("correct horse"))
        with transaction(self.factory) as s:
            row = m.User(
                username=f"u-{uuid.uuid4().hex[:10]}",
                password_hash=_HASH[0],
                role=role,
                active=True,
                created_at=self.clock(),
            )
            s.add(row)
            s.flush()
            return row.id, auth.issue_token(s, row, now=self.clock(), ttl_s=ttl_s)

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def post(self, path: str, token: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10
        )


@dataclass
class Stream:
    """An open ``/api/stream/alerts``, read on a thread until the server ends it."""

    lines: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def end_reason(self) -> str | None:
        for i, line in enumerate(self.lines):
            if line == "event: end":
                return str(json.loads(self.lines[i + 1].removeprefix("data: "))["reason"])
        return None


def _open(served: Served, token: str) -> Stream:
    stream = Stream()

    def read() -> None:
        with httpx.stream(
            "GET",
            f"{served.base}/api/stream/alerts",
            params={"access_token": token},
            timeout=httpx.Timeout(10, read=None),
        ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                stream.lines.append(line)
                stream.connected.set()
        stream.ended.set()

    threading.Thread(target=read, daemon=True).start()
    assert stream.connected.wait(10), "the stream did not open"
    return stream


@pytest.fixture
def served(factory: sessionmaker[Session]) -> Iterator[Served]:
    clock = ManualClock(datetime.now(UTC))
    state = ApiState(
        settings=Settings(environment="test"),
        factory=factory,
        clock=clock,
        stream_poll_s=0.05,
        stream_auth_check_s=CHECK_S,
    )
    with serve(create_api(state), timeout_graceful_shutdown=2) as server:
        yield Served(server.url, clock, factory)


def _audit(factory: sessionmaker[Session], user_id: int, action: str) -> m.AuditEntry:
    with factory() as s:
        return (
            s.query(m.AuditEntry)
            .filter(m.AuditEntry.target == f"user:{user_id}", m.AuditEntry.action == action)
            .one()
        )


@pytest.mark.parametrize("how", ["deactivate", "revoke-tokens"])
def test_a_stream_ends_within_the_check_interval_when_its_session_is_ended(
    served: Served, how: str
) -> None:
    admin_id, admin = served.user("admin")
    duty_id, duty = served.user("duty")
    stream = _open(served, duty)
    at = served.clock()
    r = served.post(f"/api/users/{duty_id}/{how}", admin)
    assert r.status_code == 200, r.text
    assert served.get("/api/alerts", duty).status_code == 401
    # the stream notices at its next check, on the injected clock: just short of the
    # interval it keeps going, at the interval it ends
    served.clock.advance(seconds=CHECK_S - 1)
    assert not stream.ended.wait(0.3)
    served.clock.advance(seconds=1)
    wait_for(stream.ended.is_set, timeout=10)
    assert stream.end_reason() == "token_revoked_or_user_deactivated"
    entry = _audit(
        served.factory, duty_id, "user_deactivated" if how == "deactivate" else "tokens_revoked"
    )
    with served.factory() as s:
        assert entry.actor == s.get_one(m.User, admin_id).username
    assert entry.at == at
    # reconnecting with the old token is refused
    assert (
        httpx.get(f"{served.base}/api/stream/alerts", params={"access_token": duty}).status_code
        == 401
    )


def test_a_stream_ends_when_its_token_expires(served: Served) -> None:
    _, duty = served.user("duty", ttl_s=120)
    stream = _open(served, duty)
    served.clock.advance(seconds=119)
    assert served.get("/api/alerts", duty).status_code == 200
    served.clock.advance(seconds=1)
    wait_for(stream.ended.is_set, timeout=10)
    assert stream.end_reason() == "token_expired"
    assert served.get("/api/alerts", duty).status_code == 401


def test_revoked_users_log_in_again_deactivated_ones_cannot(served: Served) -> None:
    admin_id, admin = served.user("admin")
    duty_id, duty = served.user("duty")
    with served.factory() as s:
        name = s.get_one(m.User, duty_id).username
    login = {"username": name, "password": "correct horse"}
    assert served.post(f"/api/users/{duty_id}/revoke-tokens", admin).json() == {
        "user_id": duty_id,
        "revoked": 1,
    }
    assert served.get("/api/alerts", duty).status_code == 401
    again = httpx.post(f"{served.base}/api/auth/token", json=login, timeout=10)
    assert again.status_code == 200
    assert served.get("/api/alerts", again.json()["access_token"]).status_code == 200
    out = served.post(f"/api/users/{duty_id}/deactivate", admin)
    assert out.status_code == 200 and out.json()["active"] is False
    assert served.get("/api/alerts", again.json()["access_token"]).status_code == 401
    assert httpx.post(f"{served.base}/api/auth/token", json=login, timeout=10).status_code == 401
    # an admin cannot lock themselves out; a missing user is a 404
    assert served.post(f"/api/users/{admin_id}/deactivate", admin).status_code == 409
    assert served.post("/api/users/987654321/deactivate", admin).status_code == 404
    _audit(served.factory, duty_id, "tokens_revoked")
    _audit(served.factory, duty_id, "user_deactivated")
