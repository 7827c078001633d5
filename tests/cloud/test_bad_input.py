"""Bad input at the ingest: stored safely or dead-lettered with a reason, counted, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from cloud.db import models as m
from cloud.ingest.store import Incoming
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import event, ingest, reading
from tests.utils.api_server import serve


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("mb_ingest_rejected_total", {"reason": reason}) or 0.0


def _raw(topic: str, payload: bytes | str, now: datetime | None = None) -> Incoming:
    return Incoming(
        topic, payload.encode() if isinstance(payload, str) else payload, now or datetime.now(UTC)
    )


def _cases(gw: GatewayPath):
    other = GatewayPath(gw.community, "another-compound", gw.gateway)
    stranger = GatewayPath(gw.community, gw.compound, "gw-nobody-knows")
    future = datetime.now(UTC) + timedelta(hours=1)
    return [
        (
            "unknown gateway",
            _raw(stranger.topic("event"), event(1).to_json()),
            "unknown_gateway",
            "not registered",
            None,
        ),
        (
            "topic of another compound",
            _raw(other.topic("event"), event(2).to_json()),
            "place_mismatch",
            "registered in",
            None,
        ),
        (
            "building not in the compound",
            _raw(gw.topic("reading"), reading(3, building="b9").to_json()),
            "place_mismatch",
            "'b9' is not in",
            3,
        ),
        (
            "future timestamp",
            _raw(gw.topic("event"), event(4, ts=future).to_json()),
            "future_timestamp",
            "in the future",
            4,
        ),
        (
            "oversize",
            _raw(gw.topic("event"), b'{"seq": 5, "x": "' + b"a" * 300_000 + b'"}'),
            "oversize",
            "exceeds",
            None,
        ),
        ("not json", _raw(gw.topic("reading"), b"\xff\xfe{{{"), "invalid_payload", "JSON", None),
        (
            "deep nesting",
            _raw(gw.topic("reading"), "[" * 30_000 + "]" * 30_000),
            "invalid_payload",
            "recursion limit",
            None,
        ),
        (
            "control characters",
            _raw(
                gw.topic("event"),
                json.dumps({**json.loads(event(6).to_json()), "message": "\x1b[2J\x00boom"}),
            ),
            "invalid_payload",
            "control characters",
            6,
        ),
        (
            "wrong types",
            _raw(
                gw.topic("reading"),
                json.dumps(
                    {
                        "type": "reading",
                        "seq": 7,
                        "sensor": "h1",
                        "kind": "x",
                        "values": {"p": "NaN"},
                    }
                ),
            ),
            "invalid_payload",
            "finite number",
            7,
        ),
        (
            "topic outside the tree",
            _raw("mb/v1/../../etc/passwd", b"{}"),
            "invalid_topic",
            "'..' is not a valid id",
            None,
        ),
        (
            "event on the reading topic",
            _raw(gw.topic("reading"), event(8).to_json()),
            "invalid_payload",
            "should be 'reading'",
            8,
        ),
        (
            "bad evidence name",
            _raw(
                gw.topic("event"),
                json.dumps(
                    {
                        **json.loads(event(9).to_json()),
                        "evidence": [
                            {"kind": "snapshot", "name": "../../x", "sha256": "0" * 64, "bytes": 1}
                        ],
                    }
                ),
            ),
            "invalid_payload",
            "evidence.0.name",
            9,
        ),
        (
            "reply named unlike its topic",
            _raw(
                gw.topic("reply", "recheck"),
                json.dumps({"type": "reply", "name": "announce", "ok": True}),
            ),
            "invalid_topic",
            "does not match topic name",
            None,
        ),
    ]


@pytest.mark.parametrize("index", range(13))
def test_each_bad_message_is_dead_lettered_with_reason_and_counted(factory, gw, index):
    name, msg, label, reason_part, acked_seq = _cases(gw)[index]
    before = _rejected(label)
    result = ingest(factory, gw, [msg, reading(100)])  # a good message in the same batch survives
    assert result.rejected == 1 and result.stored == 1, name
    assert _rejected(label) == before + 1
    with factory() as s:
        (dead,) = s.scalars(
            select(m.DeadLetter)
            .where(m.DeadLetter.topic == msg.topic[:600])
            .order_by(m.DeadLetter.pk.desc())
            .limit(1)
        )
        assert reason_part in dead.reason
        assert dead.payload == msg.payload[: len(dead.payload)] and dead.payload
    acked = {s for r in result.ack_ranges().values() for f, l in r for s in range(f, l + 1)}
    # bad items from the gateway itself are acknowledged (they are kept here, in the dead
    # letters); a stranger's never are
    assert acked == ({100, acked_seq} if acked_seq else {100})


def test_hostile_but_valid_strings_are_stored_verbatim(factory, gw):
    hostile = "'); DROP TABLE events;-- <img src=x onerror=alert(1)> \u202e 楼道 ☃ %s %n {0}"
    result = ingest(factory, gw, [event(1, message=hostile, detail={"note": hostile[:200]})])
    assert result.stored == 1
    with factory() as s:
        row = s.scalars(select(m.EventRow).where(m.EventRow.gateway == gw.gateway)).one()
        assert row.message == hostile and row.payload["detail"]["note"] == hostile[:200]


def test_duplicates_out_of_order_and_gaps(factory, gw):
    now = datetime.now(UTC)
    old = event(3, ts=now - timedelta(days=2))
    first = ingest(factory, gw, [event(5, ts=now), old, old, reading(1)])
    assert (first.stored, first.duplicates) == (3, 1)
    assert first.gaps == [(gw.gateway, 2, 2), (gw.gateway, 4, 4)]
    again = ingest(factory, gw, [old, reading(2), reading(4)])  # a replay fills the gaps
    assert (again.stored, again.duplicates, again.gaps) == (2, 1, [])
    # the same seq under a new id (an older gateway's outbox reset): a new item, stored
    # all the same and counted as a collision, never discarded
    clash = ingest(factory, gw, [reading(2)])
    assert (clash.stored, clash.rejected, clash.collisions) == (1, 0, 1)
    with factory() as s:
        events = s.scalars(
            select(m.EventRow).where(m.EventRow.gateway == gw.gateway).order_by(m.EventRow.ts)
        ).all()
        assert [e.seq for e in events] == [3, 5]  # out-of-order timestamps stored as sent
        row = s.get(m.Gateway, gw.gateway)
        assert (row.last_seq, row.seq_collisions) == (5, 1)


def test_the_same_bad_item_resent_is_one_dead_letter_with_a_count(factory, gw):
    from cloud.db import transaction
    from cloud.retention import prune_dead_letters

    first = datetime.now(UTC) - timedelta(days=100)
    bad = b'{"type": "reading", "seq": 5, "oops": true}'
    ingest(factory, gw, [_raw(gw.topic("reading"), bad, first)], now=first)
    for _ in range(2):
        ingest(factory, gw, [_raw(gw.topic("reading"), bad)])
    result = ingest(
        factory,
        gw,
        [
            _raw(gw.topic("reading"), bad),
            _raw(gw.topic("reading"), bad),
            _raw(gw.topic("reading"), b"other junk"),
        ],
    )
    assert result.rejected == 3  # each refusal is still counted (and acknowledged)
    with factory() as s:
        rows = s.scalars(
            select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway).order_by(m.DeadLetter.pk)
        ).all()
        assert [(r.payload, r.count) for r in rows] == [(bad, 5), (b"other junk", 1)]
        assert rows[0].last_seen > first + timedelta(days=99)
    # last seen lately: retention keeps it though first received long ago
    with transaction(factory) as s:
        prune_dead_letters(s, now=datetime.now(UTC), keep_days=90)
    with factory() as s:
        assert (
            s.scalar(
                select(m.DeadLetter.count).where(
                    m.DeadLetter.gateway == gw.gateway, m.DeadLetter.payload == bad
                )
            )
            == 5
        )


# --- the API: what the database cannot hold answers 422 naming the field, never a 500 ---

BIG = 2**63  # one past the largest BIGINT / SQLite INTEGER
FAR = "9999-12-31T23:59:59-14:00"  # year 10000 in UTC
EARLY = "0001-01-01T00:00:00%2B14:00"  # year 0 in UTC


@pytest.fixture
def api(factory):
    """A client of the app on this database, and an admin's bearer header."""
    import uuid

    from fastapi.testclient import TestClient

    from cloud import auth
    from cloud.api import create_api
    from cloud.api.deps import ApiState
    from cloud.db import transaction
    from cloud.settings import Settings

    now = datetime.now(UTC)
    with transaction(factory) as s:
        # no password (never logs in): a token is all these requests need, and no argon2 runs
        admin = m.User(
            username=f"a-{uuid.uuid4().hex[:8]}",
            password_hash="!",
            role="admin",
            active=True,
            created_at=now,
        )
        s.add(admin)
        s.flush()
        token = auth.issue_token(s, admin, now=now, ttl_s=3600)
    app = create_api(ApiState(settings=Settings(environment="test"), factory=factory))
    with TestClient(app, raise_server_exceptions=False) as c:  # a 500 is an answer to list
        yield c, {"Authorization": f"Bearer {token}"}


def _invalid_requests() -> float:
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "mb_api_invalid_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    )


# (method, url, body or headers, the location the 422 must name); one app per store, so the
# table runs in seconds
REFUSED: list[tuple[str, str, dict[str, str] | None, list[str]]] = [
    ("GET", f"/api/alerts/{BIG}", None, ["path", "alert_id"]),
    ("GET", "/api/alerts/-53580601794350912640078118387712", None, ["path", "alert_id"]),
    ("POST", f"/api/alerts/{BIG}/acknowledge", {}, ["path", "alert_id"]),
    ("POST", f"/api/alerts/{BIG}/dispatch", {}, ["path", "alert_id"]),
    ("POST", f"/api/alerts/{BIG}/resolve", {}, ["path", "alert_id"]),
    ("POST", f"/api/alerts/{BIG}/close", {}, ["path", "alert_id"]),
    ("POST", f"/api/alerts/{BIG}/comment", {"note": "x"}, ["path", "alert_id"]),
    ("GET", f"/api/work-orders/{BIG}", None, ["path", "work_order_id"]),
    ("POST", f"/api/work-orders/{BIG}/accept", {}, ["path", "work_order_id"]),
    ("GET", f"/api/alerts?offset={BIG}", None, ["query", "offset"]),
    ("GET", f"/api/work-orders?offset={14820693602151944192}", None, ["query", "offset"]),
    ("GET", f"/api/events?alert_id={BIG}", None, ["query", "alert_id"]),
    ("GET", f"/api/events?since={FAR}", None, ["query", "since"]),
    ("GET", f"/api/events?until={EARLY}", None, ["query", "until"]),
    ("GET", f"/api/readings?gateway=g&sensor=s&since={FAR}", None, ["query", "since"]),
    ("GET", f"/api/readings?gateway=g&sensor=s&until={EARLY}", None, ["query", "until"]),
    (
        "GET",
        "/api/stream/alerts",
        {"Last-Event-ID": "99999999999999999999"},
        ["header", "Last-Event-ID"],
    ),
    # PostgreSQL's text holds no NUL: refused at the door on both stores
    ("GET", "/api/alerts?kind=a%00b", None, ["query", "kind"]),
    ("GET", "/api/events?kind=%00", None, ["query", "kind"]),
    ("GET", "/api/readings?gateway=%00&sensor=x", None, ["query", "gateway"]),
    ("GET", "/api/work-orders?status=%00", None, ["query", "status"]),
    ("GET", "/api/devices?gateway=%00", None, ["query", "gateway"]),
    ("GET", "/api/evidence/a%00/b.jpg", None, ["path", "event_id"]),
    ("POST", "/api/alerts/1/comment", {"note": "a\x00b"}, ["body", "note"]),
    (
        "POST",
        "/api/auth/token",
        {"username": "ad\x00min", "password": "whatever1"},
        ["body", "username"],
    ),
]


def test_api_refuses_what_the_database_cannot_hold_naming_the_field(api):
    client, admin = api
    wrong = []
    for method, url, body, loc in REFUSED:
        before = _invalid_requests()
        if loc[0] == "header":
            r = client.request(method, url, headers={**admin, **(body or {})})
        else:
            r = client.request(method, url, headers=admin, json=body)
        named = [e["loc"] for e in r.json()["detail"]] if r.status_code == 422 else []
        # counted once (mb_api_invalid_requests_total)
        if loc not in named or _invalid_requests() != before + 1:
            wrong.append((method, url, r.status_code, r.text[:300]))
    assert wrong == []


EDGES = [
    (f"/api/alerts/{BIG - 1}", 404),  # the largest id is a fine question, with no answer
    (f"/api/work-orders/{BIG - 1}", 404),
    (f"/api/alerts?offset={BIG - 1}", 200),
    (f"/api/work-orders?offset={BIG - 1}", 200),
    (f"/api/events?alert_id={BIG - 1}", 200),
    ("/api/events?since=9999-12-31T23:59:59.999999Z&until=9999-12-31T23:59:59.999999%2B00:00", 200),
    ("/api/events?since=0001-01-01T00:00:00Z", 200),
    ("/api/events?since=0001-01-01T08:00:00%2B08:00", 200),
    (
        (
            "/api/readings?gateway=g&sensor=s&since=0001-01-01T00:00:00Z"
            "&until=9999-12-31T09:59:59-14:00"
        ),
        200,
    ),
]


def test_api_answers_at_the_edges_of_what_the_database_holds(api):
    client, admin = api
    answers = [(url, client.get(url, headers=admin).status_code) for url, _ in EDGES]
    assert answers == EDGES


def test_the_stream_resumes_after_any_id_the_database_holds(factory, gw):
    """Last-Event-ID is parsed with the ids' bound: 0 replays what is stored, 2^63-1 (the
    largest) waits for what comes next; both open the stream (before, 2^63 was a 500 in
    the stream's first query, and a non-number was silently ignored)."""
    import uuid

    import httpx

    from cloud import auth
    from cloud.api import create_api
    from cloud.api.deps import ApiState
    from cloud.db import transaction
    from cloud.settings import Settings

    ingest(factory, gw, [event(1)])  # opens an alert: one change to replay
    now = datetime.now(UTC)
    with transaction(factory) as s:
        user = m.User(
            username=f"a-{uuid.uuid4().hex[:8]}",
            password_hash="!",
            role="admin",
            active=True,
            created_at=now,
        )
        s.add(user)
        s.flush()
        token = auth.issue_token(s, user, now=now, ttl_s=3600)
    app = create_api(ApiState(settings=Settings(environment="test"), factory=factory))
    with serve(app, timeout_graceful_shutdown=2) as server:

        def first_lines(last_event_id: str, until: str) -> list[str]:
            headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": last_event_id}
            lines: list[str] = []
            with httpx.stream(
                "GET",
                f"{server.url}/api/stream/alerts",
                headers=headers,
                timeout=httpx.Timeout(20),
            ) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    lines.append(line)
                    if line.startswith(until):
                        return lines
            return lines

        replayed = first_lines("0", "data: ")
        assert replayed[0] == ": connected" and any(line.startswith("id: ") for line in replayed)
        assert first_lines(str(2**63 - 1), ": connected") == [": connected"]


def _parameters(openapi: dict) -> list[tuple[str, str, dict]]:
    """(method, path, parameter) for every parameter of every operation."""
    return [
        (method, path, p)
        for path, ops in openapi["paths"].items()
        for method, op in ops.items()
        for p in op.get("parameters", [])
    ]


def _alternatives(schema: dict) -> list[dict]:
    return list(schema.get("anyOf", [schema]))


def test_every_number_a_route_takes_is_bounded_to_what_the_database_holds(api):
    """A new route with a bare ``int`` parameter fails here (schemathesis may not happen
    to draw 2^63 for it)."""
    from cloud.api.params import MAX_DB_INT

    client, _ = api
    unbounded = []
    for method, path, p in _parameters(client.get("/openapi.json").json()):
        for s in _alternatives(p["schema"]):
            low, high = s.get("minimum", -(2**64)), s.get("maximum", 2**64)
            if s.get("type") == "integer" and not -MAX_DB_INT - 1 <= low <= high <= MAX_DB_INT:
                unbounded.append((method, path, p["name"]))
    assert unbounded == []


def test_every_time_a_route_takes_refuses_what_the_database_cannot_store(api):
    """Each date-time parameter, sent a time past year 9999 in UTC, answers 422 naming it
    (other parameters filled with plain values)."""
    client, admin = api
    openapi = client.get("/openapi.json").json()
    times = [
        (m, path, p)
        for m, path, p in _parameters(openapi)
        for s in _alternatives(p["schema"])
        if s.get("format") == "date-time"
    ]
    assert times  # since/until of events and readings at least
    wrong = []
    for method, path, param in times:
        others = {
            p["name"]: "x"
            for m, pth, p in _parameters(openapi)
            if (m, pth) == (method, path) and p.get("required") and p["in"] == "query"
        }
        r = client.request(
            method.upper(),
            path,
            headers=admin,
            params={**others, param["name"]: "9999-12-31T23:59:59-14:00"},
        )
        named = [e["loc"] for e in r.json()["detail"]] if r.status_code == 422 else []
        if [param["in"], param["name"]] not in named:
            wrong.append((method, path, param["name"], r.status_code))
    assert wrong == []
