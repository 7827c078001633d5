"""Staff reads: the appeals in one's area, filtered and newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.db import models as m


@dataclass(frozen=True, slots=True)
class AppealFilter:
    statuses: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    compound: str | None = None
    building: str | None = None
    overdue_at: datetime | None = None  # only open appeals past due at this time
    escalated: bool | None = None
    limit: int = 50
    offset: int = 0


def list_appeals(session: Session, user: m.User, flt: AppealFilter) -> tuple[int, list[m.Appeal]]:
    """(how many match, one page of them), newest first, inside ``user``'s area."""
    where = [auth.scope_clause(user, m.Appeal)]
    if flt.statuses:
        where.append(m.Appeal.status.in_(flt.statuses))
    if flt.categories:
        where.append(m.Appeal.category.in_(flt.categories))
    if flt.compound is not None:
        where.append(m.Appeal.compound == flt.compound)
    if flt.building is not None:
        where.append(m.Appeal.building == flt.building)
    if flt.overdue_at is not None:
        where.append(m.Appeal.due_at <= flt.overdue_at)
        where.append(m.Appeal.status.in_(("submitted", "accepted")))
    if flt.escalated is not None:
        where.append(
            m.Appeal.escalated_at.is_not(None) if flt.escalated else m.Appeal.escalated_at.is_(None)
        )
    total = session.scalar(select(func.count()).select_from(m.Appeal).where(*where)) or 0
    rows = session.scalars(
        select(m.Appeal)
        .where(*where)
        .order_by(m.Appeal.created_at.desc(), m.Appeal.id.desc())
        .limit(flt.limit)
        .offset(flt.offset)
    ).all()
    return total, list(rows)
