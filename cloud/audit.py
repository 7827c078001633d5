"""The general audit log: actions on users and their sessions, which belong to no alert
(an alert's own log is cloud/alerts/audit.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cloud.db import models as m


def record(
    session: Session, *, actor: str, action: str, target: str, at: datetime, note: str | None = None
) -> m.AuditEntry:
    """Append one audit row, e.g. ``record(s, actor="admin", action="user_deactivated",
    target="user:42", at=now)``; it commits with the change it records."""
    row = m.AuditEntry(actor=actor, action=action, target=target, at=at, note=note)
    session.add(row)
    return row
