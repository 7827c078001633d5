"""Decode (topic, bytes) into a typed message, or raise one clear ProtocolError.

Both the gateway (commands) and the cloud (events, readings, status, replies) call
:func:`decode`; nothing else on either side parses payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from microbrain.protocol.errors import ProtocolError
from microbrain.protocol.payloads import (
    MAX_PAYLOAD_BYTES,
    Command,
    Event,
    Reading,
    Reply,
    Status,
    utc_now,
)
from microbrain.protocol.topics import Channel, Topic, parse_topic

Payload = Event | Reading | Status | Command | Reply

# clocks on gateways drift; anything further ahead than this is refused
MAX_CLOCK_SKEW = timedelta(minutes=5)

_ADAPTERS: dict[Channel, TypeAdapter[Payload]] = {
    Channel.EVENT: TypeAdapter(Event),
    Channel.READING: TypeAdapter(Reading),
    Channel.STATUS: TypeAdapter(Status),
    Channel.CMD: TypeAdapter(Command),
    Channel.REPLY: TypeAdapter(Reply),
}


@dataclass(frozen=True, slots=True)
class Message:
    topic: Topic
    payload: Payload


_UNION_TAGS = {"float", "int", "bool", "str", "constrained-str", "tuple"}


def _is_union_tag(part: object) -> bool:
    # pydantic puts the union member it tried into the location; people want the field
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part)


def describe_validation_error(err: ValidationError) -> ProtocolError:
    """Turn pydantic's report into one line naming the first offending field."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if not _is_union_tag(p))
    msg = first.get("msg", "invalid")
    if first.get("type") == "json_invalid":
        return ProtocolError(
            f"payload is not valid JSON ({first.get('ctx', {}).get('error', msg)})", field="payload"
        )
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return ProtocolError(f"{msg}{extra}", field=loc or "payload")


def decode_payload(channel: Channel, raw: bytes | str, *, now: datetime | None = None) -> Payload:
    """Validate one payload for ``channel``; see :func:`decode`."""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"payload of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit "
            "(evidence files are uploaded over HTTP, not sent on MQTT)",
            field="payload",
        )
    try:
        payload = _ADAPTERS[channel].validate_json(raw)
    except ValidationError as err:
        raise describe_validation_error(err) from None
    except (RecursionError, ValueError) as err:  # pydantic-core refusing deep nesting
        raise ProtocolError(f"payload could not be parsed: {err}", field="payload") from None
    except ArithmeticError as err:  # a bound missed in payloads.py must still be a refusal
        raise ProtocolError(
            f"payload holds a number or time out of range ({err})", field="payload"
        ) from None
    limit = (now or utc_now()) + MAX_CLOCK_SKEW
    if payload.ts > limit:
        raise ProtocolError(
            f"{payload.ts.isoformat()} is more than {int(MAX_CLOCK_SKEW.total_seconds())} s "
            "in the future; check the gateway's clock (NTP)",
            field="ts",
        )
    return payload


def decode(topic: str | Topic, raw: bytes | str, *, now: datetime | None = None) -> Message:
    """Parse a topic and its payload into a :class:`Message`.

    Raises :class:`ProtocolError` (and nothing else) for any bad input: a topic
    outside the tree, a payload that is not JSON, too large, missing or mistyped
    fields, NaN/inf, a number or time beyond what the databases store (see ``INT64_MAX``,
    ``TS_MIN``/``TS_MAX`` in payloads.py), a timestamp more than :data:`MAX_CLOCK_SKEW`
    ahead of ``now``, or a command/reply whose name disagrees with its topic. A
    :class:`Topic` already parsed (the cloud's ingest parses it first) is not parsed again.

    >>> from microbrain.protocol import Reading, GatewayPath
    >>> gw = GatewayPath("c1", "k1", "gw1")
    >>> r = Reading(seq=1, sensor="h1", kind="hydrant_pressure", values={"pressure_mpa": 0.3})
    >>> decode(gw.topic("reading"), r.to_json()).payload == r
    True
    """
    parsed = topic if isinstance(topic, Topic) else parse_topic(topic)
    payload = decode_payload(parsed.channel, raw, now=now)
    if parsed.name is not None and getattr(payload, "name", None) != parsed.name:
        raise ProtocolError(
            f"payload name {getattr(payload, 'name', None)!r} does not match topic name "
            f"{parsed.name!r}",
            field="name",
        )
    return Message(parsed, payload)


def encode(message: Message) -> tuple[str, bytes]:
    """The (topic, bytes) to publish; the inverse of :func:`decode`."""
    return message.topic.text, message.payload.to_json()
