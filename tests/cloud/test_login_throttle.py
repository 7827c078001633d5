"""Login throttling per user name and per address (429 with Retry-After, on an injected
clock), counted in the database so that every cloud process shares the limit; and one
argon2 verify per attempt whether the user exists or not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth, login_throttle
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.login_throttle import ThrottlePolicy
from cloud.settings import Settings

POLICY = ThrottlePolicy(max_failures_per_user=5, max_failures_per_address=8, window_s=600)
RIGHT, WRONG = "correct horse", "wrong horse!"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def app(factory: sessionmaker[Session], clock: ManualClock) -> FastAPI:
    return create_api(
        ApiState(
            settings=Settings(environment="test"),
            factory=factory,
            clock=clock,
            login_throttle=POLICY,
        )
    )


def _address() -> str:
    # unique per test: the PostgreSQL database (and its counters) is shared by the session
    n = uuid.uuid4().int
    return f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250 + 1}"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=(_address(), 40000)) as c:
        yield c


_HASH: list[str] = []  # one hash of RIGHT for every user here: argon2 is the slow part


def _user(factory: sessionmaker[Session], clock: ManualClock) -> str:
    if not _HASH:
        _HASH.append(auth.hash_password(RIGHT))
    name = f"u-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        s.add(
            m.User(
                username=name, password_hash=_HASH[0], role="duty", active=True, created_at=clock()
            )
        )
    return name


def _login(client: TestClient, name: str, password: str) -> Any:
    return client.post("/api/auth/token", json={"username": name, "password": password})


def _throttled(by: str) -> float:
    return REGISTRY.get_sample_value("mb_login_throttled_total", {"by": by}) or 0.0


def test_the_sixth_wrong_password_in_a_window_is_refused_until_the_window_ends(
    app: FastAPI, client: TestClient, factory: sessionmaker[Session], clock: ManualClock
) -> None:
    name, other = _user(factory, clock), _user(factory, clock)
    before = _throttled("user")
    for _ in range(5):
        assert _login(client, name, WRONG).status_code == 401
    clock.advance(seconds=100)
    r = _login(client, name, WRONG)
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "500"  # the window began at the first failure
    assert "try again in 500 s" in r.json()["detail"] and "user name" in r.json()["detail"]
    # the right password does not get through while the name is throttled
    assert _login(client, name, RIGHT).status_code == 429
    assert _throttled("user") == before + 2
    # another user, from another address, is unaffected
    with TestClient(app, client=(_address(), 40001)) as elsewhere:
        assert _login(elsewhere, other, WRONG).status_code == 401
        assert _login(elsewhere, other, RIGHT).status_code == 200
    # and so is another user from the same address (its budget is larger)
    assert _login(client, other, RIGHT).status_code == 200
    clock.advance(seconds=500)
    assert _login(client, name, RIGHT).status_code == 200
    with factory() as s:
        assert login_throttle.failures(s, "user", name) == 0  # a success clears the name


def test_many_names_from_one_address_are_throttled_by_address(
    app: FastAPI, client: TestClient, factory: sessionmaker[Session], clock: ManualClock
) -> None:
    known = _user(factory, clock)
    before = _throttled("address")
    # unknown names count like known ones: the answer never tells which exist
    for i in range(8):
        assert _login(client, f"nobody-{uuid.uuid4().hex[:6]}-{i}", WRONG).status_code == 401
    r = _login(client, known, RIGHT)
    assert r.status_code == 429 and "address" in r.json()["detail"], r.text
    assert int(r.headers["Retry-After"]) == 600
    assert _throttled("address") == before + 1
    with TestClient(app, client=(_address(), 40002)) as elsewhere:
        assert _login(elsewhere, known, RIGHT).status_code == 200


def test_every_cloud_process_counts_against_the_same_limit(
    factory: sessionmaker[Session], clock: ManualClock
) -> None:
    # two API processes over one database (apps built separately: nothing shared in memory)
    name = _user(factory, clock)
    apps = [
        create_api(
            ApiState(
                settings=Settings(environment="test"),
                factory=factory,
                clock=clock,
                login_throttle=POLICY,
            )
        )
        for _ in range(2)
    ]
    with (
        TestClient(apps[0], client=(_address(), 1)) as a,
        TestClient(apps[1], client=(_address(), 2)) as b,
    ):
        for c in (a, b, a, b, a):
            assert _login(c, name, WRONG).status_code == 401
        assert _login(b, name, WRONG).status_code == 429


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting its verifies."""

    verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # argon2's names
        type(self).verifies += 1
        return super().verify(hash, password)


def test_known_and_unknown_users_each_cost_one_argon2_verify(
    client: TestClient,
    factory: sessionmaker[Session],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, inactive = _user(factory, clock), _user(factory, clock)
    with transaction(factory) as s:
        s.query(m.User).filter(m.User.username == inactive).update({"active": False})
    monkeypatch.setattr(auth, "_hasher", CountingHasher())
    # the dummy hash is made with the same parameters as every new hash, so it costs the same
    assert not auth._hasher.check_needs_rehash(auth._DUMMY_HASH)
    for who, password in (
        (name, WRONG),
        (f"nobody-{uuid.uuid4().hex[:6]}", WRONG),
        (inactive, RIGHT),
        (name, RIGHT),
    ):
        CountingHasher.verifies = 0
        assert _login(client, who, password).status_code in (200, 401)
        assert CountingHasher.verifies == 1, who


def test_a_hash_with_old_parameters_is_renewed_at_login(
    client: TestClient, factory: sessionmaker[Session], clock: ManualClock
) -> None:
    # a user whose hash was made with other (cheaper) parameters verifies faster than the
    # dummy, which tells them apart; their first login brings the hash to today's cost
    name = _user(factory, clock)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(RIGHT)
    with transaction(factory) as s:
        s.query(m.User).filter(m.User.username == name).update({"password_hash": old})
    assert _login(client, name, RIGHT).status_code == 200
    with factory() as s:
        renewed = s.query(m.User).filter(m.User.username == name).one().password_hash
    assert renewed != old and not auth._hasher.check_needs_rehash(renewed)
    assert _login(client, name, RIGHT).status_code == 200
