"""Fusion links: ``GET /api/alerts/{id}/links``, the alerts a fusion rule linked with an
alert (cloud/fusion), each with the rule, its reason and when it was linked. An alert
outside the caller's area answers the same 404 as one that does not exist."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import Field

from cloud import alerts, fusion
from cloud.api.deps import DB, CurrentUser
from cloud.api.params import RowId
from cloud.api.responses import LOOKUP, documented
from cloud.api.schemas import AlertOut, Out

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class LinkOut(Out):
    """An alert linked with the one asked about, and why."""

    rule: str = Field(description="the fusion rule's id (configs/fusion.yaml)")
    reason: str = Field(description="the rule's reason, as both alerts' logs say it")
    raised_to: int | None = Field(description="the severity the rule raised both to, if any")
    linked_at: datetime
    alert: AlertOut


@router.get("/{alert_id}/links", response_model=list[LinkOut], responses=documented(*LOOKUP))
def alert_links(alert_id: RowId, db: DB, user: CurrentUser) -> list[LinkOut]:
    """The alerts related to this one in place and time (关联告警), oldest link first."""
    alerts.scoped_alert(db, user, alert_id)
    return [
        LinkOut(
            rule=ln.link.rule,
            reason=ln.link.reason,
            raised_to=ln.link.raised_to,
            linked_at=ln.link.created_at,
            alert=AlertOut.model_validate(ln.alert),
        )
        for ln in fusion.links_of(db, user, alert_id)
    ]
