"""Login throttling: too many failed logins for one user name, or from one address,
within a window refuse further attempts (429 with ``Retry-After``) until it ends.

The counters are rows of ``login_failures`` in the database, not process memory: the
cloud runs as several processes (API workers behind one address), and counters in
memory would give an attacker the limit once per process and forget it on every
restart. A refused attempt runs no password check at all, so it is cheap and says
nothing about whether the user exists; unknown user names are counted like known ones.

Each key's window starts at its first failure and lasts ``window_s``; within it, once
``max_failures`` are counted, attempts are refused until the window ends. A successful
login clears its user name's counter (not the address's: one account of one's own must
not reset the address budget used to guess others').

The address is the connection's peer (``request.client``): behind a reverse proxy, run
uvicorn with ``--proxy-headers --forwarded-allow-ips <proxy>`` so that it is the client's,
not the proxy's (else everyone shares one address budget).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from prometheus_client import Counter
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.db import models as m

THROTTLED = Counter(
    "mb_login_throttled_total",
    "login attempts refused (429) after too many failures, by what was throttled",
    ["by"],
)
FAILURES = Counter("mb_login_failures_total", "logins refused for a wrong user name or password")

KeyKind = Literal["user", "address"]


@dataclass(frozen=True)
class ThrottlePolicy:
    """Limits of failed logins per window; per address higher than per user, since
    several people may share an office's address."""

    max_failures_per_user: int = 5
    max_failures_per_address: int = 20
    window_s: float = 900.0

    def limit(self, kind: KeyKind) -> int:
        return self.max_failures_per_user if kind == "user" else self.max_failures_per_address


@dataclass(frozen=True)
class Refusal:
    """Why and until when login attempts are refused."""

    by: KeyKind
    until: datetime
    retry_after_s: int

    @property
    def message(self) -> str:
        what = "this user name" if self.by == "user" else "this address"
        return (
            f"too many failed logins for {what}; try again in {self.retry_after_s} s "
            f"(after {self.until.isoformat(timespec='seconds')})"
        )


def _key(kind: KeyKind, value: str) -> str:
    # hashed: a password typed into the user name field is not stored
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _keys(username: str, address: str) -> tuple[tuple[KeyKind, str], ...]:
    return (("user", _key("user", username)), ("address", _key("address", address)))


def check(
    session: Session, policy: ThrottlePolicy, username: str, address: str, *, now: datetime
) -> Refusal | None:
    """A Refusal when the user name or the address has used up its failures in the
    current window (counted in ``mb_login_throttled_total``), else None."""
    window = timedelta(seconds=policy.window_s)
    for kind, key in _keys(username, address):
        row = session.get(m.LoginFailure, key)
        if row is None or row.failures < policy.limit(kind) or row.first_at + window <= now:
            continue
        until = row.first_at + window
        THROTTLED.labels(kind).inc()
        return Refusal(
            by=kind, until=until, retry_after_s=max(1, math.ceil((until - now).total_seconds()))
        )
    return None


def record_failure(
    session: Session, policy: ThrottlePolicy, username: str, address: str, *, now: datetime
) -> None:
    """Count one failed login against the user name and the address (the caller
    commits, also when the request then fails)."""
    FAILURES.inc()
    start = now - timedelta(seconds=policy.window_s)
    session.execute(delete(m.LoginFailure).where(m.LoginFailure.first_at <= start))  # windows over
    for _kind, key in _keys(username, address):
        _bump(session, key, now)


def _bump(session: Session, key: str, now: datetime) -> None:
    # a guarded UPDATE counts atomically; two processes inserting the same new key at
    # once collide on the primary key, and the loser counts by UPDATE after all
    stmt = (
        update(m.LoginFailure)
        .where(m.LoginFailure.key == key)
        .values(failures=m.LoginFailure.failures + 1)
    )
    if cast(CursorResult[Any], session.execute(stmt)).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(m.LoginFailure(key=key, first_at=now, failures=1))
    except IntegrityError:
        session.execute(stmt)


def clear_user(session: Session, username: str) -> None:
    """Forget a user name's failures after a successful login."""
    session.execute(delete(m.LoginFailure).where(m.LoginFailure.key == _key("user", username)))


def failures(session: Session, kind: KeyKind, value: str) -> int:
    """How many failures are counted for a user name or address (for tests and tools)."""
    return (
        session.scalar(
            select(m.LoginFailure.failures).where(m.LoginFailure.key == _key(kind, value))
        )
        or 0
    )
