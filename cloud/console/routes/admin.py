"""Administration (系统管理): users (create at a node with a role, deactivate,
reactivate, reset a password — the services ``/api/users`` uses, so the same scope and
role rules hold), the audit log searchable by user, target and time, and the site tree
as loaded.

The site page shows beside each node the YAML file and line it was declared at
(``site_config.sources``, recorded when the cloud loads a site file); a site synced
without its file (older rows, tests) has none, and the page says so per node."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.api.deps import DB, State
from cloud.api.params import MAX_DB_INT
from cloud.console import i18n
from cloud.console.routes.page_errors import lacks, refused, status_of, t_of, toast
from cloud.console.session import ConsoleSession, Signed
from cloud.console.templating import LOCAL_TZ, language_of, render
from cloud.db import models as m
from cloud.errors import DomainError, Invalid
from cloud.permissions import Action, Role, may_grant

router = APIRouter()
PAGE = 50
UserId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
Name = Annotated[str, Form(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
Node = Annotated[str, Form(max_length=64)]


@router.get("/admin")
def admin_home(signed: Signed) -> Response:
    """The nav's "administration": the users page."""
    return RedirectResponse("/admin/users", status_code=303)


# --- users ----------------------------------------------------------------------------


def _users(db: Session, actor: m.User) -> list[m.User]:
    return list(
        db.scalars(select(m.User).where(auth.scope_clause(actor, m.User)).order_by(m.User.username))
    )


def _users_values(db: Session, signed: ConsoleSession) -> dict[str, object]:
    actor = signed.user
    return {
        "users": _users(db, actor),
        "roles": [r.value for r in Role if may_grant(actor.role, r)],
        "manage": not lacks(signed, Action.MANAGE_USERS),
    }


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """Users of the admin's area, and the form to add one."""
    if lacks(signed, Action.LIST_USERS):
        return refused(request, signed)
    return render(request, "admin_users.html", _users_values(db, signed), signed=signed)


def _none(value: str) -> str | None:
    return value.strip() or None


def _after_change(
    request: Request, db: Session, signed: ConsoleSession, message: str
) -> HTMLResponse:
    """Commit, then the redrawn table with the outcome in the toast (out of band)."""
    db.commit()
    values = {**_users_values(db, signed), "message": message}
    return render(request, "admin_users_table.html", values, signed=signed)


def _manage(request: Request, signed: ConsoleSession) -> HTMLResponse | None:
    if lacks(signed, Action.MANAGE_USERS):
        return toast(request, signed, t_of(request)("admin.forbidden"), status=403)
    return None


@router.post("/console/admin/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    username: Name,
    password: Annotated[str, Form(max_length=256)],
    role: Annotated[str, Form(max_length=16)],
    community: Node = "",
    compound: Node = "",
    building: Node = "",
) -> HTMLResponse:
    """Create a user, as ``POST /api/users``."""
    if (no := _manage(request, signed)) is not None:
        return no
    try:
        if len(password) < 8:
            raise Invalid("password: a password needs at least 8 characters")
        auth.create_user_as(
            db,
            signed.user,
            username,
            password,
            role,
            now=st.clock(),
            community=_none(community),
            compound=_none(compound),
            building=_none(building),
        )
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    return _after_change(request, db, signed, t_of(request)("admin.created", name=username))


@router.post("/console/admin/users/{user_id}/{action}", response_class=HTMLResponse)
def change_user(
    user_id: UserId,
    action: Annotated[str, Path(pattern="^(deactivate|reactivate|password)$")],
    request: Request,
    db: DB,
    signed: Signed,
    st: State,
    password: Annotated[str, Form(max_length=256)] = "",
) -> HTMLResponse:
    """Deactivate, reactivate or reset the password of a user of the admin's area; a
    user elsewhere is answered 404 like one that does not exist."""
    if (no := _manage(request, signed)) is not None:
        return no
    now = st.clock()
    try:
        if action == "deactivate":
            target = auth.deactivate_user(db, signed.user, user_id, now=now)
        elif action == "reactivate":
            target = auth.reactivate_user(db, signed.user, user_id, now=now)
        else:
            target = auth.reset_password(db, signed.user, user_id, password, now=now)
    except DomainError as err:
        db.rollback()
        return toast(request, signed, str(err), status=status_of(err))
    message = t_of(request)(f"admin.done_{action}", name=target.username)
    return _after_change(request, db, signed, message)


# --- audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    """One line of the log: a user/session action or a step of an alert's log."""

    at: datetime
    actor: str
    action: str
    target: str
    note: str | None
    alert_id: int | None = None


def _local(value: str) -> datetime | None:
    # <input type=datetime-local> sends Beijing wall-clock time without a zone
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=LOCAL_TZ)
    except ValueError:
        return None


def audit_rows(
    db: Session,
    actor: m.User,
    *,
    user: str = "",
    target: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = PAGE,
) -> tuple[list[AuditRow], bool]:
    """The audit log (``audit_log``) and the alerts' own logs (``alert_transitions``)
    newest first, limited to the admin's area: entries about users of the area or by
    them, and steps of alerts in it. ``target`` matches an entry's target (``user:42``)
    or an alert id (``42`` or ``alert:42``). Returns the page and whether more follow."""
    want = offset + limit + 1
    users = _users(db, actor)
    wheres: list[ColumnElement[bool]] = []
    if actor.community is not None:
        wheres.append(
            or_(
                m.AuditEntry.target.in_([f"user:{u.id}" for u in users]),
                m.AuditEntry.actor.in_([u.username for u in users]),
            )
        )
    alert_where: list[ColumnElement[bool]] = [auth.scope_clause(actor, m.Alert)]
    if user:
        wheres.append(m.AuditEntry.actor == user)
        alert_where.append(m.AlertTransition.actor == user)
    alert_id = target.removeprefix("alert:")
    if target:
        wheres.append(m.AuditEntry.target == target)
        if alert_id.isdigit() and int(alert_id) <= MAX_DB_INT:
            alert_where.append(m.AlertTransition.alert_id == int(alert_id))
    for column, bound in ((m.AuditEntry.at, since), (m.AuditEntry.at, until)):
        if bound is not None:
            wheres.append(column >= bound if bound is since else column < bound)
    if since is not None:
        alert_where.append(m.AlertTransition.at >= since)
    if until is not None:
        alert_where.append(m.AlertTransition.at < until)
    entries = [
        AuditRow(e.at, e.actor, e.action, e.target, e.note)
        for e in db.scalars(
            select(m.AuditEntry)
            .where(*wheres)
            .order_by(m.AuditEntry.at.desc(), m.AuditEntry.id.desc())
            .limit(want)
        )
    ]
    steps: list[AuditRow] = []
    if not target or (alert_id.isdigit() and int(alert_id) <= MAX_DB_INT):
        steps = [
            AuditRow(t.at, t.actor, t.action, f"alert:{t.alert_id}", t.note, t.alert_id)
            for t in db.scalars(
                select(m.AlertTransition)
                .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
                .where(*alert_where)
                .order_by(m.AlertTransition.at.desc(), m.AlertTransition.id.desc())
                .limit(want)
            )
        ]
    merged = sorted(entries + steps, key=lambda r: r.at, reverse=True)
    return merged[offset : offset + limit], len(merged) > offset + limit


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    db: DB,
    signed: Signed,
    user: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=32)] = "",
    until: Annotated[str, Query(max_length=32)] = "",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> HTMLResponse:
    """The audit log, searchable and paged."""
    if lacks(signed, Action.LIST_USERS):
        return refused(request, signed)
    rows, more = audit_rows(
        db,
        signed.user,
        user=user.strip(),
        target=target.strip(),
        since=_local(since),
        until=_local(until),
        offset=offset,
    )
    query = {"user": user, "target": target, "since": since, "until": until}
    catalogue = i18n.catalogue(language_of(request))

    def action_name(action: str) -> str:
        # user actions are named in admin.actions_log, an alert's steps by the detail
        # page's timeline (detail.log); an action neither knows shows as recorded
        return catalogue.get(
            f"admin.actions_log.{action}", catalogue.get(f"detail.log.{action}", action)
        )

    return render(
        request,
        "admin_audit.html",
        {
            "rows": rows,
            "more": more,
            "offset": offset,
            "page": PAGE,
            "q": query,
            "action_name": action_name,
        },
        signed=signed,
    )


# --- site -----------------------------------------------------------------------------


def source_files(sources: dict[str, str]) -> list[str]:
    """The files the sources name (``configs/demo/site.yaml:42`` → its file), in order."""
    return sorted({where.rsplit(":", 1)[0] for where in sources.values()})


@router.get("/admin/site", response_class=HTMLResponse)
def site_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The site as loaded into the database (the user's part of it), each node with the
    file and line it came from where that was recorded."""
    if lacks(signed, Action.LIST_USERS):
        return refused(request, signed)
    user = signed.user
    config = db.scalars(select(m.SiteConfig)).first()
    sources: dict[str, str] = dict(config.sources or {}) if config is not None else {}
    communities = [
        c
        for c in db.scalars(select(m.Community).order_by(m.Community.id))
        if user.community in (None, c.id)
    ]
    compounds = [
        k
        for k in db.scalars(select(m.Compound).order_by(m.Compound.community, m.Compound.id))
        if auth.in_scope(user, k.community, k.id, user.building)
    ]
    buildings = [
        b
        for b in db.scalars(select(m.Building).order_by(m.Building.id))
        if auth.in_scope(user, b.community, b.compound, b.id)
    ]
    gateways = list(
        db.scalars(
            select(m.Gateway).where(auth.scope_clause(user, m.Gateway)).order_by(m.Gateway.id)
        )
    )
    devices = list(
        db.scalars(
            select(m.Device)
            .where(m.Device.gateway.in_([g.id for g in gateways]))
            .order_by(m.Device.gateway, m.Device.id)
        )
    )
    departments = list(db.scalars(select(m.Department).order_by(m.Department.id)))
    return render(
        request,
        "admin_site.html",
        {
            "config": config,
            "sources": sources,
            "source_files": source_files(sources),
            "communities": communities,
            "compounds": compounds,
            "buildings": buildings,
            "gateways": gateways,
            "devices": devices,
            "departments": departments,
        },
        signed=signed,
    )
