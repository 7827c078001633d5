"""Reading alerts for the duty console: the filtered list, its counts, an alert's
timeline and the similar past alerts, each limited to the user's subtree.

Reads only; nothing here changes a row. Every filter has an index (see
:class:`cloud.db.models.Alert`): the place columns, status, kind at a place, opened_at
and updated_at; "reviewed" is a probe of ``alert_verdicts``' primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, true
from sqlalchemy.orm import Session, selectinload

from cloud import auth
from cloud.db import models as m
from cloud.place_names import building_names, compound_names

RESOLVING = ("resolved", "auto_resolved")  # the log's actions that resolve an alert


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a list or its counts cover; every field narrows, the defaults do
    not. ``since``/``until`` bound ``opened_at`` (``since`` ≤ opened_at < ``until``);
    ``reviewed``: True for alerts with a verdict, False for those without."""

    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_severity: int = 1
    severities: tuple[int, ...] = ()  # exactly these (the console's chips); () any
    levels: tuple[str, ...] = ()  # escalation levels; () any
    community: str | None = None
    compound: str | None = None
    building: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    limit: int = 50
    offset: int = 0


def _where(user: m.User, flt: AlertFilter) -> list[ColumnElement[bool]]:
    where = [auth.scope_clause(user, m.Alert), m.Alert.severity >= flt.min_severity]
    if flt.statuses:
        where.append(m.Alert.status.in_(flt.statuses))
    if flt.kinds:
        where.append(m.Alert.kind.in_(flt.kinds))
    if flt.severities:
        where.append(m.Alert.severity.in_(flt.severities))
    if flt.levels:
        where.append(m.Alert.level.in_(flt.levels))
    for column, value in (
        (m.Alert.community, flt.community),
        (m.Alert.compound, flt.compound),
        (m.Alert.building, flt.building),
    ):
        if value is not None:
            where.append(column == value)
    if flt.since is not None:
        where.append(m.Alert.opened_at >= flt.since)
    if flt.until is not None:
        where.append(m.Alert.opened_at < flt.until)
    if flt.reviewed is not None:
        # correlated with alerts only: counts() also joins alert_verdicts outside
        has_verdict = (
            select(m.AlertVerdict.alert_id)
            .where(m.AlertVerdict.alert_id == m.Alert.id)
            .correlate(m.Alert)
            .exists()
        )
        where.append(has_verdict if flt.reviewed else ~has_verdict)
    return where


def list_alerts(session: Session, user: m.User, flt: AlertFilter) -> tuple[int, list[m.Alert]]:
    """(how many match, the page ``flt.offset`` … ``+ flt.limit`` of them), newest change
    first; each alert's verdict is loaded with the page (one more query, not one each)."""
    where = _where(user, flt)
    total = session.scalar(select(func.count()).select_from(m.Alert).where(*where)) or 0
    rows = session.scalars(
        select(m.Alert)
        .where(*where)
        .options(selectinload(m.Alert.verdict_row))
        .order_by(m.Alert.updated_at.desc(), m.Alert.id.desc())
        .limit(flt.limit)
        .offset(flt.offset)
    ).all()
    return total, list(rows)


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Totals of the alerts a filter covers (its limit and offset aside)."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_severity: dict[int, int] = field(default_factory=dict)
    unreviewed: int = 0  # no verdict yet


def counts(session: Session, user: m.User, flt: AlertFilter) -> AlertCounts:
    """How many alerts ``flt`` covers, by status and by severity, and how many of them
    have no verdict yet: one grouped query."""
    rows = session.execute(
        select(
            m.Alert.status,
            m.Alert.severity,
            func.count(),
            func.count(m.AlertVerdict.alert_id),
        )
        .outerjoin(m.AlertVerdict, m.AlertVerdict.alert_id == m.Alert.id)
        .where(*_where(user, flt))
        .group_by(m.Alert.status, m.Alert.severity)
    ).all()
    by_status: dict[str, int] = {}
    by_severity: dict[int, int] = {}
    total = reviewed = 0
    for status, severity, n, judged in rows:
        by_status[status] = by_status.get(status, 0) + n
        by_severity[severity] = by_severity.get(severity, 0) + n
        total += n
        reviewed += judged
    return AlertCounts(total, by_status, by_severity, total - reviewed)


def timeline(session: Session, alert_id: int) -> list[m.AlertTransition]:
    """The alert's log in the order it was written: status changes, escalations,
    comments and verdicts. The caller checks the alert is the user's to see."""
    return list(
        session.scalars(
            select(m.AlertTransition)
            .where(m.AlertTransition.alert_id == alert_id)
            .order_by(m.AlertTransition.id)
        )
    )


@dataclass(frozen=True, slots=True)
class Similar:
    """A past alert like another, and how it ended: ``match`` is ``place`` (same kind at
    the same device or building) or ``compound`` (same kind elsewhere in the compound);
    ``resolved_by``/``resolved_at`` from its latest resolution (None while unresolved)."""

    alert: m.Alert
    match: Literal["place", "compound"]
    resolved_by: str | None
    resolved_at: datetime | None


def similar(
    session: Session, user: m.User | None, alert: m.Alert, limit: int = 10
) -> list[Similar]:
    """Past alerts (opened no later than ``alert``) of the same kind in its compound and
    in ``user``'s subtree (``None``: the system's own look, unscoped): those at the same
    device (gateway and source) or building first, then the rest of the compound, newest
    first in each; ``alert`` itself is not among them."""
    # a device's id is its gateway's: cam-1 of the next building is another camera
    here = [and_(m.Alert.gateway == alert.gateway, m.Alert.source == alert.source)]
    if alert.building is not None:
        here.append(m.Alert.building == alert.building)
    same_place = or_(*here)
    tier = case((same_place, 0), else_=1)
    rows = session.execute(
        select(m.Alert, tier)
        .where(
            auth.scope_clause(user, m.Alert) if user is not None else true(),
            m.Alert.kind == alert.kind,
            m.Alert.community == alert.community,
            m.Alert.compound == alert.compound,
            m.Alert.id != alert.id,
            m.Alert.opened_at <= alert.opened_at,
        )
        .options(selectinload(m.Alert.verdict_row))
        .order_by(tier, m.Alert.opened_at.desc(), m.Alert.id.desc())
        .limit(limit)
    ).all()
    # a reopened alert's earlier resolution did not end it
    resolutions = _resolutions(session, [a.id for a, _ in rows if not a.active])
    return [
        Similar(a, "place" if t == 0 else "compound", *resolutions.get(a.id, (None, None)))
        for a, t in rows
    ]


def _resolutions(session: Session, alert_ids: Sequence[int]) -> dict[int, tuple[str, datetime]]:
    """Each alert's latest resolution in its log: (actor, at)."""
    if not alert_ids:
        return {}
    found: dict[int, tuple[str, datetime]] = {}
    for alert_id, actor, at in session.execute(
        select(m.AlertTransition.alert_id, m.AlertTransition.actor, m.AlertTransition.at)
        .where(m.AlertTransition.alert_id.in_(alert_ids), m.AlertTransition.action.in_(RESOLVING))
        .order_by(m.AlertTransition.id)
    ):
        found[alert_id] = (actor, at)  # the later overwrites: the latest stays
    return found


@dataclass(frozen=True, slots=True)
class Hotspot:
    """The same kind at the same compound and building (None: the compound's grounds)."""

    kind: str
    community: str
    compound: str
    building: str | None
    place: str  # the compound's and building's names, for people
    count: int
    severity: int  # the highest among them


def hotspots(session: Session, which: ColumnElement[bool], *, limit: int) -> list[Hotspot]:
    """The kinds that came back to one place among the alerts ``which`` selects (more than
    once: once is not a hotspot), busiest first, ties by kind then place; for the wall and
    the daily report alike."""
    n = func.count().label("n")
    building = func.coalesce(m.Alert.building, literal(""))
    rows = session.execute(
        select(
            m.Alert.kind,
            m.Alert.community,
            m.Alert.compound,
            m.Alert.building,
            n,
            func.max(m.Alert.severity),
        )
        .where(which)
        .group_by(m.Alert.kind, m.Alert.community, m.Alert.compound, m.Alert.building)
        .having(n > 1)
        .order_by(n.desc(), m.Alert.kind, m.Alert.community, m.Alert.compound, building)
        .limit(limit)
    ).all()
    compounds = compound_names(session, {(c, p) for _, c, p, _, _, _ in rows})
    buildings = building_names(session, {(c, p, b) for _, c, p, b, _, _ in rows if b})
    return [
        Hotspot(
            kind=k,
            community=c,
            compound=p,
            building=b,
            place=" ".join(
                filter(None, (compounds.get((c, p), p), b and buildings.get((c, p, b), b)))
            ),
            count=count,
            severity=severity,
        )
        for k, c, p, b, count, severity in rows
    ]
