"""The data analysis: counts, durations, trends and top places of alerts, each one grouped
query in the database, scoped by the user and filtered the same way.

Every function takes an :class:`AnalysisFilter` (a UTC range on ``opened_at``, which is
indexed, places, kinds, levels, severities, local hours) and ANDs it with
:func:`cloud.auth.scope_clause`, so a filter naming a place outside the user's area
counts nothing rather than telling what is there. Days and hours are local
(Asia/Shanghai): China keeps no daylight saving time (none since 1991), so local time is
UTC + 8 h for every time the stores hold here, and SQLite's ``strftime(..., '+8 hours')``
and PostgreSQL's ``AT TIME ZONE 'Asia/Shanghai'`` agree.

This package sits beside ``cloud.warning`` and ``cloud.awareness`` (``lint-imports``):
what it shares with the daily report lives below both (:mod:`cloud.durations`,
:func:`cloud.db.seconds_between`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Histogram
from sqlalchemy import ColumnElement, Integer, Select, and_, false, func, or_, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from cloud import auth
from cloud.alerts.lifecycle import ACTIVE
from cloud.db import models as m
from cloud.durations import Durations, time_to_act
from cloud.errors import Invalid
from cloud.place_names import building_names, compound_names

SHANGHAI = ZoneInfo("Asia/Shanghai")
_OFFSET_H = 8  # Asia/Shanghai's only offset since 1991 (checked in the tests)
GROUPS = ("community", "compound", "building", "kind", "level", "severity", "day", "hour")
Group = Literal["community", "compound", "building", "kind", "level", "severity", "day", "hour"]
PLACE_LEVELS = ("community", "compound", "building")
LEVELS = ("building", "compound", "community", "district")
SEVERITIES = (1, 2, 3)
MAX_GROUPS = 3
MAX_ROWS = 1000  # a counts answer's rows (the rest are summed in ``other``)
MAX_TOP = 100
MAX_RANGE = timedelta(days=400)
# the alert log's actions that count as the first acknowledgement and the resolution

QUERIES = Counter("mb_analysis_queries_total", "analysis queries run, by function", ["query"])
QUERY_SECONDS = Histogram(
    "mb_analysis_query_seconds",
    "time of one analysis query, by function",
    ["query"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


# --- the filter ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """A community, a compound in it, or a building in that (None: the whole level)."""

    community: str
    compound: str | None = None
    building: str | None = None

    def clause(self, cols: Any = m.Alert) -> ColumnElement[bool]:
        """Alerts at this place (``cols``: the columns compared, see ``_RangeFirst``)."""
        parts = [cols.community == self.community]
        if self.compound is not None:
            parts.append(cols.compound == self.compound)
        if self.building is not None:
            parts.append(cols.building == self.building)
        return and_(*parts)


@dataclass(frozen=True, slots=True)
class AnalysisFilter:
    """What to count. ``start``/``end``: aware times, ``[start, end)`` on ``opened_at``;
    ``places``: any of them (empty: the whole area); ``kinds``/``levels``/``severities``:
    any of them (empty: all); ``hours``: local hours of the day (夜里 is 22-5)."""

    start: datetime | None = None
    end: datetime | None = None
    places: tuple[Place, ...] = ()
    kinds: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise Invalid(f"{name}: a time with its zone is needed")
        if self.start is not None and self.end is not None:
            if self.end <= self.start:
                raise Invalid("until: must be after since")
            if self.end - self.start > MAX_RANGE:
                raise Invalid(f"since/until: at most {MAX_RANGE.days} days")
        if bad := [lv for lv in self.levels if lv not in LEVELS]:
            raise Invalid(f"level: {bad[0]!r} is not one of {', '.join(LEVELS)}")
        if bad_s := [s for s in self.severities if s not in SEVERITIES]:
            raise Invalid(f"severity: {bad_s[0]!r} is not one of 1, 2, 3")
        if bad_h := [h for h in self.hours if not 0 <= h <= 23]:
            raise Invalid(f"hour: {bad_h[0]!r} is not within 0-23")

    def clause(self, user: m.User, scope_of: Any = m.Alert) -> ColumnElement[bool]:
        """The WHERE clause: the user's scope AND the filter. ``scope_of``: the columns
        the scope compares (the alerts'; see :class:`_RangeFirst`)."""
        parts: list[ColumnElement[bool]] = [auth.scope_clause(user, scope_of)]
        if self.start is not None:
            parts.append(m.Alert.opened_at >= self.start)
        if self.end is not None:
            parts.append(m.Alert.opened_at < self.end)
        if self.places:
            parts.append(or_(*(p.clause(scope_of) for p in self.places)))
        if self.kinds:
            parts.append(scope_of.kind.in_(self.kinds))
        if self.levels:
            parts.append(m.Alert.level.in_(self.levels))
        if self.severities:
            parts.append(m.Alert.severity.in_(self.severities))
        return and_(*parts)


def local_day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """Local days ``first`` … ``last`` (both included) as ``[start, end)`` in UTC."""
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=SHANGHAI).astimezone(UTC)
    return start, end


# --- local day and hour in SQL ------------------------------------------------------


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def local_day(session: Session, column: Any) -> ColumnElement[str]:
    """The local date of a stored UTC time, as text ``YYYY-MM-DD``."""
    if _sqlite(session):
        return cast(ColumnElement[str], func.strftime("%Y-%m-%d", column, f"+{_OFFSET_H} hours"))
    return cast(ColumnElement[str], func.to_char(func.timezone(SHANGHAI.key, column), "YYYY-MM-DD"))


def local_hour(session: Session, column: Any) -> ColumnElement[int]:
    """The local hour (0-23) of a stored UTC time."""
    if _sqlite(session):
        return sql_cast(func.strftime("%H", column, f"+{_OFFSET_H} hours"), Integer)
    return sql_cast(func.extract("hour", func.timezone(SHANGHAI.key, column)), Integer)


_ALERTS = m.Alert.__table__


def _plus(column: Any) -> ColumnElement[Any]:
    """SQLite's unary ``+``: the same value, but no index is used for it."""
    return UnaryExpression(column, operator=custom_op("+"))


class _RangeFirst:
    """The place and kind columns behind SQLite's unary ``+``, which keeps the planner
    off the place and kind indexes. Without ANALYZE statistics SQLite prefers an index
    with an equality (``community = ?``, ix_alerts_place_status; ``kind IN (...)``,
    ix_alerts_kind_place) to a range (ix_alerts_opened_at), and those read every alert
    of the community or kind the database ever kept: a community's "today" took 600 ms
    at 100,000 alerts instead of 8 ms, and it grows with retention, not with the
    question. Not used where a compound is named (or is the user's node): its alerts
    are few, and ix_alerts_place_status finds them."""

    community: ColumnElement[Any] = UnaryExpression(_ALERTS.c.community, operator=custom_op("+"))
    compound: ColumnElement[Any] = UnaryExpression(_ALERTS.c.compound, operator=custom_op("+"))
    building: ColumnElement[Any] = UnaryExpression(_ALERTS.c.building, operator=custom_op("+"))
    kind: ColumnElement[Any] = UnaryExpression(_ALERTS.c.kind, operator=custom_op("+"))


def _range_first(session: Session, user: m.User, flt: AnalysisFilter) -> bool:
    return (
        _sqlite(session)
        and flt.start is not None
        and user.compound is None
        and all(p.compound is None for p in flt.places)
    )


def _where(session: Session, user: m.User, flt: AnalysisFilter) -> ColumnElement[bool]:
    if _range_first(session, user, flt):
        clause = and_(flt.clause(user, scope_of=_RangeFirst), true())
    else:
        clause = flt.clause(user)
    if flt.hours:
        clause = and_(clause, local_hour(session, m.Alert.opened_at).in_(flt.hours))
    return clause


def _column(session: Session, group: str) -> ColumnElement[Any]:
    if group == "day":
        return local_day(session, m.Alert.opened_at).label("day")
    if group == "hour":
        return local_hour(session, m.Alert.opened_at).label("hour")
    return cast(ColumnElement[Any], getattr(m.Alert, group)).label(group)


def parse_groups(text: str | Iterable[str]) -> tuple[Group, ...]:
    """``"compound,kind"`` → ("compound", "kind"); Invalid naming the allowed values."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Group] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name not in GROUPS:
            raise Invalid(f"by: {name!r} is not one of {', '.join(GROUPS)}")
        if name not in out:
            out.append(cast(Group, name))
    if len(out) > MAX_GROUPS:
        raise Invalid(f"by: at most {MAX_GROUPS} of {', '.join(GROUPS)}")
    return tuple(out)


# --- counts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountRow:
    """One group: its keys (the ``by`` columns; a place also by ``<level>_name``) and the
    alerts in it."""

    keys: dict[str, Any]
    count: int


@dataclass(frozen=True, slots=True)
class Counts:
    by: tuple[str, ...]
    total: int
    rows: list[CountRow]
    other: int = 0  # alerts in the groups past MAX_ROWS


def _names(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add community_name / compound_name / building_name where the keys allow."""
    if not rows:
        return
    keys = rows[0].keys()
    if "community" in keys:
        ids = {r["community"] for r in rows}
        names = dict(
            session.execute(
                select(m.Community.id, m.Community.name).where(m.Community.id.in_(ids))
            ).all()
        )
        for r in rows:
            r["community_name"] = names.get(r["community"], r["community"])
    if "community" in keys and "compound" in keys:
        cn = compound_names(session, {(r["community"], r["compound"]) for r in rows})
        for r in rows:
            r["compound_name"] = cn.get((r["community"], r["compound"]), r["compound"])
        if "building" in keys:
            bn = building_names(
                session,
                {(r["community"], r["compound"], r["building"]) for r in rows if r["building"]},
            )
            for r in rows:
                b = r["building"]
                r["building_name"] = b and bn.get((r["community"], r["compound"], b), b)


def _place_groups(by: Sequence[str]) -> list[str]:
    """A compound is named within its community and a building within its compound, so
    grouping by a place groups by the levels above it too (two compounds both called
    c-a in two communities stay apart)."""
    deepest = max((PLACE_LEVELS.index(g) for g in by if g in PLACE_LEVELS), default=-1)
    extra = [lv for lv in PLACE_LEVELS[: deepest + 1] if lv not in by]
    return list(by) + extra


def select_counts(
    session: Session, user: m.User, flt: AnalysisFilter, by: Sequence[str]
) -> Select[Any]:
    """The statement :func:`counts` runs (the index test EXPLAINs it)."""
    groups = _place_groups(parse_groups(by))
    cols = [_column(session, g) for g in groups]
    n = func.count().label("n")
    stmt = select(*cols, n).where(_where(session, user, flt))
    if cols:
        stmt = stmt.group_by(*cols).order_by(n.desc(), *cols)
    return stmt


def counts(session: Session, user: m.User, flt: AnalysisFilter, by: Sequence[str] = ()) -> Counts:
    """Alerts opened, grouped by ``by`` (any of :data:`GROUPS`), largest first.

    >>> counts(s, user, AnalysisFilter(start=a, end=b), by=("compound", "kind"))
    """
    by = parse_groups(by)
    groups = _place_groups(by)
    with QUERY_SECONDS.labels("counts").time():
        QUERIES.labels("counts").inc()
        result = session.execute(select_counts(session, user, flt, by)).all()
    rows = [dict(zip(groups, r[:-1], strict=True)) for r in result]
    _names(session, rows)
    out = [CountRow(keys, int(r[-1])) for keys, r in zip(rows, result, strict=True)]
    total = sum(r.count for r in out)
    return Counts(by, total, out[:MAX_ROWS], sum(r.count for r in out[MAX_ROWS:]))


def count(session: Session, user: m.User, flt: AnalysisFilter) -> int:
    """Alerts opened matching ``flt``."""
    return counts(session, user, flt).total


# --- durations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurationSummary:
    alerts: int  # the alerts the filter matched
    acknowledge: Durations
    resolve: Durations


def durations(session: Session, user: m.User, flt: AnalysisFilter) -> DurationSummary:
    """Time to acknowledge and to resolve over the matching alerts (:mod:`cloud.durations`,
    the daily report's rule too)."""
    with QUERY_SECONDS.labels("durations").time():
        QUERIES.labels("durations").inc()
        which = _where(session, user, flt)
        alerts = session.scalar(select(func.count()).select_from(m.Alert).where(which))
        acknowledge, resolve = time_to_act(session, which)
    return DurationSummary(alerts or 0, acknowledge, resolve)


# --- trend --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrendPoint:
    day: date
    count: int
    previous_day: date
    previous: int  # the same position in the period before


@dataclass(frozen=True, slots=True)
class Trend:
    first: date
    last: date
    points: list[TrendPoint]
    total: int
    previous_total: int

    @property
    def change_pct(self) -> float | None:
        if not self.previous_total:
            return None
        return round((self.total - self.previous_total) / self.previous_total * 100, 1)


def trend(session: Session, user: m.User, flt: AnalysisFilter, first: date, last: date) -> Trend:
    """Alerts opened per local day ``first`` … ``last``, each beside the same day of the
    period of equal length just before (``flt``'s own time range is replaced)."""
    if last < first:
        raise Invalid("until: must be after since")
    days = (last - first).days + 1
    if days > MAX_RANGE.days // 2:
        raise Invalid(f"since/until: at most {MAX_RANGE.days // 2} days for a trend")
    prev_first = first - timedelta(days=days)
    start, end = local_day_range(prev_first, last)
    ranged = AnalysisFilter(
        start=start,
        end=end,
        places=flt.places,
        kinds=flt.kinds,
        levels=flt.levels,
        severities=flt.severities,
        hours=flt.hours,
    )
    with QUERY_SECONDS.labels("trend").time():
        QUERIES.labels("trend").inc()
        day_col = local_day(session, m.Alert.opened_at).label("day")
        per_day = dict(
            session.execute(
                select(day_col, func.count()).where(_where(session, user, ranged)).group_by(day_col)
            ).all()
        )
    points = []
    for i in range(days):
        d, p = first + timedelta(days=i), prev_first + timedelta(days=i)
        points.append(
            TrendPoint(d, per_day.get(d.isoformat(), 0), p, per_day.get(p.isoformat(), 0))
        )
    return Trend(
        first,
        last,
        points,
        sum(p.count for p in points),
        sum(p.previous for p in points),
    )


# --- top places ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopPlace:
    community: str
    compound: str | None
    building: str | None
    name: str  # for people: 西苑小区 3号楼
    count: int


def top(
    session: Session,
    user: m.User,
    flt: AnalysisFilter,
    level: str = "compound",
    n: int = 10,
) -> list[TopPlace]:
    """The ``n`` places of ``level`` (community, compound, building) with the most
    alerts, ties by id; alerts on a compound's grounds (no building) are not a building's."""
    if level not in PLACE_LEVELS:
        raise Invalid(f"level: {level!r} is not one of {', '.join(PLACE_LEVELS)}")
    if not 1 <= n <= MAX_TOP:
        raise Invalid(f"n: must be within 1-{MAX_TOP}")
    groups = list(PLACE_LEVELS[: PLACE_LEVELS.index(level) + 1])
    cols = [cast(ColumnElement[Any], getattr(m.Alert, g)) for g in groups]
    cnt = func.count().label("n")
    where = _where(session, user, flt)
    if level == "building":
        where = and_(where, m.Alert.building.is_not(None))
    with QUERY_SECONDS.labels("top").time():
        QUERIES.labels("top").inc()
        result = session.execute(
            select(*cols, cnt).where(where).group_by(*cols).order_by(cnt.desc(), *cols).limit(n)
        ).all()
    rows = [dict(zip(groups, r[:-1], strict=True)) for r in result]
    _names(session, rows)
    out = []
    for keys, r in zip(rows, result, strict=True):
        name = keys.get("building_name") or keys.get("compound_name") or keys["community_name"]
        if level == "building":
            name = f"{keys['compound_name']} {keys['building_name']}"
        out.append(
            TopPlace(keys["community"], keys.get("compound"), keys.get("building"), name, r[-1])
        )
    return out


# --- sensors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SensorState:
    """A sensor's latest reading and the alerts about it still open."""

    gateway: str
    sensor: str
    kind: str
    community: str
    compound: str
    building: str | None
    ts: datetime
    values: dict[str, Any]
    units: dict[str, Any]
    open_alerts: list[str] = field(default_factory=list)  # kinds, e.g. hydrant_pressure_trend


def _reading_scope(user: m.User, places: Sequence[Place]) -> ColumnElement[bool]:
    r = m.ReadingRow
    clause = auth.scope_clause(user, r)
    if not places:
        return clause
    parts = []
    for p in places:
        sub = [r.community == p.community]
        if p.compound is not None:
            sub.append(r.compound == p.compound)
        if p.building is not None:
            sub.append(r.building == p.building)
        parts.append(and_(*sub))
    return and_(clause, or_(*parts) if parts else false())


def sensor_states(
    session: Session,
    user: m.User,
    kind: str,
    places: Sequence[Place] = (),
    *,
    since: datetime,
    alert_kinds: Sequence[str] = (),
    limit: int = 50,
) -> list[SensorState]:
    """The latest reading since ``since`` of each sensor of ``kind`` at ``places`` (in
    the user's area), with the kinds of open alerts (``alert_kinds``) at its place.
    The readings' ``ts`` index bounds the scan to the window."""
    r = m.ReadingRow
    with QUERY_SECONDS.labels("sensors").time():
        QUERIES.labels("sensors").inc()
        # grouped by the columns as such, SQLite walks all of ix_readings_device_ts (every
        # reading ever kept) to group without sorting; behind unary + it takes the
        # window's rows from ix_readings_ts and sorts those
        keys = (
            [_plus(r.__table__.c.gateway), _plus(r.__table__.c.sensor)]
            if _sqlite(session)
            else [r.gateway, r.sensor]
        )
        latest = (
            select(keys[0].label("gateway"), keys[1].label("sensor"), func.max(r.ts).label("ts"))
            .where(r.kind == kind, r.ts >= since, _reading_scope(user, places))
            .group_by(*keys)
            .subquery()
        )
        rows = (
            session.execute(
                select(r)
                .join(
                    latest,
                    and_(
                        r.gateway == latest.c.gateway,
                        r.sensor == latest.c.sensor,
                        r.ts == latest.c.ts,
                    ),
                )
                .where(r.kind == kind)
                .order_by(r.community, r.compound, r.building, r.sensor)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        open_by_place: dict[tuple[str, str, str | None], list[str]] = {}
        cols: Any = _RangeFirst if _sqlite(session) else m.Alert
        if rows and alert_kinds:
            alerts = session.execute(
                select(m.Alert.community, m.Alert.compound, m.Alert.building, m.Alert.kind)
                .where(
                    # the few alerts still open, by ix_alerts_status (SQLite: the place and
                    # kind columns behind + so that it does not pick a place or kind index)
                    auth.scope_clause(user, cols),
                    m.Alert.status.in_([s.value for s in ACTIVE]),
                    cols.kind.in_(alert_kinds),
                    or_(*(Place(x.community, x.compound).clause(cols) for x in rows)),
                )
                .distinct()
            ).all()
            for c, k, b, kd in alerts:
                open_by_place.setdefault((c, k, b), []).append(kd)
    out = []
    seen: set[tuple[str, str]] = set()
    for x in rows:
        if (x.gateway, x.sensor) in seen:  # two readings at the same instant
            continue
        seen.add((x.gateway, x.sensor))
        kinds = sorted(
            set(open_by_place.get((x.community, x.compound, x.building), []))
            | set(open_by_place.get((x.community, x.compound, None), []))
        )
        out.append(
            SensorState(
                x.gateway,
                x.sensor,
                x.kind,
                x.community,
                x.compound,
                x.building,
                x.ts,
                dict(x.values),
                dict(x.units or {}),
                kinds,
            )
        )
    return out
