"""The daily report on a schedule: at the report hour (``report_at``, 07:00 Asia/Shanghai
by default) each desk's report of yesterday is computed and its numbers stored as JSON
in ``daily_reports``, unique per (desk, day), so every process may run :func:`run` and
each desk gets one report a day (the first insert wins; a loser counts it).

What is stored is :meth:`DailyReport.to_json`; HTML and PDF are rendered on download
from that JSON (:func:`cloud.awareness.report.report_from_json`), so a download shows
the numbers as they were at the report hour — later acknowledgements or a late-arriving
alert do not change a filed report. Devices alive are those at the report hour.

A report missed at 07:00 (the cloud was down) is made when the cloud comes back the same
day; days further back are not filled in (ask the API for them: it computes any day).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from prometheus_client import Counter, Histogram
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.db import models as m
from cloud.db import transaction

from .report import daily_report
from .shifts import AwarenessConfig, Desk, report_due

log = logging.getLogger(__name__)

REPORTS = Counter(
    "mb_daily_reports_total",
    "scheduled daily reports by outcome: made, lost (another process inserted it first)",
    ["outcome"],
)
REPORT_SECONDS = Histogram(
    "mb_daily_report_seconds",
    "seconds to compute one desk's scheduled daily report",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60),
)


@dataclass(slots=True)
class ReportRun:
    """What one :func:`run` did: the day (None before the report hour) and desk ids."""

    day: date | None
    made: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def _exists(session: Session, desk: Desk, day: date) -> bool:
    return (
        session.scalar(
            select(m.StoredDailyReport.id).where(
                m.StoredDailyReport.desk == desk.id, m.StoredDailyReport.day == day
            )
        )
        is not None
    )


def make(
    factory: sessionmaker[Session], desk: Desk, day: date, now: datetime, config: AwarenessConfig
) -> bool:
    """Compute and store ``desk``'s report of ``day``; False when its row is there
    already (the unique constraint decides between processes)."""
    with factory() as s, REPORT_SECONDS.time():
        body = daily_report(s, desk.scope, day, config.tz, now=now).to_json()
    try:
        with transaction(factory) as s:
            s.add(
                m.StoredDailyReport(
                    desk=desk.id,
                    desk_name=desk.name,
                    community=desk.community,
                    compound=desk.compound,
                    building=None,
                    day=day,
                    made_at=now,
                    body=body,
                )
            )
    except IntegrityError:
        return False
    return True


def run(factory: sessionmaker[Session], now: datetime, config: AwarenessConfig) -> ReportRun:
    """The scheduler's step: once the report hour has come, store each desk's report of
    yesterday unless it is stored already. Call it every minute: before the hour and once
    the day's reports are made it is one small query per desk."""
    out = ReportRun(report_due(config, now))
    if out.day is None:
        return out
    for desk in config.desks:
        with factory() as s:
            if _exists(s, desk, out.day):
                out.present.append(desk.id)
                continue
        if make(factory, desk, out.day, now, config):
            out.made.append(desk.id)
            REPORTS.labels("made").inc()
            log.info("daily report of %s made for desk %s", out.day.isoformat(), desk.id)
        else:
            out.lost.append(desk.id)
            REPORTS.labels("lost").inc()
    return out


# --- reading them (API and console) --------------------------------------------------


def visible(user: m.User) -> ColumnElement[bool]:
    """Stored reports of desks whose place lies within ``user``'s node."""
    return auth.scope_clause(user, m.StoredDailyReport)


def stored(
    session: Session, user: m.User, *, desk: str | None = None, limit: int = 60
) -> list[m.StoredDailyReport]:
    """The stored reports the user may see, newest day first (then by desk name)."""
    query = select(m.StoredDailyReport).where(visible(user))
    if desk is not None:
        query = query.where(m.StoredDailyReport.desk == desk)
    return list(
        session.scalars(
            query.order_by(
                m.StoredDailyReport.day.desc(),
                m.StoredDailyReport.desk_name,
                m.StoredDailyReport.desk,
            ).limit(limit)
        )
    )


def stored_one(session: Session, user: m.User, desk: str, day: date) -> m.StoredDailyReport | None:
    """One desk's stored report of ``day``, if the user may see it."""
    return session.scalar(
        select(m.StoredDailyReport).where(
            visible(user), m.StoredDailyReport.desk == desk, m.StoredDailyReport.day == day
        )
    )
