"""Appeals over real HTTP (a uvicorn server, a migrated database on both stores): the
public intake with photos and its refusals (413, 415, 422, 429), the reporter's view
that shows no one else's, the rating, and the staff's desk scoped to their area."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.appeals.config import AppealSettings
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.permissions import Role
from cloud.settings import Settings
from tests.cloud.appeals.conftest import JPEG, PNG, SECRET, Place, make_place, unique_phone
from tests.utils.api_server import serve


@dataclass
class Desk:
    http: httpx.Client
    factory: sessionmaker[Session]
    clock: ManualClock
    place: Place
    other: Place

    def token(self, role: Role, place: Place | None) -> dict[str, str]:
        with transaction(self.factory) as s:
            user = m.User(
                username=f"u-{uuid.uuid4().hex[:10]}",
                password_hash="x",
                role=role.value,
                community=place.community if place else None,
                compound=place.compound if place else None,
                active=True,
                created_at=self.clock(),
            )
            s.add(user)
            s.flush()
            return {
                "Authorization": f"Bearer {auth.issue_token(s, user, now=self.clock(), ttl_s=3600)}"
            }

    def submit(
        self, place: Place | None = None, files: list[tuple[str, bytes]] | None = None, **kw: Any
    ) -> httpx.Response:
        fields = (place or self.place).fields(text="楼道里有人飞线充电", phone=unique_phone())
        fields.update(kw)
        upload = [("photos", (name, data, "image/jpeg")) for name, data in files or []]
        return self.http.post("/api/appeals", data=fields, files=upload or None)


@pytest.fixture
def desk(factory: sessionmaker[Session], tmp_path: Any) -> Iterator[Desk]:
    clock = ManualClock(datetime.now(UTC))
    state = ApiState(
        settings=Settings(
            environment="test", secret_key=SecretStr(SECRET), evidence_dir=tmp_path / "ev"
        ),
        factory=factory,
        clock=clock,
    )
    app = create_api(state)
    app.state.appeals = AppealSettings(
        max_photo_bytes=64 * 1024, max_per_contact=2, contact_window_s=600
    )
    place, other = make_place(factory), make_place(factory)
    with serve(app) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        yield Desk(http, factory, clock, place, other)


def test_intake_with_photos_then_the_reporter_reads_it(desk: Desk) -> None:
    r = desk.submit(files=[("a.jpg", JPEG), ("b.png", PNG)], building="b1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["category"] == "fire-safety" and body["photos"] == 2
    ticket, key = body["ticket"], body["access_key"]
    assert body["link"] == f"/report/{ticket}?k={key}"
    view = desk.http.get(f"/api/appeals/{ticket}", params={"k": key})
    assert view.status_code == 200, view.text
    shown = view.json()
    assert shown["ticket"] == ticket and shown["status"] == "submitted" and shown["photos"] == 2
    # nobody's contact, no staff names, no internal ids in the reporter's view
    assert not {"contact", "contact_sha256", "replied_by", "id", "access_sha256"} & set(shown)
    assert desk.http.get(f"/api/appeals/{ticket}", headers={"X-Appeal-Key": key}).status_code == 200


def test_the_reporter_view_shows_no_one_elses_appeal(desk: Desk) -> None:
    a, b = desk.submit().json(), desk.submit().json()
    missing = desk.http.get("/api/appeals/A260101-00000000", params={"k": a["access_key"]})
    assert missing.status_code == 404
    tries = [
        (b["ticket"], {"k": a["access_key"]}),  # my key, their ticket
        (a["ticket"], {}),  # no key
        (a["ticket"], {"k": "x" * 24}),  # a guess
        (a["ticket"][:-1] + ("0" if a["ticket"][-1] != "0" else "1"), {"k": a["access_key"]}),
    ]
    for ticket, params in tries:
        r = desk.http.get(f"/api/appeals/{ticket}", params=params)
        assert r.status_code == 404, r.text
        assert r.json() == {"detail": f"appeal {ticket} does not exist"}
    # the phone opens only the appeal made with it
    phone = unique_phone()
    mine = desk.submit(phone=phone).json()
    ok = desk.http.get(f"/api/appeals/{mine['ticket']}", headers={"X-Appeal-Phone": phone})
    assert ok.status_code == 200
    theirs = desk.http.get(f"/api/appeals/{b['ticket']}", headers={"X-Appeal-Phone": phone})
    assert theirs.status_code == 404


def test_intake_refusals_say_what_is_wrong(desk: Desk) -> None:
    too_big = desk.submit(files=[("big.jpg", JPEG + bytes(70 * 1024))])
    assert too_big.status_code == 413 and "big.jpg" in too_big.json()["detail"]
    html = desk.submit(files=[("cat.jpg", b"<html><script>alert(1)</script></html>")])
    assert html.status_code == 415 and "text/html" in html.json()["detail"], html.text
    four = desk.submit(files=[(f"{i}.jpg", JPEG) for i in range(4)])
    assert four.status_code == 422 and "at most 3" in four.json()["detail"]
    whole = desk.http.post(
        "/api/appeals",
        content=b"x" * (5 * 64 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert whole.status_code == 413  # by Content-Length, before the body is read
    no_text = desk.submit(text="")
    assert no_text.status_code == 422 and no_text.json()["detail"] == "text: required"
    nowhere = desk.submit(compound="nowhere")
    assert nowhere.status_code == 422 and nowhere.json()["detail"].startswith("compound:")
    bad_phone = desk.submit(phone="110")
    assert bad_phone.status_code == 422 and bad_phone.json()["detail"].startswith("phone:")


def test_the_rate_limit_per_phone_then_ok_after_the_window(desk: Desk) -> None:
    phone = unique_phone()
    assert [desk.submit(phone=phone).status_code for _ in range(2)] == [201, 201]
    refused = desk.submit(phone=phone)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "600"
    assert "too many appeals" in refused.json()["detail"]
    assert desk.submit(phone=unique_phone()).status_code == 201  # another phone
    desk.clock.advance(seconds=601)
    assert desk.submit(phone=phone).status_code == 201
    metrics = desk.http.get("/metrics").text
    assert 'mb_appeals_intake_total{outcome="throttled"}' in metrics


def test_staff_work_the_appeal_and_the_reporter_rates_once(desk: Desk) -> None:
    made = desk.submit(building="b1").json()
    duty = desk.token(Role.DUTY, desk.place)
    listed = desk.http.get("/api/staff/appeals", headers=duty).json()
    assert [a["ticket"] for a in listed["items"]] == [made["ticket"]]
    appeal_id = listed["items"][0]["id"]
    assert listed["items"][0]["responsible_kind"] == "department"
    rate = {"rating": 5, "comment": "好"}
    early = desk.http.post(
        f"/api/appeals/{made['ticket']}/rating", params={"k": made["access_key"]}, json=rate
    )
    assert early.status_code == 409
    for action, body in (("accept", {}), ("answer", {"reply": "已清理，谢谢"})):
        r = desk.http.post(f"/api/staff/appeals/{appeal_id}/{action}", headers=duty, json=body)
        assert r.status_code == 200, r.text
    view = desk.http.get(f"/api/appeals/{made['ticket']}", params={"k": made["access_key"]}).json()
    assert (view["status"], view["reply"], view["may_rate"]) == ("answered", "已清理，谢谢", True)
    rated = desk.http.post(
        f"/api/appeals/{made['ticket']}/rating", params={"k": made["access_key"]}, json=rate
    )
    assert rated.status_code == 200 and rated.json()["rating"] == 5
    again = desk.http.post(
        f"/api/appeals/{made['ticket']}/rating", params={"k": made["access_key"]}, json=rate
    )
    assert again.status_code == 409
    stranger = desk.http.post(
        f"/api/appeals/{made['ticket']}/rating", params={"k": "nope"}, json=rate
    )
    assert stranger.status_code == 404
    detail = desk.http.get(f"/api/staff/appeals/{appeal_id}", headers=duty).json()
    assert [t["action"] for t in detail["transitions"]] == ["submit", "accept", "answer", "rate"]
    closed = desk.http.post(f"/api/staff/appeals/{appeal_id}/close", headers=duty, json={})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert (
        desk.http.post(f"/api/staff/appeals/{appeal_id}/close", headers=duty, json={}).status_code
        == 409
    )


def test_staff_of_another_compound_get_404_and_engineers_403(desk: Desk) -> None:
    made = desk.submit(files=[("a.jpg", JPEG)]).json()
    own = desk.token(Role.DUTY, desk.place)
    other = desk.token(Role.DUTY, desk.other)
    appeal_id = desk.http.get("/api/staff/appeals", headers=own).json()["items"][0]["id"]
    assert desk.http.get(f"/api/staff/appeals/{appeal_id}/photos/1", headers=own).content == JPEG
    missing_words = desk.http.get("/api/staff/appeals/987654321", headers=other).json()
    for path in (f"/api/staff/appeals/{appeal_id}", f"/api/staff/appeals/{appeal_id}/photos/1"):
        r = desk.http.get(path, headers=other)
        assert r.status_code == 404, r.text
    r = desk.http.get(f"/api/staff/appeals/{appeal_id}", headers=other)
    assert r.json()["detail"].replace(str(appeal_id), "N") == missing_words["detail"].replace(
        "987654321", "N"
    )
    moved = desk.http.post(f"/api/staff/appeals/{appeal_id}/accept", headers=other, json={})
    assert moved.status_code == 404
    assert desk.http.get("/api/staff/appeals", headers=other).json()["total"] == 0
    engineer = desk.token(Role.ENGINEER, desk.place)
    r = desk.http.post(f"/api/staff/appeals/{appeal_id}/accept", headers=engineer, json={})
    assert r.status_code == 403
    assert desk.http.get("/api/staff/appeals").status_code == 401
    assert made["ticket"] not in desk.http.get("/api/staff/appeals", headers=other).text


def test_the_12345_import_over_http(desk: Desk) -> None:
    sup = desk.token(Role.SUPERVISOR, desk.place)
    tag = uuid.uuid4().hex[:8]
    orders = [
        {"order_no": f"{tag}-1", **desk.place.fields(building="b1"), "text": "电梯困人"},
        {"order_no": f"{tag}-2", **desk.other.fields(), "text": "outside my compound"},
    ]
    body = json.dumps(orders, ensure_ascii=False)
    headers = {**sup, "Content-Type": "application/json"}
    first = desk.http.post("/api/staff/appeals/import", headers=headers, content=body)
    assert first.status_code == 200, first.text
    report = first.json()
    assert [c["row"] for c in report["created"]] == [1]
    assert [p["row"] for p in report["problems"]] == [2]
    second = desk.http.post("/api/staff/appeals/import", headers=headers, content=body).json()
    assert (second["created"], [s["row"] for s in second["skipped"]]) == ([], [1])
    where = f"{desk.place.community},{desk.place.compound}"
    csv_body = f"order_no,community,compound,text\n{tag}-3,{where},小区垃圾没人收\n"
    third = desk.http.post(
        "/api/staff/appeals/import", headers={**sup, "Content-Type": "text/csv"}, content=csv_body
    ).json()
    assert [c["row"] for c in third["created"]] == [1]
    duty = desk.token(Role.DUTY, desk.place)
    refused = desk.http.post(
        "/api/staff/appeals/import", headers={**duty, "Content-Type": "text/csv"}, content=csv_body
    )
    assert refused.status_code == 403
