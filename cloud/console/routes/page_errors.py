"""The console's refusals: the same 403/404/409/422 the API gives, as a page, or for an
htmx action as a toast (a place outside the user's subtree reads as missing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from cloud.console import i18n
from cloud.console.session import ConsoleSession
from cloud.console.templating import language_of, permitted, render
from cloud.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from cloud.permissions import Action

_STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Forbidden: 403, Invalid: 422}


def status_of(err: DomainError) -> int:
    return next((c for t, c in _STATUS.items() if isinstance(err, t)), 422)


def refused(request: Request, signed: ConsoleSession, status: int = 403) -> HTMLResponse:
    """A whole page saying no (403: the role may not; 404: not found or not yours)."""
    key = "admin.forbidden" if status == 403 else "admin.not_found"
    return render(request, "error.html", {"message_key": key}, signed=signed, status_code=status)


def lacks(signed: ConsoleSession, action: Action) -> bool:
    """Whether the API would refuse ``action`` to this user."""
    return not permitted(signed.user, action)


def toast(
    request: Request, signed: ConsoleSession, message: str, *, status: int, kind: str = "error"
) -> HTMLResponse:
    """An htmx action's answer in the toast area instead of its target."""
    return render(
        request,
        "partials/toast.html",
        {"message": message, "kind": kind},
        signed=signed,
        status_code=status,
        headers={"HX-Retarget": "#toast", "HX-Reswap": "innerHTML"},
    )


def t_of(request: Request) -> Callable[..., str]:
    """The request's catalogue lookup, for messages a route builds itself."""
    catalogue = i18n.catalogue(language_of(request))

    def t(key: str, **values: Any) -> str:
        return catalogue.t(key, **values)

    return t
