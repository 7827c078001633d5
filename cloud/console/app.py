"""Mount the console on the cloud's FastAPI app: its pages, its static files (every asset
served from the package, nothing from a CDN) and the answers to a missing login."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cloud.api.deps import ApiState
from cloud.console.routes import (
    ack_link,
    admin,
    alert_detail,
    alert_queue,
    appeals,
    appeals_staff,
    assistant,
    auth_pages,
    awareness,
    dead_letters,
    governance,
    mine,
    models,
    places,
    wall,
    work_board,
)
from cloud.console.session import CsrfRefused, LoginRequired, login_url
from cloud.console.templating import STATIC_DIR, render

ROUTERS = (
    auth_pages,
    alert_queue,
    alert_detail,
    mine,
    places,
    work_board,
    dead_letters,
    admin,
    wall,
    ack_link,
    appeals,
    appeals_staff,
    awareness,
    governance,
    assistant,
    models,
)


def mount_console(app: FastAPI, state: ApiState) -> None:
    """Add the console to ``app`` (made by :func:`cloud.api.create_api` around ``state``)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in ROUTERS:
        app.include_router(module.router, include_in_schema=False)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, err: LoginRequired) -> Response:
        if request.headers.get("HX-Request"):
            # htmx follows this header with a full page load instead of swapping a login
            # form into a table cell
            return Response(status_code=401, headers={"HX-Redirect": login_url(err.next_path)})
        return RedirectResponse(login_url(err.next_path), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _err: CsrfRefused) -> HTMLResponse:
        return render(
            request,
            "error.html",
            {"message_key": "errors.csrf"},
            status_code=403,
        )
