"""Whether a gateway and its devices are alive: one rule for the API's device list and
the console's tree and health pages, so the two never disagree about what is offline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def device_alive(device: m.Device, gateway: m.Gateway, now: datetime) -> bool:
    """A camera or sensor is alive when its gateway is, and the gateway's last health
    report does not name it offline (cameras) or silent (sensors): a camera that sees
    nothing sends nothing, so its own ``last_seen`` cannot tell."""
    if not gateway_alive(gateway, now):
        return False
    health = gateway.health or {}
    if device.type == "camera":
        cameras: dict[str, str] = health.get("cameras") or {}
        return cameras.get(device.id, "online") != "offline"
    silent: list[str] = health.get("sensors_silent") or []
    return device.id not in silent
