"""Suggested next steps from how similar past alerts ended: the same kind at the same
place first, then elsewhere in the compound — who resolved it, how long it took, which
department worked it and what they wrote. Offered once, when the alert opens: on the
alert's page and in its notification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.alerts.queries import RESOLVING, similar
from cloud.db import models as m

LOOKED_AT = 20  # past alerts read to find the few that ended
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class Suggestion:
    alert_id: int
    match: str  # "place" | "compound"
    resolved_by: str
    resolved_at: datetime
    took: timedelta
    department: str | None
    note: str | None

    def line(self, tz: ZoneInfo = SHANGHAI) -> str:
        """One line for people, e.g.
        ``同一位置 · 03-02 由 王师傅 处置，用时 25 分钟，部门 property：已断电``."""
        where = "同一位置" if self.match == "place" else "本小区"
        minutes = max(1, round(self.took.total_seconds() / 60))
        took = f"{minutes} 分钟" if minutes < 120 else f"{minutes / 60:.1f} 小时"
        when = self.resolved_at.astimezone(tz)
        parts = [f"{where} · {when:%m-%d} 由 {self.resolved_by} 处置，用时 {took}"]
        if self.department:
            parts.append(f"部门 {self.department}")
        text = "，".join(parts)
        return f"{text}：{self.note}" if self.note else text


def suggestions(session: Session, alert: m.Alert, limit: int = 3) -> list[Suggestion]:
    """Up to ``limit`` similar past alerts that were resolved, nearest place first."""
    ended = [s for s in similar(session, None, alert, limit=LOOKED_AT) if s.resolved_at][:limit]
    if not ended:
        return []
    ids = [s.alert.id for s in ended]
    notes: dict[int, str | None] = {}
    for alert_id, note in session.execute(
        select(m.AlertTransition.alert_id, m.AlertTransition.note)
        .where(m.AlertTransition.alert_id.in_(ids), m.AlertTransition.action.in_(RESOLVING))
        .order_by(m.AlertTransition.id)
    ):
        notes[alert_id] = note  # the latest resolution's words
    departments: dict[int, str | None] = {}
    for alert_id, department in session.execute(
        select(m.WorkOrder.alert_id, m.WorkOrder.department)
        .where(m.WorkOrder.alert_id.in_(ids))
        .order_by(m.WorkOrder.id)
    ):
        departments[alert_id] = department
    out = []
    for s in ended:
        assert s.resolved_by is not None and s.resolved_at is not None  # filtered above
        out.append(
            Suggestion(
                alert_id=s.alert.id,
                match=s.match,
                resolved_by=s.resolved_by,
                resolved_at=s.resolved_at,
                took=s.resolved_at - s.alert.opened_at,
                department=departments.get(s.alert.id),
                note=notes.get(s.alert.id),
            )
        )
    return out
