"""The console's login: the same throttle and tokens as the API, an HttpOnly SameSite
cookie, a CSRF token on every change, no open redirect, and a logout or a revocation that
ends the session (its live stream included)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from cloud import auth
from cloud.console.session import COOKIE, CSRF_HEADER, csrf_for
from cloud.db import models as m
from cloud.db import transaction
from tests.cloud.console.conftest import PASSWORD, Console


@contextmanager
def _login(console: Console, username: str, next_path: str = "/") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as client:
        data = {"username": username, "password": PASSWORD, "next": next_path}
        r = client.post("/login", data=data)
        assert r.status_code == 303, r.text
        yield client


def _status(console: Console, alert_id: int) -> str:
    with console.factory() as s:
        alert = s.get(m.Alert, alert_id)
        assert alert is not None
        return alert.status


def test_login_sets_a_strict_httponly_cookie_and_redirects_home(console: Console) -> None:
    name = console.user("duty", console.gateway())
    with _login(console, name) as client:
        r = client.post("/login", data={"username": name, "password": PASSWORD})
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert r.headers["location"] == "/"
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil", ""])
def test_login_never_redirects_off_site(console: Console, target: str) -> None:
    name = console.user("duty", console.gateway())
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post("/login", data={"username": name, "password": PASSWORD, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_a_wrong_password_is_refused_and_throttled_like_the_api(console: Console) -> None:
    name = console.user("duty", console.gateway())
    with httpx.Client(base_url=console.url, timeout=30) as client:
        codes = [
            client.post("/login", data={"username": name, "password": "wrong pass"}).status_code
            for _ in range(console.state.login_throttle.limit("user") + 1)
        ]
        assert codes[0] == 401 and codes[-1] == 429
        # throttled: even the right password waits
        assert (
            client.post("/login", data={"username": name, "password": PASSWORD}).status_code == 429
        )


def test_pages_need_a_login(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.get("/?severity=3")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/%3Fseverity%3D3"
        r = client.get("/console/rows", headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login")


def test_a_change_without_the_csrf_token_is_refused(console: Console) -> None:
    gw = console.gateway()
    alert_id = console.alert(gw)
    with _login(console, console.user("duty", gw)) as client:
        url = f"/console/alerts/{alert_id}/acknowledge"
        assert client.post(url).status_code == 403
        assert client.post(url, headers={CSRF_HEADER: "0" * 64}).status_code == 403
        assert _status(console, alert_id) == "open"  # nothing changed
        token = client.cookies[COOKIE]
        assert client.post(url, headers={CSRF_HEADER: csrf_for(token)}).status_code == 200
        assert _status(console, alert_id) == "acknowledged"


def test_logout_ends_the_token(console: Console) -> None:
    with _login(console, console.user("duty", console.gateway())) as client:
        token = client.cookies[COOKIE]
        assert client.post("/logout", headers={CSRF_HEADER: csrf_for(token)}).status_code == 204
        with console.factory() as s:
            assert auth.grant_for_token(s, token, now=console.state.clock()) is None
        # the old cookie, replayed, is a login page again
        r = httpx.get(f"{console.url}/", cookies={COOKIE: token}, follow_redirects=False)
        assert r.status_code == 303


def test_a_revoked_session_ends_the_live_stream(console: Console) -> None:
    console.state.stream_auth_check_s = 0.2
    gw = console.gateway()
    name = console.user("duty", gw)
    with (
        _login(console, name) as client,
        client.stream("GET", "/console/stream", timeout=30) as stream,
    ):
        assert stream.status_code == 200
        with transaction(console.factory) as s:
            user = s.query(m.User).filter_by(username=name).one()
            s.query(m.ApiToken).filter_by(user_id=user.id).delete()
        text = ""
        for chunk in stream.iter_text():
            text += chunk
            if "event: end" in text:
                break
        assert "event: end" in text
