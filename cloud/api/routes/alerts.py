from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from cloud import alerts, auth, work_orders
from cloud.api.deps import DB, CurrentUser, State, allowed
from cloud.api.params import Offset, RowId
from cloud.api.responses import ACTION, AUTHED, LOOKUP, documented
from cloud.api.schemas import (
    AlertDetail,
    AlertOut,
    CommentIn,
    DispatchIn,
    NoteIn,
    Page,
    TransitionOut,
    WorkOrderOut,
)
from cloud.db import models as m
from cloud.permissions import Action

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


def _scoped(db: DB, user: m.User, alert_id: int) -> m.Alert:
    alert = alerts.get_alert(db, alert_id)
    auth.require_place(user, alert.community, alert.compound, alert.building, f"alert {alert_id}")
    return alert


@router.get("", response_model=Page[AlertOut], responses=documented(*AUTHED))
def list_alerts(
    db: DB,
    user: CurrentUser,
    status: Annotated[list[str] | None, Query()] = None,
    kind: str | None = None,
    community: str | None = None,
    compound: str | None = None,
    building: str | None = None,
    min_severity: Annotated[int, Query(ge=1, le=3)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[AlertOut]:
    """Alerts in your area, newest first; filter by status, kind, place, severity."""
    where = [auth.scope_clause(user, m.Alert), m.Alert.severity >= min_severity]
    if status:
        where.append(m.Alert.status.in_(status))
    for column, value in (
        (m.Alert.kind, kind),
        (m.Alert.community, community),
        (m.Alert.compound, compound),
        (m.Alert.building, building),
    ):
        if value is not None:
            where.append(column == value)
    total = db.scalar(select(func.count()).select_from(m.Alert).where(*where)) or 0
    rows = db.scalars(
        select(m.Alert)
        .where(*where)
        .order_by(m.Alert.updated_at.desc(), m.Alert.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return Page(
        total=total, limit=limit, offset=offset, items=[AlertOut.model_validate(r) for r in rows]
    )


@router.get("/{alert_id}", response_model=AlertDetail, responses=documented(*LOOKUP))
def get_alert(alert_id: RowId, db: DB, user: CurrentUser) -> AlertDetail:
    """One alert with its audit log."""
    alert = _scoped(db, user, alert_id)
    log = db.scalars(
        select(m.AlertTransition)
        .where(m.AlertTransition.alert_id == alert_id)
        .order_by(m.AlertTransition.id)
    ).all()
    return AlertDetail(
        **AlertOut.model_validate(alert).model_dump(),
        transitions=[TransitionOut.model_validate(t) for t in log],
    )


Out = TypeVar("Out")


def _committed(db: DB, st: State, out: Out) -> Out:
    """Commit the action (its response already read from the rows) and wake the stream."""
    db.commit()
    st.notifier.notify()
    return out


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=documented(*ACTION))
def acknowledge(
    alert_id: RowId,
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.ACKNOWLEDGE_ALERT)],
    st: State,
) -> AlertOut:
    """open → acknowledged (stops escalation); 409 from any other state."""
    _scoped(db, user, alert_id)
    alert = alerts.acknowledge(db, alert_id, actor=user.username, now=st.clock(), note=body.note)
    return _committed(db, st, AlertOut.model_validate(alert))


@router.post("/{alert_id}/dispatch", response_model=WorkOrderOut, responses=documented(*ACTION))
def dispatch(
    alert_id: RowId,
    body: DispatchIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.DISPATCH_ALERT)],
    st: State,
) -> WorkOrderOut:
    """Send a work order to a department (default: the one for the alert's kind)."""
    _scoped(db, user, alert_id)
    wo = work_orders.dispatch(
        db,
        alert_id,
        actor=user.username,
        now=st.clock(),
        department=body.department,
        note=body.note,
    )
    return _committed(db, st, WorkOrderOut.model_validate(wo))


@router.post("/{alert_id}/resolve", response_model=AlertOut, responses=documented(*ACTION))
def resolve(
    alert_id: RowId,
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.RESOLVE_ALERT)],
    st: State,
) -> AlertOut:
    """Mark the condition handled."""
    _scoped(db, user, alert_id)
    alert = alerts.resolve(db, alert_id, actor=user.username, now=st.clock(), note=body.note)
    return _committed(db, st, AlertOut.model_validate(alert))


@router.post("/{alert_id}/close", response_model=AlertOut, responses=documented(*ACTION))
def close(
    alert_id: RowId,
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.CLOSE_ALERT)],
    st: State,
) -> AlertOut:
    """resolved → closed (supervisors)."""
    _scoped(db, user, alert_id)
    alert = alerts.close(db, alert_id, actor=user.username, now=st.clock(), note=body.note)
    return _committed(db, st, AlertOut.model_validate(alert))


@router.post("/{alert_id}/comment", response_model=TransitionOut, responses=documented(*ACTION))
def comment(
    alert_id: RowId,
    body: CommentIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.COMMENT_ALERT)],
    st: State,
) -> TransitionOut:
    """Add a note to the alert's log."""
    _scoped(db, user, alert_id)
    row = alerts.comment(db, alert_id, actor=user.username, now=st.clock(), note=body.note)
    db.flush()
    return _committed(db, st, TransitionOut.model_validate(row))
