"""Whether a gateway and its devices are alive: one rule for the API's device list and
the console's tree and health pages, so the two never disagree about what is offline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.db import models as m

MISSED_HEARTBEATS = 3  # silent for this many heartbeat periods = not alive


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def gateway_alive(gateway: m.Gateway, now: datetime) -> bool:
    """Online by its last status and heard from within :data:`MISSED_HEARTBEATS`
    heartbeat periods (a gateway that died without its last will stays "online" in its
    row, so the state alone does not tell)."""
    return (
        gateway.state == "online"
        and gateway.last_seen is not None
        and _aware(now) - _aware(gateway.last_seen)
        <= timedelta(seconds=MISSED_HEARTBEATS * gateway.heartbeat_s)
    )


def reported_up(gateway: m.Gateway, device_type: str, device_id: str) -> bool:
    """The gateway's last health report does not name the device offline (a camera) or
    silent (a sensor)."""
    health = gateway.health or {}
    if device_type == "camera":
        cameras: dict[str, str] = health.get("cameras") or {}
        return cameras.get(device_id, "online") != "offline"
    silent: list[str] = health.get("sensors_silent") or []
    return device_id not in silent


def device_alive(device: m.Device, gateway: m.Gateway, now: datetime) -> bool:
    """A camera or sensor is alive when its gateway is, and the gateway's last health
    report does not name it offline (cameras) or silent (sensors): a camera that sees
    nothing sends nothing, so its own ``last_seen`` cannot tell."""
    return gateway_alive(gateway, now) and reported_up(gateway, device.type, device.id)


@dataclass(frozen=True, slots=True)
class Availability:
    """How many of a user's gateways and devices are alive now."""

    gateways_online: int
    gateways_total: int
    devices_online: int
    devices_total: int


def availability(session: Session, user: m.User, now: datetime) -> Availability:
    """The counts the wall and the daily report show, by the rules above: the area's
    gateways, then one row per device (its gateway, type and id, not the whole row)."""
    gateways = {
        g.id: g
        for g in session.scalars(select(m.Gateway).where(auth.scope_clause(user, m.Gateway)))
    }
    alive = {gid for gid, g in gateways.items() if gateway_alive(g, now)}
    devices_total = devices_online = 0
    for gateway_id, device_type, device_id in session.execute(
        select(m.Device.gateway, m.Device.type, m.Device.id)
        .join(m.Gateway, m.Gateway.id == m.Device.gateway)
        .where(auth.device_scope_clause(user))
    ):
        devices_total += 1
        if gateway_id in alive and reported_up(gateways[gateway_id], device_type, device_id):
            devices_online += 1
    return Availability(len(alive), len(gateways), devices_online, devices_total)
