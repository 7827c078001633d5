from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from cloud import auth, work_orders
from cloud.api.deps import DB, CurrentUser, State, allowed
from cloud.api.params import Offset, RowId
from cloud.api.responses import ACTION, AUTHED, LOOKUP, documented
from cloud.api.schemas import NoteIn, Page, WorkOrderOut
from cloud.db import models as m
from cloud.permissions import Action

router = APIRouter(prefix="/api/work-orders", tags=["work orders"])


@router.get("", response_model=Page[WorkOrderOut], responses=documented(*AUTHED))
def list_work_orders(
    db: DB,
    user: CurrentUser,
    status_: Annotated[str | None, Query(alias="status")] = None,
    department: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[WorkOrderOut]:
    """Work orders in your area."""
    where = [auth.scope_clause(user, m.WorkOrder)]
    if status_:
        where.append(m.WorkOrder.status == status_)
    if department:
        where.append(m.WorkOrder.department == department)
    total = db.scalar(select(func.count()).select_from(m.WorkOrder).where(*where)) or 0
    rows = db.scalars(
        select(m.WorkOrder)
        .where(*where)
        .order_by(m.WorkOrder.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page(
        total=total,
        limit=limit,
        offset=offset,
        items=[WorkOrderOut.model_validate(r) for r in rows],
    )


@router.get("/{work_order_id}", response_model=WorkOrderOut, responses=documented(*LOOKUP))
def get_work_order(work_order_id: RowId, db: DB, user: CurrentUser) -> WorkOrderOut:
    return WorkOrderOut.model_validate(work_orders.scoped(db, user, work_order_id))


@router.post(
    "/{work_order_id}/{action}", response_model=WorkOrderOut, responses=documented(*ACTION, 503)
)
def act(
    work_order_id: RowId,
    action: Literal["accept", "start", "done", "verify"],
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.WORK_ON_ORDERS)],
    st: State,
) -> WorkOrderOut:
    """accept / start / done; verify sends the gateway a recheck and closes the order
    only if the condition is gone (otherwise it reopens)."""
    work_orders.scoped(db, user, work_order_id)
    if action == "verify":
        if st.commands is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "no broker connection to send the recheck"
            )
        wo, path, command = work_orders.request_verification(
            db, work_order_id, actor=user.username, now=st.clock()
        )
        out = WorkOrderOut.model_validate(wo)
        db.commit()
        st.commands.send(path, command)  # after the commit, so the reply finds the order
        return out
    wo = work_orders.move(
        db, work_order_id, action, actor=user.username, now=st.clock(), note=body.note
    )
    out = WorkOrderOut.model_validate(wo)
    db.commit()
    return out
