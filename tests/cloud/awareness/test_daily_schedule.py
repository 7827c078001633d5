"""The daily report on a schedule, on both stores: nothing before the report hour; at it,
each desk's report of yesterday stored once whichever process runs the step, holding
exactly the numbers :func:`daily_report` gives for the desk's place; the stored JSON
renders back to the same report; the API (``?desk=``) and the console's ``/reports``
serve it to the desk's area only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.awareness import schedule
from cloud.awareness.render import render_html
from cloud.awareness.report import daily_report, report_from_json
from cloud.awareness.shifts import AwarenessConfig, Desk
from cloud.clock import ManualClock
from cloud.console import mount_console
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from tests.cloud.awareness.test_daily_report import (
    ALERTS,
    APPEALS,
    DAY,
    A,
    World,
    expected,
)
from tests.cloud.awareness.test_daily_report import world as report_world  # noqa: F401

TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "correct horse battery"
REPORT_AT = datetime(DAY.year, DAY.month, DAY.day, 7, 0, tzinfo=TZ) + timedelta(days=1)


def _config(w: World) -> AwarenessConfig:
    return AwarenessConfig(
        report_at=time(7),
        desks=(
            Desk(id=f"{w.community}-all", name="社区值班台", community=w.community),
            Desk(id=f"{w.community}-b", name="锦绣家园物业", community=w.community, compound="c-b"),
        ),
    )


def _rows(w: World) -> list[m.StoredDailyReport]:
    with w.factory() as s:
        return list(
            s.scalars(
                select(m.StoredDailyReport)
                .where(m.StoredDailyReport.community == w.community)
                .order_by(m.StoredDailyReport.desk)
            )
        )


def test_nothing_before_the_report_hour(report_world: World) -> None:  # noqa: F811
    w, config = report_world, _config(report_world)
    out = schedule.run(w.factory, (REPORT_AT - timedelta(seconds=1)).astimezone(UTC), config)
    assert out.day is None and out.made == []
    assert _rows(w) == []


def test_at_the_hour_each_desk_gets_yesterdays_report_once(
    report_world: World,  # noqa: F811
    cloud_url: str,
) -> None:
    w, config = report_world, _config(report_world)
    now = REPORT_AT.astimezone(UTC)
    out = schedule.run(w.factory, now, config)
    assert out.day == DAY and sorted(out.made) == sorted(d.id for d in config.desks)
    engine = make_engine(cloud_url)
    try:
        again = schedule.run(session_factory(engine), now + timedelta(minutes=1), config)
        assert again.made == [] and len(again.present) == 2
        # both computed before either stored: the unique constraint decides
        assert schedule.make(session_factory(engine), config.desks[0], DAY, now, config) is False
    finally:
        engine.dispose()
    rows = {r.desk: r for r in _rows(w)}
    assert len(rows) == 2
    # the stored numbers are the seed's (as the report's own test computes them) …
    whole = report_from_json(rows[f"{w.community}-all"].body)
    want = expected(ALERTS, APPEALS)
    assert whole.counts.flat() == want["this"]
    assert whole.week.previous.flat() == want["last"]
    compound = report_from_json(rows[f"{w.community}-b"].body)
    assert compound.counts.flat() == expected(ALERTS, APPEALS, "c-b")["this"]
    # … and exactly what daily_report gives for the desk's place at that time
    with w.factory() as s:
        direct = daily_report(s, config.desks[1].scope, DAY, now=now)
    assert rows[f"{w.community}-b"].body == direct.to_json()
    assert compound == direct
    # a late alert after the report was filed does not change it
    with transaction(w.factory) as s:
        from tests.cloud.awareness.test_daily_report import _alerts

        _alerts(s, w.community, [A(ALERTS[0].local, "smoke_alarm", 3, "c-b", "b7")])
    schedule.run(w.factory, now + timedelta(hours=1), config)
    assert {r.desk: r.body for r in _rows(w)}[f"{w.community}-b"] == direct.to_json()


def test_the_stored_json_renders_back(report_world: World) -> None:  # noqa: F811
    w = report_world
    with w.factory() as s:
        report = daily_report(s, w.users["community"], DAY, now=REPORT_AT.astimezone(UTC))
    again = report_from_json(report.to_json())
    assert again == report
    assert render_html(again) == render_html(report)


@dataclass
class Served:
    client: TestClient
    world: World
    tokens: dict[str, dict[str, str]]
    usernames: dict[str, str]


@pytest.fixture
def served(report_world: World) -> Iterator[Served]:  # noqa: F811
    w = report_world
    now = REPORT_AT.astimezone(UTC)
    schedule.run(w.factory, now, _config(w))
    state = ApiState(
        settings=Settings(environment="test"), factory=w.factory, clock=ManualClock(now)
    )
    app = create_api(state)
    mount_console(app, state)
    tokens, names = {}, {}
    digest = auth.hash_password(PASSWORD)
    with transaction(w.factory) as s:
        for who, compound in (("community", None), ("a", "c-a"), ("b", "c-b")):
            user = m.User(
                username=f"{who}-{uuid.uuid4().hex[:8]}",
                password_hash=digest,
                role="duty",
                community=w.community,
                compound=compound,
                active=True,
                created_at=now,
            )
            s.add(user)
            s.flush()
            names[who] = user.username
            token = auth.issue_token(s, user, now=now, ttl_s=3600)
            tokens[who] = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        yield Served(client, w, tokens, names)


def test_the_api_serves_stored_reports_to_the_desks_area(served: Served) -> None:
    w, c = served.world, served.client
    desk = f"{w.community}-b"
    stored = {r.desk: r for r in _rows(w)}[desk]
    url = f"/api/reports/daily?day={DAY.isoformat()}&desk={desk}"
    r = c.get(url, headers=served.tokens["b"])
    assert r.status_code == 200 and r.json() == stored.body
    html = c.get(url + "&format=html", headers=served.tokens["community"])
    assert html.status_code == 200 and "锦绣家园" in html.text
    assert f"daily-report-{desk}-{DAY.isoformat()}.html" in html.headers["content-disposition"]
    # another compound's user: the same 404 as a desk that has no report
    assert c.get(url, headers=served.tokens["a"]).status_code == 404
    nowhere = c.get(url.replace(desk, "no-such-desk"), headers=served.tokens["community"])
    assert nowhere.status_code == 404
    listed = c.get("/api/reports/stored", headers=served.tokens["b"]).json()
    assert [(x["desk"], x["day"]) for x in listed] == [(desk, DAY.isoformat())]
    assert listed[0]["opened"] == stored.body["counts"]["opened"]
    assert c.get("/api/reports/stored", headers=served.tokens["a"]).json() == []


def _log_in(client: TestClient, username: str) -> None:
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_the_reports_page_lists_and_downloads(served: Served) -> None:
    w, c = served.world, served.client
    _log_in(c, served.usernames["community"])
    page = c.get("/reports")
    assert page.status_code == 200
    for row in _rows(w):
        assert f'id="report-{row.id}"' in page.text
        assert f"/reports/download?desk={row.desk}&amp;day={DAY.isoformat()}&amp;format=pdf" in (
            page.text
        )
    desk = f"{w.community}-all"
    base = f"/reports/download?desk={desk}&day={DAY.isoformat()}"
    pdf = c.get(base + "&format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    body = c.get(base + "&format=json").json()
    assert body == {r.desk: r.body for r in _rows(w)}[desk]
    # another compound's user: no row listed, the download refused
    c.cookies.clear()
    _log_in(c, served.usernames["a"])
    assert 'id="report-' not in c.get("/reports").text
    assert c.get(base + "&format=json").status_code == 404
