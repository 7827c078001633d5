"""Administration on the served app: an admin creates a user who can then log in,
deactivates them (their login fails), reactivates them and resets their password; an
admin of one community neither sees nor touches another community's user (404, as for
one that does not exist); the audit log finds the deactivation by user; the site page
shows what is loaded and, beside each node, the YAML file and line it was declared at
("—" where a site was synced without its file)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import sync_site
from microbrain.protocol import GatewayPath
from microbrain.site import load_site
from microbrain.site.loader import load_site_with_sources
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot
from tests.cloud.console.test_pages import signed_in

NEW_PASSWORD = "a new one, 2026"
ROOT = Path(__file__).resolve().parents[3]


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


def _row_of(page_html: str, key: str) -> str:
    """The table row (or fact) holding the source cell of ``key``."""
    at = page_html.index(f'data-source="{key}"')
    start = max(page_html.rfind("<tr>", 0, at), page_html.rfind("<dd>", 0, at))
    return page_html[start : page_html.index(">", at) + 60]


def test_the_site_page_shows_where_each_node_was_declared(
    console: Console, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    demo = "configs/demo/site.yaml"
    site, sources = load_site_with_sources(demo)
    lines = (ROOT / demo).read_text(encoding="utf-8").splitlines()
    with transaction(console.factory) as s:
        sync_site(
            s, site, sources=sources, clock=lambda: datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)
        )
    stray = console.gateway()  # registered outside the site file: no source
    admin = console.user("admin", None)
    with signed_in(console, admin) as client:
        html = client.get("/admin/site").text
    assert f"载入自 {demo}（2026-12-02 09:02:03）" in html  # Beijing time
    for key, node_id in (
        ("community:xiyuan", "xiyuan"),
        ("compound:dongcheng/dongcheng-plaza", "dongcheng-plaza"),
        ("building:xiyuan/xiyuan-2/b1", "b1"),
        ("gateway:gw-xiyuan-2", "gw-xiyuan-2"),
        ("camera:gw-xiyuan-1/cam-entrance", "cam-entrance"),
        ("sensor:gw-dongcheng-garden/t1-elevator-a", "t1-elevator-a"),
        ("department:fire", "fire"),
        ("district", "demo-district"),
    ):
        where = sources[key]
        assert f'data-source="{key}">{where}</code>' in html, key
        assert f"id: {node_id}" in lines[int(where.rsplit(":", 1)[1]) - 1], key
        assert node_id in _row_of(html, key)
    assert lines[int(sources["escalation"].rsplit(":", 1)[1]) - 1] == "escalation:"
    # contacts read as written (王队长), not as \\uXXXX escapes
    assert "王队长" in _row_of(html, "department:fire")
    assert f'data-source="escalation">{sources["escalation"]}</code>' in html
    # the stray gateway and its compound: shown, their source not recorded
    for key in (f"gateway:{stray.gateway}", f"compound:{stray.community}/{stray.compound}"):
        assert re.search(rf'data-source="{re.escape(key)}" title="[^"]+">—<', html), key

    # a community's admin sees its own nodes only
    dongcheng = console.user(
        "admin", GatewayPath("dongcheng", "dongcheng-plaza", "x"), level="community"
    )
    with signed_in(console, dongcheng) as client:
        mine = client.get("/admin/site").text
    assert 'data-source="community:dongcheng"' in mine
    assert 'data-source="community:xiyuan"' not in mine
    assert 'data-source="gateway:gw-xiyuan-1"' not in mine

    log_in(page, console, admin, next_path="/admin/site")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.locator('[data-source="community:xiyuan"]').wait_for()
    screenshot(page, "admin_site_sources")


def test_a_site_synced_without_its_file_says_its_sources_are_not_recorded(
    console: Console,
) -> None:
    with transaction(console.factory) as s:
        sync_site(s, load_site(ROOT / "configs/demo/site.yaml"))
    with signed_in(console, console.user("admin", None)) as client:
        html = client.get("/admin/site").text
    assert "未记录这次载入的 YAML 文件与行号" in html
    assert 'data-source="community:xiyuan" title=' in html  # "—", not a line
    assert "site.yaml:" not in html
