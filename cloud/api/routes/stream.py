from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from cloud import auth
from cloud.api.deps import ApiState, Bearer, grant_from_request, token_from_request
from cloud.api.params import LastEventId
from cloud.db import models as m

router = APIRouter(prefix="/api", tags=["stream"])
BATCH = 500
KEEPALIVE_S = 15.0


def _latest(state: ApiState) -> int:
    with state.read_factory() as s:
        return s.scalar(select(func.max(m.AlertTransition.id))) or 0


def _changes(state: ApiState, user: m.User, after: int) -> tuple[int, list[dict[str, Any]]]:
    with state.read_factory() as s:
        rows = s.execute(
            select(m.AlertTransition, m.Alert)
            .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
            .where(m.AlertTransition.id > after)
            .order_by(m.AlertTransition.id)
            .limit(BATCH)
        ).all()
    out = []
    for t, a in rows:
        after = t.id
        if auth.in_scope(user, a.community, a.compound, a.building):
            out.append(
                {
                    "id": t.id,
                    "alert_id": a.id,
                    "action": t.action,
                    "from_status": t.from_status,
                    "status": t.to_status,
                    "actor": t.actor,
                    "at": t.at.isoformat(),
                    "note": t.note,
                    "kind": a.kind,
                    "severity": a.severity,
                    "level": a.level,
                    "count": a.count,
                    "community": a.community,
                    "compound": a.compound,
                    "building": a.building,
                }
            )
    return after, out


@router.get("/stream/alerts")
async def alert_stream(
    request: Request, creds: Bearer, last_event_id: LastEventId = None
) -> StreamingResponse:
    """Server-sent events: every alert change in your area (opened, acknowledged,
    escalated, resolved, commented …) as it is committed. Resume with Last-Event-ID.

    The stream ends (``event: end`` with the reason, then the connection closes) when
    its token expires, and within ``stream_auth_check_s`` when the token is revoked or
    the user deactivated; reconnecting then answers 401 until the user logs in again."""
    state: ApiState = request.app.state.api
    token = token_from_request(request, creds, query_token=True)

    def _auth() -> auth.Grant:
        with state.read_factory() as s:
            grant = grant_from_request(request, s, creds, query_token=True)
            s.expunge(grant.user)
            return grant

    def _still_valid() -> bool:
        with state.read_factory() as s:
            return auth.grant_for_token(s, token, now=state.clock()) is not None

    grant = await run_in_threadpool(_auth)
    user = grant.user
    # bounded like the ids it names (422 beyond), so it is never too big to query
    after = last_event_id if last_event_id is not None else await run_in_threadpool(_latest, state)

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        entry = state.notifier.subscribe()
        idle = 0.0
        check_every = timedelta(seconds=state.stream_auth_check_s)
        checked_at = state.clock()
        try:
            yield b": connected\n\n"
            while not await request.is_disconnected():
                now = state.clock()
                ended = "token_expired" if now >= grant.expires_at else None
                if ended is None and now - checked_at >= check_every:
                    checked_at = now
                    if not await run_in_threadpool(_still_valid):
                        ended = "token_revoked_or_user_deactivated"
                if ended is not None:
                    end = json.dumps({"reason": ended, "detail": "log in again"})
                    yield f"event: end\ndata: {end}\n\n".encode()
                    return
                after, changes = await run_in_threadpool(_changes, state, user, after)
                for change in changes:
                    data = json.dumps(change, ensure_ascii=False)
                    yield f"id: {change['id']}\nevent: alert\ndata: {data}\n\n".encode()
                if changes:
                    idle = 0.0
                    continue
                entry[1].clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entry[1].wait(), state.stream_poll_s)
                idle += state.stream_poll_s
                if idle >= KEEPALIVE_S:  # proxies close silent connections
                    idle = 0.0
                    yield b": keep-alive\n\n"
        finally:
            state.notifier.unsubscribe(entry)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
