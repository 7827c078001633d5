"""The REST API over real databases: auth, scope, lifecycle, conflicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import transaction
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def client(factory, clock):
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    with TestClient(create_api(state)) as c:
        yield c


def _user(factory, clock, role="duty", **scope) -> tuple[str, str]:
    name = f"u-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        auth.create_user(s, name, "correct horse", role, now=clock(), **scope)
    return name, "correct horse"


def _token(client, name, password) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _alert(factory, gw, clock) -> int:
    result = ingest(factory, gw, [event(1, severity=Severity.CRITICAL)], now=clock())
    (alert_id,) = result.alerts
    return alert_id


def test_unauthenticated_calls_get_401(client):
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/api/alerts", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        client.post("/api/auth/token", json={"username": "admin", "password": "x" * 9}).status_code
        == 401
    )
    assert client.get("/healthz").json() == {"ok": True}


def test_users_see_and_act_only_in_their_subtree(client, factory, clock, gw):
    other = unique_gateway()
    with transaction(factory) as s:
        register_gateway(
            s, other.community, other.compound, other.gateway, building="b1", **DEVICES
        )
    mine, theirs = _alert(factory, gw, clock), _alert(factory, other, clock)
    headers = _token(client, *_user(factory, clock, community=gw.community, compound=gw.compound))
    listed = client.get("/api/alerts", headers=headers).json()
    assert [a["id"] for a in listed["items"]] == [mine] and listed["total"] == 1
    # outside one's area reads as not existing (ids do not tell what exists elsewhere)
    assert client.get(f"/api/alerts/{theirs}", headers=headers).status_code == 404
    r = client.post(f"/api/alerts/{theirs}/acknowledge", headers=headers, json={})
    assert r.status_code == 404 and r.json()["detail"] == f"alert {theirs} does not exist"
    # a building-level user of another building sees nothing here either
    b2 = _token(
        client, *_user(factory, clock, community=gw.community, compound=gw.compound, building="b2")
    )
    assert client.get(f"/api/alerts/{mine}", headers=b2).status_code == 404
    # an engineer reads but may not act
    eng = _token(client, *_user(factory, clock, role="engineer"))
    assert client.get(f"/api/alerts/{mine}", headers=eng).status_code == 200
    assert client.post(f"/api/alerts/{mine}/acknowledge", headers=eng, json={}).status_code == 403


def test_lifecycle_is_audited_and_acknowledging_a_resolved_alert_is_409(client, factory, clock, gw):
    alert_id = _alert(factory, gw, clock)
    duty = _token(client, *_user(factory, clock, community=gw.community))
    sup = _token(client, *_user(factory, clock, role="supervisor"))
    assert (
        client.post(
            f"/api/alerts/{alert_id}/acknowledge", headers=duty, json={"note": "on it"}
        ).json()["status"]
        == "acknowledged"
    )
    wo = client.post(f"/api/alerts/{alert_id}/dispatch", headers=duty, json={}).json()
    assert wo["status"] == "created" and wo["alert_id"] == alert_id
    assert (
        client.post(
            f"/api/alerts/{alert_id}/comment",
            headers=duty,
            json={"note": "<script>alert(1)</script>'; DROP TABLE alerts;--"},
        ).status_code
        == 200
    )
    assert (
        client.post(f"/api/alerts/{alert_id}/resolve", headers=duty, json={}).json()["status"]
        == "resolved"
    )
    r = client.post(f"/api/alerts/{alert_id}/acknowledge", headers=duty, json={})
    assert r.status_code == 409
    assert r.json()["detail"] == f"alert {alert_id} is resolved; acknowledging needs it to be open"
    assert client.post(f"/api/alerts/{alert_id}/close", headers=duty, json={}).status_code == 403
    assert (
        client.post(f"/api/alerts/{alert_id}/close", headers=sup, json={}).json()["status"]
        == "closed"
    )
    detail = client.get(f"/api/alerts/{alert_id}", headers=duty).json()
    assert [t["action"] for t in detail["transitions"]] == [
        "opened",
        "acknowledged",
        "dispatched",
        "comment",
        "resolved",
        "closed",
    ]
    assert detail["transitions"][3]["note"].startswith("<script>")  # stored verbatim, safely
    assert all(t["at"] for t in detail["transitions"])
    assert client.get("/api/alerts/999999999", headers=duty).status_code == 404


def test_filters_pagination_and_queries(client, factory, clock, gw):
    ingest(factory, gw, [event(i, zone=f"z{i}") for i in range(1, 8)], now=clock())
    headers = _token(client, *_user(factory, clock, community=gw.community))
    page = client.get("/api/alerts", headers=headers, params={"limit": 3, "offset": 3}).json()
    assert page["total"] == 7 and len(page["items"]) == 3
    assert (
        client.get("/api/alerts", headers=headers, params={"status": "closed"}).json()["total"] == 0
    )
    assert len(client.get("/api/events", headers=headers).json()) == 7
    assert client.get("/api/site", headers=headers).json()["communities"][0]["id"] == gw.community
    gws = client.get("/api/devices/gateways", headers=headers).json()
    assert [g["id"] for g in gws] == [gw.gateway]
    assert "mb_ingest_messages_total" in client.get("/metrics").text


def test_status_heartbeat_makes_the_gateway_alive(client, factory, clock, gw):
    from cloud.ingest.store import Incoming
    from microbrain.protocol import GatewayState, Health, Status

    headers = _token(client, *_user(factory, clock, community=gw.community))
    assert client.get("/api/devices/gateways", headers=headers).json()[0]["alive"] is False
    status = Status(
        state=GatewayState.ONLINE,
        ts=clock(),
        health=Health(cpu_percent=12, memory_mb=300, disk_free_mb=9000, outbox_depth=4),
    )
    ingest(factory, gw, [Incoming(gw.topic("status"), status.to_json(), clock())], now=clock())
    (row,) = client.get("/api/devices/gateways", headers=headers).json()
    assert row["alive"] is True and row["health"]["outbox_depth"] == 4
    clock.advance(seconds=3 * 30 + 1)  # three heartbeats missed
    assert client.get("/api/devices/gateways", headers=headers).json()[0]["alive"] is False


def test_verify_sends_recheck_on_the_broker_and_the_reply_closes_the_order(
    broker, factory, clock, gw
):
    import queue

    from cloud.commands import MqttCommandSender
    from cloud.ingest.store import Incoming
    from microbrain.protocol import Reply, decode
    from tests.cloud.helpers import mqtt_client

    host, port = broker
    settings = Settings(environment="test", broker_url=f"mqtt://{host}:{port}")
    sender = MqttCommandSender(settings)
    state = ApiState(settings=settings, factory=factory, clock=clock, commands=sender)
    got: queue.Queue = queue.Queue()
    try:
        with TestClient(create_api(state)) as c, mqtt_client(host, port) as gateway:
            gateway.on_message = lambda _c, _u, msg: got.put(
                decode(msg.topic, bytes(msg.payload)).payload
            )
            gateway.subscribe(gw.topic("cmd", "recheck"), qos=1)
            alert_id = _alert(factory, gw, clock)
            headers = _token(c, *_user(factory, clock, community=gw.community))
            wo = c.post(f"/api/alerts/{alert_id}/dispatch", headers=headers, json={}).json()
            for action in ("accept", "start", "done"):
                assert (
                    c.post(
                        f"/api/work-orders/{wo['id']}/{action}", headers=headers, json={}
                    ).status_code
                    == 200
                )
            assert (
                c.post(f"/api/work-orders/{wo['id']}/verify", headers=headers, json={}).json()[
                    "status"
                ]
                == "verifying"
            )
            recheck = got.get(timeout=10)
            assert (recheck.name, recheck.source, recheck.alert) == (
                "recheck",
                "cam-1",
                str(alert_id),
            )
            reply = Reply(
                name="recheck",
                command_id=recheck.id,
                ok=True,
                detail={"present": False},
                ts=clock(),
            )
            ingest(
                factory,
                gw,
                [Incoming(gw.topic("reply", "recheck"), reply.to_json(), clock())],
                now=clock(),
            )
            assert (
                c.get(f"/api/work-orders/{wo['id']}", headers=headers).json()["status"]
                == "verified"
            )
            assert c.get(f"/api/alerts/{alert_id}", headers=headers).json()["status"] == "closed"
    finally:
        sender.close()


def test_admins_manage_users_and_gateway_credentials_within_their_area(client, factory, clock, gw):
    admin = _token(client, *_user(factory, clock, role="admin", community=gw.community))
    duty = _token(client, *_user(factory, clock, community=gw.community))
    body = {
        "username": f"n-{uuid.uuid4().hex[:6]}",
        "password": "long enough",
        "role": "duty",
        "community": gw.community,
        "compound": gw.compound,
    }
    assert client.post("/api/users", headers=duty, json=body).status_code == 403
    assert client.post("/api/users", headers=admin, json=body).status_code == 201
    assert client.post("/api/users", headers=admin, json=body).status_code == 409  # exists
    outside = {
        **body,
        "username": f"x-{uuid.uuid4().hex[:6]}",
        "community": "elsewhere",
        "compound": None,
    }
    # creating outside one's own area is refused (403) before asking whether it exists
    assert client.post("/api/users", headers=admin, json=outside).status_code == 403
    assert (
        client.post("/api/users", headers=admin, json={**body, "role": "king"}).status_code == 422
    )
    r = client.put(
        f"/api/gateways/{gw.gateway}/password", headers=admin, json={"password": "gateway-secret-1"}
    )
    assert r.status_code == 204
    assert (
        client.put(
            f"/api/gateways/{gw.gateway}/password",
            headers=duty,
            json={"password": "gateway-secret-1"},
        ).status_code
        == 403
    )
    assert client.get("/api/broker/passwd", headers=admin).status_code == 403  # community admin
    district = _token(client, *_user(factory, clock, role="admin"))
    passwd = client.get("/api/broker/passwd", headers=district).text
    assert f"{gw.gateway}:$7$" in passwd and "gateway-secret-1" not in passwd
    assert f"user {gw.gateway}" in client.get("/api/broker/acl", headers=district).text


def test_readings_dead_letters_and_stream_scope(client, factory, clock, gw):
    from datetime import timedelta

    from cloud.api.routes.stream import _changes, _latest
    from cloud.ingest.store import Incoming
    from tests.cloud.helpers import reading

    now = clock()
    ingest(
        factory,
        gw,
        [reading(i + 10, ts=now - timedelta(minutes=10 - i)) for i in range(1, 6)]
        + [Incoming(gw.topic("event"), b"<html>not json</html>", now)],
        now=now,
    )
    duty = _token(client, *_user(factory, clock, community=gw.community))
    q = {"gateway": gw.gateway, "sensor": "h1", "since": (now - timedelta(minutes=7)).isoformat()}
    got = client.get("/api/readings", headers=duty, params=q).json()
    assert len(got) == 3  # minutes -7, -6, -5 of -9 … -5
    assert got[0]["ts"] > got[-1]["ts"]
    assert client.get("/api/dead-letters", headers=duty).status_code == 403
    eng = _token(client, *_user(factory, clock, role="engineer"))
    (dead,) = client.get("/api/dead-letters", headers=eng, params={"gateway": gw.gateway}).json()
    assert "JSON" in dead["reason"] and dead["preview"].startswith("<html>")
    # the live stream shows only changes in the user's area (read from just before this
    # alert: the shared PostgreSQL database holds other tests' changes, more than a batch)
    state = client.app.state.api
    start = _latest(state)
    alert_id = _alert(factory, gw, clock)
    with factory() as s:
        from sqlalchemy import select

        from cloud.db import models as m

        mine = s.scalars(select(m.User).where(m.User.community == gw.community)).first()
        other = m.User(
            username="x",
            password_hash="",
            role="duty",
            community="elsewhere",
            active=True,
            created_at=now,
        )
    _, seen = _changes(state, mine, start)
    assert any(c["alert_id"] == alert_id for c in seen)
    _, unseen = _changes(state, other, start)
    assert not any(c["alert_id"] == alert_id for c in unseen)


def test_a_login_token_is_committed_before_the_response_is_sent(client, factory, clock):
    # driven through the ASGI interface itself, to look at the database at the moment
    # the response body goes out (TestClient returns only once the app is done)
    import asyncio
    import json

    name, password = _user(factory, clock)
    app = client.app
    for _ in range(5):
        body = json.dumps({"username": name, "password": password}).encode()
        chunks: list[bytes] = []
        stored_when_sent: list[bool] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/auth/token",
            "raw_path": b"/api/auth/token",
            "root_path": "",
            "query_string": b"",
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        sent = False

        # this iteration's body and lists, bound now (asyncio.run below runs them at once)
        async def receive(body=body):
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(message, chunks=chunks, stored_when_sent=stored_when_sent):
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    token = json.loads(b"".join(chunks))["access_token"]
                    with factory() as s:
                        stored_when_sent.append(
                            auth.user_for_token(s, token, now=clock()) is not None
                        )

        asyncio.run(app(scope, receive, send))
        assert stored_when_sent == [True]


def test_times_without_an_offset_are_refused_not_a_500(client, factory, clock, gw):
    duty = _token(client, *_user(factory, clock, community=gw.community))
    naive = "2026-01-01T08:00:00"
    for path, extra in (
        ("/api/events", {}),
        ("/api/readings", {"gateway": gw.gateway, "sensor": "h1"}),
    ):
        for name in ("since", "until"):
            r = client.get(path, headers=duty, params={**extra, name: naive})
            assert r.status_code == 422, r.text
            assert (
                client.get(path, headers=duty, params={**extra, name: naive + "Z"}).status_code
                == 200
            )


def test_a_token_in_the_url_is_refused_outside_the_stream(client, factory, clock):
    headers = _token(client, *_user(factory, clock))
    token = headers["Authorization"].split(" ", 1)[1]
    assert client.get("/api/alerts", headers=headers).status_code == 200
    assert client.get("/api/alerts", params={"access_token": token}).status_code == 401
    assert client.get("/api/auth/me", params={"access_token": token}).status_code == 401
