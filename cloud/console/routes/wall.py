"""The wall (一屏治社区): a 1920×1080 page for the community's big screen, and the JSON
summary its charts read (``GET /console/wall.json``), both for the signed-in user's
area. The page reloads the summary when the console's live stream signals a change."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import DB, State
from cloud.console import i18n
from cloud.console.session import Signed
from cloud.console.summary import SEVERITIES, WallSummary, wall_summary
from cloud.console.templating import SEVERITY_NAME, language_of, render
from cloud.db import models as m
from cloud.work_orders import WorkOrderStatus

router = APIRouter()


def _labels(language: str, summary: WallSummary) -> dict[str, Any]:
    """The names the charts draw, from the catalogue (the script has no catalogue)."""
    cat = i18n.catalogue(language)
    kinds = {*summary.opened_by_kind, *(h.kind for h in summary.hotspots)}
    return {
        "severity": {str(s): cat.t(f"severity.{SEVERITY_NAME[s]}") for s in SEVERITIES},
        "kinds": {k: cat.kind(k) for k in kinds},
        "wo_status": {s.value: cat.t(f"wall.wo_status.{s.value}") for s in WorkOrderStatus},
        "no_department": cat.t("wall.no_department"),
        "empty": cat.t("wall.empty"),
        "hotspot_count": cat.t("wall.hotspot_count"),
        "devices_online": cat.t("wall.devices_online"),
        "no_devices": cat.t("wall.no_devices"),
        "updated": cat.t("wall.updated"),
        "unit": cat.t("wall.unit_items"),
    }


def _area(db: Session, user: m.User) -> str | None:
    """The name of the user's place (community, then compound and building), for the
    wall's header; None for the whole district."""
    if user.community is None:
        return None
    community = db.get(m.Community, user.community)
    names = [community.name if community else user.community]
    if user.compound is not None:
        compound = db.scalars(
            select(m.Compound.name).where(
                m.Compound.community == user.community, m.Compound.id == user.compound
            )
        ).first()
        names.append(compound or user.compound)
    if user.building is not None:
        names.append(user.building)
    return " ".join(names)


@router.get("/console/wall.json")
def wall_json(request: Request, db: DB, signed: Signed, st: State) -> JSONResponse:
    """The wall's numbers for the signed-in user's area, with the names to draw them
    by (``labels``: kinds the catalogue names, in the user's language)."""
    summary = wall_summary(db, signed.user, st.clock())
    body = summary.to_dict()
    body["labels"] = _labels(language_of(request), summary)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/wall", response_class=HTMLResponse)
def wall_page(request: Request, db: DB, signed: Signed, st: State) -> HTMLResponse:
    """The wall; its numbers are in the page at once and then kept live by wall.js."""
    summary = wall_summary(db, signed.user, st.clock())
    return render(
        request, "wall.html", {"summary": summary, "area": _area(db, signed.user)}, signed=signed
    )
