"""Three-level escalation and 吹哨报到, restart-safe: each deadline is a row.

An open (unacknowledged) alert has one pending deadline. When it passes, the alert
climbs building → compound → community; when the community's deadline passes too, a
work order is whistled to the department named in ``escalation.whistle`` for the
alert's kind. Deadlines per level and severity come from the site config, with
community and compound overrides merged down the tree.

Every step is a guarded UPDATE/DELETE (level, due time and "alert still open" in the
WHERE clause), so two schedulers, a restart, or an acknowledgement racing the deadline
give exactly one escalation or none.

A person may also escalate an active alert by hand (:func:`escalate_by_hand`), up to the
community level; both ways climb through the one :func:`_climb`.

Imports run one way: escalation → work orders → alerts (lifecycle, policy, audit). The
whistle changes the alert's status through the lifecycle like every other change.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import ColumnElement, and_, delete, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud import work_orders
from cloud.alerts import Action, AlertStatus, get_alert
from cloud.alerts.audit import record
from cloud.alerts.lifecycle import MAX_NOTE, move
from cloud.alerts.policy import policy_for
from cloud.db import models as m
from cloud.db import rowcount
from cloud.errors import Conflict
from microbrain.protocol import Severity
from microbrain.site import EscalationPolicy

# policy_for is cloud.alerts.policy's, named here too for the callers that know it here
__all__ = ["ESCALATIONS", "NEXT_LEVEL", "escalate_by_hand", "escalate_one", "policy_for", "run_due"]

log = logging.getLogger(__name__)

NEXT_LEVEL = {"building": "compound", "compound": "community", "community": "whistle"}
ESCALATIONS = Counter("mb_escalations_total", "alerts escalated, by the level reached", ["level"])


def _still_open(alert_id: int) -> ColumnElement[bool]:
    return exists().where(and_(m.Alert.id == alert_id, m.Alert.status == AlertStatus.OPEN))


def escalate_one(
    session: Session, alert_id: int, level: str, due_at: datetime, now: datetime
) -> str | None:
    """Take one due deadline one step; returns the level reached, or None if another
    process (or an acknowledgement) got there first."""
    # the alert's row first, then its deadline: the order acknowledge/resolve take them in
    # (they lock the alert, then delete the deadline); the other order can deadlock on
    # PostgreSQL
    alert = session.scalars(
        select(m.Alert)
        .where(m.Alert.id == alert_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if alert is None:
        return None
    nxt = NEXT_LEVEL[level]
    guard = and_(
        m.EscalationDeadline.alert_id == alert_id,
        m.EscalationDeadline.level == level,
        m.EscalationDeadline.due_at == due_at,
        _still_open(alert_id),
    )
    policy = policy_for(session, alert.community, alert.compound)
    if nxt == "whistle":
        won = rowcount(session.execute(delete(m.EscalationDeadline).where(guard))) == 1
    else:
        # the next level's clock starts when this one ran out, so a long outage catches up
        new_due = due_at + timedelta(seconds=policy.deadline(nxt, Severity(alert.severity)))
        won = (
            rowcount(
                session.execute(
                    update(m.EscalationDeadline).where(guard).values(level=nxt, due_at=new_due)
                )
            )
            == 1
        )
    if not won:
        return None
    session.refresh(alert)
    return _climb(
        session,
        alert,
        nxt,
        policy,
        actor="system:escalation",
        now=now,
        note=f"not acknowledged in time at {level} level; now {nxt}",
    )


def escalate_by_hand(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str | None = None
) -> m.Alert:
    """``actor`` moves an active alert one level up (building → compound → community),
    logged as ``escalated`` with the note; an open alert's escalation clock moves with it
    and restarts at the new level. Conflict when the alert is no longer active or is at
    the community level already (the top a person escalates to; a work order to a
    department is a dispatch). Caller checks the user may see the alert."""
    # the alert's row first, as escalate_one takes it: the scheduler then finds the
    # deadline changed under its guard and does nothing
    alert = get_alert(session, alert_id, for_update=True)
    if not alert.active:
        raise Conflict(f"alert {alert_id} is {alert.status}; escalating needs it to be active")
    nxt = NEXT_LEVEL.get(alert.level)
    if nxt is None or nxt == "whistle":
        raise Conflict(
            f"alert {alert_id} is at the {alert.level} level, the top one; "
            "dispatch it to send a work order to a department"
        )
    policy = policy_for(session, alert.community, alert.compound)
    session.execute(
        update(m.EscalationDeadline)
        .where(m.EscalationDeadline.alert_id == alert_id)
        .values(
            level=nxt,
            due_at=now + timedelta(seconds=policy.deadline(nxt, Severity(alert.severity))),
        )
    )
    by_hand = f"escalated by hand from {alert.level} level; now {nxt}"
    _climb(
        session,
        alert,
        nxt,
        policy,
        actor=actor,
        now=now,
        note=f"{by_hand}: {note}"[:MAX_NOTE] if note else by_hand,
    )
    return alert


def _climb(
    session: Session,
    alert: m.Alert,
    nxt: str,
    policy: EscalationPolicy,
    *,
    actor: str,
    now: datetime,
    note: str,
) -> str:
    """Put ``alert`` (locked, its deadline already moved or taken) at level ``nxt`` and
    log it; at ``whistle``, whistle a work order. Returns ``nxt``."""
    previous = alert.level
    alert.level = nxt
    alert.updated_at = now
    if nxt == "whistle":
        department = policy.whistle.get(alert.kind)
        # the caller saw the alert open, under its lock: the move cannot be refused
        move(
            session,
            alert,
            Action.WHISTLED,
            actor=actor,
            now=now,
            note=f"吹哨: work order to {department or 'no department (none configured)'}",
        )
        work_orders.create(
            session,
            alert,
            department=department,
            reason="whistle",
            actor=actor,
            now=now,
            note=None,
        )
    else:
        # a level, not a status: the log says so with the status unchanged
        record(
            session,
            alert,
            "escalated",
            from_status=alert.status,
            actor=actor,
            at=now,
            note=note,
        )
    ESCALATIONS.labels(nxt).inc()
    log.info("alert %s escalated %s → %s by %s", alert.id, previous, nxt, actor)
    return nxt


def run_due(factory: sessionmaker[Session], now: datetime, limit: int = 200) -> int:
    """Escalate every deadline due at ``now``, each in its own transaction; returns how
    many steps were taken. Call it from a loop (the scheduler) or a test's clock."""
    steps = 0
    while True:
        with factory() as session:
            due = session.execute(
                select(
                    m.EscalationDeadline.alert_id,
                    m.EscalationDeadline.level,
                    m.EscalationDeadline.due_at,
                )
                .where(m.EscalationDeadline.due_at <= now)
                .order_by(m.EscalationDeadline.due_at)
                .limit(limit)
            ).all()
        if not due:
            return steps
        progressed = 0
        for alert_id, level, due_at in due:
            with factory() as session, session.begin():
                if escalate_one(session, alert_id, level, due_at, now):
                    progressed += 1
        steps += progressed
        if progressed == 0:
            return steps
