"""Phase 1 of a batch: topics and payloads into typed messages, or refusals with a reason.

An event or reading without an ``id`` is refused (``missing_id``), not given one. The
cloud dedupes on the id the sender made once, when the item was created, and kept across
resends; an id made here (even a hash of the gateway, topic and payload) cannot tell a
redelivery from a second reading that happens to say the same thing, so it would either
store every redelivery (a random id: the same reading three times gave three rows and an
alert counting three) or merge genuinely distinct readings (a content hash). Our outbox
always stamps an id, so nothing of ours is refused; a foreign sender learns from the
dead letter (kept with its payload, acknowledged when it carries a seq) what to fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from cloud.ingest import metrics
from cloud.ingest.records import Decoded, Incoming, Refusal, Rejection, Salvaged
from microbrain.protocol import (
    MAX_PAYLOAD_BYTES,
    Channel,
    Event,
    ProtocolError,
    Reading,
    Reply,
    Status,
    decode,
    parse_topic,
)
from microbrain.protocol.payloads import INT64_MAX

_EPOCH = re.compile(r"[0-9a-f]{16}")
MISSING_ID = (
    "no 'id': every event and reading needs its own id (a ULID or UUID made once, "
    "when the item is created, and kept when it is resent); the cloud dedupes on it"
)


@dataclass
class DecodedBatch:
    """The batch after decoding: messages to resolve, refusals of bad topics, and how
    many were the cloud's own commands (not ours to store)."""

    decoded: list[Decoded] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored: int = 0


def reason_label(err: ProtocolError) -> str:
    """The metric label of a refused payload."""
    # a command/reply whose name disagrees with its topic is a topic problem; a bad
    # "name" inside the payload (evidence.0.name, a reply's own name) is not
    if err.field == "topic" or (err.field == "name" and "does not match topic name" in err.reason):
        return "invalid_topic"
    if err.field == "ts" and "in the future" in err.reason:
        return "future_timestamp"  # not a time outside the calendar: that is a bad payload
    if "exceeds" in err.reason:
        return "oversize"
    return "invalid_payload"


def salvage(raw: bytes) -> Salvaged | None:
    """The top-level ``seq`` and ``epoch`` of a payload that did not decode, if it has a
    plausible seq. Invalid UTF-8 is read with replacement characters: such an item from
    a real gateway must still be acknowledged, or its outbox resends it for ever. Only a
    real JSON object counts (a pattern search could pick up a ``seq`` inside ``detail``
    and acknowledge, so delete, another item)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    seq, epoch = doc.get("seq"), doc.get("epoch")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= INT64_MAX:
        return None
    return Salvaged(seq, epoch if isinstance(epoch, str) and _EPOCH.fullmatch(epoch) else None)


def _refusal(payload: Event | Reading | Status | Reply) -> Refusal | None:
    # pydantic leaves a defaulted field out of model_fields_set: the id was made here
    if isinstance(payload, Event | Reading) and "id" not in payload.model_fields_set:
        saved = Salvaged(payload.seq, payload.epoch) if payload.seq else None
        return Refusal(ProtocolError(MISSING_ID, field="id"), "missing_id", saved)
    return None


def decode_batch(messages: list[Incoming], now: datetime) -> DecodedBatch:
    """Parse every topic and payload; a bad topic is refused here, a bad payload once its
    gateway is known (whether to acknowledge it depends on the gateway)."""
    out = DecodedBatch()
    for msg in messages:
        try:
            topic = parse_topic(msg.topic)
        except ProtocolError as err:
            out.rejections.append(Rejection(msg, str(err), "invalid_topic", field=err.field))
            continue
        if topic.channel == Channel.CMD:
            # our own commands come back on the shared subscription: not ours to store
            out.ignored += 1
            metrics.MESSAGES.labels("cmd", "ignored").inc()
            continue
        try:
            payload = decode(topic, msg.payload, now=now).payload
        except ProtocolError as err:
            out.decoded.append(
                Decoded(msg, topic, None, Refusal(err, reason_label(err), salvage(msg.payload)))
            )
            continue
        if not isinstance(payload, Event | Reading | Status | Reply):
            out.ignored += 1
            metrics.MESSAGES.labels(topic.channel.value, "ignored").inc()
            continue
        refusal = _refusal(payload)
        out.decoded.append(Decoded(msg, topic, None if refusal else payload, refusal))
    return out
