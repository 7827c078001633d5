"""Who is using the console: a login cookie holding an API token, and the CSRF check.

The cookie carries the same kind of token ``POST /api/auth/token`` issues (its hash in
``api_tokens``), so revoking a user's tokens or deactivating them ends their console
session too, and a console user can never do more than their token could through the API.
It is HttpOnly (page scripts never see it) and SameSite=Strict.

Every state-changing console request must also carry the CSRF token (header
``X-CSRF-Token``, which the base template makes htmx send, or a form field ``csrf``):
an HMAC of the session token, so it needs no storage and a page of another origin, which
cannot read ours, cannot forge it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from cloud import auth
from cloud.api.deps import DB
from cloud.db import models as m

COOKIE = "mb_console"
LANGUAGE_COOKIE = "mb_lang"
CSRF_HEADER = "X-CSRF-Token"
_CSRF_CONTEXT = b"microbrain console csrf v1"


def csrf_for(token: str) -> str:
    """The CSRF token that goes with a session token."""
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


class LoginRequired(Exception):
    """No valid session: the console answers with the login page (or, for htmx, a
    redirect header to it)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True)
class ConsoleSession:
    """The signed-in user of one request."""

    user: m.User
    csrf: str
    expires_at: datetime


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"


def _session(request: Request, db: Session) -> ConsoleSession:
    token = request.cookies.get(COOKIE)
    grant = auth.grant_for_token(db, token, now=request.app.state.api.clock()) if token else None
    if grant is None or token is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path if request.method == "GET" else "/")
    csrf = csrf_for(token)
    if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), csrf
    ):
        raise CsrfRefused()
    return ConsoleSession(grant.user, csrf, grant.expires_at)


def current_session(request: Request, db: DB) -> ConsoleSession:
    """The request's console session; LoginRequired or CsrfRefused otherwise."""
    return _session(request, db)


Signed = Annotated[ConsoleSession, Depends(current_session)]
