from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from cloud import auth
from cloud.api.deps import DB, CurrentUser, State
from cloud.api.schemas import LoginIn, TokenOut

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut)
def login(body: LoginIn, db: DB, st: State) -> TokenOut:
    """Exchange a username and password for a bearer token."""
    user = auth.authenticate(db, body.username, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    return TokenOut(access_token=auth.issue_token(db, user, now=st.clock(), ttl_s=st.settings.token_ttl_s))


@router.get("/me")
def me(user: CurrentUser) -> dict:
    """Who the token belongs to, and where they may act."""
    return {"username": user.username, "role": user.role, "community": user.community,
            "compound": user.compound, "building": user.building}
