"""Governance items (治理事项): hotspots that stand for the compound to govern
(cloud/warning/hotspots.py) — ``GET /api/governance`` lists those in your area with
their history, ``POST /api/governance/{item_id}/close`` closes one with a note."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from cloud import auth
from cloud.api.deps import DB, CurrentUser, State, allowed
from cloud.api.params import Offset, RowId
from cloud.api.responses import ACTION, AUTHED, LOOKUP, documented
from cloud.api.schemas import Page
from cloud.db import models as m
from cloud.permissions import Action
from cloud.warning import hotspots

router = APIRouter(prefix="/api/governance", tags=["governance"])


class HistoryOut(BaseModel):
    alert_id: int
    opened_at: datetime


class GovernanceItemOut(BaseModel):
    id: int
    kind: str
    community: str
    compound: str
    building: str | None
    status: str
    opened_at: datetime
    last_seen: datetime
    count: int = Field(description="alerts in the history")
    closed_at: datetime | None
    closed_by: str | None
    close_note: str | None
    history: list[HistoryOut] = Field(description="the alerts, oldest first")


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000, description="what was done, and why")


def _out(item: m.GovernanceItem, history: list[hotspots.HistoryEntry]) -> GovernanceItemOut:
    return GovernanceItemOut(
        id=item.id,
        kind=item.kind,
        community=item.community,
        compound=item.compound,
        building=item.building,
        status=item.status,
        opened_at=item.opened_at,
        last_seen=item.last_seen,
        count=item.count,
        closed_at=item.closed_at,
        closed_by=item.closed_by,
        close_note=item.close_note,
        history=[HistoryOut(alert_id=h.alert_id, opened_at=h.opened_at) for h in history],
    )


Id = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.get("", response_model=Page[GovernanceItemOut], responses=documented(*AUTHED))
def list_items(
    db: DB,
    user: CurrentUser,
    status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    compound: Id = None,
    kind: Id = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[GovernanceItemOut]:
    """Governance items in your area, newest first (filter by status, compound, kind)."""
    gi = m.GovernanceItem
    where = [auth.scope_clause(user, gi)]
    if status_:
        where.append(gi.status == status_)
    if compound:
        where.append(gi.compound == compound)
    if kind:
        where.append(gi.kind == kind)
    total = db.scalar(select(func.count()).select_from(gi).where(*where)) or 0
    items = list(
        db.scalars(select(gi).where(*where).order_by(gi.id.desc()).limit(limit).offset(offset))
    )
    histories = hotspots.history(db, [i.id for i in items])
    return Page(
        total=total,
        limit=limit,
        offset=offset,
        items=[_out(i, histories[i.id]) for i in items],
    )


@router.get("/{item_id}", response_model=GovernanceItemOut, responses=documented(*LOOKUP))
def get_item(item_id: RowId, db: DB, user: CurrentUser) -> GovernanceItemOut:
    """One governance item with its history."""
    item = hotspots.scoped(db, user, item_id)
    return _out(item, hotspots.history(db, [item.id])[item.id])


@router.post("/{item_id}/close", response_model=GovernanceItemOut, responses=documented(*ACTION))
def close_item(
    item_id: RowId,
    body: CloseIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.CLOSE_GOVERNANCE_ITEM)],
    st: State,
) -> GovernanceItemOut:
    """Close an open item with a note (supervisors); a later threshold crossing at the
    same place opens a new one."""
    item = hotspots.close(db, user, item_id, note=body.note, now=st.clock())
    out = _out(item, hotspots.history(db, [item.id])[item.id])
    db.commit()
    return out
