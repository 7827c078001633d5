"""The work-orders board (工单看板): per department, a column per state, oldest first,
with the moves the API offers (accept, start, done, verify) as buttons.

A work order has no deadline column (cloud/db/models.py WorkOrder: created_at and
updated_at only), so "overdue first" is approximated by age: the oldest open order
of each column comes first, with its age shown."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import auth, work_orders
from cloud.api.deps import DB, State
from cloud.api.params import MAX_DB_INT
from cloud.console.routes.page_errors import status_of, t_of, toast
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m
from cloud.errors import DomainError
from cloud.permissions import Action, require
from cloud.work_orders import MOVES, WorkOrderStatus

router = APIRouter()
LIMIT = 500  # orders on the board at once
STATES = tuple(WorkOrderStatus)
# the move each state offers next (the API's: cloud/api/routes/work_orders.py act)
NEXT: dict[str, tuple[str, ...]] = {
    s.value: tuple(a for a, (froms, _to) in MOVES.items() if s in froms) for s in STATES
}
NEXT[WorkOrderStatus.DONE.value] += ("verify",)
NEXT[WorkOrderStatus.VERIFYING.value] += ("verify",)
NONE_DEPARTMENT = ""  # orders not sent to any department yet

OrderId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@dataclass(frozen=True)
class Lane:
    """One department's row of the board: its orders per state, oldest first."""

    department: str
    name: str
    columns: dict[str, list[m.WorkOrder]]


def board(db: Session, user: m.User) -> list[Lane]:
    rows = db.scalars(
        select(m.WorkOrder)
        .where(auth.scope_clause(user, m.WorkOrder))
        .order_by(m.WorkOrder.created_at, m.WorkOrder.id)
        .limit(LIMIT)
    ).all()
    names = {d.id: d.name for d in db.scalars(select(m.Department))}
    lanes: dict[str, dict[str, list[m.WorkOrder]]] = defaultdict(
        lambda: {s.value: [] for s in STATES}
    )
    for wo in rows:
        lanes[wo.department or NONE_DEPARTMENT].setdefault(wo.status, []).append(wo)
    return [
        Lane(dep, names.get(dep, dep), columns)
        for dep, columns in sorted(lanes.items(), key=lambda kv: kv[0])
    ]


def _board_values(db: Session, user: m.User) -> dict[str, object]:
    return {"lanes": board(db, user), "states": [s.value for s in STATES], "next": NEXT}


@router.get("/work-orders", response_class=HTMLResponse)
def work_orders_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The board."""
    return render(request, "work_orders.html", _board_values(db, signed.user), signed=signed)


@router.post("/console/work-orders/{work_order_id}/{action}", response_class=HTMLResponse)
def move_order(
    work_order_id: OrderId,
    action: Literal["accept", "start", "done", "verify"],
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
) -> HTMLResponse:
    """A board button: the move, exactly as ``POST /api/work-orders/{id}/{action}``; the
    board comes back redrawn (the order changed column)."""
    user = signed.user
    try:
        require(user, Action.WORK_ON_ORDERS)
        work_orders.scoped(db, user, work_order_id)  # 404 outside the area, as the API
        if action == "verify":
            if st.commands is None:
                return toast(request, signed, t_of(request)("work_orders.no_broker"), status=503)
            _wo, path, command = work_orders.request_verification(
                db, work_order_id, actor=user.username, now=st.clock()
            )
            db.commit()
            st.commands.send(path, command)  # after the commit, so the reply finds the order
        else:
            work_orders.move(db, work_order_id, action, actor=user.username, now=st.clock())
            db.commit()
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    st.notifier.notify()
    return render(request, "partials/board.html", _board_values(db, user), signed=signed)
