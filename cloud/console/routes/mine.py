"""My open items (我的待办): the alerts this user acknowledged that are not yet resolved
or closed, oldest acknowledgement first: the shift's hand-over list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.api.deps import DB
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m

router = APIRouter()
DONE = ("resolved", "closed")  # statuses that take an alert off the hand-over list
ACKNOWLEDGED = "acknowledged"  # the alert log's action (cloud.alerts.lifecycle.Action)
LIMIT = 500


@dataclass(frozen=True)
class OpenItem:
    """An alert still open, and when this user acknowledged it (their first time)."""

    alert: m.Alert
    acknowledged_at: datetime


def open_items(db: Session, user: m.User) -> list[OpenItem]:
    """What ``user`` acknowledged and nobody has resolved or closed since, within their
    scope (a user moved to another node no longer sees their old area's alerts)."""
    acked = (
        select(
            m.AlertTransition.alert_id.label("alert_id"),
            func.min(m.AlertTransition.at).label("at"),
        )
        .where(
            m.AlertTransition.actor == user.username,
            m.AlertTransition.action == ACKNOWLEDGED,
        )
        .group_by(m.AlertTransition.alert_id)
        .subquery()
    )
    rows = db.execute(
        select(m.Alert, acked.c.at)
        .join(acked, acked.c.alert_id == m.Alert.id)
        .where(auth.scope_clause(user, m.Alert), m.Alert.status.not_in(DONE))
        .order_by(acked.c.at, m.Alert.id)
        .limit(LIMIT)
    ).all()
    return [OpenItem(alert, at) for alert, at in rows]


@router.get("/mine", response_class=HTMLResponse)
def mine_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The hand-over list."""
    return render(request, "mine.html", {"items": open_items(db, signed.user)}, signed=signed)
