"""Rule tables: dwell, one event per violation, cleared, stationarity, night, dog, cable."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge.video.rules import (
    REACQUIRE_S,
    Context,
    crossing_findings,
    in_window,
    make_rule,
)
from edge.video.zones import LineZone, PolygonZone
from microbrain.protocol.payloads import EventState, Severity
from microbrain.site.cameras import (
    EbikeCharging,
    IllegalParking,
    Line,
    NightSchedule,
    ObjectInZone,
    UnleashedDog,
)
from tests.edge.video.factories import dets

ZONE = [(0, 0), (400, 0), (400, 300), (0, 300)]
NOON = datetime(2026, 1, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
SH = ZoneInfo("Asia/Shanghai")


def drive(rule, frames, dt=1.0, start=NOON, inertia=1):
    """Feed ``frames`` (lists of detection rows) one per ``dt`` seconds; return
    [(ts, finding)] for every finding."""
    zone = PolygonZone(ZONE, inertia=inertia)
    out = []
    for i, rows in enumerate(frames):
        ts = i * dt
        tracked = dets(*rows)
        occupants, _ = zone.update(tracked, ts)
        local = (start + timedelta(seconds=ts)).astimezone(SH)
        out += [(ts, f) for f in rule.update(Context(tracked, occupants, ts, local))]
    return out


CAR = ("car", 100, 100, 200, 160, 0.8, 1)


@pytest.mark.parametrize("dwell, seconds, raised_at", [(5, 10, 5.0), (5, 4, None), (8, 20, 8.0)])
def test_parking_raises_once_after_the_dwell(dwell, seconds, raised_at):
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=dwell))
    found = drive(rule, [[CAR]] * (seconds + 1))
    raised = [(ts, f) for ts, f in found if f.state is EventState.RAISED]
    assert [ts for ts, _ in raised] == ([raised_at] if raised_at is not None else [])
    if raised:
        f = raised[0][1]
        assert (f.kind, f.zone, f.track_id, f.object_class, f.dwell_s) == (
            "illegal_parking",
            "lane",
            1,
            "car",
            dwell,
        )


def test_parking_clears_once_after_the_car_is_gone():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    found = drive(rule, [[CAR]] * 8 + [[]] * int(REACQUIRE_S + 3))
    states = [f.state for _, f in found]
    assert states == [EventState.RAISED, EventState.CLEARED]
    assert found[1][1].severity is Severity.INFO


def test_a_moving_car_is_not_parked_but_a_stopped_one_is():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5, max_drift=0.25))
    driving = [[("car", 10 + 30 * i, 100, 110 + 30 * i, 160, 0.8, 1)] for i in range(8)]
    stopped = [[("car", 250, 100, 350, 160, 0.8, 1)]] * 7
    found = drive(rule, driving + stopped)
    assert [(ts, f.state) for ts, f in found] == [(8.0 + 5.0, EventState.RAISED)]


def test_a_lost_and_refound_car_is_the_same_violation():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    refound = ("car", 102, 101, 201, 161, 0.8, 9)  # new track id, same spot
    found = drive(rule, [[CAR]] * 7 + [[]] * 3 + [[refound]] * 20)
    assert [f.state for _, f in found] == [EventState.RAISED]


def test_parking_ignores_classes_it_does_not_watch():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    assert drive(rule, [[("person", 100, 100, 150, 200, 0.9, 1)]] * 20) == []


@pytest.mark.parametrize("utc_hour, expected_at", [(4, 30.0), (15, 5.0)])  # 12:00 / 23:00 Shanghai
def test_charging_is_stricter_at_night(utc_hour, expected_at):
    rule = make_rule(
        "stair",
        EbikeCharging(
            type="ebike_charging",
            classes=("bicycle", "motorcycle", "ebike"),
            dwell_s=30,
            night=NightSchedule(start=time(22), end=time(6), dwell_s=5),
        ),
    )
    bike = ("bicycle", 100, 100, 200, 200, 0.9, 3)
    found = drive(rule, [[bike]] * 40, start=datetime(2026, 1, 1, utc_hour, tzinfo=UTC))
    assert [ts for ts, f in found] == [expected_at]
    assert found[0][1].detail["night"] is (utc_hour == 15)


@pytest.mark.parametrize(
    "cable, severity",
    [
        (None, Severity.WARNING),
        (("charging_cable", 190, 150, 260, 160, 0.6, 8), Severity.CRITICAL),  # touches the bike
        (("charging_cable", 300, 250, 350, 260, 0.6, 8), Severity.WARNING),  # elsewhere
    ],
)
def test_a_cable_touching_the_bike_raises_the_severity(cable, severity):
    rule = make_rule(
        "stair", EbikeCharging(type="ebike_charging", dwell_s=3, severity=Severity.WARNING)
    )
    bike = ("ebike", 100, 100, 200, 200, 0.9, 3)
    rows = [bike] + ([cable] if cable else [])
    found = drive(rule, [rows] * 6)
    assert len(found) == 1 and found[0][1].severity is severity
    assert found[0][1].detail["cable_touching"] is (severity is Severity.CRITICAL)


@pytest.mark.parametrize(
    "in_, start, end, inside",
    [
        (time(23), time(22), time(6), True),
        (time(5, 59), time(22), time(6), True),
        (time(6), time(22), time(6), False),
        (time(12), time(9), time(17), True),
        (time(18), time(9), time(17), False),
    ],
)
def test_night_window_wraps_midnight(in_, start, end, inside):
    assert in_window(in_, start, end) is inside


DOG = ("dog", 140, 208, 313, 535 - 235, 0.9, 2)  # 92 px tall


@pytest.mark.parametrize(
    "person, alone",
    [
        (None, True),
        (("person", 320, 100, 380, 300, 0.9, 5), False),  # 7 px away
        (("person", 313 + 130, 100, 500, 300, 0.9, 5), True),  # 130 px > 1.2 × 92
        (("person", 313 + 100, 100, 500, 300, 0.9, 5), False),  # 100 px < 1.2 × 92
    ],
)
def test_dog_alone_depends_on_k_times_its_height(person, alone):
    rule = make_rule("garden", UnleashedDog(type="unleashed_dog", dwell_s=5, person_distance_k=1.2))
    rows = [DOG] + ([person] if person else [])
    found = drive(rule, [rows] * 10)
    assert bool(found) is alone


def test_a_leash_touching_the_dog_means_it_is_leashed():
    rule = make_rule("garden", UnleashedDog(type="unleashed_dog", dwell_s=3))
    leash = ("leash", 300, 150, 340, 220, 0.7, 6)
    assert drive(rule, [[DOG, leash]] * 8) == []


def test_owner_arriving_clears_the_dog_event():
    rule = make_rule("garden", UnleashedDog(type="unleashed_dog", dwell_s=3))
    owner = ("person", 320, 100, 380, 300, 0.9, 5)
    found = drive(rule, [[DOG]] * 5 + [[DOG, owner]] * 3)
    assert [f.state for _, f in found] == [EventState.RAISED, EventState.CLEARED]


def test_object_in_zone_counts_and_names_its_kind():
    rule = make_rule(
        "lift",
        ObjectInZone(
            type="object_in_zone",
            kind="ebike_in_elevator",
            classes=("bicycle", "ebike"),
            dwell_s=2,
            min_count=2,
            clear_after_s=0,
        ),
    )
    one = [("ebike", 10, 10, 50, 50, 0.9, 1)]
    two = one + [("bicycle", 100, 10, 150, 50, 0.9, 2)]
    found = drive(rule, [one] * 5 + [two] * 4 + [one] * 2)
    assert [(ts, f.kind, f.state) for ts, f in found] == [
        (7.0, "ebike_in_elevator", EventState.RAISED),
        (9.0, "ebike_in_elevator", EventState.CLEARED),
    ]


@pytest.mark.parametrize(
    "gap, expected",
    [
        # a person missed for 2 s: the episode goes on, no clear, no second raise
        (2, [(3.0, EventState.RAISED), (20.0, EventState.CLEARED)]),
        # gone for 6 s (> clear_after_s 4): cleared 4 s after leaving, raised again on return
        (
            6,
            [
                (3.0, EventState.RAISED),
                (9.0, EventState.CLEARED),
                (14.0, EventState.RAISED),
                (20.0, EventState.CLEARED),
            ],
        ),
    ],
)
def test_object_in_zone_ends_an_episode_only_after_clear_after_s(gap, expected):
    rule = make_rule(
        "plaza",
        ObjectInZone(
            type="object_in_zone", kind="crowd", classes=("person",), dwell_s=3, clear_after_s=4
        ),
    )
    person = [("person", 10, 10, 50, 120, 0.9, 1)]
    found = drive(rule, [person] * 5 + [[]] * gap + [person] * (11 - gap) + [[]] * 8)
    assert [(ts, f.state) for ts, f in found] == expected
    # a cleared episode lasted until the zone emptied, not until clear_after_s ran out
    assert found[-1][1].dwell_s == 16 - (0 if gap == 2 else 11)


@pytest.mark.parametrize("direction, expected", [("in", 1), ("out", 0), ("both", 1)])
def test_line_crossing_rule_filters_direction_and_class(direction, expected):
    line = Line(
        id="door",
        kind="ebike_entering",
        points=((0, 100), (100, 100)),
        direction=direction,
        classes=("ebike", "bicycle"),
    )
    geometry = LineZone(*line.points)
    found = []
    for y in (80, 120):
        tracked = dets(
            ("bicycle", 45, y - 10, 55, y, 0.9, 4), ("person", 60, y - 10, 70, y, 0.9, 5)
        )
        found += crossing_findings(line, tracked, geometry.update(tracked))
    assert len(found) == expected
    assert all(f.kind == "ebike_entering" and f.object_class == "bicycle" for f in found)


def test_flush_clears_raised_violations_only():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    drive(rule, [[CAR]] * 7)
    assert [f.state for f in rule.flush(7.0)] == [EventState.CLEARED]
    assert rule.flush(8.0) == []


# --- stationary violators in busy scenes (issue #14 item 4) -------------------------------


def test_a_short_gap_keeps_the_dwell_built_before_it():
    """Hidden for 3 s before its alert was due, found again on a new track: the clock
    goes on from its first sighting instead of starting over."""
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=8))
    back = ("car", 101, 100, 201, 160, 0.8, 7)
    found = drive(rule, [[CAR]] * 3 + [[]] * 3 + [[back]] * 6)
    assert [(ts, f.state) for ts, f in found] == [(8.0, EventState.RAISED)]


def test_a_partial_box_where_it_stands_is_the_same_parked_car():
    """A passer-by leaves only the car's left half visible: its anchor moves by half a box
    width, far beyond max_drift, but the box is inside the place it stopped."""
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=8, max_drift=0.25))
    half = ("car", 100, 100, 150, 160, 0.6, 1)
    found = drive(rule, [[CAR]] * 3 + [[half]] * 3 + [[CAR]] * 4)
    raised = [(ts, f) for ts, f in found if f.state is EventState.RAISED]
    assert [ts for ts, _ in raised] == [8.0]
    # the evidence shows the whole car, not the half a passer-by left
    assert list(raised[0][1].box) == [100, 100, 200, 160]


def test_two_tracks_on_one_car_raise_one_alert():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    truck = ("truck", 104, 102, 198, 158, 0.5, 2)  # the detector's second box on it
    found = drive(rule, [[CAR, truck]] * 12)
    assert [f.state for _, f in found] == [EventState.RAISED]


def test_a_car_that_drove_off_is_not_taken_for_the_next_one():
    rule = make_rule("lane", IllegalParking(type="illegal_parking", dwell_s=5))
    leaving = [[("car", 100 + 120 * i, 100, 200 + 120 * i, 160, 0.8, 1)] for i in range(1, 5)]
    second = ("car", 102, 100, 202, 160, 0.8, 2)  # parks where the first one stood
    found = drive(rule, [[CAR]] * 7 + leaving + [[second]] * 8)
    raised = [(ts, f.track_id) for ts, f in found if f.state is EventState.RAISED]
    assert raised == [(5.0, 1), (11.0 + 5.0, 2)]
