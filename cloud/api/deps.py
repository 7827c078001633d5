"""What routes depend on: the app's state, a session, the current user, and the one
place where a route's action is checked against the role table
(``user: Annotated[m.User, allowed(Action.X)]``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api.notify import ChangeNotifier
from cloud.clock import Clock, system_clock
from cloud.commands import CommandSender
from cloud.db import models as m
from cloud.login_throttle import ThrottlePolicy
from cloud.permissions import Action, require
from cloud.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    factory: sessionmaker[Session]
    clock: Clock = system_clock
    commands: CommandSender | None = None
    notifier: ChangeNotifier = field(default_factory=ChangeNotifier)
    stream_poll_s: float = 0.25
    # an open stream re-checks its token (revoked? user deactivated?) when this much
    # time has passed on ``clock``; its expiry it checks at every wake-up
    stream_auth_check_s: float = 15.0
    login_throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    ingest_ready: Callable[[], bool] | None = None  # None: this process runs no ingest
    # sessions for requests that only read (GET, HEAD) and the console's live feed:
    # cloud.db.read_only's, which on SQLite do not take the write lock; None: ``factory``
    readers: sessionmaker[Session] | None = None

    @property
    def read_factory(self) -> sessionmaker[Session]:
        return self.readers or self.factory


def state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.api)


def session(request: Request) -> Iterator[Session]:
    """A session per request, committed when the route returns without error and before
    the response is sent (used with ``scope="function"`` below): a failed commit is a
    500, not a 200, and what the response names (a login token) is stored by the time
    the client has it. Routes that publish or notify commit first themselves, so nothing
    announces uncommitted work."""
    state: ApiState = request.app.state.api
    # a GET reads (no route here changes anything on GET): it needs no write lock
    factory = state.read_factory if request.method in ("GET", "HEAD") else state.factory
    with factory() as s:
        try:
            yield s
        except BaseException:
            s.rollback()
            raise
        s.commit()


_bearer = HTTPBearer(auto_error=False)


def token_from_request(
    request: Request, creds: HTTPAuthorizationCredentials | None, *, query_token: bool = False
) -> str:
    """The bearer token, or 401. ``query_token``: also accept ``?access_token=``, for the
    event stream only (EventSource cannot set headers); elsewhere a token in the URL
    would only end up in access logs and browser history."""
    token = (
        creds.credentials
        if creds
        else (request.query_params.get("access_token") if query_token else None)
    )
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not authenticated: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def grant_from_request(
    request: Request,
    db: Session,
    creds: HTTPAuthorizationCredentials | None,
    *,
    query_token: bool = False,
) -> auth.Grant:
    """The token's user and expiry, or 401 (unknown, revoked, expired, user deactivated)."""
    token = token_from_request(request, creds, query_token=query_token)
    grant = auth.grant_for_token(db, token, now=request.app.state.api.clock())
    if grant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "token unknown or expired; log in again",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return grant


def user_from_request(
    request: Request,
    db: Session,
    creds: HTTPAuthorizationCredentials | None,
    *,
    query_token: bool = False,
) -> m.User:
    """The authenticated user, or 401."""
    return grant_from_request(request, db, creds, query_token=query_token).user


# FastAPI runs the code after a dependency's ``yield`` after the response by default
# (scope "request"); "function" runs it (the commit) before the response goes out
_session = Depends(session, scope="function")


def current_user(
    request: Request,
    db: Annotated[Session, _session],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> m.User:
    return user_from_request(request, db, creds)


def allowed(action: Action) -> Any:
    """A dependency giving the current user if their role may do ``action``, else 403
    (before the route looks up any id, so the answer is the same for every id):
    ``user: Annotated[m.User, allowed(Action.CLOSE_ALERT)]``."""

    def _permitted(user: Annotated[m.User, Depends(current_user)]) -> m.User:
        require(user, action)
        return user

    _permitted.action = action  # type: ignore[attr-defined]  # read by the route-coverage test
    return Depends(_permitted)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
DB = Annotated[Session, _session]
CurrentUser = Annotated[m.User, Depends(current_user)]
State = Annotated[ApiState, Depends(state)]
