"""Reports: ``GET /api/reports/daily?day=YYYY-MM-DD&format=json|html|pdf``, the daily
report (日报) of the caller's area (cloud/awareness); HTML and PDF come as downloads."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from cloud.api.deps import DB, CurrentUser, State
from cloud.api.responses import AUTHED, documented
from cloud.awareness.render import render_html, render_pdf
from cloud.awareness.report import SHANGHAI, daily_report

router = APIRouter(prefix="/api/reports", tags=["reports"])

_MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def yesterday(now: datetime) -> date:
    """The last whole local day before ``now``: the report one reads in the morning."""
    return now.astimezone(SHANGHAI).date() - timedelta(days=1)


@router.get(
    "/daily",
    responses={
        **documented(*AUTHED),
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
) -> Response:
    """The daily report of your area: alerts opened per severity, kind and compound,
    time to acknowledge and to resolve (median, p90), SLA breaches, hotspots, devices
    alive now, residents' appeals, and the change from the same weekday a week before."""
    now = st.clock()
    day = day or yesterday(now)
    report = daily_report(db, user, day, now=now)
    if format == "json":
        return JSONResponse(report.to_json())
    content = render_pdf(report) if format == "pdf" else render_html(report).encode("utf-8")
    name = f"daily-report-{day.isoformat()}.{format}"
    return Response(
        content,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
