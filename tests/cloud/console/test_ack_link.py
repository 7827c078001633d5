"""Acknowledge from the phone: a notification's link works once, for its user, before it
expires; a forged, used, expired or out-of-area link changes nothing. Over the real
served console, and once in Chromium at a phone's size."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloud.db import models as m
from cloud.db import transaction
from cloud.response import ack_links
from microbrain.protocol import GatewayPath
from tests.cloud.console.conftest import Console, screenshot


def _link(
    console: Console, alert_id: int, user: str, *, ttl_s: float = 3600, age_s: float = 0
) -> str:
    secret = console.state.settings.secret_key.get_secret_value()
    with transaction(console.factory) as s:
        return ack_links.issue(
            s,
            secret=secret,
            alert_id=alert_id,
            user=user,
            now=console.state.clock() - timedelta(seconds=age_s),
            ttl_s=ttl_s,
        )


def _alert(console: Console, alert_id: int) -> m.Alert:
    with console.factory() as s:
        alert = s.get(m.Alert, alert_id)
        assert alert is not None
        return alert


def _log(console: Console, alert_id: int) -> list[tuple[str, str, str | None]]:
    with console.factory() as s:
        return [
            (t.action, t.actor, t.note)
            for t in s.scalars(
                select(m.AlertTransition).where(m.AlertTransition.alert_id == alert_id)
            )
        ]


def test_the_link_acknowledges_once_as_its_user(console: Console) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    alert_id = console.alert(gw, kind="ebike_charging", severity=3)
    token = _link(console, alert_id, duty)
    with httpx.Client(base_url=console.url, timeout=30) as client:  # no login, no cookie
        page = client.get(f"/ack/{token}")
        assert page.status_code == 200
        assert "电动车飞线充电" in page.text and duty in page.text
        assert _alert(console, alert_id).status == "open"  # looking changes nothing
        done = client.post(f"/ack/{token}")
        assert done.status_code == 200 and "已确认" in done.text
        assert _alert(console, alert_id).status == "acknowledged"
        assert ("acknowledged", duty, "via notification link") in _log(console, alert_id)
        again = client.post(f"/ack/{token}")
        assert again.status_code == 410 and "已使用或已过期" in again.text
        assert client.get(f"/ack/{token}").status_code == 410


def test_an_expired_link_is_refused(console: Console) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    alert_id = console.alert(gw)
    token = _link(console, alert_id, duty, ttl_s=300, age_s=301)
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post(f"/ack/{token}")
    assert r.status_code == 410 and "expired" in r.text
    assert _alert(console, alert_id).status == "open"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "A" + t[1:] if not t.startswith("A") else "B" + t[1:],  # nonce changed
    ],
    ids=["signature", "nonce"],
)
def test_a_forged_link_is_refused_before_anything_is_read(console: Console, tamper: Any) -> None:
    gw = console.gateway()
    alert_id = console.alert(gw)
    token = _link(console, alert_id, console.user("duty", gw))
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post(f"/ack/{tamper(token)}")
        assert r.status_code == 404 and "链接无效" in r.text
        assert client.post("/ack/not-a-token").status_code == 422  # not even the shape
    assert _alert(console, alert_id).status == "open"


def test_a_link_for_a_user_outside_the_alerts_area_acknowledges_nothing(
    console: Console,
) -> None:
    gw = console.gateway()
    elsewhere = console.gateway()  # another community altogether
    stranger = console.user("duty", GatewayPath(elsewhere.community, elsewhere.compound, "x"))
    alert_id = console.alert(gw)
    token = _link(console, alert_id, stranger)
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post(f"/ack/{token}")
    assert r.status_code == 404  # another area's alert reads as missing, as in the API
    assert _alert(console, alert_id).status == "open"


def test_a_deactivated_users_link_acknowledges_nothing(console: Console) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    alert_id = console.alert(gw)
    token = _link(console, alert_id, duty)
    with transaction(console.factory) as s:
        user = s.scalars(select(m.User).where(m.User.username == duty)).one()
        user.active = False
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post(f"/ack/{token}")
    assert r.status_code == 403
    assert _alert(console, alert_id).status == "open"


def test_the_link_page_works_on_a_phone(console: Console, browser: Any) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    alert_id = console.alert(gw, kind="ebike_charging", severity=3)
    token = _link(console, alert_id, duty)
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{console.url}/ack/{token}")
        page.get_by_role("button", name="确认告警").click()
        done = page.locator(".ack-link [role=status]")
        done.wait_for()
        assert "已确认" in done.inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width} px)"
        screenshot(page, "ack-link-phone")
    finally:
        context.close()
    assert _alert(console, alert_id).status == "acknowledged"
