"""What every channel shares: the message it carries and the one interface it offers.

A channel turns a :class:`Notice` into the request its vendor documents and sends it.
The deliveries (``cloud.response.deliveries``) decide *when* to send (rate budgets,
digests, retries) and record every attempt; a channel only knows *how*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from microbrain.protocol import Severity


@dataclass(frozen=True, slots=True)
class Notice:
    """One message: a single alert, or a digest of several that the budget held back.

    ``title`` is one plain line (``【严重】违停 · 西苑小区 3号楼``); ``body`` is Markdown
    lines without a heading (robots render it, e-mail and SMS send it as text);
    ``link`` opens the alert in the console (a signed acknowledgement link);
    ``mentions`` are mobile numbers a robot should @ and an SMS gateway texts.
    """

    title: str
    body: str
    severity: Severity
    alert_ids: tuple[int, ...]
    link: str | None = None
    mentions: tuple[str, ...] = field(default=())


class DeliveryError(Exception):
    """A send that did not go through; the message says why in words an operator can act
    on (``HTTP 502 from the webhook``, ``DingTalk errcode 310000: sign not match``)."""


class Channel(Protocol):
    """A destination for notices; one instance per configured channel."""

    id: str
    budget_per_minute: int

    def send(self, notice: Notice, *, now: datetime) -> None:
        """Deliver ``notice`` or raise :class:`DeliveryError`; ``now`` signs it."""
        ...


# the words on every robot's link back to the console: custom robots are one-way, so the
# link is the only way to acknowledge from the message
LINK_LABEL = "在值班台查看并确认"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(now: datetime) -> int:
    """Milliseconds since the epoch, exact (``now.timestamp() * 1000`` can round down by one,
    and a signed timestamp one off fails the vendor's check the same as a wrong secret)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return (now - _EPOCH) // timedelta(milliseconds=1)


def truncate_utf8(text: str, max_bytes: int, marker: str) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 on a character boundary, ``marker``
    appended when anything was cut (the marker counts towards the limit)."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(marker.encode())
    if room < 0:
        raise ValueError(f"the marker alone is longer than {max_bytes} bytes")
    # a cut through a multi-byte character leaves a partial sequence at the end only
    return data[:room].decode("utf-8", errors="ignore") + marker
