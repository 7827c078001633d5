from __future__ import annotations

from dataclasses import replace
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query

from cloud import alerts, escalation, work_orders
from cloud.api.deps import DB, CurrentUser, State, allowed
from cloud.api.params import Offset, RowId, StoredTime
from cloud.api.responses import ACTION, AUTHED, LOOKUP, documented
from cloud.api.schemas import (
    AlertDetail,
    AlertOut,
    BulkIn,
    BulkOut,
    BulkResultOut,
    BulkVerdictIn,
    CommentIn,
    CountsOut,
    DeliveryAttemptOut,
    DispatchIn,
    NoteIn,
    NotificationOut,
    Page,
    ResponseOut,
    SimilarOut,
    TransitionOut,
    VerdictIn,
    WorkOrderOut,
)
from cloud.db import models as m
from cloud.permissions import Action
from cloud.response.deliveries import delivery_log

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


def _filter(
    status: Annotated[list[str] | None, Query(description="repeat for several")] = None,
    kind: Annotated[list[str] | None, Query(description="repeat for several")] = None,
    community: str | None = None,
    compound: str | None = None,
    building: str | None = None,
    min_severity: Annotated[int, Query(ge=1, le=3)] = 1,
    since: Annotated[StoredTime | None, Query(description="opened at or after")] = None,
    until: Annotated[StoredTime | None, Query(description="opened before")] = None,
    reviewed: Annotated[
        bool | None, Query(description="true: with a verdict; false: without one yet")
    ] = None,
) -> alerts.AlertFilter:
    return alerts.AlertFilter(
        statuses=tuple(status or ()),
        kinds=tuple(kind or ()),
        min_severity=min_severity,
        community=community,
        compound=compound,
        building=building,
        since=since,
        until=until,
        reviewed=reviewed,
    )


Filter = Annotated[alerts.AlertFilter, Depends(_filter)]


@router.get("", response_model=Page[AlertOut], responses=documented(*AUTHED))
def list_alerts(
    db: DB,
    user: CurrentUser,
    flt: Filter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[AlertOut]:
    """Alerts in your area, newest change first; filter by status, kind, place,
    severity, when opened (since ≤ opened_at < until) and whether reviewed (a verdict)."""
    total, rows = alerts.list_alerts(db, user, replace(flt, limit=limit, offset=offset))
    return Page(
        total=total, limit=limit, offset=offset, items=[AlertOut.model_validate(r) for r in rows]
    )


@router.get("/counts", response_model=CountsOut, responses=documented(*AUTHED))
def alert_counts(db: DB, user: CurrentUser, flt: Filter) -> CountsOut:
    """How many alerts in your area match the filters (those of GET /api/alerts), by
    status and severity, and how many have no verdict yet."""
    c = alerts.counts(db, user, flt)
    return CountsOut(
        total=c.total,
        by_status=c.by_status,
        by_severity={str(k): v for k, v in sorted(c.by_severity.items())},
        unreviewed=c.unreviewed,
    )


@router.get("/{alert_id}", response_model=AlertDetail, responses=documented(*LOOKUP))
def get_alert(alert_id: RowId, db: DB, user: CurrentUser) -> AlertDetail:
    """One alert with its audit log."""
    alert = alerts.scoped_alert(db, user, alert_id)
    return AlertDetail(
        **AlertOut.model_validate(alert).model_dump(),
        transitions=[TransitionOut.model_validate(t) for t in alerts.timeline(db, alert_id)],
    )


@router.get("/{alert_id}/similar", response_model=list[SimilarOut], responses=documented(*LOOKUP))
def similar_alerts(
    alert_id: RowId,
    db: DB,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[SimilarOut]:
    """Past alerts of the same kind: at the same device or building first, then in the
    rest of the compound, newest first, each with how it ended."""
    alert = alerts.scoped_alert(db, user, alert_id)
    return [
        SimilarOut(
            **AlertOut.model_validate(s.alert).model_dump(),
            match=s.match,
            resolved_by=s.resolved_by,
            resolved_at=s.resolved_at,
        )
        for s in alerts.similar(db, user, alert, limit=limit)
    ]


@router.get("/{alert_id}/response", response_model=ResponseOut, responses=documented(*LOOKUP))
def alert_response(alert_id: RowId, db: DB, user: CurrentUser) -> ResponseOut:
    """What the playbooks did when the alert opened: suggested steps, how similar alerts
    ended, each notification's state and every delivery attempt (status, latency, error)."""
    alert = alerts.scoped_alert(db, user, alert_id)
    run = db.get(m.ResponseRun, alert.id)
    notifications, attempts = delivery_log(db, alert.id)
    return ResponseOut(
        playbooks=[p for p in run.playbooks.split(",") if p] if run else [],
        applied_at=run.at if run else None,
        next_steps=list(run.next_steps) if run else [],
        suggestions=list(run.suggestions) if run else [],
        work_order_id=run.work_order_id if run else None,
        notifications=[NotificationOut.model_validate(n) for n in notifications],
        attempts=[DeliveryAttemptOut.model_validate(a) for a in attempts],
    )


Out = TypeVar("Out")


def _committed(db: DB, st: State, out: Out) -> Out:
    """Commit the action (its response already read from the rows) and wake the stream."""
    db.commit()
    st.notifier.notify()
    return out


def _results(outcomes: list[alerts.Outcome]) -> BulkOut:
    return BulkOut(
        results=[BulkResultOut.model_validate(o, from_attributes=True) for o in outcomes]
    )


# before the /{alert_id}/... routes, which would take "bulk" for an id
@router.post("/bulk/acknowledge", response_model=BulkOut, responses=documented(*ACTION))
def bulk_acknowledge(
    body: BulkIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.ACKNOWLEDGE_ALERT)],
    st: State,
) -> BulkOut:
    """Acknowledge up to 200 alerts, each on its own: the answer says per id whether it
    was done, or why not (not_found, also for an alert outside your area; conflict)."""
    outcomes = alerts.bulk_acknowledge(db, user, body.ids, now=st.clock(), note=body.note)
    return _committed(db, st, _results(outcomes))


@router.post("/bulk/verdict", response_model=BulkOut, responses=documented(*ACTION))
def bulk_verdict(
    body: BulkVerdictIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.GIVE_VERDICT)],
    st: State,
) -> BulkOut:
    """The same verdict on up to 200 alerts, each on its own (see bulk/acknowledge)."""
    outcomes = alerts.bulk_verdict(db, user, body.ids, body.verdict, now=st.clock(), note=body.note)
    return _committed(db, st, _results(outcomes))


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=documented(*ACTION))
def acknowledge(
    alert_id: RowId,
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.ACKNOWLEDGE_ALERT)],
    st: State,
) -> AlertOut:
    """open → acknowledged (stops escalation); 409 from any other state."""
    alerts.scoped_alert(db, user, alert_id)
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
    alerts.scoped_alert(db, user, alert_id)
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
    alerts.scoped_alert(db, user, alert_id)
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
    alerts.scoped_alert(db, user, alert_id)
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
    alerts.scoped_alert(db, user, alert_id)
    row = alerts.comment(db, alert_id, actor=user.username, now=st.clock(), note=body.note)
    db.flush()
    return _committed(db, st, TransitionOut.model_validate(row))


@router.post("/{alert_id}/verdict", response_model=AlertOut, responses=documented(*ACTION))
def verdict(
    alert_id: RowId,
    body: VerdictIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.GIVE_VERDICT)],
    st: State,
) -> AlertOut:
    """Say whether the alert was real (confirmed) or a false_positive, in any state; a
    later verdict replaces this one (the log keeps both)."""
    alert = alerts.scoped_alert(db, user, alert_id)
    alerts.give_verdict(
        db, alert_id, body.verdict, actor=user.username, now=st.clock(), note=body.note
    )
    return _committed(db, st, AlertOut.model_validate(alert))


@router.post("/{alert_id}/escalate", response_model=AlertOut, responses=documented(*ACTION))
def escalate(
    alert_id: RowId,
    body: NoteIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.ESCALATE_ALERT)],
    st: State,
) -> AlertOut:
    """Move an active alert one level up (building → compound → community) now; 409 at
    the community level or once it is resolved."""
    alerts.scoped_alert(db, user, alert_id)
    alert = escalation.escalate_by_hand(
        db, alert_id, actor=user.username, now=st.clock(), note=body.note
    )
    return _committed(db, st, AlertOut.model_validate(alert))
