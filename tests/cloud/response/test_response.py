"""Playbooks applied to real alerts on both stores, with an injected clock: notifications
over real HTTP to local receivers, the rate budget and its digests, retries, the work
order's deadline, one run per alert however many responders see it."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cloud import alerts, auth, work_orders
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.response import load_response
from cloud.response.deliveries import RetryPolicy, delivery_log
from cloud.response.runner import Responder
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway
from tests.utils.http_receiver import Receiver, http_receiver

SECRET = "test-secret-key"
TAG: dict[Path, str] = {}
# each test's playbooks cover only its own community: on PostgreSQL the session's tests
# share one database, and other tests' alerts (at the same injected times) are there too
PLACE: dict[Path, GatewayPath] = {}


_STARTS = itertools.count()


def _clock() -> ManualClock:
    """A clock of this test's own: the responder takes alerts opened in the last 10
    minutes that have no run yet, and on PostgreSQL the session's tests share one
    database, whose other tests open alerts at ManualClock's default time by the hundred
    (a round takes 200): each test here starts a day after the last."""
    return ManualClock(datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=next(_STARTS)))


@pytest.fixture(autouse=True)
def tag(tmp_path: Path) -> str:
    TAG[tmp_path] = uuid.uuid4().hex[:8]
    return TAG[tmp_path]


@pytest.fixture
def place(factory, tmp_path):
    gw = unique_gateway()
    PLACE[tmp_path] = gw
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        for dept in ("property", "fire"):
            s.merge(m.Department(id=dept, name=dept, contacts=[]))
    return gw


def _book(
    tmp_path: Path, receivers: dict[str, Receiver], *, budget: int = 20, extra: str = ""
) -> Path:
    channels = "\n".join(
        f"  - {{id: {cid}-{TAG[tmp_path]}, type: webhook, url: '{r.url}',"
        f" budget_per_minute: {budget}, timeout_s: 2}}"
        for cid, r in receivers.items()
    )
    path = tmp_path / "playbooks.yaml"
    path.write_text(
        f"""schema: 1
console_url: http://console.test
channels:
{channels}
contacts:
  - {{id: duty, name: 值班台, channels: [{", ".join(f"{c}-{TAG[tmp_path]}" for c in receivers)}],
      user: duty-1}}
playbooks:
  - id: charging
    kind: ebike_charging
    place: {{community: {PLACE[tmp_path].community}}}
    notify: [duty]
    work_order: {{department: property, deadline: 2h}}
    next_steps: [到场断电]
  - id: charging-critical
    kind: ebike_charging
    place: {{community: {PLACE[tmp_path].community}}}
    severities: [critical]
    work_order: {{department: fire, deadline: 30m}}
{extra}""",
        encoding="utf-8",
    )
    return path


def _responder(factory, path: Path, clock, **kw) -> Responder:
    setup = load_response(
        path, site=None, environ={}, kind_name=lambda k: {"ebike_charging": "飞线充电"}.get(k, k)
    )
    return setup.responder(factory, None, secret=SECRET, clock=clock, **kw)


def _open(factory, gw, clock, seq: int, **kw) -> int:
    kw.setdefault("kind", "ebike_charging")
    kw.setdefault("zone", f"corridor-{seq}")
    kw.setdefault("ts", clock())
    (alert_id,) = ingest(factory, gw, [event(seq, **kw)], now=clock()).alerts
    return alert_id


def test_an_alert_is_told_on_every_channel_with_its_steps_and_work_order(
    factory, place, tmp_path, tag
):
    clock = _clock()
    with http_receiver() as a, http_receiver() as b:
        responder = _responder(factory, _book(tmp_path, {"a": a, "b": b}), clock)
        alert_id = _open(factory, place, clock, 1, severity=Severity.CRITICAL)
        report = responder.step()
        (run,) = [r for r in report.runs if r.playbooks]
        assert run.alert_id == alert_id
        assert run.playbooks == ("charging", "charging-critical")
        for receiver in (a, b):
            (got,) = receiver.requests
            body = got.json()
            assert body["alert_ids"] == [alert_id]
            assert body["severity"] == "critical"
            assert "飞线充电" in body["title"]
            assert "到场断电" in body["body"]
            assert re.fullmatch(r"http://console\.test/ack/[\w-]+\.[\w-]+", body["link"])
    with factory() as s:
        wo = s.scalars(select(m.WorkOrder).where(m.WorkOrder.alert_id == alert_id)).one()
        assert (wo.department, wo.reason) == ("fire", "playbook")  # the critical override
        assert wo.due_at == clock() + timedelta(minutes=30)
        log = s.scalars(
            select(m.AlertTransition.action).where(m.AlertTransition.alert_id == alert_id)
        ).all()
        assert "playbook" in log
        alert = s.get(m.Alert, alert_id)
        assert alert.status == "open"  # the playbook's order does not acknowledge for anyone
        notes, attempts = delivery_log(s, alert_id)
    assert sorted((n.channel, n.status) for n in notes) == [
        (f"a-{tag}", "sent"),
        (f"b-{tag}", "sent"),
    ]
    assert [(x.channel, x.ok) for x in attempts] == [(f"a-{tag}", True), (f"b-{tag}", True)]


def test_an_alert_no_playbook_covers_gets_a_run_and_nothing_else(factory, place, tmp_path):
    clock = _clock()
    with http_receiver() as a:
        responder = _responder(factory, _book(tmp_path, {"a": a}), clock)
        alert_id = _open(factory, place, clock, 1, kind="illegal_parking")
        report = responder.step()
        assert [r.playbooks for r in report.runs if r.alert_id == alert_id] == [()]
        assert a.requests == []
        # one run per alert, even an empty one
        assert alert_id not in [r.alert_id for r in responder.step().runs]


def test_a_failing_channel_does_not_stop_the_others_and_is_retried(factory, place, tmp_path, tag):
    clock = _clock()
    with http_receiver() as good, http_receiver() as bad:
        bad.status = 500
        responder = _responder(
            factory,
            _book(tmp_path, {"good": good, "bad": bad}),
            clock,
            retry=RetryPolicy(max_attempts=3, first_s=5, max_s=60),
        )
        alert_id = _open(factory, place, clock, 1)
        responder.step()
        assert len(good.requests) == 1 and len(bad.requests) == 1
        responder.step()  # not due again before its backoff
        assert len(bad.requests) == 1
        clock.advance(seconds=5)
        responder.step()
        assert len(bad.requests) == 2 and len(good.requests) == 1
        bad.status = 200
        clock.advance(seconds=10)
        responder.step()
        assert len(bad.requests) == 3
    with factory() as s:
        notes, attempts = delivery_log(s, alert_id)
    assert {n.channel: (n.status, n.attempts) for n in notes} == {
        f"good-{tag}": ("sent", 1),
        f"bad-{tag}": ("sent", 3),
    }
    bad_attempts = [x for x in attempts if x.channel == f"bad-{tag}"]
    assert [x.ok for x in bad_attempts] == [False, False, True]
    assert "500" in (bad_attempts[0].error or "")


def test_a_notification_is_given_up_after_its_last_retry_and_says_why(factory, place, tmp_path):
    clock = _clock()
    with http_receiver() as bad:
        bad.status = 503
        responder = _responder(
            factory, _book(tmp_path, {"bad": bad}), clock, retry=RetryPolicy(max_attempts=2)
        )
        alert_id = _open(factory, place, clock, 1)
        responder.step()
        clock.advance(seconds=5)
        responder.step()
        clock.advance(hours=1)
        responder.step()
        assert len(bad.requests) == 2
    with factory() as s:
        (note,), _ = delivery_log(s, alert_id)
    assert (note.status, note.attempts) == ("failed", 2)
    assert "503" in (note.last_error or "")


def test_a_hundred_alerts_in_a_minute_make_at_most_twenty_messages_and_lose_none(
    factory, place, tmp_path, tag
):
    clock = _clock()
    with http_receiver() as robot:
        responder = _responder(factory, _book(tmp_path, {"robot": robot}, budget=20), clock)
        opened = []
        for i in range(100):  # one every 0.6 s, the responder's round every 0.6 s too
            opened.append(_open(factory, place, clock, i + 1))
            responder.step()
            clock.advance(seconds=0.6)
        for _ in range(70):  # then a minute more for what the budget held back
            responder.step()
            clock.advance(seconds=1)
        messages = [r.json() for r in robot.requests]
    with factory() as s:
        sent_at = sorted(
            s.scalars(
                select(m.DeliveryAttempt.at).where(m.DeliveryAttempt.channel == f"robot-{tag}")
            )
        )
        pending = s.scalar(
            select(func.count())
            .select_from(m.Notification)
            .where(m.Notification.alert_id.in_(opened), m.Notification.status != "sent")
        )
    busiest = max(
        sum(1 for t in sent_at if first <= t < first + timedelta(seconds=60)) for first in sent_at
    )
    assert busiest <= 20, f"{busiest} messages in one minute"
    assert len([m_ for m_ in messages if len(m_["alert_ids"]) > 1]) >= 1  # a digest went
    carried = [a for msg in messages for a in msg["alert_ids"]]
    assert sorted(carried) == sorted(opened), "every alert in exactly one message"
    assert pending == 0


def test_two_responders_apply_a_playbook_once(factory, place, tmp_path, tag):
    clock = _clock()
    with http_receiver() as a:
        path = _book(tmp_path, {"a": a})
        one, two = _responder(factory, path, clock), _responder(factory, path, clock)
        alert_id = _open(factory, place, clock, 1)
        runs = one.respond() + two.respond()
        one.deliver(f"a-{tag}")
        two.deliver(f"a-{tag}")  # the lease is one's: two sends nothing
        assert [r.alert_id for r in runs if r.alert_id == alert_id] == [alert_id]
        assert len(a.requests) == 1
    with factory() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.WorkOrder)
                .where(m.WorkOrder.alert_id == alert_id)
            )
            == 1
        )


def test_a_channel_lease_passes_on_when_its_holder_stops(factory, place, tmp_path, tag):
    clock = _clock()
    with http_receiver() as a:
        path = _book(tmp_path, {"a": a})
        one, two = _responder(factory, path, clock), _responder(factory, path, clock)
        _open(factory, place, clock, 1)
        one.respond()
        one.deliver(f"a-{tag}")
        one.stop()  # releases its lease
        _open(factory, place, clock, 2)
        two.respond()
        two.deliver(f"a-{tag}")
        assert len(a.requests) == 2


def test_the_notification_says_how_similar_alerts_ended(factory, place, tmp_path, tag):
    clock = _clock()
    with http_receiver() as a:
        responder = _responder(factory, _book(tmp_path, {"a": a}), clock)
        past = _open(factory, place, clock, 1)
        responder.step()
        elsewhere = unique_gateway()  # the same kind in another compound: not offered
        with transaction(factory) as s:
            register_gateway(
                s,
                elsewhere.community,
                elsewhere.compound,
                elsewhere.gateway,
                building="b1",
                **DEVICES,
            )
        other = _open(factory, elsewhere, clock, 2)
        clock.advance(minutes=25)
        with transaction(factory) as s:
            for alert_id in (past, other):
                alerts.resolve(s, alert_id, actor="王师傅", now=clock(), note="已断电，车移走")
        clock.advance(days=1)
        now_id = _open(factory, place, clock, 3)
        responder.step()
        body = a.requests[-1].json()["body"]
    assert "以往同类处置" in body
    assert "同一位置" in body and "王师傅" in body and "用时 25 分钟" in body
    assert "部门 property" in body and "已断电，车移走" in body
    with factory() as s:
        run = s.get(m.ResponseRun, now_id)
        assert run is not None and len(run.suggestions) == 1  # not the other compound's


def test_a_run_that_fails_for_one_alert_is_written_down_and_the_others_go_on(
    factory, place, tmp_path, tag, monkeypatch
):
    clock = _clock()
    with http_receiver() as a:
        responder = _responder(factory, _book(tmp_path, {"a": a}), clock)
        first = _open(factory, place, clock, 1)
        second = _open(factory, place, clock, 2)
        real_create = work_orders.create

        def create(session, alert, **kw):
            if alert.id == first:
                raise ValueError("no such desk")
            return real_create(session, alert, **kw)

        monkeypatch.setattr(work_orders, "create", create)
        ours = {first, second}
        runs = responder.step().runs
        assert sorted(r.alert_id for r in runs if r.alert_id in ours) == [first, second]
        # written down: not retried every round
        assert not [r for r in responder.step().runs if r.alert_id in ours]
        (got,) = a.requests  # only the second alert's notification
        assert got.json()["alert_ids"] == [second]
    with factory() as s:
        notes = s.scalars(
            select(m.AlertTransition.note).where(
                m.AlertTransition.alert_id == first, m.AlertTransition.action == "playbook"
            )
        ).all()
        assert notes == ["预案执行失败：ValueError: no such desk"]
        assert (
            s.scalar(
                select(func.count()).select_from(m.WorkOrder).where(m.WorkOrder.alert_id == first)
            )
            == 0
        )


def test_the_api_tells_what_the_playbook_did_and_only_inside_the_users_area(
    factory, place, tmp_path, tag
):
    clock = ManualClock(datetime.now(UTC))
    with http_receiver() as a, http_receiver() as b:
        b.status = 502
        responder = _responder(factory, _book(tmp_path, {"a": a, "b": b}), clock)
        alert_id = _open(factory, place, clock, 1)
        responder.step()
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    users = {}
    with transaction(factory) as s:
        for who, scope in (("mine", place.community), ("theirs", unique_gateway().community)):
            users[who] = f"{who}-{tag}"
            auth.create_user(s, users[who], "correct horse", "duty", now=clock(), community=scope)
    with TestClient(create_api(state)) as client:

        def get(who: str):
            token = client.post(
                "/api/auth/token", json={"username": users[who], "password": "correct horse"}
            ).json()["access_token"]
            return client.get(
                f"/api/alerts/{alert_id}/response", headers={"Authorization": f"Bearer {token}"}
            )

        mine = get("mine")
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["playbooks"] == ["charging"] and body["next_steps"] == ["到场断电"]
        assert body["work_order_id"] is not None
        states = {n["channel"]: n["status"] for n in body["notifications"]}
        assert states == {f"a-{tag}": "sent", f"b-{tag}": "pending"}
        failed = [x for x in body["attempts"] if not x["ok"]]
        assert len(failed) == 1 and "502" in failed[0]["error"]
        assert get("theirs").status_code == 404  # another area's alert reads as missing


def test_a_notice_whose_alert_was_settled_first_is_skipped_unless_critical(
    factory, place, tmp_path
):
    clock = _clock()
    with http_receiver() as down:
        down.status = 503  # the first try fails; the alerts are settled before the retry
        responder = _responder(factory, _book(tmp_path, {"hook": down}), clock)
        warning_id = _open(factory, place, clock, 1, severity=Severity.WARNING)
        critical_id = _open(factory, place, clock, 2, severity=Severity.CRITICAL)
        responder.step()
        assert len(down.requests) == 2  # both tried once
        with transaction(factory) as s:
            alerts.resolve(s, warning_id, actor="duty-1", now=clock())
            alerts.resolve(s, critical_id, actor="duty-1", now=clock())
        down.status = 200
        clock.advance(hours=1)
        responder.step()
        # only the critical one went out again: a settled warning is stale news
        assert len(down.requests) == 3
        assert f"#{critical_id}" in down.requests[-1].body.decode()
    with factory() as s:
        (skipped,), _ = delivery_log(s, warning_id)
        (told,), _ = delivery_log(s, critical_id)
    assert (skipped.status, skipped.attempts) == ("skipped", 1)
    assert "已处置" in (skipped.last_error or "")
    assert told.status == "sent"


def test_an_alert_the_cloud_raised_itself_gets_no_voice_warning(factory, place, tmp_path):
    """A compound-level warning (an appeal rate) has no gateway to speak through: its
    playbook's announcement is left out, the rest of the run stands."""
    clock = _clock()
    extra = f"""  - id: appeals-high
    kind: appeal_rate_high
    place: {{community: {place.community}}}
    notify: [duty]
    announce: {{text: 请注意, repeat_every: 5m, max_times: 2}}
"""
    with http_receiver() as hook:
        responder = _responder(factory, _book(tmp_path, {"hook": hook}, extra=extra), clock)
        stand_in = m.Gateway(id="cloud", community=place.community, compound=place.compound)
        with transaction(factory) as s:
            raised = alerts.fold_event(
                s,
                event(1, kind="appeal_rate_high", source="cloud", zone=None, building=None),
                stand_in,
                clock(),
            )
            assert raised is not None
            alert_id = raised.id
        responder.step()
        hook.wait_for(1)
    with factory() as s:
        assert s.get(m.ResponseRun, alert_id) is not None
        said = select(m.Announcement).where(m.Announcement.alert_id == alert_id)
        assert s.scalars(said).all() == []
