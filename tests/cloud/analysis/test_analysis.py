"""The analysis queries on both stores: every figure equals what this test computes from
the seed list (tests/cloud/analysis/district.py), a compound's user never sees another
compound's alerts, the API validates ``by``, and on PostgreSQL a ranged count reads
alerts through an index."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, text
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.analysis import queries as q
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.errors import Invalid
from cloud.settings import Settings
from tests.cloud.analysis.district import (
    ALERTS,
    BUILDINGS,
    COMPOUNDS,
    NOW,
    TZ,
    A,
    District,
    seed_district,
)

WEEK_START, WEEK_END = q.local_day_range(date(2026, 3, 2), date(2026, 3, 8))


@pytest.fixture
def district(factory: sessionmaker[Session]) -> District:
    return seed_district(factory)


def _within(a: A, start: datetime, end: datetime) -> bool:
    return start <= a.local < end


def _expect(
    pred: Callable[[A], bool], key: Callable[[A], Any], start: datetime, end: datetime
) -> Counter[Any]:
    return Counter(key(a) for a in ALERTS if _within(a, start, end) and pred(a))


def test_shanghai_has_one_offset_over_the_stored_years() -> None:
    # local days and hours in SQL add 8 hours: true for every time since 1991
    offsets = {
        datetime(y, mo, 15, tzinfo=UTC).astimezone(TZ).utcoffset()
        for y in range(1992, 2100)
        for mo in (1, 7)
    }
    assert offsets == {timedelta(hours=8)}


@pytest.mark.parametrize(
    "by",
    [
        ("compound",),
        ("building",),
        ("kind",),
        ("level",),
        ("severity",),
        ("day",),
        ("hour",),
        ("compound", "kind"),
    ],
)
def test_counts_by_each_group_equal_the_seed(district: District, by: tuple[str, ...]) -> None:
    start, end = q.local_day_range(date(2026, 2, 20), date(2026, 3, 11))
    getters: dict[str, Callable[[A], Any]] = {
        "compound": lambda a: a.compound,
        "building": lambda a: a.building,
        "kind": lambda a: a.kind,
        "level": lambda a: a.level,
        "severity": lambda a: a.severity,
        "day": lambda a: a.local.date().isoformat(),
        "hour": lambda a: a.local.hour,
    }
    want = _expect(lambda a: True, lambda a: tuple(getters[g](a) for g in by), start, end)
    with district.factory() as s:
        got = q.counts(s, district.user(), q.AnalysisFilter(start=start, end=end), by)
    have: Counter[Any] = Counter()
    for r in got.rows:  # a building groups within its compound: the grounds of each apart
        have[tuple(r.keys[g] for g in by)] += r.count
    assert have == want
    if by == ("building",):
        assert len(got.rows) == len(
            {(a.compound, a.building) for a in ALERTS if _within(a, start, end)}
        )
    assert got.total == sum(want.values())
    counts = [r.count for r in got.rows]
    assert counts == sorted(counts, reverse=True)
    if "compound" in by:  # named for people, and grouped within the community
        assert all(r.keys["compound_name"] == COMPOUNDS[r.keys["compound"]] for r in got.rows)
        assert all(r.keys["community"] == district.community for r in got.rows)
    if "building" in by:
        assert {r.keys["building_name"] for r in got.rows if r.keys["building"]} <= {
            n for b in BUILDINGS.values() for n in b.values()
        }


def test_filters_combine(district: District) -> None:
    start, end = q.local_day_range(date(2026, 2, 1), date(2026, 3, 11))
    flt = q.AnalysisFilter(
        start=start,
        end=end,
        places=(q.Place(district.community, "c-xy"), q.Place(district.community, "c-dy", "b5")),
        kinds=("illegal_parking", "ebike_charging", "smoke_alarm"),
        severities=(2, 3),
        hours=(22, 23, 0, 1, 2, 3, 4, 5),
    )
    want = sum(
        1
        for a in ALERTS
        if _within(a, start, end)
        and (a.compound == "c-xy" or (a.compound, a.building) == ("c-dy", "b5"))
        and a.kind in flt.kinds
        and a.severity in (2, 3)
        and (a.local.hour >= 22 or a.local.hour < 6)
    )
    with district.factory() as s:
        assert q.count(s, district.user(), flt) == want
        levels = q.AnalysisFilter(start=start, end=end, levels=("compound",))
        assert q.count(s, district.user(), levels) == sum(
            1 for a in ALERTS if a.level == "compound" and _within(a, start, end)
        )


def test_a_compound_user_never_sees_another_compound(district: District) -> None:
    start, end = q.local_day_range(date(2026, 2, 1), date(2026, 3, 11))
    user = district.user(compound="c-dy")
    mine = [a for a in ALERTS if a.compound == "c-dy" and _within(a, start, end)]
    with district.factory() as s:
        got = q.counts(s, user, q.AnalysisFilter(start=start, end=end), ("compound",))
        assert [(r.keys["compound"], r.count) for r in got.rows] == [("c-dy", len(mine))]
        # naming another compound (or another community) counts nothing
        for place in (q.Place(district.community, "c-xy"), q.Place(district.other, "c-dy")):
            flt = q.AnalysisFilter(start=start, end=end, places=(place,))
            assert q.count(s, user, flt) == 0
            assert q.top(s, user, flt, "building") == []
        assert {p.compound for p in q.top(s, user, q.AnalysisFilter(), "compound")} == {"c-dy"}
        stranger = district.user(community=district.other)
        assert q.count(s, stranger, q.AnalysisFilter(start=start, end=end)) == 3


def _pct(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    return statistics.median(values), statistics.quantiles(values, n=10, method="inclusive")[8]


def test_durations_equal_the_seed(district: District) -> None:
    start, end = q.local_day_range(date(2026, 2, 1), date(2026, 3, 11))
    for kinds in ((), ("elevator_fault",)):
        mine = [a for a in ALERTS if _within(a, start, end) and (not kinds or a.kind in kinds)]
        acks = [a.ack_s for a in mine if a.ack_s is not None]
        res = [a.resolve_s for a in mine if a.resolve_s is not None]
        with district.factory() as s:
            got = q.durations(
                s, district.user(), q.AnalysisFilter(start=start, end=end, kinds=kinds)
            )
        assert got.alerts == len(mine)
        assert got.acknowledge.count == len(acks)
        assert got.resolve.count == len(res)
        for have, want in ((got.acknowledge, _pct(acks)), (got.resolve, _pct(res))):
            assert have.median_s == pytest.approx(want[0], abs=1e-3)
            assert have.p90_s == pytest.approx(want[1], abs=1e-3)


def test_trend_sets_each_day_beside_the_period_before(district: District) -> None:
    first, last = date(2026, 3, 5), date(2026, 3, 11)
    with district.factory() as s:
        got = q.trend(s, district.user(), q.AnalysisFilter(kinds=("illegal_parking",)), first, last)
    per_day = Counter(a.local.date() for a in ALERTS if a.kind == "illegal_parking")
    assert [p.day for p in got.points] == [first + timedelta(days=i) for i in range(7)]
    for p in got.points:
        assert p.previous_day == p.day - timedelta(days=7)
        assert (p.count, p.previous) == (per_day[p.day], per_day[p.previous_day])
    assert got.total == sum(per_day[first + timedelta(days=i)] for i in range(7))


def test_top_places(district: District) -> None:
    start, end = WEEK_START, WEEK_END
    with district.factory() as s:
        got = q.top(s, district.user(), q.AnalysisFilter(start=start, end=end), "building", 3)
    want = _expect(lambda a: a.building is not None, lambda a: (a.compound, a.building), start, end)
    ranked = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [((p.compound, p.building), p.count) for p in got] == ranked
    assert all(
        p.name == f"{COMPOUNDS[p.compound or '']} {BUILDINGS[p.compound or ''][p.building or '']}"
        for p in got
    )


def test_bad_filters_are_refused() -> None:
    with pytest.raises(Invalid, match="community, compound, building, kind"):
        q.parse_groups("compound,colour")
    with pytest.raises(Invalid, match="at most 3"):
        q.parse_groups("community,compound,building,kind")
    with pytest.raises(Invalid, match="after"):
        q.AnalysisFilter(start=NOW, end=NOW)
    with pytest.raises(Invalid, match="severity"):
        q.AnalysisFilter(severities=(4,))


# --- the API --------------------------------------------------------------------------


@pytest.fixture
def api(district: District) -> Iterator[tuple[TestClient, dict[str, str]]]:
    state = ApiState(
        settings=Settings(environment="test"), factory=district.factory, clock=ManualClock(NOW)
    )
    with transaction(district.factory) as s:
        user = m.User(
            username=f"u-{uuid.uuid4().hex[:10]}",
            password_hash="x",
            role="duty",
            community=district.community,
            compound="c-xy",
            active=True,
            created_at=NOW,
        )
        s.add(user)
        s.flush()
        token = auth.issue_token(s, user, now=NOW, ttl_s=3600)
    with TestClient(create_api(state)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_api(api: tuple[TestClient, dict[str, str]], district: District) -> None:
    client, headers = api
    week = {"since": WEEK_START.isoformat(), "until": WEEK_END.isoformat()}
    r = client.get("/api/analysis/counts", params={**week, "by": "compound,kind"}, headers=headers)
    assert r.status_code == 200, r.text
    want = _expect(lambda a: a.compound == "c-xy", lambda a: a.kind, WEEK_START, WEEK_END)
    assert {row["kind"]: row["count"] for row in r.json()["rows"]} == dict(want)
    assert {row["compound"] for row in r.json()["rows"]} == {"c-xy"}

    r = client.get("/api/analysis/counts", params={"by": "colour"}, headers=headers)
    assert r.status_code == 422
    assert "community, compound, building, kind, level, severity, day, hour" in r.json()["detail"]
    assert (
        client.get("/api/analysis/counts", params={"severity": 7}, headers=headers).status_code
        == 422
    )
    assert (
        client.get(
            "/api/analysis/counts", params={"since": "2026-03-01T00:00"}, headers=headers
        ).status_code
        == 422
    )
    assert client.get("/api/analysis/counts").status_code == 401

    r = client.get(
        "/api/analysis/top", params={**week, "place": "building", "n": 2}, headers=headers
    )
    assert r.status_code == 200 and all(row["compound"] == "c-xy" for row in r.json()["rows"])
    r = client.get("/api/analysis/durations", params=week, headers=headers)
    assert r.status_code == 200 and r.json()["alerts"] == sum(want.values())
    r = client.get(
        "/api/analysis/trend",
        params={"first": "2026-03-02", "last": "2026-03-08", "kind": "illegal_parking"},
        headers=headers,
    )
    assert r.status_code == 200
    assert r.json()["total"] == want["illegal_parking"]


# --- indexes on PostgreSQL ------------------------------------------------------------


N_INDEXED = 40_000


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_ranged_count_reads_alerts_through_an_index(factory: sessionmaker[Session]) -> None:
    """40,000 alerts over 300 days in one community (the table is shared by the test
    session: other tests' rows only add to it), analysed; a week's counts for the
    community or a compound must not scan the table. The rows are deleted afterwards."""
    community = f"t-{uuid.uuid4().hex[:8]}"
    base = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=300) / N_INDEXED
    times = [base + step * i for i in range(N_INDEXED)]
    rows = [
        {
            "key": f"{community}:{i}",
            "active": False,
            "kind": ("illegal_parking", "smoke_alarm", "ebike_charging")[i % 3],
            "severity": 1 + i % 3,
            "status": "resolved",
            "level": "building",
            "community": community,
            "compound": f"c-{i % 40}",
            "building": f"b{i % 7}",
            "gateway": "gw",
            "source": "cam",
            "count": 1,
            "first_ts": t,
            "last_ts": t,
            "opened_at": t,
            "updated_at": t,
            "cleared": False,
        }
        for i, t in enumerate(times)
    ]
    with transaction(factory) as s:
        s.execute(insert(m.Alert), rows)
    try:
        with factory() as s:
            s.execute(text("ANALYZE alerts"))
            start = base + timedelta(days=100)
            flt = q.AnalysisFilter(start=start, end=start + timedelta(days=7))
            user = m.User(community=community, compound=None, building=None)
            stmts = [
                q.select_counts(s, user, flt, ("compound", "kind")),
                q.select_counts(s, user, flt, ("day",)),
                q.select_counts(s, m.User(community=community, compound="c-3"), flt, ("kind",)),
            ]
            for stmt in stmts:
                compiled = stmt.compile(s.get_bind())
                plan = "\n".join(
                    r[0]
                    for r in s.connection().exec_driver_sql(
                        f"EXPLAIN {compiled}", compiled.construct_params()
                    )
                )
                assert "Seq Scan on alerts" not in plan, plan
                assert "ix_alerts_" in plan, plan
            got = q.counts(s, user, flt, ("kind",))
            assert got.total == sum(1 for t in times if start <= t < start + timedelta(days=7))
    finally:
        with transaction(factory) as s:
            s.execute(delete(m.Alert).where(m.Alert.community == community))
