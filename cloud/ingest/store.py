"""Store one batch of MQTT messages in one transaction; no MQTT in here.

For each message: decode with the protocol, check the gateway is registered and the
payload's place matches the topic, dedupe by id and by (gateway, seq) through the
ledger's unique constraints, insert events and readings, fold events into alerts,
note sequence gaps. Everything refused is dead-lettered with its reason. The result
names the sequence numbers to acknowledge to each gateway once the caller commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import JSON, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud import work_orders
from cloud.alerts import fold_event
from cloud.db import models as m
from cloud.ingest import metrics
from microbrain.protocol import (
    MAX_PAYLOAD_BYTES,
    Channel,
    Event,
    GatewayPath,
    ProtocolError,
    Reading,
    Reply,
    Status,
    decode,
    parse_topic,
)
from microbrain.protocol.topics import Topic

log = logging.getLogger(__name__)
DEAD_LETTER_KEEP_BYTES = 4 * MAX_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass
class BatchResult:
    acks: dict[GatewayPath, set[int]] = field(default_factory=lambda: defaultdict(set))
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    applied: int = 0
    ignored: int = 0
    gaps: list[tuple[str, int, int]] = field(default_factory=list)
    alerts: set[int] = field(default_factory=set)

    def merge(self, other: BatchResult) -> None:
        for path, seqs in other.acks.items():
            self.acks[path] |= seqs
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.applied += other.applied
        self.ignored += other.ignored
        self.gaps += other.gaps
        self.alerts |= other.alerts

    def ack_ranges(self) -> dict[GatewayPath, tuple[tuple[int, int], ...]]:
        return {path: ack_ranges(seqs) for path, seqs in self.acks.items() if seqs}


def ack_ranges(seqs: set[int] | list[int]) -> tuple[tuple[int, int], ...]:
    """Compress sequence numbers into inclusive ranges.

    >>> ack_ranges({1, 2, 3, 7, 9, 10})
    ((1, 3), (7, 7), (9, 10))
    """
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return tuple(out)


def _reason_label(err: ProtocolError) -> str:
    # a command/reply whose name disagrees with its topic is a topic problem; a bad
    # "name" inside the payload (evidence.0.name, a reply's own name) is not
    if err.field == "topic" or (err.field == "name" and "does not match topic name" in err.reason):
        return "invalid_topic"
    if err.field == "ts":
        return "future_timestamp"
    if "exceeds" in err.reason:
        return "oversize"
    return "invalid_payload"


def _salvage_seq(raw: bytes) -> int | None:
    # a bad payload from a real gateway is still acknowledged (it is kept here, in the
    # dead letters), or the gateway's outbox would resend it for ever
    if len(raw) > MAX_PAYLOAD_BYTES:
        return None
    try:
        seq = json.loads(raw).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


class _Batch:
    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.result = BatchResult()
        self.dead: list[dict] = []

    def reject(self, msg: Incoming, reason: str, label: str, *, gateway: str | None = None,
               field_name: str | None = None, ack: tuple[GatewayPath, int | None] | None = None,
               channel: str = "unknown") -> None:
        payload = msg.payload[:DEAD_LETTER_KEEP_BYTES]
        if len(msg.payload) > DEAD_LETTER_KEEP_BYTES:
            reason += f" (payload of {len(msg.payload)} bytes kept truncated to {len(payload)})"
        self.dead.append(dict(received_at=msg.received_at, topic=msg.topic[:600], gateway=gateway,
                              reason=reason[:1000], field=(field_name or None) and field_name[:200],
                              payload=payload, digest=hashlib.sha256(msg.payload).hexdigest()))
        self.result.rejected += 1
        metrics.REJECTED.labels(label).inc()
        metrics.MESSAGES.labels(channel, "rejected").inc()
        if ack and ack[1]:
            self.result.acks[ack[0]].add(ack[1])
        log.warning("dead-lettered %s from %s: %s", msg.topic[:120], gateway or "?", reason[:200])


def _insert_many(session: Session, model: type, rows: list[dict]) -> None:
    """Insert plain rows: COPY on PostgreSQL (about 3x executemany), else executemany."""
    table = model.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    if conn.dialect.name != "postgresql" or len(rows) < 50:
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    is_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
    cursor = conn.connection.driver_connection.cursor()
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in is_json else row[c] for c in columns])


def _dialect_insert(session: Session, model: type):  # type: ignore[no-untyped-def]
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(model)


def store_batch(session: Session, messages: list[Incoming], now: datetime) -> BatchResult:
    """Store ``messages`` in the caller's transaction; see the module docstring."""
    b = _Batch(session, now)
    decoded: list[tuple[Incoming, Topic, object]] = []
    for msg in messages:
        try:
            topic = parse_topic(msg.topic)
        except ProtocolError as err:
            b.reject(msg, str(err), "invalid_topic", field_name=err.field)
            continue
        if topic.channel == Channel.CMD:
            # our own commands come back on the shared subscription: not ours to store
            b.result.ignored += 1
            metrics.MESSAGES.labels("cmd", "ignored").inc()
            continue
        try:
            message = decode(msg.topic, msg.payload, now=now)
        except ProtocolError as err:
            decoded.append((msg, topic, err))
            continue
        decoded.append((msg, topic, message.payload))

    ids = sorted({t.gateway.gateway for _, t, _ in decoded})
    gateways = {g.id: g for g in session.scalars(
        select(m.Gateway).where(m.Gateway.id.in_(ids)).order_by(m.Gateway.id).with_for_update()
    )} if ids else {}

    accepted: list[tuple[Incoming, Topic, m.Gateway, Event | Reading]] = []
    for msg, topic, payload in decoded:
        channel = topic.channel.value
        gw = gateways.get(topic.gateway.gateway)
        if gw is None:
            b.reject(msg, f"gateway {topic.gateway.gateway!r} is not registered", "unknown_gateway",
                     gateway=None, channel=channel)
            continue
        if (gw.community, gw.compound) != (topic.gateway.community, topic.gateway.compound):
            b.reject(msg, f"gateway {gw.id!r} is registered in {gw.community}/{gw.compound}, "
                     f"not {topic.gateway.community}/{topic.gateway.compound}", "place_mismatch",
                     gateway=gw.id, field_name="topic", channel=channel)
            continue
        if isinstance(payload, ProtocolError):
            b.reject(msg, str(payload), _reason_label(payload), gateway=gw.id,
                     field_name=payload.field, ack=(topic.gateway, _salvage_seq(msg.payload)),
                     channel=channel)
            continue
        if isinstance(payload, Status):
            _apply_status(gw, payload, now)
            b.result.applied += 1
            metrics.MESSAGES.labels(channel, "applied").inc()
        elif isinstance(payload, Reply):
            if payload.name == "recheck" and payload.command_id:
                present = payload.detail.get("present")
                verdict = present if payload.ok and isinstance(present, bool) else None
                reason = payload.reason
                if payload.ok and verdict is None:
                    shown = ", ".join(f"{k}={v}" for k, v in list(payload.detail.items())[:8])
                    reason = f"the gateway answered without a verdict ('present'): {shown or 'nothing'}"
                work_orders.apply_recheck(session, payload.command_id, condition_present=verdict,
                                          actor=f"edge:{gw.id}", now=now, reason=reason)
            b.result.applied += 1
            metrics.MESSAGES.labels(channel, "applied").inc()
        elif isinstance(payload, Event | Reading):
            accepted.append((msg, topic, gw, payload))
        else:
            b.result.ignored += 1
            metrics.MESSAGES.labels(channel, "ignored").inc()

    if accepted:
        _store_items(b, accepted)
    if b.dead:
        _save_dead(session, b.dead)
    return b.result


def _save_dead(session: Session, rows: list[dict]) -> None:
    """Keep dead letters; the same bad item again (same gateway, topic and payload hash)
    counts in its row instead of adding one, so a gateway resending it for ever cannot
    grow the table without bound."""
    merged: dict[tuple[str | None, str, str], dict] = {}
    for row in rows:
        key = (row["gateway"], row["topic"], row["digest"])
        if key in merged:
            merged[key]["count"] += 1
            merged[key]["last_seen"] = max(merged[key]["last_seen"], row["received_at"])
        else:
            merged[key] = {**row, "count": 1, "last_seen": row["received_at"]}
    fresh = []
    for (gateway, topic, digest), row in merged.items():
        same = session.scalars(
            select(m.DeadLetter).where(
                m.DeadLetter.gateway.is_(None) if gateway is None else m.DeadLetter.gateway == gateway,
                m.DeadLetter.digest == digest, m.DeadLetter.topic == topic)
            .order_by(m.DeadLetter.pk.desc()).limit(1)
        ).one_or_none()
        if same is None:
            fresh.append(row)
            continue
        same.count += row["count"]
        same.last_seen = max(same.last_seen or same.received_at, row["last_seen"])
        same.reason = row["reason"]  # the latest reason (the code may have changed)
    if fresh:
        session.execute(insert(m.DeadLetter), fresh)


def dead_letter_internal(session: Session, msg: Incoming, err: Exception) -> BatchResult:
    """Keep a message that made the ingest fail, with the error as its reason; it is
    acknowledged if it came from a registered gateway on its own topic."""
    b = _Batch(session, msg.received_at)
    ack = None
    gateway = None
    try:
        topic = parse_topic(msg.topic)
        gw = session.get(m.Gateway, topic.gateway.gateway)
        if gw is not None and (gw.community, gw.compound) == (topic.gateway.community, topic.gateway.compound):
            gateway = gw.id
            ack = (topic.gateway, _salvage_seq(msg.payload))
    except ProtocolError:
        pass
    b.reject(msg, f"internal error while storing ({type(err).__name__}: {str(err)[:300]}); kept here",
             "internal_error", gateway=gateway, ack=ack)
    _save_dead(session, b.dead)
    return b.result


def _apply_status(gw: m.Gateway, status: Status, now: datetime) -> None:
    # the broker keeps only the latest retained status, so the one we get is current
    gw.state = status.state.value
    gw.last_seen = max(status.ts, gw.last_seen) if gw.last_seen else status.ts
    if status.health is not None:
        gw.health = status.health.model_dump(mode="json")


def _place_problem(item: Event | Reading, gw: m.Gateway, buildings: set[tuple[str, str, str]],
                   owners: dict[str, set[str]]) -> str | None:
    if item.building and (gw.community, gw.compound, item.building) not in buildings:
        return (f"building {item.building!r} is not in {gw.community}/{gw.compound}, "
                f"where gateway {gw.id!r} is")
    device = item.source if isinstance(item, Event) else item.sensor
    if device in owners and gw.id not in owners[device] and device != gw.id:
        return f"device {device!r} belongs to gateway {min(owners[device])!r}, not {gw.id!r}"
    return None


def _store_items(b: _Batch, items: list[tuple[Incoming, Topic, m.Gateway, Event | Reading]]) -> None:
    session, now, result = b.session, b.now, b.result
    compounds = {gw.compound for _, _, gw, _ in items}
    buildings = {tuple(r) for r in session.execute(
        select(m.Building.community, m.Building.compound, m.Building.id)
        .where(m.Building.compound.in_(compounds)))}
    devices = {i.source if isinstance(i, Event) else i.sensor for _, _, _, i in items}
    owners: dict[str, set[str]] = defaultdict(set)
    for dev, owner in session.execute(select(m.Device.id, m.Device.gateway).where(m.Device.id.in_(devices))):
        owners[dev].add(owner)

    fresh: dict[str, tuple[Incoming, Topic, m.Gateway, Event | Reading]] = {}
    for msg, topic, gw, item in items:
        channel = topic.channel.value
        problem = _place_problem(item, gw, buildings, owners)
        if problem:
            b.reject(msg, problem, "place_mismatch", gateway=gw.id, field_name="building",
                     ack=(topic.gateway, item.seq), channel=channel)
        elif item.id in fresh:
            result.duplicates += 1
            metrics.MESSAGES.labels(channel, "duplicate").inc()
            if item.seq:
                result.acks[topic.gateway].add(item.seq)
        else:
            fresh[item.id] = (msg, topic, gw, item)
    if not fresh:
        return

    ledger_rows = [dict(id=i.id, gateway=gw.id, seq=i.seq or None, channel=t.channel.value,
                        received_at=msg.received_at) for msg, t, gw, i in fresh.values()]
    stmt = _dialect_insert(session, m.Ledger).on_conflict_do_nothing().returning(m.Ledger.id)
    inserted = set(session.scalars(stmt, ledger_rows).all())
    skipped = [k for k in fresh if k not in inserted]
    known = set(session.scalars(select(m.Ledger.id).where(m.Ledger.id.in_(skipped)))) if skipped else set()

    events: list[tuple[m.Gateway, Event, int | None]] = []
    readings: list[dict] = []
    stored_seqs: dict[str, list[int]] = defaultdict(list)
    seen_devices: dict[str, set[str]] = defaultdict(set)
    for key, (msg, topic, gw, item) in fresh.items():
        channel = topic.channel.value
        if key not in inserted:
            if key in known:
                result.duplicates += 1
                metrics.MESSAGES.labels(channel, "duplicate").inc()
                if item.seq:
                    result.acks[topic.gateway].add(item.seq)
            else:
                b.reject(msg, f"sequence {item.seq} of gateway {gw.id!r} is already stored under "
                         "another id (was the gateway's outbox reset?)", "seq_conflict",
                         gateway=gw.id, field_name="seq", ack=(topic.gateway, item.seq),
                         channel=channel)
            continue
        result.stored += 1
        metrics.MESSAGES.labels(channel, "stored").inc()
        if item.seq:
            result.acks[topic.gateway].add(item.seq)
            stored_seqs[gw.id].append(item.seq)
        if isinstance(item, Event):
            events.append((gw, item, item.seq or None))
            seen_devices[gw.id].add(item.source)
        else:
            seen_devices[gw.id].add(item.sensor)
            readings.append(dict(
                id=item.id, gateway=gw.id, seq=item.seq or None, ts=item.ts, sensor=item.sensor,
                kind=item.kind, community=gw.community, compound=gw.compound,
                building=item.building, values=dict(item.values), units=dict(item.units),
                faults=list(item.faults), samples=item.samples))

    if readings:
        _insert_many(session, m.ReadingRow, readings)
    if events:
        cache: dict[str, m.Alert | None] = {}
        rows = []
        # fold in time order, so a raise and its clear in one shuffled batch end cleared
        for gw, ev, seq in sorted(events, key=lambda e: (e[1].ts, e[2] or 0)):
            alert = fold_event(session, ev, gw, now, cache)
            if alert is not None:
                result.alerts.add(alert.id)
            rows.append(dict(
                id=ev.id, gateway=gw.id, seq=seq, ts=ev.ts, received_at=now,
                community=gw.community, compound=gw.compound, building=ev.building,
                kind=ev.kind, state=ev.state.value, severity=int(ev.severity), source=ev.source,
                zone=ev.zone, message=ev.message, payload=ev.model_dump(mode="json", by_alias=True),
                alert_id=alert.id if alert is not None else None))
        _insert_many(session, m.EventRow, rows)

    gw_by_id = {gw.id: gw for _, _, gw, _ in fresh.values()}
    for gid, names in seen_devices.items():
        session.execute(update(m.Device).where(m.Device.gateway == gid, m.Device.id.in_(names))
                        .values(last_seen=now).execution_options(synchronize_session=False))
        gw_by_id[gid].last_seen = max(now, gw_by_id[gid].last_seen or now)
    for gid, seqs in stored_seqs.items():
        gw = gw_by_id[gid]
        prev = gw.last_seq or 0
        for s in sorted(seqs):
            if s > prev + 1:
                # "not received yet": a replay may still fill it, and with several workers
                # sharing the subscription short-lived gaps are normal; gaps − filled is loss
                result.gaps.append((gid, prev + 1, s - 1))
                metrics.SEQ_GAPS.inc()
                metrics.SEQ_MISSING.inc(s - prev - 1)
                gw.seq_gaps = (gw.seq_gaps or 0) + 1
                log.debug("gateway %s: sequence gap %d..%d", gid, prev + 1, s - 1)
            elif s < prev:
                metrics.SEQ_FILLED.inc()
            prev = max(prev, s)
        gw.last_seq = prev
