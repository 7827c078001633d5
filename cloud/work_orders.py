"""Work orders (吹哨报到): created → accepted → in progress → done → verified.

Verification asks the gateway to look again (``cmd/recheck``); the order is verified
and its alert closed only when the condition is gone, otherwise the order reopens.
An order left verifying (the recheck or its answer lost) may be verified again.

The gateway answers on ``reply/recheck`` with
``Reply(name="recheck", command_id=<the Recheck's id>, ok=True, detail={"present": <bool>})``;
``ok=False`` or no boolean ``present`` counts as "could not tell" and reopens the order.
Only the gateway the recheck was sent to may answer it (:func:`apply_recheck_reply`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import alerts, auth
from cloud.alerts import lifecycle
from cloud.alerts.audit import record
from cloud.alerts.lifecycle import Action
from cloud.alerts.policy import policy_for
from cloud.db import models as m
from cloud.errors import Conflict, NotFound
from microbrain.protocol import GatewayPath, Recheck, Reply, new_id


class WorkOrderStatus(StrEnum):
    CREATED = "created"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    REOPENED = "reopened"


S = WorkOrderStatus
# action → (states it may start from, state it leads to)
MOVES: dict[str, tuple[tuple[WorkOrderStatus, ...], WorkOrderStatus]] = {
    "accept": ((S.CREATED, S.REOPENED), S.ACCEPTED),
    "start": ((S.ACCEPTED,), S.IN_PROGRESS),
    "done": ((S.IN_PROGRESS,), S.DONE),
}


def _log(
    session: Session,
    wo: m.WorkOrder,
    before: str | None,
    *,
    actor: str,
    now: datetime,
    note: str | None,
) -> None:
    session.add(
        m.WorkOrderTransition(
            work_order_id=wo.id,
            from_status=before,
            to_status=wo.status,
            actor=actor,
            at=now,
            note=note,
        )
    )


def create(
    session: Session,
    alert: m.Alert,
    *,
    department: str | None,
    reason: str,
    actor: str,
    now: datetime,
    note: str | None,
    due_at: datetime | None = None,
) -> m.WorkOrder:
    """A work order for ``alert`` to ``department`` (``reason``: whistle, dispatch,
    playbook), due by ``due_at`` when the caller sets a deadline; the alert's status is
    the caller's business."""
    wo = m.WorkOrder(
        alert_id=alert.id,
        department=department,
        status=S.CREATED,
        community=alert.community,
        compound=alert.compound,
        building=alert.building,
        reason=reason,
        created_at=now,
        updated_at=now,
        note=note,
        due_at=due_at,
    )
    session.add(wo)
    session.flush()
    _log(session, wo, None, actor=actor, now=now, note=note)
    return wo


def dispatch(
    session: Session,
    alert_id: int,
    *,
    actor: str,
    now: datetime,
    department: str | None = None,
    note: str | None = None,
) -> m.WorkOrder:
    """Alert open/acknowledged → dispatched, with a work order to ``department``
    (default: the whistle department for the alert's kind). Conflict from any other
    state, NotFound for a department that does not exist."""
    alert = alerts.get_alert(session, alert_id, for_update=True)
    lifecycle.check(
        alert, Action.DISPATCHED
    )  # before the department: the state is the first problem
    if department is None:
        department = policy_for(session, alert.community, alert.compound).whistle.get(alert.kind)
    elif session.get(m.Department, department) is None:
        raise NotFound(f"department {department!r} does not exist")
    lifecycle.move(
        session,
        alert,
        Action.DISPATCHED,
        actor=actor,
        now=now,
        note=note or (f"to {department}" if department else None),
    )
    return create(
        session, alert, department=department, reason="dispatch", actor=actor, now=now, note=note
    )


def scoped(session: Session, user: m.User, work_order_id: int) -> m.WorkOrder:
    """The work order if it lies in ``user``'s subtree; NotFound with the same words as
    for an id that does not exist otherwise (the API's and the console's one check)."""
    wo = session.get(m.WorkOrder, work_order_id)
    if wo is None:
        raise NotFound(f"work order {work_order_id} does not exist")
    auth.require_place(user, wo.community, wo.compound, wo.building, f"work order {work_order_id}")
    return wo


def get(session: Session, work_order_id: int) -> m.WorkOrder:
    wo = session.scalars(
        select(m.WorkOrder).where(m.WorkOrder.id == work_order_id).with_for_update()
    ).one_or_none()
    if wo is None:
        raise NotFound(f"work order {work_order_id} does not exist")
    return wo


def move(
    session: Session,
    work_order_id: int,
    action: str,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> m.WorkOrder:
    """Apply ``accept``, ``start`` or ``done``; Conflict if the order is elsewhere."""
    if action not in MOVES:
        raise Conflict(f"unknown work order action {action!r}")
    allowed, target = MOVES[action]
    wo = get(session, work_order_id)
    if wo.status not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise Conflict(f"work order {wo.id} is {wo.status}; {action} needs it to be {names}")
    before, wo.status, wo.updated_at = wo.status, target, now
    _log(session, wo, before, actor=actor, now=now, note=note)
    return wo


def request_verification(
    session: Session, work_order_id: int, *, actor: str, now: datetime
) -> tuple[m.WorkOrder, GatewayPath, Recheck]:
    """done → verifying; returns the recheck to publish AFTER the caller commits.

    Also allowed from verifying: a recheck or its reply lost on the way would otherwise
    leave the order there for ever. The new recheck gets a new id, so a late reply to the
    old one changes nothing."""
    wo = get(session, work_order_id)
    if wo.status not in (S.DONE, S.VERIFYING):
        raise Conflict(
            f"work order {wo.id} is {wo.status}; verification needs it to be done or verifying"
        )
    alert = session.get(m.Alert, wo.alert_id)
    gateway = session.get(m.Gateway, alert.gateway) if alert else None
    if alert is None or gateway is None:
        raise NotFound(f"work order {wo.id} has no alert or gateway to recheck")
    command = Recheck(
        id=new_id(), source=alert.source, zone=alert.zone, kind=alert.kind, alert=str(alert.id)
    )
    before, wo.status, wo.updated_at, wo.recheck_id = wo.status, S.VERIFYING, now, command.id
    wo.recheck_gateway = gateway.id  # only its reply counts
    _log(session, wo, before, actor=actor, now=now, note=f"recheck {command.id} sent")
    return wo, GatewayPath(gateway.community, gateway.compound, gateway.id), command


def apply_recheck(
    session: Session,
    recheck_id: str,
    *,
    condition_present: bool | None,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> m.WorkOrder | None:
    """The gateway answered a recheck: close the order and its alert if the condition is
    gone; reopen both if it is still there or the gateway could not tell."""
    wo = session.scalars(
        select(m.WorkOrder).where(m.WorkOrder.recheck_id == recheck_id).with_for_update()
    ).one_or_none()
    if wo is None or wo.status != S.VERIFYING:
        return None  # unknown or already answered: a duplicate reply changes nothing
    alert = session.get(m.Alert, wo.alert_id)
    before = wo.status
    if condition_present is False:
        wo.status = S.VERIFIED
        _log(session, wo, before, actor=actor, now=now, note="recheck: condition gone")
        if alert is not None:
            if alert.status in alerts.ACTIVE:
                alerts.resolve(session, alert.id, actor=actor, now=now, note="verified by recheck")
            if alert.status == alerts.AlertStatus.RESOLVED:
                alerts.close(
                    session, alert.id, actor=actor, now=now, note=f"work order {wo.id} verified"
                )
    else:
        wo.status = S.REOPENED
        why = (
            "condition still present"
            if condition_present
            else f"recheck failed: {reason or 'no answer'}"
        )
        note = why
        if alert is not None and alert.status == alerts.AlertStatus.RESOLVED:
            try:
                alerts.reopen(session, alert.id, actor=actor, now=now, note=why)
            except Conflict:
                # a newer alert for the same place is live (at most one may be): this one
                # stays resolved; raising here would dead-letter the reply and leave the
                # order in verifying for ever
                live = session.scalar(
                    select(m.Alert.id).where(m.Alert.key == alert.key, m.Alert.active.is_(True))
                )
                note = (
                    f"{why}; alert {alert.id} stays resolved, "
                    f"alert {live} for the same place is live"
                )
                record(
                    session,
                    alert,
                    "verification_failed",
                    from_status=alert.status,
                    actor=actor,
                    at=now,
                    note=note,
                )
        elif alert is not None:
            record(
                session,
                alert,
                "verification_failed",
                from_status=alert.status,
                actor=actor,
                at=now,
                note=why,
            )
        _log(session, wo, before, actor=actor, now=now, note=note)
    wo.updated_at = now
    return wo


class ReplyOutcome(StrEnum):
    APPLIED = "applied"  # the order moved: verified or reopened
    IGNORED = "ignored"  # no such recheck, or it was answered already
    FOREIGN = "foreign"  # from a gateway the recheck was not sent to: refused


@dataclass(frozen=True, slots=True)
class RecheckAnswer:
    """What a reply to a recheck did, and to which gateway the recheck had gone."""

    outcome: ReplyOutcome
    work_order: int | None = None
    sent_to: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Is the condition still there? None: the gateway could not tell (and why)."""

    present: bool | None
    reason: str | None = None


def recheck_verdict(reply: Reply) -> Verdict:
    """Read a ``reply/recheck``: ``ok`` with a boolean ``detail.present``, else "could not
    tell" with the gateway's reason (or what it sent instead of a verdict)."""
    present: object = reply.detail.get("present")
    if reply.ok and isinstance(present, bool):
        return Verdict(present, reply.reason)
    if not reply.ok:
        return Verdict(None, reply.reason)
    shown = ", ".join(f"{k}={v}" for k, v in list(reply.detail.items())[:8])
    why = f"the gateway answered without a verdict ('present'): {shown or 'nothing'}"
    return Verdict(None, why)


def apply_recheck_reply(
    session: Session, reply: Reply, *, gateway: str, now: datetime
) -> RecheckAnswer:
    """Apply ``gateway``'s reply to a recheck. It counts only from the gateway the recheck
    was sent to: any other gateway's answer (on its own reply topic, which the broker lets
    it use) changes nothing and comes back FOREIGN, for the caller to refuse."""
    command_id = reply.command_id
    if command_id is None:
        return RecheckAnswer(ReplyOutcome.IGNORED)
    wo = session.scalars(
        select(m.WorkOrder).where(m.WorkOrder.recheck_id == command_id).with_for_update()
    ).one_or_none()
    if wo is None:
        return RecheckAnswer(ReplyOutcome.IGNORED)
    sent_to = wo.recheck_gateway
    if sent_to is None:  # sent before the gateway was recorded: it went to the alert's
        alert = session.get(m.Alert, wo.alert_id)
        sent_to = alert.gateway if alert is not None else None
    if sent_to != gateway:
        return RecheckAnswer(ReplyOutcome.FOREIGN, wo.id, sent_to)
    verdict = recheck_verdict(reply)
    moved = apply_recheck(
        session,
        command_id,
        condition_present=verdict.present,
        actor=f"edge:{gateway}",
        now=now,
        reason=verdict.reason,
    )
    return RecheckAnswer(ReplyOutcome.APPLIED if moved else ReplyOutcome.IGNORED, wo.id, sent_to)


def expire_rechecks(session: Session, *, now: datetime, timeout_s: float) -> int:
    """Reopen orders left verifying longer than ``timeout_s`` (the recheck or its answer
    was lost, the gateway is offline): as if the gateway could not tell. Returns how many."""
    # request_verification sets the status and the recheck id together: a verifying order
    # always has one (a None would make apply_recheck's `== recheck_id` an IS NULL)
    stale = [
        recheck_id
        for recheck_id in session.scalars(
            select(m.WorkOrder.recheck_id).where(
                m.WorkOrder.status == S.VERIFYING,
                m.WorkOrder.updated_at < now - timedelta(seconds=timeout_s),
            )
        )
        if recheck_id is not None
    ]
    for recheck_id in stale:
        apply_recheck(
            session,
            recheck_id,
            condition_present=None,
            actor="system:recheck-timeout",
            now=now,
            reason=f"no answer within {int(timeout_s)} s",
        )
    return len(stale)
