"""Shift handovers (交接班): ``GET /api/handovers?desk=&limit=`` (newest first) and
``GET /api/handovers/{id}`` (with its lists), of the desks whose place lies within the
caller's node (cloud/awareness/handover.py makes them at each shift start)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from cloud.api.deps import DB, CurrentUser
from cloud.api.params import RowId
from cloud.api.responses import AUTHED, LOOKUP, documented
from cloud.awareness.handover import visible
from cloud.db import models as m
from cloud.errors import NotFound

router = APIRouter(prefix="/api/handovers", tags=["awareness"])


class HandoverSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    desk: str
    desk_name: str
    community: str | None
    compound: str | None
    shift_start: datetime
    previous_start: datetime
    made_at: datetime
    counts: dict[str, int]

    @classmethod
    def of(cls, row: m.ShiftHandover) -> HandoverSummary:
        return cls.model_validate(
            {
                **{k: getattr(row, k) for k in cls.model_fields if k != "counts"},
                "counts": row.body.get("counts", {}),
            }
        )


class HandoverOut(HandoverSummary):
    lists: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, row: m.ShiftHandover) -> HandoverOut:
        base = HandoverSummary.of(row).model_dump()
        return cls.model_validate({**base, "lists": row.body.get("lists", {})})


@router.get("", response_model=list[HandoverSummary], responses=documented(*AUTHED))
def list_handovers(
    db: DB,
    user: CurrentUser,
    desk: Annotated[str | None, Query(max_length=64, description="one desk's id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[HandoverSummary]:
    """Handovers of your area's desks, newest shift first: the counts of open, new,
    overdue, escalated and acknowledged-but-open alerts (the lists: by id)."""
    query = select(m.ShiftHandover).where(visible(user))
    if desk is not None:
        query = query.where(m.ShiftHandover.desk == desk)
    rows = db.scalars(
        query.order_by(m.ShiftHandover.shift_start.desc(), m.ShiftHandover.id.desc()).limit(limit)
    )
    return [HandoverSummary.of(r) for r in rows]


@router.get("/{handover_id}", response_model=HandoverOut, responses=documented(*LOOKUP))
def get_handover(handover_id: RowId, db: DB, user: CurrentUser) -> HandoverOut:
    """One handover with its lists (another area's reads as not existing)."""
    row = db.scalar(select(m.ShiftHandover).where(m.ShiftHandover.id == handover_id, visible(user)))
    if row is None:
        raise NotFound(f"handover {handover_id} does not exist")
    return HandoverOut.of(row)
