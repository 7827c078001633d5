"""Phase 2 of a batch: whose is each message, and is what it names its own?

A message counts only from a registered gateway on its own topic (its community and
compound). An event or reading must name a building of that compound (or none) and a
camera or sensor the site declares on that gateway; the gateway's own id as the source
is a gateway-level event. Everything else is refused with its reason. One select for the
gateways (locked, in id order, so two workers take them in the same order), one for the
buildings and one for the devices: never a query per message.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.ingest import metrics
from cloud.ingest.records import (
    Accepted,
    AckTarget,
    Decoded,
    Item,
    Rejection,
    ReplyFrom,
    SeqAck,
    StatusFrom,
)
from microbrain.protocol import Event, Reading, Reply, Status

log = logging.getLogger(__name__)


@dataclass
class Resolved:
    """The batch sorted by kind, each message with its registered gateway."""

    gateways: dict[str, m.Gateway] = field(default_factory=dict)
    items: list[Accepted] = field(default_factory=list)
    statuses: list[StatusFrom] = field(default_factory=list)
    replies: list[ReplyFrom] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def resolve_gateways(session: Session, decoded: list[Decoded]) -> Resolved:
    """Find each message's gateway; refuse strangers, wrong places and bad payloads."""
    out = Resolved()
    ids = sorted({d.topic.gateway.gateway for d in decoded})
    if ids:
        out.gateways = {
            g.id: g
            for g in session.scalars(
                select(m.Gateway)
                .where(m.Gateway.id.in_(ids))
                .order_by(m.Gateway.id)
                .with_for_update()
            )
        }
    for d in decoded:
        channel = d.topic.channel.value
        path = d.topic.gateway
        gw = out.gateways.get(path.gateway)
        if gw is None:
            # never acknowledged: a stranger must not learn what the cloud would take
            out.rejections.append(
                Rejection(
                    d.msg,
                    f"gateway {path.gateway!r} is not registered",
                    "unknown_gateway",
                    channel=channel,
                )
            )
        elif (gw.community, gw.compound) != (path.community, path.compound):
            out.rejections.append(
                Rejection(
                    d.msg,
                    f"gateway {gw.id!r} is registered in {gw.community}/{gw.compound}, "
                    f"not {path.community}/{path.compound}",
                    "place_mismatch",
                    gateway=gw.id,
                    field="topic",
                    channel=channel,
                )
            )
        elif d.refusal is not None:
            saved = d.refusal.salvaged
            ack = SeqAck(AckTarget(path, saved.epoch), saved.seq) if saved else None
            out.rejections.append(
                Rejection(
                    d.msg,
                    str(d.refusal.error),
                    d.refusal.label,
                    gateway=gw.id,
                    field=d.refusal.error.field,
                    ack=ack,
                    channel=channel,
                )
            )
        elif isinstance(d.payload, Status):
            out.statuses.append(StatusFrom(gw, d.payload))
        elif isinstance(d.payload, Reply):
            out.replies.append(ReplyFrom(d.msg, d.topic, gw, d.payload))
        elif isinstance(d.payload, Event | Reading):
            out.items.append(Accepted(d.msg, d.topic, gw, d.payload))
    return out


@dataclass(frozen=True, slots=True)
class PlaceProblem:
    label: str  # metric label: place_mismatch | unknown_device
    reason: str
    field: str


@dataclass
class PlaceCheck:
    kept: list[Accepted] = field(default_factory=list)
    refused: list[Rejection] = field(default_factory=list)


def device_of(item: Item) -> str:
    return item.source if isinstance(item, Event) else item.sensor


@dataclass(frozen=True, slots=True)
class PlaceIndex:
    """The buildings of the batch's compounds and the gateways owning its devices."""

    buildings: frozenset[tuple[str, str, str]]
    owners: dict[str, frozenset[str]]

    @classmethod
    def load(cls, session: Session, items: list[Accepted]) -> PlaceIndex:
        compounds = {a.gateway.compound for a in items}
        buildings = frozenset(
            (c, k, b)
            for c, k, b in session.execute(
                select(m.Building.community, m.Building.compound, m.Building.id).where(
                    m.Building.compound.in_(compounds)
                )
            )
        )
        devices = {device_of(a.item) for a in items}
        owners: dict[str, set[str]] = defaultdict(set)
        for dev, owner in session.execute(
            select(m.Device.id, m.Device.gateway).where(m.Device.id.in_(devices))
        ):
            owners[dev].add(owner)
        return cls(buildings, {dev: frozenset(gws) for dev, gws in owners.items()})

    def problem(self, item: Item, gw: m.Gateway) -> PlaceProblem | None:
        """What is wrong if the item names a place or device not its gateway's."""
        if item.building and (gw.community, gw.compound, item.building) not in self.buildings:
            return PlaceProblem(
                "place_mismatch",
                f"building {item.building!r} is not in "
                f"{gw.community}/{gw.compound}, where gateway {gw.id!r} is",
                "building",
            )
        device = device_of(item)
        name = "source" if isinstance(item, Event) else "sensor"
        owners = self.owners.get(device, frozenset())
        if device == gw.id or gw.id in owners:
            return None
        if owners:
            return PlaceProblem(
                "place_mismatch",
                f"device {device!r} belongs to gateway {min(owners)!r}, not {gw.id!r}",
                name,
            )
        return PlaceProblem(
            "unknown_device",
            f"device {device!r} is not declared on gateway "
            f"{gw.id!r} in the site; add it to the site file or fix the "
            "gateway's configuration",
            name,
        )


def check_places(session: Session, items: list[Accepted]) -> PlaceCheck:
    """Keep the items that name their own gateway's places and devices; refuse the rest
    (acknowledged: they are kept in the dead letters, never alerted)."""
    out = PlaceCheck()
    if not items:
        return out
    index = PlaceIndex.load(session, items)
    unknown: Counter[str] = Counter()
    for a in items:
        problem = index.problem(a.item, a.gateway)
        if problem is None:
            out.kept.append(a)
            continue
        out.refused.append(
            Rejection(
                a.msg,
                problem.reason,
                problem.label,
                gateway=a.gateway.id,
                field=problem.field,
                ack=a.seq_ack,
                channel=a.channel,
            )
        )
        if problem.label == "unknown_device":
            unknown[a.gateway.id] += 1
    gateways = {a.gateway.id: a.gateway for a in items}
    for gid, n in unknown.items():
        gw = gateways[gid]
        gw.unknown_device_items = (gw.unknown_device_items or 0) + n
        # a registered gateway's id (the site bounds the label's values)
        metrics.UNKNOWN_DEVICE.labels(gid).inc(n)
        log.warning("gateway %s: %d item(s) from devices the site does not declare", gid, n)
    return out
