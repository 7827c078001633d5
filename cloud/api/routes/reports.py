"""Reports: ``GET /api/reports/daily?day=YYYY-MM-DD&format=json|html|pdf``, the daily
report (日报) of the caller's area (cloud/awareness); HTML and PDF come as downloads.
With ``&desk=<id>`` the report the scheduler stored for that desk at the report hour
(rendered from its stored JSON); ``GET /api/reports/stored`` lists the stored days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from cloud.api.deps import DB, CurrentUser, State
from cloud.api.responses import AUTHED, LOOKUP, documented
from cloud.awareness.render import render_html, render_pdf
from cloud.awareness.report import SHANGHAI, DailyReport, daily_report, report_from_json
from cloud.awareness.schedule import stored, stored_one
from cloud.errors import NotFound

router = APIRouter(prefix="/api/reports", tags=["reports"])

_MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def yesterday(now: datetime) -> date:
    """The last whole local day before ``now``: the report one reads in the morning."""
    return now.astimezone(SHANGHAI).date() - timedelta(days=1)


@router.get(
    "/daily",
    responses={
        **documented(*LOOKUP),  # 404: no stored report of that desk and day
        200: {
            "description": "the report: JSON, or an HTML page or a PDF to download",
            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
        },
    },
)
def daily(
    db: DB,
    user: CurrentUser,
    st: State,
    day: Annotated[
        date | None, Query(description="the local day (Asia/Shanghai); default yesterday")
    ] = None,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "json",
    desk: Annotated[
        str | None,
        Query(max_length=64, description="a desk's stored report (made at the report hour)"),
    ] = None,
) -> Response:
    """The daily report of your area: alerts opened per severity, kind and compound,
    time to acknowledge and to resolve (median, p90), SLA breaches, hotspots, devices
    alive now, residents' appeals, and the change from the same weekday a week before.
    With ``desk``: that desk's report as stored at the report hour (404 when none)."""
    now = st.clock()
    day = day or yesterday(now)
    report: DailyReport
    if desk is None:
        report = daily_report(db, user, day, now=now)
        body = report.to_json()
    else:
        row = stored_one(db, user, desk, day)
        if row is None:
            raise NotFound(f"no stored report of desk {desk} for {day.isoformat()}")
        body = row.body
        report = report_from_json(body)
    if format == "json":
        return JSONResponse(body)
    content = render_pdf(report) if format == "pdf" else render_html(report).encode("utf-8")
    name = f"daily-report-{desk + '-' if desk else ''}{day.isoformat()}.{format}"
    return Response(
        content,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class StoredReportOut(BaseModel):
    desk: str
    desk_name: str
    day: date
    made_at: datetime
    opened: int
    sla_breaches: int


@router.get("/stored", response_model=list[StoredReportOut], responses=documented(*AUTHED))
def list_stored(
    db: DB,
    user: CurrentUser,
    desk: Annotated[str | None, Query(max_length=64, description="one desk's id")] = None,
    limit: Annotated[int, Query(ge=1, le=366)] = 60,
) -> list[StoredReportOut]:
    """The daily reports stored at the report hour for your area's desks, newest first
    (download each with ``/api/reports/daily?desk=&day=&format=``)."""
    return [
        StoredReportOut(
            desk=r.desk,
            desk_name=r.desk_name,
            day=r.day,
            made_at=r.made_at,
            opened=int(r.body["counts"]["opened"]),
            sla_breaches=int(r.body["counts"]["sla_breaches"]),
        )
        for r in stored(db, user, desk=desk, limit=limit)
    ]
