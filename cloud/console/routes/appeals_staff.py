"""Residents' appeals as the duty staff work them (居民诉求): the list of the user's area,
overdue first, and one appeal's page with its photos, classification, routing, log,
answer and rating, and the moves the API offers (accept, answer, close, reassign).

Everything goes through the services the staff API uses (:mod:`cloud.api.routes.appeals`):
:func:`cloud.appeals.queries.list_appeals` for the list, :func:`cloud.appeals.access.scoped`
for one appeal (another area's reads as a missing id: the same 404 page) and
:func:`cloud.appeals.lifecycle.move` for a move, after the same permission check
(``Action.WORK_ON_APPEALS``). The photos are served here under the console's cookie, as
``GET /api/staff/appeals/{id}/photos/{n}`` serves them to a Bearer token.

The list's order: open appeals past their deadline first (most overdue first), then the
other open ones by deadline (nearest first), then answered and closed ones by deadline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import DB, State
from cloud.api.params import RowId
from cloud.api.routes.appeals import NOSNIFF, appeal_settings, photo_root
from cloud.appeals import access, lifecycle, queries
from cloud.appeals.intake import classifier
from cloud.appeals.lifecycle import MOVES, OPEN, PARTY_KINDS, AppealStatus
from cloud.console.routes.page_errors import status_of, toast
from cloud.console.session import ConsoleSession, Signed
from cloud.console.templating import language_of, render
from cloud.db import models as m
from cloud.errors import DomainError, Invalid, NotFound
from cloud.permissions import Action, require

router = APIRouter()
LIMIT = 500  # appeals on the list at once (the newest, then sorted by urgency)
STATUSES = tuple(s.value for s in AppealStatus)
# the moves each state offers (the MOVES table: a button only where move() accepts it)
NEXT: dict[str, tuple[str, ...]] = {
    s.value: tuple(a for a, (froms, _to) in MOVES.items() if s in froms) for s in AppealStatus
}
# the log's actions the catalogue names (appeals_staff.log.*); another is shown as written
LOG_ACTIONS = frozenset({"submit", "accept", "answer", "close", "reassign", "escalate", "rate"})

FilterText = Annotated[str, Query(max_length=64)]
Reply = Annotated[str, Form(max_length=lifecycle.MAX_REPLY)]


def category_names(language: str) -> dict[str, str]:
    """The categories file's names (zh-CN's ``name``, else ``name_en``), by id, in file order."""
    categories, _ = classifier()
    return {c.id: (c.name if language == "zh-CN" else c.name_en) for c in categories.categories}


def is_overdue(appeal: m.Appeal, now: datetime) -> bool:
    """Open and past its deadline (what ``overdue=true`` lists in the API)."""
    return appeal.status in OPEN and appeal.due_at <= now


def urgency(appeal: m.Appeal, now: datetime) -> tuple[int, datetime, int]:
    """The list's order: overdue, then open, then answered or closed; each by deadline."""
    group = 0 if is_overdue(appeal, now) else 1 if appeal.status in OPEN else 2
    return group, appeal.due_at, appeal.id


@dataclass(frozen=True)
class Party:
    """Who answers an appeal, as the page shows it."""

    kind: str  # department | property | building_leader
    id: str
    name: str  # the department's, compound's or building's name (the id if unknown)
    person: str | None = None  # a building leader's name


def parties(db: Session, appeals: Iterable[m.Appeal]) -> dict[int, Party]:
    """Each appeal's responsible party with its name, in three queries whatever the count."""
    rows = list(appeals)
    departments = {d.id: d.name for d in db.scalars(select(m.Department))}
    communities = {a.community for a in rows}
    compounds = {
        (c.community, c.id): c.name
        for c in db.scalars(select(m.Compound).where(m.Compound.community.in_(communities)))
    }
    buildings = {
        (b.community, b.compound, b.id): b
        for b in db.scalars(
            select(m.Building).where(
                m.Building.community.in_(communities),
                m.Building.id.in_({a.responsible_id for a in rows}),
            )
        )
    }
    out: dict[int, Party] = {}
    for a in rows:
        kind, party = a.responsible_kind, a.responsible_id
        if kind == "department":
            out[a.id] = Party(kind, party, departments.get(party, party))
        elif kind == "property":
            out[a.id] = Party(kind, party, compounds.get((a.community, party), party))
        else:
            building = buildings.get((a.community, a.compound, party))
            leader = building.leader if building is not None else None
            person = leader.get("name") if isinstance(leader, dict) else None
            name = building.name if building is not None and building.name else party
            out[a.id] = Party(kind, party, name, str(person) if person else None)
    return out


def _known(value: str, allowed: Iterable[str]) -> tuple[str, ...]:
    # an unknown value in the query string filters nothing rather than erroring the page
    return (value,) if value in allowed else ()


@router.get("/appeals", response_class=HTMLResponse)
def appeals_page(
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    status: FilterText = "",
    category: FilterText = "",
    overdue: FilterText = "",
) -> HTMLResponse:
    """The area's appeals, overdue first; filters by status, category, overdue only."""
    now = st.clock()
    names = category_names(language_of(request))
    flt = queries.AppealFilter(
        statuses=_known(status, STATUSES),
        categories=_known(category, names),
        overdue_at=now if overdue else None,
        limit=LIMIT,
    )
    total, rows = queries.list_appeals(db, signed.user, flt)
    rows.sort(key=lambda a: urgency(a, now))
    values = {
        "appeals": rows,
        "total": total,
        "limit": LIMIT,
        "parties": parties(db, rows),
        "category_names": names,
        "statuses": STATUSES,
        "chosen": {
            "status": status if flt.statuses else "",
            "category": category if flt.categories else "",
            "overdue": bool(overdue),
        },
        "overdue": lambda a: is_overdue(a, now),
    }
    return render(request, "appeals_staff.html", values, signed=signed)


def _context(request: Request, db: Session, appeal: m.Appeal) -> dict[str, Any]:
    names = category_names(language_of(request))
    shots = db.scalars(
        select(m.AppealPhoto).where(m.AppealPhoto.appeal_id == appeal.id).order_by(m.AppealPhoto.n)
    )
    return {
        "appeal": appeal,
        "category_name": names.get(appeal.category, appeal.category),
        "party": parties(db, [appeal])[appeal.id],
        "photos": list(shots),
        "timeline": access.timeline(db, appeal.id),
        "log_actions": LOG_ACTIONS,
        "next": NEXT.get(appeal.status, ()),
        "overdue": is_overdue(appeal, request.app.state.api.clock()),
        "departments": list(db.scalars(select(m.Department).order_by(m.Department.id))),
        "party_kinds": PARTY_KINDS,
        "done": None,  # the move just made, said above the actions
    }


def _not_found(request: Request, signed: ConsoleSession) -> HTMLResponse:
    # the same page, status and words for "no such appeal" and "not in your area"
    return render(
        request,
        "error.html",
        {"message_key": "appeals_staff.not_found"},
        signed=signed,
        status_code=404,
    )


@router.get("/appeals/{appeal_id}", response_class=HTMLResponse)
def appeal_page(appeal_id: RowId, request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """One appeal: what the resident said, who answers it by when, the log, the actions."""
    try:
        appeal = access.scoped(db, signed.user, appeal_id)
    except NotFound:
        return _not_found(request, signed)
    return render(request, "appeal_staff.html", _context(request, db, appeal), signed=signed)


@router.get("/console/appeals/{appeal_id}/photos/{n}", response_class=FileResponse)
def appeal_photo(
    appeal_id: RowId,
    n: Annotated[int, Path(ge=1, le=10)],
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
) -> FileResponse:
    """A photo of an appeal of the user's area (an <img> sends the cookie, not a token),
    as the type its bytes were checked to be at intake."""
    appeal = access.scoped(db, signed.user, appeal_id)  # NotFound outside, as missing
    shot = db.scalars(
        select(m.AppealPhoto).where(m.AppealPhoto.appeal_id == appeal.id, m.AppealPhoto.n == n)
    ).first()
    if shot is None:
        raise NotFound(f"appeal {appeal_id} has no photo {n}")
    root = photo_root(st, appeal_settings(request))
    headers = {**NOSNIFF, "Cache-Control": "private, max-age=3600"}
    return FileResponse(root / shot.path, media_type=shot.content_type, headers=headers)


def _party(value: str) -> tuple[str | None, str | None]:
    """The reassign select's ``kind:id`` (``property:`` and ``building_leader:`` name no id:
    the appeal's compound and building are the party)."""
    kind, _, party = value.partition(":")
    if kind not in PARTY_KINDS:
        raise Invalid(f"party_kind: one of {', '.join(PARTY_KINDS)}")
    return kind, party or None


@router.post("/console/appeals/{appeal_id}/{action}", response_class=HTMLResponse)
def move_appeal(
    appeal_id: RowId,
    action: Literal["accept", "answer", "close", "reassign"],
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    reply: Reply = "",
    party: Annotated[str, Form(max_length=100)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    """A button of the page: the move exactly as ``POST /api/staff/appeals/{id}/{action}``
    (permission, then scope, then the MOVES table); the page's body comes back redrawn,
    or a toast says why not."""
    user = signed.user
    try:
        require(user, Action.WORK_ON_APPEALS)
        access.scoped(db, user, appeal_id)  # 404 outside the area, as the API
        kind, party_id = _party(party) if action == "reassign" else (None, None)
        appeal = lifecycle.move(
            db,
            appeal_id,
            action,
            lifecycle.MoveIn(reply or None, kind, party_id, note.strip() or None),
            actor=user.username,
            now=st.clock(),
        )
        db.commit()
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    context = {**_context(request, db, appeal), "done": action}
    return render(request, "partials/appeal_body.html", context, signed=signed)
