"""Fusion over a real database (SQLite and PostgreSQL) with an injected clock: the two
examples of the issue link and turn critical, with the link and its reason on both
alerts; another compound, another building, a gap past the window or a resolved alert
does not link; a pair is linked once however many passes or processes look at it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud import alerts, fusion
from cloud.alerts.policy import policy_for
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.fusion import FusionRule, FusionRules, FusionStep
from microbrain.protocol import Severity
from tests.cloud.fusion.conftest import ELEVATOR, HYDRANT, Place


def _reason(rules: FusionRules, rule_id: str) -> str:
    return next(r.reason for r in rules.rules if r.id == rule_id)


def _deadline(place: Place, alert_id: int) -> m.EscalationDeadline:
    with place.factory() as s:
        return s.get_one(m.EscalationDeadline, alert_id)


def test_a_low_pressure_hydrant_and_a_blocked_fire_lane_link_and_turn_critical(
    place: Place, rules: FusionRules
) -> None:
    hydrant = place.alert("hydrant_pressure_low", source="h1", building="b1")
    due_before = _deadline(place, hydrant).due_at
    place.clock.advance(minutes=90)  # within the rule's 2 h; another building of the compound
    parking = place.alert("illegal_parking", source="cam-1", building="b2", zone="fire-lane")
    now = place.clock.advance(seconds=5)

    report = fusion.run(place.factory, now, rules)

    (link,) = place.links(hydrant, parking)
    assert (link.alert_lo, link.alert_hi) == (min(hydrant, parking), max(hydrant, parking))
    assert link.rule == HYDRANT and link.raised_to == Severity.CRITICAL
    assert link.reason == _reason(rules, HYDRANT) and "消防通道" in link.reason
    assert any({mine.lo, mine.hi} == {hydrant, parking} for mine in report.links)
    for this, other in ((hydrant, parking), (parking, hydrant)):
        alert = place.get(this)
        assert alert.severity == Severity.CRITICAL
        assert alert.updated_at == now
        (linked,) = place.log(this, "linked")
        assert linked.note == f"关联告警 #{other}：{link.reason}"
        assert linked.actor == "system:fusion" and linked.at == now
        (raised,) = place.log(this, "severity_raised")
        assert raised.note is not None and raised.note.startswith("严重程度 警告 → 紧急")
        assert f"#{other}" in raised.note
        # the console's and the API's timeline read the same rows
        with place.factory() as s:
            assert [t.action for t in alerts.timeline(s, this)][-2:] == [
                "linked",
                "severity_raised",
            ]
    # its clock ran out before the raise (30 min for a warning): a raise never postpones it
    assert _deadline(place, hydrant).due_at == due_before < now


def _critical_s(place: Place) -> float:
    with place.factory() as s:
        policy = policy_for(s, place.here.community, place.here.compound)
        return policy.deadline("building", Severity.CRITICAL)


def test_an_elevator_fault_and_an_ebike_in_that_elevator_link_and_turn_critical(
    place: Place, rules: FusionRules
) -> None:
    fault = place.alert("elevator_fault", source="h1", building="b3", severity=Severity.INFO)
    due_before = _deadline(place, fault).due_at  # 4 h for an info alert
    place.clock.advance(minutes=4)
    ebike = place.alert("ebike_in_elevator", source="cam-2", building="b3")
    now = place.clock()
    report = fusion.run(place.factory, now, rules)

    (link,) = place.links(fault, ebike)
    assert link.rule == ELEVATOR
    assert report.raised >= 2
    for this, other in ((fault, ebike), (ebike, fault)):
        assert place.get(this).severity == Severity.CRITICAL
        (linked,) = place.log(this, "linked")
        assert linked.note == f"关联告警 #{other}：{_reason(rules, ELEVATOR)}"
    (raised,) = place.log(fault, "severity_raised")
    assert raised.note is not None and raised.note.startswith("严重程度 提示 → 紧急")
    # still unacknowledged: it now escalates on the critical deadline, from the raise
    due = now + timedelta(seconds=_critical_s(place))
    assert _deadline(place, fault).due_at == due < due_before


@pytest.mark.parametrize(
    ("first", "second", "gap_s", "linked"),
    [
        # (kind, building, next door?) of each alert, seconds between them, linked?
        (("hydrant_pressure_low", "b1", False), ("illegal_parking", "b1", True), 60, False),
        (("hydrant_pressure_drop", "b1", False), ("illegal_parking", "b2", False), 7200, True),
        (("hydrant_pressure_drop", "b1", False), ("illegal_parking", "b2", False), 7201, False),
        (("elevator_fault", "b1", False), ("ebike_in_elevator", "b2", False), 60, False),
        (("elevator_fault", "b1", False), ("ebike_in_elevator", "b1", False), 600, True),
        (("elevator_fault", "b1", False), ("ebike_in_elevator", "b1", False), 601, False),
        (("elevator_fault", "b1", False), ("ebike_in_elevator", "b1", True), 60, False),
        # kinds no rule pairs: the same place and time mean nothing
        (("illegal_parking", "b1", False), ("ebike_in_elevator", "b1", False), 60, False),
        (("elevator_fault", "b1", False), ("elevator_fault", "b1", False), 60, False),
    ],
)
def test_only_the_rules_place_and_window_link(
    place: Place,
    rules: FusionRules,
    first: tuple[str, str, bool],
    second: tuple[str, str, bool],
    gap_s: int,
    linked: bool,
) -> None:
    made = []
    for i, (kind, building, next_door) in enumerate((first, second)):
        if i:
            place.clock.advance(seconds=gap_s)
        where = place.next_door if next_door else place.here
        made.append(place.alert(kind, building=building, source=f"cam-{i}", where=where))
    fusion.run(place.factory, place.clock(), rules)
    assert len(place.links(*made)) == (1 if linked else 0)
    expected = Severity.CRITICAL if linked else Severity.WARNING
    assert [place.get(a).severity for a in made] == [expected, expected]


def test_a_resolved_alert_is_not_linked(place: Place, rules: FusionRules) -> None:
    hydrant = place.alert("hydrant_pressure_low", source="h1")
    with transaction(place.factory) as s:
        alerts.resolve(s, hydrant, actor="duty", now=place.clock(), note="已修复")
    parking = place.alert("illegal_parking")
    fusion.run(place.factory, place.clock(), rules)
    assert place.links(hydrant, parking) == []
    assert place.get(parking).severity == Severity.WARNING


def test_running_the_step_again_links_once(place: Place, rules: FusionRules) -> None:
    fault = place.alert("elevator_fault", source="h1")
    ebike = place.alert("ebike_in_elevator", source="cam-2")
    step = FusionStep(place.factory, rules)
    assert step(place.clock()) is True
    for _ in range(2):
        place.clock.advance(seconds=5)
        fusion.run(place.factory, place.clock(), rules)
        step(place.clock())
    assert len(place.links(fault, ebike)) == 1
    for this in (fault, ebike):
        assert len(place.log(this, "linked")) == 1
        assert len(place.log(this, "severity_raised")) == 1
    # a repeat of the fault (the ingest touches it) finds the pair linked already
    place.alert("elevator_fault", source="h1", zone=place.get(fault).zone)
    with place.factory() as s:
        touched, pairs = fusion.service.candidates(s, rules, since=place.clock())
    assert touched >= 1 and (min(fault, ebike), max(fault, ebike)) not in pairs


def test_two_processes_at_once_link_a_pair_once(
    place: Place, rules: FusionRules, cloud_url: str
) -> None:
    fault = place.alert("elevator_fault", source="h1")
    ebike = place.alert("ebike_in_elevator", source="cam-2")
    now = place.clock()
    engines = [make_engine(cloud_url) for _ in range(2)]
    factories = [session_factory(e) for e in engines]
    start = threading.Barrier(2)

    def one(factory: sessionmaker[Session]) -> fusion.FusionReport:
        start.wait(timeout=30)  # both begin together; the outcome may not depend on who wins
        return fusion.run(factory, now, rules)

    try:
        with ThreadPoolExecutor(2) as pool:
            reports = [f.result(timeout=120) for f in [pool.submit(one, f) for f in factories]]
    finally:
        for e in engines:
            e.dispose()
    pair = {fault, ebike}
    made = [ln for r in reports for ln in r.links if {ln.lo, ln.hi} == pair]
    assert len(made) == 1
    assert len(place.links(fault, ebike)) == 1
    for this in (fault, ebike):
        assert len(place.log(this, "linked")) == 1
        assert len(place.log(this, "severity_raised")) == 1


def test_severity_is_never_lowered_and_a_rule_may_only_link(place: Place) -> None:
    rules = FusionRules(
        [
            FusionRule.model_validate(
                {
                    "id": "smoke-and-door",
                    "a": ["smoke_alarm"],
                    "b": ["fire_door_open"],
                    "same": "building",
                    "within_s": "10m",
                    "raise_to": "warning",
                    "reason": "同一楼栋烟感报警且防火门常开",
                }
            ),
            FusionRule.model_validate(
                {
                    "id": "water-and-door",
                    "a": ["water_level_high"],
                    "b": ["fire_door_open"],
                    "same": "zone",
                    "within_s": 600,
                    "reason": "同一区域积水且防火门常开",
                }
            ),
        ]
    )
    smoke = place.alert("smoke_alarm", source="h1", severity=Severity.CRITICAL, zone="stair")
    door = place.alert("fire_door_open", source="cam-1", severity=Severity.INFO, zone="stair")
    water = place.alert("water_level_high", source="cam-2", severity=Severity.INFO, zone="stair")
    report = fusion.run(place.factory, place.clock(), rules)
    assert place.get(smoke).severity == Severity.CRITICAL  # not lowered to warning
    assert place.get(door).severity == Severity.WARNING  # raised
    assert place.get(water).severity == Severity.INFO  # that rule only links
    assert place.log(smoke, "severity_raised") == []
    assert [t.note for t in place.log(door, "linked")] == [
        f"关联告警 #{smoke}：同一楼栋烟感报警且防火门常开",
        f"关联告警 #{water}：同一区域积水且防火门常开",
    ]
    assert {(ln.rule, ln.raised_to) for ln in place.links(door)} == {
        ("smoke-and-door", Severity.WARNING),
        ("water-and-door", None),
    }
    assert report.raised == 1


def test_the_same_zone_means_the_same_zone_of_the_same_building(place: Place) -> None:
    rules = FusionRules(
        [
            FusionRule(
                id="zone",
                a=("water_level_high",),
                b=("fire_door_open",),
                same="zone",
                within_s=600,
                reason="同一区域",
            )
        ]
    )
    water = place.alert("water_level_high", source="h1", zone="garage", building="b1")
    other_building = place.alert("fire_door_open", source="cam-1", zone="garage", building="b2")
    other_zone = place.alert("fire_door_open", source="cam-2", zone="stair", building="b1")
    same = place.alert("fire_door_open", source="cam-0", zone="garage", building="b1")
    fusion.run(place.factory, place.clock(), rules)
    assert [{ln.alert_lo, ln.alert_hi} for ln in place.links(water)] == [{water, same}]
    assert place.links(other_building, other_zone) == []


def test_the_ingest_hook_links_the_alerts_it_names(place: Place, rules: FusionRules) -> None:
    hydrant = place.alert("hydrant_pressure_low", source="h1")
    parking = place.alert("illegal_parking", building="b2")
    unrelated = place.alert("ebike_charging", building="b2")
    report = fusion.fuse_alerts(place.factory, [parking, unrelated], place.clock(), rules)
    assert report.touched == 1  # ebike_charging is in no rule
    assert [{ln.alert_lo, ln.alert_hi} for ln in place.links(hydrant)] == [{hydrant, parking}]


def test_the_steps_first_pass_catches_up_then_follows_its_watermark(
    place: Place, rules: FusionRules
) -> None:
    # a pair seen together long ago, untouched since: past the look-back of a plain pass
    old_fault = place.alert("elevator_fault", source="h1", building="b4")
    old_ebike = place.alert("ebike_in_elevator", source="cam-2", building="b4")
    place.clock.advance(hours=5)
    fusion.run(place.factory, place.clock(), rules)  # looks back over the largest window
    assert place.links(old_fault) == []
    step = FusionStep(place.factory, rules)
    step(place.clock())  # the first pass of a process: every live alert
    assert len(place.links(old_fault, old_ebike)) == 1
    place.clock.advance(minutes=10)
    fault = place.alert("elevator_fault", source="h1", building="b5")
    ebike = place.alert("ebike_in_elevator", source="cam-2", building="b5")
    place.clock.advance(seconds=3)
    assert step(place.clock()) is True
    assert step.last is not None and step.last.touched >= 2
    assert len(place.links(fault, ebike)) == 1
    place.clock.advance(seconds=3)
    assert step(place.clock()) is False  # nothing new to link


def test_no_rules_no_work(place: Place) -> None:
    fault = place.alert("elevator_fault", source="h1")
    place.alert("ebike_in_elevator", source="cam-2")
    report = fusion.run(place.factory, place.clock(), FusionRules())
    assert (report.touched, report.linked) == (0, 0)
    assert place.links(fault) == []


def test_the_database_refuses_a_second_link_of_a_pair(place: Place, rules: FusionRules) -> None:
    # the guard a process that lost the race meets when it inserts (its savepoint is
    # undone): the migration's unique pair, on both stores
    fault = place.alert("elevator_fault", source="h1")
    ebike = place.alert("ebike_in_elevator", source="cam-2")
    fusion.run(place.factory, place.clock(), rules)
    (link,) = place.links(fault, ebike)
    with pytest.raises(IntegrityError), transaction(place.factory) as s:
        s.add(
            m.AlertLink(
                alert_lo=link.alert_lo,
                alert_hi=link.alert_hi,
                rule="again",
                reason="again",
                created_at=place.clock(),
            )
        )
    assert len(place.links(fault, ebike)) == 1
