"""Hotspots as governance items (治理事项).

The same alert kind at the same place (the building; the compound when the alerts name
no building) opened ``threshold`` times within a rolling ``window_days`` is not one more
alert for the duty desk but a standing item for the compound to govern: one
``governance_items`` row with its history (each alert, once, in
``governance_item_alerts``). Further alerts of that kind at that place join the open
item's history; a supervisor closes it with a note; after that only a new crossing of
the threshold — counting alerts opened since the close — opens a new item.

Set-based: one grouped query finds the places with unattached alerts in the window, one
reads their open items, one their latest close, one the alerts to attach. Exactly once
across processes: an alert is the history's key (never attached twice, nor to two
items) and at most one item per kind and place is open (a partial unique index), so of
two processes racing, the loser's savepoint is undone and it counts nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.db import models as m
from cloud.db import transaction
from cloud.db.engine import rowcount
from cloud.errors import Conflict, NotFound
from microbrain.config_files import load_yaml

log = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,55}$")]

OPENED = Counter(
    "mb_governance_items_opened_total", "hotspots that became governance items, by kind", ["kind"]
)
ATTACHED = Counter(
    "mb_governance_alerts_attached_total",
    "alerts added to a governance item's history (the crossing's and later ones), by kind",
    ["kind"],
)
CLOSED_ITEMS = Counter(
    "mb_governance_items_closed_total", "governance items closed, by kind", ["kind"]
)
RACES = Counter(
    "mb_governance_races_total",
    "hotspot steps undone because another process did the same a moment before",
)


class HotspotPolicy(BaseModel):
    """When repeated alerts become a governance item."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    threshold: int = Field(default=3, ge=2, le=1000, description="alerts at one place …")
    window_days: float = Field(default=7.0, gt=0, le=90, description="… within these days")
    kinds: tuple[Id, ...] = Field(default=(), description="only these kinds; empty: all")
    exclude_kinds: tuple[Id, ...] = Field(default=(), description="never these kinds")


DEFAULT_HOTSPOTS = HotspotPolicy()


def load_hotspot_policy(path: str | Path) -> HotspotPolicy:
    """The policy from a YAML file, strictly (an unknown key names the file and line)."""
    return load_yaml(path, HotspotPolicy)


def item_key(kind: str, community: str, compound: str, building: str | None) -> str:
    """One item per kind and place: ``kind|community/compound/building`` ("-": none)."""
    return f"{kind}|{community}/{compound}/{building or '-'}"


Place = tuple[str, str, str, str | None]  # kind, community, compound, building


@dataclass(frozen=True, slots=True)
class Change:
    """What one step did at one place."""

    item_id: int
    kind: str
    community: str
    compound: str
    building: str | None
    action: Literal["opened", "added"]
    alerts: tuple[int, ...]


@dataclass(slots=True)
class HotspotReport:
    opened: int = 0
    added: int = 0  # alerts attached to items already open
    races: int = 0
    changes: list[Change] = field(default_factory=list)


def _window_filter(policy: HotspotPolicy, since: datetime, now: datetime) -> list[Any]:
    a = m.Alert
    where: list[Any] = [a.opened_at > since, a.opened_at <= now]
    if policy.kinds:
        where.append(a.kind.in_(policy.kinds))
    if policy.exclude_kinds:
        where.append(a.kind.not_in(policy.exclude_kinds))
    return where


def _unattached(session: Session, where: list[Any]) -> dict[Place, int]:
    """Alerts in the window not yet in any item's history, counted per kind and place."""
    a, h = m.Alert, m.GovernanceItemAlert
    cols = (a.kind, a.community, a.compound, a.building)
    rows = session.execute(
        select(*cols, func.count())
        .outerjoin(h, h.alert_id == a.id)
        .where(h.alert_id.is_(None), *where)
        .group_by(*cols)
    )
    return {(k, c, cp, b): int(n) for k, c, cp, b, n in rows}


def _chunks(values: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _open_items(session: Session, keys: Sequence[str]) -> dict[str, m.GovernanceItem]:
    gi = m.GovernanceItem
    found: dict[str, m.GovernanceItem] = {}
    for chunk in _chunks(keys):
        for item in session.scalars(select(gi).where(gi.key.in_(chunk), gi.status == OPEN)):
            found[item.key] = item
    return found


def _last_closed(session: Session, keys: Sequence[str]) -> dict[str, datetime]:
    gi = m.GovernanceItem
    found: dict[str, datetime] = {}
    for chunk in _chunks(keys):
        rows = session.execute(
            select(gi.key, func.max(gi.closed_at))
            .where(gi.key.in_(chunk), gi.status == CLOSED)
            .group_by(gi.key)
        )
        found.update((key, at) for key, at in rows if at is not None)
    return found


def _alerts_at(
    session: Session, where: list[Any], places: set[Place]
) -> dict[Place, list[tuple[int, datetime]]]:
    """The unattached alerts of ``places`` in the window, oldest first (one query over
    their kinds and compounds, narrowed to the exact places here)."""
    a, h = m.Alert, m.GovernanceItemAlert
    kinds = sorted({p[0] for p in places})
    compounds = sorted({p[2] for p in places})
    out: dict[Place, list[tuple[int, datetime]]] = defaultdict(list)
    for chunk in _chunks(compounds):
        rows = session.execute(
            select(a.id, a.opened_at, a.kind, a.community, a.compound, a.building)
            .outerjoin(h, h.alert_id == a.id)
            .where(h.alert_id.is_(None), a.kind.in_(kinds), a.compound.in_(chunk), *where)
            .order_by(a.opened_at, a.id)
        )
        for alert_id, opened_at, kind, community, compound, building in rows:
            place = (kind, community, compound, building)
            if place in places:
                out[place].append((int(alert_id), opened_at))
    return out


def _attach(session: Session, item_id: int, alerts: list[tuple[int, datetime]]) -> None:
    session.execute(
        insert(m.GovernanceItemAlert),
        [{"alert_id": i, "item_id": item_id, "opened_at": t} for i, t in alerts],
    )


def _open(session: Session, place: Place, alerts: list[tuple[int, datetime]], now: datetime) -> int:
    kind, community, compound, building = place
    item = m.GovernanceItem(
        key=item_key(*place),
        kind=kind,
        community=community,
        compound=compound,
        building=building,
        status=OPEN,
        opened_at=now,
        last_seen=max(t for _, t in alerts),
        count=len(alerts),
    )
    session.add(item)
    session.flush()  # the id; the open-key index guards a racing process here
    _attach(session, item.id, alerts)
    return item.id


def _add(session: Session, key: str, alerts: list[tuple[int, datetime]]) -> m.GovernanceItem | None:
    """Attach ``alerts`` to the open item of ``key`` (locked); None if it was closed or
    is gone since it was read."""
    gi = m.GovernanceItem
    item = session.scalars(
        select(gi)
        .where(gi.key == key, gi.status == OPEN)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if item is None:
        return None
    _attach(session, item.id, alerts)
    item.count += len(alerts)
    item.last_seen = max(item.last_seen, *(t for _, t in alerts))
    session.flush()
    return item


def evaluate(
    session: Session,
    policy: HotspotPolicy,
    now: datetime,
    *,
    community: str | None = None,
) -> HotspotReport:
    """Open an item for every place that crossed the threshold and add later alerts to
    the open ones (in ``community`` only, when given); the caller commits."""
    report = HotspotReport()
    where = _window_filter(policy, now - timedelta(days=policy.window_days), now)
    if community is not None:
        where.append(m.Alert.community == community)
    pending = _unattached(session, where)
    if not pending:
        return report
    keys = sorted({item_key(*p) for p in pending})
    open_items = _open_items(session, keys)
    closed = _last_closed(session, keys)
    # an open item takes any new alert; a place without one needs the threshold (the
    # grouped count is an upper bound: alerts before a close do not count, checked below)
    wanted = {p for p, n in pending.items() if item_key(*p) in open_items or n >= policy.threshold}
    if not wanted:
        return report
    for place, found in sorted(_alerts_at(session, where, wanted).items(), key=lambda x: x[0]):
        key = item_key(*place)
        after = closed.get(key)
        alerts = found
        if key not in open_items:
            if after is not None:
                alerts = [(i, t) for i, t in found if t >= after]
            if len(alerts) < policy.threshold:
                continue
        action: Literal["opened", "added"] = "added" if key in open_items else "opened"
        try:
            with session.begin_nested():
                if key in open_items:
                    item = _add(session, key, alerts)
                    if item is None:
                        continue  # closed a moment ago: the next step counts afresh
                    item_id = item.id
                else:
                    item_id = _open(session, place, alerts, now)
        except IntegrityError:
            # another process attached these alerts, or opened this place's item, first
            RACES.inc()
            report.races += 1
            log.info("hotspot %s handled by another process", key)
            continue
        ids = tuple(i for i, _ in alerts)
        ATTACHED.labels(place[0]).inc(len(ids))
        if action == "opened":
            OPENED.labels(place[0]).inc()
            report.opened += 1
        else:
            report.added += len(ids)
        kind, where_community, compound, building = place
        report.changes.append(
            Change(item_id, kind, where_community, compound, building, action, ids)
        )
    return report


def run(
    factory: sessionmaker[Session],
    now: datetime,
    policy: HotspotPolicy = DEFAULT_HOTSPOTS,
) -> HotspotReport:
    """One step in its own transaction (the scheduler's, every few minutes)."""
    with transaction(factory) as session:
        report = evaluate(session, policy, now)
    if report.opened or report.added:
        log.info("hotspots: %d items opened, %d alerts added", report.opened, report.added)
    return report


# --- reading and closing (the API's) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    alert_id: int
    opened_at: datetime


def scoped(session: Session, user: m.User, item_id: int) -> m.GovernanceItem:
    """The item if it lies in ``user``'s subtree; NotFound with the same words as for
    an id that does not exist otherwise."""
    item = session.get(m.GovernanceItem, item_id)
    if item is None:
        raise NotFound(f"governance item {item_id} does not exist")
    auth.require_place(
        user, item.community, item.compound, item.building, f"governance item {item_id}"
    )
    return item


def history(session: Session, item_ids: Sequence[int]) -> dict[int, list[HistoryEntry]]:
    """Each item's alerts, oldest first (one query for them all)."""
    h = m.GovernanceItemAlert
    out: dict[int, list[HistoryEntry]] = {i: [] for i in item_ids}
    if not item_ids:
        return out
    rows = session.execute(
        select(h.item_id, h.alert_id, h.opened_at)
        .where(h.item_id.in_(item_ids))
        .order_by(h.item_id, h.opened_at, h.alert_id)
    )
    for item_id, alert_id, opened_at in rows:
        out[item_id].append(HistoryEntry(alert_id, opened_at))
    return out


def close(
    session: Session, user: m.User, item_id: int, *, note: str, now: datetime
) -> m.GovernanceItem:
    """open → closed with the closer's note, once (a guarded UPDATE: of two closing at
    once one wins, the other gets Conflict)."""
    item = scoped(session, user, item_id)
    gi = m.GovernanceItem
    done = session.execute(
        update(gi)
        .where(gi.id == item_id, gi.status == OPEN)
        .values(status=CLOSED, closed_at=now, closed_by=user.username, close_note=note)
    )
    if rowcount(done) != 1:
        raise Conflict(f"governance item {item_id} is already closed")
    session.refresh(item)
    CLOSED_ITEMS.labels(item.kind).inc()
    return item


__all__ = [
    "DEFAULT_HOTSPOTS",
    "Change",
    "HistoryEntry",
    "HotspotPolicy",
    "HotspotReport",
    "close",
    "evaluate",
    "history",
    "item_key",
    "load_hotspot_policy",
    "run",
    "scoped",
]
