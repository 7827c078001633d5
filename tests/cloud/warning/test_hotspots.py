"""Hotspots as governance items, over a real database (SQLite and PostgreSQL): alerts
made through the real ingest, a clock stepped by hand, the API through the real app."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.console import mount_console
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Conflict, NotFound
from cloud.permissions import Role
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from cloud.warning import hotspots
from cloud.warning.hotspots import HotspotPolicy, HotspotReport, load_hotspot_policy
from microbrain.config_files import ConfigFileError
from microbrain.protocol import GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway, wait_for

T0 = datetime(2026, 3, 2, 1, tzinfo=UTC)
POLICY = HotspotPolicy()  # 3 alerts at one place within 7 days


@dataclass
class Place:
    factory: sessionmaker[Session]
    gw: GatewayPath
    clock: ManualClock
    n: int = 0

    def alert(self, kind: str = "illegal_parking", building: str | None = "b1") -> int:
        """One new alert of ``kind`` at ``building`` now (a new zone: a new alert)."""
        self.n += 1
        ev = event(
            self.n,
            ts=self.clock(),
            kind=kind,
            building=building,
            zone=f"z{self.n}",
            severity=Severity.WARNING,
        )
        (alert_id,) = ingest(self.factory, self.gw, [ev], now=self.clock()).alerts
        return int(alert_id)

    def step(self, policy: HotspotPolicy = POLICY) -> HotspotReport:
        with transaction(self.factory) as s:
            return hotspots.evaluate(s, policy, self.clock(), community=self.gw.community)

    def items(self) -> list[tuple[m.GovernanceItem, list[int]]]:
        with self.factory() as s:
            rows = list(
                s.scalars(
                    select(m.GovernanceItem)
                    .where(m.GovernanceItem.community == self.gw.community)
                    .order_by(m.GovernanceItem.id)
                )
            )
            hist = hotspots.history(s, [r.id for r in rows])
            return [(r, [h.alert_id for h in hist[r.id]]) for r in rows]


@pytest.fixture
def place(factory: sessionmaker[Session], gw: GatewayPath) -> Place:
    return Place(factory, gw, ManualClock(T0))


def supervisor(factory: sessionmaker[Session], community: str | None) -> m.User:
    with transaction(factory) as s:
        user = m.User(
            username=f"s-{uuid.uuid4().hex[:10]}",
            password_hash="x",
            role=Role.SUPERVISOR.value,
            community=community,
            active=True,
            created_at=T0,
        )
        s.add(user)
        s.flush()
        s.expunge(user)
        return user


def test_a_hotspot_at_n_is_one_item_and_later_alerts_join_its_history(place: Place) -> None:
    first = [place.alert()]
    place.clock.advance(hours=20)
    first.append(place.alert())
    place.alert(kind="smoke_alarm")  # another kind at the same place: not the same matter
    place.alert(building=None)  # the same kind at the compound: another place
    place.clock.advance(days=2)
    assert place.step().opened == 0 and place.items() == []  # two is not yet a hotspot
    first.append(place.alert())
    report = place.step()
    assert report.opened == 1 and report.added == 0
    ((item, history),) = place.items()
    assert (item.kind, item.building, item.status, item.count) == (
        "illegal_parking",
        "b1",
        "open",
        3,
    )
    assert history == first and item.compound == place.gw.compound
    assert item.opened_at == place.clock() and item.last_seen == place.clock()
    assert place.step().opened == 0  # nothing new: nothing changes

    place.clock.advance(days=3)
    later = [place.alert(), place.alert()]  # N + 2 in all: still one item
    report = place.step()
    assert report.opened == 0 and report.added == 2
    ((item, history),) = place.items()
    assert item.count == 5 and history == first + later
    assert item.last_seen == place.clock()


def test_alerts_spread_wider_than_the_window_are_no_hotspot(place: Place) -> None:
    for _ in range(4):  # four alerts, four days apart: never three within 7 days
        place.alert()
        assert place.step().opened == 0
        place.clock.advance(days=4)
    assert place.items() == []


def test_the_compound_is_the_place_when_alerts_name_no_building(place: Place) -> None:
    for _ in range(3):
        place.n += 1
        ev = event(
            place.n, ts=place.clock(), building=None, zone=f"z{place.n}", severity=Severity.WARNING
        )
        ingest(place.factory, place.gw, [ev], now=place.clock())
    assert place.step().opened == 1
    ((item, history),) = place.items()
    assert item.building is None and len(history) == 3
    assert item.key == f"illegal_parking|{place.gw.community}/{place.gw.compound}/-"


def test_a_closed_item_comes_back_only_as_a_new_item_after_a_new_crossing(place: Place) -> None:
    for _ in range(3):
        place.alert()
    place.step()
    ((item, _),) = place.items()
    boss = supervisor(place.factory, place.gw.community)
    place.clock.advance(hours=1)
    with transaction(place.factory) as s:
        closed = hotspots.close(s, boss, item.id, note="加装了隔离桩", now=place.clock())
        assert closed.status == "closed" and closed.closed_by == boss.username
    with transaction(place.factory) as s, pytest.raises(Conflict):
        hotspots.close(s, boss, item.id, note="again", now=place.clock())
    place.clock.advance(hours=1)
    place.alert()
    place.alert()  # 5 in the week, but only 2 since the close
    assert place.step().opened == 0 and len(place.items()) == 1
    third = place.alert()
    report = place.step()
    assert report.opened == 1
    (old, old_history), (new, new_history) = place.items()
    assert old.status == "closed" and old.close_note == "加装了隔离桩" and len(old_history) == 3
    assert new.status == "open" and new.count == 3 and new_history[-1] == third


def test_another_areas_supervisor_cannot_close_it(place: Place) -> None:
    for _ in range(3):
        place.alert()
    place.step()
    ((item, _),) = place.items()
    stranger = supervisor(place.factory, f"t-{uuid.uuid4().hex[:8]}")
    with transaction(place.factory) as s, pytest.raises(NotFound) as err:
        hotspots.close(s, stranger, item.id, note="not mine", now=place.clock())
    assert str(err.value) == f"governance item {item.id} does not exist"
    assert place.items()[0][0].status == "open"


def waiting_on_a_lock(factory: sessionmaker[Session]) -> bool:
    with factory() as s:
        n = s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(n)


def test_two_processes_stepping_at_once_open_one_item(place: Place, cloud_url: str) -> None:
    if not cloud_url.startswith("postgresql"):
        pytest.skip("SQLite takes one writer at a time: nothing to race")
    alerts = [place.alert() for _ in range(3)]
    reports: list[HotspotReport] = []
    a = place.factory()
    try:
        a.begin()
        mine = hotspots.evaluate(a, POLICY, place.clock(), community=place.gw.community)
        # the other process steps while this one has not committed: it sees the alerts
        # unattached and waits on the open-key index until this one commits
        other = threading.Thread(target=lambda: reports.append(place.step()))
        other.start()
        wait_for(lambda: waiting_on_a_lock(place.factory), timeout=60)
        a.commit()
    finally:
        a.close()
    other.join(timeout=60)
    assert not other.is_alive()
    (theirs,) = reports
    assert mine.opened == 1 and theirs.opened == 0 and theirs.added == 0
    assert theirs.races == 1  # its savepoint undone: it counted nothing
    ((item, history),) = place.items()
    assert history == alerts and item.count == 3


def test_the_policy_needs_no_file_and_a_bad_file_names_its_line(tmp_path: Any) -> None:
    assert POLICY.threshold == 3 and POLICY.window_days == 7
    path = tmp_path / "hotspots.yaml"
    path.write_text("threshold: 4\nwindow_day: 7\n", encoding="utf-8")
    with pytest.raises(ConfigFileError) as err:
        load_hotspot_policy(path)
    assert "hotspots.yaml" in str(err.value) and "line 2" in str(err.value), str(err.value)
    path.write_text("threshold: 4\nexclude_kinds: [gateway_offline]\n", encoding="utf-8")
    assert load_hotspot_policy(path).threshold == 4


def test_excluded_kinds_never_make_an_item(place: Place) -> None:
    for _ in range(3):
        place.alert(kind="gateway_offline")
    assert place.step(HotspotPolicy(exclude_kinds=("gateway_offline",))).opened == 0
    assert place.items() == []


# --- the API ---------------------------------------------------------------------------


@pytest.fixture
def api(factory: sessionmaker[Session]) -> Iterator[tuple[TestClient, ManualClock]]:
    clock = ManualClock(T0)
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    with TestClient(create_api(state)) as client:
        yield client, clock


def headers(factory: sessionmaker[Session], role: Role, community: str | None) -> dict[str, str]:
    with transaction(factory) as s:
        user = m.User(
            username=f"u-{uuid.uuid4().hex[:10]}",
            password_hash="x",
            role=role.value,
            community=community,
            active=True,
            created_at=T0,
        )
        s.add(user)
        s.flush()
        token = auth.issue_token(s, user, now=T0, ttl_s=3600)
    return {"Authorization": f"Bearer {token}"}


def test_the_api_lists_and_closes_items_only_in_ones_area(
    factory: sessionmaker[Session], api: tuple[TestClient, ManualClock]
) -> None:
    client, clock = api
    own, other = unique_gateway(), unique_gateway()
    with transaction(factory) as s:
        for p in (own, other):
            register_gateway(s, p.community, p.compound, p.gateway, building="b1", **DEVICES)
    places = {path: Place(factory, path, clock) for path in (own, other)}
    for place in places.values():
        for _ in range(4):
            place.alert()
        place.step()
    ((item, history),) = places[own].items()
    ((foreign, _),) = places[other].items()
    boss = headers(factory, Role.SUPERVISOR, own.community)
    duty = headers(factory, Role.DUTY, own.community)

    r = client.get("/api/governance", headers=boss, params={"status": "open"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1 and [i["id"] for i in body["items"]] == [item.id]
    assert [h["alert_id"] for h in body["items"][0]["history"]] == history
    assert body["items"][0]["count"] == 4
    assert (
        client.get("/api/governance", headers=boss, params={"kind": "smoke_alarm"}).json()["total"]
        == 0
    )
    assert (
        client.get("/api/governance", headers=boss, params={"compound": "x'; --"}).status_code
        == 422
    )

    # another area's item: the same 404 as one that does not exist, for reading and closing
    missing = client.get("/api/governance/987654321", headers=boss)
    got = client.get(f"/api/governance/{foreign.id}", headers=boss)
    assert got.status_code == missing.status_code == 404
    assert got.json()["detail"].replace(str(foreign.id), "<id>") == missing.json()[
        "detail"
    ].replace("987654321", "<id>")
    r = client.post(f"/api/governance/{foreign.id}/close", headers=boss, json={"note": "x"})
    assert r.status_code == 404
    # duty may not close; a note is needed; the supervisor closes it once
    assert (
        client.post(
            f"/api/governance/{item.id}/close", headers=duty, json={"note": "x"}
        ).status_code
        == 403
    )
    assert client.post(f"/api/governance/{item.id}/close", headers=boss, json={}).status_code == 422
    r = client.post(f"/api/governance/{item.id}/close", headers=boss, json={"note": "已整改"})
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text
    assert r.json()["close_note"] == "已整改"
    again = client.post(f"/api/governance/{item.id}/close", headers=boss, json={"note": "x"})
    assert again.status_code == 409
    with factory() as s:
        assert s.get_one(m.GovernanceItem, foreign.id).status == "open"


def _log_in(client: TestClient, factory: sessionmaker[Session], role: Role, community: str) -> str:
    """A console session for a new user of ``role`` in ``community``; the page's CSRF."""
    name = f"{role.value}-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        auth.create_user(s, name, "console-pass-123", role, community=community, now=T0)
    r = client.post(
        "/login",
        data={"username": name, "password": "console-pass-123", "next": "/governance"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get("/governance")
    assert page.status_code == 200
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def test_the_console_page_lists_items_with_their_history_and_a_supervisor_closes_one(
    place: Place, factory: sessionmaker[Session]
) -> None:
    ids = [place.alert() for _ in range(3)]
    place.step()
    ((item, _),) = place.items()
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=place.clock)
    app = create_api(state)
    mount_console(app, state)
    with TestClient(app) as duty_client, TestClient(app) as boss_client:
        duty_csrf = _log_in(duty_client, factory, Role.DUTY, place.gw.community)
        page = duty_client.get("/governance").text
        assert f'id="governance-{item.id}"' in page and "待治理" in page
        assert all(f'href="/alerts/{i}"' in page for i in ids)  # its history, linked
        assert f'id="close-{item.id}"' not in page  # duty may not close
        # hostile: duty posting the close anyway is refused, the item stays open
        refused = duty_client.post(
            f"/console/governance/{item.id}/close",
            data={"note": "x"},
            headers={"X-CSRF-Token": duty_csrf},
        )
        assert refused.status_code == 403
        csrf = _log_in(boss_client, factory, Role.SUPERVISOR, place.gw.community)
        url = f"/console/governance/{item.id}/close"
        assert f'id="close-{item.id}"' in boss_client.get("/governance").text
        empty = boss_client.post(url, data={"note": " "}, headers={"X-CSRF-Token": csrf})
        assert empty.status_code == 422 and "处置情况" in empty.text
        done = boss_client.post(url, data={"note": "已划线禁停"}, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200 and "已关闭" in done.text and "已划线禁停" in done.text
        # another community's supervisor sees nothing of it and cannot close it
        other = f"t-{uuid.uuid4().hex[:8]}"
    with TestClient(app) as stranger:
        token = _log_in(stranger, factory, Role.SUPERVISOR, other)
        assert f'id="governance-{item.id}"' not in stranger.get("/governance").text
        r = stranger.post(url, data={"note": "x"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 404
    with factory() as s:
        row = s.get(m.GovernanceItem, item.id)
        assert row is not None and row.status == "closed" and row.close_note == "已划线禁停"
