"""The MQTT topic tree, built and parsed here and nowhere else.

    mb/v1/{community}/{compound}/{gateway}/event
    mb/v1/{community}/{compound}/{gateway}/reading
    mb/v1/{community}/{compound}/{gateway}/status
    mb/v1/{community}/{compound}/{gateway}/cmd/{name}
    mb/v1/{community}/{compound}/{gateway}/reply/{name}

Ids are lower-case slugs so that they can never contain the MQTT wildcards or
separators (``+``, ``#``, ``/``) and so that ACL patterns stay exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from microbrain.protocol.errors import ProtocolError

ROOT = "mb"
VERSION = "v1"
PREFIX = f"{ROOT}/{VERSION}"

ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")
MAX_TOPIC_LENGTH = 512


class Channel(StrEnum):
    """What a topic carries; the gateway publishes the first three, the cloud ``cmd``."""

    EVENT = "event"
    READING = "reading"
    STATUS = "status"
    CMD = "cmd"
    REPLY = "reply"


# channels whose topic ends in a name segment (cmd/announce, reply/recheck)
_NAMED = {Channel.CMD, Channel.REPLY}


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid id, else raise :class:`ProtocolError`."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ProtocolError(
            f"{what} {value!r} is not a valid id (lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 63 characters)",
            field=what,
        )
    return value


@dataclass(frozen=True, slots=True)
class GatewayPath:
    """Where a gateway sits in the site hierarchy; the prefix of all its topics."""

    community: str
    compound: str
    gateway: str

    def __post_init__(self) -> None:
        check_id(self.community, "community")
        check_id(self.compound, "compound")
        check_id(self.gateway, "gateway")

    @property
    def prefix(self) -> str:
        return f"{PREFIX}/{self.community}/{self.compound}/{self.gateway}"

    def topic(self, channel: Channel | str, name: str | None = None) -> str:
        """Build one of this gateway's topics.

        >>> GatewayPath("c1", "k1", "gw1").topic("cmd", "ack")
        'mb/v1/c1/k1/gw1/cmd/ack'
        """
        return Topic(self, Channel(channel), name).text

    def subscription(self, channel: Channel | str = "#") -> str:
        """Topic filter for this gateway, e.g. its commands: ``.../cmd/#``."""
        if channel == "#":
            return f"{self.prefix}/#"
        ch = Channel(channel)
        return f"{self.prefix}/{ch.value}/#" if ch in _NAMED else f"{self.prefix}/{ch.value}"

    def __str__(self) -> str:
        return f"{self.community}/{self.compound}/{self.gateway}"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: the gateway it belongs to, the channel and (cmd/reply) the name."""

    gateway: GatewayPath
    channel: Channel
    name: str | None = None

    def __post_init__(self) -> None:
        if self.channel in _NAMED:
            if self.name is None:
                raise ProtocolError(f"a {self.channel.value} topic needs a name", field="topic")
            check_id(self.name, f"{self.channel.value} name")
        elif self.name is not None:
            raise ProtocolError(
                f"a {self.channel.value} topic takes no name (got {self.name!r})", field="topic"
            )

    @property
    def text(self) -> str:
        base = f"{self.gateway.prefix}/{self.channel.value}"
        return f"{base}/{self.name}" if self.name is not None else base

    def __str__(self) -> str:
        return self.text


def parse_topic(text: str) -> Topic:
    """Parse a topic of the tree; anything else raises :class:`ProtocolError`.

    >>> parse_topic("mb/v1/c1/k1/gw1/reading").channel
    <Channel.READING: 'reading'>
    """
    if not isinstance(text, str):
        raise ProtocolError("topic must be a string", field="topic")
    if len(text) > MAX_TOPIC_LENGTH:
        raise ProtocolError(f"topic longer than {MAX_TOPIC_LENGTH} characters", field="topic")
    parts = text.split("/")
    if len(parts) < 6 or parts[0] != ROOT:
        raise ProtocolError(
            f"topic {text[:80]!r} is outside the tree "
            f"'{PREFIX}/{{community}}/{{compound}}/{{gateway}}/{{channel}}'",
            field="topic",
        )
    if parts[1] != VERSION:
        raise ProtocolError(
            f"topic version {parts[1][:16]!r} is not supported (this build speaks {VERSION})",
            field="topic",
        )
    gateway = GatewayPath(parts[2], parts[3], parts[4])
    try:
        channel = Channel(parts[5])
    except ValueError:
        raise ProtocolError(
            f"unknown channel {parts[5][:32]!r}; expected one of "
            + ", ".join(c.value for c in Channel),
            field="topic",
        ) from None
    rest = parts[6:]
    if channel in _NAMED:
        if len(rest) != 1:
            raise ProtocolError(
                f"a {channel.value} topic ends in exactly one name segment", field="topic"
            )
        return Topic(gateway, channel, rest[0])
    if rest:
        raise ProtocolError(f"a {channel.value} topic has no further segments", field="topic")
    return Topic(gateway, channel)


def cloud_subscription(group: str | None = "cloud") -> str:
    """The filter the cloud's ingest uses: MQTT 5 shared when ``group`` is given."""
    tree = f"{PREFIX}/+/+/+/#"
    return f"$share/{group}/{tree}" if group else tree
