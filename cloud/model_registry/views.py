"""What the API and the console show of models and rollouts (one shape for both)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from cloud.db import models as m
from cloud.model_registry import rollouts, store


class RunningOn(BaseModel):
    gateway: str
    community: str
    compound: str
    serial: int | None


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: str
    sha256: str
    bytes: int
    card: dict[str, Any]
    uploaded_by: str
    created_at: datetime
    gate: list[str]  # why it may not roll out unforced (empty: it may)
    running_on: list[RunningOn]


class RolloutGatewayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    gateway: str
    canary: bool
    state: str
    reason: str | None
    sends: int
    sent_at: datetime | None
    answered_at: datetime | None
    previous_version: str | None
    running_version: str | None
    online: bool


class RolloutOut(BaseModel):
    id: int
    model_id: int
    model: str  # name@version
    serial: int
    state: str
    rollback: bool
    rollback_of: int | None
    previous_model_id: int | None
    target: dict[str, Any]
    canary_healthy_s: int
    abort_failures: int
    abort_failures_total: int
    abort_fp_ratio: float
    forced: bool
    force_reason: str | None
    healthy_since: datetime | None
    reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    counts: dict[str, int]  # gateways per state
    gateways: list[RolloutGatewayOut]


def model_out(session: Session, model: m.ModelVersion, user: m.User) -> ModelOut:
    running = [
        RunningOn(
            gateway=g.id,
            community=g.community,
            compound=g.compound,
            serial=(store.running_model(g) or (None, None, None))[2],
        )
        for g in store.gateways_running(session, model, user)
    ]
    return ModelOut(
        id=model.id,
        name=model.name,
        version=model.version,
        sha256=model.sha256,
        bytes=model.bytes,
        card=model.card,
        uploaded_by=model.uploaded_by,
        created_at=model.created_at,
        gate=rollouts.gate(model),
        running_on=running,
    )


def rollout_out(session: Session, rollout: m.ModelRollout, user: m.User) -> RolloutOut:
    rows = rollouts.visible(session, rollout, user)
    gws = rollouts.gateways_by_id(session, (r.gateway for r in rows))
    model = session.get(m.ModelVersion, rollout.model_id)
    manifest = session.get(m.ModelManifestRow, rollout.serial)
    return RolloutOut(
        id=rollout.id,
        model_id=rollout.model_id,
        model=f"{model.name}@{model.version}" if model else "?",
        serial=rollout.serial,
        state=rollout.state,
        rollback=bool(manifest and manifest.rollback),
        rollback_of=rollout.rollback_of,
        previous_model_id=rollout.previous_model_id,
        target=rollout.target,
        canary_healthy_s=rollout.canary_healthy_s,
        abort_failures=rollout.abort_failures,
        abort_failures_total=rollout.abort_failures_total,
        abort_fp_ratio=rollout.abort_fp_ratio,
        forced=rollout.forced,
        force_reason=rollout.force_reason,
        healthy_since=rollout.healthy_since,
        reason=rollout.reason,
        created_by=rollout.created_by,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
        counts=dict(Counter(r.state for r in rows)),
        gateways=[
            RolloutGatewayOut(
                gateway=r.gateway,
                canary=r.canary,
                state=r.state,
                reason=r.reason,
                sends=r.sends,
                sent_at=r.sent_at,
                answered_at=r.answered_at,
                previous_version=r.previous_version,
                running_version=r.running_version,
                online=(g := gws.get(r.gateway)) is not None and g.state == "online",
            )
            for r in rows
        ],
    )
