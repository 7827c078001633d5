"""Shift handover (交接班): at each shift start, per desk, what the next shift inherits.

For a desk (a place: the district, a community or a compound) and the shift that begins
at ``start`` (the one before began at ``previous``), a handover lists

- **open**: alerts still active (open, acknowledged or dispatched) when it is made;
- **new**: alerts opened during the past shift, ``[previous, start)``, whatever became of
  them;
- **overdue**: open alerts whose escalation deadline has passed (the clock has not yet
  taken them a level up), and work orders past their ``due_at`` and not done;
- **escalated**: alerts escalated (by the clock or by hand) or whistled (吹哨) during the
  past shift, by their log;
- **acknowledged**: alerts someone acknowledged that are still not resolved (status
  ``acknowledged``).

Counts are exact; each list holds at most ``list_limit`` items (the most urgent first).
The handover is stored as JSON in ``shift_handovers``, unique per (desk, shift start):
every process may run :func:`run`; the first insert wins, the others find it there (or
lose the insert) and count it, so each desk gets exactly one handover per shift. A
handover is made only within ``handover_late_limit`` of its shift's start: after an
outage the next shift is not handed a stale list as if it were fresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.alerts.lifecycle import ACTIVE, Action, AlertStatus
from cloud.db import models as m
from cloud.db import transaction
from cloud.work_orders import WorkOrderStatus

from .shifts import AwarenessConfig, Desk, Shift, shift_at

log = logging.getLogger(__name__)

LISTS = ("open", "new", "overdue_alerts", "overdue_work_orders", "escalated", "acknowledged")
ESCALATING = ("escalated", Action.WHISTLED.value)
WORK_ORDERS_DONE = (WorkOrderStatus.DONE, WorkOrderStatus.VERIFYING, WorkOrderStatus.VERIFIED)
HANDOVERS = Counter(
    "mb_shift_handovers_total",
    "shift handovers by outcome: made, lost (another process inserted it first), "
    "skipped (past the late limit; once per process, desk and shift)",
    ["outcome"],
)
_SKIPPED: set[tuple[str, datetime]] = set()


@dataclass(frozen=True, slots=True)
class Handover:
    """A handover before it is stored: what :func:`compose` found."""

    desk: Desk
    shift: Shift
    made_at: datetime
    counts: dict[str, int]
    lists: dict[str, list[dict[str, Any]]]

    def body(self) -> dict[str, Any]:
        return {
            "desk": self.desk.id,
            "desk_name": self.desk.name,
            "shift_start": self.shift.start.isoformat(),
            "previous_start": self.shift.previous.isoformat(),
            "made_at": self.made_at.isoformat(),
            "counts": self.counts,
            "lists": self.lists,
        }


@dataclass(slots=True)
class HandoverRun:
    """What one :func:`run` did, per desk id."""

    made: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# --- composing one ------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _alert_item(a: m.Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "severity": a.severity,
        "status": a.status,
        "level": a.level,
        "community": a.community,
        "compound": a.compound,
        "building": a.building,
        "opened_at": _iso(a.opened_at),
        "updated_at": _iso(a.updated_at),
    }


def _order_item(wo: m.WorkOrder) -> dict[str, Any]:
    return {
        "id": wo.id,
        "alert_id": wo.alert_id,
        "department": wo.department,
        "status": wo.status,
        "community": wo.community,
        "compound": wo.compound,
        "building": wo.building,
        "created_at": _iso(wo.created_at),
        "due_at": _iso(wo.due_at),
    }


def _alert_list(
    session: Session, where: ColumnElement[bool], order: list[Any], limit: int
) -> tuple[int, list[dict[str, Any]]]:
    count = session.scalar(select(func.count()).select_from(m.Alert).where(where)) or 0
    rows = session.scalars(select(m.Alert).where(where).order_by(*order).limit(limit))
    return count, [_alert_item(a) for a in rows]


def compose(
    session: Session, desk: Desk, shift: Shift, now: datetime, *, limit: int = 200
) -> Handover:
    """The handover of ``desk`` for ``shift`` as the database stands at ``now``."""
    scope = auth.scope_clause(desk.scope, m.Alert)
    active = m.Alert.status.in_([s.value for s in ACTIVE])
    urgent = [m.Alert.severity.desc(), m.Alert.opened_at, m.Alert.id]
    oldest = [m.Alert.opened_at, m.Alert.id]
    counts: dict[str, int] = {}
    lists: dict[str, list[dict[str, Any]]] = {}

    counts["open"], lists["open"] = _alert_list(session, and_(scope, active), urgent, limit)
    counts["new"], lists["new"] = _alert_list(
        session,
        and_(scope, m.Alert.opened_at >= shift.previous, m.Alert.opened_at < shift.start),
        oldest,
        limit,
    )
    deadline_passed = exists().where(
        m.EscalationDeadline.alert_id == m.Alert.id, m.EscalationDeadline.due_at <= now
    )
    counts["overdue_alerts"], lists["overdue_alerts"] = _alert_list(
        session,
        and_(scope, m.Alert.status == AlertStatus.OPEN.value, deadline_passed),
        urgent,
        limit,
    )
    escalated = exists().where(
        m.AlertTransition.alert_id == m.Alert.id,
        m.AlertTransition.action.in_(ESCALATING),
        m.AlertTransition.at >= shift.previous,
        m.AlertTransition.at < shift.start,
    )
    counts["escalated"], lists["escalated"] = _alert_list(
        session, and_(scope, escalated), urgent, limit
    )
    counts["acknowledged"], lists["acknowledged"] = _alert_list(
        session,
        and_(scope, m.Alert.status == AlertStatus.ACKNOWLEDGED.value),
        oldest,
        limit,
    )

    late = and_(
        auth.scope_clause(desk.scope, m.WorkOrder),
        m.WorkOrder.due_at.is_not(None),
        m.WorkOrder.due_at <= now,
        m.WorkOrder.status.not_in([s.value for s in WORK_ORDERS_DONE]),
    )
    counts["overdue_work_orders"] = (
        session.scalar(select(func.count()).select_from(m.WorkOrder).where(late)) or 0
    )
    orders = session.scalars(
        select(m.WorkOrder).where(late).order_by(m.WorkOrder.due_at, m.WorkOrder.id).limit(limit)
    )
    lists["overdue_work_orders"] = [_order_item(wo) for wo in orders]
    return Handover(desk, shift, now, counts, {k: lists[k] for k in LISTS})


# --- storing it once ----------------------------------------------------------------


def _exists(session: Session, desk: Desk, shift: Shift) -> bool:
    return (
        session.scalar(
            select(m.ShiftHandover.id).where(
                m.ShiftHandover.desk == desk.id, m.ShiftHandover.shift_start == shift.start
            )
        )
        is not None
    )


def store(factory: sessionmaker[Session], handover: Handover) -> bool:
    """Insert ``handover``; False when the row for its desk and shift is there already
    (another process won: the unique constraint decides)."""
    desk, shift = handover.desk, handover.shift
    try:
        with transaction(factory) as s:
            s.add(
                m.ShiftHandover(
                    desk=desk.id,
                    desk_name=desk.name,
                    community=desk.community,
                    compound=desk.compound,
                    building=None,
                    shift_start=shift.start,
                    previous_start=shift.previous,
                    made_at=handover.made_at,
                    body=handover.body(),
                )
            )
    except IntegrityError:
        return False
    return True


def run(factory: sessionmaker[Session], now: datetime, config: AwarenessConfig) -> HandoverRun:
    """The scheduler's step: make each desk's handover of the shift under way at ``now``
    unless it is made already or the shift began more than the late limit ago. Call it
    every minute (or every tick): it is cheap when there is nothing to do."""
    shift = shift_at(config, now)
    out = HandoverRun()
    late = (now - shift.start).total_seconds() > config.handover_late_limit
    for desk in config.desks:
        with factory() as s:
            if _exists(s, desk, shift):
                out.present.append(desk.id)
                continue
            if late:
                out.skipped.append(desk.id)
                continue
            handover = compose(s, desk, shift, now, limit=config.list_limit)
        if store(factory, handover):
            out.made.append(desk.id)
            log.info(
                "shift handover made: desk %s, shift %s, %s",
                desk.id,
                shift.start.isoformat(),
                handover.counts,
            )
        else:
            out.lost.append(desk.id)
    for outcome in ("made", "lost"):
        n = len(getattr(out, outcome))
        if n:
            HANDOVERS.labels(outcome).inc(n)
    for desk_id in out.skipped:
        # once per process, desk and shift: the step runs every minute of the shift
        if (desk_id, shift.start) not in _SKIPPED:
            _SKIPPED.add((desk_id, shift.start))
            HANDOVERS.labels("skipped").inc()
            log.warning(
                "shift handover of desk %s for %s skipped: past the late limit (%s s)",
                desk_id,
                shift.start.isoformat(),
                config.handover_late_limit,
            )
    return out


# --- reading them (API and console) --------------------------------------------------


def visible(user: m.User) -> ColumnElement[bool]:
    """Handovers of desks whose place lies within ``user``'s node."""
    return auth.scope_clause(user, m.ShiftHandover)


def latest_per_desk(session: Session, user: m.User) -> list[m.ShiftHandover]:
    """The newest handover of each desk the user may see, by desk name."""
    newest = (
        select(m.ShiftHandover.desk, func.max(m.ShiftHandover.shift_start).label("start"))
        .where(visible(user))
        .group_by(m.ShiftHandover.desk)
        .subquery()
    )
    rows = session.scalars(
        select(m.ShiftHandover)
        .join(
            newest,
            and_(
                newest.c.desk == m.ShiftHandover.desk,
                newest.c.start == m.ShiftHandover.shift_start,
            ),
        )
        .order_by(m.ShiftHandover.desk_name, m.ShiftHandover.desk)
    )
    return list(rows)
