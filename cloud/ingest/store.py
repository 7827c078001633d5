"""Store one batch of MQTT messages in one transaction; no MQTT in here.

The batch goes through named phases, each in its own module, passing typed records
(:mod:`cloud.ingest.records`):

1. :mod:`~cloud.ingest.decode`: topics and payloads into typed messages, or refusals;
2. :mod:`~cloud.ingest.places`: each message's registered gateway (locked), then the
   buildings and devices its items name;
3. statuses and replies applied (a recheck's verdict is :mod:`cloud.work_orders`' rule);
4. :mod:`~cloud.ingest.ledger`: dedupe by id, collisions of (gateway, epoch, seq) noted;
5. :mod:`~cloud.ingest.sequences`: new outbox epochs, then
   :mod:`~cloud.ingest.items`: readings and events inserted, events folded into alerts;
6. :mod:`~cloud.ingest.sequences`: sequence gaps of each gateway's current epoch.

Everything refused is dead-lettered with its reason. The result names, per gateway and
epoch, the sequence numbers to acknowledge once the caller commits. Each phase reads
with one batched select and writes with one batched insert: no query per message.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from sqlalchemy.orm import Session

from cloud import work_orders
from cloud.db import models as m
from cloud.ingest import dead_letters, metrics
from cloud.ingest.decode import decode_batch, salvage
from cloud.ingest.items import store_items
from cloud.ingest.ledger import claim
from cloud.ingest.places import check_places, resolve_gateways
from cloud.ingest.records import (
    Accepted,
    AckTarget,
    BatchResult,
    Incoming,
    Rejection,
    ReplyFrom,
    SeqAck,
    StatusFrom,
    ack_ranges,
)
from cloud.ingest.sequences import note_epochs, track_gaps
from cloud.model_registry import rollouts
from microbrain.protocol import ProtocolError, parse_topic

__all__ = ["BatchResult", "Incoming", "ack_ranges", "dead_letter_internal", "store_batch"]

log = logging.getLogger(__name__)


class _DeadLetters:
    """The batch's refusals: counted and acknowledged as they come, saved at the end."""

    def __init__(self, result: BatchResult) -> None:
        self.result = result
        self.letters: list[dead_letters.Letter] = []

    def add(self, r: Rejection) -> None:
        letter = dead_letters.Letter.refused(
            received_at=r.msg.received_at,
            topic=r.msg.topic,
            gateway=r.gateway,
            reason=r.reason,
            field=r.field,
            payload=r.msg.payload,
        )
        self.letters.append(letter)
        self.result.rejected += 1
        metrics.REJECTED.labels(r.label).inc()
        metrics.MESSAGES.labels(r.channel, "rejected").inc()
        self.result.ack(r.ack)
        log.warning(
            "dead-lettered %s from %s: %s", letter.topic[:120], r.gateway or "?", r.reason[:200]
        )

    def extend(self, rejections: list[Rejection]) -> None:
        for r in rejections:
            self.add(r)

    def save(self, session: Session, caps: dead_letters.Caps | None = None) -> None:
        # samples, repeats counted in their rows, caps per gateway: see dead_letters
        dead_letters.save(session, self.letters, caps)


def store_batch(
    session: Session,
    messages: list[Incoming],
    now: datetime,
    *,
    caps: dead_letters.Caps | None = None,
) -> BatchResult:
    """Store ``messages`` in the caller's transaction; see the module docstring.
    ``caps``: the dead-letter caps (default: the process's, ``dead_letters.current_caps``)."""
    result = BatchResult()
    dead = _DeadLetters(result)
    decoded = decode_batch(messages, now)
    result.ignored += decoded.ignored
    dead.extend(decoded.rejections)
    resolved = resolve_gateways(session, decoded.decoded)
    dead.extend(resolved.rejections)
    for status in resolved.statuses:
        _apply_status(status, now)
        result.applied += 1
        metrics.MESSAGES.labels("status", "applied").inc()
    for reply in resolved.replies:
        refusal = _apply_reply(session, reply, now)
        if refusal is None:
            result.applied += 1
            metrics.MESSAGES.labels("reply", "applied").inc()
        else:
            dead.add(refusal)
    checked = check_places(session, resolved.items)
    dead.extend(checked.refused)
    claims = claim(session, checked.kept)
    for a in claims.duplicates:
        result.ack_item(a)
    _count(claims.duplicates, "duplicate")
    result.duplicates += len(claims.duplicates)
    note_epochs(session, resolved.statuses, checked.kept, now)
    if claims.fresh:
        store_items(session, claims.fresh, now, result)
    for a in claims.fresh:
        result.ack_item(a)
    _count(claims.fresh, "stored")
    result.stored += len(claims.fresh)
    result.collisions += len(claims.collided)
    collided = {id(a) for a in claims.collided}
    track_gaps([a for a in claims.fresh if id(a) not in collided], result)
    dead.save(session, caps)
    return result


def _count(items: list[Accepted], outcome: str) -> None:
    # one increment per channel, not per message
    for channel, n in Counter(a.channel for a in items).items():
        metrics.MESSAGES.labels(channel, outcome).inc(n)


def _apply_status(s: StatusFrom, now: datetime) -> None:
    # the broker keeps only the latest retained status, so the one we get is current
    gw, status = s.gateway, s.status
    gw.state = status.state.value
    gw.last_seen = max(status.ts, gw.last_seen) if gw.last_seen else status.ts
    if status.health is not None:
        gw.health = status.health.model_dump(mode="json")


def _apply_reply(session: Session, r: ReplyFrom, now: datetime) -> Rejection | None:
    """Apply a reply; the refusal if it answers a command sent to another gateway."""
    if r.reply.name == "model":  # a model install's outcome: the registry's rollout
        foreign = rollouts.apply_reply(session, r.gateway.id, r.reply, now)
        if foreign is None:
            return None
        return Rejection(
            r.msg, foreign, "foreign_reply", gateway=r.gateway.id, field="detail", channel="reply"
        )
    if r.reply.name != "recheck" or not r.reply.command_id:
        return None
    answer = work_orders.apply_recheck_reply(session, r.reply, gateway=r.gateway.id, now=now)
    if answer.outcome != work_orders.ReplyOutcome.FOREIGN:
        return None
    return Rejection(
        r.msg,
        f"gateway {r.gateway.id!r} answered recheck {r.reply.command_id} of "
        f"work order {answer.work_order}, which was sent to gateway "
        f"{answer.sent_to!r}: only that gateway's reply counts",
        "foreign_reply",
        gateway=r.gateway.id,
        field="command_id",
        channel="reply",
    )


def dead_letter_internal(session: Session, msg: Incoming, err: Exception) -> BatchResult:
    """Keep a message that made the ingest fail, with the error as its reason; it is
    acknowledged if it came from a registered gateway on its own topic."""
    result = BatchResult()
    dead = _DeadLetters(result)
    ack = None
    gateway = None
    try:
        topic = parse_topic(msg.topic)
        gw = session.get(m.Gateway, topic.gateway.gateway)
        if gw is not None and (gw.community, gw.compound) == (
            topic.gateway.community,
            topic.gateway.compound,
        ):
            gateway = gw.id
            saved = salvage(msg.payload)
            ack = SeqAck(AckTarget(topic.gateway, saved.epoch), saved.seq) if saved else None
    except ProtocolError:
        pass
    dead.add(
        Rejection(
            msg,
            f"internal error while storing ({type(err).__name__}: {str(err)[:300]}); kept here",
            "internal_error",
            gateway=gateway,
            ack=ack,
        )
    )
    dead.save(session)
    return result
