"""The wall (一屏治社区): its summary equals direct counts of the database and the API's
totals, a user scoped to one compound sees only that compound, and in real Chromium at
1920×1080 the page draws its charts without scrollbars, shows the summary's numbers and
follows a new critical alert live."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud import alerts, escalation, liveness, work_orders
from cloud.alerts.lifecycle import ACTIVE
from cloud.console.summary import HOTSPOT_WINDOW, WallSummary, wall_summary
from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot
from tests.cloud.helpers import DEVICES, event, ingest

ACTIVE_STATUSES = [s.value for s in ACTIVE]
BURST = 6


class Store(Protocol):
    """Where a test puts its alerts: the served console, or a bare database."""

    factory: sessionmaker[Session]

    def alert(self, gw: GatewayPath, **kw: Any) -> int: ...


@dataclass
class Database:
    """A migrated database without a server (SQLite and PostgreSQL)."""

    factory: sessionmaker[Session]
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def alert(self, gw: GatewayPath, **kw: Any) -> int:
        n = next(self.seq)
        kw.setdefault("source", f"cam-{n % 3}")
        kw.setdefault("zone", f"zone-{n}")
        ev = event(n, **kw)
        ingest(self.factory, gw, [ev])
        with self.factory() as s:
            alert_id = s.scalars(select(m.EventRow.alert_id).where(m.EventRow.id == ev.id)).one()
        assert alert_id is not None
        return alert_id


@dataclass
class Site:
    """Two compounds of one community, with alerts of several kinds and severities."""

    a: GatewayPath
    b: GatewayPath
    ids: dict[str, int]


def _gateway(console: Store, community: str, compound: str, building: str) -> GatewayPath:
    path = GatewayPath(community, compound, f"gw-{uuid.uuid4().hex[:8]}")
    with transaction(console.factory) as s:
        register_gateway(s, community, compound, path.gateway, building=building, **DEVICES)
    return path


def _seed(console: Store) -> Site:
    community = f"t-{uuid.uuid4().hex[:8]}"
    a = _gateway(console, community, "compound-a", "b1")
    b = _gateway(console, community, "compound-b", "b7")
    ids: dict[str, int] = {}
    # compound a: the fire lane three times (a hotspot), a smoke alarm, an e-bike
    for n in range(3):
        ids[f"park{n}"] = console.alert(a, severity=3, kind="illegal_parking", zone=f"lane-{n}")
    ids["smoke_a"] = console.alert(a, severity=2, kind="smoke_alarm", building="b1")
    ids["ebike"] = console.alert(a, severity=1, kind="ebike_charging")
    # compound b: a critical smoke alarm and two warnings at the fire lane
    ids["smoke_b"] = console.alert(b, severity=3, kind="smoke_alarm", building="b7")
    ids["park_b0"] = console.alert(b, severity=2, kind="illegal_parking", building="b7")
    ids["park_b1"] = console.alert(b, severity=2, kind="illegal_parking", building="b7", zone="z")
    now = datetime.now(UTC)
    with transaction(console.factory) as s:
        if s.get(m.Department, "property") is None:  # PostgreSQL's database is shared
            s.add(m.Department(id="property", name="物业公司", contacts=[]))
        s.flush()
        # escalated by hand: an escalation, and an SLA breach (past the first level)
        escalation.escalate_by_hand(s, ids["park0"], actor="duty", now=now)
        # answered two hours late: a warning's first deadline is 30 min (an SLA breach)
        opened = s.get_one(m.Alert, ids["park_b0"]).opened_at
        alerts.acknowledge(s, ids["park_b0"], actor="duty", now=opened + timedelta(hours=2))
        # answered at once: no breach
        alerts.acknowledge(s, ids["smoke_a"], actor="duty", now=now)
        work_orders.dispatch(s, ids["park1"], actor="duty", now=now, department="property")
        work_orders.dispatch(s, ids["smoke_b"], actor="duty", now=now, department="property")
        alerts.resolve(s, ids["ebike"], actor="duty", now=now)  # no longer open
        # one gateway heard from now, reporting one camera offline; the other silent
        s.execute(
            update(m.Gateway)
            .where(m.Gateway.id == a.gateway)
            .values(state="online", last_seen=now, health={"cameras": {"cam-2": "offline"}})
        )
        s.execute(
            update(m.Device)
            .where(m.Device.gateway == a.gateway, m.Device.id.in_(["cam-0", "h1"]))
            .values(last_seen=now)
        )
        # compound b's devices last heard of an hour ago: past 3 heartbeats of 30 s
        s.execute(
            update(m.Device)
            .where(m.Device.gateway == b.gateway)
            .values(last_seen=now - timedelta(hours=1))
        )
    return Site(a, b, ids)


BUSY = (  # (compound, name, building, [(kind, severity, how many)])
    (
        "compound-c",
        "阳光花园",
        "b3",
        [("ebike_entering_building", 2, 3), ("unleashed_dog", 1, 2)],
    ),
    ("compound-d", "锦绣家园", "b7", [("ebike_in_elevator", 3, 2), ("fire_door_open", 2, 2)]),
    ("compound-e", "和平里小区", "b1", [("water_level_high", 2, 1), ("elevator_fault", 3, 1)]),
    ("compound-f", "滨江苑", "b12", [("hydrant_pressure_low", 1, 2), ("illegal_parking", 2, 1)]),
)


def _busy(console: Store, community: str) -> None:
    """More compounds, kinds and departments, so that the screenshot shows a wall in use."""
    for compound, name, building, kinds in BUSY:
        gw = _gateway(console, community, compound, building)
        with transaction(console.factory) as s:
            s.execute(
                update(m.Compound)
                .where(m.Compound.community == community, m.Compound.id == compound)
                .values(name=name)
            )
            s.execute(
                update(m.Building)
                .where(m.Building.community == community, m.Building.compound == compound)
                .values(name=f"{building[1:]}号楼")
            )
        ids = [
            console.alert(gw, kind=kind, severity=sev, building=building, zone=f"z{n}")
            for kind, sev, times in kinds
            for n in range(times)
        ]
        now = datetime.now(UTC)
        with transaction(console.factory) as s:
            for dept, dept_name in (("city", "城管执法"), ("fire", "消防救援")):
                if s.get(m.Department, dept) is None:
                    s.add(m.Department(id=dept, name=dept_name, contacts=[]))
            s.flush()
            work_orders.dispatch(s, ids[0], actor="duty", now=now, department="city")
            order = work_orders.dispatch(s, ids[-1], actor="duty", now=now, department="fire")
            work_orders.move(s, order.id, "accept", actor="fire", now=now)
    # after the gateways: registering one names its community after the id again
    with transaction(console.factory) as s:
        s.execute(update(m.Community).where(m.Community.id == community).values(name="幸福里社区"))


def _user(console: Store, place: GatewayPath, level: str) -> m.User:
    user = m.User(
        username=f"duty-{uuid.uuid4().hex[:8]}",
        password_hash="-",
        role="duty",
        community=place.community,
        compound=place.compound if level == "compound" else None,
        active=True,
        created_at=datetime.now(UTC),
    )
    with transaction(console.factory) as s:
        s.add(user)
    return user


def _direct(console: Store, compounds: set[str], community: str, now: datetime) -> dict[str, Any]:
    """The same numbers counted the plain way: every row read, counted in Python."""
    with console.factory() as s:
        rows = [
            a
            for a in s.scalars(select(m.Alert).where(m.Alert.community == community))
            if a.compound in compounds
        ]
        ids = {a.id for a in rows}
        escalated = [
            t
            for t in s.scalars(
                select(m.AlertTransition).where(m.AlertTransition.action == "escalated")
            )
            if t.alert_id in ids and t.at >= now - timedelta(hours=24)
        ]
        orders = [
            w
            for w in s.scalars(select(m.WorkOrder).where(m.WorkOrder.community == community))
            if w.compound in compounds and w.status != "verified"
        ]
        gateways = [
            g
            for g in s.scalars(select(m.Gateway).where(m.Gateway.community == community))
            if g.compound in compounds
        ]
        devices = [d for d in s.scalars(select(m.Device)) if d.gateway in {g.id for g in gateways}]
    by_id = {g.id: g for g in gateways}
    recent = [a for a in rows if a.opened_at >= now - timedelta(hours=24)]
    active = [a for a in rows if a.status in ACTIVE_STATUSES]
    week = Counter(
        (a.kind, a.compound, a.building) for a in rows if a.opened_at >= now - HOTSPOT_WINDOW
    )
    return {
        "opened": Counter((a.kind, a.severity) for a in recent),
        "open_by_severity": Counter(a.severity for a in active),
        "open_by_compound": Counter(a.compound for a in active),
        "escalations": len(escalated),
        "orders": Counter((w.department, w.status) for w in orders),
        "hotspots": {k: n for k, n in week.items() if n > 1},
        "gateways": (
            sum(g.state == "online" and _seen(g.last_seen, g.heartbeat_s, now) for g in gateways),
            len(gateways),
        ),
        "devices": (
            sum(liveness.device_alive(d, by_id[d.gateway], now) for d in devices),
            len(devices),
        ),
    }


def _seen(last_seen: datetime | None, heartbeat_s: float, now: datetime) -> bool:
    return last_seen is not None and now - last_seen <= timedelta(seconds=3 * heartbeat_s)


def _flatten(s: WallSummary) -> dict[str, Any]:
    return {
        "opened": Counter(
            {(k, sev): n for k, by in s.opened_by_kind.items() for sev, n in by.items() if n}
        ),
        "open_by_severity": Counter({k: n for k, n in s.open_by_severity.items() if n}),
        "open_by_compound": Counter({p.compound: p.count for p in s.open_by_compound}),
        "escalations": s.escalations,
        "orders": Counter(
            {(d.department, st): n for d in s.work_orders for st, n in d.by_status.items()}
        ),
        "hotspots": {(h.kind, h.compound, h.building): h.count for h in s.hotspots},
        "gateways": (s.gateways_online, s.gateways_total),
        "devices": (s.devices_online, s.devices_total),
    }


@pytest.mark.parametrize("level", ["community", "compound"])
def test_the_summary_equals_direct_counts(factory: sessionmaker[Session], level: str) -> None:
    """On SQLite and PostgreSQL (each has its own time arithmetic in SQL)."""
    db = Database(factory)
    site = _seed(db)
    user = _user(db, site.a, level)
    now = datetime.now(UTC)
    with factory() as s:
        summary = wall_summary(s, user, now)
    compounds = {"compound-a", "compound-b"} if level == "community" else {"compound-a"}
    expected = _direct(db, compounds, site.a.community, now)
    assert _flatten(summary) == expected
    # the seed's own story, so that a summary and a count that are both empty cannot pass
    if level == "community":
        assert summary.open_by_severity == {3: 4, 2: 3, 1: 0}
        assert summary.sla_breaches == 2  # escalated park0, late park_b0
        assert summary.escalations == 1
        assert [p.compound for p in summary.open_by_compound] == ["compound-a", "compound-b"]
    else:
        assert summary.open_by_severity == {3: 3, 2: 1, 1: 0}
        assert summary.sla_breaches == 1
        assert {p.compound for p in summary.open_by_compound} == {"compound-a"}
        assert all(h.compound == "compound-a" for h in summary.hotspots)
    assert summary.hotspots[0].kind == "illegal_parking"
    assert summary.hotspots[0].count == 3
    assert summary.gateways_online == 1
    # compound a's four devices but its offline camera, none behind compound b's silent gateway
    assert (summary.devices_online, summary.devices_total) == (
        (3, 8) if level == "community" else (3, 4)
    )
    # the JSON form says the same
    body = summary.to_dict()
    assert body["open_by_severity"] == {str(k): v for k, v in summary.open_by_severity.items()}
    assert body["open_total"] == sum(summary.open_by_severity.values())


def _api_total(client: httpx.Client, headers: dict[str, str], **params: Any) -> int:
    r = client.get("/api/alerts", params={"limit": 1, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _tile(page: Any, field: str) -> str:
    return str(page.locator(f'[data-field="{field}"]').first.inner_text()).strip()


def test_the_wall_in_chromium_matches_the_api_and_follows_a_new_alert(
    console: Console, browser: Any
) -> None:
    site = _seed(console)
    _busy(console, site.a.community)
    name = console.user("duty", site.a, level="community")
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, console, name, next_path="/wall")
        page.wait_for_selector("body[data-loads]")
        assert "一屏治社区" in page.title()
        assert "幸福里社区" in page.locator(".wall-sub").inner_text()  # names, not ids
        summary = page.request.get(f"{console.url}/console/wall.json").json()

        # the dashboard's counts are the API's
        with httpx.Client(base_url=console.url, timeout=15) as client:
            r = client.post("/api/auth/token", json={"username": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
            at_least = {
                sev: _api_total(client, bearer, status=ACTIVE_STATUSES, min_severity=sev)
                for sev in (1, 2, 3)
            }
            exactly = {1: at_least[1] - at_least[2], 2: at_least[2] - at_least[3], 3: at_least[3]}
            assert summary["open_by_severity"] == {str(k): v for k, v in exactly.items()}
            assert summary["open_total"] == at_least[1]
            since = (datetime.fromisoformat(summary["at"]) - timedelta(hours=24)).isoformat()
            assert sum(summary["opened_by_severity"].values()) == _api_total(
                client, bearer, since=since
            )
        assert summary["open_total"] > 0

        # the tiles show the JSON's numbers
        assert _tile(page, "open_critical") == str(summary["open_by_severity"]["3"])
        assert _tile(page, "open_total") == str(summary["open_total"])
        assert _tile(page, "escalations") == str(summary["escalations"])
        assert _tile(page, "sla_breaches") == str(summary["sla_breaches"])
        share = round(summary["availability"] * 1000) / 10
        assert _tile(page, "availability") == f"{share:g}%"
        assert "紧急" in page.locator("#tile-open-critical").inner_text()  # text beside colour

        # real charts, drawn, and nothing scrolls at 1920×1080
        for chart in ("chart-kind", "chart-open", "chart-wo"):
            assert page.evaluate(
                f"""() => {{ const el = document.getElementById('{chart}');
                    return !!echarts.getInstanceByDom(el) && !!el.querySelector('canvas'); }}"""
            ), chart
        assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.locator("#list-hot li").count() >= 1
        assert page.locator("#list-compound li").count() == 2 + len(BUSY)
        page.wait_for_selector("body[data-live=open]")
        page.wait_for_function("document.fonts.status === 'loaded'")
        page.locator("#chart-open[data-drawn]").wait_for(state="attached")
        page.locator("#chart-kind[data-drawn]").wait_for(state="attached")
        screenshot(page, "wall")

        # a new critical alert moves the tile without a reload
        page.evaluate("window.__sameWall = true")
        critical = summary["open_by_severity"]["3"]
        console.alert(site.b, severity=3, kind="fire_door_open", building="b7")
        page.wait_for_function(
            "n => document.querySelector('[data-field=open_critical]').textContent.trim() === n",
            arg=str(critical + 1),
        )
        assert page.evaluate("window.__sameWall === true")  # the same page: not reloaded

        # a burst of changes, each its own event on the stream, is one reload per 2 s
        counts = "() => [+document.body.dataset.loads, +(document.body.dataset.changes || 0)]"
        loads, changes = page.evaluate(counts)
        started = time.monotonic()
        for n in range(BURST):
            console.alert(site.b, severity=2, kind="fire_door_open", building="b7", zone=f"d{n}")
            page.wait_for_function(
                "n => +(document.body.dataset.changes || 0) > n", arg=changes + n
            )
        elapsed = time.monotonic() - started
        page.wait_for_function(
            "n => document.querySelector('[data-field=open_total]').textContent.trim() === n",
            arg=str(summary["open_total"] + 1 + BURST),
        )
        reloads = page.evaluate(counts)[0] - loads
        assert 1 <= reloads <= 2 + elapsed // 2, (reloads, elapsed)
    finally:
        context.close()


def test_the_summary_needs_a_login(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=15) as client:
        for path in ("/console/wall.json", "/wall"):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303
            assert r.headers["location"].startswith("/login?next=")
