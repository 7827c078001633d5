"""Users, roles, scopes and bearer tokens; gateway broker credentials.

A user is bound to one node of the tree (the whole district, a community, a compound
or a building) and sees and acts only within that subtree. Roles:

- ``duty``: works alerts and work orders in their subtree
- ``supervisor``: the same, and closes alerts
- ``engineer``: reads; manages models and gateways
- ``admin``: everything, and manages users
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, select, true
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.errors import Conflict, Forbidden
from microbrain.broker import mosquitto_conf
from microbrain.protocol import GatewayPath

_hasher = PasswordHasher()
# verify against this when the user does not exist, so timing does not tell
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class Role(StrEnum):
    DUTY = "duty"
    SUPERVISOR = "supervisor"
    ENGINEER = "engineer"
    ADMIN = "admin"


ACTS_ON_ALERTS = {Role.DUTY, Role.SUPERVISOR, Role.ADMIN}
CLOSES_ALERTS = {Role.SUPERVISOR, Role.ADMIN}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, username: str, password: str, role: Role | str, *,
                now: datetime, community: str | None = None, compound: str | None = None,
                building: str | None = None) -> m.User:
    """Create a user bound to a node: (None) district, (c) community, (c, k) compound,
    (c, k, b) building."""
    if (compound and not community) or (building and not compound):
        raise Conflict("a scope names its parents: community, then compound, then building")
    if len(password) < 8:
        raise Conflict("a password needs at least 8 characters")
    if role not in {r.value for r in Role}:
        raise Conflict(f"unknown role {role!r}; one of " + ", ".join(r.value for r in Role))
    if session.scalars(select(m.User).where(m.User.username == username)).first():
        raise Conflict(f"user {username!r} exists")
    user = m.User(username=username, password_hash=hash_password(password), role=Role(role).value,
                  community=community, compound=compound, building=building, active=True,
                  created_at=now)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> m.User | None:
    user = session.scalars(select(m.User).where(m.User.username == username)).first()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        return None
    return user if verify_password(user.password_hash, password) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: m.User, *, now: datetime, ttl_s: int) -> str:
    """A random bearer token; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    session.add(m.ApiToken(token_hash=_token_hash(token), user_id=user.id,
                           expires_at=now + timedelta(seconds=ttl_s)))
    return token


def user_for_token(session: Session, token: str, *, now: datetime) -> m.User | None:
    row = session.get(m.ApiToken, _token_hash(token))
    if row is None or row.expires_at <= now:
        return None
    user = session.get(m.User, row.user_id)
    return user if user is not None and user.active else None


def in_scope(user: m.User, community: str | None, compound: str | None,
             building: str | None) -> bool:
    """Whether a place lies in the user's subtree."""
    return ((user.community is None or user.community == community)
            and (user.compound is None or user.compound == compound)
            and (user.building is None or user.building == building))


def scope_clause(user: m.User, model: type):  # type: ignore[no-untyped-def]
    """A WHERE clause limiting ``model`` (with community/compound/building) to the scope."""
    parts = []
    if user.community is not None:
        parts.append(model.community == user.community)
    if user.compound is not None:
        parts.append(model.compound == user.compound)
    if user.building is not None:
        parts.append(model.building == user.building)
    return and_(true(), *parts)


def require_role(user: m.User, allowed: set[Role], action: str) -> None:
    if user.role not in allowed:
        raise Forbidden(f"role {user.role!r} may not {action}")


def require_place(user: m.User, community: str | None, compound: str | None,
                  building: str | None, what: str) -> None:
    if not in_scope(user, community, compound, building):
        raise Forbidden(f"{what} is outside {user.username!r}'s area")


# --- gateway broker credentials --------------------------------------------------


def set_gateway_password(session: Session, gateway_id: str, password: str, *,
                         now: datetime) -> m.GatewayCredential:
    """Store (only the hash of) a gateway's broker password; username = gateway id."""
    gateway = session.get(m.Gateway, gateway_id)
    if gateway is None:
        raise Conflict(f"gateway {gateway_id!r} is not registered")
    row = session.get(m.GatewayCredential, gateway_id)
    if row is None:
        row = m.GatewayCredential(gateway=gateway_id, username=gateway_id, password_hash="", created_at=now)
        session.add(row)
    row.password_hash = mosquitto_conf.hash_password(password)
    row.created_at = now
    return row


def broker_files(session: Session, cloud_user: str = mosquitto_conf.CLOUD_USER) -> tuple[str, str]:
    """(password file, ACL file) text for Mosquitto from the stored gateway credentials."""
    rows = session.execute(
        select(m.GatewayCredential, m.Gateway).join(m.Gateway, m.Gateway.id == m.GatewayCredential.gateway)
        .order_by(m.Gateway.id)).all()
    passwd = "".join(f"{cred.username}:{cred.password_hash}\n" for cred, _ in rows)
    acl = mosquitto_conf.acl_entries(((cred.username, GatewayPath(gw.community, gw.compound, gw.id)) for cred, gw in rows),
                      cloud_user)
    return passwd, acl


def authenticate_gateway(session: Session, username: str, password: str) -> m.Gateway | None:
    """A gateway logging in with its broker credentials (evidence uploads)."""
    cred = session.scalars(select(m.GatewayCredential).where(m.GatewayCredential.username == username)).first()
    if cred is None or not mosquitto_conf.check_password(cred.password_hash, password):
        return None
    return session.get(m.Gateway, cred.gateway)
