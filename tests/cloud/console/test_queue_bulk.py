"""Bulk verdicts and acknowledgements from the queue, in real Chromium: select with the
keyboard and with the boxes, one click, every row updated live, each verdict stored with
who and when; an id from another compound smuggled into the form changes nothing there."""

from __future__ import annotations

from typing import Any

import httpx

from cloud.console.session import COOKIE, CSRF_HEADER, csrf_for
from cloud.db import models as m
from tests.cloud.console.conftest import Console, log_in


def test_bulk_false_positive_on_three_alerts(console: Console, page: Any) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    ids = [console.alert(gw, severity=2) for _ in range(3)]
    spare = console.alert(gw, severity=2)  # left alone
    log_in(page, console, duty)
    page.wait_for_selector("body[data-live=open]")

    # x on the focused row selects it; the boxes select the others
    page.locator(f"#alert-{ids[0]} .place").click()
    page.keyboard.press("x")
    for alert_id in ids[1:]:
        page.check(f"#alert-{alert_id} input[name=ids]")
    assert page.inner_text("#selected-count") == "3"
    page.click("#bulk-form button[value=false_positive]")

    page.locator("#toast .toast-item.ok").wait_for()
    assert "3 / 3" in page.inner_text("#toast")
    for alert_id in ids:  # the rows change through the live stream
        page.locator(f"#alert-{alert_id} .verdict-false_positive").wait_for()
    assert page.locator(f"#alert-{spare} .verdict-false_positive").count() == 0

    with console.factory() as s:
        verdicts = {
            v.alert_id: v for v in s.query(m.AlertVerdict).filter(m.AlertVerdict.alert_id.in_(ids))
        }
        assert sorted(verdicts) == sorted(ids)
        assert {(v.verdict, v.actor) for v in verdicts.values()} == {("false_positive", duty)}
        assert s.get(m.AlertVerdict, spare) is None


def test_bulk_acknowledge_refuses_another_compounds_id_like_a_missing_one(console: Console) -> None:
    mine, theirs = console.gateway("compound-1"), console.gateway("compound-2")
    own, other = console.alert(mine), console.alert(theirs)
    duty = console.user("duty", mine)
    with httpx.Client(base_url=console.url, timeout=30) as client:
        client.post("/login", data={"username": duty, "password": "correct horse battery"})
        headers = {CSRF_HEADER: csrf_for(client.cookies[COOKIE])}
        data = {"action": "acknowledge", "ids": [str(own), str(other), "999999999"]}
        r = client.post("/console/bulk", data=data, headers=headers)
        assert r.status_code == 200
        text = r.text
    assert "1 / 3" in text
    # the other compound's id and a nonexistent id read the same
    assert text.count("不存在或不在您的辖区") == 2
    with console.factory() as s:
        own_row, other_row = s.get(m.Alert, own), s.get(m.Alert, other)
        assert own_row is not None and other_row is not None
        assert (own_row.status, other_row.status) == ("acknowledged", "open")
