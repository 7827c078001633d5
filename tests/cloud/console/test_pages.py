"""The console's other pages on the served app: my open items, the tree, device health,
the work-orders board and dead letters — each scoped as the API is; the tree, health and
board also in real Chromium (with their screenshots)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, func, select

from cloud import work_orders
from cloud.alerts import service
from cloud.console.session import COOKIE, CSRF_HEADER, csrf_for
from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.console.conftest import PASSWORD, Console, log_in, screenshot
from tests.cloud.helpers import DEVICES


@contextmanager
def signed_in(console: Console, username: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """An HTTP client logged in through the console's login form, sending the CSRF
    header htmx would send."""
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.post("/login", data={"username": username, "password": password, "next": "/"})
        assert r.status_code == 303, r.text
        client.headers[CSRF_HEADER] = csrf_for(client.cookies[COOKIE])
        yield client


def sibling(console: Console, gw: GatewayPath, compound: str) -> GatewayPath:
    """Another gateway in ``gw``'s community, in ``compound`` (building b2)."""
    path = GatewayPath(gw.community, compound, f"{gw.gateway}-{compound}")
    with transaction(console.factory) as s:
        register_gateway(s, path.community, compound, path.gateway, building="b2", **DEVICES)
    return path


def set_gateway(console: Console, gateway: str, *, online: bool, **health: Any) -> None:
    now = console.state.clock()
    with transaction(console.factory) as s:
        gw = s.get_one(m.Gateway, gateway)
        gw.state = "online" if online else "offline"
        gw.last_seen = now if online else now - timedelta(hours=2)
        gw.health = {"cpu_percent": 10, "memory_mb": 100, "disk_free_mb": 1000, **health}


# --- my open items ---------------------------------------------------------------------


def test_mine_lists_only_what_i_acknowledged_and_is_still_open(console: Console) -> None:
    gw = console.gateway()
    me, other = console.user("duty", gw), console.user("duty", gw)
    first, second, resolved, theirs, untouched = (
        console.alert(gw, severity=s) for s in (2, 3, 1, 3, 2)
    )
    with signed_in(console, me) as client:
        for alert_id in (first, second, resolved):
            assert client.post(f"/console/alerts/{alert_id}/acknowledge").status_code == 200
    with signed_in(console, other) as client:
        assert client.post(f"/console/alerts/{theirs}/acknowledge").status_code == 200
    with transaction(console.factory) as s:
        service.resolve(s, resolved, actor=other, now=console.state.clock())

    with signed_in(console, me) as client:
        page = client.get("/mine").text
    listed = [int(n) for n in re.findall(r'id="mine-(\d+)"', page)]
    assert listed == [first, second]  # oldest acknowledgement first
    assert f'href="/alerts/{first}"' in page
    assert "0m" in page  # the age since acknowledgement
    assert untouched not in listed and theirs not in listed


# --- tree -------------------------------------------------------------------------------


def _tree_counts(html: str) -> dict[str, dict[str, int]]:
    """Per data-path: open alerts by severity and offline devices, as the page shows."""
    out: dict[str, dict[str, int]] = {}
    for path, line in re.findall(
        r'data-path="([^"]+)">\s*<div class="tree-line">(.*?)</div>', html, re.S
    ):
        counts = {
            f"s{sev}": int(n) for sev, n in re.findall(r'data-severity="(\d)" data-n="(\d+)"', line)
        }
        counts["offline"] = int(re.findall(r'data-offline="(\d+)"', line)[0])
        out[path] = counts
    return out


def test_tree_counts_per_node_match_the_database_and_stay_in_scope(
    console: Console, page: Any
) -> None:
    gw = console.gateway("north")
    east = sibling(console, gw, "east")
    for severity in (3, 3, 2, 1):
        console.alert(gw, severity=severity)
    console.alert(east, severity=2, building="b2")
    set_gateway(console, east.gateway, online=True)  # its devices online; gw stays unknown
    district = console.user("supervisor", None)
    north_duty = console.user("duty", gw)

    with signed_in(console, district) as client:
        counts = _tree_counts(client.get("/tree").text)
    with console.factory() as s:
        for path, shown in counts.items():
            parts = path.split("/")
            where: list[ColumnElement[bool]] = [m.Alert.status.not_in(("resolved", "closed"))]
            for column, value in zip(
                (m.Alert.community, m.Alert.compound, m.Alert.building), parts, strict=False
            ):
                where.append(column == value)
            for severity in (1, 2, 3):
                n = s.scalar(
                    select(func.count())
                    .select_from(m.Alert)
                    .where(*where, m.Alert.severity == severity)
                )
                assert shown[f"s{severity}"] == n, (path, severity)
    community = gw.community
    assert counts[community]["s3"] == 2 and counts[community]["s2"] == 2
    assert counts[f"{community}/north"]["s2"] == 1
    # gw (never sent a status) and its 4 devices are offline; east is online
    assert counts[f"{community}/north"]["offline"] == 5
    assert counts[f"{community}/east"]["offline"] == 0

    with signed_in(console, north_duty) as client:
        mine = _tree_counts(client.get("/tree").text)
    assert set(mine) == {community, f"{community}/north", f"{community}/north/b1"}
    assert mine[community]["s2"] == 1  # east's alert is not counted for them

    log_in(page, console, district, next_path="/tree")
    node = page.locator(f'li[data-path="{community}/north"] > .tree-line')
    assert "紧急" in node.inner_text()
    assert node.locator("a.tree-name").get_attribute("href") == "/?compound=north"
    console.alert(gw, severity=3, zone="later")  # the tree refreshes itself (every 10 s)
    page.locator(f'li[data-path="{community}/north"] > .tree-line .n-3 b').filter(
        has_text="3"
    ).wait_for(timeout=20_000)
    screenshot(page, "tree")


# --- health -----------------------------------------------------------------------------


def test_health_shows_an_offline_gateway_as_offline_first(console: Console, page: Any) -> None:
    up = console.gateway("north")
    down = sibling(console, up, "east")
    set_gateway(
        console,
        up.gateway,
        online=True,
        outbox_depth=17,
        outbox_oldest_age_s=42.0,
        model={"name": "yolo-community", "version": "2026.11"},
        cameras={"cam-2": "offline"},
    )
    set_gateway(console, down.gateway, online=False)
    engineer = console.user("engineer", up, level="community")
    with signed_in(console, engineer) as client:
        html = client.get("/health").text
    rows = re.findall(r'<tr id="gw-([^"]+)" class="(up|down)"', html)
    assert rows == [(down.gateway, "down"), (up.gateway, "up")]
    assert "yolo-community 2026.11" in html and ">17<" in html
    cams = dict(re.findall(r'<tr id="dev-([^"]+)" class="(up|down)"', html))
    assert cams[f"{up.gateway}-cam-2"] == "down"  # the gateway's health says so
    assert cams[f"{up.gateway}-cam-1"] == "up"
    assert cams[f"{down.gateway}-cam-1"] == "down"  # its gateway is offline

    log_in(page, console, engineer, next_path="/health")
    row = page.locator(f"#gw-{down.gateway}")
    assert "离线" in row.inner_text()
    assert "在线" in page.locator(f"#gw-{up.gateway}").inner_text()
    screenshot(page, "health")

    # the page follows without a reload: the gateway comes back within a refresh (10 s)
    set_gateway(console, down.gateway, online=True)
    page.locator(f"#gw-{down.gateway}.up").wait_for(timeout=30_000)
    assert "在线" in page.locator(f"#gw-{down.gateway}").inner_text()


# --- work orders ------------------------------------------------------------------------


def test_the_board_moves_an_order_through_a_state_with_a_button(
    console: Console, page: Any
) -> None:
    gw = console.gateway()
    with transaction(console.factory) as s:
        if s.get(m.Department, "urban") is None:
            s.add(m.Department(id="urban", name="城管执法", contacts=[]))
    now = console.state.clock()
    ids = []
    for severity in (3, 2, 2):
        alert_id = console.alert(gw, severity=severity)
        with transaction(console.factory) as s:
            ids.append(work_orders.dispatch(s, alert_id, actor="t", now=now, department="urban").id)
    with transaction(console.factory) as s:
        work_orders.move(s, ids[2], "accept", actor="t", now=now)
    duty = console.user("duty", gw)
    engineer = console.user("engineer", gw)
    log_in(page, console, duty, next_path="/work-orders")
    card = page.locator(f"#wo-{ids[0]}")
    assert card.get_attribute("data-status") == "created"
    card.locator("button[data-action=accept]").click()
    page.locator(f".column[data-state=accepted] #wo-{ids[0]}").wait_for()
    page.locator(f"#wo-{ids[0]} button[data-action=start]").click()
    page.locator(f".column[data-state=in_progress] #wo-{ids[0]}").wait_for()
    screenshot(page, "work_orders")
    page.set_viewport_size({"width": 390, "height": 844})  # property staff on patrol
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator(f"#wo-{ids[2]} button[data-action=start]").click()
    page.locator(f".column[data-state=in_progress] #wo-{ids[2]}").wait_for()
    screenshot(page, "work_orders_phone")
    with console.factory() as s:
        assert s.get_one(m.WorkOrder, ids[0]).status == "in_progress"
        log = s.scalars(
            select(m.WorkOrderTransition.actor).where(m.WorkOrderTransition.work_order_id == ids[0])
        ).all()
        assert duty in log

    with signed_in(console, duty) as client:  # done, then verify: needs the broker
        assert client.post(f"/console/work-orders/{ids[0]}/done").status_code == 200
        r = client.post(f"/console/work-orders/{ids[0]}/verify")
        assert r.status_code == 503 and "复核" in r.text
        assert r.headers["HX-Retarget"] == "#toast"
        r = client.post(f"/console/work-orders/{ids[1]}/done")  # created → done is no move
        assert r.status_code == 409
    with signed_in(console, engineer) as client:  # reads the board, may not move orders
        assert "data-action=" not in client.get("/work-orders").text
        r = client.post(f"/console/work-orders/{ids[1]}/accept")
        assert r.status_code == 403
    other = console.user("duty", console.gateway("elsewhere"))
    with signed_in(console, other) as client:
        assert f'id="wo-{ids[1]}"' not in client.get("/work-orders").text
        assert client.post(f"/console/work-orders/{ids[1]}/accept").status_code == 404
        assert client.post("/console/work-orders/999999/accept").status_code == 404


def test_the_board_puts_overdue_orders_first(console: Console) -> None:
    gw = console.gateway()
    with transaction(console.factory) as s:
        if s.get(m.Department, "fire") is None:
            s.add(m.Department(id="fire", name="消防", contacts=[]))
    now = console.state.clock()
    made: dict[str, int] = {}
    # oldest first when made: undated, due later, overdue by a little, overdue by a lot
    for name, due in (
        ("undated", None),
        ("due", now + timedelta(hours=1)),
        ("late", now - timedelta(minutes=5)),
        ("later", now - timedelta(hours=2)),
    ):
        alert_id = console.alert(gw)
        with transaction(console.factory) as s:
            alert = s.get_one(m.Alert, alert_id)
            wo = work_orders.create(
                s,
                alert,
                department="fire",
                reason="playbook",
                actor="t",
                now=now - timedelta(hours=3),
                note=None,
                due_at=due,
            )
            made[name] = wo.id
    with signed_in(console, console.user("duty", gw)) as client:
        html = client.get("/work-orders").text
    lane = html[html.index('data-department="fire"') :]
    column = lane[lane.index('data-state="created"') : lane.index('data-state="accepted"')]
    shown = [int(n) for n in re.findall(r'id="wo-(\d+)"', column)]
    assert shown == [made["later"], made["late"], made["due"], made["undated"]]
    assert re.search(rf'class="card overdue" id="wo-{made["later"]}"', column)
    assert f'class="card" id="wo-{made["due"]}"' in column
    assert "已逾期" in column and "预案" in column


# --- dead letters -----------------------------------------------------------------------


def test_dead_letters_are_refused_to_a_community_user_and_shown_to_a_district_engineer(
    console: Console,
) -> None:
    gw = console.gateway()
    now = console.state.clock()
    with transaction(console.factory) as s:
        s.add(
            m.DeadLetter(
                received_at=now,
                topic=f"mb/v1/{gw.community}/{gw.compound}/{gw.gateway}/event",
                gateway=gw.gateway,
                reason="invalid_payload: severity must be 1..3",
                field="severity",
                payload=b'{"severity":\x009}',
                count=4,
                last_seen=now,
            )
        )
    community_engineer = console.user("engineer", gw, level="community")
    district_engineer = console.user("engineer", None)
    with signed_in(console, community_engineer) as client:
        r = client.get("/dead-letters")
        assert r.status_code == 403
        assert "invalid_payload" not in r.text
        assert 'href="/dead-letters"' not in client.get("/mine").text  # nav hides it
    with signed_in(console, district_engineer) as client:
        html = client.get("/dead-letters").text
    assert "invalid_payload: severity must be 1..3" in html
    assert gw.gateway in html and ">4<" in html
    assert '{"severity":·9}' in html.replace("&#34;", '"')
    assert "7b 22 73 65" in html  # the hex beside the text
