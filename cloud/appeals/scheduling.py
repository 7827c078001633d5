"""The appeals' scheduler steps, run by :class:`cloud.app.Scheduler` with the others:
escalate overdue appeals (every few seconds; guarded, so several processes escalate each
one once) and forget finished rate-limit windows (hourly)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from cloud.appeals import lifecycle, throttle
from cloud.appeals.config import AppealSettings
from cloud.db import transaction


def escalate_due(factory: sessionmaker[Session], now: datetime) -> int:
    """Escalate the appeals past their deadline; returns how many this process did."""
    with transaction(factory) as session:
        return len(lifecycle.escalate_overdue(session, now=now))


def tidy(factory: sessionmaker[Session], now: datetime) -> None:
    with transaction(factory) as session:
        throttle.prune(session, window_s=AppealSettings().contact_window_s, now=now)
