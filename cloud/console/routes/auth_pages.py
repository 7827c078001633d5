"""Log in, log out, choose the language. The login goes through the same throttle and
the same token table as ``POST /api/auth/token``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud import auth, login_throttle
from cloud.api.deps import DB, State
from cloud.console.i18n import LANGUAGES
from cloud.console.session import COOKIE, LANGUAGE_COOKIE, Signed
from cloud.console.templating import render

router = APIRouter()


def _safe_next(value: str | None) -> str:
    # only a path of ours: "//evil.example" or "https://…" would send the user away
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next), "error_key": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    db: DB,
    st: State,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    now = st.clock()
    address = request.client.host if request.client else "unknown"
    target = _safe_next(next)
    refusal = login_throttle.check(db, st.login_throttle, username, address, now=now)
    if refusal is not None:
        return render(
            request,
            "login.html",
            {"next": target, "error_key": "login.throttled", "retry_after": refusal.retry_after_s},
            status_code=429,
            headers={"Retry-After": str(refusal.retry_after_s)},
        )
    user = auth.authenticate(db, username, password)
    if user is None:
        login_throttle.record_failure(db, st.login_throttle, username, address, now=now)
        db.commit()  # the count stays although the login fails
        return render(
            request, "login.html", {"next": target, "error_key": "login.wrong"}, status_code=401
        )
    login_throttle.clear_user(db, username)
    token = auth.issue_token(db, user, now=now, ttl_s=st.settings.token_ttl_s)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=st.settings.token_ttl_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, db: DB, signed: Signed) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        auth.revoke_token(db, token)
    response = Response(status_code=204, headers={"HX-Redirect": "/login"})
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{language}")
def choose_language(language: str, next: str = "/") -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400, samesite="lax")
    return response
