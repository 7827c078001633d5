"""Data analysis of the caller's area (cloud/analysis): ``GET /api/analysis/counts``,
``/durations``, ``/trend``, ``/top``. Every route takes the same filters (a time range,
a place, kinds, levels, severities) and answers only about the caller's area."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from cloud.analysis import queries as q
from cloud.api.deps import DB, CurrentUser, State
from cloud.api.params import StoredTime
from cloud.api.responses import AUTHED, documented
from cloud.errors import Invalid

router = APIRouter(prefix="/api/analysis", tags=["analysis"])
DEFAULT_DAYS = 7
_Id = Annotated[str | None, Query(max_length=64)]


def _filter(
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    community: str | None,
    compound: str | None,
    building: str | None,
    kind: list[str],
    level: list[str],
    severity: list[int],
) -> q.AnalysisFilter:
    until = until or now
    since = since or until - timedelta(days=DEFAULT_DAYS)
    if (compound or building) and not community:
        raise Invalid("community: needed with compound or building")
    if building and not compound:
        raise Invalid("compound: needed with building")
    places = (q.Place(community, compound, building),) if community else ()
    return q.AnalysisFilter(
        start=since,
        end=until,
        places=places,
        kinds=tuple(kind),
        levels=tuple(level),
        severities=tuple(severity),
    )


class _Filters:
    """The filters every route takes, as one dependency."""

    def __init__(
        self,
        since: Annotated[
            StoredTime | None, Query(description="from (with zone); default: 7 days before until")
        ] = None,
        until: Annotated[StoredTime | None, Query(description="to, excluded; default now")] = None,
        community: _Id = None,
        compound: _Id = None,
        building: _Id = None,
        kind: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006 - FastAPI's way
        level: Annotated[
            list[Literal["building", "compound", "community", "district"]], Query()
        ] = [],  # noqa: B006
        severity: Annotated[list[int], Query(description="1, 2 or 3")] = [],  # noqa: B006
    ) -> None:
        self.since, self.until = since, until
        self.community, self.compound, self.building = community, compound, building
        self.kind, self.level, self.severity = kind, list(level), severity

    def build(self, now: datetime) -> q.AnalysisFilter:
        return _filter(
            now,
            self.since,
            self.until,
            self.community,
            self.compound,
            self.building,
            self.kind,
            list(self.level),
            self.severity,
        )


def _range(flt: q.AnalysisFilter) -> dict[str, Any]:
    return {
        "since": flt.start.isoformat() if flt.start else None,
        "until": flt.end.isoformat() if flt.end else None,
    }


@router.get("/counts", responses=documented(*AUTHED))
def counts(
    db: DB,
    user: CurrentUser,
    st: State,
    filters: Annotated[_Filters, Depends()],
    by: Annotated[
        str,
        Query(
            max_length=200,
            description=f"comma-separated, up to {q.MAX_GROUPS} of: {', '.join(q.GROUPS)}",
        ),
    ] = "",
) -> dict[str, Any]:
    """Alerts opened in your area, grouped by place, kind, level, severity, local day
    or hour (Asia/Shanghai), largest first. A place groups with the levels above it."""
    flt = filters.build(st.clock())
    groups = q.parse_groups(by)
    result = q.counts(db, user, flt, groups)
    return {
        **_range(flt),
        "by": list(result.by),
        "total": result.total,
        "rows": [{**r.keys, "count": r.count} for r in result.rows],
        "other": result.other,
    }


@router.get("/durations", responses=documented(*AUTHED))
def durations(
    db: DB, user: CurrentUser, st: State, filters: Annotated[_Filters, Depends()]
) -> dict[str, Any]:
    """Seconds to acknowledge and to resolve (median, p90) over the alerts opened."""
    flt = filters.build(st.clock())
    result = q.durations(db, user, flt)
    return {**_range(flt), **asdict(result)}


@router.get("/trend", responses=documented(*AUTHED))
def trend(
    db: DB,
    user: CurrentUser,
    st: State,
    filters: Annotated[_Filters, Depends()],
    first: Annotated[
        date | None, Query(description="first local day; default 6 days before last")
    ] = None,
    last: Annotated[date | None, Query(description="last local day; default today")] = None,
) -> dict[str, Any]:
    """Alerts opened per local day, each beside the same day of the period before."""
    flt = filters.build(st.clock())
    last = last or st.clock().astimezone(q.SHANGHAI).date()
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    result = q.trend(db, user, flt, first, last)
    return {
        "first": result.first.isoformat(),
        "last": result.last.isoformat(),
        "total": result.total,
        "previous_total": result.previous_total,
        "change_pct": result.change_pct,
        "points": [
            {
                "day": p.day.isoformat(),
                "count": p.count,
                "previous_day": p.previous_day.isoformat(),
                "previous": p.previous,
            }
            for p in result.points
        ],
    }


@router.get("/top", responses=documented(*AUTHED))
def top(
    db: DB,
    user: CurrentUser,
    st: State,
    filters: Annotated[_Filters, Depends()],
    place: Annotated[Literal["community", "compound", "building"], Query()] = "compound",
    n: Annotated[int, Query(ge=1, le=q.MAX_TOP)] = 10,
) -> dict[str, Any]:
    """The places with the most alerts opened, most first."""
    flt = filters.build(st.clock())
    rows = q.top(db, user, flt, place, n)
    return {**_range(flt), "place": place, "rows": [asdict(r) for r in rows]}
