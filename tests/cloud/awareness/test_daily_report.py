"""The daily report (日报) of a seeded day, on both stores: every figure equals what this
test computes from its own seed lists (never from the report's SQL); a community's user
gets only their community; the PDF carries the Chinese (pdftotext reads it back), the
HTML fetches nothing; the API answers JSON, HTML and PDF downloads and 422 on a bad day.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.awareness.render import render_html, render_pdf
from cloud.awareness.report import DailyReport, daily_report
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from tests.cloud.helpers import DEVICES

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 11)  # a Wednesday
ARTEFACTS = Path(__file__).parents[3] / "var" / "test-artefacts" / "awareness"
COMPOUNDS = {"c-a": "阳光花园", "c-b": "锦绣家园"}


@dataclass(frozen=True)
class A:
    """One seeded alert: local opening time, what, where, and what happened to it."""

    local: datetime
    kind: str
    severity: int
    compound: str
    building: str | None
    ack_s: float | None = None
    resolve_s: float | None = None
    resolve_action: str = "resolved"
    escalations: tuple[tuple[str, datetime], ...] = ()  # (action, local time)


@dataclass(frozen=True)
class P:
    """One seeded appeal."""

    local: datetime
    compound: str
    due_h: float
    answered_h: float | None
    rating: int | None


def at(d: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=TZ)


PREV = DAY - timedelta(days=7)
ALERTS = [
    # the day's first instant and last second belong to it
    A(at(DAY, 0, 0, 0), "illegal_parking", 3, "c-a", "b1", ack_s=120, resolve_s=1800),
    A(at(DAY, 23, 59, 59), "illegal_parking", 2, "c-a", "b1", ack_s=30),
    A(at(DAY, 0, 30), "illegal_parking", 3, "c-a", "b1", ack_s=600, resolve_s=4000),
    A(at(DAY, 8, 15), "smoke_alarm", 3, "c-a", "b2", ack_s=45, resolve_s=900),
    A(
        at(DAY, 8, 20),
        "smoke_alarm",
        3,
        "c-a",
        "b2",
        ack_s=75,
        resolve_s=300,
        resolve_action="auto_resolved",
    ),
    A(at(DAY, 9, 5), "ebike_charging", 1, "c-b", "b7", resolve_s=7200),
    A(at(DAY, 9, 6), "ebike_charging", 1, "c-b", "b7", ack_s=3000),
    A(at(DAY, 9, 7), "ebike_charging", 2, "c-b", "b7", ack_s=5000, resolve_s=9000),
    A(at(DAY, 14, 0), "unleashed_dog", 1, "c-b", None, ack_s=200, resolve_s=200.5),
    A(at(DAY, 14, 30), "unleashed_dog", 1, "c-b", None),
    A(
        at(DAY, 18, 45),
        "fire_door_open",
        2,
        "c-a",
        "b1",
        ack_s=10,
        escalations=(("escalated", at(DAY, 19, 15)), ("whistled", at(DAY, 20, 0))),
    ),
    A(
        at(DAY, 22, 0),
        "elevator_fault",
        3,
        "c-b",
        "b7",
        escalations=(("escalated", at(DAY + timedelta(days=1), 0, 5)),),
    ),  # next day's
    # the day before (one escalated on our day: that counts), the day after
    A(
        at(DAY - timedelta(days=1), 23, 59, 59),
        "illegal_parking",
        3,
        "c-a",
        "b1",
        ack_s=5,
        escalations=(("escalated", at(DAY, 0, 10)),),
    ),
    A(at(DAY + timedelta(days=1), 0, 0, 0), "illegal_parking", 3, "c-a", "b1"),
    # the same weekday a week before
    A(
        at(PREV, 10, 0),
        "illegal_parking",
        2,
        "c-a",
        "b1",
        escalations=(("escalated", at(PREV, 10, 40)),),
    ),
    A(at(PREV, 11, 0), "smoke_alarm", 3, "c-b", "b7"),
    A(at(PREV, 12, 0), "ebike_charging", 1, "c-b", "b7"),
    A(at(PREV, 23, 0), "ebike_charging", 1, "c-b", "b7"),
]
APPEALS = [
    P(at(DAY, 7, 0), "c-a", due_h=24, answered_h=3, rating=5),
    P(at(DAY, 9, 0), "c-a", due_h=2, answered_h=5, rating=2),  # answered late: overdue
    P(at(DAY, 10, 0), "c-b", due_h=24, answered_h=1, rating=None),
    P(at(DAY, 11, 0), "c-b", due_h=4, answered_h=None, rating=None),  # past due by now
    P(at(DAY, 23, 30), "c-b", due_h=72, answered_h=None, rating=None),  # not due yet
    P(at(DAY - timedelta(days=1), 12, 0), "c-a", due_h=1, answered_h=None, rating=None),
    P(at(PREV, 12, 0), "c-a", due_h=24, answered_h=2, rating=4),
]
# when the report is made: two days later, 09:00 local
NOW = at(DAY + timedelta(days=2), 9, 0).astimezone(UTC)


@dataclass
class World:
    factory: sessionmaker[Session]
    community: str
    other: str
    users: dict[str, m.User]


def _place(session: Session, community: str) -> None:
    for compound, name in COMPOUNDS.items():
        building = "b1" if compound == "c-a" else "b7"
        register_gateway(
            session, community, compound, f"gw-{community}-{compound}", building=building, **DEVICES
        )
        session.execute(
            update(m.Compound)
            .where(m.Compound.community == community, m.Compound.id == compound)
            .values(name=name)
        )


def _alerts(session: Session, community: str, seed: list[A]) -> None:
    for n, a in enumerate(seed):
        opened = a.local.astimezone(UTC)
        times = [opened]
        row = m.Alert(
            key=f"{community}:{n}:{uuid.uuid4().hex[:6]}",
            active=False,
            kind=a.kind,
            severity=a.severity,
            status="resolved",
            level="building",
            community=community,
            compound=a.compound,
            building=a.building,
            gateway=f"gw-{community}-{a.compound}",
            source="cam-0",
            first_ts=opened,
            last_ts=opened,
            opened_at=opened,
            updated_at=opened,
        )
        session.add(row)
        session.flush()
        log: list[tuple[str, datetime]] = []
        if a.ack_s is not None:
            log.append(("acknowledged", opened + timedelta(seconds=a.ack_s)))
        if a.resolve_s is not None:
            done = opened + timedelta(seconds=a.resolve_s)
            log += [(a.resolve_action, done), ("closed", done + timedelta(hours=1))]
        log += [(action, t.astimezone(UTC)) for action, t in a.escalations]
        log.append(("commented", opened + timedelta(seconds=1)))
        for action, t in log:
            session.add(
                m.AlertTransition(
                    alert_id=row.id,
                    action=action,
                    from_status="open",
                    to_status="open",
                    actor="t",
                    at=t,
                )
            )
            times.append(t)
        row.updated_at = max(times)


def _appeals(session: Session, community: str) -> None:
    for p in APPEALS:
        created = p.local.astimezone(UTC)
        answered = created + timedelta(hours=p.answered_h) if p.answered_h is not None else None
        session.add(
            m.Appeal(
                ticket=uuid.uuid4().hex[:20],
                origin="resident",
                community=community,
                compound=p.compound,
                category="other",
                category_source="fallback",
                text="噪音",
                status="answered" if answered else "submitted",
                responsible_kind="property",
                responsible_id=p.compound,
                due_at=created + timedelta(hours=p.due_h),
                replied_at=answered,
                reply="已处理" if answered else None,
                rating=p.rating,
                created_at=created,
                updated_at=answered or created,
            )
        )


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    community, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        for c in (community, other):
            _place(s, c)
        s.flush()
        _alerts(s, community, ALERTS)
        _appeals(s, community)
        # another community's day: never in ours
        _alerts(s, other, [A(at(DAY, 12, 0), "smoke_alarm", 3, "c-a", "b1", ack_s=1)] * 3)
        # devices: compound a's gateway heard just now, one camera offline; b's silent
        s.execute(
            update(m.Gateway)
            .where(m.Gateway.id == f"gw-{community}-c-a")
            .values(
                state="online",
                last_seen=NOW - timedelta(seconds=20),
                health={"cameras": {"cam-2": "offline"}},
            )
        )
        s.execute(
            update(m.Gateway)
            .where(m.Gateway.id == f"gw-{community}-c-b")
            .values(state="online", last_seen=NOW - timedelta(minutes=10))
        )
        users = {
            "community": m.User(community=community, compound=None, building=None),
            "compound": m.User(community=community, compound="c-b", building=None),
            "other": m.User(community=other, compound=None, building=None),
        }
    return World(factory, community, other, users)


# --- what the report must say, from the seed alone ----------------------------------


def _on(local: datetime, d: date) -> bool:
    return local.astimezone(TZ).date() == d


def _p(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    return statistics.median(values), statistics.quantiles(values, n=10, method="inclusive")[8]


def expected(seed: list[A], appeals: list[P], compound: str | None = None) -> dict[str, Any]:
    mine = [a for a in seed if compound is None or a.compound == compound]
    day = [a for a in mine if _on(a.local, DAY)]
    prev = [a for a in mine if _on(a.local, PREV)]

    def breaches(d: date) -> Counter[str]:
        return Counter(act for a in mine for act, t in a.escalations if _on(t, d))

    def appeals_on(d: date) -> list[P]:
        return [p for p in appeals if _on(p.local, d) and compound in (None, p.compound)]

    spots = Counter((a.kind, a.compound, a.building or "") for a in day)
    top = sorted(((n, k) for k, n in spots.items() if n > 1), key=lambda x: (-x[0], x[1]))[:5]
    ap = appeals_on(DAY)
    ratings = [p.rating for p in ap if p.rating is not None]
    overdue = [
        p
        for p in ap
        if (p.answered_h is not None and p.answered_h > p.due_h)
        or (p.answered_h is None and p.local + timedelta(hours=p.due_h) < NOW)
    ]
    hours = [Counter[int]() for _ in range(24)]
    for a in day:
        hours[a.local.hour][a.severity] += 1
    this = {
        "opened": len(day),
        "sla_breaches": sum(breaches(DAY).values()),
        "appeals": len(ap),
        **{f"severity_{s}": sum(a.severity == s for a in day) for s in (1, 2, 3)},
    }
    last = {
        "opened": len(prev),
        "sla_breaches": sum(breaches(PREV).values()),
        "appeals": len(appeals_on(PREV)),
        **{f"severity_{s}": sum(a.severity == s for a in prev) for s in (1, 2, 3)},
    }
    return {
        "by_severity": {s: sum(a.severity == s for a in day) for s in (1, 2, 3)},
        "by_kind": Counter(a.kind for a in day),
        "by_kind_severity": Counter((a.kind, a.severity) for a in day),
        "by_compound": Counter(a.compound for a in day),
        "by_hour": [{s: h[s] for s in (1, 2, 3)} for h in hours],
        "ack": _p([a.ack_s for a in day if a.ack_s is not None]),
        "ack_n": sum(a.ack_s is not None for a in day),
        "resolve": _p([a.resolve_s for a in day if a.resolve_s is not None]),
        "resolve_n": sum(a.resolve_s is not None for a in day),
        "breaches": breaches(DAY),
        "hotspots": [(k, c, b or None, n) for n, (k, c, b) in top],
        "appeals": (
            len(ap),
            sum(p.answered_h is not None for p in ap),
            len(overdue),
            len(ratings),
            statistics.mean(ratings) if ratings else None,
        ),
        "this": this,
        "last": last,
        "change": {
            k: round((this[k] - last[k]) / last[k] * 100, 1) if last[k] else None for k in this
        },
    }


def _check(report: DailyReport, want: dict[str, Any]) -> None:
    assert report.counts.by_severity == want["by_severity"]
    assert {k.kind: k.count for k in report.by_kind} == dict(want["by_kind"])
    assert {(k.kind, s): n for k in report.by_kind for s, n in k.by_severity.items() if n} == dict(
        want["by_kind_severity"]
    )
    assert {p.compound: p.count for p in report.by_place} == dict(want["by_compound"])
    assert {p.name for p in report.by_place} <= set(COMPOUNDS.values())
    assert report.by_hour == want["by_hour"]
    for got, (median, p90), n in (
        (report.acknowledge, want["ack"], want["ack_n"]),
        (report.resolve, want["resolve"], want["resolve_n"]),
    ):
        assert got.count == n
        assert got.median_s == pytest.approx(median, abs=0.01)
        assert got.p90_s == pytest.approx(p90, abs=0.01)
    assert {k: v for k, v in report.breaches_by_action.items() if v} == dict(want["breaches"])
    assert [(h.kind, h.compound, h.building, h.count) for h in report.hotspots] == want["hotspots"]
    ap = report.appeals
    opened, answered, overdue, rated, mean = want["appeals"]
    assert (ap.opened, ap.answered, ap.overdue, ap.rated) == (opened, answered, overdue, rated)
    assert ap.mean_rating == pytest.approx(mean)
    assert report.counts.flat() == want["this"]
    assert report.week.previous.flat() == want["last"]
    assert report.week.change_pct == want["change"]


def test_the_days_figures_equal_the_seeds(world: World) -> None:
    with world.factory() as s:
        report = daily_report(s, world.users["community"], DAY, now=NOW)
    want = expected(ALERTS, APPEALS)
    _check(report, want)
    # the seed's own sanity: the boundaries are where the test means them to be
    assert report.counts.opened == 12 and want["last"]["opened"] == 4
    assert want["breaches"] == {"escalated": 2, "whistled": 1}
    assert report.start == datetime(2026, 3, 10, 16, tzinfo=UTC)
    assert report.end == datetime(2026, 3, 11, 16, tzinfo=UTC)
    # devices alive now: a's gateway and 3 of its 4 devices; b's gateway is silent
    dev = report.devices
    assert (dev.gateways_online, dev.gateways_total) == (1, 2)
    assert (dev.devices_online, dev.devices_total) == (3, 8)
    body = report.to_json()
    assert body["counts"]["by_severity"] == {str(k): v for k, v in want["by_severity"].items()}
    assert body["devices"]["share"] == pytest.approx(3 / 8)
    assert body["day"] == "2026-03-11"


def test_a_users_report_is_their_area_only(world: World) -> None:
    with world.factory() as s:
        compound = daily_report(s, world.users["compound"], DAY, now=NOW)
        other = daily_report(s, world.users["other"], DAY, now=NOW)
    _check(compound, expected(ALERTS, APPEALS, compound="c-b"))
    assert (compound.devices.gateways_total, compound.devices.devices_total) == (1, 4)
    assert other.counts.opened == 3 and other.appeals.opened == 0
    assert [(p.compound, p.count) for p in other.by_place] == [("c-a", 3)]
    assert other.acknowledge.count == 3 and other.acknowledge.median_s == pytest.approx(1, abs=0.01)


# --- rendering ---------------------------------------------------------------------


@pytest.fixture
def report(world: World) -> DailyReport:
    with world.factory() as s:
        return daily_report(s, world.users["community"], DAY, now=NOW)


def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils")
    path = tmp_path / "daily.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        [tool, "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_pdf_carries_the_chinese_and_the_html_fetches_nothing(
    report: DailyReport, tmp_path: Path
) -> None:
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF")
    text = _pdftotext(pdf, tmp_path)
    for words in (
        "日报",
        "2026-03-11",
        "消防通道违停",
        "烟感报警",
        "阳光花园",
        "锦绣家园",
        "周同比",
        "高发点位",
        "居民诉求",
        "中位数",
    ):
        assert words in text, words
    # a page to look at: var/test-artefacts/awareness/daily-1.png (and the HTML beside it)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "daily.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "70", "-png", str(ARTEFACTS / "daily.pdf"), str(ARTEFACTS / "daily")],
        check=True,
    )
    assert (ARTEFACTS / "daily-1.png").stat().st_size > 10_000

    html = render_html(report)
    (ARTEFACTS / "daily.html").write_text(html, encoding="utf-8")
    assert "日报" in html and "消防通道违停" in html and "阳光花园" in html
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') == 3


# --- the API -----------------------------------------------------------------------


@pytest.fixture
def api(world: World) -> Iterator[tuple[TestClient, dict[str, str]]]:
    clock = ManualClock(NOW)
    state = ApiState(settings=Settings(environment="test"), factory=world.factory, clock=clock)
    with transaction(world.factory) as s:
        user = m.User(
            username=f"u-{uuid.uuid4().hex[:10]}",
            password_hash="x",
            role="duty",
            community=world.community,
            active=True,
            created_at=NOW,
        )
        s.add(user)
        s.flush()
        token = auth.issue_token(s, user, now=NOW, ttl_s=3600)
    with TestClient(create_api(state)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_api_answers_json_html_and_pdf(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    url = "/api/reports/daily"
    r = client.get(url, params={"day": DAY.isoformat()}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["counts"]["opened"] == 12 and body["appeals"]["opened"] == 5
    assert body["scope"]["community"] is not None

    r = client.get(url, params={"day": DAY.isoformat(), "format": "html"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'attachment; filename="daily-report-2026-03-11.html"' in r.headers["content-disposition"]
    assert "消防通道违停" in r.text

    r = client.get(url, params={"day": DAY.isoformat(), "format": "pdf"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].endswith('filename="daily-report-2026-03-11.pdf"')
    assert r.content.startswith(b"%PDF")

    # yesterday by default (the clock's: 2026-03-12, local)
    assert client.get(url, headers=headers).json()["day"] == "2026-03-12"
    for bad in ("2026-02-30", "yesterday", "0001-01-01", "9999-12-31"):
        assert client.get(url, params={"day": bad}, headers=headers).status_code == 422, bad
    assert client.get(url, params={"format": "docx"}, headers=headers).status_code == 422
    assert client.get(url).status_code == 401


def test_a_missing_cjk_font_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloud.awareness import fonts

    monkeypatch.setattr(fonts, "CJK_FILES", {"Regular": Path("/nonexistent/font.ttc")})
    fonts.cjk_family.cache_clear()
    try:
        with pytest.raises(fonts.FontMissing, match="apt-get install fonts-noto-cjk"):
            fonts.cjk_family()
    finally:
        fonts.cjk_family.cache_clear()


def test_the_lean_font_is_made_once_and_draws_the_same_chinese(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PDF's font is a lean copy of the SC face (no layout tables, renamed), made once
    into matplotlib's cache; where it cannot be made the collection is used instead."""
    from fontTools.ttLib import TTFont

    from cloud.awareness import fonts

    made = fonts._lean_family(tmp_path)
    assert made == fonts.LEAN_FAMILY
    (regular,) = tmp_path.glob("MicrobrainCJKSC-Regular-*.otf")
    lean = TTFont(regular)
    assert lean["name"].getDebugName(1) == fonts.LEAN_FAMILY
    assert not any(tag in lean for tag in fonts.DROPPED_TABLES)
    cmap = lean.getBestCmap()
    assert all(ord(c) in cmap for c in "社区微脑日报告警")
    stamp = regular.stat().st_mtime_ns
    assert fonts._lean_family(tmp_path) == fonts.LEAN_FAMILY  # found, not made again
    assert regular.stat().st_mtime_ns == stamp
    # a cache that cannot be written: the full collection, not a failure
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert fonts._lean_family(blocked / "fonts") is None
