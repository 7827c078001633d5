"""Retention: readings (and their dedupe ledger rows) and dead letters age out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, func
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.db import partitions


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE and return how many rows it removed."""
    # a DML statement's result is a CursorResult (the one with rowcount); Session.execute
    # is typed with the general Result
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount or 0


def prune_readings(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete readings older than ``keep_days``; returns how many went. Events and
    alerts are records of what happened and are kept.

    On PostgreSQL whole months past the cutoff go as partitions (milliseconds, no dead
    rows left to vacuum); the rest of the cutoff's own month is deleted row by row.
    """
    cutoff = now - timedelta(days=keep_days)
    dropped = partitions.drop_months_before(session.connection(), cutoff)
    gone = dropped.rows_dropped
    gone += _deleted(session, delete(m.ReadingRow).where(m.ReadingRow.ts < cutoff))
    # a gateway never resends an item this old, so its dedupe entry can go too
    session.execute(
        delete(m.Ledger).where(m.Ledger.channel == "reading", m.Ledger.received_at < cutoff)
    )
    return gone


def prune_tokens(session: Session, *, now: datetime) -> int:
    """Forget expired API tokens."""
    return _deleted(session, delete(m.ApiToken).where(m.ApiToken.expires_at <= now))


def prune_dead_letters(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete dead letters received more than ``keep_days`` ago: a gateway that keeps
    resending a bad item would otherwise grow the table without bound."""
    cutoff = now - timedelta(days=keep_days)
    # by when each was last seen: a row still being counted stays
    last = func.coalesce(m.DeadLetter.last_seen, m.DeadLetter.received_at)
    return _deleted(session, delete(m.DeadLetter).where(last < cutoff))
