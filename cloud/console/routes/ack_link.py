"""Acknowledge from the phone: the page a notification's link opens (``/ack/{token}``).

No login: the link is the credential, signed, bound to one user and one alert, expiring
and good for one acknowledgement (:mod:`cloud.response.ack_links`). The page shows the
alert; the button acknowledges it as the link's user, checked like a console click
(the user active, their role allowed, the alert inside their area).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import alerts
from cloud.api.deps import DB, State
from cloud.console.templating import render
from cloud.db import models as m
from cloud.errors import Conflict, DomainError, Forbidden, NotFound
from cloud.permissions import Action, require
from cloud.response import ack_links

router = APIRouter()
# what issue() makes: a base64url nonce, '.', a base64url signature; anything else is a
# 404 before a query
Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}\.[A-Za-z0-9_-]{16,64}$")]
# each refusal's words (ack.*) and status: a stranger's guess reads like a used link's
# cousin, never like a valid one
REFUSALS = {
    NotFound: ("ack.invalid", 404),
    Conflict: ("ack.unusable", 410),
    Forbidden: ("ack.forbidden", 403),
}


def _user(db: Session, link: m.AckLink) -> m.User:
    user = db.scalars(select(m.User).where(m.User.username == link.user)).first()
    if user is None or not user.active:
        raise Forbidden(f"user {link.user!r} cannot act (deactivated or removed)")
    require(user, Action.ACKNOWLEDGE_ALERT)
    alerts.scoped_alert(db, user, link.alert_id)
    return user


def _refused(request: Request, err: DomainError) -> HTMLResponse:
    key, status = next(v for k, v in REFUSALS.items() if isinstance(err, k))
    return render(
        request, "ack_link.html", {"refusal": key, "reason": str(err)}, status_code=status
    )


@router.get("/ack/{token}", response_class=HTMLResponse)
def ack_page(token: Token, request: Request, db: DB, st: State) -> HTMLResponse:
    """The alert the link is for, with one button."""
    secret = st.settings.secret_key.get_secret_value()
    try:
        link = ack_links.peek(db, secret=secret, token=token, now=st.clock())
        user = _user(db, link)
    except DomainError as err:
        return _refused(request, err)
    alert = alerts.get_alert(db, link.alert_id)
    return render(request, "ack_link.html", {"alert": alert, "link_user": user.username})


@router.post("/ack/{token}", response_class=HTMLResponse)
def ack_submit(token: Token, request: Request, db: DB, st: State) -> HTMLResponse:
    """Acknowledge as the link's user; the link is spent only when that succeeds."""
    secret = st.settings.secret_key.get_secret_value()
    now = st.clock()
    try:
        link = ack_links.redeem(db, secret=secret, token=token, now=now)
        user = _user(db, link)
        alert = alerts.acknowledge(
            db, link.alert_id, actor=user.username, now=now, note="via notification link"
        )
    except DomainError as err:
        db.rollback()
        return _refused(request, err)
    db.commit()
    st.notifier.notify()
    return render(
        request, "ack_link.html", {"alert": alert, "link_user": user.username, "done": True}
    )
