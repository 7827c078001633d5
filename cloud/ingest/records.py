"""The typed records that pass between the phases of one ingest batch.

decode (:mod:`cloud.ingest.decode`) → resolve the gateway and check places
(:mod:`cloud.ingest.places`) → claim ids in the ledger (:mod:`cloud.ingest.ledger`) →
insert and fold (:mod:`cloud.ingest.items`) → epochs and gaps
(:mod:`cloud.ingest.sequences`); :mod:`cloud.ingest.store` runs them in order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from cloud.db import models as m
from microbrain.protocol import Event, GatewayPath, ProtocolError, Reading, Reply, Status
from microbrain.protocol.topics import Topic

Item = Event | Reading
LEGACY_EPOCH = ""  # the ledger's epoch for items of a gateway that sends none


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AckTarget:
    """Where an ack goes and which outbox epoch its seqs belong to (None: the items
    carried no epoch, an older gateway)."""

    path: GatewayPath
    epoch: str | None = None

    def topic(self, channel: str, name: str | None = None) -> str:
        return self.path.topic(channel, name)


@dataclass(frozen=True, slots=True)
class SeqAck:
    """One sequence number to acknowledge once the batch commits."""

    target: AckTarget
    seq: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message refused, kept in the dead letters; acknowledged when ``ack`` is set."""

    msg: Incoming
    reason: str
    label: str  # the metric's reason label: a small fixed set
    gateway: str | None = None
    field: str | None = None
    ack: SeqAck | None = None
    channel: str = "unknown"


@dataclass(frozen=True, slots=True)
class Salvaged:
    """The seq (and epoch) read from an item refused as a whole, so that it can still be
    acknowledged: kept in the dead letters, it must not be resent for ever."""

    seq: int
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a payload was refused: the error, its metric label and what could be salvaged."""

    error: ProtocolError
    label: str
    salvaged: Salvaged | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A message whose topic parsed: its payload, or why the payload was refused."""

    msg: Incoming
    topic: Topic
    payload: Event | Reading | Status | Reply | None
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event or reading from a registered gateway on its own topic."""

    msg: Incoming
    topic: Topic
    gateway: m.Gateway
    item: Item

    @property
    def channel(self) -> str:
        return self.topic.channel.value

    @property
    def epoch(self) -> str:
        """The ledger's epoch key: the item's, or "" for an older gateway's."""
        return self.item.epoch or LEGACY_EPOCH

    @property
    def seq_ack(self) -> SeqAck | None:
        if not self.item.seq:
            return None
        return SeqAck(AckTarget(self.topic.gateway, self.item.epoch), self.item.seq)


@dataclass(frozen=True, slots=True)
class StatusFrom:
    """A heartbeat (or last will) from a registered gateway."""

    gateway: m.Gateway
    status: Status


@dataclass(frozen=True, slots=True)
class ReplyFrom:
    """A reply to a command, from a registered gateway on its own topic."""

    msg: Incoming
    topic: Topic
    gateway: m.Gateway
    reply: Reply


class SeqGap(NamedTuple):
    """Sequence numbers not received (yet) from a gateway in its current epoch."""

    gateway: str
    first: int
    last: int


@dataclass
class BatchResult:
    """What one batch did; ``acks`` names, per gateway and epoch, the seqs to acknowledge
    after the commit."""

    acks: dict[AckTarget, set[int]] = field(default_factory=lambda: defaultdict(set))
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    applied: int = 0
    ignored: int = 0
    collisions: int = 0  # stored although their seq was taken under another id
    gaps: list[SeqGap] = field(default_factory=list)
    alerts: set[int] = field(default_factory=set)

    # one AckTarget per (gateway, epoch) in a batch, not one per item
    _targets: dict[tuple[str, str | None], AckTarget] = field(
        default_factory=dict, repr=False, compare=False
    )

    def ack(self, seq_ack: SeqAck | None) -> None:
        if seq_ack is not None:
            self.acks[seq_ack.target].add(seq_ack.seq)

    def ack_item(self, a: Accepted) -> None:
        """Acknowledge an item's seq (if it has one) in its own epoch."""
        seq = a.item.seq
        if not seq:
            return
        key = (a.gateway.id, a.item.epoch)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = AckTarget(a.topic.gateway, a.item.epoch)
        self.acks[target].add(seq)

    def merge(self, other: BatchResult) -> None:
        for target, seqs in other.acks.items():
            self.acks[target] |= seqs
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.applied += other.applied
        self.ignored += other.ignored
        self.collisions += other.collisions
        self.gaps += other.gaps
        self.alerts |= other.alerts

    def ack_ranges(self) -> dict[AckTarget, tuple[tuple[int, int], ...]]:
        """The acks as inclusive ranges, per gateway and epoch."""
        return {target: ack_ranges(seqs) for target, seqs in self.acks.items() if seqs}


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
