"""Users, roles, scopes and bearer tokens; gateway broker credentials.

A user is bound to one node of the tree (the whole district, a community, a compound
or a building) and sees and acts only within that subtree. Roles:

- ``duty``: works alerts and work orders in their subtree
- ``supervisor``: the same, and closes alerts
- ``engineer``: reads; manages gateways' broker credentials (district engineers also
  read dead letters)
- ``admin``: everything, and manages users

What each role may do is one table, :data:`cloud.permissions.ROLE_ACTIONS`. A place
outside the user's subtree is answered as if it did not exist (``NotFound``), so ids
do not tell what exists elsewhere.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, CursorResult, and_, delete, select, true
from sqlalchemy.orm import Session

from cloud import audit, permissions
from cloud.db import models as m
from cloud.errors import Conflict, Forbidden, Invalid, NotFound
from cloud.permissions import may_grant
from microbrain.broker import mosquitto_conf
from microbrain.protocol import GatewayPath

Role = permissions.Role  # the roles live with their table; callers name them auth.Role too

_hasher = PasswordHasher()
# verified against when the user does not exist or is inactive, so that every login
# attempt costs one argon2 verify with the same parameters and timing does not tell;
# made once, at import, by the same hasher as the users' hashes
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(
    session: Session,
    username: str,
    password: str,
    role: Role | str,
    *,
    now: datetime,
    community: str | None = None,
    compound: str | None = None,
    building: str | None = None,
) -> m.User:
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
    user = m.User(
        username=username,
        password_hash=hash_password(password),
        role=Role(role).value,
        community=community,
        compound=compound,
        building=building,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> m.User | None:
    """The active user with this password, or None; known or not, exactly one argon2
    verify runs. A hash made with other parameters than today's is renewed on a
    successful login, so known users verify at the same cost as the dummy."""
    user = session.scalars(select(m.User).where(m.User.username == username)).first()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What a valid bearer token stands for: its user, until when."""

    user: m.User
    expires_at: datetime


def issue_token(session: Session, user: m.User, *, now: datetime, ttl_s: int) -> str:
    """A random bearer token; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    session.add(
        m.ApiToken(
            token_hash=_token_hash(token),
            user_id=user.id,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token


def grant_for_token(session: Session, token: str, *, now: datetime) -> Grant | None:
    """The token's user and expiry, or None when the token is unknown (never issued, or
    revoked: its row is deleted), expired, or its user is deactivated."""
    row = session.get(m.ApiToken, _token_hash(token))
    if row is None or row.expires_at <= now:
        return None
    user = session.get(m.User, row.user_id)
    return Grant(user, row.expires_at) if user is not None and user.active else None


def user_for_token(session: Session, token: str, *, now: datetime) -> m.User | None:
    grant = grant_for_token(session, token, now=now)
    return grant.user if grant else None


def revoke_token(session: Session, token: str) -> None:
    """End one session (a console logout): the token's row goes."""
    session.execute(delete(m.ApiToken).where(m.ApiToken.token_hash == _token_hash(token)))


def revoke_tokens(
    session: Session, actor: m.User, user_id: int, *, now: datetime, note: str | None = None
) -> int:
    """End every session of a user in ``actor``'s subtree (their token rows are deleted,
    so REST calls and open streams fail their next check); audited. Returns how many."""
    target = manageable_user(session, actor, user_id)
    result = session.execute(delete(m.ApiToken).where(m.ApiToken.user_id == target.id))
    revoked = cast(CursorResult[Any], result).rowcount
    audit.record(
        session,
        actor=actor.username,
        action="tokens_revoked",
        target=f"user:{target.id}",
        at=now,
        note=note or f"{revoked} token(s) of {target.username!r}",
    )
    return int(revoked)


def deactivate_user(
    session: Session, actor: m.User, user_id: int, *, now: datetime, note: str | None = None
) -> m.User:
    """Deactivate a user in ``actor``'s subtree: logins fail and their tokens are deleted
    (a later reactivation does not revive old sessions); audited. Idempotent."""
    target = manageable_user(session, actor, user_id)
    if target.id == actor.id:
        raise Conflict("you cannot deactivate yourself; ask another admin")
    target.active = False
    session.execute(delete(m.ApiToken).where(m.ApiToken.user_id == target.id))
    audit.record(
        session,
        actor=actor.username,
        action="user_deactivated",
        target=f"user:{target.id}",
        at=now,
        note=note or target.username,
    )
    session.flush()
    return target


def reactivate_user(
    session: Session, actor: m.User, user_id: int, *, now: datetime, note: str | None = None
) -> m.User:
    """Let a deactivated user of ``actor``'s subtree log in again (with their password;
    their old sessions stay ended); audited. Idempotent."""
    target = manageable_user(session, actor, user_id)
    target.active = True
    audit.record(
        session,
        actor=actor.username,
        action="user_reactivated",
        target=f"user:{target.id}",
        at=now,
        note=note or target.username,
    )
    session.flush()
    return target


def reset_password(
    session: Session, actor: m.User, user_id: int, password: str, *, now: datetime
) -> m.User:
    """Set a new password for a user of ``actor``'s subtree and end all their sessions
    (whoever knew the old one is logged out); audited, without the password. Not for
    one's own: a stolen admin token must not be able to take over the account."""
    target = manageable_user(session, actor, user_id)
    if target.id == actor.id:
        raise Conflict("you cannot reset your own password; ask another admin")
    if len(password) < 8:
        raise Invalid("password: a password needs at least 8 characters")
    target.password_hash = hash_password(password)
    result = session.execute(delete(m.ApiToken).where(m.ApiToken.user_id == target.id))
    revoked = int(cast(CursorResult[Any], result).rowcount)
    audit.record(
        session,
        actor=actor.username,
        action="password_reset",
        target=f"user:{target.id}",
        at=now,
        note=f"password of {target.username!r} reset; {revoked} token(s) ended",
    )
    session.flush()
    return target


def manageable_user(session: Session, actor: m.User, user_id: int) -> m.User:
    """A user ``actor`` may manage: bound inside the actor's subtree, with a role no
    higher than the actor's. Outside the subtree reads as not existing."""
    target = session.get(m.User, user_id)
    if target is None or not in_scope(actor, target.community, target.compound, target.building):
        raise NotFound(f"user {user_id} does not exist")
    if not may_grant(actor.role, target.role):
        raise Forbidden(f"user {user_id} has a role ({target.role}) above yours ({actor.role})")
    return target


def create_user_as(
    session: Session,
    actor: m.User,
    username: str,
    password: str,
    role: Role | str,
    *,
    now: datetime,
    community: str | None = None,
    compound: str | None = None,
    building: str | None = None,
) -> m.User:
    """``actor`` creates a user: inside the actor's own subtree (Forbidden otherwise,
    checked before whether the node exists, so the answer tells nothing of other
    areas), at a node of the site tree (Invalid, naming the field), with a role no
    higher than the actor's; audited."""
    for mine, theirs, what in (
        (actor.community, community, "community"),
        (actor.compound, compound, "compound"),
        (actor.building, building, "building"),
    ):
        if mine is not None and theirs != mine:
            raise Forbidden(f"a user outside your {what} {mine!r} cannot be created by you")
    if not may_grant(actor.role, role):
        raise Forbidden(f"role {role!r} is above yours ({actor.role}); you cannot grant it")
    require_node(session, community, compound, building)
    user = create_user(
        session,
        username,
        password,
        role,
        now=now,
        community=community,
        compound=compound,
        building=building,
    )
    audit.record(
        session,
        actor=actor.username,
        action="user_created",
        target=f"user:{user.id}",
        at=now,
        note=f"{username} ({user.role})",
    )
    return user


def require_node(
    session: Session, community: str | None, compound: str | None, building: str | None
) -> None:
    """Raise Invalid naming the field unless the node exists in the site tree."""
    if (compound is not None and community is None) or (building is not None and compound is None):
        raise Invalid(
            "compound/building: a scope names its parents: community, then compound, then building"
        )
    if community is not None and session.get(m.Community, community) is None:
        raise Invalid(
            f"community: no community {community!r} in the site; load it with the site file first"
        )
    if (
        compound is not None
        and session.scalars(
            select(m.Compound.pk).where(
                m.Compound.community == community, m.Compound.id == compound
            )
        ).first()
        is None
    ):
        raise Invalid(f"compound: no compound {compound!r} in community {community!r}")
    if (
        building is not None
        and session.scalars(
            select(m.Building.pk).where(
                m.Building.community == community,
                m.Building.compound == compound,
                m.Building.id == building,
            )
        ).first()
        is None
    ):
        raise Invalid(f"building: no building {building!r} in compound {community}/{compound}")


def in_scope(
    user: m.User, community: str | None, compound: str | None, building: str | None
) -> bool:
    """Whether a place lies in the user's subtree."""
    return (
        (user.community is None or user.community == community)
        and (user.compound is None or user.compound == compound)
        and (user.building is None or user.building == building)
    )


def scope_clause(user: m.User, model: Any) -> ColumnElement[bool]:
    """A WHERE clause limiting ``model`` (a table class with community, compound and
    building columns) to the scope."""
    parts: list[ColumnElement[bool]] = []
    if user.community is not None:
        parts.append(model.community == user.community)
    if user.compound is not None:
        parts.append(model.compound == user.compound)
    if user.building is not None:
        parts.append(model.building == user.building)
    return and_(true(), *parts)


def device_scope_clause(user: m.User) -> ColumnElement[bool]:
    """The scope for devices (a query joining Device to its Gateway): a device's place is
    its gateway's community and compound and its own building."""
    parts: list[ColumnElement[bool]] = []
    if user.community is not None:
        parts.append(m.Gateway.community == user.community)
    if user.compound is not None:
        parts.append(m.Gateway.compound == user.compound)
    if user.building is not None:
        parts.append(m.Device.building == user.building)
    return and_(true(), *parts)


def require_place(
    user: m.User, community: str | None, compound: str | None, building: str | None, what: str
) -> None:
    """NotFound("<what> does not exist") unless the place lies in the user's subtree:
    the same answer as for an id that does not exist, so ids do not tell what exists
    outside one's area."""
    if not in_scope(user, community, compound, building):
        raise NotFound(f"{what} does not exist")


# --- gateway broker credentials --------------------------------------------------


def set_gateway_password(
    session: Session, gateway_id: str, password: str, *, now: datetime
) -> m.GatewayCredential:
    """Store (only the hash of) a gateway's broker password; username = gateway id."""
    gateway = session.get(m.Gateway, gateway_id)
    if gateway is None:
        raise Conflict(f"gateway {gateway_id!r} is not registered")
    row = session.get(m.GatewayCredential, gateway_id)
    if row is None:
        row = m.GatewayCredential(
            gateway=gateway_id, username=gateway_id, password_hash="", created_at=now
        )
        session.add(row)
    row.password_hash = mosquitto_conf.hash_password(password)
    row.created_at = now
    return row


def broker_accounts(session: Session) -> list[mosquitto_conf.BrokerAccount]:
    """The gateways' broker logins from the stored credentials, for
    ``microbrain broker config --cloud-db`` (hash, prefix and bound client id)."""
    rows = session.execute(
        select(m.GatewayCredential, m.Gateway)
        .join(m.Gateway, m.Gateway.id == m.GatewayCredential.gateway)
        .order_by(m.Gateway.id)
    ).all()
    return [
        mosquitto_conf.BrokerAccount(
            cred.username, cred.password_hash, GatewayPath(gw.community, gw.compound, gw.id)
        )
        for cred, gw in rows
    ]


def broker_files(session: Session, cloud_user: str = mosquitto_conf.CLOUD_USER) -> tuple[str, str]:
    """(password file, ACL file) text from the stored gateway credentials, for export; the
    generated broker enforces the same rules with the dynamic-security plugin instead."""
    accounts = broker_accounts(session)
    passwd = "".join(f"{a.username}:{a.password_hash}\n" for a in accounts)
    acl = mosquitto_conf.acl_entries(
        ((a.username, a.gateway) for a in accounts if a.gateway), cloud_user
    )
    return passwd, acl


def authenticate_gateway(session: Session, username: str, password: str) -> m.Gateway | None:
    """A gateway logging in with its broker credentials (evidence uploads)."""
    cred = session.scalars(
        select(m.GatewayCredential).where(m.GatewayCredential.username == username)
    ).first()
    if cred is None or not mosquitto_conf.check_password(cred.password_hash, password):
        return None
    return session.get(m.Gateway, cred.gateway)
