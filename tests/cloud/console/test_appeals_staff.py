"""The staff's appeals pages (居民诉求) on the served app: the list of one's area, overdue
first and filtered; an appeal's page with its photos and log; the moves as the API allows
them (a role without WORK_ON_APPEALS sees no button and is refused, a post without the
CSRF token too); another area's appeal reads as missing. In Debian's Chromium: answering
through the page reaches the resident's view, and a phone's width scrolls nothing sideways
(with the screenshots appeals_list and appeals_detail)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.appeals import access, intake, lifecycle
from cloud.appeals.config import AppealSettings
from cloud.appeals.photos import PhotoIn
from cloud.console.session import COOKIE, CSRF_HEADER, csrf_for
from cloud.db import models as m
from cloud.db import transaction
from tests.cloud.appeals.conftest import JPEG, PNG, Place, make_place, unique_phone
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot

PHONE_SIZE = {"width": 390, "height": 844}
ROW = re.compile(r'id="appeal-(\d+)"')


@pytest.fixture(autouse=True)
def _appeal_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the served app reads these on its first appeal request; the tests' intake too
    monkeypatch.setenv("MB_CLOUD_APPEALS_PHOTO_DIR", str(tmp_path / "photos"))
    monkeypatch.setenv("MB_CLOUD_APPEALS_MAX_PER_CONTACT", "10000")


@dataclass(frozen=True)
class Made:
    id: int
    ticket: str
    key: str


def appeal(
    console: Console,
    place: Place,
    text: str,
    *,
    category: str | None = None,
    building: str | None = "b1",
    hours_ago: float = 0,
    photos: tuple[bytes, ...] = (),
) -> Made:
    """A resident's appeal through the real intake, made ``hours_ago`` (its deadline
    counts from then)."""
    cfg = AppealSettings()
    with transaction(console.factory) as s:
        taken = intake.submit(
            s,
            intake.AppealIn(
                place.community,
                place.compound,
                text,
                building=building,
                category=category,
                phone=unique_phone(),
            ),
            [PhotoIn(data, f"{n}.img") for n, data in enumerate(photos, 1)],
            settings=cfg,
            photo_root=cfg.photo_root(console.state.settings.evidence_dir),
            secret=console.state.settings.secret_key.get_secret_value(),
            now=console.state.clock() - timedelta(hours=hours_ago),
        )
        return Made(taken.appeal.id, taken.appeal.ticket, taken.access_key or "")


def move(console: Console, made: Made, action: str, **data: Any) -> None:
    with transaction(console.factory) as s:
        lifecycle.move(
            s, made.id, action, lifecycle.MoveIn(**data), actor="wang", now=console.state.clock()
        )


def status_of(console: Console, made: Made) -> str:
    with console.factory() as s:
        return s.get_one(m.Appeal, made.id).status


@contextmanager
def signed_in(console: Console, username: str, *, csrf: bool = True) -> Iterator[httpx.Client]:
    """An HTTP client logged in through the console's form (with the CSRF header htmx
    sends, unless ``csrf`` is False)."""
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
        assert r.status_code == 303, r.text
        if csrf:
            client.headers[CSRF_HEADER] = csrf_for(client.cookies[COOKIE])
        yield client


def test_the_list_is_my_area_overdue_first_and_filters(console: Console) -> None:
    place, elsewhere = make_place(console.factory), make_place(console.factory)
    alert_id = console.alert(place.gw)  # illegal parking at b1: the parking appeal's match
    parking = appeal(console, place, "消防通道上停了一辆车，堵了两天", category="parking")
    fire = appeal(console, place, "楼道里有人飞线充电", hours_ago=1)  # due in 1 h
    lift = appeal(console, place, "电梯困人了，快来", hours_ago=3)  # 2.5 h overdue
    noise = appeal(console, place, "楼上装修噪音太大", category="noise", hours_ago=50)
    move(console, noise, "answer", reply="已联系施工方，晚上不再施工")
    theirs = appeal(console, elsewhere, "电梯坏了", hours_ago=3)
    duty = console.user("duty", place.gw)
    with signed_in(console, duty) as client:
        page = client.get("/appeals")
        assert page.status_code == 200
        html = page.text
        # overdue first, then the open ones by deadline, then the answered one
        assert [int(i) for i in ROW.findall(html)] == [lift.id, fire.id, parking.id, noise.id]
        assert theirs.ticket not in html
        assert "电梯" in html and "停车" in html  # the categories file's names
        assert f'href="/alerts/{alert_id}"' in html
        assert 'href="/appeals"' in html  # the nav
        row = html[html.index(f'id="appeal-{lift.id}"') :]
        assert "已逾期" in row[: row.index("</tr>")]
        only_overdue = client.get("/appeals", params={"overdue": "1"}).text
        assert [int(i) for i in ROW.findall(only_overdue)] == [lift.id]
        by_category = client.get("/appeals", params={"category": "parking"}).text
        assert [int(i) for i in ROW.findall(by_category)] == [parking.id]
        by_status = client.get("/appeals", params={"status": "answered"}).text
        assert [int(i) for i in ROW.findall(by_status)] == [noise.id]
        none_closed = client.get("/appeals", params={"status": "closed"}).text
        assert ROW.findall(none_closed) == [] and "没有符合条件的诉求" in none_closed
        # an unknown value filters nothing rather than failing the page
        assert len(ROW.findall(client.get("/appeals", params={"status": "x"}).text)) == 4


def test_another_areas_appeal_reads_as_missing(console: Console) -> None:
    place, elsewhere = make_place(console.factory), make_place(console.factory)
    mine = appeal(console, place, "垃圾三天没人收", photos=(JPEG,))
    theirs = appeal(console, elsewhere, "垃圾三天没人收", photos=(PNG,))
    duty = console.user("duty", place.gw)
    with signed_in(console, duty) as client:
        own = client.get(f"/appeals/{mine.id}")
        assert own.status_code == 200 and "垃圾三天没人收" in own.text
        photo = client.get(f"/console/appeals/{mine.id}/photos/1")
        assert photo.status_code == 200 and photo.content == JPEG
        assert photo.headers["content-type"] == "image/jpeg"
        assert photo.headers["x-content-type-options"] == "nosniff"
        other = client.get(f"/appeals/{theirs.id}")
        missing = client.get("/appeals/999999999")
        assert other.status_code == missing.status_code == 404
        assert "不在您的辖区内" in other.text
        assert theirs.ticket not in other.text
        assert client.get(f"/console/appeals/{theirs.id}/photos/1").status_code == 404
        assert client.get(f"/console/appeals/{mine.id}/photos/2").status_code == 404
        refused = client.post(f"/console/appeals/{theirs.id}/accept")
        assert refused.status_code == 404
    assert status_of(console, theirs) == "submitted"


def test_the_moves_follow_the_api(console: Console) -> None:
    place = make_place(console.factory)
    made = appeal(console, place, "小区门口的路灯坏了好几天", category="repairs")
    duty = console.user("duty", place.gw)
    with signed_in(console, duty) as client:
        page = client.get(f"/appeals/{made.id}").text
        assert 'id="appeal-accept"' in page and 'id="answer-form"' in page
        assert 'id="appeal-close"' not in page  # close only after the answer
        # an answer needs the reply the resident reads
        empty = client.post(f"/console/appeals/{made.id}/answer", data={"reply": "  "})
        assert empty.status_code == 422 and empty.headers["HX-Retarget"] == "#toast"
        assert status_of(console, made) == "submitted"
        closed_early = client.post(f"/console/appeals/{made.id}/close")
        assert closed_early.status_code == 409
        reassigned = client.post(
            f"/console/appeals/{made.id}/reassign",
            data={"party": "department:elevator", "note": "电梯维保单位负责"},
        )
        assert reassigned.status_code == 200 and 'data-kind="department"' in reassigned.text
        bad_party = client.post(f"/console/appeals/{made.id}/reassign", data={"party": "x:y"})
        assert bad_party.status_code == 422
        accepted = client.post(f"/console/appeals/{made.id}/accept")
        assert accepted.status_code == 200 and 'id="appeal-accept"' not in accepted.text
        assert client.post(f"/console/appeals/{made.id}/accept").status_code == 409
    with console.factory() as s:
        row = s.get_one(m.Appeal, made.id)
        assert (row.status, row.responsible_kind, row.responsible_id) == (
            "accepted",
            "department",
            "elevator",
        )
        assert [t.action for t in access.timeline(s, made.id)] == ["submit", "reassign", "accept"]
        assert access.timeline(s, made.id)[-1].actor == duty


def test_a_role_without_the_permission_sees_no_button_and_is_refused(console: Console) -> None:
    place = make_place(console.factory)
    made = appeal(console, place, "楼下有人遛狗不牵绳", category="pets")
    engineer = console.user("engineer", place.gw)
    with signed_in(console, engineer) as client:
        listed = client.get("/appeals")
        assert listed.status_code == 200 and made.ticket in listed.text
        page = client.get(f"/appeals/{made.id}")
        assert page.status_code == 200 and "遛狗不牵绳" in page.text
        assert 'id="appeal-actions"' not in page.text
        assert 'hx-post="/console/appeals/' not in page.text
        for action, data in (("accept", {}), ("answer", {"reply": "好的"})):
            assert client.post(f"/console/appeals/{made.id}/{action}", data=data).status_code == 403
    assert status_of(console, made) == "submitted"


def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    place = make_place(console.factory)
    made = appeal(console, place, "单元门禁坏了，陌生人随便进")
    duty = console.user("duty", place.gw)
    with signed_in(console, duty, csrf=False) as client:
        assert client.post(f"/console/appeals/{made.id}/accept").status_code == 403
        forged = client.post(f"/console/appeals/{made.id}/accept", headers={CSRF_HEADER: "0" * 64})
        assert forged.status_code == 403
    assert status_of(console, made) == "submitted"


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_SIZE["width"], f"the page is {width} px wide"


def test_answer_through_the_page_and_the_resident_reads_it(
    console: Console, page: Any, browser: Any
) -> None:
    place = make_place(console.factory)
    console.alert(place.gw)  # illegal parking at b1: linked to the parking appeal
    appeal(console, place, "地下车库B区有车占了消防通道，已经两天了", category="parking")
    appeal(console, place, "2号楼电梯困人，按了报警铃没人应", building="b2", hours_ago=2)
    rated = appeal(console, place, "楼上每晚十一点后还在装修", category="noise", hours_ago=30)
    move(console, rated, "answer", reply="已联系施工方，晚上不再施工")
    with transaction(console.factory) as s:
        access.rate(s, s.get_one(m.Appeal, rated.id), 4, "处理及时", now=console.state.clock())
    made = appeal(
        console,
        place,
        "3单元楼道里有人飞线充电，电线从5楼窗户拉下来",
        hours_ago=0.5,
        photos=(JPEG, PNG),
    )
    duty = console.user("duty", place.gw)
    log_in(page, console, duty, next_path="/appeals")
    assert page.locator("h1").inner_text() == "居民诉求"
    assert page.locator("table.appeals tbody tr.row").count() == 4
    screenshot(page, "appeals_list")
    page.click(f"#appeal-{made.id} a.ticket")
    page.wait_for_url(f"{console.url}/appeals/{made.id}")
    assert page.locator("#appeal-status").inner_text() == "待受理"
    assert page.locator("#appeal-photos img").count() == 2
    loaded = page.evaluate(
        "Array.from(document.querySelectorAll('#appeal-photos img')).every(i => i.naturalWidth > 0)"
    )
    assert loaded, "the photos did not load under the session cookie"
    assert "飞线充电" in page.locator("#appeal-matched").inner_text()
    page.click("#appeal-accept")
    page.wait_for_selector("#appeal-status:has-text('处理中')")
    page.fill("#answer-reply", "已通知消防站到场拆除电线，并提醒住户到充电棚充电")
    page.click("#appeal-answer")
    page.wait_for_selector("#appeal-reply")
    assert page.locator("#appeal-status").inner_text() == "已答复"
    assert page.locator("#appeal-log li").count() == 3
    assert "已答复" in page.locator("#appeal-actions [role=status]").inner_text()
    screenshot(page, "appeals_detail")
    # the resident's own view, by the ticket and the key from the intake
    view = httpx.get(f"{console.url}/api/appeals/{made.ticket}", params={"k": made.key})
    assert view.status_code == 200
    assert (view.json()["status"], view.json()["reply"]) == (
        "answered",
        "已通知消防站到场拆除电线，并提醒住户到充电棚充电",
    )
    with console.factory() as s:
        assert s.get_one(m.Appeal, made.id).replied_by == duty
    # a phone's width: the list and the page scroll nothing sideways
    context = browser.new_context(
        viewport=PHONE_SIZE, locale="zh-CN", is_mobile=True, has_touch=True
    )
    phone = context.new_page()
    phone.set_default_timeout(15_000)
    try:
        log_in(phone, console, duty, next_path="/appeals")
        _no_sideways_scroll(phone)
        screenshot(phone, "appeals_list_phone")
        phone.goto(f"{console.url}/appeals/{rated.id}")
        assert phone.locator("#appeal-rating").get_attribute("data-rating") == "4"
        _no_sideways_scroll(phone)
        phone.goto(f"{console.url}/appeals/{made.id}")
        _no_sideways_scroll(phone)
        screenshot(phone, "appeals_detail_phone")
    finally:
        context.close()
