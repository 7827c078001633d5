"""Rules on readings: duration, hysteresis, GB 50974 per building, rate, stuck, faults,
silence — driven by reading timestamps, no sleeping."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from edge.sensors.rules import SensorRules, resolve_limit
from microbrain.protocol import Event, EventState, Reading, Severity
from microbrain.site.model import Site
from microbrain.site.sensors import Sensor, SensorProfile, Threshold
from microbrain.site.standards import BuildingCategory

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def hydrant(site: Site, sensor_id: str) -> tuple[Sensor, SensorProfile, BuildingCategory]:
    for place in site.gateways():
        cats = {b.id: b.category for b in place.compound.buildings}
        for sensor in place.gateway.sensors:
            if sensor.id == sensor_id:
                return sensor, site.profile(sensor.profile), cats[sensor.building]
    raise KeyError(sensor_id)


def feed(
    rules: SensorRules,
    series: Sequence[tuple[float, float]],
    field: str = "pressure_mpa",
    kind: str = "hydrant_pressure",
) -> list[tuple[float, Event]]:
    out = []
    for t, v in series:
        r = Reading(ts=at(t), sensor=rules.sensor.id, kind=kind, values={field: v})
        out += [(t, e) for e in rules.on_reading(r)]
    return out


def summary(events: list[tuple[float, Event]]) -> list[tuple[float, str, str]]:
    return [(t, e.kind, e.state.value) for t, e in events]


def test_gb50974_limit_per_building_category(demo_site: Site) -> None:
    rule = Threshold(type="threshold", kind="k", field="p", below="gb50974")
    assert resolve_limit(rule, "residential_highrise")[0] == 0.07
    assert resolve_limit(rule, "public_highrise_class1")[0] == 0.10
    assert resolve_limit(rule, "public_highrise_class1_over_100m")[0] == 0.15


def test_hydrant_low_needs_duration_and_clears_with_hysteresis(demo_site: Site) -> None:
    rules = SensorRules(*hydrant(demo_site, "b1-hydrant-top"))  # residential high-rise: 0.07
    events = feed(
        rules,
        [
            (0, 0.30),
            (10, 0.065),
            (20, 0.30),  # a 10 s dip: shorter than for_s 30 s → nothing
            (30, 0.06),
            (50, 0.06),
            (60, 0.06),  # held 30 s → alarm (and the warning band)
            (70, 0.075),  # above the limit but under clear_at 0.08: still raised
            (80, 0.085),  # past clear_at: cleared (still in the warning band)
            (90, 0.2),  # out of the warning band
        ],
    )
    events = [(t, e) for t, e in events if e.kind != "hydrant_pressure_drop"]
    assert summary(events) == [
        (60, "hydrant_pressure_low_warning", "raised"),
        (60, "hydrant_pressure_low", "raised"),
        (80, "hydrant_pressure_low", "cleared"),
        (90, "hydrant_pressure_low_warning", "cleared"),
    ]
    alarm = events[1][1]
    assert alarm.severity == Severity.CRITICAL and alarm.building == "b1"
    assert alarm.detail["limit"] == 0.07 and "GB 50974" in str(alarm.detail["standard"])


def test_class1_public_building_uses_0_10(demo_site: Site) -> None:
    mall = SensorRules(*hydrant(demo_site, "mall-hydrant-top"))
    tower = SensorRules(*hydrant(demo_site, "tower-hydrant-top"))
    series = [(0, 0.09), (40, 0.09)]
    assert ("hydrant_pressure_low", "raised") in [(k, s) for _, k, s in summary(feed(mall, series))]
    assert "hydrant_pressure_low" not in [k for _, k, _ in summary(feed(tower, series))]


def test_warning_band_before_the_limit(demo_site: Site) -> None:
    rules = SensorRules(*hydrant(demo_site, "b1-hydrant-top"))
    events = feed(rules, [(0, 0.085), (30, 0.085)])  # 0.07 < 0.085 < 0.07 + 0.02
    assert summary(events) == [(30, "hydrant_pressure_low_warning", "raised")]
    assert events[0][1].severity == Severity.WARNING


def test_rate_of_change(demo_site: Site) -> None:
    rules = SensorRules(*hydrant(demo_site, "b2-hydrant-top"))
    # 0.05 MPa/min allowed, measured over ≥ 60 s: noise between close samples is not a
    # drop; a 0.1 fall within a minute is, and it clears once a minute passes steady
    events = feed(
        rules,
        [
            (0, 0.40),
            (10, 0.37),
            (20, 0.40),
            (30, 0.38),
            (40, 0.40),
            (50, 0.40),
            (60, 0.40),
            (90, 0.30),
            (120, 0.30),
            (150, 0.30),
            (180, 0.30),
        ],
    )
    assert summary(events) == [
        (90, "hydrant_pressure_drop", "raised"),
        (150, "hydrant_pressure_drop", "cleared"),
    ]
    # measured against the newest sample at least a minute old (t=30, 0.38)
    assert events[0][1].detail["per_min"] == pytest.approx(-0.08)


def test_stuck_value(demo_site: Site) -> None:
    rules = SensorRules(*hydrant(demo_site, "b2-hydrant-top"))  # stuck after 12 h
    hour = 3600.0
    events = feed(
        rules, [(0, 0.3), (6 * hour, 0.3), (12 * hour, 0.3), (13 * hour, 0.3), (14 * hour, 0.31)]
    )
    assert summary(events) == [
        (12 * hour, "sensor_stuck", "raised"),
        (14 * hour, "sensor_stuck", "cleared"),
    ]


def elevator(site: Site) -> SensorRules:
    sensor, profile, cat = hydrant(site, "b1-elevator-a")
    return SensorRules(sensor, profile, cat)


def test_elevator_faults_raise_and_clear_per_category(demo_site: Site) -> None:
    rules = elevator(demo_site)

    def faults(t: float, *codes: str) -> list[Event]:
        return rules.on_reading(
            Reading(ts=at(t), sensor="b1-elevator-a", kind="elevator", faults=codes)
        )

    raised = faults(0, "trapped_passenger", "power_loss")
    assert [(e.detail["fault"], e.severity, e.state) for e in raised] == [
        ("power_loss", Severity.WARNING, EventState.RAISED),
        ("trapped_passenger", Severity.CRITICAL, EventState.RAISED),
    ]
    assert raised[1].message == "困人" and raised[1].kind == "elevator_fault"
    assert faults(5, "trapped_passenger", "power_loss") == []  # still on: no repeat
    cleared = faults(10, "power_loss")
    assert [(e.detail["fault"], e.state) for e in cleared] == [
        ("trapped_passenger", EventState.CLEARED)
    ]


def test_silence_raises_sensor_offline_once_and_clears_on_reading(demo_site: Site) -> None:
    rules = elevator(demo_site)  # expected every 30 s → offline after 90 s
    assert rules.check_silence(at(0)) == []
    assert rules.check_silence(at(89)) == []
    offline = rules.check_silence(at(91))
    assert [(e.kind, e.state) for e in offline] == [("sensor_offline", EventState.RAISED)]
    assert rules.check_silence(at(200)) == []
    back = rules.on_reading(
        Reading(ts=at(210), sensor="b1-elevator-a", kind="elevator", values={"running": False})
    )
    assert [(e.kind, e.state) for e in back] == [("sensor_offline", EventState.CLEARED)]


def test_threshold_above_on_boolean(demo_site: Site) -> None:
    sensor, profile, cat = hydrant(demo_site, "b3-smoke-stair")
    rules = SensorRules(sensor, profile, cat)
    events = feed(rules, [(0, False), (1, True), (2, False)], field="smoke", kind="smoke")
    assert summary(events) == [(1, "smoke_alarm", "raised"), (2, "smoke_alarm", "cleared")]


def test_active_kinds_follow_raise_and_clear(demo_site: Site) -> None:
    """What a recheck asks: which conditions are raised right now."""
    rules = SensorRules(*hydrant(demo_site, "b1-hydrant-top"))
    assert rules.active_kinds() == set()
    feed(rules, [(0, 0.06), (30, 0.06)])
    assert {"hydrant_pressure_low", "hydrant_pressure_low_warning"} <= rules.active_kinds()
    feed(rules, [(40, 0.085)])
    assert "hydrant_pressure_low" not in rules.active_kinds()
    feed(rules, [(50, 0.3)])
    assert not {"hydrant_pressure_low", "hydrant_pressure_low_warning"} & rules.active_kinds()
    rules.check_silence(at(50 + 3 * rules.expected_interval_s + 1))
    assert "sensor_offline" in rules.active_kinds()
