"""Verdicts, bulk actions and escalation by hand, through the services and the real API
on both stores."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from cloud import alerts, auth, escalation
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Conflict, Invalid
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway, wait_for

MISSING = 987654321012


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def client(factory: sessionmaker[Session], clock: ManualClock) -> Iterator[TestClient]:
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    with TestClient(create_api(state)) as c:
        yield c


def _alert(factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock) -> int:
    """A new critical alert (a zone of its own)."""
    ev = event(1, severity=Severity.CRITICAL, zone=f"z-{uuid.uuid4().hex[:8]}", ts=clock())
    (alert_id,) = ingest(factory, gw, [ev], now=clock()).alerts
    return int(alert_id)


def _headers(
    factory: sessionmaker[Session], clock: ManualClock, role: str = "duty", **scope: str
) -> dict[str, str]:
    with transaction(factory) as s:
        row = m.User(
            username=f"u-{uuid.uuid4().hex[:8]}",
            password_hash="-",  # never logs in: the token below is its session
            role=role,
            active=True,
            created_at=clock(),
            **scope,
        )
        s.add(row)
        s.flush()
        return {"Authorization": f"Bearer {auth.issue_token(s, row, now=clock(), ttl_s=3600)}"}


def _log(factory: sessionmaker[Session], alert_id: int) -> list[tuple[str, str | None, str]]:
    with factory() as s:
        return [
            (t.action, t.note, t.actor)
            for t in alerts.timeline(s, alert_id)
            if t.action not in ("opened",)
        ]


def test_a_verdict_is_stored_with_who_and_when_replaced_and_logged(
    factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    alert_id = _alert(factory, gw, clock)
    first, later = clock(), clock() + timedelta(minutes=5)
    with transaction(factory) as s:
        alerts.give_verdict(s, alert_id, "false_positive", actor="duty-a", now=first, note="a cat")
    with transaction(factory) as s:
        row = alerts.give_verdict(s, alert_id, alerts.Verdict.CONFIRMED, actor="duty-b", now=later)
        assert (row.verdict, row.actor, row.at, row.note) == ("confirmed", "duty-b", later, None)
    with factory() as s:
        alert = alerts.get_alert(s, alert_id)
        assert (alert.verdict, alert.verdict_by, alert.verdict_at) == ("confirmed", "duty-b", later)
        assert alert.status == "open"  # a verdict is no status change
        # one row, the latest; the log keeps both
        (kept,) = s.scalars(select(m.AlertVerdict).where(m.AlertVerdict.alert_id == alert_id))
        assert kept.actor == "duty-b"
        logged = [t for t in alerts.timeline(s, alert_id) if t.action == "verdict"]
        assert [(t.from_status, t.to_status) for t in logged] == [("open", "open")] * 2
    assert _log(factory, alert_id) == [
        ("verdict", "false_positive: a cat", "duty-a"),
        ("verdict", "confirmed", "duty-b"),
    ]
    with transaction(factory) as s, pytest.raises(Invalid):
        alerts.give_verdict(s, alert_id, "maybe", actor="duty", now=later)


def test_two_first_verdicts_at_once_both_count_the_later_one_kept(
    factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock, cloud_url: str
) -> None:
    # without the alert's lock both would find no verdict row and insert one: the second
    # insert then fails on the primary key
    if not cloud_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises whole transactions")
    alert_id = _alert(factory, gw, clock)
    errors: list[DBAPIError] = []

    def second() -> None:
        try:
            with transaction(factory) as s:
                alerts.give_verdict(s, alert_id, "confirmed", actor="duty-b", now=clock())
        except DBAPIError as err:  # reported below, in the test's thread
            errors.append(err)

    with factory() as holder, holder.begin():
        alerts.give_verdict(holder, alert_id, "false_positive", actor="duty-a", now=clock())
        holder_pid = holder.scalar(text("select pg_backend_pid()"))
        worker = threading.Thread(target=second)
        worker.start()

        def blocked() -> bool:
            with factory() as probe:
                waiting = probe.scalar(
                    text(
                        "select count(*) from pg_stat_activity "
                        "where :pid = any(pg_blocking_pids(pid))"
                    ),
                    {"pid": holder_pid},
                )
                return bool(waiting)

        wait_for(blocked)  # the second waits for the first's lock on the alert
    worker.join(30)
    assert not worker.is_alive() and errors == []
    with factory() as s:
        assert alerts.get_alert(s, alert_id).verdict_by == "duty-b"
    assert [a for a, _, _ in _log(factory, alert_id)] == ["verdict", "verdict"]


def test_verdict_over_the_api_and_in_the_alert(
    client: TestClient, factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    alert_id = _alert(factory, gw, clock)
    duty = _headers(factory, clock, community=gw.community)
    url = f"/api/alerts/{alert_id}"
    assert client.get(url, headers=duty).json()["verdict"] is None
    r = client.post(f"{url}/verdict", headers=duty, json={"verdict": "false_positive", "note": "x"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "false_positive" and body["verdict_at"] is not None
    detail = client.get(url, headers=duty).json()
    assert detail["verdict_by"] == body["verdict_by"] and detail["transitions"][-1]["action"] == (
        "verdict"
    )
    listed = client.get("/api/alerts", headers=duty, params={"reviewed": "true"}).json()
    assert [a["id"] for a in listed["items"]] == [alert_id]
    assert listed["items"][0]["verdict"] == "false_positive"
    assert (
        client.get("/api/alerts", headers=duty, params={"reviewed": "false"}).json()["total"] == 0
    )
    counts = client.get("/api/alerts/counts", headers=duty).json()
    assert counts == {
        "total": 1,
        "by_status": {"open": 1},
        "by_severity": {str(int(Severity.CRITICAL)): 1},
        "unreviewed": 0,
    }
    bad = client.post(f"{url}/verdict", headers=duty, json={"verdict": "maybe"})
    assert bad.status_code == 422
    eng = _headers(factory, clock, role="engineer")
    assert client.post(
        f"{url}/verdict", headers=eng, json={"verdict": "confirmed"}
    ).status_code == (403)


def test_bulk_reports_each_id_on_its_own_in_one_commit(
    client: TestClient, factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    other = unique_gateway()
    with transaction(factory) as s:
        register_gateway(
            s, other.community, other.compound, other.gateway, building="b1", **DEVICES
        )
    fresh, done = _alert(factory, gw, clock), _alert(factory, gw, clock)
    theirs = _alert(factory, other, clock)
    duty = _headers(factory, clock, community=gw.community, compound=gw.compound)
    assert client.post(f"/api/alerts/{done}/acknowledge", headers=duty, json={}).status_code == 200
    r = client.post(
        "/api/alerts/bulk/acknowledge",
        headers=duty,
        json={"ids": [fresh, done, theirs, MISSING, fresh], "note": "all of them"},
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["id"], x["ok"], x["error"]) for x in results] == [
        (fresh, True, None),
        (done, False, "conflict"),
        (theirs, False, "not_found"),
        (MISSING, False, "not_found"),
    ]
    assert "acknowledged" in results[1]["detail"]
    # another area's alert reads exactly as one that does not exist
    assert results[2]["detail"].replace(str(theirs), "<id>") == results[3]["detail"].replace(
        str(MISSING), "<id>"
    )
    with factory() as s:
        assert alerts.get_alert(s, fresh).status == "acknowledged"
        assert alerts.get_alert(s, theirs).status == "open"
    assert _log(factory, fresh)[-1][:2] == ("acknowledged", "all of them")

    r = client.post(
        "/api/alerts/bulk/verdict",
        headers=duty,
        json={"ids": [done, theirs], "verdict": "confirmed"},
    )
    assert [(x["id"], x["ok"], x["error"]) for x in r.json()["results"]] == [
        (done, True, None),
        (theirs, False, "not_found"),
    ]
    with factory() as s:
        assert alerts.get_alert(s, done).verdict == "confirmed"
        assert alerts.get_alert(s, theirs).verdict is None


def test_bulk_takes_at_most_200_ids_and_checks_the_role(
    client: TestClient, factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    duty = _headers(factory, clock, community=gw.community)
    ids = list(range(1, 202))
    for path, extra in (("acknowledge", {}), ("verdict", {"verdict": "confirmed"})):
        r = client.post(f"/api/alerts/bulk/{path}", headers=duty, json={"ids": ids, **extra})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ids"], r.text
        r = client.post(f"/api/alerts/bulk/{path}", headers=duty, json={"ids": ids[:200], **extra})
        assert r.status_code == 200 and len(r.json()["results"]) == 200
    assert client.post(
        "/api/alerts/bulk/acknowledge", headers=duty, json={"ids": []}
    ).status_code == (422)
    eng = _headers(factory, clock, role="engineer")
    assert client.post(
        "/api/alerts/bulk/acknowledge", headers=eng, json={"ids": [1]}
    ).status_code == (403)
    with factory() as s, pytest.raises(Invalid):
        alerts.bulk_acknowledge(s, m.User(role="duty"), list(range(1, 300)), now=clock())


def test_escalating_by_hand_climbs_one_level_and_stops_at_the_top(
    client: TestClient, factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    alert_id = _alert(factory, gw, clock)
    duty = _headers(factory, clock, community=gw.community)
    url = f"/api/alerts/{alert_id}/escalate"
    r = client.post(url, headers=duty, json={"note": "smoke on the stairs"})
    assert r.status_code == 200 and r.json()["level"] == "compound", r.text
    with factory() as s:
        deadline = s.get(m.EscalationDeadline, alert_id)
        assert deadline is not None and deadline.level == "compound"  # the clock moved too
        assert deadline.due_at > clock()
    assert client.post(url, headers=duty, json={}).json()["level"] == "community"
    top = client.post(url, headers=duty, json={})
    assert top.status_code == 409 and "top" in top.json()["detail"], top.text
    log = _log(factory, alert_id)
    assert [a for a, _, _ in log] == ["escalated", "escalated"]
    assert log[0][1] is not None and log[0][1].endswith(": smoke on the stairs")
    assert log[0][2] != "system:escalation"
    # the scheduler finds the community's deadline, and whistles as before (called for
    # this alert only: on PostgreSQL other tests' deadlines share the table)
    with transaction(factory) as s:
        deadline = s.get(m.EscalationDeadline, alert_id)
        assert deadline is not None and deadline.level == "community"
        reached = escalation.escalate_one(
            s, alert_id, deadline.level, deadline.due_at, deadline.due_at
        )
    assert reached == "whistle"
    with factory() as s:
        assert alerts.get_alert(s, alert_id).status == "dispatched"

    eng = _headers(factory, clock, role="engineer")
    assert client.post(url, headers=eng, json={}).status_code == 403


def test_escalating_by_hand_needs_an_active_alert(
    factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock
) -> None:
    alert_id = _alert(factory, gw, clock)
    with transaction(factory) as s:
        alerts.acknowledge(s, alert_id, actor="duty", now=clock())
    with transaction(factory) as s:
        # acknowledged alerts climb too (no clock runs for them, so none is moved)
        assert escalation.escalate_by_hand(s, alert_id, actor="duty", now=clock()).level == (
            "compound"
        )
        assert s.get(m.EscalationDeadline, alert_id) is None
        alerts.resolve(s, alert_id, actor="duty", now=clock())
    with transaction(factory) as s, pytest.raises(Conflict, match="needs it to be active"):
        escalation.escalate_by_hand(s, alert_id, actor="duty", now=clock())
