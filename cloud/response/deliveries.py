"""Deliveries: when to send what on a channel — the rate budget, digests, retries — and
the record of every attempt.

A robot allows about 20 messages a minute and throttles a sender that tries more. So a
channel sends within ``budget_per_minute`` messages in any 60 s (every attempt counts,
failed ones too: the robot saw them): while the due notifications fit, each goes alone,
most severe first; when they do not, the last free message is a digest of all the rest.
Nothing is dropped: a notification is pending until a delivery that carried it went
through, or until its last retry failed (``failed``, visible on its alert). One whose
alert was resolved or closed before it went out is ``skipped`` (the news is stale and
the channel's budget is better spent), unless the alert was critical: that is told even
when it is already over.

One process sends on a channel at a time (a lease row), so the budget holds across
processes. Each attempt is written right after it is made, so a crash repeats at most
the message in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from prometheus_client import Counter, Histogram
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models as m
from cloud.db import rowcount, transaction
from cloud.response import ack_links
from cloud.response.channels.base import Channel, DeliveryError, Notice
from cloud.response.messages import Wording, alert_notice, digest_notice
from microbrain.protocol import Severity

log = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "mb_delivery_attempts_total", "messages sent to channels, by outcome", ["channel", "outcome"]
)
LATENCY = Histogram("mb_delivery_seconds", "time a channel took to take a message", ["channel"])
NOTIFICATIONS_SKIPPED = Counter(
    "mb_notifications_skipped_total",
    "notifications not sent because their alert was settled before they went out",
    ["channel"],
)
SETTLED = frozenset({"resolved", "closed"})
STATUS_WORDS = {"resolved": "处置", "closed": "关闭"}
NOTIFICATIONS_FAILED = Counter(
    "mb_notifications_failed_total", "notifications given up after their last retry", ["channel"]
)
WINDOW = timedelta(seconds=60)
LEASE = timedelta(seconds=60)
MAX_DUE = 2000  # one digest carries at most this many; the rest wait for the next


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff doubles from ``first_s`` up to ``max_s``; ``max_attempts`` in all."""

    max_attempts: int = 8
    first_s: float = 5.0
    max_s: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_s, self.first_s * 2 ** max(0, attempts - 1)))


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Links:
    """How acknowledgement links are made: the cloud's secret and their lifetime."""

    secret: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Planned:
    notice: Notice
    notification_ids: tuple[int, ...]
    digest: bool


@dataclass(slots=True)
class DeliveryReport:
    messages: int = 0
    digests: int = 0
    failed_attempts: int = 0
    delivered: int = 0  # notifications carried by a successful message
    given_up: int = 0


def take_lease(session: Session, channel: str, holder: str, now: datetime) -> bool:
    """Hold ``channel`` for ``LEASE`` (renewing our own); False while another holds it."""
    renewed = session.execute(
        update(m.ChannelLease)
        .where(
            m.ChannelLease.channel == channel,
            or_(m.ChannelLease.holder == holder, m.ChannelLease.until <= now),
        )
        .values(holder=holder, until=now + LEASE)
    )
    if rowcount(renewed) == 1:
        return True
    if session.get(m.ChannelLease, channel) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(m.ChannelLease(channel=channel, holder=holder, until=now + LEASE))
        return True
    except IntegrityError:
        return False  # another process inserted it first


def release_lease(session: Session, channel: str, holder: str, now: datetime) -> None:
    session.execute(
        update(m.ChannelLease)
        .where(m.ChannelLease.channel == channel, m.ChannelLease.holder == holder)
        .values(until=now)
    )


def sent_in_window(session: Session, channel: str, now: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(m.DeliveryAttempt)
            .where(m.DeliveryAttempt.channel == channel, m.DeliveryAttempt.at > now - WINDOW)
        )
        or 0
    )


def _anything_due(session: Session, channel: str, now: datetime) -> bool:
    return (
        session.scalar(
            select(m.Notification.id)
            .where(
                m.Notification.channel == channel,
                m.Notification.status == "pending",
                m.Notification.next_attempt_at <= now,
            )
            .limit(1)
        )
        is not None
    )


def _plan(
    session: Session,
    channel: Channel,
    words: Wording,
    links: Links,
    now: datetime,
) -> list[Planned]:
    free = channel.budget_per_minute - sent_in_window(session, channel.id, now)
    if free <= 0:
        return []
    due = session.scalars(
        select(m.Notification)
        .where(
            m.Notification.channel == channel.id,
            m.Notification.status == "pending",
            m.Notification.next_attempt_at <= now,
        )
        .order_by(m.Notification.severity.desc(), m.Notification.id)
        .limit(MAX_DUE)
    ).all()
    if not due:
        return []
    alerts = {
        a.id: a
        for a in session.scalars(select(m.Alert).where(m.Alert.id.in_({n.alert_id for n in due})))
    }
    due = [n for n in due if not _skipped_as_settled(n, alerts[n.alert_id], channel.id)]
    if not due:
        return []
    singles, rest = (due, []) if len(due) <= free else (due[: free - 1], due[free - 1 :])
    runs = {
        r.alert_id: r
        for r in session.scalars(
            select(m.ResponseRun).where(m.ResponseRun.alert_id.in_({n.alert_id for n in singles}))
        )
    }
    plan = []
    for n in singles:
        alert = alerts[n.alert_id]
        link = None
        if n.user:
            token = ack_links.issue(
                session,
                secret=links.secret,
                alert_id=alert.id,
                user=n.user,
                now=now,
                ttl_s=links.ttl_s,
            )
            link = f"{words.console_url.rstrip('/')}/ack/{token}"
        notice = alert_notice(
            session,
            alert,
            words,
            link=link,
            next_steps=runs[alert.id].next_steps if alert.id in runs else (),
            past=runs[alert.id].suggestions if alert.id in runs else (),
            mentions=(n.mobile,) if n.mobile else (),
        )
        plan.append(Planned(notice, (n.id,), digest=False))
    if rest:
        covered = sorted({n.alert_id for n in rest})
        notice = replace(
            digest_notice(session, [alerts[i] for i in covered], words, now=now),
            mentions=tuple(sorted({n.mobile for n in rest if n.mobile})),
        )
        plan.append(Planned(notice, tuple(n.id for n in rest), digest=True))
    return plan


def _skipped_as_settled(n: m.Notification, alert: m.Alert, channel: str) -> bool:
    """Mark ``n`` skipped when its (non-critical) alert was settled before it went out."""
    if alert.status not in SETTLED or alert.severity >= int(Severity.CRITICAL):
        return False
    n.status, n.last_error = "skipped", f"告警发送前已{STATUS_WORDS[alert.status]}，未再通知"
    NOTIFICATIONS_SKIPPED.labels(channel).inc()
    log.info(
        "channel %s: notification %d skipped, alert %d %s", channel, n.id, alert.id, alert.status
    )
    return True


def _record(
    session: Session,
    channel: str,
    item: Planned,
    *,
    now: datetime,
    error: str | None,
    latency_ms: int,
    retry: RetryPolicy,
    report: DeliveryReport,
) -> None:
    attempt = m.DeliveryAttempt(
        channel=channel,
        at=now,
        ok=error is None,
        latency_ms=latency_ms,
        error=error,
        digest=item.digest,
    )
    session.add(attempt)
    session.flush()
    session.add_all(
        m.DeliveryAttemptItem(attempt_id=attempt.id, notification_id=i)
        for i in item.notification_ids
    )
    rows: Sequence[m.Notification] = session.scalars(
        select(m.Notification).where(m.Notification.id.in_(item.notification_ids))
    ).all()
    for n in rows:
        n.attempts += 1
        if error is None:
            n.status, n.sent_at, n.last_error = "sent", now, None
            report.delivered += 1
        elif n.attempts >= retry.max_attempts:
            n.status, n.last_error = "failed", error
            report.given_up += 1
            NOTIFICATIONS_FAILED.labels(channel).inc()
            log.error(
                "channel %s: notification %d (alert %d) given up after %d attempts: %s",
                channel,
                n.id,
                n.alert_id,
                n.attempts,
                error,
            )
        else:
            n.last_error = error
            n.next_attempt_at = now + retry.delay(n.attempts)


def deliver_due(
    factory: sessionmaker[Session],
    channel: Channel,
    words: Wording,
    links: Links,
    *,
    now: datetime,
    holder: str,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> DeliveryReport:
    """Send what is due on ``channel`` now, within its budget; record every attempt."""
    report = DeliveryReport()
    with factory() as s:  # a read first: an idle channel's round writes nothing
        if not _anything_due(s, channel.id, now):
            return report
    with transaction(factory) as s:
        if not take_lease(s, channel.id, holder, now):
            return report
        plan = _plan(s, channel, words, links, now)
    for item in plan:
        started = time.perf_counter()
        error: str | None = None
        try:
            channel.send(item.notice, now=now)
        except DeliveryError as err:
            error = str(err)
        except Exception as err:  # a bug in one channel must not stop the others
            log.exception("channel %s failed unexpectedly", channel.id)
            error = f"{type(err).__name__}: {err}"
        elapsed = time.perf_counter() - started
        LATENCY.labels(channel.id).observe(elapsed)
        ATTEMPTS.labels(channel.id, "ok" if error is None else "error").inc()
        report.messages += 1
        report.digests += item.digest
        report.failed_attempts += error is not None
        if error is not None:
            log.warning(
                "channel %s: message for %d alert(s) failed: %s",
                channel.id,
                len(item.notice.alert_ids),
                error,
            )
        with transaction(factory) as s:
            _record(
                s,
                channel.id,
                item,
                now=now,
                error=error,
                latency_ms=round(elapsed * 1000),
                retry=retry,
                report=report,
            )
            take_lease(s, channel.id, holder, now)
    return report


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One delivery attempt as an alert's delivery log shows it."""

    at: datetime
    channel: str
    contact: str
    ok: bool
    latency_ms: int
    error: str | None
    digest: bool


@dataclass(frozen=True, slots=True)
class NotificationView:
    channel: str
    contact: str
    status: str
    attempts: int
    last_error: str | None


def delivery_log(
    session: Session, alert_id: int
) -> tuple[list[NotificationView], list[AttemptView]]:
    """An alert's notifications and every attempt that carried one of them, oldest first."""
    notes = session.scalars(
        select(m.Notification)
        .where(m.Notification.alert_id == alert_id)
        .order_by(m.Notification.id)
    ).all()
    attempts = session.execute(
        select(m.DeliveryAttempt, m.Notification.contact)
        .join(m.DeliveryAttemptItem, m.DeliveryAttemptItem.attempt_id == m.DeliveryAttempt.id)
        .join(m.Notification, m.Notification.id == m.DeliveryAttemptItem.notification_id)
        .where(m.Notification.alert_id == alert_id)
        .order_by(m.DeliveryAttempt.at, m.DeliveryAttempt.id)
    ).all()
    return (
        [NotificationView(n.channel, n.contact, n.status, n.attempts, n.last_error) for n in notes],
        [
            AttemptView(a.at, a.channel, contact, a.ok, a.latency_ms, a.error, a.digest)
            for a, contact in attempts
        ],
    )
