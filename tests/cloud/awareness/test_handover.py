"""Shift handover (交接班) on both stores: alerts seeded across two shifts give exactly
the lists this test computes from its own seed; one row per desk and shift whichever
process runs the step; nothing before the shift time; another compound's user cannot
read a desk's handover (API and console); the config file is strict; the page renders.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.awareness import handover
from cloud.awareness.shifts import (
    AwarenessConfig,
    AwarenessConfigError,
    Desk,
    load_awareness,
    shift_at,
)
from cloud.clock import ManualClock
from cloud.console import mount_console
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from microbrain.site import load_site

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 11, tzinfo=TZ).date()
PREV = datetime(2026, 3, 11, 8, 0, tzinfo=TZ)  # the past shift began at 08:00 …
START = datetime(2026, 3, 11, 20, 0, tzinfo=TZ)  # … and the new one at 20:00
NOW = (START + timedelta(seconds=30)).astimezone(UTC)  # when the step runs
PASSWORD = "correct horse battery"
ACTIVE = ("open", "acknowledged", "dispatched")
DONE = ("done", "verifying", "verified")


def local(hh: int, mm: int = 0, ss: int = 0, days: int = 0) -> datetime:
    d = DAY + timedelta(days=days)
    return datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=TZ)


@dataclass(frozen=True)
class A:
    """One seeded alert and what became of it."""

    name: str
    opened: datetime  # local
    status: str
    severity: int = 2
    compound: str = "c-a"
    deadline: datetime | None = None  # a pending escalation deadline (local)
    escalations: tuple[tuple[str, datetime], ...] = ()
    order: tuple[str, datetime | None] | None = None  # a work order: (status, due_at)


SEED = [
    A("old-open", local(19, days=-1), "open", 3, deadline=local(19, 50)),  # deadline passed
    A("acked", local(9), "acknowledged", 1),
    A("resolved", local(10), "resolved", 3),
    A(
        "whistled",
        local(11),
        "dispatched",
        3,
        escalations=(("escalated", local(11, 30)), ("whistled", local(12))),
        order=("accepted", local(19)),  # due an hour before the shift ends: overdue
    ),
    A(
        "old-dispatched",
        local(10, days=-1),
        "dispatched",
        2,
        escalations=(("escalated", local(7)),),  # before the past shift: not listed
        order=("done", local(9)),  # past due but done: not overdue
    ),
    A("after-start", local(20, 0, 10), "open", 3, deadline=local(21)),  # not new; not due
    A("at-prev", local(8), "closed", 1),  # the past shift's first instant: new
    A("at-start", local(20), "acknowledged", 2),  # the new shift's: not new
    A("b-open", local(13), "open", 2, compound="c-b", deadline=local(14)),
    A(
        "escalated-at-start",
        local(14),
        "open",
        1,
        compound="c-b",
        escalations=(("escalated", local(20)),),  # the new shift's
        order=("created", None),  # no deadline: never overdue
    ),
    A("b-acked", local(15), "acknowledged", 3, compound="c-b", order=("in_progress", local(23))),
]


@dataclass
class World:
    factory: sessionmaker[Session]
    community: str
    other: str
    ids: dict[str, int]  # seed name → alert id
    orders: dict[str, int]  # seed name → work order id
    config: AwarenessConfig


def _seed(session: Session, community: str, seed: list[A]) -> tuple[dict[str, int], dict[str, int]]:
    ids, orders = {}, {}
    for a in seed:
        opened = a.opened.astimezone(UTC)
        row = m.Alert(
            key=f"{community}:{a.name}:{uuid.uuid4().hex[:6]}",
            active=a.status in ACTIVE,
            kind="illegal_parking",
            severity=a.severity,
            status=a.status,
            level="building",
            community=community,
            compound=a.compound,
            building="b1",
            gateway=f"gw-{community}",
            source="cam-0",
            first_ts=opened,
            last_ts=opened,
            opened_at=opened,
            updated_at=opened,
        )
        session.add(row)
        session.flush()
        ids[a.name] = row.id
        if a.deadline is not None:
            session.add(
                m.EscalationDeadline(
                    alert_id=row.id, level="building", due_at=a.deadline.astimezone(UTC)
                )
            )
        for action, at in a.escalations:
            session.add(
                m.AlertTransition(
                    alert_id=row.id,
                    action=action,
                    from_status="open",
                    to_status=a.status,
                    actor="clock",
                    at=at.astimezone(UTC),
                )
            )
        if a.order is not None:
            status, due = a.order
            wo = m.WorkOrder(
                alert_id=row.id,
                department="urban",
                status=status,
                community=community,
                compound=a.compound,
                building="b1",
                reason="dispatch",
                created_at=opened,
                updated_at=opened,
                due_at=due.astimezone(UTC) if due else None,
            )
            session.add(wo)
            session.flush()
            orders[a.name] = wo.id
    return ids, orders


def _config(community: str, **kw: Any) -> AwarenessConfig:
    return AwarenessConfig(
        desks=(
            Desk(id=f"{community}-all", name="社区值班台", community=community),
            Desk(id=f"{community}-b", name="乙小区物业", community=community, compound="c-b"),
        ),
        **kw,
    )


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    community, other = f"h-{uuid.uuid4().hex[:8]}", f"h-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        ids, orders = _seed(s, community, SEED)
        _seed(s, other, SEED)  # the same day elsewhere: never in our desks' lists
    return World(factory, community, other, ids, orders, _config(community))


# --- what the handover must say, from the seed alone --------------------------------


def expected(seed: list[A], compound: str | None) -> dict[str, list[str]]:
    mine = [a for a in seed if compound is None or a.compound == compound]
    now = NOW.astimezone(TZ)
    urgent = sorted(mine, key=lambda a: (-a.severity, a.opened))
    oldest = sorted(mine, key=lambda a: a.opened)
    return {
        "open": [a.name for a in urgent if a.status in ACTIVE],
        "new": [a.name for a in oldest if PREV <= a.opened < START],
        "overdue_alerts": [
            a.name
            for a in urgent
            if a.status == "open" and a.deadline is not None and a.deadline <= now
        ],
        "escalated": [
            a.name
            for a in urgent
            if any(
                act in ("escalated", "whistled") and PREV <= at < START for act, at in a.escalations
            )
        ],
        "acknowledged": [a.name for a in oldest if a.status == "acknowledged"],
        "overdue_work_orders": [
            a.name
            for a in sorted(mine, key=lambda a: a.order[1] if a.order and a.order[1] else now)
            if a.order and a.order[1] is not None and a.order[1] <= now and a.order[0] not in DONE
        ],
    }


def _names(w: World, body: dict[str, Any]) -> dict[str, list[str]]:
    by_alert = {v: k for k, v in w.ids.items()}
    by_order = {v: k for k, v in w.orders.items()}
    return {
        name: [(by_order if name == "overdue_work_orders" else by_alert)[i["id"]] for i in items]
        for name, items in body["lists"].items()
    }


def _rows(w: World) -> list[m.ShiftHandover]:
    with w.factory() as s:
        return list(
            s.scalars(
                select(m.ShiftHandover)
                .where(m.ShiftHandover.community == w.community)
                .order_by(m.ShiftHandover.desk)
            )
        )


def test_the_handover_lists_equal_the_seeds(world: World) -> None:
    done = handover.run(world.factory, NOW, world.config)
    assert sorted(done.made) == sorted(d.id for d in world.config.desks)
    rows = {r.desk: r for r in _rows(world)}
    for desk in world.config.desks:
        row = rows[desk.id]
        assert row.shift_start == START.astimezone(UTC)
        assert row.previous_start == PREV.astimezone(UTC)
        want = expected(SEED, desk.compound)
        got = _names(world, row.body)
        assert got == want, desk.id
        assert row.body["counts"] == {k: len(v) for k, v in want.items()}
    # the seed's own sanity: every list has something, and the boundaries bite
    community = expected(SEED, None)
    assert all(community.values())
    assert community["new"] == [
        "at-prev",
        "acked",
        "resolved",
        "whistled",
        "b-open",
        "escalated-at-start",
        "b-acked",
    ]
    assert "at-start" not in community["new"] and "after-start" in community["open"]
    assert community["escalated"] == ["whistled"]
    assert community["overdue_work_orders"] == ["whistled"]
    assert community["overdue_alerts"] == ["old-open", "b-open"]


def test_lists_are_capped_but_counts_exact(world: World) -> None:
    config = _config(world.community, list_limit=2)
    handover.run(world.factory, NOW, config)
    row = next(r for r in _rows(world) if r.desk == f"{world.community}-all")
    want = expected(SEED, None)
    assert row.body["counts"]["open"] == len(want["open"]) > 2
    assert _names(world, row.body)["open"] == want["open"][:2]


def test_one_row_per_desk_and_shift_whichever_process_runs(world: World, cloud_url: str) -> None:
    engine = make_engine(cloud_url)
    second = session_factory(engine)
    try:
        first = handover.run(world.factory, NOW, world.config)
        again = handover.run(second, NOW + timedelta(seconds=5), world.config)
        assert len(first.made) == 2 and again.made == [] and len(again.present) == 2
        # two processes that both composed before either stored: the constraint decides
        desk = world.config.desks[0]
        shift = shift_at(world.config, NOW)
        with second() as s:
            late = handover.compose(s, desk, shift, NOW)
        assert handover.store(second, late) is False
        assert handover.store(world.factory, late) is False
    finally:
        engine.dispose()
    assert len(_rows(world)) == 2


def test_nothing_before_the_shift_time_and_nothing_stale(world: World) -> None:
    before = (START - timedelta(seconds=1)).astimezone(UTC)
    # 19:59:59 is in the past shift, which began 12 h ago: past the late limit
    out = handover.run(world.factory, before, world.config)
    assert out.made == [] and len(out.skipped) == 2
    assert _rows(world) == []
    out = handover.run(world.factory, START.astimezone(UTC), world.config)
    assert len(out.made) == 2
    assert {r.shift_start for r in _rows(world)} == {START.astimezone(UTC)}
    # the late limit (2 h by default): at 22:00:01 a missing handover is not made
    config = _config(world.community, handover_late_limit=60)
    with transaction(world.factory) as s:
        s.query(m.ShiftHandover).filter(m.ShiftHandover.community == world.community).delete()
    assert handover.run(world.factory, NOW + timedelta(minutes=2), config).made == []


@pytest.mark.parametrize(
    ("at", "start", "previous"),
    [
        (local(7, 59, 59), local(20, days=-1), local(8, days=-1)),
        (local(8), local(8), local(20, days=-1)),
        (local(19, 59), local(8), local(20, days=-1)),
        (local(20), local(20), local(8)),
        (local(0, 30), local(20, days=-1), local(8, days=-1)),
    ],
)
def test_shift_arithmetic(at: datetime, start: datetime, previous: datetime) -> None:
    shift = shift_at(AwarenessConfig(), at.astimezone(UTC))
    assert (shift.start, shift.previous) == (start.astimezone(UTC), previous.astimezone(UTC))


def test_three_shifts_crossing_midnight() -> None:
    config = AwarenessConfig(shifts=(time(0), time(8), time(16)))
    shift = shift_at(config, local(3).astimezone(UTC))
    assert (shift.start, shift.previous) == (
        local(0).astimezone(UTC),
        local(16, days=-1).astimezone(UTC),
    )


# --- the config file ----------------------------------------------------------------


def test_no_file_means_the_defaults() -> None:
    config = load_awareness(None)
    assert config.shifts == (time(8), time(20)) and config.report_at == time(7)
    assert [d.community for d in config.desks] == [None]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("shifts: ['08:00']\nreport_hour: '07:00'\n", "line 2", "Extra inputs"),
        ("shifts: ['8h']\n", "line 1: shifts[0]", "not a time of day"),
        ("shifts: ['08:00', '08:00']\n", "line 1", "listed twice"),
        (
            "desks:\n  - {id: a, name: 甲}\n  - {id: a, name: 乙}\n",
            "line 3: desks[1].id",
            "duplicate desk id",
        ),
        ("desks:\n  - {id: a, name: 甲, compound: x}\n", "line 2: desks[0]", "names its community"),
        (
            "desks:\n  - {id: a, name: 甲, community: nowhere}\n",
            "desks[0].community",
            "no community",
        ),
        ("timezone: Mars/Olympus\n", "line 1", "not a known time zone"),
    ],
)
def test_a_bad_file_names_its_line(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = tmp_path / "awareness.yaml"
    path.write_text(text, encoding="utf-8")
    site = load_site("configs/demo/site.yaml")
    with pytest.raises(AwarenessConfigError) as err:
        load_awareness(path, site)
    message = str(err.value)
    assert str(path) in message and where in message and words in message, message


def test_the_shipped_file_and_unquoted_times(tmp_path: Path) -> None:
    site = load_site("configs/demo/site.yaml")
    assert load_awareness("configs/awareness.yaml", site) == AwarenessConfig(
        desks=(Desk(id="district", name="区指挥中心"),)
    )
    path = tmp_path / "a.yaml"
    path.write_text(
        "shifts: [08:00, 20:30]\nreport_at: 06:15\n"
        "desks:\n  - {id: xy, name: 西苑, community: xiyuan, compound: xiyuan-1}\n",
        encoding="utf-8",
    )
    config = load_awareness(path, site)
    assert config.shifts == (time(8), time(20, 30)) and config.report_at == time(6, 15)


# --- reading them: API scope and the console page -----------------------------------


@dataclass
class Served:
    client: TestClient
    world: World
    tokens: dict[str, dict[str, str]]
    usernames: dict[str, str]


@pytest.fixture
def served(world: World) -> Iterator[Served]:
    handover.run(world.factory, NOW, world.config)
    clock = ManualClock(NOW)
    state = ApiState(settings=Settings(environment="test"), factory=world.factory, clock=clock)
    app = create_api(state)
    mount_console(app, state)
    places = {
        "community": (world.community, None),
        "b": (world.community, "c-b"),
        "a": (world.community, "c-a"),
        "other": (world.other, None),
    }
    tokens, names = {}, {}
    digest = auth.hash_password(PASSWORD)
    with transaction(world.factory) as s:
        for who, (community, compound) in places.items():
            user = m.User(
                username=f"{who}-{uuid.uuid4().hex[:8]}",
                password_hash=digest,
                role="duty",
                community=community,
                compound=compound,
                active=True,
                created_at=NOW,
            )
            s.add(user)
            s.flush()
            names[who] = user.username
            token = auth.issue_token(s, user, now=NOW, ttl_s=3600)
            tokens[who] = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        yield Served(client, world, tokens, names)


def test_the_api_scopes_handovers_by_desk_place(served: Served) -> None:
    w = served.world
    rows = {r.desk: r.id for r in _rows(w)}
    whole, b = rows[f"{w.community}-all"], rows[f"{w.community}-b"]

    def listed(who: str) -> set[int]:
        r = served.client.get("/api/handovers", headers=served.tokens[who])
        assert r.status_code == 200, r.text
        return {h["id"] for h in r.json()}

    assert {whole, b} <= listed("community")
    assert listed("b") == {b}  # the community's desk is above a compound's user
    assert listed("a") == set() and listed("other") == set()
    one = served.client.get(f"/api/handovers/{b}", headers=served.tokens["b"])
    assert one.status_code == 200 and one.json()["desk_name"] == "乙小区物业"
    assert set(one.json()["lists"]) == set(handover.LISTS)
    # hostile: another compound's user, and another community's, get what a missing id gets
    missing = served.client.get("/api/handovers/987654321", headers=served.tokens["a"])
    for who in ("a", "other"):
        r = served.client.get(f"/api/handovers/{b}", headers=served.tokens[who])
        assert r.status_code == 404
        assert r.json()["detail"].replace(str(b), "<id>") == missing.json()["detail"].replace(
            "987654321", "<id>"
        )
    one_desk = served.client.get(
        f"/api/handovers?desk={w.community}-b&limit=1", headers=served.tokens["community"]
    )
    assert [h["id"] for h in one_desk.json()] == [b]


def _log_in(client: TestClient, username: str) -> None:
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_the_page_shows_my_desks_latest_handover(served: Served) -> None:
    w = served.world
    # a later shift's handover: the page shows only each desk's newest
    later = NOW + timedelta(hours=12)
    handover.run(w.factory, later, w.config)
    _log_in(served.client, served.usernames["b"])
    page = served.client.get("/handover")
    assert page.status_code == 200
    html = page.text
    rows = [r for r in _rows(w) if r.desk == f"{w.community}-b"]
    newest = max(rows, key=lambda r: r.shift_start)
    assert f'id="handover-{newest.id}"' in html
    assert all(f'id="handover-{r.id}"' not in html for r in rows if r is not newest)
    assert "乙小区物业" in html and "社区值班台" not in html  # not the community's desk
    assert "交接班" in html and 'href="/handover"' in html and "@media print" in html
    # the c-b desk's open alerts are listed by id
    for name in expected(SEED, "c-b")["open"]:
        assert f'id="open-{w.ids[name]}"' in html
    # another compound's user sees no handover at all
    served.client.cookies.clear()
    _log_in(served.client, served.usernames["a"])
    html = served.client.get("/handover").text
    assert "handover-" not in html.replace('href="/handover"', "")
    assert "暂无交接班记录" in html


def test_counted(world: World) -> None:
    before = handover.HANDOVERS.labels("made")._value.get()
    handover.run(world.factory, NOW, world.config)
    assert handover.HANDOVERS.labels("made")._value.get() == before + 2
    with world.factory() as s:
        n = s.scalar(
            select(func.count())
            .select_from(m.ShiftHandover)
            .where(m.ShiftHandover.community == world.community)
        )
    assert n == 2
