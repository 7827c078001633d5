"""Acknowledgement links: a notification's way back into the console.

Robots are one-way, so each notification addressed to a contact with a console user
carries ``{console}/ack/{token}``. The token is random, signed with the cloud's secret
(a forged one is refused before any query), bound to one alert and one user, expires,
and works once: only its sha256 is stored, with the time it was used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.db import rowcount
from cloud.errors import Conflict, NotFound

_NONCE_BYTES = 18


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signature(secret: str, nonce: str) -> str:
    return _b64(hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).digest()[:18])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: Session, *, secret: str, alert_id: int, user: str, now: datetime, ttl_s: float
) -> str:
    """A new token for ``user`` to acknowledge ``alert_id`` until ``now + ttl_s``."""
    nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
    token = f"{nonce}.{_signature(secret, nonce)}"
    session.add(
        m.AckLink(
            token_sha256=_digest(token),
            alert_id=alert_id,
            user=user,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token


def _check_signature(secret: str, token: str) -> None:
    nonce, _, signature = token.partition(".")
    if not nonce or not hmac.compare_digest(signature, _signature(secret, nonce)):
        raise NotFound("this acknowledgement link is not valid")


def peek(session: Session, *, secret: str, token: str, now: datetime) -> m.AckLink:
    """The link if it can still be used; NotFound for a forged or unknown token,
    Conflict for one used already or expired (the message says which)."""
    _check_signature(secret, token)
    link = session.get(m.AckLink, _digest(token))
    if link is None:
        raise NotFound("this acknowledgement link is not valid")
    if link.used_at is not None:
        raise Conflict("this acknowledgement link has been used already")
    if link.expires_at <= now:
        raise Conflict("this acknowledgement link has expired; open the alert in the console")
    return link


def redeem(session: Session, *, secret: str, token: str, now: datetime) -> m.AckLink:
    """Mark the link used, once: of two requests racing with the same token exactly one
    gets it (the guarded UPDATE's row count decides); the other gets Conflict."""
    link = peek(session, secret=secret, token=token, now=now)
    taken = session.execute(
        update(m.AckLink)
        .where(m.AckLink.token_sha256 == link.token_sha256, m.AckLink.used_at.is_(None))
        .values(used_at=now)
    )
    if rowcount(taken) != 1:
        raise Conflict("this acknowledgement link has been used already")
    session.refresh(link)
    return link
