"""Trend warnings over a real database (SQLite and PostgreSQL), a clock stepped day by day.

The histories are inserted as reading rows in bulk (``insert_many``: COPY on PostgreSQL),
not through the ingest: 30-48 days of hourly readings are 700-1,200 rows a test, and the
ingest's ledger, sequence and dedupe phases (tested in tests/cloud/test_ingest*.py) would
add only time. One test stores its readings through the real ingest path
(``tests.cloud.helpers.ingest``) to show the evaluation reads what the ingest writes.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts import AlertStatus
from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.ingest.items import insert_many
from cloud.warning import DEFAULT_RULES, evaluate
from cloud.warning.service import SHANGHAI, Assessment, verdict
from cloud.warning.trend import Crossing, linear_crossing
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import ingest, reading
from tests.cloud.warning.series import LIMIT, START, Series, hourly, hovering, true_crossing

KIND = "hydrant_pressure_trend"


def store(factory: sessionmaker[Session], gw: GatewayPath, series: Series) -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "gateway": gw.gateway,
            "seq": None,
            "ts": ts,
            "sensor": "h1",
            "kind": "hydrant_pressure",
            "community": gw.community,
            "compound": gw.compound,
            "building": "b1",
            "values": {"pressure_mpa": float(v)},
            "units": {"pressure_mpa": "MPa"},
            "faults": [],
            "samples": 1,
        }
        for ts, v in zip(series.times, series.values, strict=True)
    ]
    with transaction(factory) as s:
        insert_many(s, m.ReadingRow, rows)


def alerts(factory: sessionmaker[Session], gw: GatewayPath) -> list[m.Alert]:
    with factory() as s:
        return list(
            s.scalars(
                select(m.Alert)
                .where(m.Alert.gateway == gw.gateway, m.Alert.kind == KIND)
                .order_by(m.Alert.id)
            )
        )


def step(factory: sessionmaker[Session], clock: ManualClock, gw: GatewayPath) -> Assessment:
    """Evaluate at the clock's time; this test's sensor's verdict (the PostgreSQL database
    is shared by the session's tests: the evaluation sees their sensors too)."""
    with transaction(factory) as s:
        report = evaluate(s, DEFAULT_RULES, clock())
    (mine,) = [a for a in report.assessments if a.gateway == gw.gateway]
    return mine


def test_a_decaying_hydrant_warns_before_it_crosses_and_states_when(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    level, rate = 0.29, -0.005  # crosses 0.07 MPa on day 44
    store(factory, gw, hourly(46, level, rate, spikes={10.5: 0.0, 25.25: 0.6, 40.6: 0.0}))
    truth = true_crossing(level, rate)
    clock = ManualClock(START + timedelta(days=3))
    first: datetime | None = None
    while clock() < truth:
        if step(factory, clock, gw).action == "raised":
            assert first is None
            first = clock()
        clock.advance(days=1)
    assert first is not None, "never warned before the true crossing"
    assert truth - timedelta(days=5) <= first < truth  # warned, with days to spare
    (alert,) = alerts(factory, gw)
    assert alert.active and alert.status == AlertStatus.OPEN
    assert alert.severity == 2 and alert.source == "h1" and alert.building == "b1"
    assert alert.count == 1  # refreshed daily, opened once
    msg = alert.message or ""
    # the evidence: the fit, its interval, the window, the limit and the predicted times
    for words in (
        "斜率",
        "90% 区间",
        "72 小时窗口",
        "72 个小时中位点",
        "限值 0.07MPa",
        "预计",
        "最早",
    ):
        assert words in msg, (words, msg)
    assert "GB 50974-2014" in msg
    # the predicted time, Beijing time, within half a day of the truth (the fit is over
    # the last 72 complete hours: the hour in progress is not rolled up yet)
    said = re.search(r"预计 (\d{4}-\d\d-\d\d \d\d:\d\d) 跌破", msg)
    assert said is not None, msg
    predicted = datetime.strptime(said[1], "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)
    assert abs(predicted - truth) < timedelta(hours=12)
    with factory() as s:
        (raised,) = s.scalars(select(m.EventRow).where(m.EventRow.alert_id == alert.id))
    detail = raised.payload["detail"]
    expected = datetime.fromisoformat(detail["expected_at"])
    assert abs(expected - truth) < timedelta(hours=12)
    assert datetime.fromisoformat(detail["pessimistic_at"]) < expected
    assert detail["points"] == 72 and detail["window_h"] == 72
    assert detail["slope_low_per_day"] < detail["slope_per_day"] < detail["slope_high_per_day"]


def test_a_steady_noisy_hydrant_never_warns_in_30_days(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    # 0.10 MPa, 0.03 above the limit, and a burst of three drops to nothing on day 19
    series = hourly(31, 0.10, 0.0, spikes={19.85: 0.0, 19.9: 0.0, 19.95: 0.0}, seed=3)
    store(factory, gw, series)
    clock = ManualClock(START + timedelta(days=1))
    ols_would_fire = False
    for _ in range(30):
        assert not step(factory, clock, gw).warn, clock()
        t, v = series.until(clock(), 72)
        ols = linear_crossing(t, v, LIMIT, "falling", clock().timestamp())
        ols_would_fire |= ols is not None and ols - clock().timestamp() <= 72 * 3600
        clock.advance(days=1)
    assert alerts(factory, gw) == []
    assert ols_would_fire  # a plain predict_linear on the same readings fires falsely


def test_a_recovering_hydrant_clears_its_warning(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    # decaying as above, the pump repaired on day 42: back to 0.30 MPa
    store(factory, gw, hourly(48, 0.29, -0.005, step_at=(42.0, 0.30)))
    clock = ManualClock(START + timedelta(days=39))
    actions = []
    for _ in range(9):
        actions.append(step(factory, clock, gw).action)
        clock.advance(days=1)
    assert "raised" in actions and actions[-1] == "quiet"
    assert actions.count("raised") == 1 and actions.count("cleared") == 1
    assert actions.index("raised") < actions.index("cleared")
    (alert,) = alerts(factory, gw)
    assert not alert.active and alert.cleared and alert.status == AlertStatus.RESOLVED
    with factory() as s:
        states = s.scalars(
            select(m.EventRow.state).where(m.EventRow.alert_id == alert.id).order_by(m.EventRow.pk)
        ).all()
        (note,) = s.scalars(
            select(m.AlertTransition.note).where(
                m.AlertTransition.alert_id == alert.id,
                m.AlertTransition.action == "auto_resolved",
            )
        ).all()
    assert list(states) == ["raised", "cleared"]
    assert "预警解除" in (note or "")  # the clear's evidence is the resolving note


def test_evaluating_twice_opens_one_alert_from_ingested_readings(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    # three days through the real ingest path, 0.05 MPa a day down from 0.1: crossing soon
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    items = [
        reading(h + 1, ts=t0 + timedelta(hours=h), values={"pressure_mpa": 0.10 - 0.05 * h / 24})
        for h in range(72)
    ]
    ingest(factory, gw, items, now=t0 + timedelta(hours=72))
    now = t0 + timedelta(hours=72)
    with transaction(factory) as s:
        first = evaluate(s, DEFAULT_RULES, now)
    with transaction(factory) as s:
        second = evaluate(s, DEFAULT_RULES, now)
    actions = [
        next(a.action for a in r.assessments if a.gateway == gw.gateway) for r in (first, second)
    ]
    assert actions == ["raised", "refreshed"]
    (alert,) = alerts(factory, gw)
    assert alert.count == 1 and alert.active
    with factory() as s:
        transitions = s.scalars(
            select(m.AlertTransition.action).where(m.AlertTransition.alert_id == alert.id)
        ).all()
    assert list(transitions).count("opened") == 1


def test_verdict_holds_a_standing_warning_inside_the_band() -> None:
    rule = DEFAULT_RULES.rules[0]  # 72 h horizon, clears beyond 90 h
    now = START.timestamp()

    def at(hours: float | None) -> Crossing | None:
        if hours is None:
            return None
        return Crossing(None, now + hours * 3600, 0.1, False)

    assert verdict(rule, at(71), now, standing=False) == (True, None)
    assert verdict(rule, at(80), now, standing=False) == (False, None)  # not raised yet
    assert verdict(rule, at(80), now, standing=True) == (True, None)  # held
    assert verdict(rule, at(90), now, standing=True) == (True, None)
    assert verdict(rule, at(91), now, standing=True) == (False, "beyond")
    assert verdict(rule, at(None), now, standing=True) == (False, "away")
    assert verdict(rule, at(None), now, standing=False) == (False, None)


def store_as(
    factory: sessionmaker[Session], gw: GatewayPath, series: Series, kind: str, sensor: str
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "gateway": gw.gateway,
            "seq": None,
            "ts": ts,
            "sensor": sensor,
            "kind": kind,
            "community": gw.community,
            "compound": gw.compound,
            "building": "b1",
            "values": {"pressure_mpa": float(v)},
            "units": {},
            "faults": [],
            "samples": 1,
        }
        for ts, v in zip(series.times, series.values, strict=True)
    ]
    with transaction(factory) as s:
        insert_many(s, m.ReadingRow, rows)


def test_a_series_hovering_at_the_horizon_raises_once_and_does_not_flap(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    # the same readings twice: under the default rule (clears beyond 1.25 × 72 h) and
    # under a configured kind whose rule clears as soon as the crossing is past 72 h
    start = datetime(2027, 6, 1, tzinfo=UTC)
    series = hovering(24 * 5, start)
    store_as(factory, gw, series, "hydrant_pressure", "h1")
    store_as(factory, gw, series, "tank_pressure", "t1")
    no_band = DEFAULT_RULES.rules[0].model_copy(
        update={"kind": "tank_pressure", "clear_margin": 1.0, "source": ""}
    )
    rules = (DEFAULT_RULES.rules[0], no_band)
    clock = ManualClock(start + timedelta(hours=72))
    actions: dict[str, list[str]] = {"h1": [], "t1": []}
    ahead: list[float] = []
    for _ in range(48):  # hourly, for two days
        with transaction(factory) as s:
            report = evaluate(s, rules, clock())
        for a in report.assessments:
            if a.gateway == gw.gateway:
                actions[a.sensor].append(a.action)
                if a.sensor == "h1" and a.crossing is not None:
                    ahead.append((a.crossing.pessimistic_s - clock().timestamp()) / 3600)
        clock.advance(hours=1)
    # the pessimistic crossing really hovers across the horizon
    assert min(ahead) < 72 < max(ahead)
    flaps = actions["t1"].count("raised") + actions["t1"].count("cleared")
    assert flaps >= 4, actions["t1"]  # without the band: raised, cleared, raised, ...
    assert actions["h1"].count("raised") == 1 and actions["h1"].count("cleared") == 0
    (alert,) = alerts(factory, gw)
    assert alert.active and alert.count == 1
    with factory() as s:
        cleared = s.scalars(
            select(m.EventRow).where(
                m.EventRow.gateway == gw.gateway,
                m.EventRow.kind == "tank_pressure_trend",
                m.EventRow.state == "cleared",
            )
        ).all()
    assert cleared
    # the clear states why: the crossing beyond the band (here the band is the horizon)
    detail = cleared[0].payload["detail"]
    assert detail["recovery"] == "beyond" and detail["clear_after_h"] == 72
    assert "已超出解除阈 72 小时" in (cleared[0].message or "")
