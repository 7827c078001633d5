"""The links where people see them: ``GET /api/alerts/{id}/links`` and the 关联告警 section
of the alert's page, through the real app (API + console) on both stores; another
compound's user gets the 404 of an id that does not exist, and a user bound to a building
does not see the linked alert of the building next door."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from cloud import auth, fusion
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.console import mount_console
from cloud.console.session import COOKIE
from cloud.db import models as m
from cloud.db import transaction
from cloud.fusion import FusionRules
from cloud.settings import Settings
from microbrain.protocol import GatewayPath
from tests.cloud.fusion.conftest import HYDRANT, Place


@dataclass
class Linked:
    client: TestClient
    place: Place
    hydrant: int  # building b1
    parking: int  # building b2, linked with the hydrant alert
    reason: str

    def token(self, where: GatewayPath, *, building: str | None = None) -> str:
        """A duty user's token, bound to ``where``'s compound (and ``building``)."""
        with transaction(self.place.factory) as s:
            user = m.User(
                username=f"d-{uuid.uuid4().hex[:10]}",
                password_hash="!",  # never logs in with a password: a token is issued
                role="duty",
                community=where.community,
                compound=where.compound,
                building=building,
                active=True,
                created_at=self.place.clock(),
            )
            s.add(user)
            s.flush()
            return auth.issue_token(s, user, now=self.place.clock(), ttl_s=3600)

    def api(self, alert_id: int, token: str) -> tuple[int, object]:
        r = self.client.get(
            f"/api/alerts/{alert_id}/links", headers={"Authorization": f"Bearer {token}"}
        )
        return r.status_code, r.json()

    def page(self, alert_id: int, token: str) -> tuple[int, str]:
        self.client.cookies.set(COOKIE, token)
        try:
            r = self.client.get(f"/alerts/{alert_id}")
        finally:
            self.client.cookies.clear()
        return r.status_code, r.text


@pytest.fixture
def linked(place: Place, rules: FusionRules) -> Iterator[Linked]:
    hydrant = place.alert("hydrant_pressure_low", source="h1", building="b1")
    place.clock.advance(minutes=20)
    parking = place.alert("illegal_parking", building="b2", zone="fire-lane")
    assert fusion.run(place.factory, place.clock(), rules).linked >= 1
    reason = next(r.reason for r in rules.rules if r.id == HYDRANT)
    state = ApiState(
        settings=Settings(environment="test"), factory=place.factory, clock=place.clock
    )
    app = create_api(state)
    mount_console(app, state)
    with TestClient(app) as client:
        yield Linked(client, place, hydrant, parking, reason)


def test_the_api_lists_the_linked_alert_with_its_reason(linked: Linked) -> None:
    token = linked.token(linked.place.here)
    for this, other in ((linked.hydrant, linked.parking), (linked.parking, linked.hydrant)):
        status, body = linked.api(this, token)
        assert status == 200
        assert isinstance(body, list) and len(body) == 1
        (item,) = body
        assert item["alert"]["id"] == other and item["alert"]["severity"] == 3
        assert item["rule"] == HYDRANT and item["reason"] == linked.reason
        assert item["raised_to"] == 3 and item["linked_at"]


def test_another_compounds_user_gets_the_404_of_a_missing_alert(linked: Linked) -> None:
    stranger = linked.token(linked.place.next_door)  # same community, another compound
    status, body = linked.api(linked.hydrant, stranger)
    missing_status, missing = linked.api(987654321012, stranger)
    assert status == missing_status == 404
    assert body == {"detail": f"alert {linked.hydrant} does not exist"}
    assert missing == {"detail": "alert 987654321012 does not exist"}
    page_status, page = linked.page(linked.hydrant, stranger)
    assert page_status == 404 and linked.reason not in page


def test_a_building_user_does_not_see_the_linked_alert_next_door(linked: Linked) -> None:
    b1 = linked.token(linked.place.here, building="b1")
    status, body = linked.api(linked.hydrant, b1)
    assert (status, body) == (200, [])
    assert linked.api(linked.parking, b1)[0] == 404
    page_status, page = linked.page(linked.hydrant, b1)
    assert page_status == 200
    assert f'href="/alerts/{linked.parking}"' not in page
    assert "没有关联的告警" in page


def test_the_alert_page_shows_the_related_alerts_section(linked: Linked) -> None:
    token = linked.token(linked.place.here)
    status, page = linked.page(linked.hydrant, token)
    assert status == 200
    section = page.split('class="panel detail-links"', 1)[1].split("</section>", 1)[0]
    assert "关联告警" in section
    assert f'href="/alerts/{linked.parking}"' in section
    assert linked.reason in section and "消防通道违停" in section
    assert "已提升为紧急" in section
    # the log says it too, on the page's timeline
    timeline = page.split('class="panel detail-timeline"', 1)[1].split("</section>", 1)[0]
    assert f"关联告警 #{linked.parking}：{linked.reason}" in timeline
    assert "提升严重程度" in timeline
    status, other = linked.page(linked.parking, token)
    assert status == 200 and f'href="/alerts/{linked.hydrant}"' in other
