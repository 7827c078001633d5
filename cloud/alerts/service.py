"""Alert services: plain functions over a Session; the API and the ingest are thin shells.

Events fold into alerts here; every status change goes through the lifecycle
(:mod:`cloud.alerts.lifecycle`). Dispatching, which also makes a work order, lives in
:mod:`cloud.work_orders`, above this module.

A raise the edge sent before its clear but that arrives after it counts in the cleared
alert instead of opening a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.alerts.audit import record
from cloud.alerts.lifecycle import ACTIVE, MAX_NOTE, Action, AlertStatus, check, move
from cloud.alerts.policy import start_clock
from cloud.db import models as m
from cloud.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from microbrain.protocol import Event, EventState

MAX_BULK = 200  # ids in one bulk action: a page of the console's list, and a bound


def alert_key(
    kind: str, community: str, compound: str, building: str | None, zone: str | None, source: str
) -> str:
    """The same thing at the same place is one alert: kind + place + zone (or device)."""
    return f"{kind}|{community}/{compound}/{building or '-'}|{source}/{zone or '-'}"


def get_alert(session: Session, alert_id: int, *, for_update: bool = False) -> m.Alert:
    """The alert ``alert_id`` (locked with ``for_update``); NotFound if there is none."""
    stmt = select(m.Alert).where(m.Alert.id == alert_id)
    if for_update:
        stmt = stmt.with_for_update()
    alert = session.scalars(stmt).one_or_none()
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return alert


def live_alert(session: Session, key: str) -> m.Alert | None:
    """The live alert for ``key``, locked (PostgreSQL): an API resolve between this read
    and the ingest's commit would otherwise be overwritten, or a raise counted in an
    alert that is no longer live."""
    alert = session.scalars(
        select(m.Alert)
        .where(m.Alert.key == key, m.Alert.active.is_(True))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    # checked again after the lock: the row may have been resolved while we waited for it
    return alert if alert is not None and alert.active else None


def store_cloud_event(
    session: Session, event: Event, gateway: m.Gateway, alert: m.Alert | None
) -> None:
    """An event the cloud raised or cleared itself (a trend or baseline warning, a
    gateway gone silent) stored as an event row, so the alert's timeline keeps its
    evidence like a gateway's. ``gateway`` gives the place (a stand-in for a compound's
    warning); no sequence number: it never crossed the broker."""
    session.add(
        m.EventRow(
            id=event.id,
            gateway=gateway.id,
            seq=None,
            ts=event.ts,
            received_at=event.ts,
            community=gateway.community,
            compound=gateway.compound,
            building=event.building,
            kind=event.kind,
            state=event.state.value,
            severity=int(event.severity),
            source=event.source,
            zone=event.zone,
            message=event.message,
            payload=event.model_dump(mode="json", by_alias=True),
            alert_id=alert.id if alert is not None else None,
        )
    )


def _cleared_alert_covering(session: Session, key: str, event: Event) -> m.Alert | None:
    """The latest alert for ``key`` if the edge cleared it at or after ``event.ts``."""
    latest = session.scalars(
        select(m.Alert).where(m.Alert.key == key).order_by(m.Alert.id.desc()).limit(1)
    ).one_or_none()
    if latest is None or latest.active or not latest.cleared or latest.last_ts < event.ts:
        return None
    return latest


def fold_event(
    session: Session,
    event: Event,
    gateway: m.Gateway,
    now: datetime,
    cache: dict[str, m.Alert | None] | None = None,
) -> m.Alert | None:
    """Fold one stored event into its alert; returns the alert it touched, if any.

    A raised event opens an alert or counts a repeat; a cleared event resolves the live
    alert with the same key (and touches nothing when there is none).
    ``cache`` keeps alerts found earlier in the same batch.
    """
    key = alert_key(
        event.kind, gateway.community, gateway.compound, event.building, event.zone, event.source
    )
    alert = cache[key] if cache is not None and key in cache else live_alert(session, key)
    if event.state == EventState.CLEARED:
        if alert is None or not alert.active:
            # none live; or one this batch found live was since closed (a recheck verdict
            # in the same batch): the condition is already over there
            return None
        alert.cleared = True
        # the clear is the alert's latest edge event: a raise stamped before it (resent
        # late) belongs to this alert, see _cleared_alert_covering
        alert.last_ts = max(alert.last_ts, event.ts)
        alert.updated_at = now
        move(
            session,
            alert,
            Action.AUTO_RESOLVED,
            actor=f"edge:{gateway.id}",
            now=now,
            note=event.message or "condition cleared",
        )
        if cache is not None:
            cache[key] = None
        return alert
    if alert is None and (late := _cleared_alert_covering(session, key, event)) is not None:
        # a raise resent after its clear (another batch, a replayed outbox): the condition
        # it reports is already over, so count it there instead of opening an alert that
        # nothing would ever clear and that would escalate
        late.count += 1
        late.first_ts = min(late.first_ts, event.ts)
        late.updated_at = now
        return late
    if alert is None:
        alert = m.Alert(
            key=key,
            active=True,
            kind=event.kind,
            severity=int(event.severity),
            status=AlertStatus.OPEN,
            level="building",
            community=gateway.community,
            compound=gateway.compound,
            building=event.building,
            gateway=gateway.id,
            source=event.source,
            zone=event.zone,
            count=1,
            message=event.message,
            first_ts=event.ts,
            last_ts=event.ts,
            opened_at=now,
            updated_at=now,
            cleared=False,
        )
        session.add(alert)
        session.flush()  # the id, and the unique index guards a racing worker now
        record(
            session,
            alert,
            "opened",
            from_status=None,
            actor=f"edge:{gateway.id}",
            at=now,
            note=event.message,
        )
        start_clock(session, alert, now)
    else:
        alert.count += 1
        alert.severity = max(alert.severity, int(event.severity))
        alert.last_ts = max(alert.last_ts, event.ts)
        alert.first_ts = min(alert.first_ts, event.ts)
        alert.updated_at = now
        if event.message:
            alert.message = event.message
    if cache is not None:
        cache[key] = alert
    return alert


def acknowledge(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str | None = None
) -> m.Alert:
    """open → acknowledged; stops escalation. Raises Conflict from any other state."""
    alert = get_alert(session, alert_id, for_update=True)
    move(session, alert, Action.ACKNOWLEDGED, actor=actor, now=now, note=note)
    return alert


def resolve(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str | None = None
) -> m.Alert:
    """open/acknowledged/dispatched → resolved: the condition is handled."""
    alert = get_alert(session, alert_id, for_update=True)
    move(session, alert, Action.RESOLVED, actor=actor, now=now, note=note)
    return alert


def close(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str | None = None
) -> m.Alert:
    """resolved → closed."""
    alert = get_alert(session, alert_id, for_update=True)
    move(session, alert, Action.CLOSED, actor=actor, now=now, note=note)
    return alert


def reopen(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str | None = None
) -> m.Alert:
    """resolved → dispatched again (its work order is back in progress)."""
    alert = get_alert(session, alert_id, for_update=True)
    if alert.status in ACTIVE:
        return alert
    check(alert, Action.REOPENED)
    if live_alert(session, alert.key) is not None:
        raise Conflict(f"alert {alert.id} cannot reopen: a newer alert for the same place is live")
    move(session, alert, Action.REOPENED, actor=actor, now=now, note=note)
    return alert


def comment(
    session: Session, alert_id: int, *, actor: str, now: datetime, note: str
) -> m.AlertTransition:
    """A note on the alert's log; allowed in every state."""
    if not note or not note.strip():
        raise Conflict("a comment needs text")
    alert = get_alert(session, alert_id)
    alert.updated_at = now
    return record(
        session,
        alert,
        "comment",
        from_status=alert.status,
        actor=actor,
        at=now,
        note=note[:MAX_NOTE],
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a bulk action did to one id: ``ok``, or the ``error`` (``not_found``,
    ``conflict``, ``forbidden``, ``invalid``) with the service's ``detail``."""

    id: int
    ok: bool
    error: str | None = None
    detail: str | None = None


_ERROR_NAMES: tuple[tuple[type[DomainError], str], ...] = (
    (NotFound, "not_found"),
    (Conflict, "conflict"),
    (Forbidden, "forbidden"),
    (Invalid, "invalid"),
)


def scoped_alert(session: Session, user: m.User, alert_id: int) -> m.Alert:
    """The alert if it lies in ``user``'s subtree; NotFound with the same words as for
    an id that does not exist otherwise (ids do not tell what exists elsewhere)."""
    alert = get_alert(session, alert_id)
    auth.require_place(user, alert.community, alert.compound, alert.building, f"alert {alert_id}")
    return alert


def each_alert(
    session: Session, user: m.User, ids: Sequence[int], act: Callable[[int], object]
) -> list[Outcome]:
    """Run ``act(alert_id)`` for each distinct id in ``user``'s scope, each on its own: an
    id that fails is reported and the others go on. Answers in the order asked (repeats
    dropped); acts in id order, so two bulk calls lock their alerts in the same order.

    The caller commits once. This relies on the services refusing (raising a domain
    error) before they change anything, as :func:`cloud.alerts.lifecycle.move` does.
    """
    if len(ids) > MAX_BULK:
        raise Invalid(f"ids: at most {MAX_BULK} in one call, got {len(ids)}")
    distinct = list(dict.fromkeys(ids))
    done: dict[int, Outcome] = {}
    for alert_id in sorted(distinct):
        try:
            scoped_alert(session, user, alert_id)
            act(alert_id)
        except DomainError as err:
            name = next((n for t, n in _ERROR_NAMES if isinstance(err, t)), "refused")
            done[alert_id] = Outcome(alert_id, False, name, str(err))
        else:
            done[alert_id] = Outcome(alert_id, True)
    return [done[i] for i in distinct]


def bulk_acknowledge(
    session: Session,
    user: m.User,
    ids: Sequence[int],
    *,
    now: datetime,
    note: str | None = None,
) -> list[Outcome]:
    """Acknowledge each alert of ``ids`` as ``user`` (see :func:`each_alert`)."""
    return each_alert(
        session,
        user,
        ids,
        lambda alert_id: acknowledge(session, alert_id, actor=user.username, now=now, note=note),
    )
