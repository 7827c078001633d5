"""Apply the playbooks to alerts as they open: notifications to send, a work order with
its deadline, a voice warning to repeat, suggested steps. Each alert gets one run.

The run is a row keyed by the alert: the first process to insert it does the work, in
the same transaction; another that saw the same new alert finds the row and moves on.
What the run decides is written down here and carried out by the deliveries and the
announcements, which retry on their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cloud import work_orders
from cloud.alerts.audit import record
from cloud.db import models as m
from cloud.response.playbooks import Playbooks, Response
from cloud.response.suggestions import suggestions
from microbrain.protocol import Severity

log = logging.getLogger(__name__)

RUNS = Counter(
    "mb_response_runs_total", "alerts a playbook was applied to, by outcome", ["outcome"]
)
ACTOR = "playbook"
# alerts older than this when first seen (a cloud started after a long stop) get no run:
# notifying about yesterday's alerts all at once helps nobody
LOOKBACK = timedelta(minutes=10)
BATCH = 200


@dataclass(frozen=True, slots=True)
class RunReport:
    alert_id: int
    playbooks: tuple[str, ...]
    notifications: int
    work_order_id: int | None
    announce: bool


def _claim(session: Session, alert: m.Alert, playbooks: tuple[str, ...], now: datetime) -> bool:
    """Insert the run row; False when another process has it already."""
    try:
        with session.begin_nested():
            session.add(m.ResponseRun(alert_id=alert.id, playbooks=",".join(playbooks), at=now))
        return True
    except IntegrityError:
        return False


def _summary(response: Response, n_notices: int, wo: m.WorkOrder | None) -> str:
    """The alert log's note, in the console's first language."""
    parts = [f"预案 {'、'.join(response.playbooks)}"]
    if n_notices:
        parts.append(f"通知 {n_notices} 条（{'、'.join(c.id for c in response.notify)}）")
    if wo is not None:
        parts.append(f"工单 #{wo.id} 派往 {wo.department}")
    if response.announce is not None:
        parts.append("现场语音提醒")
    return "；".join(parts)


def respond(
    session: Session, book: Playbooks, alert: m.Alert, *, now: datetime
) -> RunReport | None:
    """Apply ``book`` to one alert, once; None when another process did (or does) it."""
    response = book.for_alert(alert.kind, Severity(alert.severity), alert.community, alert.compound)
    ids = response.playbooks if response else ()
    if not _claim(session, alert, ids, now):
        RUNS.labels("taken").inc()
        return None
    if response is None:
        RUNS.labels("no_playbook").inc()
        return RunReport(alert.id, (), 0, None, announce=False)
    run = session.get(m.ResponseRun, alert.id)
    assert run is not None  # inserted just now, in this transaction
    run.next_steps = list(response.next_steps)
    run.suggestions = [s.line(book.tz) for s in suggestions(session, alert)]
    n_notices = 0
    for contact in response.notify:
        for channel in contact.channels:
            session.add(
                m.Notification(
                    alert_id=alert.id,
                    channel=channel,
                    contact=contact.id,
                    user=contact.user,
                    mobile=contact.mobile,
                    severity=alert.severity,
                    status="pending",
                    created_at=now,
                    next_attempt_at=now,
                    attempts=0,
                )
            )
            n_notices += 1
    wo = None
    if response.work_order is not None:
        step = response.work_order
        wo = work_orders.create(
            session,
            alert,
            department=step.department,
            reason="playbook",
            actor=f"{ACTOR}:{response.playbooks[-1]}",
            now=now,
            note=f"预案时限 {step.deadline / 3600:g} 小时",
            due_at=now + timedelta(seconds=step.deadline),
        )
        run.work_order_id = wo.id
    # a voice warning plays on the alert's gateway; an alert the cloud raised itself (a
    # compound's appeal rate, say) has none to speak through
    if response.announce is not None and session.get(m.Gateway, alert.gateway) is not None:
        say = response.announce
        session.add(
            m.Announcement(
                alert_id=alert.id,
                community=alert.community,
                compound=alert.compound,
                gateway=alert.gateway,
                text=say.text,
                speaker=say.speaker,
                repeat_s=say.repeat_every,
                remaining=say.max_times,
                sent=0,
                next_at=now,
            )
        )
    record(
        session,
        alert,
        "playbook",
        from_status=alert.status,
        actor=ACTOR,
        at=now,
        note=_summary(response, n_notices, wo),
    )
    RUNS.labels("applied").inc()
    return RunReport(alert.id, ids, n_notices, wo.id if wo else None, response.announce is not None)


def _failed(session: Session, alert: m.Alert, err: Exception, now: datetime) -> RunReport:
    """A run that failed for this alert alone is written down as failed, on the alert's
    log for the duty staff to see, instead of being retried every round for ever."""
    log.error(
        "alert %d: playbook failed (%s); the alert is left to the duty staff",
        alert.id,
        err,
        exc_info=err,
    )
    RUNS.labels("failed").inc()
    session.add(m.ResponseRun(alert_id=alert.id, playbooks="", at=now))
    record(
        session,
        alert,
        "playbook",
        from_status=alert.status,
        actor=ACTOR,
        at=now,
        note=f"预案执行失败：{type(err).__name__}: {str(err)[:300]}",
    )
    return RunReport(alert.id, (), 0, None, announce=False)


def respond_to_new(session: Session, book: Playbooks, *, now: datetime) -> list[RunReport]:
    """Apply the playbooks to every active alert opened lately that has no run yet."""
    alerts = session.scalars(
        select(m.Alert)
        .outerjoin(m.ResponseRun, m.ResponseRun.alert_id == m.Alert.id)
        .where(
            m.ResponseRun.alert_id.is_(None),
            m.Alert.active,
            m.Alert.opened_at >= now - LOOKBACK,
        )
        .order_by(m.Alert.id)
        .limit(BATCH)
    ).all()
    reports = []
    for alert in alerts:
        try:
            with session.begin_nested():  # one alert's failure undoes only its own run
                report = respond(session, book, alert, now=now)
        except OperationalError:
            raise  # the database is away: the whole round waits for the next
        except Exception as err:  # noqa: BLE001 - any bug in one run: written down, not looped
            report = _failed(session, alert, err, now)
        if report is not None:
            reports.append(report)
            if report.playbooks:
                log.info("alert %d: playbook %s applied", alert.id, ",".join(report.playbooks))
    return reports
