from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from cloud import auth
from cloud.api.deps import DB, CurrentUser, State
from cloud.api.responses import AUTHED, documented
from cloud.api.schemas import DeviceOut, GatewayOut
from cloud.db import models as m
from cloud.liveness import gateway_alive

router = APIRouter(prefix="/api/devices", tags=["devices"])


@router.get("/gateways", response_model=list[GatewayOut], responses=documented(*AUTHED))
def gateways(db: DB, user: CurrentUser, st: State) -> list[GatewayOut]:
    """Gateways in your area with liveness: online and heard from within 3 heartbeats."""
    now = st.clock()
    rows = db.scalars(
        select(m.Gateway).where(auth.scope_clause(user, m.Gateway)).order_by(m.Gateway.id)
    )
    out = []
    for g in rows:
        alive = gateway_alive(g, now)
        out.append(GatewayOut.model_validate(g).model_copy(update={"alive": alive}))
    return out


@router.get("", response_model=list[DeviceOut], responses=documented(*AUTHED))
def devices(db: DB, user: CurrentUser, gateway: str | None = None) -> list[DeviceOut]:
    """Cameras and sensors in your area, with when each was last heard of."""
    stmt = (
        select(m.Device)
        .join(m.Gateway, m.Gateway.id == m.Device.gateway)
        .where(auth.device_scope_clause(user))
    )
    if gateway:
        stmt = stmt.where(m.Device.gateway == gateway)
    rows = db.scalars(stmt.order_by(m.Device.gateway, m.Device.id))
    return [DeviceOut.model_validate(device) for device in rows]
