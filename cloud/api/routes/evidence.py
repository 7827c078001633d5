from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool

from cloud import auth, evidence
from cloud.api.deps import DB, CurrentUser, State
from cloud.errors import NotFound
from microbrain.protocol import EvidenceRef

router = APIRouter(prefix="/api/evidence", tags=["evidence"])
_basic = HTTPBasic(auto_error=False)
# the largest evidence an event may declare (EvidenceRef.bytes); each upload is held
# to its own declared size, on disk, never in memory
MAX_UPLOAD = next(c.le for c in EvidenceRef.model_fields["bytes"].metadata if hasattr(c, "le"))


@router.put("/{event_id}/{name}", status_code=201)
async def upload(event_id: str, name: str, request: Request,
                 creds: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> dict:
    """A gateway uploads a snapshot or clip of one of its events (HTTP Basic with its
    broker credentials); kept only if it matches the event's declared sha256 and size."""
    state = request.app.state.api

    def _prepare() -> tuple[Path, dict]:
        # who is sending, and for which event, is settled before any of the body is read
        with state.factory() as session:
            gateway = auth.authenticate_gateway(session, creds.username, creds.password) if creds else None
            if gateway is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "gateway credentials required",
                                    headers={"WWW-Authenticate": "Basic"})
            return evidence.prepare(session, state.settings.evidence_dir, gateway, event_id, name)

    target, ref = await run_in_threadpool(_prepare)
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_UPLOAD:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {MAX_UPLOAD} bytes")
    received = await run_in_threadpool(evidence.Upload, target, ref)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(received.write, chunk)  # 422 past the declared size
        path = await run_in_threadpool(received.finish)
    except BaseException:
        received.discard()
        raise
    return {"stored": path.name}


@router.get("/{event_id}/{name}")
def download(event_id: str, name: str, db: DB, user: CurrentUser, st: State) -> FileResponse:
    """The evidence file of an event in your area."""
    event, ref = evidence.declared(db, event_id, name)
    auth.require_place(user, event.community, event.compound, event.building, f"event {event_id}")
    path = evidence.path_for(st.settings.evidence_dir, event, name)
    if not path.is_file():
        raise NotFound(f"evidence {name!r} of event {event_id} has not been uploaded yet")
    return FileResponse(path, media_type=ref.get("content_type", "application/octet-stream"))

