"""Escalation with an injected clock (no sleeping), restarts, and the ack/deadline race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from cloud import alerts, escalation, work_orders
from cloud.clock import ManualClock
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.errors import Conflict
from cloud.site_sync import register_gateway
from microbrain.protocol import EventState, Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway

# compound-level override (merged over the district's): short, distinct deadlines
POLICY = {
    "building": {"critical": 60},
    "compound": {"critical": 120},
    "community": {"critical": 180},
    "whistle": {"illegal_parking": "urban"},
}


@pytest.fixture
def place(factory):
    gw = unique_gateway()
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        s.merge(m.Department(id="urban", name="城管中队", contacts=[]))
        compound = s.scalars(select(m.Compound).where(m.Compound.community == gw.community)).one()
        compound.escalation = POLICY
    return gw


def _open(factory, gw, clock) -> int:
    (alert_id,) = ingest(factory, gw, [event(1, severity=Severity.CRITICAL)], now=clock()).alerts
    return alert_id


def _log(factory, alert_id) -> list[str]:
    with factory() as s:
        return list(
            s.scalars(
                select(m.AlertTransition.action)
                .where(m.AlertTransition.alert_id == alert_id)
                .order_by(m.AlertTransition.id)
            )
        )


def _level(factory, alert_id) -> str:
    with factory() as s:
        return s.get(m.Alert, alert_id).level


# on PostgreSQL the database is shared by the whole session, so run_due may also move
# other tests' alerts: assertions look at this test's alert only
def test_climbs_building_compound_community_then_whistles(factory, place):
    clock = ManualClock(datetime.now(UTC))
    t0 = clock()
    alert_id = _open(factory, place, clock)
    escalation.run_due(factory, clock.advance(seconds=59))
    assert _level(factory, alert_id) == "building"
    escalation.run_due(factory, clock.advance(seconds=1))
    assert _level(factory, alert_id) == "compound"
    with factory() as s:
        assert s.get(m.EscalationDeadline, alert_id).due_at == t0 + timedelta(seconds=180)
    escalation.run_due(factory, clock.advance(seconds=119))
    assert _level(factory, alert_id) == "compound"
    escalation.run_due(factory, clock.advance(seconds=1))
    assert _level(factory, alert_id) == "community"
    escalation.run_due(factory, clock.advance(seconds=180))
    assert _level(factory, alert_id) == "whistle"
    escalation.run_due(factory, clock.advance(days=1))  # nothing left to climb
    assert _log(factory, alert_id) == ["opened", "escalated", "escalated", "whistled"]
    with factory() as s:
        alert = s.get(m.Alert, alert_id)
        assert (alert.level, alert.status) == ("whistle", "dispatched")
        (wo,) = s.scalars(select(m.WorkOrder).where(m.WorkOrder.alert_id == alert_id))
        assert (wo.department, wo.status, wo.reason) == ("urban", "created", "whistle")


def test_acknowledged_alerts_do_not_climb(factory, place):
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with transaction(factory) as s:
        alerts.acknowledge(s, alert_id, actor="duty", now=clock.advance(seconds=30))
    escalation.run_due(factory, clock.advance(days=2))
    assert _log(factory, alert_id) == ["opened", "acknowledged"]


def test_restart_mid_escalation_and_catch_up_after_downtime(cloud_url, place):
    clock = ManualClock(datetime.now(UTC))
    engine = make_engine(cloud_url)
    factory = session_factory(engine)
    alert_id = _open(factory, place, clock)
    escalation.run_due(factory, clock.advance(seconds=60))
    assert _level(factory, alert_id) == "compound"
    engine.dispose()  # the service goes down: nothing lives in memory
    # it comes back long after both remaining deadlines passed: it climbs each once
    engine = make_engine(cloud_url)
    factory = session_factory(engine)
    escalation.run_due(factory, clock.advance(hours=3))
    escalation.run_due(factory, clock.advance(hours=3))
    assert _log(factory, alert_id) == ["opened", "escalated", "escalated", "whistled"]
    engine.dispose()


@pytest.mark.parametrize("attempt", range(4))
def test_acknowledge_at_the_moment_the_deadline_fires(cloud_url, place, attempt):
    clock = ManualClock(datetime.now(UTC))
    engines = [make_engine(cloud_url) for _ in range(3)]
    f_ack, f_a, f_b = (session_factory(e) for e in engines)
    alert_id = _open(f_ack, place, clock)
    due = clock.advance(seconds=60)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def tick(f) -> None:
        barrier.wait()
        try:
            escalation.run_due(f, due)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    def ack() -> None:
        barrier.wait()
        try:
            with transaction(f_ack) as s:
                alerts.acknowledge(s, alert_id, actor="duty", now=due)
        except Conflict:
            pass  # whistled already would be a bug; checked below
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [
        threading.Thread(target=tick, args=(f_a,)),
        threading.Thread(target=tick, args=(f_b,)),
        threading.Thread(target=ack),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    log = _log(f_ack, alert_id)
    # two schedulers and an acknowledgement at once: exactly one escalation, or none
    assert log.count("escalated") <= 1 and log.count("acknowledged") == 1
    if "escalated" in log:  # never escalated after someone acknowledged it
        assert log.index("escalated") < log.index("acknowledged")
    escalation.run_due(f_a, clock.advance(days=3))
    assert _log(f_ack, alert_id).count("escalated") == log.count("escalated")
    for e in engines:
        e.dispose()


def test_edge_clear_resolves_and_repeats_count(factory, place):
    clock = ManualClock(datetime.now(UTC))
    r = ingest(factory, place, [event(1), event(2), event(3)], now=clock())
    (alert_id,) = r.alerts
    ingest(factory, place, [event(4, state=EventState.CLEARED)], now=clock())
    with factory() as s:
        a = s.get(m.Alert, alert_id)
        assert (a.count, a.status, a.cleared, a.active) == (3, "resolved", True, False)
        assert s.get(m.EscalationDeadline, alert_id) is None
    # the same thing again later is a new alert
    (again,) = ingest(factory, place, [event(5)], now=clock()).alerts
    assert again != alert_id


def test_work_order_verification_reopens_then_closes(factory, place):
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with transaction(factory) as s:
        wo = work_orders.dispatch(s, alert_id, actor="duty", now=clock())
        assert wo.department == "urban"
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        with pytest.raises(Conflict, match="is done; accept needs it to be created or reopened"):
            work_orders.move(s, wo.id, "accept", actor="urban-1", now=clock())
        _, path, recheck = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
    assert (path.gateway, recheck.source, recheck.zone) == (place.gateway, "cam-1", "fire-lane")
    with transaction(factory) as s:
        still = work_orders.apply_recheck(
            s, recheck.id, condition_present=True, actor="edge", now=clock()
        )
        assert still is not None and still.status == "reopened"
    with transaction(factory) as s:
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        _, _, recheck2 = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
    with transaction(factory) as s:
        gone = work_orders.apply_recheck(
            s, recheck2.id, condition_present=False, actor="edge", now=clock()
        )
        assert gone is not None and gone.status == "verified"
        # a duplicate reply changes nothing
        assert (
            work_orders.apply_recheck(
                s, recheck2.id, condition_present=True, actor="edge", now=clock()
            )
            is None
        )
    with factory() as s:
        assert s.get(m.Alert, alert_id).status == "closed"


def test_a_raise_resent_after_its_clear_counts_in_the_cleared_alert(factory, place):
    clock = ManualClock(datetime.now(UTC))
    t0 = clock() - timedelta(minutes=5)
    r = ingest(
        factory,
        place,
        [
            event(1, ts=t0, severity=Severity.CRITICAL),
            event(3, ts=t0 + timedelta(seconds=20), state=EventState.CLEARED),
        ],
        now=clock(),
    )
    (alert_id,) = r.alerts
    # seq 2, raised between the two, arrives late in another batch
    late = ingest(
        factory,
        place,
        [event(2, ts=t0 + timedelta(seconds=10), severity=Severity.CRITICAL)],
        now=clock(),
    )
    assert late.alerts == {alert_id}
    with factory() as s:
        (a,) = s.scalars(select(m.Alert).where(m.Alert.gateway == place.gateway)).all()
        assert (a.id, a.count, a.status, a.active) == (alert_id, 2, "resolved", False)
        assert s.get(m.EscalationDeadline, alert_id) is None
    escalation.run_due(factory, clock.advance(days=1))
    assert "escalated" not in _log(factory, alert_id)


def test_recheck_still_present_while_a_newer_alert_is_live_reopens_the_order(factory, place):
    from cloud.ingest.store import Incoming
    from microbrain.protocol import Reply

    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with transaction(factory) as s:
        wo = work_orders.dispatch(s, alert_id, actor="duty", now=clock())
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        _, _, recheck = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
    ingest(factory, place, [event(2, state=EventState.CLEARED)], now=clock())  # alert resolved
    (live_id,) = ingest(factory, place, [event(3)], now=clock()).alerts  # and it happens again
    assert live_id != alert_id
    reply = Reply(name="recheck", command_id=recheck.id, ok=True, detail={"present": True})
    r = ingest(
        factory,
        place,
        [Incoming(place.topic("reply", "recheck"), reply.to_json(), clock())],
        now=clock(),
    )
    assert (r.applied, r.rejected) == (1, 0)
    with factory() as s:
        order = s.get(m.WorkOrder, wo.id)
        assert order.status == "reopened"
        note = s.scalars(
            select(m.WorkOrderTransition.note)
            .where(m.WorkOrderTransition.work_order_id == wo.id)
            .order_by(m.WorkOrderTransition.id.desc())
            .limit(1)
        ).one()
        assert f"alert {live_id}" in note
        assert (s.get(m.Alert, alert_id).status, s.get(m.Alert, live_id).status) == (
            "resolved",
            "open",
        )
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.DeadLetter)
                .where(m.DeadLetter.gateway == place.gateway)
            )
            == 0
        )


def test_an_order_left_verifying_can_be_verified_again(factory, place):
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with transaction(factory) as s:
        wo = work_orders.dispatch(s, alert_id, actor="duty", now=clock())
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        _, _, lost = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
    # the recheck (or its reply) was lost: ask again
    with transaction(factory) as s:
        again, _, recheck = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
        assert again.status == "verifying" and recheck.id != lost.id
    with transaction(factory) as s:
        # a late reply to the first recheck changes nothing; the answer to the second counts
        assert (
            work_orders.apply_recheck(s, lost.id, condition_present=True, actor="edge", now=clock())
            is None
        )
        done = work_orders.apply_recheck(
            s, recheck.id, condition_present=False, actor="edge", now=clock()
        )
        assert done is not None and done.status == "verified"


def test_a_raise_meeting_a_resolve_in_flight_opens_a_new_alert(factory, place):
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    folded: list[set[int]] = []
    with factory() as api, api.begin():
        alerts.resolve(api, alert_id, actor="duty", now=clock())  # not committed yet
        worker = threading.Thread(
            target=lambda: folded.append(ingest(factory, place, [event(2)], now=clock()).alerts)
        )
        worker.start()
        worker.join(0.5)  # the ingest waits for the alert's lock (SQLite: the write lock)
    worker.join(30)
    (touched,) = folded
    assert touched != {alert_id}  # the raise opened a new alert, not counted in a resolved one
    with factory() as s:
        old = s.get(m.Alert, alert_id)
        assert (old.status, old.count) == ("resolved", 1)


def test_escalation_locks_the_alert_before_its_deadline(factory, place, cloud_url):
    # acknowledge locks the alert, then deletes the deadline; escalation taking the
    # deadline first and then the alert could deadlock with it on PostgreSQL
    if not cloud_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises whole transactions")
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with factory() as s:
        deadline = s.get(m.EscalationDeadline, alert_id)
        level, due_at = deadline.level, deadline.due_at
    clock.advance(seconds=61)
    reached: list[str | None] = []

    def escalate() -> None:
        with factory() as s, s.begin():
            reached.append(escalation.escalate_one(s, alert_id, level, due_at, clock()))

    with factory() as holder, holder.begin():
        holder.scalars(select(m.Alert).where(m.Alert.id == alert_id).with_for_update()).one()
        worker = threading.Thread(target=escalate)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()  # waiting for the alert
        with factory() as probe, probe.begin():
            # the deadline is not held meanwhile (NOWAIT raises if it is)
            probe.scalars(
                select(m.EscalationDeadline)
                .where(m.EscalationDeadline.alert_id == alert_id)
                .with_for_update(nowait=True)
            ).one()
    worker.join(30)
    assert reached == ["compound"]


def test_an_unanswered_recheck_reopens_the_order_after_the_timeout(factory, place):
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    with transaction(factory) as s:
        wo = work_orders.dispatch(s, alert_id, actor="duty", now=clock())
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        work_orders.request_verification(s, wo.id, actor="duty", now=clock())

    def status() -> str:
        with factory() as s:
            return s.get(m.WorkOrder, wo.id).status

    with transaction(factory) as s:
        work_orders.expire_rechecks(s, now=clock.advance(seconds=599), timeout_s=600)
    assert status() == "verifying"
    with transaction(factory) as s:
        assert work_orders.expire_rechecks(s, now=clock.advance(seconds=2), timeout_s=600) >= 1
    assert status() == "reopened"
    with factory() as s:
        note = s.scalars(
            select(m.WorkOrderTransition.note)
            .where(m.WorkOrderTransition.work_order_id == wo.id)
            .order_by(m.WorkOrderTransition.id.desc())
            .limit(1)
        ).one()
    assert "no answer within 600 s" in note
