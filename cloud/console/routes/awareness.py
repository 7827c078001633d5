"""The 24-hour loop's pages: 交接班 (``/handover``: the latest handover of each desk in
the user's area, printable) and 日报 (``/reports``: the stored daily reports with their
HTML, PDF and JSON downloads, served here under the console's session since the API's
``/api/reports/daily?desk=`` takes a bearer token)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cloud.api.deps import DB
from cloud.awareness.handover import LISTS, latest_per_desk
from cloud.awareness.render import render_html, render_pdf
from cloud.awareness.report import report_from_json
from cloud.awareness.schedule import stored, stored_one
from cloud.console.routes.page_errors import refused
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m

router = APIRouter()
_MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


# each list's time column: when an alert opened, when a work order was due
_WHEN = {"overdue_work_orders": "due_at"}


@dataclass(frozen=True)
class HandoverView:
    """A stored handover for the page: its row, counts, and lists with times parsed."""

    row: m.ShiftHandover
    counts: dict[str, int]
    lists: dict[str, list[dict[str, Any]]]


def _view(row: m.ShiftHandover) -> HandoverView:
    lists: dict[str, list[dict[str, Any]]] = {}
    for name in LISTS:
        key = _WHEN.get(name, "opened_at")
        lists[name] = [
            {**item, "when": datetime.fromisoformat(item[key]) if item.get(key) else None}
            for item in row.body.get("lists", {}).get(name, [])
        ]
    return HandoverView(row, dict(row.body.get("counts", {})), lists)


@router.get("/handover", response_class=HTMLResponse)
def handover_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """Each desk's newest handover: counts, then each list (printable)."""
    views = [_view(r) for r in latest_per_desk(db, signed.user)]
    return render(request, "handover.html", {"handovers": views, "lists": LISTS}, signed=signed)


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The stored daily reports of the user's desks, newest day first."""
    return render(
        request, "daily_reports.html", {"reports": stored(db, signed.user)}, signed=signed
    )


@router.get("/reports/download", response_model=None)
def download(
    request: Request,
    db: DB,
    signed: Signed,
    desk: Annotated[str, Query(max_length=64)],
    day: date,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "html",
) -> Response:
    """One stored report, rendered from its stored JSON (404 when not the user's)."""
    row = stored_one(db, signed.user, desk, day)
    if row is None:
        return refused(request, signed, 404)
    if format == "json":
        return JSONResponse(row.body)
    report = report_from_json(row.body)
    content = render_pdf(report) if format == "pdf" else render_html(report).encode("utf-8")
    name = f"daily-report-{desk}-{day.isoformat()}.{format}"
    return Response(
        content,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
