"""The alert detail page in real Chromium: the snapshot a gateway uploaded through the
real API loads with its overlay, the rule's thresholds and the model are shown, ``a``
acknowledges, a comment, a verdict, an escalation and a resolution land in the timeline
(and the database), another user's change shows live, another compound's user gets the
same 404 as for an id that does not exist (the API too), and a phone has no horizontal
scroll."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from cloud import alerts, auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.console import mount_console
from cloud.console.routes.alert_detail import LevelMove, level_move
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from microbrain.protocol import EvidenceKind, EvidenceRef, GatewayPath, ModelRef
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot
from tests.utils.api_server import serve

GW_PASSWORD = "gateway password"


@pytest.fixture
def cloud(sqlite_cloud_url: str, tmp_path: Path) -> Iterator[Console]:
    """The console fixture's served cloud, keeping evidence under the test's tmp_path."""
    engine = make_engine(sqlite_cloud_url)
    factory = session_factory(engine)
    settings = Settings(environment="test", evidence_dir=tmp_path / "evidence")
    state = ApiState(settings=settings, factory=factory, stream_poll_s=0.05)
    app = create_api(state)
    mount_console(app, state)
    with serve(app) as served:
        yield Console(served, factory, state)
    engine.dispose()


def _jpeg() -> bytes:
    # a real JPEG (the browser must decode it): a car-ish block in a lane, as a gateway's
    # snapshot with its burnt-in box would look
    image = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(image, (200, 150), (420, 300), (0, 0, 255), 3)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def _alert_with_snapshot(cloud: Console, gw: GatewayPath) -> tuple[int, str]:
    """An alert whose event carries a snapshot, uploaded by its gateway through
    ``PUT /api/evidence``; returns (alert id, event id)."""
    with transaction(cloud.factory) as s:
        auth.set_gateway_password(s, gw.gateway, GW_PASSWORD, now=datetime.now(UTC))
        s.merge(m.Department(id="city_management", name="城管中队", contacts=[]))
    jpeg = _jpeg()
    ref = EvidenceRef(
        kind=EvidenceKind.SNAPSHOT,
        name="cam-1-snap.jpg",
        sha256=hashlib.sha256(jpeg).hexdigest(),
        bytes=len(jpeg),
    )
    alert_id = cloud.alert(
        gw,
        kind="illegal_parking",
        severity=3,
        source="cam-1",
        zone="fire-lane",
        evidence=(ref,),
        dwell_s=95.0,
        object_class="car",
        confidence=0.87,
        model=ModelRef(name="yolov8n", version="2026.11"),
        detail={"dwell_limit_s": 60},
        message="消防通道停车超过 60 秒",
    )
    with cloud.factory() as s:
        event_id = s.query(m.EventRow).filter_by(alert_id=alert_id).one().id
    put = httpx.put(
        f"{cloud.url}/api/evidence/{event_id}/{ref.name}",
        content=jpeg,
        auth=(gw.gateway, GW_PASSWORD),
        timeout=30,
    )
    assert put.status_code == 201, put.text
    return alert_id, event_id


def _webm_clip(sample_media: Any, tmp_path: Path) -> bytes:
    """Three seconds of real footage as the gateway writes a clip (edge.video.clips)."""
    from edge.video.clips import write_webm

    cap = cv2.VideoCapture(str(sample_media("vtest.avi")))
    frames = [frame for ok, frame in (cap.read() for _ in range(30)) if ok]
    cap.release()
    path = tmp_path / "cam-1-clip.webm"
    assert write_webm(path, frames, fps=10.0)
    return path.read_bytes()


def test_dispatch_to_a_department_and_a_clip_plays_in_place(
    cloud: Console, page: Any, sample_media: Any, tmp_path: Path
) -> None:
    gw = cloud.gateway()
    duty = cloud.user("duty", gw)
    with transaction(cloud.factory) as s:
        auth.set_gateway_password(s, gw.gateway, GW_PASSWORD, now=datetime.now(UTC))
        s.merge(m.Department(id="city_management", name="城管中队", contacts=[]))
    clip = _webm_clip(sample_media, tmp_path)
    ref = EvidenceRef(
        kind=EvidenceKind.CLIP,
        name="cam-1-clip.webm",
        sha256=hashlib.sha256(clip).hexdigest(),
        bytes=len(clip),
        content_type="video/webm",
    )
    alert_id = cloud.alert(gw, kind="ebike_charging", severity=2, evidence=(ref,))
    with cloud.factory() as s:
        event_id = s.query(m.EventRow).filter_by(alert_id=alert_id).one().id
    url = f"{cloud.url}/api/evidence/{event_id}/{ref.name}"
    assert httpx.put(url, content=clip, auth=(gw.gateway, GW_PASSWORD)).status_code == 201
    log_in(page, cloud, duty, next_path=f"/alerts/{alert_id}")

    video = page.locator(f"#event-{event_id} video[controls]")
    src = video.get_attribute("src")
    served = page.request.get(f"{cloud.url}{src}")  # with the console's cookie
    assert served.status == 200 and served.headers["content-type"] == "video/webm"
    assert served.body() == clip
    assert httpx.get(f"{cloud.url}{src}").status_code in (303, 307)  # no cookie: the login
    # the browser decodes it: the clip's frame size, its length, and playback moves on
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function(
        "v => v.readyState >= 2 && v.currentTime > 0.2", arg=video.element_handle()
    )
    size = video.evaluate("v => [v.videoWidth, v.videoHeight, v.duration]")
    assert size[:2] == [768, 576] and 2.5 < size[2] < 3.5, size

    page.select_option("#dispatch-department", "city_management")
    page.fill("#dispatch-note", "请城管到场")
    page.click("#detail-dispatch")
    page.locator("#detail-status").filter(has_text="已派单").wait_for()
    order = page.locator(".detail-orders li.card")
    order.filter(has_text="城管中队").wait_for()
    assert "已创建" in order.inner_text() and "请城管到场" in order.inner_text()
    _timeline(page, "dispatched").filter(has_text=duty).wait_for()
    with cloud.factory() as s:
        wo = s.query(m.WorkOrder).filter_by(alert_id=alert_id).one()
        assert (wo.department, wo.status, wo.reason) == ("city_management", "created", "dispatch")


def _timeline(page: Any, action: str) -> Any:
    return page.locator(f"#timeline li[data-action={action}]")


def test_why_it_fired_and_every_action(cloud: Console, page: Any) -> None:
    gw = cloud.gateway()
    duty = cloud.user("duty", gw)
    # last night's alert at the same place, resolved by the night shift
    earlier = cloud.alert(gw, kind="illegal_parking", source="cam-1", zone="fire-lane")
    with transaction(cloud.factory) as s:
        alerts.resolve(s, earlier, actor="night-duty", now=datetime.now(UTC), note="已挪走")
    alert_id, event_id = _alert_with_snapshot(cloud, gw)
    log_in(page, cloud, duty, next_path=f"/alerts/{alert_id}")
    similar = page.locator(".detail-similar li.card")
    assert similar.count() == 1
    assert "night-duty" in similar.inner_text() and "同一位置" in similar.inner_text()
    assert similar.locator("a").get_attribute("href") == f"/alerts/{earlier}"

    img = page.locator(f"#event-{event_id} .snap img")
    img.wait_for()
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=15_000
    )
    assert img.evaluate("el => el.naturalWidth") == 640
    overlay = page.locator(f"#event-{event_id} .snap svg.overlay")
    assert "停留 95 秒 / 限 60 秒" in overlay.text_content()
    assert "car 87%" in overlay.text_content()
    assert "网关绘制" in page.locator(f"#event-{event_id} figcaption").inner_text()
    rule = page.locator(".detail-rule").inner_text()
    assert "停留阈值（秒）" in rule and "60" in rule
    assert "yolov8n" in page.locator("#detail-model").inner_text()
    assert "紧急" in page.locator(".detail-head").inner_text()
    assert gw.compound in page.locator(".detail-place").inner_text()
    page.locator("body[data-live=open]").wait_for()

    page.keyboard.press("a")
    _timeline(page, "acknowledged").filter(has_text=duty).wait_for()
    assert page.locator("#detail-status").inner_text() == "已确认"

    page.fill("#comment-note", "车主已联系，十分钟内挪车")
    page.click("#detail-comment")
    _timeline(page, "comment").filter(has_text="十分钟内挪车").wait_for()
    page.wait_for_function("document.getElementById('comment-note').value === ''")

    page.click("#detail-false-positive")
    page.locator("#detail-verdict").filter(has_text="误报").wait_for()
    assert duty in page.locator("#detail-verdict").inner_text()
    _timeline(page, "verdict").filter(has_text=duty).filter(has_text="误报").wait_for()

    page.click("#detail-escalate")
    page.locator("#detail-level").filter(has_text="小区级").wait_for()
    _timeline(page, "escalated").filter(has_text=duty).filter(has_text="楼栋级 → 小区级").wait_for()
    screenshot(page, "detail")  # with a timeline, and the actions an acknowledged alert has

    page.fill("#resolve-note", "已挪车")
    page.click("#detail-resolve")
    page.locator("#detail-status").filter(has_text="已处置").wait_for()
    _timeline(page, "resolved").filter(has_text="已挪车").wait_for()
    assert page.locator("#detail-ack").count() == 0  # no action the state refuses

    with cloud.factory() as s:
        alert = s.get_one(m.Alert, alert_id)
        verdict = s.get_one(m.AlertVerdict, alert_id)
        assert (alert.status, alert.level) == ("resolved", "compound")
        assert (verdict.verdict, verdict.actor) == ("false_positive", duty)
        assert verdict.at is not None
        actors = {t.action: t.actor for t in alerts.timeline(s, alert_id)}
    assert {actors[a] for a in ("acknowledged", "comment", "verdict", "escalated")} == {duty}

    page.keyboard.press("u")
    page.wait_for_url(f"{cloud.url}/")


def test_another_users_change_shows_live(cloud: Console, page: Any) -> None:
    gw = cloud.gateway()
    duty = cloud.user("duty", gw)
    alert_id = cloud.alert(gw, severity=2)
    log_in(page, cloud, duty, next_path=f"/alerts/{alert_id}")
    page.locator("body[data-live=open]").wait_for()
    page.fill("#comment-note", "half a sentence")  # typing when the change arrives
    with transaction(cloud.factory) as s:
        alerts.acknowledge(s, alert_id, actor="colleague", now=datetime.now(UTC))
    cloud.state.notifier.notify()
    _timeline(page, "acknowledged").filter(has_text="colleague").wait_for()
    assert page.locator("#detail-status").inner_text() == "已确认"
    assert page.locator("#detail-ack").count() == 0
    assert page.input_value("#comment-note") == "half a sentence"


def test_another_compounds_alert_is_the_same_404_as_none(cloud: Console, page: Any) -> None:
    mine, theirs = cloud.gateway("compound-1"), cloud.gateway("compound-2")
    outsider = cloud.user("duty", theirs)
    alert_id, event_id = _alert_with_snapshot(cloud, mine)
    log_in(page, cloud, outsider)
    hidden = page.goto(f"{cloud.url}/alerts/{alert_id}")
    hidden_text = page.locator("main").inner_text()
    missing = page.goto(f"{cloud.url}/alerts/{alert_id + 1_000_000}")
    assert hidden is not None and missing is not None
    assert hidden.status == missing.status == 404
    assert hidden_text == page.locator("main").inner_text()
    assert "不在您的辖区" in hidden_text
    assert page.goto(f"{cloud.url}/console/alerts/{alert_id}/body").status == 404
    snapshot = page.goto(f"{cloud.url}/console/evidence/{event_id}/cam-1-snap.jpg")
    assert snapshot is not None and snapshot.status == 404

    token = httpx.post(
        f"{cloud.url}/api/auth/token", json={"username": outsider, "password": PASSWORD}
    ).json()["access_token"]
    api = httpx.get(
        f"{cloud.url}/api/alerts/{alert_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 404


def test_a_phone_sees_the_page_without_sideways_scroll(cloud: Console, browser: Any) -> None:
    gw = cloud.gateway()
    duty = cloud.user("duty", gw)
    alert_id, event_id = _alert_with_snapshot(cloud, gw)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale="zh-CN", has_touch=True, is_mobile=True
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, cloud, duty, next_path=f"/alerts/{alert_id}")
        img = page.locator(f"#event-{event_id} .snap img")
        page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=15_000
        )
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        box = img.bounding_box()
        assert box is not None and box["width"] <= 390
        for button in page.locator(".detail-actions button").all():
            height = button.bounding_box()["height"]
            assert height >= 40, f"{button.inner_text()} is {height}px high"
        screenshot(page, "phone")
    finally:
        context.close()


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        (
            "escalated by hand from building level; now compound: 无人接听\n第二行",
            LevelMove("building", "compound", "无人接听\n第二行"),
        ),
        (
            "not acknowledged in time at compound level; now community",
            LevelMove("compound", "community", None),
        ),
        (
            "escalated by hand from building level; now compound",
            LevelMove("building", "compound", None),
        ),
        ("", None),
        (None, None),
        ("a person's note that mentions no level", None),
    ],
)
def test_an_escalations_levels_are_read_from_its_note(
    note: str | None, expected: LevelMove | None
) -> None:
    assert level_move(note) == expected
