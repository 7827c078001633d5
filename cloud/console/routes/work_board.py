"""The work-orders board (工单看板): per department, a column per state, overdue first,
with the moves the API offers (accept, start, done, verify) as buttons.

In each column: orders past their deadline (a playbook's ``due_at``) first, most overdue
first; then those with a deadline, the nearest first; then those without one (whistled or
dispatched by hand), oldest first."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
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
DONE = (WorkOrderStatus.DONE, WorkOrderStatus.VERIFYING, WorkOrderStatus.VERIFIED)

OrderId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@dataclass(frozen=True)
class Lane:
    """One department's row of the board: its orders per state, oldest first."""

    department: str
    name: str
    columns: dict[str, list[m.WorkOrder]]


def urgency(wo: m.WorkOrder, now: datetime) -> tuple[int, datetime, int]:
    """The board's order: overdue, then due, then undated (oldest first)."""
    if wo.due_at is None:
        return 2, wo.created_at, wo.id
    return (0 if wo.due_at <= now and wo.status not in DONE else 1), wo.due_at, wo.id


def board(db: Session, user: m.User, now: datetime) -> list[Lane]:
    rows = sorted(
        db.scalars(
            select(m.WorkOrder)
            .where(auth.scope_clause(user, m.WorkOrder))
            .order_by(m.WorkOrder.created_at, m.WorkOrder.id)
            .limit(LIMIT)
        ),
        key=lambda wo: urgency(wo, now),
    )
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


def _board_values(db: Session, user: m.User, now: datetime) -> dict[str, object]:
    return {
        "lanes": board(db, user, now),
        "states": [s.value for s in STATES],
        "next": NEXT,
        "overdue": lambda wo: wo.due_at is not None and wo.due_at <= now and wo.status not in DONE,
    }


@router.get("/work-orders", response_class=HTMLResponse)
def work_orders_page(request: Request, db: DB, signed: Signed, st: State) -> HTMLResponse:
    """The board."""
    values = _board_values(db, signed.user, st.clock())
    return render(request, "work_orders.html", values, signed=signed)


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
    values = _board_values(db, user, st.clock())
    return render(request, "partials/board.html", values, signed=signed)
