"""The residents' page in Debian's Chromium at a phone's size (390×844), zh-CN: report a
problem with a photo, keep the private link, see the answer, rate it; a wrong key
reads as a missing ticket; nothing scrolls sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.db import models as m
from cloud.db import transaction
from tests.cloud.appeals.conftest import JPEG, make_place, unique_phone
from tests.cloud.console.conftest import Console, screenshot

PHONE_SIZE = {"width": 390, "height": 844}


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_SIZE["width"], f"the page is {width} px wide"


def test_report_follow_and_rate_on_a_phone(
    console: Console, browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read by the app on its first appeal: the photos go to this test's folder
    monkeypatch.setenv("MB_CLOUD_APPEALS_PHOTO_DIR", str(tmp_path / "photos"))
    place = make_place(console.factory)
    photo = tmp_path / "楼道.jpg"
    photo.write_bytes(JPEG)
    context = browser.new_context(
        viewport=PHONE_SIZE, locale="zh-CN", is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{console.url}/report")
        assert page.locator("h1").inner_text() == "反映问题"
        _no_sideways_scroll(page)
        page.select_option("select[name=place]", f"{place.community}/{place.compound}")
        page.select_option("select[name=building]", "b1")
        page.fill("textarea[name=text]", "3单元楼道里有人飞线充电，电线从5楼窗户拉下来")
        page.set_input_files("input[name=photos]", str(photo))
        page.fill("input[name=phone]", unique_phone())
        screenshot(page, "appeal-report-form-phone")
        page.click("button[type=submit]")
        ticket = page.locator("[data-ticket]").inner_text()
        link = page.locator("[data-private-link]").get_attribute("href")
        assert link and link.startswith(f"/report/{ticket}?k=")
        _no_sideways_scroll(page)
        screenshot(page, "appeal-report-done-phone")
        with console.factory() as s:
            appeal = s.query(m.Appeal).filter_by(ticket=ticket).one()
            assert (appeal.category, appeal.building, appeal.responsible_kind) == (
                "fire-safety",
                "b1",
                "department",
            )
            assert s.query(m.AppealPhoto).filter_by(appeal_id=appeal.id).count() == 1
        page.goto(f"{console.url}{link}")
        assert page.locator("[data-status]").inner_text() == "已受理"
        # the staff answer; the resident sees it and rates it, once
        with transaction(console.factory) as s:
            row = s.query(m.Appeal).filter_by(ticket=ticket).one()
            row.status, row.reply = "answered", "消防站已到场拆除电线，谢谢您的反映"
        page.reload()
        assert "拆除电线" in page.locator("[data-reply]").inner_text()
        page.check("input[name=rating][value='5']")
        page.fill("textarea[name=comment]", "处理很快")
        screenshot(page, "appeal-answered-phone")
        page.click("form.appeal-form button[type=submit]")
        assert page.locator("[data-rating]").get_attribute("data-rating") == "5"
        assert page.locator("form.appeal-form").count() == 0  # no second rating
        _no_sideways_scroll(page)
        # someone else's guess of the key: the same page as a missing ticket
        wrong = page.goto(f"{console.url}/report/{ticket}?k=guess")
        assert wrong is not None and wrong.status == 404
        assert "找不到" in page.locator("main").inner_text()
        assert "拆除电线" not in page.content()
    finally:
        context.close()


def test_the_form_again_with_the_reason_when_refused(console: Console, browser: Any) -> None:
    place = make_place(console.factory)
    context = browser.new_context(viewport=PHONE_SIZE, locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{console.url}/report")
        page.select_option("select[name=place]", f"{place.community}/{place.compound}")
        page.fill("textarea[name=text]", "垃圾三天没人收")
        page.fill("input[name=phone]", "12345")  # not a phone
        page.click("button[type=submit]")
        assert "phone" in page.locator("[role=alert]").inner_text()
        # what was typed is kept
        assert page.locator("textarea[name=text]").input_value() == "垃圾三天没人收"
        _no_sideways_scroll(page)
    finally:
        context.close()
