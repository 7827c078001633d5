"""Rendering: one Jinja2 environment (autoescaped), the helpers every page uses, and
``render`` which gives a template the request's language, user and CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cloud.console import i18n
from cloud.console.session import LANGUAGE_COOKIE, ConsoleSession
from cloud.db import models as m
from cloud.errors import Forbidden
from cloud.permissions import Action, require

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
# the site's clock for people: duty staff read Beijing time whatever the server's zone
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# severity is told by colour, icon (partials/severity_icon.html) and text together (colour
# alone fails the colour-blind and a grey-scale print); the text comes from the catalogue
SEVERITY_CLASS = {1: "sev-info", 2: "sev-warning", 3: "sev-critical"}
SEVERITY_NAME = {1: "info", 2: "warning", 3: "critical"}


def local_time(value: datetime | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(LOCAL_TZ).strftime(fmt)


def age(value: datetime | None, now: datetime) -> str:
    """A short age such as ``3h 05m`` (an acknowledged-but-open item's)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = max(0, int((now - value).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


def _static_version() -> str:
    # a cache-busting suffix that changes when any console asset changes
    newest = max((p.stat().st_mtime_ns for p in STATIC_DIR.rglob("*") if p.is_file()), default=0)
    return format(newest, "x")[-8:]


environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
# |tojson shows Chinese as Chinese, not \uXXXX (it still escapes <, >, & and ')
environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
environment.globals.update(
    SEVERITY_CLASS=SEVERITY_CLASS,
    SEVERITY_NAME=SEVERITY_NAME,
    local_time=local_time,
    Action=Action,
    static_version=_static_version(),
)


def permitted(user: m.User | None, action: Action) -> bool:
    """Whether the API would let ``user`` do ``action`` (role and, for district-wide
    actions, node): the console shows a button only where the API would accept it."""
    if user is None:
        return False
    try:
        require(user, action)
    except Forbidden:
        return False
    return True


def language_of(request: Request) -> str:
    return i18n.pick_language(request.cookies.get(LANGUAGE_COOKIE))


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    signed: ConsoleSession | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with :func:`template_values` and ``context``."""
    values = template_values(request, signed)
    values.update(context or {})
    html = environment.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def template_values(request: Request, signed: ConsoleSession | None) -> dict[str, Any]:
    """What every template may use: the request's language (``t``), the signed-in user
    and what they may do (``may(Action.X)``), ``now`` and ``age``."""
    language = language_of(request)
    catalogue = i18n.catalogue(language)
    user = signed.user if signed else None
    now = request.app.state.api.clock()
    values: dict[str, Any] = {
        "request": request,
        "t": catalogue.t,
        "language": language,
        "languages": i18n.LANGUAGES,
        "user": user,
        "csrf": signed.csrf if signed else "",
        "may": (lambda action: permitted(user, action)),
        "now": now,
        "age": (lambda value: age(value, now)),
        "path": request.url.path,
        "kind_name": catalogue.kind,
    }
    return values
