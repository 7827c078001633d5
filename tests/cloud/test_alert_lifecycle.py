"""The alert lifecycle is the one writer of an alert's status: its table refuses an illegal
move (naming the state the alert is in and the states the move needs), and every change,
the escalation's whistle included, goes through it and leaves an audit row."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from cloud import alerts, escalation, work_orders
from cloud.alerts import lifecycle
from cloud.alerts.lifecycle import Action, AlertStatus
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Conflict
from cloud.site_sync import register_gateway
from microbrain.protocol import EventState, GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway

# short, distinct deadlines so that the whistle comes after three steps of the clock
POLICY = {
    "building": {"critical": 60},
    "compound": {"critical": 60},
    "community": {"critical": 60},
    "whistle": {"illegal_parking": "urban"},
}


@pytest.fixture
def place(factory: sessionmaker[Session]) -> GatewayPath:
    gw = unique_gateway()
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        s.merge(m.Department(id="urban", name="城管中队", contacts=[]))
        compound = s.scalars(select(m.Compound).where(m.Compound.community == gw.community)).one()
        compound.escalation = POLICY
    return gw


def _open(factory: sessionmaker[Session], gw: GatewayPath, clock: ManualClock, seq: int = 1) -> int:
    (alert_id,) = ingest(factory, gw, [event(seq, severity=Severity.CRITICAL)], now=clock()).alerts
    return int(alert_id)


def _log(factory: sessionmaker[Session], alert_id: int) -> list[tuple[str, str | None, str, str]]:
    with factory() as s:
        rows = s.scalars(
            select(m.AlertTransition)
            .where(m.AlertTransition.alert_id == alert_id)
            .order_by(m.AlertTransition.id)
        )
        return [(t.action, t.from_status, t.to_status, t.actor) for t in rows]


def _writers(writes: list[StatusWrite], alert_id: int) -> list[str]:
    return [w.writer for w in writes if w.alert_id == alert_id]


def _to(factory: sessionmaker[Session], alert_id: int, steps: list[Action], now: datetime) -> None:
    with transaction(factory) as s:
        alert = alerts.get_alert(s, alert_id, for_update=True)
        for step in steps:
            lifecycle.move(s, alert, step, actor="duty", now=now)


# (moves that bring a new alert to its state, the illegal move, what the refusal says)
ILLEGAL = [
    ([], Action.CLOSED, "is open; closing needs it to be resolved"),
    ([], Action.REOPENED, "is open; reopening needs it to be resolved"),
    (
        [Action.ACKNOWLEDGED],
        Action.ACKNOWLEDGED,
        "is acknowledged; acknowledging needs it to be open",
    ),
    ([Action.ACKNOWLEDGED], Action.WHISTLED, "is acknowledged; whistling needs it to be open"),
    (
        [Action.RESOLVED],
        Action.DISPATCHED,
        "is resolved; dispatching needs it to be open or acknowledged",
    ),
    (
        [Action.RESOLVED, Action.CLOSED],
        Action.RESOLVED,
        "is closed; resolving needs it to be open or acknowledged or dispatched",
    ),
    (
        [Action.RESOLVED, Action.CLOSED],
        Action.AUTO_RESOLVED,
        "is closed; resolving needs it to be open or acknowledged or dispatched",
    ),
]


@pytest.mark.parametrize(
    ("before", "illegal", "message"),
    ILLEGAL,
    ids=[f"{'+'.join(b) or 'open'}-{i}" for b, i, _ in ILLEGAL],
)
def test_the_lifecycle_refuses_an_illegal_move_naming_both_states(
    factory: sessionmaker[Session],
    place: GatewayPath,
    before: list[Action],
    illegal: Action,
    message: str,
) -> None:
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    _to(factory, alert_id, before, clock())
    logged = _log(factory, alert_id)
    with factory() as s, s.begin():
        alert = alerts.get_alert(s, alert_id, for_update=True)
        status, deadline = alert.status, s.get(m.EscalationDeadline, alert_id)
        with pytest.raises(Conflict) as err:
            lifecycle.move(s, alert, illegal, actor="duty", now=clock())
        assert str(err.value) == f"alert {alert_id} {message}"
        # refused means unchanged: the status, the escalation clock, the log
        assert alert.status == status
        assert (s.get(m.EscalationDeadline, alert_id) is None) == (deadline is None)
    assert _log(factory, alert_id) == logged


def test_every_action_has_one_move_and_no_move_leads_to_open() -> None:
    assert set(lifecycle.MOVES) == set(Action)
    assert all(step.leads_to != AlertStatus.OPEN for step in lifecycle.MOVES.values())


@dataclass(frozen=True, slots=True)
class StatusWrite:
    alert_id: int
    writer: str  # module.function that assigned the status


@pytest.fixture
def status_writes() -> Iterator[list[StatusWrite]]:
    """Every assignment to an existing alert's status while the test ran, with the function
    that made it: SQLAlchemy's attribute event, and the first frame outside SQLAlchemy.
    (On PostgreSQL other tests' alerts share the database: filter by alert.)"""
    writes: list[StatusWrite] = []

    def on_set(target: m.Alert, value: Any, old: Any, initiator: Any) -> None:
        if inspect(target).transient:
            return  # a new alert's first status, given in its constructor
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and (
            "/sqlalchemy/" in frame.f_code.co_filename or frame.f_code.co_filename.startswith("<")
        ):
            frame = frame.f_back
        assert frame is not None
        writes.append(
            StatusWrite(target.id, f"{frame.f_globals['__name__']}.{frame.f_code.co_name}")
        )

    sa_event.listen(m.Alert.status, "set", on_set)
    try:
        yield writes
    finally:
        sa_event.remove(m.Alert.status, "set", on_set)


def test_the_whistle_moves_the_status_through_the_lifecycle_with_an_audit_row(
    factory: sessionmaker[Session], place: GatewayPath, status_writes: list[StatusWrite]
) -> None:
    clock = ManualClock(datetime.now(UTC))
    alert_id = _open(factory, place, clock)
    for _ in range(3):
        escalation.run_due(factory, clock.advance(seconds=60))
    # the status changed once, and the lifecycle made the change
    assert _writers(status_writes, alert_id) == ["cloud.alerts.lifecycle.move"]
    log = _log(factory, alert_id)
    assert [a for a, *_ in log] == ["opened", "escalated", "escalated", "whistled"]
    # like a dispatch by hand: from open to dispatched, by the escalation
    assert log[-1] == ("whistled", "open", "dispatched", "system:escalation")
    with factory() as s:
        alert = s.get(m.Alert, alert_id)
        assert alert is not None
        assert (alert.status, alert.active, alert.level) == ("dispatched", True, "whistle")
        assert s.get(m.EscalationDeadline, alert_id) is None


def test_only_the_lifecycle_sets_an_alert_status(
    factory: sessionmaker[Session], place: GatewayPath, status_writes: list[StatusWrite]
) -> None:
    clock = ManualClock(datetime.now(UTC))
    # by hand: acknowledge, dispatch, resolve, close
    first = _open(factory, place, clock, seq=1)
    with transaction(factory) as s:
        alerts.acknowledge(s, first, actor="duty", now=clock())
        wo = work_orders.dispatch(s, first, actor="duty", now=clock())
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=clock())
        alerts.resolve(s, first, actor="duty", now=clock())
        # a recheck that finds the condition still there reopens the resolved alert
        _, _, recheck = work_orders.request_verification(s, wo.id, actor="duty", now=clock())
    with transaction(factory) as s:
        work_orders.apply_recheck(s, recheck.id, condition_present=True, actor="edge", now=clock())
    with transaction(factory) as s:
        alerts.resolve(s, first, actor="duty", now=clock())
        alerts.close(s, first, actor="duty", now=clock())
    # by the edge: a clear resolves the next alert for the same place
    second = _open(factory, place, clock, seq=2)
    ingest(factory, place, [event(3, state=EventState.CLEARED)], now=clock())
    assert [a for a, *_ in _log(factory, first)] == [
        "opened",
        "acknowledged",
        "dispatched",
        "resolved",
        "reopened",
        "resolved",
        "closed",
    ]
    assert [a for a, *_ in _log(factory, second)] == ["opened", "auto_resolved"]
    assert _writers(status_writes, first) == ["cloud.alerts.lifecycle.move"] * 6
    assert _writers(status_writes, second) == ["cloud.alerts.lifecycle.move"]
