from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, CurrentUser, State
from cloud.db import models as m
from cloud.errors import Forbidden, NotFound

router = APIRouter(prefix="/api", tags=["access"])
IdField = Annotated[str | None, Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    password: str = Field(min_length=8, max_length=256)
    role: auth.Role
    community: IdField = None
    compound: IdField = None
    building: IdField = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    community: str | None
    compound: str | None
    building: str | None
    active: bool


@router.get("/users", response_model=list[UserOut])
def list_users(db: DB, user: CurrentUser) -> list[UserOut]:
    """Users in your area (admins)."""
    auth.require_role(user, {auth.Role.ADMIN}, "list users")
    rows = db.scalars(select(m.User).where(auth.scope_clause(user, m.User)).order_by(m.User.username))
    return [UserOut.model_validate(r) for r in rows]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, db: DB, user: CurrentUser, st: State) -> UserOut:
    """Create a user bound to a node inside your own area (admins)."""
    auth.require_role(user, {auth.Role.ADMIN}, "create users")
    # the new user's node must lie inside the admin's own subtree
    for mine, theirs, what in ((user.community, body.community, "community"),
                               (user.compound, body.compound, "compound"),
                               (user.building, body.building, "building")):
        if mine is not None and theirs != mine:
            raise Forbidden(f"a user outside your {what} {mine!r} cannot be created by you")
    new = auth.create_user(db, body.username, body.password, body.role, now=st.clock(),
                           community=body.community, compound=body.compound, building=body.building)
    return UserOut.model_validate(new)


@router.put("/gateways/{gateway_id}/password", status_code=204)
def set_gateway_password(gateway_id: str, password: Annotated[str, Body(embed=True, min_length=12, max_length=256)],
                         db: DB, user: CurrentUser, st: State) -> None:
    """Set a gateway's broker password (engineers, admins); only its hash is kept."""
    auth.require_role(user, {auth.Role.ENGINEER, auth.Role.ADMIN}, "manage gateway credentials")
    gw = db.get(m.Gateway, gateway_id)
    if gw is not None:
        auth.require_place(user, gw.community, gw.compound, None, f"gateway {gateway_id}")
    auth.set_gateway_password(db, gateway_id, password, now=st.clock())


@router.get("/broker/{which}", response_class=PlainTextResponse)
def broker_file(which: str, db: DB, user: CurrentUser) -> str:
    """Mosquitto's ``passwd`` (hashes only) or ``acl`` for all registered gateways
    (district-wide admins: the files cover the whole broker)."""
    auth.require_role(user, {auth.Role.ADMIN}, "export broker files")
    if user.community is not None:
        raise Forbidden("the broker files cover the whole district; ask a district admin")
    passwd, acl = auth.broker_files(db)
    if which not in ("passwd", "acl"):
        raise NotFound(f"no broker file {which!r} (passwd or acl)")
    return passwd if which == "passwd" else acl
