"""The alert lifecycle as data: one table of allowed moves, one :func:`move`.

::

    open          → acknowledged, dispatched, resolved, and dispatched when whistled
                    (no one acknowledged it in time)
    acknowledged  → dispatched, resolved
    dispatched    → resolved
    resolved      → closed, or dispatched again when reopened (a work order's
                    verification found the condition still there)

"resolved" is also automatic (``auto_resolved``) when the edge reports the condition
cleared.

Nothing else assigns an alert's status: every change goes through :func:`move`, which
refuses a move from the wrong state, stops the escalation clock and writes the audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from cloud.alerts.audit import record
from cloud.alerts.policy import stop_clock
from cloud.db import models as m
from cloud.errors import Conflict


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Action(StrEnum):
    """A status change, named as the alert's log records it."""

    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    WHISTLED = "whistled"
    RESOLVED = "resolved"
    AUTO_RESOLVED = "auto_resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


ACTIVE = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.DISPATCHED)
MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class Move:
    """One allowed change: the states it may start from and the state it leads to."""

    starts_from: tuple[AlertStatus, ...]
    leads_to: AlertStatus
    doing: str  # the move in a refusal: "acknowledging needs it to be open"


S = AlertStatus
MOVES: dict[Action, Move] = {
    Action.ACKNOWLEDGED: Move((S.OPEN,), S.ACKNOWLEDGED, "acknowledging"),
    Action.DISPATCHED: Move((S.OPEN, S.ACKNOWLEDGED), S.DISPATCHED, "dispatching"),
    Action.WHISTLED: Move((S.OPEN,), S.DISPATCHED, "whistling"),
    Action.RESOLVED: Move(ACTIVE, S.RESOLVED, "resolving"),
    Action.AUTO_RESOLVED: Move(ACTIVE, S.RESOLVED, "resolving"),
    Action.CLOSED: Move((S.RESOLVED,), S.CLOSED, "closing"),
    Action.REOPENED: Move((S.RESOLVED,), S.DISPATCHED, "reopening"),
}


def check(alert: m.Alert, action: Action) -> Move:
    """The move ``action`` makes; Conflict naming the alert's state and the states the
    move needs when it cannot start from there."""
    step = MOVES[action]
    if alert.status not in step.starts_from:
        names = " or ".join(s.value for s in step.starts_from)
        raise Conflict(f"alert {alert.id} is {alert.status}; {step.doing} needs it to be {names}")
    return step


def move(
    session: Session,
    alert: m.Alert,
    action: Action,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> m.AlertTransition:
    """Apply ``action`` to ``alert`` (locked by the caller) and log it; returns the audit
    row. Raises Conflict, changing nothing, if the alert is in a state the move cannot
    start from.

    >>> move(session, alert, Action.ACKNOWLEDGED, actor="duty", now=now)  # doctest: +SKIP
    """
    step = check(alert, action)
    before = alert.status
    alert.status = step.leads_to
    alert.active = step.leads_to in ACTIVE
    alert.updated_at = now
    if step.leads_to != AlertStatus.OPEN:
        stop_clock(session, alert.id)  # acting on an alert stops its escalation clock
    return record(
        session,
        alert,
        action.value,
        from_status=before,
        actor=actor,
        at=now,
        note=(note or None) and note[:MAX_NOTE],
    )
