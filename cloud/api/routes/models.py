"""The model registry and rollouts (cloud/model_registry): engineers register ONNX
models with their card and roll them out; gateways download the file a rollout sends
them, with their broker credentials, resuming with ``Range``."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.api.deps import DB, State, allowed, user_from_request
from cloud.api.params import RowId
from cloud.api.responses import ACTION, AUTHED, LOOKUP, documented
from cloud.db import models as m
from cloud.errors import Forbidden, Invalid
from cloud.model_registry import keys, rollouts, store
from cloud.model_registry.views import ModelOut, RolloutOut, model_out, rollout_out
from cloud.permissions import Action, require

router = APIRouter(prefix="/api/models", tags=["models"])
rollouts_router = APIRouter(prefix="/api/rollouts", tags=["models"])
log = logging.getLogger(__name__)

DOWNLOADS = Counter(
    "mb_model_registry_downloads_total",
    "model file downloads, by outcome (served, unauthenticated, not_targeted, forbidden)",
    ["outcome"],
)
_basic = HTTPBasic(auto_error=False)
_bearer = HTTPBearer(auto_error=False)
Manager = Annotated[m.User, allowed(Action.MANAGE_MODELS)]


@router.get("/key", response_class=PlainTextResponse, responses=documented())
def public_key(st: State) -> PlainTextResponse:
    """The registry's public key (one base64 line): put it in a gateway's ``model_key``
    file. Public by nature; the private key never leaves the cloud."""
    return PlainTextResponse(keys.public_text(st.settings.model_key_path) + "\n")


@router.post("", status_code=201, response_model=ModelOut, responses=documented(*ACTION))
def register(
    db: DB,
    st: State,
    user: Manager,
    file: Annotated[UploadFile, File(description="the exported .onnx")],
    name: Annotated[str, Form(max_length=100)],
    version: Annotated[str, Form(max_length=64)],
    detector_type: Annotated[str, Form(max_length=32)] = "onnx_yolo",
    input_size: Annotated[int | None, Form(ge=32, le=2048)] = None,
    classes: Annotated[
        str | None, Form(max_length=64_000, description="comma-separated; default: the file's")
    ] = None,
    min_gateway_version: Annotated[str, Form(max_length=32)] = "0.1.0",
    expires_days: Annotated[int, Form(ge=1, le=3650)] = 365,
    evaluation: Annotated[
        str | None, Form(max_length=64_000, description="`microbrain model eval`'s JSON")
    ] = None,
    notes: Annotated[str | None, Form(max_length=4000)] = None,
) -> ModelOut:
    """Register a model: the file is hashed, loaded with onnxruntime (422 when it cannot
    be), and kept under its sha256; classes and input size default to its metadata."""
    try:
        card = store.Card.model_validate(
            {
                "name": name,
                "version": version,
                "detector_type": detector_type,
                "input_size": input_size,
                "classes": [c.strip() for c in classes.split(",") if c.strip()]
                if classes
                else None,
                "min_gateway_version": min_gateway_version,
                "expires_days": expires_days,
                "evaluation": json.loads(evaluation) if evaluation else None,
                "notes": notes,
            }
        )
    except (ValidationError, ValueError) as err:
        store.UPLOADS.labels("invalid").inc()
        raise Invalid(f"the card is invalid: {err}") from None
    received = store.receive(st.settings.model_files, file.file)
    row = store.register(
        db, st.settings.model_files, received, card, actor=user.username, now=st.clock()
    )
    return model_out(db, row, user)


@router.get("", response_model=list[ModelOut], responses=documented(*AUTHED, 403))
def list_models(db: DB, user: Manager) -> list[ModelOut]:
    """Registered models, newest first, with the gateways (in your area) running each."""
    return [model_out(db, row, user) for row in store.list_models(db)]


@router.get("/{model_id}", response_model=ModelOut, responses=documented(*LOOKUP, 403))
def get_model(model_id: RowId, db: DB, user: Manager) -> ModelOut:
    """One model: its card, sha256, the gate's verdict and which gateways run it."""
    return model_out(db, store.get_model(db, model_id), user)


def _targets(session: Session, model_id: int, gateway: str) -> bool:
    return (
        session.scalars(
            select(m.ModelRolloutGateway.rollout_id)
            .join(m.ModelRollout, m.ModelRollout.id == m.ModelRolloutGateway.rollout_id)
            .where(
                m.ModelRolloutGateway.gateway == gateway,
                m.ModelRollout.model_id == model_id,
                m.ModelRollout.state.in_([*rollouts.ACTIVE, rollouts.RolloutState.DONE]),
            )
        ).first()
        is not None
    )


@router.get(
    "/{model_id}/file",
    response_class=FileResponse,
    responses={
        **documented(*LOOKUP, 400, 403),
        200: {"description": "the model file", "content": {"application/octet-stream": {}}},
        206: {"description": "the rest of it from a ``Range: bytes=N-``"},
        416: {"description": "the range starts past the end of the file"},
    },
)
def download(
    model_id: RowId,
    request: Request,
    db: DB,
    st: State,
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> FileResponse:
    """The model file, for a gateway a rollout targets with it (HTTP Basic with its broker
    credentials) or an engineer; honours ``Range: bytes=N-`` so a download resumes."""
    if basic is not None:
        gateway = (
            auth.authenticate_gateway(db, basic.username, basic.password)
            if "\x00" not in basic.username
            else None
        )
        if gateway is None:
            DOWNLOADS.labels("unauthenticated").inc()
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "gateway credentials unknown: the gateway's broker user name and password",
                headers={"WWW-Authenticate": "Basic"},
            )
        model = store.get_model(db, model_id)
        if not _targets(db, model.id, gateway.id):
            DOWNLOADS.labels("not_targeted").inc()
            raise Forbidden(
                f"model {model_id} is in no active rollout to gateway {gateway.id!r}: a "
                "gateway downloads only what the registry sends it"
            )
    else:
        try:
            require(user_from_request(request, db, bearer), Action.MANAGE_MODELS)
        except Forbidden:
            DOWNLOADS.labels("forbidden").inc()
            raise
        model = store.get_model(db, model_id)
    path = store.model_file(st.settings.model_files, model.sha256)
    if not path.is_file():
        raise Invalid(
            f"model {model_id}'s file {path.name} is missing from the model dir; upload it again"
        )
    DOWNLOADS.labels("served").inc()
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{model.name}-{model.version}.onnx",
        headers={"X-Content-SHA256": model.sha256},
    )


# --- rollouts ------------------------------------------------------------------------


class AbortIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: int | None = Field(
        default=None, ge=1, description="the model to go back to; default: the previous one"
    )


@rollouts_router.post("", status_code=201, response_model=RolloutOut, responses=documented(*ACTION))
def create_rollout(body: rollouts.RolloutRequest, db: DB, st: State, user: Manager) -> RolloutOut:
    """Roll a model out: canary first, the rest once the canary has been healthy for
    ``canary_healthy_s``. 409 with the gate's reasons when the model's evaluation does not
    pass, unless forced with a reason (recorded in the audit log)."""
    key = keys.signing_key(st.settings.model_key_path)
    rollout = rollouts.create(db, key, body, user=user, now=st.clock())
    return rollout_out(db, rollout, user)


@rollouts_router.get("", response_model=list[RolloutOut], responses=documented(*AUTHED, 403))
def list_rollouts(db: DB, user: Manager) -> list[RolloutOut]:
    """Rollouts reaching your area, newest first, each gateway's state with them."""
    return [rollout_out(db, r, user) for r in rollouts.list_rollouts(db, user)]


@rollouts_router.get("/{rollout_id}", response_model=RolloutOut, responses=documented(*LOOKUP, 403))
def get_rollout(rollout_id: RowId, db: DB, user: Manager) -> RolloutOut:
    """One rollout: its state, and each gateway's state, reason and version."""
    return rollout_out(db, rollouts.get_rollout(db, rollout_id), user)


@rollouts_router.post(
    "/{rollout_id}/abort", response_model=RolloutOut, responses=documented(*ACTION)
)
def abort_rollout(rollout_id: RowId, body: AbortIn, db: DB, st: State, user: Manager) -> RolloutOut:
    """Stop an active rollout: nothing more is sent; installed gateways keep the model."""
    rollout = rollouts.abort(db, rollout_id, user=user, now=st.clock(), reason=body.reason)
    return rollout_out(db, rollout, user)


@rollouts_router.post(
    "/{rollout_id}/rollback", status_code=201, response_model=RolloutOut,
    responses=documented(*ACTION),
)  # fmt: skip
def rollback_rollout(
    rollout_id: RowId, body: RollbackIn, db: DB, st: State, user: Manager
) -> RolloutOut:
    """Take the rollout's gateways back to the previous model (or ``model_id``) with a new
    signed manifest (higher serial, ``rollback=true``); answers the new rollout."""
    key = keys.signing_key(st.settings.model_key_path)
    back = rollouts.rollback(db, key, rollout_id, user=user, now=st.clock(), model_id=body.model_id)
    return rollout_out(db, back, user)
