"""An appeal's life, as data: submitted → accepted → answered → closed.

One table (:data:`MOVES`) says which staff action may start from which states and where
it leads; :func:`move` is the only writer of an appeal's status, and every change (and
the intake, an escalation, a rating) is a row of ``appeal_transitions``.

* ``accept``: the responsible party has taken it.
* ``answer``: the reply the resident reads (needs ``reply`` text).
* ``close``: done after the answer.
* ``reassign``: to another party (needs the new one); it starts again as submitted.

Overdue appeals (past ``due_at``, still submitted or accepted) are escalated once by
:func:`escalate_overdue`, a guarded UPDATE: two schedulers never both escalate one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.db import rowcount
from cloud.errors import Conflict, Invalid, NotFound

ESCALATED = Counter("mb_appeals_escalated_total", "appeals escalated for missing their deadline")
MAX_REPLY = 4000


class AppealStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    ANSWERED = "answered"
    CLOSED = "closed"


S = AppealStatus
OPEN = (S.SUBMITTED, S.ACCEPTED)
# action → (states it may start from, state it leads to)
MOVES: dict[str, tuple[tuple[AppealStatus, ...], AppealStatus]] = {
    "accept": ((S.SUBMITTED,), S.ACCEPTED),
    "answer": ((S.SUBMITTED, S.ACCEPTED), S.ANSWERED),
    "close": ((S.ANSWERED,), S.CLOSED),
    "reassign": ((S.SUBMITTED, S.ACCEPTED), S.SUBMITTED),
}
PARTY_KINDS = ("department", "property", "building_leader")


def log(
    session: Session,
    appeal: m.Appeal,
    action: str,
    before: str | None,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> None:
    session.add(
        m.AppealTransition(
            appeal_id=appeal.id,
            action=action,
            from_status=before,
            to_status=appeal.status,
            actor=actor,
            at=now,
            note=note,
        )
    )


@dataclass(frozen=True, slots=True)
class MoveIn:
    """What a move carries: the reply (answer), the new party (reassign), a note."""

    reply: str | None = None
    party_kind: str | None = None
    party_id: str | None = None
    note: str | None = None


def _locked(session: Session, appeal_id: int) -> m.Appeal:
    appeal = session.scalars(
        select(m.Appeal)
        .where(m.Appeal.id == appeal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if appeal is None:
        raise NotFound(f"appeal {appeal_id} does not exist")
    return appeal


def _reassign_to(session: Session, appeal: m.Appeal, data: MoveIn) -> str:
    kind, party = data.party_kind, data.party_id
    if kind not in PARTY_KINDS:
        raise Invalid(f"party_kind: one of {', '.join(PARTY_KINDS)}")
    if kind == "department":
        if not party or session.get(m.Department, party) is None:
            raise Invalid(f"party_id: department {party!r} does not exist")
    elif kind == "property":
        party = appeal.compound
    else:
        if appeal.building is None:
            raise Invalid("party_kind: this appeal names no building, so it has no leader")
        party = appeal.building
    appeal.responsible_kind, appeal.responsible_id = kind, party
    return f"to {kind} {party}"


def move(
    session: Session, appeal_id: int, action: str, data: MoveIn, *, actor: str, now: datetime
) -> m.Appeal:
    """Apply a staff action; Conflict from a state it does not start from, Invalid for
    an answer without a reply or a reassignment without a party. The caller has checked
    that ``actor`` may see the appeal."""
    if action not in MOVES:
        raise Invalid(f"unknown appeal action {action!r}; one of {', '.join(MOVES)}")
    allowed, target = MOVES[action]
    appeal = _locked(session, appeal_id)
    if appeal.status not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise Conflict(f"appeal {appeal.ticket} is {appeal.status}; {action} needs it {names}")
    note = data.note
    if action == "answer":
        reply = (data.reply or "").strip()
        if not reply:
            raise Invalid("reply: the answer the resident reads is required")
        if len(reply) > MAX_REPLY:
            raise Invalid(f"reply: at most {MAX_REPLY} characters")
        appeal.reply, appeal.replied_by, appeal.replied_at = reply, actor, now
    elif action == "reassign":
        where = _reassign_to(session, appeal, data)
        note = f"{where}; {note}" if note else where
    before, appeal.status, appeal.updated_at = appeal.status, target, now
    log(session, appeal, action, before, actor=actor, now=now, note=note)
    return appeal


def escalate_overdue(session: Session, *, now: datetime, limit: int = 200) -> list[int]:
    """Mark open appeals past their deadline as escalated, each once (a guarded UPDATE:
    ``escalated_at IS NULL`` in the WHERE decides between two schedulers); logs each.
    Returns the ids this call escalated."""
    due = session.scalars(
        select(m.Appeal.id)
        .where(
            m.Appeal.status.in_(OPEN),
            m.Appeal.due_at <= now,
            m.Appeal.escalated_at.is_(None),
        )
        .order_by(m.Appeal.due_at)
        .limit(limit)
    ).all()
    won = []
    for appeal_id in due:
        result = session.execute(
            update(m.Appeal)
            .where(
                m.Appeal.id == appeal_id,
                m.Appeal.escalated_at.is_(None),
                m.Appeal.status.in_(OPEN),
            )
            .values(escalated_at=now, updated_at=now)
        )
        if rowcount(result) != 1:
            continue
        appeal = session.get(m.Appeal, appeal_id)
        assert appeal is not None
        log(
            session,
            appeal,
            "escalate",
            appeal.status,
            actor="system:deadline",
            now=now,
            note=f"not answered by {appeal.due_at.isoformat(timespec='minutes')}",
        )
        ESCALATED.inc()
        won.append(appeal_id)
    return won
