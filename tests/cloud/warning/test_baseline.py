"""Warnings against a subject's own hour-of-week baseline, over a real database (SQLite
and PostgreSQL) with generated Poisson histories (seeded), and the test's error rates
by simulation through the pure core.

Histories are inserted in bulk (``insert_many``) as event rows and appeal rows: nine
weeks of faults for a dozen elevators are ~9,000 rows a test, which the ingest's ledger
and dedupe phases (tested elsewhere) would only slow down.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts import AlertStatus
from cloud.db import models as m
from cloud.db import transaction
from cloud.ingest.items import insert_many
from cloud.warning.baseline import (
    APPEAL_RULE,
    DEFAULT_BASELINES,
    ELEVATOR_FAULT_RULE,
    HOURS_PER_WEEK,
    BaselinePolicy,
    BaselineReport,
    BaselineRule,
    evaluate,
    expected_rates,
    hour_of_week,
    judge,
    load_baselines,
    window_profile,
)
from microbrain.config_files import ConfigFileError
from microbrain.protocol import GatewayPath

# a Monday 00:00 Beijing time; histories start a day earlier so that 8 whole weeks lie
# between the first event and the judged window
START = datetime(2026, 3, 1, 16, tzinfo=UTC)
NOW = START + timedelta(weeks=9, minutes=5)  # the window: the 9th week
# faults by hour of the day: few at night, most in the day (mean 1)
DAY = np.array([0.3] * 7 + [1.4] * 12 + [1.0] * 5)
PROFILE = np.tile(DAY / DAY.mean(), 7)  # by hour of the week from START
WEEKLY = 80.0  # an elevator's normal faults a week: doubling is detected with power ~1


def hourly_counts(seed: int, weeks: float, weekly: float, double_from: float | None) -> np.ndarray:
    """Poisson counts per hour from START - 1 day for ``weeks`` (+ the day), at
    ``weekly`` with the daily profile; doubled from week ``double_from``."""
    rng = np.random.default_rng(seed)
    hours = int((weeks * 7 + 1) * 24)
    how = (np.arange(hours) - 24) % HOURS_PER_WEEK
    rate = weekly / HOURS_PER_WEEK * PROFILE[how]
    if double_from is not None:
        rate[np.arange(hours) >= 24 + double_from * HOURS_PER_WEEK] *= 2
    return rng.poisson(rate)


def times(counts: np.ndarray, seed: int) -> list[datetime]:
    rng = np.random.default_rng(seed + 10_000)
    base = START - timedelta(days=1)
    out = []
    for h, n in enumerate(counts):
        for minute in sorted(rng.uniform(0, 60, int(n))):
            out.append(base + timedelta(hours=h, minutes=float(minute)))
    return out


def store_faults(
    factory: sessionmaker[Session], gw: GatewayPath, source: str, ts: list[datetime]
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "gateway": gw.gateway,
            "seq": None,
            "ts": t,
            "received_at": t,
            "community": gw.community,
            "compound": gw.compound,
            "building": "b1",
            "kind": "elevator_fault",
            "state": "raised",
            "severity": 2,
            "source": source,
            "zone": None,
            "message": None,
            "payload": {},
            "alert_id": None,
        }
        for t in ts
    ]
    with transaction(factory) as s:
        insert_many(s, m.EventRow, rows)


def store_appeals(
    factory: sessionmaker[Session], community: str, compound: str, ts: list[datetime]
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "ticket": uuid.uuid4().hex[:24],
            "access_sha256": None,
            "origin": "resident",
            "external_id": None,
            "community": community,
            "compound": compound,
            "building": None,
            "category": "repairs",
            "category_source": "text",
            "matched": [],
            "text": "楼道灯坏了",
            "contact": None,
            "contact_sha256": None,
            "status": "closed",
            "responsible_kind": "property",
            "responsible_id": compound,
            "due_at": t + timedelta(days=1),
            "escalated_at": None,
            "alert_id": None,
            "reply": None,
            "replied_by": None,
            "replied_at": None,
            "rating": None,
            "rating_comment": None,
            "rated_at": None,
            "created_at": t,
            "updated_at": t,
        }
        for t in ts
    ]
    with transaction(factory) as s:
        insert_many(s, m.Appeal, rows)


def run_at(
    factory: sessionmaker[Session], now: datetime, community: str, rule: BaselineRule
) -> BaselineReport:
    with transaction(factory) as s:
        return evaluate(s, [rule], now, community=community)


def warnings(factory: sessionmaker[Session], community: str, kind: str) -> list[m.Alert]:
    with factory() as s:
        return list(
            s.scalars(
                select(m.Alert)
                .where(m.Alert.community == community, m.Alert.kind == kind)
                .order_by(m.Alert.source)
            )
        )


NORMAL = [f"elev-n{i}" for i in range(8)]  # eight seeds at the normal rate
DOUBLED = [f"elev-d{i}" for i in range(4)]  # four doubled in the 9th week


def test_a_doubled_elevator_fault_rate_warns_and_a_normal_week_does_not(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    for i, source in enumerate(NORMAL + DOUBLED):
        doubled = source in DOUBLED
        counts = hourly_counts(i, 10, WEEKLY, 8.0 if doubled else None)
        # week 10 is normal again for every elevator
        if doubled:
            counts[24 + 9 * HOURS_PER_WEEK :] = hourly_counts(i + 50, 10, WEEKLY, None)[
                24 + 9 * HOURS_PER_WEEK :
            ]
        store_faults(factory, gw, source, times(counts, i))
    report = run_at(factory, NOW, gw.community, ELEVATOR_FAULT_RULE)
    by_source = {a.subject.source: a for a in report.assessments}
    assert set(by_source) == set(NORMAL + DOUBLED)
    for source in NORMAL:
        a = by_source[source]
        assert a.verdict is not None and not a.verdict.warn, (source, a.verdict)
        assert a.action == "quiet" and a.weeks == 8
    for source in DOUBLED:
        a = by_source[source]
        assert a.verdict is not None and a.verdict.warn and a.action == "raised", a.verdict
        assert a.verdict.observed > 1.5 * a.verdict.expected
        assert a.verdict.p < ELEVATOR_FAULT_RULE.alpha
        # λ is the elevator's own week: about WEEKLY
        assert 0.8 * WEEKLY < a.verdict.expected < 1.2 * WEEKLY
    alerts = warnings(factory, gw.community, "elevator_fault_rate_high")
    assert [a.source for a in alerts] == sorted(DOUBLED)
    first = alerts[0]
    assert first.active and first.status == AlertStatus.OPEN and first.building == "b1"
    assert first.gateway == gw.gateway and first.severity == 2
    msg = first.message or ""
    v = by_source[first.source].verdict
    assert v is not None
    for words in (
        "电梯故障频次预警",
        "近 7 天",
        f"{v.observed} 次",
        "前 8 周同一时段基线",
        "预期",
        "p=",
    ):
        assert words in msg, (words, msg)
    with factory() as s:
        (raised,) = s.scalars(select(m.EventRow).where(m.EventRow.alert_id == first.id))
    detail = raised.payload["detail"]
    assert detail["observed"] == v.observed and detail["history_weeks"] == 8
    assert abs(detail["expected"] - v.expected) < 1e-3 and detail["p"] < 1e-3
    assert detail["window_h"] == 168 and detail["test"] == "poisson_upper_tail"

    # the same hour again: refreshed, not opened twice
    again = run_at(factory, NOW + timedelta(minutes=20), gw.community, ELEVATOR_FAULT_RULE)
    assert (
        sorted(a.action for a in again.assessments if a.subject.source in DOUBLED)
        == ["refreshed"] * 4
    )
    assert len(warnings(factory, gw.community, "elevator_fault_rate_high")) == 4

    # a normal week after: every warning cleared, none raised
    later = run_at(factory, NOW + timedelta(weeks=1), gw.community, ELEVATOR_FAULT_RULE)
    actions = {a.subject.source: a.action for a in later.assessments}
    assert {actions[s] for s in DOUBLED} == {"cleared"}
    assert {actions[s] for s in NORMAL} == {"quiet"}
    alerts = warnings(factory, gw.community, "elevator_fault_rate_high")
    assert len(alerts) == 4 and not any(a.active for a in alerts)
    with factory() as s:
        clears = s.scalars(
            select(m.EventRow).where(
                m.EventRow.alert_id.in_([a.id for a in alerts]), m.EventRow.state == "cleared"
            )
        ).all()
    assert len(clears) == 4 and all("已回到基线范围" in (c.message or "") for c in clears)


def test_a_device_without_enough_history_gets_no_verdict(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    # first heard of three weeks ago (one whole week before the judged one), a burst
    # now: no baseline yet, no warning
    recent = [NOW - timedelta(weeks=3)] + [NOW - timedelta(hours=h) for h in range(1, 40)]
    store_faults(factory, gw, "elev-new", recent)
    report = run_at(factory, NOW, gw.community, ELEVATOR_FAULT_RULE)
    (a,) = report.assessments
    assert a.action == "insufficient" and a.weeks == 1 and a.verdict is None
    assert report.insufficient == 1
    assert warnings(factory, gw.community, "elevator_fault_rate_high") == []


def test_a_compound_appeal_rate_well_above_its_own_baseline_warns(
    factory: sessionmaker[Session],
) -> None:
    community = f"t-{uuid.uuid4().hex[:8]}"
    normal = ["c-n0", "c-n1", "c-n2", "c-n3"]
    for i, compound in enumerate([*normal, "c-up"]):
        counts = hourly_counts(200 + i, 9, WEEKLY, 8.0 if compound == "c-up" else None)
        store_appeals(factory, community, compound, times(counts, 200 + i))
    report = run_at(factory, NOW, community, APPEAL_RULE)
    by = {a.subject.compound: a for a in report.assessments}
    assert {c for c, a in by.items() if a.action == "raised"} == {"c-up"}
    assert {by[c].action for c in normal} == {"quiet"}
    (alert,) = warnings(factory, community, "appeal_rate_high")
    assert alert.compound == "c-up" and alert.building is None and alert.gateway == "cloud"
    v = by["c-up"].verdict
    assert v is not None and v.p < APPEAL_RULE.alpha
    assert "居民诉求频次预警：小区 c-up" in (alert.message or "")
    with factory() as s:
        assert s.get(m.Gateway, "cloud") is None  # the stand-in is never stored


def test_false_alarm_rate_is_tiny_and_a_doubling_is_caught() -> None:
    """Through the pure core: 4,000 simulated elevators, 8 weeks of history each, then a
    normal or a doubled week, judged with the default rule (alpha 0.001)."""
    rule = ELEVATOR_FAULT_RULE
    rng = np.random.default_rng(2026)
    n = 4000
    rate = 60.0 / HOURS_PER_WEEK * PROFILE
    history = rng.poisson(rate, size=(n, 8, HOURS_PER_WEEK)).sum(axis=1)
    expected = expected_rates(history, 8, rule.prior_weeks, rule.floor_per_week / 168).sum(axis=1)
    normal = rng.poisson(rate, size=(n, HOURS_PER_WEEK)).sum(axis=1)
    doubled = rng.poisson(2 * rate, size=(n, HOURS_PER_WEEK)).sum(axis=1)
    false_alarms = sum(
        judge(rule, int(k), float(e)).warn for k, e in zip(normal, expected, strict=True)
    )
    caught = sum(judge(rule, int(k), float(e)).warn for k, e in zip(doubled, expected, strict=True))
    # alpha is 0.001 per judged window; λ estimated from 8 weeks adds a little (~0.0013)
    assert false_alarms / n <= 0.004, false_alarms
    assert caught / n >= 0.99, caught


def test_smoothing_keeps_the_week_and_floors_sparse_hours() -> None:
    counts = np.zeros(HOURS_PER_WEEK)
    counts[10] = 16.0  # 16 faults over 8 weeks, all at Monday 10:00
    rates = expected_rates(counts, 8, 2.0, 0.0)
    assert rates.sum() == pytest.approx(2.0)  # the week's total: 16 / 8
    assert rates[10] == pytest.approx((16 + 2 * 16 / (8 * 168)) / 10)
    assert rates[11] == pytest.approx(2 * 16 / (8 * 168) / 10)  # borrowed, not zero
    floored = expected_rates(np.zeros(HOURS_PER_WEEK), 8, 2.0, 1 / 168)
    assert floored.sum() == pytest.approx(1.0)  # a quiet subject still expects 1 a week
    assert not judge(ELEVATOR_FAULT_RULE, 1, 0.0001).warn  # one event is never a warning
    # between the two alphas a standing warning stays; under min_count it always clears
    mid = judge(ELEVATOR_FAULT_RULE, 20, 12.0)
    assert 1e-3 < mid.p < 0.05 and not mid.warn and not mid.within
    few = judge(ELEVATOR_FAULT_RULE, 4, 0.1)
    assert few.p < 1e-3 and not few.warn and few.within
    # hour of the week in Beijing time; a window's hours by hour of the week
    assert hour_of_week(datetime(2026, 3, 1, 16, tzinfo=UTC)) == 0  # Mon 00:00 +08
    assert window_profile(START, 336).tolist() == [2.0] * HOURS_PER_WEEK


def test_policy_defaults_need_no_file_and_a_bad_file_names_its_line(tmp_path: Path) -> None:
    assert {r.alert_kind for r in DEFAULT_BASELINES.rules} == {
        "elevator_fault_rate_high",
        "appeal_rate_high",
    }
    good = tmp_path / "baselines.yaml"
    good.write_text(
        "rules:\n  - subject: events\n    kind: door_fault\n"
        "    label: 门禁故障\n    window_h: 24\n",
        encoding="utf-8",
    )
    (rule,) = load_baselines(good).rules
    assert rule.window_h == 24 and rule.alert_kind == "door_fault_rate_high"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - subject: events\n    kind: door_fault\n    label: x\n    alpah: 0.01\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as err:
        load_baselines(bad)
    assert "bad.yaml" in str(err.value) and "line 5" in str(err.value), str(err.value)
    for wrong in (
        {"alpha": 0.1, "clear_alpha": 0.05},
        {"min_history_weeks": 9},
        {"categories": ("repairs",)},
    ):
        with pytest.raises(ValueError):
            BaselineRule(subject="events", kind="x", label="x", **wrong)
    with pytest.raises(ValueError, match="two rules"):
        BaselinePolicy(rules=(ELEVATOR_FAULT_RULE, ELEVATOR_FAULT_RULE))
