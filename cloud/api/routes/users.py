from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, State, allowed
from cloud.api.params import MAX_DB_INT
from cloud.api.schemas import NoteIn
from cloud.db import models as m
from cloud.errors import NotFound
from cloud.permissions import Action

router = APIRouter(prefix="/api", tags=["access"])
IdField = Annotated[str | None, Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
UserId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="a user's id (GET /api/users)")]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    password: str = Field(min_length=8, max_length=256)
    role: auth.Role
    community: IdField = None
    compound: IdField = None
    building: IdField = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    community: str | None
    compound: str | None
    building: str | None
    active: bool


class RevokedOut(BaseModel):
    user_id: int
    revoked: int = Field(
        description="how many tokens were ended (open streams end at their next check)"
    )


@router.get("/users", response_model=list[UserOut])
def list_users(db: DB, user: Annotated[m.User, allowed(Action.LIST_USERS)]) -> list[UserOut]:
    """Users in your area (admins)."""
    rows = db.scalars(
        select(m.User).where(auth.scope_clause(user, m.User)).order_by(m.User.username)
    )
    return [UserOut.model_validate(r) for r in rows]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(
    body: UserIn, db: DB, user: Annotated[m.User, allowed(Action.MANAGE_USERS)], st: State
) -> UserOut:
    """Create a user bound to an existing node inside your own area, with a role no
    higher than yours (admins); 403 outside your area, 422 for a node that does not exist."""
    new = auth.create_user_as(
        db,
        user,
        body.username,
        body.password,
        body.role,
        now=st.clock(),
        community=body.community,
        compound=body.compound,
        building=body.building,
    )
    return UserOut.model_validate(new)


@router.post("/users/{user_id}/deactivate", response_model=UserOut)
def deactivate_user(
    user_id: UserId,
    db: DB,
    user: Annotated[m.User, allowed(Action.MANAGE_USERS)],
    st: State,
    body: NoteIn | None = None,
) -> UserOut:
    """Deactivate a user of your area (admins): their logins fail, their tokens end, and
    their open streams close at the next check; audited."""
    target = auth.deactivate_user(
        db, user, user_id, now=st.clock(), note=body.note if body else None
    )
    return UserOut.model_validate(target)


@router.post("/users/{user_id}/reactivate", response_model=UserOut)
def reactivate_user(
    user_id: UserId,
    db: DB,
    user: Annotated[m.User, allowed(Action.MANAGE_USERS)],
    st: State,
    body: NoteIn | None = None,
) -> UserOut:
    """Let a deactivated user of your area log in again (admins; their old sessions stay
    ended); audited."""
    target = auth.reactivate_user(
        db, user, user_id, now=st.clock(), note=body.note if body else None
    )
    return UserOut.model_validate(target)


@router.post("/users/{user_id}/password", response_model=UserOut)
def reset_password(
    user_id: UserId,
    body: PasswordIn,
    db: DB,
    user: Annotated[m.User, allowed(Action.MANAGE_USERS)],
    st: State,
) -> UserOut:
    """Set a new password for a user of your area (admins; not your own): every session
    of theirs ends; audited."""
    target = auth.reset_password(db, user, user_id, body.password, now=st.clock())
    return UserOut.model_validate(target)


@router.post("/users/{user_id}/revoke-tokens", response_model=RevokedOut)
def revoke_tokens(
    user_id: UserId,
    db: DB,
    user: Annotated[m.User, allowed(Action.MANAGE_USERS)],
    st: State,
    body: NoteIn | None = None,
) -> RevokedOut:
    """End every session of a user of your area (admins; they may log in again); audited."""
    revoked = auth.revoke_tokens(
        db, user, user_id, now=st.clock(), note=body.note if body else None
    )
    return RevokedOut(user_id=user_id, revoked=revoked)


@router.put("/gateways/{gateway_id}/password", status_code=204)
def set_gateway_password(
    gateway_id: str,
    password: Annotated[str, Body(embed=True, min_length=12, max_length=256)],
    db: DB,
    user: Annotated[m.User, allowed(Action.MANAGE_GATEWAYS)],
    st: State,
) -> None:
    """Set a gateway's broker password (engineers, admins); only its hash is kept. A
    gateway outside your area answers 404 like one not registered."""
    gw = db.get(m.Gateway, gateway_id)
    if gw is None:
        raise NotFound(f"gateway {gateway_id} does not exist")
    auth.require_place(user, gw.community, gw.compound, None, f"gateway {gateway_id}")
    auth.set_gateway_password(db, gateway_id, password, now=st.clock())


@router.get("/broker/{which}", response_class=PlainTextResponse)
def broker_file(
    which: str, db: DB, user: Annotated[m.User, allowed(Action.EXPORT_BROKER_FILES)]
) -> str:
    """Mosquitto's ``passwd`` (hashes only) or ``acl`` for all registered gateways
    (district-wide admins: the files cover the whole broker)."""
    passwd, acl = auth.broker_files(db)
    if which not in ("passwd", "acl"):
        raise NotFound(f"no broker file {which!r} (passwd or acl)")
    return passwd if which == "passwd" else acl
