from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool

from cloud import auth, evidence
from cloud.api.deps import DB, CurrentUser, State
from cloud.errors import NotFound

router = APIRouter(prefix="/api/evidence", tags=["evidence"])
_basic = HTTPBasic(auto_error=False)
MAX_UPLOAD = 64 * 1024 * 1024  # held in memory while checked; clips are short


@router.put("/{event_id}/{name}", status_code=201)
async def upload(event_id: str, name: str, request: Request,
                 creds: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> dict:
    """A gateway uploads a snapshot or clip of one of its events (HTTP Basic with its
    broker credentials); kept only if it matches the event's declared sha256."""
    state = request.app.state.api
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {MAX_UPLOAD} bytes")
        chunks.append(chunk)

    def _store() -> str:
        with state.factory() as session:
            gateway = auth.authenticate_gateway(session, creds.username, creds.password) if creds else None
            if gateway is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "gateway credentials required",
                                    headers={"WWW-Authenticate": "Basic"})
            path = evidence.store(session, state.settings.evidence_dir, gateway, event_id, name,
                                  chunks)
            return str(path.name)

    return {"stored": await run_in_threadpool(_store)}


@router.get("/{event_id}/{name}")
def download(event_id: str, name: str, db: DB, user: CurrentUser, st: State) -> FileResponse:
    """The evidence file of an event in your area."""
    event, ref = evidence.declared(db, event_id, name)
    auth.require_place(user, event.community, event.compound, event.building, f"event {event_id}")
    path = evidence.path_for(st.settings.evidence_dir, event, name)
    if not path.is_file():
        raise NotFound(f"evidence {name!r} of event {event_id} has not been uploaded yet")
    return FileResponse(path, media_type=ref.get("content_type", "application/octet-stream"))

