from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cloud import auth, evidence
from cloud.api.deps import DB, CurrentUser, State
from cloud.api.responses import documented
from microbrain.protocol import EvidenceRef

router = APIRouter(prefix="/api/evidence", tags=["evidence"])
log = logging.getLogger(__name__)
_basic = HTTPBasic(auto_error=False)
# the largest evidence an event may declare (EvidenceRef.bytes); each upload is held
# to its own declared size, on disk, never in memory
MAX_UPLOAD = next(c.le for c in EvidenceRef.model_fields["bytes"].metadata if hasattr(c, "le"))
# served files are never second-guessed by a browser (a "JPEG" that is HTML runs no script)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        return 0  # the server has already refused a malformed one; count what arrives


@router.put(
    "/{event_id}/{name}",
    status_code=201,
    response_model=dict[str, str],
    openapi_extra=_BODY,
    responses=documented(401, 404, 413, 422),
)
async def upload(
    event_id: str,
    name: str,
    request: Request,
    creds: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> dict[str, str] | Response:
    """A gateway uploads a snapshot or clip of one of its events (HTTP Basic with its
    broker credentials); kept only if its bytes are the declared type (JPEG, PNG, MP4,
    AVI) and match the event's declared sha256 and size."""
    state = request.app.state.api

    def _prepare() -> evidence.Target:
        # who is sending, whose event it is, then what it declares: all settled before any
        # of the body is read
        with state.factory() as session:
            # a NUL is in no gateway id (and PostgreSQL could not even compare it)
            gateway = (
                auth.authenticate_gateway(session, creds.username, creds.password)
                if creds and "\x00" not in creds.username
                else None
            )
            if gateway is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "gateway credentials required",
                    headers={"WWW-Authenticate": "Basic"},
                )
            return evidence.prepare(session, state.settings.evidence_dir, gateway, event_id, name)

    target = await run_in_threadpool(_prepare)
    if _declared_length(request) > MAX_UPLOAD:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {MAX_UPLOAD} bytes"
        )
    received = await run_in_threadpool(evidence.Upload, target)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(received.write, chunk)  # 422: wrong type, past the size
        path = await run_in_threadpool(received.finish)
    except ClientDisconnect:
        # the gateway went away mid-body (it resends later): one line, not a traceback;
        # the answer goes nowhere
        received.discard("disconnected")
        log.warning(
            "evidence %s of event %s: the sender disconnected after %d of %d bytes; discarded",
            name,
            event_id,
            received.size,
            target.size,
        )
        return Response(status_code=status.HTTP_400_BAD_REQUEST)
    except BaseException:
        received.discard()
        raise
    return {"stored": path.name}


@router.get(
    "/{event_id}/{name}",
    response_class=FileResponse,
    responses={
        **documented(401, 404, 422),
        200: {
            "description": "the file, as the type its bytes were checked to be",
            "content": {t: {} for t in sorted(evidence.EVIDENCE_TYPES | {evidence.UNKNOWN})},
        },
    },
)
def download(event_id: str, name: str, db: DB, user: CurrentUser, st: State) -> FileResponse:
    """The evidence file of an event in your area."""
    event = evidence.find_event(db, event_id)
    # out of scope reads as missing (the same words), settled before anything the event
    # declares is looked at
    if not auth.in_scope(user, event.community, event.compound, event.building):
        raise evidence.not_found(event_id)
    stored = evidence.stored_file(st.settings.evidence_dir, event, name)
    headers = dict(NOSNIFF)
    if stored.media_type == evidence.UNKNOWN:
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return FileResponse(stored.path, media_type=stored.media_type, headers=headers)
