"""The hierarchy tree (层级树) with live status per node, and device health (设备健康):
both limited to the user's subtree as the API's site and device lists are, with
liveness decided by :mod:`cloud.liveness` as the API decides it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.api.deps import DB, State
from cloud.awareness.liveness_sweep import troubled
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m
from cloud.liveness import device_alive, gateway_alive

router = APIRouter()
DONE = ("resolved", "closed")  # what no longer counts as open
Path = tuple[str, ...]  # (community,), (community, compound) or (c, k, building)


@dataclass
class Node:
    """One place of the tree and what is wrong below it."""

    path: Path
    name: str
    open_by_severity: Counter[int] = field(default_factory=Counter)
    offline: int = 0
    devices: int = 0
    children: list[Node] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.path[-1]

    @property
    def open_total(self) -> int:
        return sum(self.open_by_severity.values())

    def queue_query(self) -> str:
        """The queue's filter for this place (the queue filters by compound and
        building; a community is the user's whole view or a compound list)."""
        keys = ("community", "compound", "building")
        parts = [f"{k}={v}" for k, v in zip(keys, self.path, strict=False) if k != "community"]
        return "&".join(parts)


def _prefixes(community: str, compound: str, building: str | None) -> list[Path]:
    paths: list[Path] = [(community,), (community, compound)]
    if building:
        paths.append((community, compound, building))
    return paths


def build_tree(db: Session, user: m.User, now: datetime) -> list[Node]:
    """The communities of the user's subtree with their compounds and buildings, each
    with open alerts by severity and offline gateways/devices counted at it and below."""
    alerts: dict[Path, Counter[int]] = {}
    for community, compound, building, severity, n in db.execute(
        select(
            m.Alert.community, m.Alert.compound, m.Alert.building, m.Alert.severity, func.count()
        )
        .where(auth.scope_clause(user, m.Alert), m.Alert.status.not_in(DONE))
        .group_by(m.Alert.community, m.Alert.compound, m.Alert.building, m.Alert.severity)
    ):
        for p in _prefixes(community, compound, building):
            alerts.setdefault(p, Counter())[severity] += n
    offline: Counter[Path] = Counter()
    devices: Counter[Path] = Counter()
    gateways = {g.id: g for g in db.scalars(select(m.Gateway))}
    for g in gateways.values():
        if not auth.in_scope(user, g.community, g.compound, g.building if user.building else None):
            continue
        for p in _prefixes(g.community, g.compound, g.building):
            devices[p] += 1
            offline[p] += 0 if gateway_alive(g, now) else 1
    for d in db.scalars(select(m.Device)):
        g = gateways[d.gateway]
        building = d.building or g.building
        if not auth.in_scope(user, g.community, g.compound, building if user.building else None):
            continue
        for p in _prefixes(g.community, g.compound, building):
            devices[p] += 1
            offline[p] += 0 if device_alive(d, g, now) else 1

    def node(path: Path, name: str) -> Node:
        return Node(path, name, alerts.get(path, Counter()), offline[path], devices[path])

    communities = [
        node((c.id,), c.name)
        for c in db.scalars(select(m.Community).order_by(m.Community.id))
        if user.community in (None, c.id)
    ]
    by_path = {n.path: n for n in communities}
    for k in db.scalars(select(m.Compound).order_by(m.Compound.community, m.Compound.id)):
        parent = by_path.get((k.community,))
        if parent is not None and user.compound in (None, k.id):
            child = node((k.community, k.id), k.name)
            parent.children.append(child)
            by_path[child.path] = child
    for b in db.scalars(select(m.Building).order_by(m.Building.id)):
        parent = by_path.get((b.community, b.compound))
        if parent is not None and auth.in_scope(user, b.community, b.compound, b.id):
            parent.children.append(node((b.community, b.compound, b.id), b.name))
    return communities


@router.get("/tree", response_class=HTMLResponse)
def tree_page(request: Request, db: DB, signed: Signed, st: State) -> HTMLResponse:
    """The tree; its body refreshes itself every 10 s."""
    nodes = build_tree(db, signed.user, st.clock())
    return render(request, "tree.html", {"nodes": nodes}, signed=signed)


@router.get("/tree/body", response_class=HTMLResponse)
def tree_body(request: Request, db: DB, signed: Signed, st: State) -> HTMLResponse:
    nodes = build_tree(db, signed.user, st.clock())
    return render(request, "partials/tree_body.html", {"nodes": nodes}, signed=signed)


@dataclass(frozen=True)
class GatewayHealth:
    gateway: m.Gateway
    alive: bool
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    model: str | None


@dataclass(frozen=True)
class DeviceHealth:
    device: m.Device
    gateway: m.Gateway
    alive: bool


def _gateway_health(g: m.Gateway, now: datetime) -> GatewayHealth:
    # the gateway's last Status.health (microbrain/protocol/payloads.py Health), as stored
    health: dict[str, Any] = g.health or {}
    model = health.get("model") or None
    return GatewayHealth(
        gateway=g,
        alive=gateway_alive(g, now),
        outbox_depth=health.get("outbox_depth"),
        outbox_oldest_age_s=health.get("outbox_oldest_age_s"),
        model=f"{model['name']} {model['version']}" if model else None,
    )


def device_health(
    db: Session, user: m.User, now: datetime
) -> tuple[list[GatewayHealth], list[DeviceHealth]]:
    """Gateways and devices of the user's area (scoped as ``GET /api/devices``), offline
    first, then by id."""
    gws = [
        _gateway_health(g, now)
        for g in db.scalars(
            select(m.Gateway).where(auth.scope_clause(user, m.Gateway)).order_by(m.Gateway.id)
        )
    ]
    devs = [
        DeviceHealth(d, g, device_alive(d, g, now))
        for d, g in db.execute(
            select(m.Device, m.Gateway)
            .join(m.Gateway, m.Gateway.id == m.Device.gateway)
            .where(auth.device_scope_clause(user))
            .order_by(m.Device.gateway, m.Device.id)
        ).all()
    ]
    gws.sort(key=lambda h: h.alive)
    devs.sort(key=lambda h: h.alive)
    return gws, devs


@router.get("/health", response_class=HTMLResponse)
def health_page(request: Request, db: DB, signed: Signed, st: State) -> HTMLResponse:
    """Device health: what the liveness sweep found wanting (flapping, offline, unknown:
    debounced, with since when), then every gateway and device, offline first."""
    gws, devs = device_health(db, signed.user, st.clock())
    context = {"gateways": gws, "devices": devs, "troubled": troubled(db, signed.user)}
    return render(request, "health.html", context, signed=signed)
