from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from cloud import auth, login_throttle
from cloud.api.deps import DB, CurrentUser, State
from cloud.api.schemas import LoginIn, TokenOut

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenOut,
    responses={
        401: {"description": "wrong username or password"},
        429: {
            "description": "too many failed logins for this user name or address; "
            "the Retry-After header says in how many seconds to retry"
        },
    },
)
def login(body: LoginIn, request: Request, db: DB, st: State) -> TokenOut:
    """Exchange a username and password for a bearer token. Failed logins are
    throttled per user name and per client address (cloud/login_throttle.py)."""
    now = st.clock()
    address = request.client.host if request.client else "unknown"
    refusal = login_throttle.check(db, st.login_throttle, body.username, address, now=now)
    if refusal is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            refusal.message,
            headers={"Retry-After": str(refusal.retry_after_s)},
        )
    user = auth.authenticate(db, body.username, body.password)
    if user is None:
        login_throttle.record_failure(db, st.login_throttle, body.username, address, now=now)
        db.commit()  # the count stays although the request fails
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    login_throttle.clear_user(db, body.username)
    return TokenOut(access_token=auth.issue_token(db, user, now=now, ttl_s=st.settings.token_ttl_s))


@router.get("/me")
def me(user: CurrentUser) -> dict[str, str | None]:
    """Who the token belongs to, and where they may act."""
    return {
        "username": user.username,
        "role": user.role,
        "community": user.community,
        "compound": user.compound,
        "building": user.building,
    }
