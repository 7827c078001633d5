"""The duty console's reads (cloud/alerts/queries.py) on both stores: the filtered list,
its counts and unreviewed number, an alert's timeline, similar past alerts in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from cloud import alerts, auth, escalation
from cloud.alerts import AlertFilter
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _open(
    factory: sessionmaker[Session], gw: GatewayPath, seq: int, at: datetime, **kw: object
) -> int:
    """A new alert opened at ``at`` (a zone of its own, so it folds into nothing else)."""
    kw.setdefault("zone", f"z{seq}")
    kw.setdefault("ts", at)
    result = ingest(factory, gw, [event(seq, **kw)], now=at)
    (alert_id,) = result.alerts
    return int(alert_id)


def _user(**scope: str | None) -> m.User:
    """A user bound to ``scope``; queries read only its role and place."""
    return m.User(username="reader", role="duty", **scope)


def _ids(rows: list[m.Alert]) -> list[int]:
    return [a.id for a in rows]


def test_list_filters_by_kind_time_severity_and_review(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    parking = _open(factory, gw, 1, T0, severity=Severity.WARNING)
    smoke = _open(factory, gw, 2, T0 + timedelta(minutes=10), kind="smoke", severity=3)
    fault = _open(factory, gw, 3, T0 + timedelta(minutes=20), kind="elevator_fault")
    with transaction(factory) as s:
        alerts.give_verdict(s, smoke, "confirmed", actor="duty-a", now=T0 + timedelta(hours=1))
    me = _user(community=gw.community)
    with factory() as s:

        def listed(**kw: object) -> list[int]:
            total, rows = alerts.list_alerts(s, me, AlertFilter(**kw))  # type: ignore[arg-type]
            assert total == len(rows)
            return _ids(rows)

        # newest change first: the verdict touched the smoke alert last
        assert listed() == [smoke, fault, parking]
        assert sorted(listed(kinds=("smoke", "elevator_fault"))) == sorted([smoke, fault])
        assert listed(kinds=("nothing",)) == []
        # since ≤ opened_at < until
        assert listed(since=T0 + timedelta(minutes=10)) == [smoke, fault]
        assert listed(until=T0 + timedelta(minutes=10)) == [parking]
        assert listed(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20)) == [smoke]
        assert listed(min_severity=3) == [smoke]
        assert listed(reviewed=True) == [smoke]
        assert listed(reviewed=False) == [fault, parking]
        assert listed(statuses=("acknowledged",)) == []
        total, page = alerts.list_alerts(s, me, AlertFilter(limit=1, offset=1))
        assert total == 3 and _ids(page) == [fault]
        # the verdict comes with the page
        (row,) = alerts.list_alerts(s, me, AlertFilter(reviewed=True))[1]
        assert (row.verdict, row.verdict_by) == ("confirmed", "duty-a")
        # another community sees none of them
        assert alerts.list_alerts(s, _user(community="elsewhere"), AlertFilter()) == (0, [])
        # exactly these severities (the console's chips), not "at least"
        assert listed(severities=(2,)) == [fault, parking]
        assert listed(severities=(1,)) == []
    with transaction(factory) as s:
        escalation.escalate_by_hand(s, parking, actor="duty-a", now=T0 + timedelta(hours=2))
    with factory() as s:
        # escalation levels
        assert listed(levels=("compound",)) == [parking]
        assert listed(levels=("building",)) == [smoke, fault]
        assert listed(levels=("community", "district")) == []


def test_counts_by_status_and_severity_and_the_unreviewed(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    a = _open(factory, gw, 1, T0, severity=Severity.WARNING)
    b = _open(factory, gw, 2, T0, severity=Severity.CRITICAL)
    c = _open(factory, gw, 3, T0, severity=Severity.CRITICAL)
    me = _user(community=gw.community, compound=gw.compound)
    with factory() as s:
        assert alerts.counts(s, me, AlertFilter()) == alerts.AlertCounts(
            3, {"open": 3}, {int(Severity.WARNING): 1, int(Severity.CRITICAL): 2}, 3
        )
    with transaction(factory) as s:
        alerts.acknowledge(s, a, actor="duty", now=T0)
        alerts.give_verdict(s, b, "false_positive", actor="duty", now=T0)
        alerts.give_verdict(s, b, "confirmed", actor="duty", now=T0)  # replaces: still one
        alerts.resolve(s, c, actor="duty", now=T0)
    with factory() as s:
        got = alerts.counts(s, me, AlertFilter())
        assert got.total == 3 and got.unreviewed == 2
        assert got.by_status == {"acknowledged": 1, "open": 1, "resolved": 1}
        assert alerts.counts(s, me, AlertFilter(reviewed=False)).total == 2
        assert alerts.counts(s, me, AlertFilter(statuses=("open",))).unreviewed == 0
        assert alerts.counts(s, _user(community="elsewhere"), AlertFilter()) == (
            alerts.AlertCounts()
        )


def test_timeline_lists_every_change_in_order(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    alert_id = _open(factory, gw, 1, T0)
    with transaction(factory) as s:
        alerts.acknowledge(s, alert_id, actor="duty", now=T0 + timedelta(minutes=1))
        alerts.comment(s, alert_id, actor="duty", now=T0 + timedelta(minutes=2), note="seen")
        alerts.give_verdict(
            s, alert_id, "confirmed", actor="duty", now=T0 + timedelta(minutes=3), note="real"
        )
        alerts.resolve(s, alert_id, actor="duty", now=T0 + timedelta(minutes=4))
    with factory() as s:
        log = alerts.timeline(s, alert_id)
    assert [(t.action, t.note) for t in log] == [
        ("opened", None),
        ("acknowledged", None),
        ("comment", "seen"),
        ("verdict", "confirmed: real"),
        ("resolved", None),
    ]
    assert alerts.timeline(factory(), 987654321) == []


def test_similar_puts_the_same_place_first_then_the_compound_newest_first(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    neighbour = GatewayPath(gw.community, "compound-2", f"{gw.gateway}-n")
    next_door = GatewayPath(gw.community, gw.compound, f"{gw.gateway}-b2")  # building b2
    with transaction(factory) as s:
        for place, building in ((neighbour, "b1"), (next_door, "b2")):
            register_gateway(
                s, place.community, place.compound, place.gateway, building=building, **DEVICES
            )

    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    same_source = _open(factory, gw, 1, at(1), source="cam-1")
    same_building = _open(factory, gw, 2, at(5), source="cam-2")
    # its own camera named cam-1 too: the same name, but another device
    other_building = _open(factory, next_door, 3, at(7), source="cam-1", building="b2")
    _open(factory, gw, 4, at(8), kind="smoke", source="cam-1")  # another kind
    _open(factory, neighbour, 5, at(8), source="cam-1")  # another compound
    target = _open(factory, gw, 6, at(10), source="cam-1")
    _open(factory, gw, 7, at(20), source="cam-1")  # later than the target: not past
    with transaction(factory) as s:
        alerts.resolve(s, same_source, actor="duty-x", now=at(2))
        alerts.close(s, same_source, actor="sup", now=at(3))
        alerts.give_verdict(s, same_source, "false_positive", actor="duty-x", now=at(3))
    with factory() as s:
        alert = alerts.get_alert(s, target)
        found = alerts.similar(s, _user(community=gw.community), alert)
        assert [(x.alert.id, x.match) for x in found] == [
            (same_building, "place"),
            (same_source, "place"),
            (other_building, "compound"),
        ]
        resolved = found[1]
        assert (resolved.alert.status, resolved.resolved_by, resolved.resolved_at) == (
            "closed",
            "duty-x",
            at(2),
        )
        assert resolved.alert.verdict == "false_positive"
        assert (found[0].resolved_by, found[0].resolved_at) == (None, None)  # still open
        assert [x.alert.id for x in alerts.similar(s, _user(), alert, limit=1)] == [same_building]
        # a user of building b1 does not see b2's alert
        b1 = _user(community=gw.community, compound=gw.compound, building="b1")
        assert [x.alert.id for x in alerts.similar(s, b1, alert)] == [same_building, same_source]


@pytest.mark.parametrize("reviewed", [True, False])
def test_reviewed_filter_with_nothing_to_find(
    factory: sessionmaker[Session], reviewed: bool
) -> None:
    # an empty area: both halves of the filter answer nothing rather than failing
    with factory() as s:
        me = _user(community="nobody-here")
        assert alerts.list_alerts(s, me, AlertFilter(reviewed=reviewed)) == (0, [])
        assert alerts.counts(s, me, AlertFilter(reviewed=reviewed)).total == 0


def test_the_api_lists_counts_and_finds_similar_alerts(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    first = _open(factory, gw, 1, T0)
    smoke = _open(factory, gw, 2, T0 + timedelta(minutes=1), kind="smoke")
    latest = _open(factory, gw, 3, T0 + timedelta(minutes=2))
    with transaction(factory) as s:
        alerts.resolve(s, first, actor="duty-x", now=T0 + timedelta(minutes=3))
        reader = m.User(
            username=f"r-{gw.gateway}",
            password_hash="-",
            role="engineer",  # reading needs no action
            community=gw.community,
            active=True,
            created_at=T0,
        )
        s.add(reader)
        s.flush()
        headers = {"Authorization": f"Bearer {auth.issue_token(s, reader, now=T0, ttl_s=60)}"}
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=ManualClock(T0))
    with TestClient(create_api(state)) as client:

        def ids(**params: object) -> list[int]:
            r = client.get("/api/alerts", headers=headers, params=params)
            assert r.status_code == 200, r.text
            return [a["id"] for a in r.json()["items"]]

        assert ids(kind=["smoke", "illegal_parking"]) == [first, latest, smoke]
        assert ids(kind="smoke") == [smoke]  # one kind, as before
        since = (T0 + timedelta(minutes=1)).isoformat()
        until = (T0 + timedelta(minutes=2)).isoformat()
        assert ids(since=since, until=until) == [smoke]
        assert ids(status="resolved", reviewed="false") == [first]
        counts = client.get("/api/alerts/counts", headers=headers, params={"kind": "smoke"})
        assert counts.json() == {
            "total": 1,
            "by_status": {"open": 1},
            "by_severity": {"2": 1},
            "unreviewed": 1,
        }
        r = client.get(f"/api/alerts/{latest}/similar", headers=headers)
        assert r.status_code == 200, r.text
        (found,) = r.json()
        assert (found["id"], found["match"], found["status"], found["resolved_by"]) == (
            first,
            "place",
            "resolved",
            "duty-x",
        )
        assert client.get("/api/alerts/987654321/similar", headers=headers).status_code == 404
