from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from cloud import auth
from cloud.api.deps import ApiState, Bearer, user_from_request
from cloud.db import models as m

router = APIRouter(prefix="/api", tags=["stream"])
BATCH = 500
KEEPALIVE_S = 15.0


def _latest(state: ApiState) -> int:
    with state.factory() as s:
        return s.scalar(select(func.max(m.AlertTransition.id))) or 0


def _changes(state: ApiState, user: m.User, after: int) -> tuple[int, list[dict]]:
    with state.factory() as s:
        rows = s.execute(
            select(m.AlertTransition, m.Alert).join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
            .where(m.AlertTransition.id > after).order_by(m.AlertTransition.id).limit(BATCH)
        ).all()
    out = []
    for t, a in rows:
        after = t.id
        if auth.in_scope(user, a.community, a.compound, a.building):
            out.append({"id": t.id, "alert_id": a.id, "action": t.action, "from_status": t.from_status,
                        "status": t.to_status, "actor": t.actor, "at": t.at.isoformat(), "note": t.note,
                        "kind": a.kind, "severity": a.severity, "level": a.level, "count": a.count,
                        "community": a.community, "compound": a.compound, "building": a.building})
    return after, out


@router.get("/stream/alerts")
async def alert_stream(request: Request, creds: Bearer) -> StreamingResponse:
    """Server-sent events: every alert change in your area (opened, acknowledged,
    escalated, resolved, commented …) as it is committed. Resume with Last-Event-ID."""
    state: ApiState = request.app.state.api

    def _auth() -> m.User:
        with state.factory() as s:
            user = user_from_request(request, s, creds, query_token=True)
            s.expunge(user)
            return user

    user = await run_in_threadpool(_auth)
    last_header = request.headers.get("last-event-id", "")
    after = int(last_header) if last_header.isdigit() else await run_in_threadpool(_latest, state)

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        entry = state.notifier.subscribe()
        idle = 0.0
        try:
            yield b": connected\n\n"
            while not await request.is_disconnected():
                after, changes = await run_in_threadpool(_changes, state, user, after)
                for change in changes:
                    yield f"id: {change['id']}\nevent: alert\ndata: {json.dumps(change, ensure_ascii=False)}\n\n".encode()
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

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
