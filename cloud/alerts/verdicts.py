"""Verdicts: was an alert real (``confirmed``) or a ``false_positive``?

The duty officer's word on an alert, in any state: one row per alert (the latest word
replaces the earlier) and a line in the alert's log for each (action ``verdict``, the
status unchanged), so the timeline and the event stream show every one. The false
positives are what tuning a camera's rules starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from cloud.alerts.audit import record
from cloud.alerts.lifecycle import MAX_NOTE
from cloud.alerts.service import Outcome, each_alert, get_alert
from cloud.db import models as m
from cloud.errors import Invalid


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"


def give_verdict(
    session: Session,
    alert_id: int,
    verdict: Verdict | str,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> m.AlertVerdict:
    """Record ``actor``'s verdict on the alert (replacing an earlier one) and log it;
    Invalid for a verdict that is neither ``confirmed`` nor ``false_positive``.

    >>> give_verdict(session, 7, Verdict.FALSE_POSITIVE, actor="duty", now=now)  # doctest: +SKIP
    """
    try:
        word = Verdict(verdict)
    except ValueError:
        raise Invalid(
            f"verdict: {verdict!r} is not one of " + ", ".join(v.value for v in Verdict)
        ) from None
    # locked: two verdicts at once would both find no row and both insert one
    alert = get_alert(session, alert_id, for_update=True)
    note = (note or None) and note[:MAX_NOTE]
    row = session.get(m.AlertVerdict, alert.id, populate_existing=True)
    if row is None:
        row = m.AlertVerdict(alert_id=alert.id, verdict=word.value, actor=actor, at=now, note=note)
        alert.verdict_row = row
    else:
        row.verdict, row.actor, row.at, row.note = word.value, actor, now, note
    alert.updated_at = now
    record(
        session,
        alert,
        "verdict",
        from_status=alert.status,
        actor=actor,
        at=now,
        note=(f"{word.value}: {note}" if note else word.value)[:MAX_NOTE],
    )
    session.flush()
    return row


def bulk_verdict(
    session: Session,
    user: m.User,
    ids: Sequence[int],
    verdict: Verdict | str,
    *,
    now: datetime,
    note: str | None = None,
) -> list[Outcome]:
    """The same verdict on each alert of ``ids`` as ``user`` (see
    :func:`cloud.alerts.service.each_alert`)."""
    return each_alert(
        session,
        user,
        ids,
        lambda alert_id: give_verdict(
            session, alert_id, verdict, actor=user.username, now=now, note=note
        ),
    )
