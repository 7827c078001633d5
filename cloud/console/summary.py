"""The numbers behind the wall (一屏治社区): one summary of a user's area, in a handful
of grouped queries.

Every count is scoped with :func:`cloud.auth.scope_clause`, so the wall of a compound's
duty officer shows that compound and nothing else, exactly as the API would. Each query
groups in the database (by kind, severity, place, department…) and filters on indexed
columns (``opened_at``, ``status``, ``updated_at``, the place columns); nothing walks the
alert table row by row in Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from cloud import auth, liveness
from cloud.alerts.lifecycle import ACTIVE, Action
from cloud.alerts.policy import policy_for
from cloud.alerts.queries import Hotspot, hotspots
from cloud.db import models as m
from cloud.db import seconds_between
from cloud.place_names import compound_names
from cloud.work_orders import WorkOrderStatus
from microbrain.protocol import Severity

DAY = timedelta(hours=24)
HOTSPOT_WINDOW = timedelta(days=7)
TOP_PLACES = 10
TOP_HOTSPOTS = 5
FIRST_LEVEL = "building"
# the first answer of a person to an alert: what the first deadline asks for
RESPONSES = (Action.ACKNOWLEDGED, Action.DISPATCHED, Action.RESOLVED)
SEVERITIES = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class PlaceCount:
    """Open alerts at one compound (``critical`` of them critical)."""

    community: str
    compound: str
    name: str
    count: int
    critical: int


@dataclass(frozen=True, slots=True)
class DepartmentOrders:
    """A department's open work orders by status (``department`` None: none assigned)."""

    department: str | None
    name: str | None
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True, slots=True)
class WallSummary:
    """What the wall shows for one user at ``at``.

    ``opened_by_kind[kind][severity]`` counts alerts opened in the last 24 h;
    ``open_by_severity`` the active ones (open, acknowledged or dispatched) whenever
    opened. Severities are 1 (info), 2 (warning), 3 (critical); every one is present.
    """

    at: datetime
    opened_by_kind: dict[str, dict[int, int]]
    opened_by_severity: dict[int, int]
    open_by_severity: dict[int, int]
    open_by_compound: list[PlaceCount]
    escalations: int
    sla_breaches: int
    gateways_online: int
    gateways_total: int
    devices_online: int
    devices_total: int
    work_orders: list[DepartmentOrders]
    hotspots: list[Hotspot] = field(default_factory=list)

    @property
    def open_total(self) -> int:
        return sum(self.open_by_severity.values())

    @property
    def availability(self) -> float | None:
        """Devices online as a share of all (gateways where there are no devices);
        None where there is nothing to count."""
        if self.devices_total:
            return self.devices_online / self.devices_total
        if self.gateways_total:
            return self.gateways_online / self.gateways_total
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601, severity keys as strings."""
        out = asdict(self)
        out["at"] = self.at.isoformat()
        out["opened_by_kind"] = {
            kind: {str(s): n for s, n in by.items()} for kind, by in self.opened_by_kind.items()
        }
        out["opened_by_severity"] = {str(s): n for s, n in self.opened_by_severity.items()}
        out["open_by_severity"] = {str(s): n for s, n in self.open_by_severity.items()}
        out["open_total"] = self.open_total
        out["availability"] = self.availability
        for row, orders in zip(out["work_orders"], self.work_orders, strict=True):
            row["total"] = orders.total
        return out


def wall_summary(session: Session, user: m.User, now: datetime) -> WallSummary:
    """The wall's numbers for ``user``'s area at ``now`` (aware UTC)."""
    since = now - DAY
    by_kind, by_sev = _opened(session, user, since)
    return WallSummary(
        at=now,
        opened_by_kind=by_kind,
        opened_by_severity=by_sev,
        open_by_severity=_open_by_severity(session, user),
        open_by_compound=_open_by_compound(session, user),
        escalations=_escalations(session, user, since),
        sla_breaches=sla_breaches(session, user, since),
        **asdict(liveness.availability(session, user, now)),
        work_orders=_work_orders(session, user),
        hotspots=_hotspots(session, user, now - HOTSPOT_WINDOW),
    )


def _zeros() -> dict[int, int]:
    return dict.fromkeys(SEVERITIES, 0)


def _opened(
    session: Session, user: m.User, since: datetime
) -> tuple[dict[str, dict[int, int]], dict[int, int]]:
    rows = session.execute(
        select(m.Alert.kind, m.Alert.severity, func.count())
        .where(auth.scope_clause(user, m.Alert), m.Alert.opened_at >= since)
        .group_by(m.Alert.kind, m.Alert.severity)
    ).all()
    by_kind: dict[str, dict[int, int]] = {}
    by_sev = _zeros()
    for kind, severity, n in rows:
        by_kind.setdefault(kind, _zeros())[severity] = n
        by_sev[severity] = by_sev.get(severity, 0) + n
    # the busiest kind first: the chart reads left to right
    ordered = sorted(by_kind.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return dict(ordered), by_sev


def _active(user: m.User) -> ColumnElement[bool]:
    return and_(auth.scope_clause(user, m.Alert), m.Alert.status.in_([s.value for s in ACTIVE]))


def _open_by_severity(session: Session, user: m.User) -> dict[int, int]:
    out = _zeros()
    for severity, n in session.execute(
        select(m.Alert.severity, func.count()).where(_active(user)).group_by(m.Alert.severity)
    ):
        out[severity] = n
    return out


def _open_by_compound(session: Session, user: m.User) -> list[PlaceCount]:
    n = func.count().label("n")
    critical = func.sum(case((m.Alert.severity >= Severity.CRITICAL, 1), else_=0))
    rows = session.execute(
        select(m.Alert.community, m.Alert.compound, n, critical)
        .where(_active(user))
        .group_by(m.Alert.community, m.Alert.compound)
        .order_by(n.desc(), m.Alert.community, m.Alert.compound)
        .limit(TOP_PLACES)
    ).all()
    names = compound_names(session, {(c, k) for c, k, _, _ in rows})
    return [PlaceCount(c, k, names.get((c, k), k), n, int(x or 0)) for c, k, n, x in rows]


def _escalations(session: Session, user: m.User, since: datetime) -> int:
    # every logged change also moves the alert's updated_at (indexed), so alerts not
    # touched since ``since`` cannot have an escalation since then
    return (
        session.scalar(
            select(func.count())
            .select_from(m.AlertTransition)
            .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
            .where(
                auth.scope_clause(user, m.Alert),
                m.Alert.updated_at >= since,
                m.AlertTransition.action == "escalated",
                m.AlertTransition.at >= since,
            )
        )
        or 0
    )


def sla_breaches(session: Session, user: m.User, since: datetime) -> int:
    """Alerts opened since ``since`` that missed their first deadline.

    An alert breached its SLA when either

    - it was escalated past its first level (its ``level`` is no longer ``building``:
      by the escalation clock or by hand, which both mean the building level did not
      deal with it), or
    - a person's first answer to it (acknowledged, dispatched or resolved; an automatic
      resolution is not an answer) came later than the building level's deadline for
      its severity in its compound's :class:`~microbrain.site.EscalationPolicy` (the
      clock :func:`cloud.alerts.policy.start_clock` starts).

    Each alert counts once, however many of these it did.
    """
    scoped = and_(auth.scope_clause(user, m.Alert), m.Alert.opened_at >= since)
    places = session.execute(
        select(m.Alert.community, m.Alert.compound).where(scoped).distinct()
    ).all()
    if not places:
        return 0
    # one policy per compound (a few queries each); the deadlines go into the query
    deadline = case(
        *(
            (
                and_(
                    m.Alert.community == community,
                    m.Alert.compound == compound,
                    m.Alert.severity == severity,
                ),
                policy.deadline(FIRST_LEVEL, Severity(severity)),
            )
            for community, compound in places
            for policy in (policy_for(session, community, compound),)
            for severity in SEVERITIES
        ),
        else_=None,
    )
    first = (
        select(
            m.AlertTransition.alert_id.label("alert_id"),
            func.min(m.AlertTransition.at).label("at"),
        )
        .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
        .where(scoped, m.AlertTransition.action.in_([a.value for a in RESPONSES]))
        .group_by(m.AlertTransition.alert_id)
        .subquery()
    )
    late = and_(
        first.c.at.is_not(None),
        seconds_between(session, m.Alert.opened_at, first.c.at) > deadline,
    )
    return (
        session.scalar(
            select(func.count())
            .select_from(m.Alert)
            .outerjoin(first, first.c.alert_id == m.Alert.id)
            .where(scoped, or_(m.Alert.level != FIRST_LEVEL, late))
        )
        or 0
    )


def _work_orders(session: Session, user: m.User) -> list[DepartmentOrders]:
    """Open work orders (all but verified) by department and status, busiest first."""
    rows = session.execute(
        select(m.WorkOrder.department, m.Department.name, m.WorkOrder.status, func.count())
        .outerjoin(m.Department, m.Department.id == m.WorkOrder.department)
        .where(
            auth.scope_clause(user, m.WorkOrder),
            m.WorkOrder.status != WorkOrderStatus.VERIFIED.value,
        )
        .group_by(m.WorkOrder.department, m.Department.name, m.WorkOrder.status)
    ).all()
    by_dept: dict[str | None, DepartmentOrders] = {}
    for dept, name, status, n in rows:
        orders = by_dept.setdefault(dept, DepartmentOrders(dept, name, {}))
        orders.by_status[status] = n
    return sorted(by_dept.values(), key=lambda d: (-d.total, d.department or ""))


def _hotspots(session: Session, user: m.User, since: datetime) -> list[Hotspot]:
    which = and_(auth.scope_clause(user, m.Alert), m.Alert.opened_at >= since)
    return hotspots(session, which, limit=TOP_HOTSPOTS)
