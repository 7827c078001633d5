"""The live queue (告警队列): the page, its rows for a filter, the live stream of row
changes, and the quick actions (acknowledge, bulk acknowledge and verdicts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import alerts, auth
from cloud.alerts import queries, verdicts
from cloud.api.deps import DB, State
from cloud.api.params import RowId
from cloud.console.filters import LEVELS, PAGE, STATUSES, QueueFilter
from cloud.console.live import KEEPALIVE_S, Change, feed_of
from cloud.console.routes.page_errors import status_of, toast
from cloud.console.session import COOKIE, Signed
from cloud.console.templating import environment, render, template_values
from cloud.db import models as m
from cloud.errors import DomainError
from cloud.permissions import Action, require

router = APIRouter()
MAX_BULK = 200
CRITICAL = 3


def _listing(db: Session, user: m.User, flt: QueueFilter) -> dict[str, Any]:
    """A page of rows for the filter, with its total and how many lack a verdict (the
    same reads as GET /api/alerts and /api/alerts/counts)."""
    total, rows = queries.list_alerts(db, user, flt.query())
    unreviewed = queries.counts(db, user, flt.query()).unreviewed
    return {"flt": flt, "rows": rows, "total": total, "unreviewed": unreviewed, "page": PAGE}


def _kinds(db: DB, user: m.User) -> list[str]:
    return list(
        db.scalars(
            select(m.Alert.kind).where(auth.scope_clause(user, m.Alert)).distinct().limit(100)
        )
    )


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    flt = QueueFilter.from_request(request)
    return render(
        request,
        "queue.html",
        {
            **_listing(db, signed.user, flt),
            "kinds": _kinds(db, signed.user),
            "levels": LEVELS,
            "statuses": STATUSES,
        },
        signed=signed,
    )


@router.get("/console/rows", response_class=HTMLResponse)
def queue_rows(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The rows for a filter (the filter form and "more" ask for these), with the counts
    as out-of-band swaps."""
    flt = QueueFilter.from_request(request)
    return render(
        request,
        "partials/rows.html",
        {**_listing(db, signed.user, flt), "counts_oob": True},
        signed=signed,
    )


def _fragment(template: str, values: dict[str, Any], **extra: Any) -> str:
    return environment.get_template(template).render({**values, **extra})


def _sees(user: m.User, alert: m.Alert) -> bool:
    return auth.in_scope(user, alert.community, alert.compound, alert.building)


@router.get("/console/stream")
async def queue_stream(request: Request, signed: Signed, st: State) -> StreamingResponse:
    """Server-sent events for the queue: each change is one ``change`` event whose data
    are out-of-band swaps (the row removed where it was, put on top if it still matches
    the filter, the unreviewed count, a popup for a new critical alert). It ends (event
    ``end``) when the session expires or is revoked; the page then reloads to the login."""
    flt = QueueFilter.from_request(request)
    user = signed.user
    token = request.cookies.get(COOKIE, "")
    values = template_values(request, signed)
    feed = feed_of(st, request.app.state)
    # what the fragment for a batch depends on besides the batch (user names are not shown)
    view: tuple[object, ...] = (user.role, user.community, user.compound, user.building)
    view += (values["language"], flt.query_string())

    def _still_valid() -> bool:
        with st.read_factory() as s:
            return auth.grant_for_token(s, token, now=st.clock()) is not None

    def _counts() -> tuple[int, int]:
        with st.read_factory() as s:  # one grouped query for both figures
            counted = queries.counts(s, user, flt.query())
            return counted.total, counted.unreviewed

    async def events() -> AsyncIterator[bytes]:
        sub = feed.subscribe()
        checked_at = st.clock()
        wait_s = max(0.05, min(KEEPALIVE_S, st.stream_auth_check_s))
        try:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                now = st.clock()
                ended = now >= signed.expires_at
                if not ended and (now - checked_at).total_seconds() >= st.stream_auth_check_s:
                    checked_at = now
                    ended = not await feed.run_sync(_still_valid)
                if ended:
                    yield b"event: end\ndata: login\n\n"
                    return
                batch = await sub.next(wait_s)
                if batch is None:  # cut off for falling behind: the page reloads
                    yield b"event: end\ndata: reload\n\n"
                    return
                if not batch:
                    # a quiet moment: is anyone still there? (asked here, not per change:
                    # with fifty consoles the question per change cost the API's requests)
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"  # proxies close silent connections
                    continue
                mine = [c for c in batch if _sees(user, c.alert)]
                if not mine:
                    continue
                data = await feed.once(
                    (mine[-1].transition_id, batch[-1].transition_id, *view),
                    partial(feed.run_sync, _swaps, mine),
                )
                yield f"id: {mine[-1].transition_id}\nevent: change\ndata: {data}\n\n".encode()
        finally:
            sub.close()

    def _swaps(mine: list[Change]) -> str:
        latest = {c.alert.id: c for c in mine}  # each alert once, in its newest state
        parts: list[str] = []
        for change in latest.values():
            alert = change.alert
            parts.append(f'<div id="alert-{alert.id}" hx-swap-oob="delete"></div>')
            if flt.matches(user, alert):
                row = _fragment("partials/row.html", values, alert=alert)
                # table parts cannot stand alone in HTML: htmx takes them from a <template>
                oob = f'<tbody hx-swap-oob="afterbegin:#queue-rows">{row}</tbody>'
                parts.append(f"<template>{oob}</template>")
            if change.action == "opened" and alert.severity >= CRITICAL:
                parts.append(_fragment("partials/popup.html", values, alert=alert))
        total, unreviewed = _counts()
        parts.append(f'<span id="unreviewed-count" hx-swap-oob="true">{unreviewed}</span>')
        parts.append(
            f'<span id="queue-total" hx-swap-oob="true">'
            f"{escape(values['t']('queue.total', n=total))}</span>"
        )
        # SSE data: one "data:" line per line of HTML
        return "\n".join(parts).replace("\n", "\ndata: ")

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/console/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
def acknowledge_row(
    alert_id: RowId, request: Request, db: DB, signed: Signed, st: State
) -> HTMLResponse:
    """``a`` on a row: acknowledge it; the row comes back in its new state."""
    user = signed.user
    try:
        require(user, Action.ACKNOWLEDGE_ALERT)
        alert = alerts.scoped_alert(db, user, alert_id)
        alerts.acknowledge(db, alert_id, actor=user.username, now=st.clock())
    except DomainError as err:
        return toast(request, signed, str(err), status=status_of(err))
    db.commit()
    st.notifier.notify()
    db.refresh(alert)
    return render(request, "partials/row.html", {"alert": alert, "selected": False}, signed=signed)


@router.post("/console/bulk", response_class=HTMLResponse)
def bulk(
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    action: Annotated[str, Form(pattern="^(acknowledge|confirmed|false_positive)$")],
    ids: Annotated[list[int], Form(max_length=MAX_BULK)],
) -> HTMLResponse:
    """Bulk acknowledge or bulk verdict on the selected rows; a toast says how many
    succeeded and why the others did not."""
    user = signed.user
    now = st.clock()
    try:
        if action == "acknowledge":
            require(user, Action.ACKNOWLEDGE_ALERT)
            results = alerts.bulk_acknowledge(db, user, ids, now=now)
        else:
            require(user, Action.GIVE_VERDICT)
            results = verdicts.bulk_verdict(db, user, ids, action, now=now)
    except DomainError as err:
        return toast(request, signed, str(err), status=status_of(err))
    db.commit()
    st.notifier.notify()
    return render(
        request,
        "partials/bulk_result.html",
        {"results": results, "action": action},
        signed=signed,
        headers={"HX-Retarget": "#toast", "HX-Reswap": "innerHTML"},
    )
