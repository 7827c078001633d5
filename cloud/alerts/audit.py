"""The alert audit log: who changed what, when, and why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cloud.db import models as m


def record(
    session: Session,
    alert: m.Alert,
    action: str,
    *,
    from_status: str | None,
    actor: str,
    at: datetime,
    note: str | None = None,
) -> m.AlertTransition:
    """Append one audit row; ``to_status`` is the alert's status after the change."""
    row = m.AlertTransition(
        alert_id=alert.id,
        action=action,
        from_status=from_status,
        to_status=alert.status,
        actor=actor,
        at=at,
        note=note,
    )
    session.add(row)
    return row
