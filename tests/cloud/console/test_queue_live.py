"""The live queue in real Chromium: log in as a compound's duty officer, an alert raised
through the ingest appears without reload (with a popup when critical), ``a``
acknowledges it, and another compound's user never sees it."""

from __future__ import annotations

from typing import Any

from tests.cloud.console.conftest import Console, log_in, screenshot


def test_a_new_alert_appears_live_and_a_acknowledges_it(console: Console, page: Any) -> None:
    gw = console.gateway()
    duty = console.user("duty", gw)
    log_in(page, console, duty)
    page.wait_for_selector("body[data-live=open]")
    assert "告警队列" in page.title()

    alert_id = console.alert(gw, severity=3, kind="illegal_parking")
    row = page.locator(f"#alert-{alert_id}")
    row.wait_for()
    assert "紧急" in row.inner_text()  # severity as text, beside colour and icon
    page.locator("#popup.show").wait_for()
    assert "消防通道违停" in page.locator("#popup").inner_text()
    screenshot(page, "queue")

    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("a")
    page.locator(f"#alert-{alert_id}.status-acknowledged").wait_for()


def test_another_compounds_alert_never_reaches_the_queue(console: Console, page: Any) -> None:
    mine, theirs = console.gateway("compound-1"), console.gateway("compound-2")
    duty = console.user("duty", mine)
    log_in(page, console, duty)
    page.wait_for_selector("body[data-live=open]")
    other = console.alert(theirs, severity=3)
    own = console.alert(mine, severity=2)
    page.locator(f"#alert-{own}").wait_for()
    assert page.locator(f"#alert-{other}").count() == 0
