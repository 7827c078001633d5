"""Appeals' services on both stores: intake (place, classification, routing, deadline,
link to a live camera alert made through the real ingest), the per-contact rate limit,
deadline escalation, the lifecycle, the reporter's access, rating, and the 12345 import."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.appeals import access, hotline, lifecycle, photos, routing, tokens
from cloud.appeals.config import DEFAULT_DEADLINE_HOURS, AppealSettings
from cloud.appeals.intake import AppealIn, Throttled, make, submit
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Conflict, Invalid, NotFound
from cloud.permissions import Role
from microbrain.protocol import Severity
from tests.cloud.appeals.conftest import (
    JPEG,
    PNG,
    SECRET,
    Place,
    make_place,
    t0,
    unique_phone,
)
from tests.cloud.helpers import event, ingest

PHONE = "13812345678"


def _submit(
    factory: sessionmaker[Session],
    settings: AppealSettings,
    data: AppealIn,
    clock: ManualClock,
    shots: list[photos.PhotoIn] | None = None,
) -> tuple[int, str, str | None]:
    with transaction(factory) as s:
        taken = submit(
            s,
            data,
            shots or [],
            settings=settings,
            photo_root=settings.photo_root(Path("unused")),
            secret=SECRET,
            now=clock(),
        )
        return taken.appeal.id, taken.appeal.ticket, taken.access_key


def _get(factory: sessionmaker[Session], appeal_id: int) -> m.Appeal:
    with factory() as s:
        appeal = s.get(m.Appeal, appeal_id)
        assert appeal is not None
        s.expunge(appeal)
        return appeal


# --- routing ---------------------------------------------------------------------------

B = m.Building  # rows not stored: choose() looks only at what it is given


def _building(category: str = "residential_highrise", leader: bool = True) -> m.Building:
    return B(id="b1", category=category, leader={"name": "吴阿姨"} if leader else None)


@pytest.mark.parametrize(
    ("category", "hint", "building", "expected"),
    [
        # building-level matters in a residential building with a leader: the leader
        ("sanitation", "property", _building(), ("building_leader", "b1")),
        ("noise", "urban-management", _building(), ("building_leader", "b1")),
        ("pets", "police", _building(), ("building_leader", "b1")),
        # ... without a leader, or not residential, or no building: the usual desk
        ("pets", "police", _building(leader=False), ("department", "police")),
        ("pets", "police", _building("commercial"), ("department", "police")),
        ("pets", "police", None, ("department", "police")),
        ("sanitation", "property", _building(leader=False), ("property", "c1")),
        # property matters stay with the property company, even in a leader's building
        ("repairs", "property", _building(), ("property", "c1")),
        ("parking", "property", None, ("property", "c1")),
        # departments the site has; one it lacks falls back to the property company
        ("fire-safety", "fire", _building(), ("department", "fire")),
        ("elevator", "elevator", _building(), ("department", "elevator")),
        ("noise", "urban-management", None, ("property", "c1")),
        ("other", None, None, ("property", "c1")),
    ],
)
def test_the_routing_table(
    category: str, hint: str | None, building: m.Building | None, expected: tuple[str, str]
) -> None:
    party = routing.choose(
        category,
        hint,
        compound="c1",
        building=building,
        departments=frozenset({"fire", "elevator", "police"}),
    )
    assert (party.kind, party.id) == expected


def test_intake_classifies_routes_and_sets_the_deadline(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    cases = [
        # (building, text, chosen) → (category, source, party)
        ("b1", "楼道里有人飞线充电，电线从窗户拉下来", None, ("fire-safety", "text", "department")),
        ("b1", "楼上每天晚上装修噪音太大", None, ("noise", "text", "building_leader")),
        ("b2", "楼上每天晚上装修噪音太大", None, ("noise", "text", "property")),
        ("b1", "电梯困人了，快来", None, ("elevator", "text", "department")),
        # the resident's own choice wins over the text
        ("b1", "电梯困人了，快来", "repairs", ("repairs", "resident", "property")),
        (None, "你好", None, ("other", "fallback", "property")),
    ]
    for building, text, chosen, (category, source, kind) in cases:
        data = AppealIn(**place.fields(building=building, text=text, category=chosen, phone=PHONE))
        appeal_id, ticket, key = _submit(factory, settings, data, clock)
        appeal = _get(factory, appeal_id)
        assert (appeal.category, appeal.category_source, appeal.responsible_kind) == (
            category,
            source,
            kind,
        ), text
        assert appeal.due_at == t0() + timedelta(hours=DEFAULT_DEADLINE_HOURS[category])
        assert tokens.TICKET.match(ticket) and key and appeal.access_sha256 == tokens.digest(key)
        assert appeal.contact == PHONE and appeal.contact_sha256 != PHONE
        assert appeal.status == "submitted"
    fire = _get(
        factory,
        _submit(
            factory,
            settings,
            AppealIn(**place.fields(building="b1", text="飞线充电", phone="138-1234-0000")),
            clock,
        )[0],
    )
    assert fire.matched == ["飞线充电"] and fire.due_at - fire.created_at == timedelta(hours=2)


def test_a_deadline_override_from_the_settings(
    factory: sessionmaker[Session], place: Place, tmp_path: Path
) -> None:
    cfg = AppealSettings(photo_dir=tmp_path, deadline_hours={"noise": 6})
    data = AppealIn(**place.fields(text="装修噪音", phone=unique_phone()))
    appeal_id, _, _ = _submit(factory, cfg, data, ManualClock(t0()))
    assert _get(factory, appeal_id).due_at == t0() + timedelta(hours=6)


def test_the_place_must_exist(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    for fields, words in (
        ({"community": place.community, "compound": "nowhere"}, "compound:"),
        ({"community": "nowhere", "compound": place.compound}, "compound:"),
        (place.fields(building="b9"), "building:"),
    ):
        with pytest.raises(Invalid, match=words):
            _submit(factory, settings, AppealIn(**fields, text="垃圾没人收", phone=PHONE), clock)
    with pytest.raises(Invalid, match="phone:"):
        _submit(factory, settings, AppealIn(**place.fields(text="垃圾", phone="12345")), clock)
    with pytest.raises(Invalid, match="category:"):
        _submit(
            factory,
            settings,
            AppealIn(**place.fields(text="垃圾", phone=PHONE, category="nonsense")),
            clock,
        )


def test_an_appeal_at_the_place_of_a_live_camera_alert_is_linked_to_it(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    result = ingest(
        factory,
        place.gw,
        [event(1, kind="ebike_charging", severity=Severity.CRITICAL, building="b1", zone="z1")],
    )
    (alert_id,) = result.alerts
    linked, _, _ = _submit(
        factory,
        settings,
        AppealIn(**place.fields(building="b1", text="一楼有人飞线充电", phone=PHONE)),
        clock,
    )
    assert _get(factory, linked).alert_id == alert_id
    # another kind, or another building, or another compound: not linked
    for data in (
        AppealIn(**place.fields(building="b1", text="垃圾堆了三天没人清", phone=PHONE)),
        AppealIn(**place.fields(building="b2", text="有人飞线充电", phone=PHONE)),
    ):
        assert _get(factory, _submit(factory, settings, data, clock)[0]).alert_id is None
    elsewhere = make_place(factory)
    other = AppealIn(**elsewhere.fields(building="b1", text="有人飞线充电", phone=PHONE))
    assert _get(factory, _submit(factory, settings, other, clock)[0]).alert_id is None
    # the parking camera's alert (the helper's default kind) links a parking appeal
    parked = ingest(factory, place.gw, [event(2, zone="fire-lane-2")])
    (parking_alert,) = parked.alerts
    data = AppealIn(
        **place.fields(
            building="b1", text="消防通道被车堵了，车一直停在那", phone=PHONE, category="parking"
        )
    )
    assert _get(factory, _submit(factory, settings, data, clock)[0]).alert_id == parking_alert
    with factory() as s:
        log = access.timeline(s, linked)
        assert log[0].action == "submit" and f"linked to alert {alert_id}" in (log[0].note or "")


def test_the_per_contact_rate_limit_counts_in_the_database_and_ends_with_its_window(
    factory: sessionmaker[Session], place: Place, tmp_path: Path
) -> None:
    cfg = AppealSettings(photo_dir=tmp_path, max_per_contact=3, contact_window_s=600)
    clock = ManualClock(t0())
    phone = unique_phone()
    data = AppealIn(**place.fields(text="垃圾没人收", phone=phone))
    for _ in range(3):
        _submit(factory, cfg, data, clock)
    clock.advance(seconds=60)
    with pytest.raises(Throttled) as refused:
        _submit(factory, cfg, data, clock)
    assert refused.value.limited.retry_after_s == 540
    # the same phone written another way is the same contact; another phone is not
    with pytest.raises(Throttled):
        _submit(
            factory,
            cfg,
            AppealIn(**place.fields(text="垃圾", phone=f"+86 {phone[:3]} {phone[3:]}")),
            clock,
        )
    _submit(factory, cfg, AppealIn(**place.fields(text="垃圾", phone=unique_phone())), clock)
    # an invalid appeal is not counted against anyone, a refused one not either
    clock.advance(seconds=540)
    _submit(factory, cfg, data, clock)  # the window ended: counted afresh
    with factory() as s:
        row = s.get(m.AppealIntakeCount, tokens.contact_key(SECRET, phone))
        assert row is not None and row.count == 1 and row.first_at == clock()


def test_photos_are_checked_and_kept(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    data = AppealIn(**place.fields(text="垃圾没人收", phone=PHONE))
    shots = [photos.PhotoIn(JPEG, "a.jpg"), photos.PhotoIn(PNG, "b.png")]
    appeal_id, ticket, _ = _submit(factory, settings, data, clock, shots)
    root = settings.photo_root(Path("unused"))
    with factory() as s:
        rows = s.query(m.AppealPhoto).filter_by(appeal_id=appeal_id).order_by(m.AppealPhoto.n).all()
        assert [(r.n, r.content_type, r.bytes) for r in rows] == [
            (1, "image/jpeg", len(JPEG)),
            (2, "image/png", len(PNG)),
        ]
        assert (root / rows[0].path).read_bytes() == JPEG
        assert rows[1].path == f"{photos.folder(ticket)}/2.png"
    refused = [
        ([photos.PhotoIn(b"<html><script>", "x.jpg")], photos.PhotoWrongType, "text/html"),
        ([photos.PhotoIn(b"GIF89a" + bytes(20), "x.gif")], photos.PhotoWrongType, "image/gif"),
        ([photos.PhotoIn(JPEG + bytes(70_000), "big.jpg")], photos.PhotoTooLarge, "big.jpg"),
        ([photos.PhotoIn(JPEG)] * 4, Invalid, "at most 3"),
    ]
    before = len(list(root.rglob("*.*")))
    for shots, error, words in refused:
        with pytest.raises(error, match=words):
            _submit(factory, settings, data, clock, shots)
    assert len(list(root.rglob("*.*"))) == before  # nothing kept of a refused appeal


def test_lifecycle_moves_escalation_and_rating(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    data = AppealIn(**place.fields(building="b1", text="电梯坏了", phone=PHONE))
    appeal_id, ticket, key = _submit(factory, settings, data, clock)
    later_id, _, _ = _submit(
        factory, settings, AppealIn(**place.fields(text="绿化带没人修剪", phone=PHONE)), clock
    )
    # elevator: 30 min; at 29 nothing is due, at 31 one is, escalated once however often
    # the step runs (two schedulers); on PostgreSQL other tests' appeals are there too
    ours = {appeal_id, later_id}
    clock.advance(minutes=29)
    with transaction(factory) as s:
        assert ours.isdisjoint(lifecycle.escalate_overdue(s, now=clock()))
    clock.advance(minutes=2)
    with transaction(factory) as s:
        assert ours & set(lifecycle.escalate_overdue(s, now=clock())) == {appeal_id}
    with transaction(factory) as s:
        assert ours.isdisjoint(lifecycle.escalate_overdue(s, now=clock.advance(hours=1)))
    assert _get(factory, appeal_id).escalated_at == t0() + timedelta(minutes=31)
    assert _get(factory, later_id).escalated_at is None  # greening: 72 h
    # the rating waits for the answer
    with transaction(factory) as s:
        appeal = access.for_reporter(s, ticket, key=key, secret=SECRET)
        with pytest.raises(Conflict, match="once answered"):
            access.rate(s, appeal, 5, None, now=clock())
    with transaction(factory) as s, pytest.raises(Conflict, match="close needs it answered"):
        lifecycle.move(s, appeal_id, "close", lifecycle.MoveIn(), actor="duty", now=clock())
    with transaction(factory) as s:
        lifecycle.move(s, appeal_id, "accept", lifecycle.MoveIn(), actor="duty", now=clock())
    with transaction(factory) as s, pytest.raises(Invalid, match="reply"):
        lifecycle.move(s, appeal_id, "answer", lifecycle.MoveIn(), actor="duty", now=clock())
    with transaction(factory) as s:
        lifecycle.move(
            s, appeal_id, "answer", lifecycle.MoveIn(reply="已修好"), actor="duty", now=clock()
        )
    with transaction(factory) as s:
        appeal = access.for_reporter(s, ticket, phone="138 1234 5678", secret=SECRET)
        access.rate(s, appeal, 4, "快", now=clock())
    with transaction(factory) as s:
        appeal = access.for_reporter(s, ticket, key=key, secret=SECRET)
        with pytest.raises(Conflict, match="rated already"):
            access.rate(s, appeal, 1, None, now=clock())
    done = _get(factory, appeal_id)
    assert (done.status, done.reply, done.replied_by, done.rating) == (
        "answered",
        "已修好",
        "duty",
        4,
    )
    with factory() as s:
        actions = [(t.action, t.to_status) for t in access.timeline(s, appeal_id)]
    assert actions == [
        ("submit", "submitted"),
        ("escalate", "submitted"),
        ("accept", "accepted"),
        ("answer", "answered"),
        ("rate", "answered"),
    ]
    # an answered appeal is not escalated any more; reassigning moves the party
    with transaction(factory) as s:
        lifecycle.move(
            s,
            later_id,
            "reassign",
            lifecycle.MoveIn(party_kind="department", party_id="fire"),
            actor="duty",
            now=clock(),
        )
        with pytest.raises(Invalid, match="party_id"):
            lifecycle.move(
                s,
                later_id,
                "reassign",
                lifecycle.MoveIn(party_kind="department", party_id="nobody"),
                actor="duty",
                now=clock(),
            )
    moved = _get(factory, later_id)
    assert (moved.responsible_kind, moved.responsible_id, moved.status) == (
        "department",
        "fire",
        "submitted",
    )


def test_only_the_reporter_opens_an_appeal(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    clock = ManualClock(t0())
    data = AppealIn(**place.fields(text="垃圾没人收", phone=PHONE))
    _, mine, key = _submit(factory, settings, data, clock)
    _, theirs, their_key = _submit(
        factory, settings, AppealIn(**place.fields(text="噪音", phone="13900001111")), clock
    )
    assert key and their_key
    with factory() as s:
        assert access.for_reporter(s, mine, key=key, secret=SECRET).ticket == mine
        assert access.for_reporter(s, mine, phone=PHONE, secret=SECRET).ticket == mine
        refusals: list[tuple[str, dict[str, str]]] = [
            (theirs, {"key": key}),  # my key on their ticket
            (theirs, {"phone": PHONE}),  # my phone on their ticket
            (mine, {"key": their_key}),
            (mine, {"key": key[:-1] + ("A" if key[-1] != "A" else "B")}),
            (mine, {}),
            (mine, {"phone": "not a phone"}),
            ("A260302-00000000", {"key": key}),  # a ticket that does not exist
            ("../../etc/passwd", {"key": key}),
        ]
        for ticket, creds in refusals:
            with pytest.raises(NotFound) as err:
                access.for_reporter(
                    s, ticket, key=creds.get("key"), phone=creds.get("phone"), secret=SECRET
                )
            assert str(err.value) == f"appeal {ticket} does not exist"


def test_staff_of_another_area_do_not_find_the_appeal(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    appeal_id, _, _ = _submit(
        factory, settings, AppealIn(**place.fields(text="垃圾", phone=PHONE)), ManualClock(t0())
    )
    own = m.User(username="own", role=Role.DUTY, community=place.community, compound=place.compound)
    other = m.User(username="other", role=Role.DUTY, community=place.community, compound="c9")
    with factory() as s:
        assert access.scoped(s, own, appeal_id).id == appeal_id
        with pytest.raises(NotFound) as err:
            access.scoped(s, other, appeal_id)
        assert str(err.value) == f"appeal {appeal_id} does not exist"


def test_the_12345_import_json_and_csv_is_idempotent_and_names_bad_rows(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    user = m.User(username="sup", role=Role.SUPERVISOR, community=place.community)
    tag = place.community
    orders = [
        {
            "order_no": f"{tag}-1",
            **place.fields(building="b1"),
            "text": "楼道飞线充电",
            "phone": "13800000001",
            "received_at": "2026-03-01 09:00:00",
        },
        {"order_no": f"{tag}-2", **place.fields(), "text": "小区里狗不拴绳", "category": "pets"},
        {"order_no": f"{tag}-3", **place.fields(building="b9"), "text": "垃圾"},
        {"order_no": f"{tag}-4", "community": "elsewhere", "compound": "c1", "text": "垃圾"},
        {**place.fields(), "text": "no order number"},
        "not an object",
    ]
    rows = hotline.parse(json.dumps(orders, ensure_ascii=False).encode(), "application/json")
    with transaction(factory) as s:
        report = hotline.import_orders(s, user, rows, settings=settings, secret=SECRET, now=t0())
    assert [c["row"] for c in report.created] == [1, 2]
    assert [(p.row, p.error.split(":")[0]) for p in report.problems] == [
        (3, "building"),
        (4, "compound"),
        (5, "order_no"),
        (6, "an order is an object of fields"),
    ]
    with factory() as s:
        first = s.query(m.Appeal).filter_by(external_id=f"12345:{tag}-1").one()
        assert (first.origin, first.category, first.access_sha256) == (
            "hotline",
            "fire-safety",
            None,
        )
        assert first.created_at == t0().replace(day=1, hour=1)  # 09:00 Beijing
    # again, as CSV with one more row: the two known are skipped, the new one made
    csv_text = (
        "order_no,community,compound,building,text,category,phone,received_at\n"
        f"{tag}-1,{place.community},{place.compound},b1,楼道飞线充电,,,\n"
        f"{tag}-2,{place.community},{place.compound},,小区里狗不拴绳,pets,,\n"
        f"{tag}-5,{place.community},{place.compound},b2,楼上漏水到我家,,13800000005,\n"
        f"{tag}-6,{place.community},{place.compound},,,,,\n"
    )
    rows = hotline.parse(csv_text.encode(), "text/csv")
    with transaction(factory) as s:
        again = hotline.import_orders(s, user, rows, settings=settings, secret=SECRET, now=t0())
    assert [(r["row"], r["order_no"]) for r in again.skipped] == [(1, f"{tag}-1"), (2, f"{tag}-2")]
    assert [c["row"] for c in again.created] == [3]
    assert [(p.row, p.error) for p in again.problems] == [(4, "text: required")]
    with factory() as s:
        assert s.query(m.Appeal).filter(m.Appeal.external_id.like(f"12345:{tag}-%")).count() == 3
    with pytest.raises(Invalid, match="lacks"):
        hotline.parse(b"a,b\n1,2\n", "text/csv")
    with pytest.raises(Invalid, match="list"):
        hotline.parse(b'{"order_no": 1}', "application/json")


def test_make_keeps_the_resident_choice_even_against_the_text(
    factory: sessionmaker[Session], place: Place, settings: AppealSettings
) -> None:
    with transaction(factory) as s:
        appeal, key = make(
            s,
            AppealIn(**place.fields(text="飞线充电", category="greening", phone=PHONE)),
            settings=settings,
            secret=SECRET,
            now=t0(),
        )
        assert (appeal.category, appeal.category_source, key is not None) == (
            "greening",
            "resident",
            True,
        )
