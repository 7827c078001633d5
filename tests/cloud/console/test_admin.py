"""Administration on the served app: an admin creates a user who can then log in,
deactivates them (their login fails), reactivates them and resets their password; an
admin of one community neither sees nor touches another community's user (404, as for
one that does not exist); the audit log finds the deactivation by user; the site page
shows what is loaded and says the YAML provenance is not recorded."""

from __future__ import annotations

import re
from typing import Any

import httpx

from cloud.db import models as m
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot
from tests.cloud.console.test_pages import signed_in

NEW_PASSWORD = "a new one, 2026"


def _login_status(console: Console, username: str, password: str) -> int:
    r = httpx.post(
        f"{console.url}/login",
        data={"username": username, "password": password, "next": "/"},
        timeout=30,
    )
    return r.status_code


def _user_id(console: Console, username: str) -> int:
    with console.factory() as s:
        return s.query(m.User).filter_by(username=username).one().id


def test_an_admin_creates_deactivates_reactivates_and_resets_a_user(console: Console) -> None:
    gw = console.gateway()
    admin = console.user("admin", gw, level="community")
    with signed_in(console, admin) as client:
        r = client.post(
            "/console/admin/users",
            data={
                "username": "zhang.wei",
                "password": PASSWORD,
                "role": "duty",
                "community": gw.community,
                "compound": gw.compound,
            },
        )
        assert r.status_code == 200, r.text
        assert "zhang.wei" in r.text and "已创建用户" in r.text
        assert _login_status(console, "zhang.wei", PASSWORD) == 303
        uid = _user_id(console, "zhang.wei")

        assert client.post(f"/console/admin/users/{uid}/deactivate").status_code == 200
        assert _login_status(console, "zhang.wei", PASSWORD) == 401
        page = client.get("/admin/users").text
        assert re.search(rf'id="user-{uid}" class="inactive"', page)

        assert client.post(f"/console/admin/users/{uid}/reactivate").status_code == 200
        assert _login_status(console, "zhang.wei", PASSWORD) == 303

        r = client.post(f"/console/admin/users/{uid}/password", data={"password": NEW_PASSWORD})
        assert r.status_code == 200, r.text
        assert _login_status(console, "zhang.wei", PASSWORD) == 401
        assert _login_status(console, "zhang.wei", NEW_PASSWORD) == 303

        r = client.post(f"/console/admin/users/{uid}/password", data={"password": "short"})
        assert r.status_code == 422  # refused, as the API refuses it

        # outside the admin's community: refused before anything is made
        r = client.post(
            "/console/admin/users",
            data={"username": "li.na", "password": PASSWORD, "role": "duty", "community": "x"},
        )
        assert r.status_code == 403


def test_an_admin_of_one_community_cannot_see_or_touch_another_communitys_user(
    console: Console,
) -> None:
    mine, theirs = console.gateway(), console.gateway()
    admin = console.user("admin", mine, level="community")
    stranger = console.user("duty", theirs)
    stranger_id = _user_id(console, stranger)
    with signed_in(console, admin) as client:
        assert stranger not in client.get("/admin/users").text
        for action in ("deactivate", "reactivate"):
            there = client.post(f"/console/admin/users/{stranger_id}/{action}")
            nowhere = client.post(f"/console/admin/users/99999999/{action}")
            assert there.status_code == nowhere.status_code == 404
        r = client.post(
            f"/console/admin/users/{stranger_id}/password", data={"password": NEW_PASSWORD}
        )
        assert r.status_code == 404
    assert _login_status(console, stranger, PASSWORD) == 303  # untouched

    district = console.user("admin", None)  # deactivates the stranger: not in mine's log
    with signed_in(console, district) as client:
        assert client.post(f"/console/admin/users/{stranger_id}/deactivate").status_code == 200
        assert f"user:{stranger_id}" in client.get("/admin/audit").text
    with signed_in(console, admin) as client:
        assert f"user:{stranger_id}" not in client.get("/admin/audit").text


def test_the_audit_log_finds_a_deactivation_by_user(console: Console, page: Any) -> None:
    gw = console.gateway()
    admin = console.user("admin", None)
    other_admin = console.user("admin", None)
    target = console.user("duty", gw)
    target_id = _user_id(console, target)
    with signed_in(console, admin) as client:
        assert client.post(f"/console/admin/users/{target_id}/deactivate").status_code == 200
        found = client.get("/admin/audit", params={"user": admin}).text
        assert 'data-action="user_deactivated"' in found and f"user:{target_id}" in found
        assert "停用用户" in found
        none = client.get("/admin/audit", params={"user": other_admin}).text
        assert 'data-action="user_deactivated"' not in none
        by_target = client.get("/admin/audit", params={"target": f"user:{target_id}"}).text
        assert 'data-action="user_deactivated"' in by_target
        later = client.get("/admin/audit", params={"user": admin, "since": "2999-01-01T00:00"})
        assert 'data-action="user_deactivated"' not in later.text
        alert_id = console.alert(gw, severity=2)
        assert client.post(f"/console/alerts/{alert_id}/acknowledge").status_code == 200
        steps = client.get("/admin/audit", params={"target": f"alert:{alert_id}"}).text
        assert steps.count('class="audit-row"') == 2  # opened, then acknowledged
        assert 'data-action="acknowledged"' in steps and 'data-action="user_' not in steps
        site = client.get("/admin/site").text
        assert gw.community in site and "YAML" in site
    duty = console.user("duty", gw)
    with signed_in(console, duty) as client:
        for path in ("/admin/users", "/admin/audit", "/admin/site"):
            assert client.get(path).status_code == 403

    log_in(page, console, admin, next_path="/admin/users")
    row = page.locator(f"#user-{target_id}")
    assert "已停用" in row.inner_text()
    page.once("dialog", lambda d: d.accept())
    row.locator("button.reactivate").click()
    page.locator(f"#user-{target_id}.active").wait_for()
    screenshot(page, "admin_users")
