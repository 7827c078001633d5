from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, CurrentUser, allowed
from cloud.api.params import RowIdFilter, StoredTime
from cloud.api.responses import AUTHED, documented
from cloud.api.schemas import DeadLetterOut, EventOut, ReadingOut
from cloud.db import models as m
from cloud.permissions import Action

router = APIRouter(prefix="/api", tags=["events and readings"])
Limit = Annotated[int, Query(ge=1, le=5000)]
# a time with an offset (...Z, +08:00), within what the database stores; else 422
When = StoredTime | None


@router.get("/events", response_model=list[EventOut], responses=documented(*AUTHED))
def events(
    db: DB,
    user: CurrentUser,
    kind: str | None = None,
    alert_id: RowIdFilter = None,
    since: When = None,
    until: When = None,
    limit: Limit = 100,
) -> list[EventOut]:
    """Events in your area, newest first."""
    stmt = select(m.EventRow).where(auth.scope_clause(user, m.EventRow))
    if kind:
        stmt = stmt.where(m.EventRow.kind == kind)
    if alert_id is not None:
        stmt = stmt.where(m.EventRow.alert_id == alert_id)
    if since:
        stmt = stmt.where(m.EventRow.ts >= since)
    if until:
        stmt = stmt.where(m.EventRow.ts < until)
    return [
        EventOut.model_validate(r)
        for r in db.scalars(stmt.order_by(m.EventRow.ts.desc()).limit(limit))
    ]


@router.get("/readings", response_model=list[ReadingOut], responses=documented(*AUTHED))
def readings(
    db: DB,
    user: CurrentUser,
    gateway: str,
    sensor: str,
    since: When = None,
    until: When = None,
    limit: Limit = 1000,
) -> list[ReadingOut]:
    """One sensor's time series (uses the device+time index), newest first."""
    stmt = select(m.ReadingRow).where(
        auth.scope_clause(user, m.ReadingRow),
        m.ReadingRow.gateway == gateway,
        m.ReadingRow.sensor == sensor,
    )
    if since:
        stmt = stmt.where(m.ReadingRow.ts >= since)
    if until:
        stmt = stmt.where(m.ReadingRow.ts < until)
    return [
        ReadingOut.model_validate(r)
        for r in db.scalars(stmt.order_by(m.ReadingRow.ts.desc()).limit(limit))
    ]


@router.get("/dead-letters", response_model=list[DeadLetterOut], responses=documented(*AUTHED, 403))
def dead_letters(
    db: DB,
    user: Annotated[m.User, allowed(Action.READ_DEAD_LETTERS)],
    gateway: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    """Rejected messages with their reasons, newest first (district engineers and admins:
    a reject may come from a gateway nobody registered, so it has no place)."""
    stmt = select(m.DeadLetter)
    if gateway:
        stmt = stmt.where(m.DeadLetter.gateway == gateway)
    rows = db.scalars(stmt.order_by(m.DeadLetter.pk.desc()).limit(limit))
    return [
        DeadLetterOut(
            id=r.pk,
            received_at=r.received_at,
            topic=r.topic,
            gateway=r.gateway,
            reason=r.reason,
            field=r.field,
            size=len(r.payload or b""),
            preview=(r.payload or b"")[:200].decode("utf-8", "replace"),
            count=r.count or 1,
            last_seen=r.last_seen or r.received_at,
        )
        for r in rows
    ]
