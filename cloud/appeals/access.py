"""Who may read an appeal: its reporter (ticket + the access key from the intake, or
ticket + the phone it was made with) and the staff whose area holds it. Every other
asker gets the same NotFound as for a ticket that does not exist, so tickets tell
nothing; ratings come from the reporter only, once, after the answer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud import auth
from cloud.appeals import tokens
from cloud.appeals.lifecycle import AppealStatus, log
from cloud.db import models as m
from cloud.db import rowcount
from cloud.errors import Conflict, Invalid, NotFound

MAX_COMMENT = 500


def not_found(ticket: str) -> NotFound:
    return NotFound(f"appeal {ticket} does not exist")


def for_reporter(
    session: Session,
    ticket: str,
    *,
    key: str | None = None,
    phone: str | None = None,
    secret: str,
    for_update: bool = False,
) -> m.Appeal:
    """The appeal if ``key`` (or ``phone``) is its reporter's; NotFound otherwise, in the
    words a missing ticket gets."""
    if not tokens.TICKET.match(ticket) or not (key or phone):
        raise not_found(ticket)
    query = select(m.Appeal).where(m.Appeal.ticket == ticket)
    if for_update:
        query = query.with_for_update()
    appeal = session.scalars(query).one_or_none()
    if appeal is None:
        raise not_found(ticket)
    opened = bool(key) and tokens.same(appeal.access_sha256, tokens.digest(key or ""))
    if not opened and phone:
        try:
            contact = tokens.contact_key(secret, tokens.normalise_phone(phone))
        except Invalid:
            contact = ""
        opened = tokens.same(appeal.contact_sha256, contact)
    if not opened:
        raise not_found(ticket)
    return appeal


def scoped(session: Session, user: m.User, appeal_id: int) -> m.Appeal:
    """The appeal if it lies in ``user``'s area; NotFound in a missing id's words."""
    appeal = session.get(m.Appeal, appeal_id)
    if appeal is None:
        raise NotFound(f"appeal {appeal_id} does not exist")
    auth.require_place(
        user, appeal.community, appeal.compound, appeal.building, f"appeal {appeal_id}"
    )
    return appeal


def rate(
    session: Session,
    appeal: m.Appeal,
    rating: int,
    comment: str | None,
    *,
    now: datetime,
) -> m.Appeal:
    """The reporter's rating (1-5) of the answer: once, and only once answered (a guarded
    UPDATE: two tabs sending at once give one rating)."""
    if not 1 <= rating <= 5:
        raise Invalid("rating: 1 to 5")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise Invalid(f"comment: at most {MAX_COMMENT} characters")
    if appeal.status not in (AppealStatus.ANSWERED, AppealStatus.CLOSED):
        raise Conflict(f"appeal {appeal.ticket} is {appeal.status}; it can be rated once answered")
    result = session.execute(
        update(m.Appeal)
        .where(
            m.Appeal.id == appeal.id,
            m.Appeal.rating.is_(None),
            m.Appeal.status.in_((AppealStatus.ANSWERED, AppealStatus.CLOSED)),
        )
        .values(rating=rating, rating_comment=comment or None, rated_at=now, updated_at=now)
    )
    if rowcount(result) != 1:
        raise Conflict(f"appeal {appeal.ticket} has been rated already")
    session.refresh(appeal)
    log(
        session,
        appeal,
        "rate",
        appeal.status,
        actor="resident",
        now=now,
        note=f"{rating}/5" + (f": {comment}" if comment else ""),
    )
    return appeal


def timeline(session: Session, appeal_id: int) -> list[m.AppealTransition]:
    return list(
        session.scalars(
            select(m.AppealTransition)
            .where(m.AppealTransition.appeal_id == appeal_id)
            .order_by(m.AppealTransition.at, m.AppealTransition.id)
        )
    )
