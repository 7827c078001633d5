"""Load a :class:`microbrain.site.Site` into the tables (idempotent: run it on every start).

Places removed from the YAML are kept in the database: alerts and events refer to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.clock import Clock, system_clock
from cloud.db import models as m
from microbrain.broker import mosquitto_conf
from microbrain.site import Contact, EscalationOverride, Site

_Row = TypeVar("_Row", bound=m.Base)


@dataclass(frozen=True, slots=True)
class SyncReport:
    communities: int
    compounds: int
    buildings: int
    gateways: int
    devices: int
    departments: int


def _contacts(contacts: Iterable[Contact]) -> list[dict[str, Any]]:
    return [c.model_dump(exclude_none=True) for c in contacts]


def _override(value: EscalationOverride | None) -> dict[str, Any] | None:
    # stored as plain JSON; escalation.policy_for merges it with merge_policy
    if value is None:
        return None
    return value.model_dump(mode="json", exclude_none=True)


def _upsert(
    session: Session, model: type[_Row], keys: Mapping[str, object], values: Mapping[str, object]
) -> _Row:
    row = session.scalars(select(model).filter_by(**keys)).one_or_none()
    if row is None:
        row = model(**keys, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    return row


def sync_site(
    session: Session,
    site: Site,
    *,
    clock: Clock = system_clock,
    sources: Mapping[str, str] | None = None,
) -> SyncReport:
    """Upsert the site tree, departments, gateways and their devices. ``sources`` is
    where each node was declared (:func:`microbrain.site.loader.site_sources`); without
    it the site is stored as loaded from nowhere recorded ({})."""
    now: datetime = clock()
    _upsert(
        session,
        m.SiteConfig,
        {"id": 1},
        {
            "district": site.district.id,
            "name": site.district.name,
            "timezone": site.district.timezone,
            "escalation": site.escalation.model_dump(mode="json"),
            "loaded_at": now,
            "sources": dict(sources or {}),
        },
    )
    counts = {
        "communities": 0,
        "compounds": 0,
        "buildings": 0,
        "gateways": 0,
        "devices": 0,
        "departments": 0,
    }
    for dept in site.departments:
        _upsert(
            session,
            m.Department,
            {"id": dept.id},
            {"name": dept.name, "contacts": _contacts(dept.contacts)},
        )
        counts["departments"] += 1
    for community in site.communities:
        _upsert(
            session,
            m.Community,
            {"id": community.id},
            {
                "name": community.name,
                "contacts": _contacts(community.contacts),
                "escalation": _override(community.escalation),
            },
        )
        counts["communities"] += 1
        session.flush()  # compounds point at communities
        for compound in community.compounds:
            _upsert(
                session,
                m.Compound,
                {"community": community.id, "id": compound.id},
                {
                    "name": compound.name,
                    "contacts": _contacts(compound.contacts),
                    "escalation": _override(compound.escalation),
                },
            )
            counts["compounds"] += 1
            for building in compound.buildings:
                _upsert(
                    session,
                    m.Building,
                    {"community": community.id, "compound": compound.id, "id": building.id},
                    {
                        "name": building.name,
                        "category": building.category,
                        "leader": building.leader.model_dump(exclude_none=True)
                        if building.leader
                        else None,
                    },
                )
                counts["buildings"] += 1
            for gateway in compound.gateways:
                _upsert(
                    session,
                    m.Gateway,
                    {"id": gateway.id},
                    {
                        "community": community.id,
                        "compound": compound.id,
                        "building": gateway.building,
                        "name": gateway.name,
                        "heartbeat_s": gateway.heartbeat_s,
                    },
                )
                counts["gateways"] += 1
                session.flush()  # devices point at gateways
                for camera in gateway.cameras:
                    _upsert(
                        session,
                        m.Device,
                        {"gateway": gateway.id, "id": camera.id},
                        {
                            "type": "camera",
                            "kind": "camera",
                            "name": camera.name,
                            "building": camera.building,
                        },
                    )
                    counts["devices"] += 1
                for sensor in gateway.sensors:
                    kind = site.profile(sensor.profile).kind
                    _upsert(
                        session,
                        m.Device,
                        {"gateway": gateway.id, "id": sensor.id},
                        {
                            "type": "sensor",
                            "kind": kind,
                            "name": sensor.name,
                            "building": sensor.building,
                        },
                    )
                    counts["devices"] += 1
    session.flush()
    return SyncReport(**counts)


def register_gateway(
    session: Session,
    community: str,
    compound: str,
    gateway: str,
    building: str | None = None,
    *,
    cameras: Iterable[str] = (),
    sensors: Iterable[str] = (),
) -> m.Gateway:
    """Register one gateway (and its compound, if new) outside a site file: tests, tools.
    The ingest takes events and readings only from the ``cameras`` and ``sensors`` named
    (and from the gateway itself)."""
    _upsert(session, m.Community, {"id": community}, {"name": community})
    session.flush()
    _upsert(session, m.Compound, {"community": community, "id": compound}, {"name": compound})
    if building:
        _upsert(
            session,
            m.Building,
            {"community": community, "compound": compound, "id": building},
            {"name": building, "category": "residential_highrise"},
        )
    row = _upsert(
        session,
        m.Gateway,
        {"id": gateway},
        {"community": community, "compound": compound, "building": building},
    )
    session.flush()
    for kind, names in (("camera", cameras), ("sensor", sensors)):
        for name in names:
            _upsert(
                session,
                m.Device,
                {"gateway": gateway, "id": name},
                {"type": kind, "kind": kind, "name": name, "building": building},
            )
    session.flush()
    return row


def import_gateway_passwords(
    session: Session, site: Site, env: Mapping[str, str], *, clock: Clock = system_clock
) -> int:
    """Store (the hash of) each gateway's broker password whose ``password_env`` is set in
    ``env``, so that one secret serves the broker and evidence uploads. Unchanged
    passwords are left alone; returns how many were stored."""
    from cloud import auth

    stored = 0
    for place in site.gateways():
        var = place.gateway.password_env
        password = env.get(var, "") if var else ""
        if not password:
            continue
        current = session.get(m.GatewayCredential, place.gateway.id)
        if current is not None and mosquitto_conf.check_password(current.password_hash, password):
            continue
        auth.set_gateway_password(session, place.gateway.id, password, now=clock())
        stored += 1
    return stored
