"""Voice warnings at the spot (``cmd/announce``), repeated while the violation stands.

A playbook's warning is a row: played at once, then every ``repeat_s`` until its alert
clears or ends, at most ``remaining`` more times, and never in quiet hours (then the
next turn moves on without playing). Each turn is taken by a guarded UPDATE on the row's
``next_at``, so two processes never play the same turn twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.commands import CommandSender
from cloud.db import models as m
from cloud.db import rowcount, transaction
from cloud.response.playbooks import Playbooks
from microbrain.protocol import Announce, GatewayPath

log = logging.getLogger(__name__)

ANNOUNCEMENTS = Counter(
    "mb_announcements_total", "voice warnings at the spot, by outcome", ["outcome"]
)
# a warning stuck in the broker or the outbox longer than this is stale: the gateway
# refuses it rather than play it late
MAX_DELAY = timedelta(seconds=120)
BATCH = 100


def _stands(session: Session, alert_id: int) -> bool:
    alert = session.get(m.Alert, alert_id)
    return alert is not None and alert.active and not alert.cleared


def _take_turn(session: Session, row: m.Announcement, now: datetime, play: bool) -> bool:
    """Move the row to its next turn; True when this process got the turn."""
    taken = session.execute(
        update(m.Announcement)
        .where(m.Announcement.alert_id == row.alert_id, m.Announcement.next_at == row.next_at)
        .values(
            next_at=now + timedelta(seconds=row.repeat_s),
            remaining=row.remaining - (1 if play else 0),
            sent=row.sent + (1 if play else 0),
        )
    )
    return rowcount(taken) == 1


def announce_due(
    factory: sessionmaker[Session],
    sender: CommandSender,
    book: Playbooks,
    *,
    now: datetime,
) -> int:
    """Play every warning whose turn has come; returns how many were sent."""
    to_send: list[tuple[GatewayPath, Announce]] = []
    quiet = book.quiet(now)
    with transaction(factory) as s:
        due = s.scalars(
            select(m.Announcement).where(m.Announcement.next_at <= now).limit(BATCH)
        ).all()
        for row in due:
            if row.remaining <= 0 or not _stands(s, row.alert_id):
                s.execute(delete(m.Announcement).where(m.Announcement.alert_id == row.alert_id))
                ANNOUNCEMENTS.labels("ended").inc()
                continue
            if not _take_turn(s, row, now, play=not quiet):
                continue  # another process took this turn
            if quiet:
                ANNOUNCEMENTS.labels("quiet_hours").inc()
                continue
            command = Announce(text=row.text, speaker=row.speaker, expires=now + MAX_DELAY)
            to_send.append((GatewayPath(row.community, row.compound, row.gateway), command))
    for path, command in to_send:  # after the commit: a rolled-back turn is never played
        try:
            sender.send(path, command)
            ANNOUNCEMENTS.labels("sent").inc()
        except Exception as err:  # noqa: BLE001 - the broker away: this turn is lost, the next one comes
            ANNOUNCEMENTS.labels("error").inc()
            log.warning("voice warning to %s not sent: %s", path, err)
    return len(to_send)
