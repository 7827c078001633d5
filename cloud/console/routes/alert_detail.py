"""The alert detail page (告警详情): why it fired (the events with their evidence, the
rule's thresholds), what has been done (the log, work orders, similar past alerts) and
the actions on it.

An alert outside the user's subtree is answered exactly like an id that does not exist
(the same 404 page), as the API does. The evidence files are served here under the
console's cookie, scoped through the same check as ``GET /api/evidence/...``.

The boxes and the zone polygon are drawn into the snapshot by the gateway
(``edge/video/evidence.py``): an event carries no coordinates and the cloud keeps no
camera zones, so the page overlays only what the event says (dwell, class, confidence).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import alerts, auth, escalation, evidence, fusion, work_orders
from cloud.alerts import verdicts
from cloud.alerts.lifecycle import ACTIVE, MAX_NOTE
from cloud.alerts.policy import policy_for
from cloud.api.deps import DB, State
from cloud.api.params import RowId
from cloud.console import i18n
from cloud.console.routes.page_errors import status_of, toast
from cloud.console.session import Signed
from cloud.console.templating import language_of, render
from cloud.db import models as m
from cloud.errors import DomainError, NotFound
from cloud.permissions import Action, require
from cloud.response.deliveries import delivery_log

router = APIRouter()
EVENTS_SHOWN = 12  # the newest events of an alert counted thousands of times
SIMILAR_SHOWN = 10
# the alert log's actions the catalogue names (detail.log.*); another is shown as written
LOG_ACTIONS = frozenset(
    {
        "opened",
        "acknowledged",
        "dispatched",
        "whistled",
        "resolved",
        "auto_resolved",
        "closed",
        "reopened",
        "comment",
        "verdict",
        "escalated",
        "playbook",
        "linked",
        "severity_raised",
    }
)
# Id-shaped path segments (the protocol's slugs): anything else is a 404 before a query
_SLUG = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Note = Annotated[str, Form(max_length=MAX_NOTE)]


# cloud/escalation.py writes an escalation's levels into its note ("escalated by hand
# from building level; now compound: <the person's note>", "not acknowledged in time at
# building level; now compound"): the page shows them as levels in the reader's language
_LEVEL_MOVE = re.compile(r"(?:from|at) (\w+) level; now (\w+)(?:: (.*))?\Z", re.DOTALL)


@dataclass(frozen=True)
class LevelMove:
    """The levels an escalation moved between, and the note a person added."""

    before: str
    after: str
    note: str | None


def level_move(note: str | None) -> LevelMove | None:
    """The escalation in an ``escalated`` log line's note; None when it says none.

    >>> level_move("escalated by hand from building level; now compound: 无人接听")
    LevelMove(before='building', after='compound', note='无人接听')
    """
    found = _LEVEL_MOVE.search(note or "")
    return LevelMove(found[1], found[2], found[3]) if found else None


@dataclass(frozen=True)
class Evidence:
    """One evidence file of an event, as the page shows it."""

    kind: str  # snapshot | clip
    name: str
    sha256: str
    content_type: str
    url: str


@dataclass(frozen=True)
class EventView:
    """What one stored event says about why the alert fired."""

    row: m.EventRow
    evidence: list[Evidence]
    dwell_s: float | None
    confidence: float | None
    object_class: str | None
    model: dict[str, Any] | None
    detail: dict[str, Any]

    @property
    def snapshots(self) -> list[Evidence]:
        return [e for e in self.evidence if e.kind == "snapshot"]

    @property
    def clips(self) -> list[Evidence]:
        return [e for e in self.evidence if e.kind == "clip"]


def _event_view(row: m.EventRow) -> EventView:
    p = row.payload
    refs = [
        Evidence(
            kind=str(r.get("kind", "snapshot")),
            name=str(r["name"]),
            sha256=str(r.get("sha256", "")),
            content_type=evidence.declared_type(r),
            url=f"/console/evidence/{row.id}/{r['name']}",
        )
        for r in p.get("evidence", [])
        if isinstance(r, dict) and r.get("name")
    ]
    model = p.get("model")
    return EventView(
        row=row,
        evidence=refs,
        dwell_s=p.get("dwell_s"),
        confidence=p.get("confidence"),
        object_class=p.get("object_class"),
        model=model if isinstance(model, dict) else None,
        detail=dict(p.get("detail") or {}),
    )


def _context(request: Request, db: Session, user: m.User, alert: m.Alert) -> dict[str, Any]:
    events = [
        _event_view(r)
        for r in db.scalars(
            select(m.EventRow)
            .where(m.EventRow.alert_id == alert.id)
            .order_by(m.EventRow.ts.desc(), m.EventRow.pk.desc())
            .limit(EVENTS_SHOWN)
        )
    ]
    # the rule's word: the newest raised event's detail (a clear repeats it, or says less)
    rule = next((e for e in events if e.row.state == "raised"), events[0] if events else None)
    orders = list(
        db.scalars(
            select(m.WorkOrder).where(m.WorkOrder.alert_id == alert.id).order_by(m.WorkOrder.id)
        )
    )
    departments = list(db.scalars(select(m.Department).order_by(m.Department.id)))
    names = {d.id: d.name for d in departments}
    words = i18n.catalogue(language_of(request))
    default_department = policy_for(db, alert.community, alert.compound).whistle.get(alert.kind)
    run = db.get(m.ResponseRun, alert.id)
    notifications, attempts = delivery_log(db, alert.id)
    return {
        "alert": alert,
        "events": events,
        "rule": rule,
        "timeline": alerts.timeline(db, alert.id),
        "similar": alerts.similar(db, user, alert, limit=SIMILAR_SHOWN),
        # alerts a fusion rule related to this one in place and time, and why
        "links": fusion.links_of(db, user, alert.id),
        "orders": orders,
        # the playbook's run: suggested steps, and every notification with its attempts
        "next_steps": run.next_steps if run else [],
        "suggestions": run.suggestions if run else [],
        "notifications": notifications,
        "attempts": attempts,
        "departments": departments,
        "default_department": default_department,
        # a rule's detail keys come from the edge's rules: named where the catalogue
        # knows them, shown as sent otherwise
        "field_name": lambda key: words.get(f"detail.fields.{key}", key),
        "department_name": lambda d: names.get(d, d) if d else words.t("detail.none"),
        "log_actions": LOG_ACTIONS,
        "level_move": level_move,
        "level_name": lambda lv: words.t(
            "detail.level_whistle" if lv == "whistle" else f"levels.{lv}"
        ),
        "active": alert.status in ACTIVE,
        # a person escalates up to the community level; above it is a dispatch
        "can_escalate": alert.active
        and escalation.NEXT_LEVEL.get(alert.level) not in (None, "whistle"),
        # the queue's stream, narrowed to the alert's compound: detail.js refreshes the
        # body when a change names this alert
        "stream": "/console/stream?"
        + urlencode({"status": "all", "community": alert.community, "compound": alert.compound}),
    }


def _not_found(request: Request, signed: Signed) -> HTMLResponse:
    # the same page, status and words for "no such alert" and "not in your area"
    return render(
        request, "error.html", {"message_key": "detail.not_found"}, signed=signed, status_code=404
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def detail_page(alert_id: RowId, request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The alert's page: header, evidence, rule, timeline, similar alerts, work orders
    and the actions the user may take in its state."""
    try:
        alert = alerts.scoped_alert(db, signed.user, alert_id)
    except NotFound:
        return _not_found(request, signed)
    return render(request, "detail.html", _context(request, db, signed.user, alert), signed=signed)


@router.get("/console/alerts/{alert_id}/body", response_class=HTMLResponse)
def detail_body(alert_id: RowId, request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The page's body alone: the live refresh asks for it when the alert changes."""
    try:
        alert = alerts.scoped_alert(db, signed.user, alert_id)
    except NotFound as err:
        return toast(request, signed, str(err), status=404)
    return _body(request, db, signed, alert)


def _body(request: Request, db: Session, signed: Signed, alert: m.Alert) -> HTMLResponse:
    return render(
        request,
        "partials/detail_body.html",
        _context(request, db, signed.user, alert),
        signed=signed,
    )


@router.get("/console/evidence/{event_id}/{name}", response_class=FileResponse)
def evidence_file(event_id: str, name: str, db: DB, signed: Signed, st: State) -> FileResponse:
    """An evidence file of an event in the user's area, as ``GET /api/evidence/...``
    serves it but under the console's cookie (an <img> sends no Bearer token)."""
    # ids and names are the protocol's slugs: anything else (a NUL, a path) is missing
    if not re.match(_SLUG, name) or not re.match(_SLUG, event_id) or len(event_id) > 36:
        raise evidence.not_found(event_id[:36])
    event = evidence.find_event(db, event_id)
    if not auth.in_scope(signed.user, event.community, event.compound, event.building):
        raise evidence.not_found(event_id)  # outside: the same words as missing
    stored = evidence.stored_file(st.settings.evidence_dir, event, name)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    if stored.media_type == evidence.UNKNOWN:
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return FileResponse(stored.path, media_type=stored.media_type, headers=headers)


def _act(
    request: Request,
    db: Session,
    signed: Signed,
    st: State,
    alert_id: int,
    action: Action,
    do: Callable[[m.User], object],
) -> HTMLResponse:
    """The shape of every action: permission, scope, the service, commit, wake the live
    consoles, and the body re-rendered (or a toast saying why not)."""
    user = signed.user
    try:
        require(user, action)
        alerts.scoped_alert(db, user, alert_id)
        do(user)
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    db.commit()
    st.notifier.notify()
    return _body(request, db, signed, alerts.get_alert(db, alert_id))


@router.post("/console/alerts/{alert_id}/ack", response_class=HTMLResponse)
def acknowledge(
    alert_id: RowId, request: Request, db: DB, signed: Signed, st: State
) -> HTMLResponse:
    """open → acknowledged (``a`` on the page)."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.ACKNOWLEDGE_ALERT,
        lambda u: alerts.acknowledge(db, alert_id, actor=u.username, now=st.clock()),
    )


@router.post("/console/alerts/{alert_id}/comment", response_class=HTMLResponse)
def comment(
    alert_id: RowId, request: Request, db: DB, signed: Signed, st: State, note: Note
) -> HTMLResponse:
    """A note on the alert's log."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.COMMENT_ALERT,
        lambda u: alerts.comment(db, alert_id, actor=u.username, now=st.clock(), note=note),
    )


@router.post("/console/alerts/{alert_id}/dispatch", response_class=HTMLResponse)
def dispatch(
    alert_id: RowId,
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    department: Annotated[str, Form(max_length=64)] = "",
    note: Note = "",
) -> HTMLResponse:
    """A work order to a department (empty: the whistle map's for the alert's kind)."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.DISPATCH_ALERT,
        lambda u: work_orders.dispatch(
            db,
            alert_id,
            actor=u.username,
            now=st.clock(),
            department=department or None,
            note=note or None,
        ),
    )


@router.post("/console/alerts/{alert_id}/resolve", response_class=HTMLResponse)
def resolve(
    alert_id: RowId, request: Request, db: DB, signed: Signed, st: State, note: Note = ""
) -> HTMLResponse:
    """The condition is handled, with what was done."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.RESOLVE_ALERT,
        lambda u: alerts.resolve(db, alert_id, actor=u.username, now=st.clock(), note=note or None),
    )


@router.post("/console/alerts/{alert_id}/escalate", response_class=HTMLResponse)
def escalate(
    alert_id: RowId, request: Request, db: DB, signed: Signed, st: State, note: Note = ""
) -> HTMLResponse:
    """One level up now (building → compound → community)."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.ESCALATE_ALERT,
        lambda u: escalation.escalate_by_hand(
            db, alert_id, actor=u.username, now=st.clock(), note=note or None
        ),
    )


@router.post("/console/alerts/{alert_id}/verdict", response_class=HTMLResponse)
def verdict(
    alert_id: RowId,
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    verdict: Annotated[str, Form(pattern="^(confirmed|false_positive)$")],
    note: Note = "",
) -> HTMLResponse:
    """Was it real? ``confirmed`` or ``false_positive`` (a later word replaces it)."""
    return _act(
        request,
        db,
        signed,
        st,
        alert_id,
        Action.GIVE_VERDICT,
        lambda u: verdicts.give_verdict(
            db, alert_id, verdict, actor=u.username, now=st.clock(), note=note or None
        ),
    )
