"""Retention: readings (and their dedupe ledger rows) and dead letters age out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlalchemy.orm import Session

from cloud.db import models as m


def prune_readings(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete readings older than ``keep_days``; returns how many went. Events and
    alerts are records of what happened and are kept."""
    cutoff = now - timedelta(days=keep_days)
    gone = session.execute(delete(m.ReadingRow).where(m.ReadingRow.ts < cutoff)).rowcount
    # a gateway never resends an item this old, so its dedupe entry can go too
    session.execute(delete(m.Ledger).where(m.Ledger.channel == "reading", m.Ledger.received_at < cutoff))
    return gone or 0


def prune_tokens(session: Session, *, now: datetime) -> int:
    """Forget expired API tokens."""
    return session.execute(delete(m.ApiToken).where(m.ApiToken.expires_at <= now)).rowcount or 0


def prune_dead_letters(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete dead letters received more than ``keep_days`` ago: a gateway that keeps
    resending a bad item would otherwise grow the table without bound."""
    cutoff = now - timedelta(days=keep_days)
    # by when each was last seen: a row still being counted stays
    last = func.coalesce(m.DeadLetter.last_seen, m.DeadLetter.received_at)
    return session.execute(delete(m.DeadLetter).where(last < cutoff)).rowcount or 0
