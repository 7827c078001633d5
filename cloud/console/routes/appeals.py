"""The residents' page (no login): report a problem at ``/report`` from a phone, then
follow it at ``/report/{ticket}?k=<key>`` (the private link shown once, at intake):
its state, the answer, and a rating once answered. The same services and checks as the
API's public routes (:mod:`cloud.api.routes.appeals`); a wrong key reads as a missing
ticket."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import DB, ApiState, State
from cloud.api.routes.appeals import appeal_settings, read_form, receive, refusal, secret_of
from cloud.appeals import access
from cloud.appeals.intake import Throttled, classifier
from cloud.console.templating import language_of, render
from cloud.db import models as m
from cloud.errors import Conflict, Invalid, NotFound

router = APIRouter()


def _choices(db: Session, language: str) -> dict[str, Any]:
    """The selects' options: every compound, its buildings, the categories."""
    compounds = db.scalars(select(m.Compound).order_by(m.Compound.community, m.Compound.id))
    buildings = db.scalars(
        select(m.Building).order_by(m.Building.community, m.Building.compound, m.Building.id)
    ).all()
    categories, _ = classifier()
    return {
        "compounds": [
            {
                "value": f"{c.community}/{c.id}",
                "name": c.name,
                "buildings": [
                    {"id": b.id, "name": b.name}
                    for b in buildings
                    if (b.community, b.compound) == (c.community, c.id)
                ],
            }
            for c in compounds
        ],
        "categories": [
            {"id": c.id, "name": c.name if language == "zh-CN" else c.name_en}
            for c in categories.categories
        ],
    }


def _form(request: Request, db: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    sent = dict.fromkeys(("place", "building", "category", "text", "phone"))
    values = {"error": None, "sent": sent, **_choices(db, language_of(request)), **context}
    return render(request, "report.html", values, status_code=status_code)


@router.get("/report", response_class=HTMLResponse)
def report_form(request: Request, db: DB) -> HTMLResponse:
    """The form: where, what (optional category), photos, phone."""
    return _form(request, db)


@router.post("/report", response_class=HTMLResponse)
async def report_submit(request: Request) -> HTMLResponse:
    """Store the appeal; show its ticket and private link, or the form again with why."""
    state: ApiState = request.app.state.api
    cfg = appeal_settings(request)
    sent: dict[str, Any] = dict.fromkeys(("place", "building", "category", "text", "phone"))
    try:
        data, received = await read_form(request, cfg)
        sent = {
            "place": f"{data.community}/{data.compound}",
            "building": data.building,
            "category": data.category,
            "text": data.text,
            "phone": data.phone,
        }
        taken = await run_in_threadpool(receive, state, cfg, data, received)
    except (Throttled, Invalid, HTTPException) as err:
        answer = err if isinstance(err, HTTPException) else refusal(err)

        def _again() -> HTMLResponse:
            with state.read_factory() as db:
                return _form(request, db, answer.status_code, error=str(answer.detail), sent=sent)

        return await run_in_threadpool(_again)
    appeal = taken.appeal
    link = f"/report/{appeal.ticket}?k={taken.access_key}"
    return render(request, "report_done.html", {"ticket": appeal.ticket, "link": link})


Key = Annotated[str | None, Query(alias="k", max_length=64)]


def _photos(db: Session, appeal: m.Appeal) -> int:
    query = select(func.count()).where(m.AppealPhoto.appeal_id == appeal.id)
    return db.scalar(query) or 0


def _view(
    request: Request,
    db: Session,
    appeal: m.Appeal,
    key: str,
    *,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    categories, _ = classifier()
    names = {
        c.id: (c.name if language_of(request) == "zh-CN" else c.name_en)
        for c in categories.categories
    }
    context = {
        "appeal": appeal,
        "category_name": names.get(appeal.category, appeal.category),
        "photos": _photos(db, appeal),
        "key": key,
        "may_rate": appeal.rating is None and appeal.status in ("answered", "closed"),
        "error": None,
        "rated": False,
        **extra,
    }
    return render(request, "report_view.html", context, status_code=status_code)


def _missing(request: Request) -> HTMLResponse:
    return render(request, "report_view.html", {"appeal": None}, status_code=404)


@router.get("/report/{ticket}", response_class=HTMLResponse)
def report_view(ticket: str, request: Request, db: DB, st: State, k: Key = None) -> HTMLResponse:
    """The reporter's own appeal, by its private link."""
    try:
        appeal = access.for_reporter(db, ticket, key=k, secret=secret_of(st))
    except NotFound:
        return _missing(request)
    return _view(request, db, appeal, k or "")


@router.post("/report/{ticket}/rate", response_class=HTMLResponse)
def report_rate(
    ticket: str,
    request: Request,
    db: DB,
    st: State,
    k: Annotated[str, Form(max_length=64)],
    rating: Annotated[int, Form()],
    comment: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    """Rate the answer once."""
    try:
        appeal = access.for_reporter(db, ticket, key=k, secret=secret_of(st), for_update=True)
    except NotFound:
        return _missing(request)
    try:
        access.rate(db, appeal, rating, comment.strip() or None, now=st.clock())
    except (Invalid, Conflict) as err:
        db.rollback()
        appeal = access.for_reporter(db, ticket, key=k, secret=secret_of(st))
        return _view(request, db, appeal, k, error=str(err), status_code=409)
    return _view(request, db, appeal, k, rated=True)
