"""The per-contact rate limit of appeals: ``max_per_contact`` per window, counted in the
database (``appeal_intake_counts``) like the login throttle, so that every cloud process
counts against the same limit and a restart forgets nothing. A window starts with a
contact's first appeal and lasts ``contact_window_s``; the appeal over the limit is
refused (429, ``Retry-After`` until the window ends) and not counted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.db import rowcount


@dataclass(frozen=True, slots=True)
class Limited:
    """The contact has used up its appeals for this window."""

    until: datetime
    retry_after_s: int

    @property
    def message(self) -> str:
        return (
            f"too many appeals from this phone; try again in {self.retry_after_s} s "
            f"(after {self.until.isoformat(timespec='seconds')})"
        )


def take(
    session: Session, key: str, *, limit: int, window_s: float, now: datetime
) -> Limited | None:
    """Count one appeal for ``key`` (a contact's HMAC), or say why not: a Limited when
    ``limit`` are counted in its current window. A guarded UPDATE counts atomically; two
    processes inserting the same new key collide on the primary key, and the loser counts
    by UPDATE after all."""
    window = timedelta(seconds=window_s)
    # a finished window is forgotten (only this key's: the scan stays on the primary key)
    session.execute(
        delete(m.AppealIntakeCount).where(
            m.AppealIntakeCount.key == key, m.AppealIntakeCount.first_at <= now - window
        )
    )
    bump = (
        update(m.AppealIntakeCount)
        .where(m.AppealIntakeCount.key == key, m.AppealIntakeCount.count < limit)
        .values(count=m.AppealIntakeCount.count + 1)
    )
    if rowcount(session.execute(bump)):
        return None
    row = session.get(m.AppealIntakeCount, key, populate_existing=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(m.AppealIntakeCount(key=key, first_at=now, count=1))
            return None
        except IntegrityError:
            if rowcount(session.execute(bump)):
                return None
            row = session.get(m.AppealIntakeCount, key, populate_existing=True)
            if row is None:  # pragma: no cover - deleted again in between
                return None
    until = row.first_at + window
    return Limited(until, max(1, math.ceil((until - now).total_seconds())))


def prune(session: Session, *, window_s: float, now: datetime) -> int:
    """Forget every finished window (the scheduler's hourly tidy-up); returns how many."""
    result = session.execute(
        delete(m.AppealIntakeCount).where(
            m.AppealIntakeCount.first_at <= now - timedelta(seconds=window_s)
        )
    )
    return rowcount(result)
