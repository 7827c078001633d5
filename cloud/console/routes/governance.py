"""治理事项 (``/governance``): the hotspots standing for the user's area to govern — the
same kind at the same place again and again (cloud/warning/hotspots.py) — each with its
history of alerts; a supervisor closes one with a note, exactly as
``POST /api/governance/{id}/close`` (permission, then scope, then the guarded close)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, State
from cloud.api.params import RowId
from cloud.console.routes.page_errors import status_of, toast
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m
from cloud.errors import DomainError, Invalid
from cloud.permissions import Action, require
from cloud.warning import hotspots

router = APIRouter()
SHOWN = 200  # open items first, then the latest closed, at most this many


def _context(db: DB, user: m.User) -> dict[str, Any]:
    gi = m.GovernanceItem
    items = list(
        db.scalars(
            select(gi)
            .where(auth.scope_clause(user, gi))
            .order_by((gi.status == hotspots.OPEN).desc(), gi.last_seen.desc(), gi.id.desc())
            .limit(SHOWN)
        )
    )
    return {"items": items, "histories": hotspots.history(db, [i.id for i in items])}


@router.get("/governance", response_class=HTMLResponse)
def governance_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """Open items first (newest activity first), each with its alerts."""
    return render(request, "governance.html", _context(db, signed.user), signed=signed)


@router.post("/console/governance/{item_id}/close", response_class=HTMLResponse)
def close_item(
    item_id: RowId,
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse:
    """The close form: the list comes back redrawn, or a toast says why not."""
    user = signed.user
    try:
        require(user, Action.CLOSE_GOVERNANCE_ITEM)
        if not note.strip():
            raise Invalid("请写明处置情况再关闭（note）")
        hotspots.close(db, user, item_id, note=note.strip(), now=st.clock())
        db.commit()
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    return render(request, "partials/governance_list.html", _context(db, user), signed=signed)
