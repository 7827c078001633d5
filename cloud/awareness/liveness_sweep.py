"""The awareness loop's liveness sweep: every gateway, camera and sensor against its own
expected interval, with debounced offline/online alerts and one item per flapping device.

One cycle (:func:`run`) is a handful of set-based queries whatever the number of
devices: the sweep row (locked: sweeps in several processes run one after another); the
gateways and the devices, each joined to a mark of its ``device_liveness`` row (none,
settled, pending); the rows that are pending, or whose device changed, in full (a
settled row's times and JSON are never read); then the changed rows written back in one
executemany, and the few alerts that changed. 10,000 devices take about a quarter of a
second of CPU (``scripts/bench_awareness.py``).

What is alerted, and by whom:

- ``gateway_offline`` (网关离线) is raised here, once the gateway's debounced state is
  offline, and cleared when it is online again: a dead gateway cannot report itself.
- cameras and sensors: the edge raises and clears ``camera_offline`` /
  ``sensor_offline`` itself (it sees them directly, with its own debounce), so the sweep
  raises no offline alert of its own for them; it tracks their state for the counts,
  and their flapping. While their gateway is offline they are ``unknown``: one
  ``gateway_offline``, not twenty more alerts.
- ``device_flapping`` (设备频繁掉线), for any of the three: ``flap_threshold`` down-episodes
  within ``flap_window_s`` become one item whose count (the alert's ``count`` and its
  message) grows with each further episode; ``flap_stable_s`` without a change clears
  it. While a gateway flaps it raises no ``gateway_offline`` (one still offline when
  the flapping ends gets it then). While a camera or sensor flaps, the ingest counts the
  edge's offline raises in the item instead of opening alerts
  (:func:`absorb_offline_event`); one still offline when the flapping ends gets its
  edge alert raised here, with the edge's key, for the edge's clear to resolve.
- What still comes before the flapping is seen: a gateway whose drops outlast its
  debounce raises at most ``flap_threshold - 1`` offline alerts (short drops none); a
  camera or sensor at most ``flap_threshold`` edge alerts (the edge's raise of the
  drop that makes the threshold arrives before the sweep counts it). Each of those is
  cleared by its own return.

Alerts go through :func:`cloud.alerts.fold_event` (one live alert per key, escalation,
the console), each raise and clear stored as an event row carrying its evidence, as the
trend warnings do (:mod:`cloud.warning.service`). A raise whose alert is already live
(opened by another process, or left from before) is not folded again; two opening the
same key at once collide on the alerts' unique live key and the loser's savepoint is
undone.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth, liveness
from cloud.alerts import alert_key, fold_event, live_alert, store_cloud_event
from cloud.awareness.liveness_policy import DEFAULT_POLICY, LivenessPolicy
from cloud.awareness.liveness_state import (
    DOWN,
    OFFLINE,
    ONLINE,
    UNKNOWN,
    UP,
    Change,
    Timing,
    Track,
    advance,
)
from cloud.db import models as m
from cloud.db import transaction
from microbrain.protocol import Event, EventState, Severity

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
GATEWAY_OFFLINE = "gateway_offline"
DEVICE_FLAPPING = "device_flapping"
GATEWAY, CAMERA, SENSOR = "gateway", "camera", "sensor"
TYPES = (GATEWAY, CAMERA, SENSOR)
TYPE_NAMES = {GATEWAY: "网关", CAMERA: "摄像头", SENSOR: "传感器"}
# the edge's own offline alerts of its cameras and sensors (edge/video/pipeline.py,
# edge/sensors/rules.py)
OFFLINE_KINDS = {CAMERA: "camera_offline", SENSOR: "sensor_offline"}
# a sweep finding the last one at its own moment, or up to this much later (another
# process, its clock a little ahead), leaves this moment to it
SAME_MOMENT = timedelta(seconds=5)
AHEAD = timedelta(seconds=60)

SWEEPS = Counter(
    "mb_awareness_liveness_sweeps_total", "liveness sweeps, by outcome (ran|skipped)", ["outcome"]
)
CHANGES = Counter(
    "mb_awareness_liveness_changes_total",
    "debounced liveness changes and raw down-episodes, by device type and change",
    ["type", "change"],
)
ALERTS = Counter(
    "mb_awareness_liveness_alerts_total",
    "gateway_offline / device_flapping alerts raised, refreshed or cleared by the sweep",
    ["kind", "action"],
)
ABSORBED = Counter(
    "mb_awareness_liveness_absorbed_total",
    "edge offline raises of a flapping camera or sensor counted in its one item, by kind",
    ["kind"],
)
REFUSED = Counter(
    "mb_awareness_liveness_refused_total",
    "alerts the sweep could not make (an id the protocol refuses), by kind",
    ["kind"],
)


@dataclass(slots=True)
class SweepReport:
    """What one sweep saw and did. ``counts[type][state]``: devices by type and
    debounced state (online / offline / unknown) after the sweep."""

    at: datetime
    skipped: bool = False
    devices: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    downs: int = 0
    went_offline: int = 0
    came_online: int = 0
    raised: int = 0  # gateway_offline opened
    cleared: int = 0  # gateway_offline cleared
    suppressed: int = 0  # gateway offline but flapping: its one item stands instead
    flapping_started: int = 0
    flapping_ended: int = 0
    flapping: int = 0  # devices flapping after the sweep
    refused: int = 0
    raised_for_edge: int = 0  # camera/sensor offline raised when their flapping ended
    new: int = 0  # rows made for devices seen the first time
    written: int = 0  # rows written back
    changes: list[tuple[str, str, str, Change]] = field(default_factory=list)

    @property
    def alerts_changed(self) -> bool:
        """Whether the live consoles and the responder should be woken."""
        return bool(
            self.raised
            or self.cleared
            or self.flapping_started
            or self.flapping_ended
            or self.raised_for_edge
        )


@dataclass(frozen=True, slots=True)
class _Device:
    gateway: m.Gateway
    type: str
    id: str
    building: str | None


Key = tuple[str, str, str]  # gateway, type, device
_LIVE = "mb_liveness_live_alerts"  # session.info: live alerts prefetched for _fold
NEW, SETTLED, PENDING = 0, 1, 2  # a device's row: none yet, nothing pending, to be loaded


def _local(when: datetime) -> str:
    return when.astimezone(SHANGHAI).strftime("%m-%d %H:%M")


def _minutes(seconds: float) -> int:
    return max(0, int(seconds // 60))


def _window(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} 小时"
    return f"{round(seconds / 60)} 分钟"


def _label(d: _Device) -> str:
    if d.type == GATEWAY:
        name = d.gateway.name
        return f"{name}（{d.id}）" if name and name != d.id else d.id
    return f"{TYPE_NAMES[d.type]} {d.id}（网关 {d.gateway.id}）"


def _observe(gw: m.Gateway, alive: bool, d_type: str, d_id: str) -> str:
    if d_type == GATEWAY:
        if alive:
            return UP
        return DOWN if gw.last_seen is not None else UNKNOWN  # never heard: nothing to say
    if not alive:
        return UNKNOWN
    return UP if liveness.reported_up(gw, d_type, d_id) else DOWN


def _down_since(gw: m.Gateway, now: datetime) -> datetime:
    """When a gateway seen down for the first time went down: its last heartbeat's
    silence ran out then (or its last will came then)."""
    if gw.last_seen is None:
        return now
    if gw.state != "online":
        return gw.last_seen
    return gw.last_seen + timedelta(seconds=liveness.MISSED_HEARTBEATS * gw.heartbeat_s)


# --- the sweep row ------------------------------------------------------------------


def _claim(session: Session, now: datetime) -> bool:
    """Lock the sweep row (made on first use) and stamp it; False when another sweep
    already covered this moment."""
    row = session.scalars(
        select(m.LivenessSweep)
        .where(m.LivenessSweep.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        try:
            with session.begin_nested():
                session.add(m.LivenessSweep(id=1, last_at=now, sweeps=1))
        except IntegrityError:
            # made by another process a moment ago: take its lock like any later sweep
            return _claim(session, now)
        return True
    if now - SAME_MOMENT < row.last_at <= now + AHEAD:
        return False
    row.last_at = now
    row.sweeps += 1
    session.flush()
    return True


# --- loading and saving -------------------------------------------------------------

_COLUMNS = (
    "observed",
    "observed_since",
    "state",
    "state_since",
    "alerted",
    "downs",
    "last_change_at",
    "flapping",
    "flap_count",
    "flapping_since",
)


def _settled(t: type[m.DeviceLiveness]) -> ColumnElement[bool]:
    """Rows with nothing pending: up, online, no episode in the window, no item. Nearly
    every row, every cycle; their times and JSON are never read unless their device
    changes."""
    return and_(
        t.observed == UP,
        t.state == ONLINE,
        t.flapping.is_(False),
        t.alerted.is_(False),
        sql_cast(t.downs, Text) == "[]",
    )


@dataclass(slots=True)
class _Census:
    """Every gateway and device, and what their rows are: none yet (``known`` lacks
    them), settled, or pending (to be loaded whole); and rows whose device is gone."""

    devices: dict[Key, _Device]
    known: set[Key]
    settled: set[Key]
    gone: list[Key]


def _census(session: Session) -> _Census:
    """Two queries over the devices, each joined to its row for a mark (strings and a
    number: no JSON, no times), and one for rows whose device was removed."""
    t, d = m.DeviceLiveness, m.Device
    mark = case((t.device.is_(None), NEW), (_settled(t), SETTLED), else_=PENDING)
    census = _Census({}, set(), set(), [])

    def note(key: Key, mark: int) -> None:
        if mark != NEW:
            census.known.add(key)
            if mark == SETTLED:
                census.settled.add(key)

    gateways: dict[str, m.Gateway] = {}
    for g, g_mark in session.execute(
        select(m.Gateway, mark).outerjoin(
            t, and_(t.gateway == m.Gateway.id, t.type == GATEWAY, t.device == m.Gateway.id)
        )
    ).all():
        gateways[g.id] = g
        key = (g.id, GATEWAY, g.id)
        census.devices[key] = _Device(g, GATEWAY, g.id, g.building)
        note(key, g_mark)
    rows = (
        session.connection()
        .execute(
            select(d.gateway, d.type, d.id, d.building, mark)
            .where(d.type.in_((CAMERA, SENSOR)))
            .outerjoin(t, and_(t.gateway == d.gateway, t.type == d.type, t.device == d.id))
        )
        .all()
    )
    for gid, d_type, d_id, building, d_mark in rows:
        gw = gateways.get(gid)
        if gw is not None:
            key = (gid, d_type, d_id)
            # the device's own building (None: the compound's grounds), as the edge's
            # events about it carry: the same alert keys
            census.devices[key] = _Device(gw, d_type, d_id, building)
            note(key, d_mark)
    gone = select(t.gateway, t.type, t.device).where(
        or_(
            and_(t.type == GATEWAY, ~exists().where(m.Gateway.id == t.gateway)),
            and_(
                t.type != GATEWAY,
                ~exists().where(d.gateway == t.gateway, d.type == t.type, d.id == t.device),
            ),
        )
    )
    census.gone = [(g, ty, dv) for g, ty, dv in session.execute(gone).all()]
    return census


def _tracks(session: Session, where: ColumnElement[bool]) -> dict[Key, Track]:
    """The full rows ``where`` says."""
    t = m.DeviceLiveness
    rows = session.execute(
        select(t.gateway, t.type, t.device, *(getattr(t, c) for c in _COLUMNS)).where(where)
    ).all()
    return {
        (r[0], r[1], r[2]): Track(
            observed=r[3],
            observed_since=r[4],
            state=r[5],
            state_since=r[6],
            alerted=r[7],
            downs=list(r[8] or []),
            last_change_at=r[9],
            flapping=r[10],
            flap_count=r[11],
            flapping_since=r[12],
        )
        for r in rows
    }


def _load(session: Session, settled: set[Key], observed: dict[Key, str]) -> dict[Key, Track]:
    """The rows that are not settled, and the settled ones whose device is not seen up
    or whose gateway is not both settled and up (it may be offline: they go unknown)."""
    t = m.DeviceLiveness
    tracks = _tracks(session, not_(_settled(t)))
    calm = {k[0] for k in settled if k[1] == GATEWAY and observed.get(k) == UP}
    wanted = [k for k in settled if k in observed and (observed[k] != UP or k[0] not in calm)]
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        tracks.update(_tracks(session, tuple_(t.gateway, t.type, t.device).in_(chunk)))
    return tracks


def _row(key: Key, t: Track) -> dict[str, Any]:
    values = {c: getattr(t, c) for c in _COLUMNS}
    return {"gateway": key[0], "type": key[1], "device": key[2], **values}


def _save(session: Session, tracks: dict[Key, Track], new: set[Key], gone: Iterable[Key]) -> int:
    inserts = [_row(k, tracks[k]) for k in new]
    updates = [_row(k, t) for k, t in tracks.items() if t.dirty and k not in new]
    if inserts:
        session.execute(insert(m.DeviceLiveness), inserts)
    if updates:
        # ORM bulk UPDATE by primary key: one executemany
        session.execute(update(m.DeviceLiveness), updates)
    t = m.DeviceLiveness
    for gid, d_type, d_id in gone:
        session.execute(delete(t).where(t.gateway == gid, t.type == d_type, t.device == d_id))
    return len(inserts) + len(updates)


# --- alerts -------------------------------------------------------------------------


def _key(kind: str, d: _Device) -> str:
    return alert_key(kind, d.gateway.community, d.gateway.compound, d.building, None, d.id)


def _event(
    kind: str, d: _Device, state: EventState, now: datetime, message: str, detail: dict[str, Any]
) -> Event | None:
    try:
        return Event(
            ts=now,
            kind=kind,
            state=state,
            severity=Severity.WARNING,
            building=d.building,
            source=d.id,
            message=message[:500],
            detail={"device_type": d.type, **detail},
        )
    except ValidationError as err:
        REFUSED.labels(kind).inc()
        log.warning("liveness: no %s alert for %s/%s: %s", kind, d.gateway.id, d.id, err)
        return None


def _prefetch_live(session: Session, keys: Iterable[str]) -> None:
    """The live alerts of a cycle's gateway raises and clears, in one query locked in id
    order (as the ingest's batch does), for :func:`_fold` to take instead of one query
    each: a site-wide outage is hundreds of them in one cycle."""
    found: dict[str, m.Alert | None] = dict.fromkeys(keys)
    if found:
        for alert in session.scalars(
            select(m.Alert)
            .where(m.Alert.key.in_(sorted(found)), m.Alert.active.is_(True))
            .order_by(m.Alert.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ):
            if alert.active:
                found[alert.key] = alert
    session.info[_LIVE] = found


def _fold(session: Session, event: Event, d: _Device, now: datetime) -> m.Alert | None:
    """Raise or clear through the alert machinery; a raise whose alert is live already is
    not counted again. Returns the alert opened or cleared (None: nothing to do)."""
    key = _key(event.kind, d)
    known: dict[str, m.Alert | None] = session.info.get(_LIVE, {})
    live = known.pop(key) if key in known else live_alert(session, key)
    if event.state == EventState.RAISED and live is not None:
        return None
    if event.state == EventState.CLEARED and live is None:
        return None  # resolved by hand meanwhile: nothing to clear
    try:
        with session.begin_nested():
            alert = fold_event(session, event, d.gateway, now, cache={key: live})
            store_cloud_event(session, event, d.gateway, alert)
    except IntegrityError:
        log.info("liveness: %s opened by another process", key)
        return None
    return alert


def _offline_alert(
    session: Session, d: _Device, t: Track, now: datetime, blind: int, report: SweepReport
) -> None:
    gw = d.gateway
    silent = (now - gw.last_seen).total_seconds() if gw.last_seen else None
    heard = f"已 {_minutes(silent)} 分钟无心跳" if silent is not None else "从未收到心跳"
    last = f"（最后心跳 北京时间 {_local(gw.last_seen)}）" if gw.last_seen else ""
    msg = f"网关离线：{_label(d)} {heard}{last}"
    if blind:
        msg += f"，其下 {blind} 台摄像头/传感器状态未知"
    detail: dict[str, Any] = {"heartbeat_s": gw.heartbeat_s, "devices_unknown": blind}
    if gw.last_seen is not None:
        detail["last_seen"] = gw.last_seen.isoformat()
        detail["silent_s"] = round(silent or 0.0, 1)
    # marked even when no alert can be made: counted and logged once per outage, not
    # every cycle
    t.alerted, t.dirty = True, True
    event = _event(GATEWAY_OFFLINE, d, EventState.RAISED, now, msg, detail)
    if event is None:
        report.refused += 1
        return
    if _fold(session, event, d, now) is not None:
        report.raised += 1
        ALERTS.labels(GATEWAY_OFFLINE, "raised").inc()


def _online_alert(
    session: Session, d: _Device, t: Track, now: datetime, offline_since: datetime, r: SweepReport
) -> None:
    away = (now - offline_since).total_seconds()
    msg = f"网关恢复在线：{_label(d)}，离线约 {_minutes(away)} 分钟"
    t.alerted, t.dirty = False, True
    event = _event(GATEWAY_OFFLINE, d, EventState.CLEARED, now, msg, {"offline_s": round(away)})
    if event is not None and _fold(session, event, d, now) is not None:
        r.cleared += 1
        ALERTS.labels(GATEWAY_OFFLINE, "cleared").inc()


def _flap_message(d: _Device, t: Track, policy: LivenessPolicy) -> str:
    since = t.flapping_since
    total = f"（自北京时间 {_local(since)} 起共 {t.flap_count} 次）" if since else ""
    return f"设备频繁掉线：{_label(d)} {_window(policy.flap_window_s)}内 {len(t.downs)} 次{total}"


def _flap_detail(t: Track, policy: LivenessPolicy) -> dict[str, Any]:
    return {
        "count": t.flap_count,
        "in_window": len(t.downs),
        "window_s": policy.flap_window_s,
        "threshold": policy.flap_threshold,
    }


def _flapping_started(
    session: Session, d: _Device, t: Track, now: datetime, policy: LivenessPolicy
) -> bool:
    msg = _flap_message(d, t, policy)
    live = live_alert(session, _key(DEVICE_FLAPPING, d))
    if live is not None:
        # left live from before (its clear was refused, or made by another process):
        # the same item, its count brought up to date
        live.count, live.message, live.updated_at = t.flap_count, msg, now
        return False
    event = _event(DEVICE_FLAPPING, d, EventState.RAISED, now, msg, _flap_detail(t, policy))
    if event is None:
        return False
    alert = _fold(session, event, d, now)
    if alert is None:
        return False
    alert.count = t.flap_count  # one item, the count of its episodes
    ALERTS.labels(DEVICE_FLAPPING, "raised").inc()
    return True


def _flapping_ended(
    session: Session, d: _Device, now: datetime, count: int, policy: LivenessPolicy
) -> bool:
    msg = (
        f"设备掉线已平稳：{_label(d)} {_minutes(policy.flap_stable_s)} 分钟无变化，"
        f"频繁掉线解除（共 {count} 次）"
    )
    event = _event(DEVICE_FLAPPING, d, EventState.CLEARED, now, msg, {"count": count})
    if event is None or _fold(session, event, d, now) is None:
        return False
    ALERTS.labels(DEVICE_FLAPPING, "cleared").inc()
    return True


def _offline_after_flapping(session: Session, d: _Device, now: datetime) -> bool:
    """A camera or sensor that settled offline when its flapping ended: the edge's
    ``camera_offline`` / ``sensor_offline`` raises were absorbed into the item while it
    flapped (:func:`absorb_offline_event`), so the one that stands is raised here, on
    the edge's behalf, with the edge's key; the edge's clear resolves it as usual."""
    kind = OFFLINE_KINDS[d.type]
    msg = f"{TYPE_NAMES[d.type]}离线：{_label(d)} 频繁掉线平稳后仍离线"
    event = _event(kind, d, EventState.RAISED, now, msg, {"after_flapping": True})
    if event is None or _fold(session, event, d, now) is None:
        return False
    ALERTS.labels(kind, "raised").inc()
    return True


def absorb_offline_event(
    session: Session, event: Event, gateway: m.Gateway, now: datetime
) -> tuple[bool, m.Alert | None]:
    """For the ingest, before it folds an event: whether an edge ``camera_offline`` /
    ``sensor_offline`` raise is absorbed because its device is flapping, and the
    ``device_flapping`` item it then belongs to (None if that was resolved by hand).

    A flapping camera's edge raises would each open an alert (each is cleared before
    the next): twenty drops, twenty alerts. Absorbed, they only touch the one item
    (its last time; its count is the sweep's, of the same drops). Clears are never
    absorbed: one for an alert opened before the flapping was seen still resolves it.
    Any other event: ``(False, None)``, at the cost of a dictionary lookup.
    """
    d_type = next((t for t, k in OFFLINE_KINDS.items() if k == event.kind), None)
    if d_type is None or event.state != EventState.RAISED:
        return False, None
    row = session.get(m.DeviceLiveness, (gateway.id, d_type, event.source))
    if row is None or not row.flapping:
        return False, None
    key = alert_key(
        DEVICE_FLAPPING, gateway.community, gateway.compound, event.building, None, event.source
    )
    item = live_alert(session, key)
    if item is not None:
        item.last_ts = max(item.last_ts, event.ts)
        item.updated_at = now
    ABSORBED.labels(event.kind).inc()
    return True, item


def _refresh_flapping(
    session: Session,
    counted: list[tuple[_Device, Track]],
    now: datetime,
    policy: LivenessPolicy,
) -> None:
    """Each further episode of a flapping device: its one item's count and message, in
    one query for all of them (an item resolved by hand meanwhile stays resolved)."""
    keys = {_key(DEVICE_FLAPPING, d): (d, t) for d, t in counted}
    for alert in session.scalars(
        select(m.Alert).where(m.Alert.key.in_(keys), m.Alert.active.is_(True)).with_for_update()
    ):
        d, t = keys[alert.key]
        alert.count = t.flap_count
        alert.message = _flap_message(d, t, policy)
        alert.last_ts = max(alert.last_ts, now)
        alert.updated_at = now
        ALERTS.labels(DEVICE_FLAPPING, "refreshed").inc()


# --- the sweep ----------------------------------------------------------------------


def sweep(session: Session, now: datetime, policy: LivenessPolicy = DEFAULT_POLICY) -> SweepReport:
    """One cycle over every device, in the caller's transaction (the caller commits)."""
    report = SweepReport(at=now)
    if not _claim(session, now):
        report.skipped = True
        SWEEPS.labels("skipped").inc()
        return report
    census = _census(session)
    devices = census.devices
    alive = {
        d.id: liveness.gateway_alive(d.gateway, now) for d in devices.values() if d.type == GATEWAY
    }
    observed = {
        key: _observe(d.gateway, alive[key[0]], key[1], key[2]) for key, d in devices.items()
    }
    tracks = _load(session, census.settled, observed)
    timings = {
        gid: Timing.of(d.gateway.heartbeat_s, policy)
        for (gid, ty, _), d in devices.items()
        if ty == GATEWAY
    }
    new: set[Key] = set()
    gateway_state: dict[str, str] = {}
    tally: Tally[tuple[str, str]] = Tally()
    blind_under: Tally[str] = Tally()
    counted: list[tuple[_Device, Track]] = []
    pending: list[tuple[_Device, Track, datetime]] = []

    # gateways first: their state decides whether their devices can be known
    order = sorted(devices, key=lambda k: k[1] != GATEWAY)
    for key in order:
        d = devices[key]
        gw = d.gateway
        seen = observed[key]
        t = tracks.get(key)
        if t is None:
            if key in census.settled:
                # settled, still up, its gateway settled and up: nothing can change
                gateway_state.setdefault(gw.id, ONLINE)
                tally[(d.type, ONLINE)] += 1
                continue
            since = _down_since(gw, now) if d.type == GATEWAY else now
            t = tracks[key] = Track.first(seen, since, now)
            new.add(key)
        blind = d.type != GATEWAY and gateway_state.get(gw.id, UNKNOWN) != ONLINE
        was_state_since = t.state_since
        was_count = t.flap_count
        changes = advance(t, seen, now, timings[gw.id], policy, blind=blind)
        if d.type == GATEWAY:
            gateway_state[gw.id] = t.state
        elif t.state == UNKNOWN:
            blind_under[gw.id] += 1
        tally[(d.type, t.state)] += 1
        for change in changes:
            report.changes.append((*key, change))
            CHANGES.labels(d.type, change.value).inc()
            if change == Change.DOWN:
                report.downs += 1
            elif change == Change.WENT_OFFLINE:
                report.went_offline += 1
            elif change == Change.CAME_ONLINE:
                report.came_online += 1
            elif change == Change.FLAPPING_STARTED:
                report.flapping_started += _flapping_started(session, d, t, now, policy)
            elif change == Change.FLAP_COUNTED:
                counted.append((d, t))
            elif change == Change.FLAPPING_ENDED:
                report.flapping_ended += _flapping_ended(session, d, now, was_count, policy)
                if d.type != GATEWAY and t.state == OFFLINE:
                    report.raised_for_edge += _offline_after_flapping(session, d, now)
        if t.flapping:
            report.flapping += 1
        if d.type == GATEWAY:
            if t.alerted and t.state == ONLINE:
                pending.append((d, t, was_state_since))
            elif t.state == OFFLINE and not t.alerted:
                if t.flapping:
                    report.suppressed += Change.WENT_OFFLINE in changes
                else:
                    pending.append((d, t, now))  # raised below, once its devices are counted

    _prefetch_live(session, (_key(GATEWAY_OFFLINE, d) for d, _, _ in pending))
    try:
        for d, t, since in pending:
            if t.state == ONLINE:
                _online_alert(session, d, t, now, since, report)
            else:
                _offline_alert(session, d, t, now, blind_under[d.id], report)
    finally:
        session.info.pop(_LIVE, None)
    if counted:
        _refresh_flapping(session, counted, now, policy)
    report.devices = len(devices)
    report.new = len(new)
    report.counts = {ty: {s: tally[(ty, s)] for s in (ONLINE, OFFLINE, UNKNOWN)} for ty in TYPES}
    report.written = _save(session, tracks, new, census.gone)
    SWEEPS.labels("ran").inc()
    return report


# --- what a user's area has now ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A gateway, camera or sensor of a user's area that is not simply online."""

    community: str
    compound: str
    building: str | None
    gateway: str
    type: str
    device: str
    state: str  # online | offline | unknown (debounced)
    since: datetime
    flapping: bool
    flap_count: int


def troubled(session: Session, user: m.User, *, limit: int = 200) -> list[DeviceStatus]:
    """The devices in ``user``'s area that the last sweep found offline, unknown or
    flapping: flapping first, then offline, then unknown, longest first. Scoped as the
    API scopes gateways (:func:`cloud.auth.scope_clause`) and devices
    (:func:`cloud.auth.device_scope_clause`): another area's devices are never named."""
    t, g, d = m.DeviceLiveness, m.Gateway, m.Device
    not_fine = or_(t.state != ONLINE, t.flapping.is_(True))
    cols = (g.community, g.compound, t.gateway, t.type, t.device, t.state, t.state_since)
    gateways = session.execute(
        select(*cols, g.building, t.flapping, t.flap_count)
        .join(g, g.id == t.gateway)
        .where(t.type == GATEWAY, not_fine, auth.scope_clause(user, g))
        .limit(limit)
    ).all()
    devices = session.execute(
        select(*cols, func.coalesce(d.building, g.building), t.flapping, t.flap_count)
        .join(g, g.id == t.gateway)
        .join(d, and_(d.gateway == t.gateway, d.id == t.device, d.type == t.type))
        .where(t.type != GATEWAY, not_fine, auth.device_scope_clause(user))
        .limit(limit)
    ).all()
    found = [
        DeviceStatus(
            community=r[0],
            compound=r[1],
            building=r[7],
            gateway=r[2],
            type=r[3],
            device=r[4],
            state=r[5],
            since=r[6],
            flapping=r[8],
            flap_count=r[9],
        )
        for r in (*gateways, *devices)
    ]
    rank = {OFFLINE: 1, UNKNOWN: 2, ONLINE: 3}
    found.sort(key=lambda x: (not x.flapping, rank.get(x.state, 4), x.since))
    return found[:limit]


def run(
    factory: sessionmaker[Session], now: datetime, policy: LivenessPolicy = DEFAULT_POLICY
) -> SweepReport:
    """One sweep in its own transaction (the scheduler's step)."""
    with transaction(factory) as session:
        report = sweep(session, now, policy)
    if report.alerts_changed:
        log.info(
            "liveness: %d devices, %d gateways offline raised, %d cleared, %d flapping "
            "started, %d ended",
            report.devices,
            report.raised,
            report.cleared,
            report.flapping_started,
            report.flapping_ended,
        )
    return report


__all__ = [
    "DEVICE_FLAPPING",
    "GATEWAY_OFFLINE",
    "OFFLINE_KINDS",
    "DeviceStatus",
    "SweepReport",
    "absorb_offline_event",
    "run",
    "sweep",
    "troubled",
]
