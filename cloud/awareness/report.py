"""The daily report (日报): one local day of a user's area, in a dozen grouped queries.

The day is ``[00:00, 24:00)`` local time (Asia/Shanghai unless told), turned into a UTC
range on ``opened_at`` (indexed) before any query runs. Every count is scoped with
:func:`cloud.auth.scope_clause`, exactly as the API and the console scope (a community's
user gets their community's report). Each figure is one query that groups in the
database; nothing loads the day's alerts into Python, with one exception on SQLite (see
:func:`_durations`).

The wall's module (``cloud.console.summary``) has queries like these, but it lies in a
layer above this package (``lint-imports``), so the few shared ideas are repeated here
rather than imported: the seconds between two times in SQL, the compound/building names
lookup, devices alive by :mod:`cloud.liveness`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, and_, case, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from cloud import auth, liveness
from cloud.alerts.lifecycle import Action
from cloud.alerts.queries import Hotspot, hotspots
from cloud.db import models as m
from cloud.durations import Durations, time_to_act
from cloud.errors import Invalid
from cloud.place_names import compound_names

SHANGHAI = ZoneInfo("Asia/Shanghai")
# days a report can be made of (the week before included): times the stores hold
FIRST_DAY = date(1970, 1, 8)
LAST_DAY = date(9999, 12, 30)
SEVERITIES = (1, 2, 3)
TOP_HOTSPOTS = 5
# the alert log's actions that count as the first acknowledgement and the resolution
# an SLA breach: the alert went up a level (the clock or by hand), or a work order was
# whistled (吹哨) to a department; each such log row counts once
BREACHES = ("escalated", Action.WHISTLED.value)
# an appeal not yet answered; one answered after due_at was overdue as well
OPEN_APPEALS = ("submitted", "accepted")


# --- the report ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindCount:
    """Alerts of one kind opened that day, per severity (1, 2, 3 always present)."""

    kind: str
    count: int
    by_severity: dict[int, int]


@dataclass(frozen=True, slots=True)
class PlaceCount:
    """Alerts opened that day at one compound."""

    community: str
    compound: str
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Availability:
    """Gateways and devices alive *at ``at``* (when the report was made) by
    :mod:`cloud.liveness`: no liveness history is kept, so a past day's report shows
    today's availability, not that day's."""

    at: datetime
    gateways_online: int
    gateways_total: int
    devices_online: int
    devices_total: int

    @property
    def share(self) -> float | None:
        """Devices online as a share of all (gateways where there are no devices)."""
        if self.devices_total:
            return self.devices_online / self.devices_total
        if self.gateways_total:
            return self.gateways_online / self.gateways_total
        return None


@dataclass(frozen=True, slots=True)
class Appeals:
    """Residents' appeals made that day: answered (by now), overdue (answered after
    ``due_at``, or still unanswered past it), rated and their mean rating (1-5)."""

    opened: int
    answered: int
    overdue: int
    rated: int
    mean_rating: float | None


@dataclass(frozen=True, slots=True)
class DayCounts:
    """The counts compared week over week."""

    opened: int
    by_severity: dict[int, int]
    sla_breaches: int
    appeals: int

    def flat(self) -> dict[str, int]:
        out = {"opened": self.opened, "sla_breaches": self.sla_breaches, "appeals": self.appeals}
        out.update({f"severity_{s}": n for s, n in self.by_severity.items()})
        return out


@dataclass(frozen=True, slots=True)
class WeekOverWeek:
    """This day's counts against the same weekday a week earlier; ``change_pct`` per
    count of :meth:`DayCounts.flat` (None where the week before had none)."""

    previous_day: date
    previous: DayCounts
    change_pct: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: date
    timezone: str
    start: datetime  # UTC
    end: datetime  # UTC, excluded
    generated_at: datetime
    scope: dict[str, str | None]  # the user's node: community, compound, building
    counts: DayCounts
    by_kind: list[KindCount]
    by_place: list[PlaceCount]
    by_hour: list[dict[int, int]]  # local hour (from 00:00) → severity → alerts opened
    acknowledge: Durations
    resolve: Durations
    breaches_by_action: dict[str, int]
    hotspots: list[Hotspot]
    devices: Availability
    appeals: Appeals
    week: WeekOverWeek

    @property
    def opened(self) -> int:
        return self.counts.opened

    @property
    def sla_breaches(self) -> int:
        return self.counts.sla_breaches

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: dates and times ISO 8601, severity keys as strings."""
        out = cast(dict[str, Any], _jsonable(asdict(self)))
        out["devices"]["share"] = self.devices.share
        return out


def _severities(value: dict[str, int]) -> dict[int, int]:
    return {int(k): int(v) for k, v in value.items()}


def _day_counts(d: dict[str, Any]) -> DayCounts:
    return DayCounts(d["opened"], _severities(d["by_severity"]), d["sla_breaches"], d["appeals"])


def report_from_json(data: dict[str, Any]) -> DailyReport:
    """The report back from :meth:`DailyReport.to_json` (a stored report): the same
    numbers, so a stored day renders to HTML and PDF without asking the database again.

    KeyError or ValueError when ``data`` is not such a report."""
    dev, ap, wk = data["devices"], data["appeals"], data["week"]
    return DailyReport(
        day=date.fromisoformat(data["day"]),
        timezone=data["timezone"],
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        generated_at=datetime.fromisoformat(data["generated_at"]),
        scope=dict(data["scope"]),
        counts=_day_counts(data["counts"]),
        by_kind=[
            KindCount(k["kind"], k["count"], _severities(k["by_severity"])) for k in data["by_kind"]
        ],
        by_place=[
            PlaceCount(p["community"], p["compound"], p["name"], p["count"])
            for p in data["by_place"]
        ],
        by_hour=[_severities(h) for h in data["by_hour"]],
        acknowledge=Durations(**data["acknowledge"]),
        resolve=Durations(**data["resolve"]),
        breaches_by_action=dict(data["breaches_by_action"]),
        hotspots=[Hotspot(**h) for h in data["hotspots"]],
        devices=Availability(
            at=datetime.fromisoformat(dev["at"]),
            gateways_online=dev["gateways_online"],
            gateways_total=dev["gateways_total"],
            devices_online=dev["devices_online"],
            devices_total=dev["devices_total"],
        ),
        appeals=Appeals(**ap),
        week=WeekOverWeek(
            date.fromisoformat(wk["previous_day"]),
            _day_counts(wk["previous"]),
            dict(wk["change_pct"]),
        ),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --- building it --------------------------------------------------------------------


def day_range(day: date, tz: ZoneInfo = SHANGHAI) -> tuple[datetime, datetime]:
    """The local day ``[00:00, next 00:00)`` in ``tz`` as aware UTC times."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def daily_report(
    session: Session,
    user: m.User,
    day: date,
    tz: ZoneInfo = SHANGHAI,
    *,
    now: datetime | None = None,
) -> DailyReport:
    """The report of ``day`` (local to ``tz``) for ``user``'s area. ``user`` need not be
    stored: a scheduled report for a node passes ``m.User(community=..., ...)``. ``now``
    (aware; default the system clock) is when device liveness and appeals' overdue are
    judged."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise Invalid(f"day: {day.isoformat()} is outside {FIRST_DAY} … {LAST_DAY}")
    now = now or datetime.now(UTC)
    start, end = day_range(day, tz)
    kinds, by_sev = _opened(session, user, start, end)
    breaches = _breaches(session, user, start, end)
    counts = DayCounts(
        opened=sum(by_sev.values()),
        by_severity=by_sev,
        sla_breaches=sum(breaches.values()),
        appeals=_appeals_opened(session, user, start, end),
    )
    ack, resolve = _durations(session, user, start, end)
    return DailyReport(
        day=day,
        timezone=tz.key,
        start=start,
        end=end,
        generated_at=now,
        scope={"community": user.community, "compound": user.compound, "building": user.building},
        counts=counts,
        by_kind=kinds,
        by_place=_by_place(session, user, start, end),
        by_hour=_by_hour(session, user, start, end),
        acknowledge=ack,
        resolve=resolve,
        breaches_by_action=breaches,
        hotspots=_hotspots(session, user, start, end),
        devices=_availability(session, user, now),
        appeals=_appeals(session, user, start, end, now),
        week=_week(session, user, day, tz, counts),
    )


def _zeros() -> dict[int, int]:
    return dict.fromkeys(SEVERITIES, 0)


def _in_day(
    user: m.User, model: Any, column: Any, start: datetime, end: datetime
) -> ColumnElement[bool]:
    return and_(auth.scope_clause(user, model), column >= start, column < end)


def _opened(
    session: Session, user: m.User, start: datetime, end: datetime
) -> tuple[list[KindCount], dict[int, int]]:
    rows = session.execute(
        select(m.Alert.kind, m.Alert.severity, func.count())
        .where(_in_day(user, m.Alert, m.Alert.opened_at, start, end))
        .group_by(m.Alert.kind, m.Alert.severity)
    ).all()
    per_kind: dict[str, dict[int, int]] = {}
    by_sev = _zeros()
    for kind, severity, n in rows:
        per_kind.setdefault(kind, _zeros())[severity] = n
        by_sev[severity] = by_sev.get(severity, 0) + n
    kinds = [KindCount(k, sum(s.values()), s) for k, s in per_kind.items()]
    return sorted(kinds, key=lambda k: (-k.count, k.kind)), by_sev


def _by_place(session: Session, user: m.User, start: datetime, end: datetime) -> list[PlaceCount]:
    n = func.count().label("n")
    rows = session.execute(
        select(m.Alert.community, m.Alert.compound, n)
        .where(_in_day(user, m.Alert, m.Alert.opened_at, start, end))
        .group_by(m.Alert.community, m.Alert.compound)
        .order_by(n.desc(), m.Alert.community, m.Alert.compound)
    ).all()
    names = compound_names(session, {(c, k) for c, k, _ in rows})
    return [PlaceCount(c, k, names.get((c, k), k), n) for c, k, n in rows]


def _epoch_s(session: Session, column: Any) -> ColumnElement[Any]:
    """Whole seconds since 1970 of a stored time, in SQL (SQLite keeps text)."""
    if session.get_bind().dialect.name == "sqlite":
        return sql_cast(func.strftime("%s", column), Integer)
    return cast(ColumnElement[Any], func.extract("epoch", column))


def _by_hour(
    session: Session, user: m.User, start: datetime, end: datetime
) -> list[dict[int, int]]:
    """Alerts opened per hour since local midnight and severity (23 or 25 hours on a
    day clocks change)."""
    offset = _epoch_s(session, m.Alert.opened_at) - int(start.timestamp())
    if session.get_bind().dialect.name == "sqlite":
        whole: ColumnElement[Any] = offset // 3600  # integers: SQLite divides whole
    else:  # numeric seconds; a cast to integer would round 0.5 h up
        whole = func.floor(offset / 3600)
    hour = sql_cast(whole, Integer).label("hour")
    rows = session.execute(
        select(hour, m.Alert.severity, func.count())
        .where(_in_day(user, m.Alert, m.Alert.opened_at, start, end))
        .group_by(hour, m.Alert.severity)
    ).all()
    hours = [_zeros() for _ in range(math.ceil((end - start) / timedelta(hours=1)))]
    for h, severity, n in rows:
        hours[min(max(int(h), 0), len(hours) - 1)][severity] += n
    return hours


def _durations(
    session: Session, user: m.User, start: datetime, end: datetime
) -> tuple[Durations, Durations]:
    """Time to acknowledge and to resolve over the day's alerts (:mod:`cloud.durations`,
    the analysis API's rule too)."""
    return time_to_act(session, _in_day(user, m.Alert, m.Alert.opened_at, start, end))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _breaches(session: Session, user: m.User, start: datetime, end: datetime) -> dict[str, int]:
    """Escalation log rows (escalated, whistled) written that day, per action, whenever
    their alert opened. Every logged change also moves the alert's ``updated_at``
    (indexed), so alerts untouched since the day began are skipped."""
    rows = session.execute(
        select(m.AlertTransition.action, func.count())
        .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
        .where(
            auth.scope_clause(user, m.Alert),
            m.Alert.updated_at >= start,
            m.AlertTransition.action.in_(BREACHES),
            m.AlertTransition.at >= start,
            m.AlertTransition.at < end,
        )
        .group_by(m.AlertTransition.action)
    ).all()
    out = dict.fromkeys(BREACHES, 0)
    out.update((action, n) for action, n in rows)
    return out


def _hotspots(session: Session, user: m.User, start: datetime, end: datetime) -> list[Hotspot]:
    """The day's most frequent kind × compound × building (the wall's rule)."""
    which = _in_day(user, m.Alert, m.Alert.opened_at, start, end)
    return hotspots(session, which, limit=TOP_HOTSPOTS)


def _availability(session: Session, user: m.User, now: datetime) -> Availability:
    counts = liveness.availability(session, user, now)
    return Availability(
        at=now,
        gateways_online=counts.gateways_online,
        gateways_total=counts.gateways_total,
        devices_online=counts.devices_online,
        devices_total=counts.devices_total,
    )


def _appeals_opened(session: Session, user: m.User, start: datetime, end: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(m.Appeal)
            .where(_in_day(user, m.Appeal, m.Appeal.created_at, start, end))
        )
        or 0
    )


def _appeals(
    session: Session, user: m.User, start: datetime, end: datetime, now: datetime
) -> Appeals:
    overdue = or_(
        m.Appeal.replied_at > m.Appeal.due_at,
        and_(m.Appeal.replied_at.is_(None), m.Appeal.due_at < now),
    )
    row = session.execute(
        select(
            func.count(),
            func.count(m.Appeal.replied_at),
            func.coalesce(func.sum(case((overdue, 1), else_=0)), 0),
            func.count(m.Appeal.rating),
            func.avg(m.Appeal.rating),
        ).where(_in_day(user, m.Appeal, m.Appeal.created_at, start, end))
    ).one()
    return Appeals(
        opened=row[0],
        answered=row[1],
        overdue=int(row[2]),
        rated=row[3],
        mean_rating=_float(row[4]),
    )


def _week(
    session: Session, user: m.User, day: date, tz: ZoneInfo, counts: DayCounts
) -> WeekOverWeek:
    before = day - timedelta(days=7)
    start, end = day_range(before, tz)
    _, by_sev = _opened(session, user, start, end)
    previous = DayCounts(
        opened=sum(by_sev.values()),
        by_severity=by_sev,
        sla_breaches=sum(_breaches(session, user, start, end).values()),
        appeals=_appeals_opened(session, user, start, end),
    )
    this, last = counts.flat(), previous.flat()
    change = {
        key: (round((this[key] - last[key]) / last[key] * 100, 1) if last[key] else None)
        for key in this
    }
    return WeekOverWeek(before, previous, change)
