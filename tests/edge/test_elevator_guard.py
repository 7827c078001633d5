"""The gateway's answer on the spot to an e-bike in an elevator (edge/elevator_guard.py),
and the site checks of the rule and the controller it names.

The guard's outputs (the store, the announcer, the local publisher) are recorded here;
the real broker, the real announcer and the real camera are in
tests/edge/uplink/test_agent_elevator.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from edge.elevator_guard import ElevatorGuard
from microbrain.config_files import Problem
from microbrain.protocol import Announce, Event, EventState, Reading, Severity
from microbrain.site.model import Site
from microbrain.site.verify import verify_site

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo" / "site.yaml"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LIFT_RULE: dict[str, Any] = {"type": "ebike_in_elevator", "elevator": "b1-elevator-a"}


def _gateway(doc: dict[str, Any]) -> dict[str, Any]:
    compound = doc["communities"][0]["compounds"][0]
    gateway: dict[str, Any] = compound["gateways"][0]
    assert gateway["id"] == "gw-xiyuan-1"
    return gateway


def site_doc(rule: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo site, gw-xiyuan-1 with one lift camera watching ``rule``."""
    doc = yaml.safe_load(DEMO.read_text())
    _gateway(doc)["cameras"] = [
        {
            "id": "cam-lift-b1a",
            "source": "sample:vtest.avi",
            "building": "b1",
            "zones": [
                {
                    "id": "car",
                    "polygon": [[0, 0], [640, 0], [640, 480], [0, 480]],
                    "rules": [copy.deepcopy(rule or LIFT_RULE)],
                }
            ],
        }
    ]
    return doc


def make_site(doc: dict[str, Any]) -> Site:
    site = Site.model_validate(doc)
    assert verify_site(site) == []
    return site


class Recorder:
    def __init__(self, refuse_publish: str | None = None) -> None:
        self.stored: list[Event] = []
        self.said: list[Announce] = []
        self.published: list[tuple[str, Any, int]] = []
        self.refuse_publish = refuse_publish
        self.now = T0

    def announce(self, cmd: Announce) -> str | None:
        self.said.append(cmd)
        return None

    def publish(self, topic: str, payload: bytes, qos: int) -> str | None:
        if self.refuse_publish is not None:
            return self.refuse_publish
        self.published.append((topic, json.loads(payload), qos))
        return None


def guard_for(site: Site, rec: Recorder, **over: Any) -> ElevatorGuard:
    return ElevatorGuard(
        site,
        site.gateway("gw-xiyuan-1"),
        rec.stored.append,
        announce=over.get("announce", rec.announce),
        publish=over.get("publish", rec.publish),
        clock=lambda: rec.now,
    )


def lift_event(state: EventState, at: datetime = T0, **over: Any) -> Event:
    fields: dict[str, Any] = {
        "ts": at,
        "kind": "ebike_in_elevator",
        "state": state,
        "severity": Severity.WARNING if state is EventState.RAISED else Severity.INFO,
        "building": "b1",
        "source": "cam-lift-b1a",
        "zone": "car",
        "track_id": 3,
        "object_class": "ebike",
        "message": "1 × ebike in zone car",
        "detail": {"verdict": "ebike", "count": 1},
    }
    fields.update(over)
    return Event(**fields)


def door(open_: bool, at: datetime, sensor: str = "b1-elevator-a") -> Reading:
    return Reading(
        ts=at,
        sensor=sensor,
        kind="elevator",
        building="b1",
        values={"running": False, "floor": 1.0, "door_open": open_},
    )


def metric(action: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "mb_edge_elevator_actions_total", {"action": action, "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def site() -> Site:
    return make_site(site_doc())


def test_a_raise_plays_the_warning_holds_the_doors_and_says_so(site: Site) -> None:
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.on_sample(door(True, T0 - timedelta(seconds=5)))
    guard.emit(lift_event(EventState.RAISED))

    [stored] = rec.stored
    assert stored.severity is Severity.WARNING  # the door is open: not escalated
    assert stored.detail["voice"] == "queued"
    assert stored.detail["elevator_command"] == "sent"
    assert stored.detail["door"] == "open"
    assert stored.detail["verdict"] == "ebike"  # the rule's own detail is kept
    [said] = rec.said
    assert said.text == "请将电动车推出电梯" and said.repeat == 2
    assert rec.published == [
        ("devices/elevator/b1-a/cmd", {"cmd": "hold_door_open", "seconds": 120}, 1)
    ]


def test_the_door_closing_on_the_ebike_escalates_once(site: Site) -> None:
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.on_sample(door(True, T0))
    guard.emit(lift_event(EventState.RAISED))
    guard.on_sample(door(False, T0 + timedelta(seconds=4)))
    guard.on_sample(door(False, T0 + timedelta(seconds=5)))  # still closed: nothing new
    guard.on_sample(door(True, T0 + timedelta(seconds=6)))
    guard.on_sample(door(False, T0 + timedelta(seconds=7)))  # closed again: escalated already

    raised, escalation = rec.stored
    assert escalation.state is EventState.RAISED
    assert (escalation.kind, escalation.source, escalation.zone) == (
        raised.kind,
        raised.source,
        raised.zone,
    )  # the same alert on the cloud: it keeps the higher severity
    assert escalation.severity is Severity.CRITICAL
    assert escalation.id != raised.id
    assert escalation.ts == T0 + timedelta(seconds=4)
    assert escalation.detail["door"] == "closed" and escalation.detail["escalated"] is True
    assert "电梯门已关闭" in (escalation.message or "")
    assert len(rec.said) == 2  # the warning again when the door closed


def test_a_raise_with_the_door_already_closed_is_escalated_in_itself(site: Site) -> None:
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.on_sample(door(False, T0))
    guard.emit(lift_event(EventState.RAISED, T0 + timedelta(seconds=1)))
    guard.on_sample(door(True, T0 + timedelta(seconds=2)))
    guard.on_sample(door(False, T0 + timedelta(seconds=3)))

    [stored] = rec.stored
    assert stored.severity is Severity.CRITICAL
    assert stored.detail["door"] == "closed" and stored.detail["escalated"] is True


def test_a_clear_releases_the_doors_and_ends_the_episode(site: Site) -> None:
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.on_sample(door(True, T0))
    guard.emit(lift_event(EventState.RAISED))
    guard.emit(lift_event(EventState.CLEARED, T0 + timedelta(seconds=9)))
    guard.on_sample(door(False, T0 + timedelta(seconds=10)))  # the e-bike is out: no escalation

    _, cleared = rec.stored
    assert cleared.state is EventState.CLEARED
    assert cleared.detail["elevator_command"] == "sent"
    assert [p[1] for p in rec.published] == [
        {"cmd": "hold_door_open", "seconds": 120},
        {"cmd": "release_door"},
    ]


def test_a_stale_or_missing_door_state_is_unknown_and_never_escalates(site: Site) -> None:
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.emit(lift_event(EventState.RAISED))
    assert rec.stored[-1].detail["door"] == "unknown"
    guard.emit(lift_event(EventState.CLEARED, T0 + timedelta(seconds=5)))
    # a closed door seen 10 minutes ago says nothing about now (3 × the 30 s interval)
    guard.on_sample(door(False, T0))
    rec.now = T0 + timedelta(minutes=10)
    guard.emit(lift_event(EventState.RAISED, rec.now))
    assert rec.stored[-1].detail["door"] == "unknown"
    assert rec.stored[-1].severity is Severity.WARNING


def test_another_sensor_cannot_close_the_lift_door(site: Site) -> None:
    """Door readings count only from the rule's own elevator: the other lift of the
    compound, on another gateway topic, closing its door escalates nothing here."""
    rec = Recorder()
    guard = guard_for(site, rec)
    guard.on_sample(door(True, T0))
    guard.emit(lift_event(EventState.RAISED))
    guard.on_sample(door(False, T0 + timedelta(seconds=2), sensor="b2-elevator-a"))
    assert len(rec.stored) == 1 and rec.stored[0].severity is Severity.WARNING


def test_a_broker_that_is_down_is_named_in_the_event_which_is_stored(site: Site) -> None:
    rec = Recorder(refuse_publish="the local broker 127.0.0.1:1883 is not connected")
    guard = guard_for(site, rec)
    before = metric("command_raise", "failed")
    guard.emit(lift_event(EventState.RAISED))
    [stored] = rec.stored
    assert stored.detail["elevator_command"] == (
        "failed: the local broker 127.0.0.1:1883 is not connected"
    )
    assert stored.detail["voice"] == "queued"
    assert metric("command_raise", "failed") == before + 1


def test_a_speaker_that_fails_is_named_in_the_event_which_is_stored(site: Site) -> None:
    def broken(cmd: Announce) -> str | None:
        raise OSError("no such device: /dev/snd")

    rec = Recorder()
    guard = guard_for(site, rec, announce=broken)
    guard.emit(lift_event(EventState.RAISED))
    [stored] = rec.stored
    assert stored.detail["voice"] == "failed: OSError: no such device: /dev/snd"
    assert stored.detail["elevator_command"] == "sent"


def test_no_controller_no_voice_and_other_kinds_pass_untouched() -> None:
    doc = site_doc({**LIFT_RULE, "voice": None})
    sensor = next(s for s in _gateway(doc)["sensors"] if s["id"] == "b1-elevator-a")
    del sensor["controller"]
    rec = Recorder()
    guard = guard_for(make_site(doc), rec)
    guard.emit(lift_event(EventState.RAISED))
    assert rec.stored[0].detail["voice"] == "off"
    assert rec.stored[0].detail["elevator_command"] == "none"
    assert rec.said == [] and rec.published == []
    other = lift_event(EventState.RAISED, kind="ebike_charging")
    elsewhere = lift_event(EventState.RAISED, zone="lobby")
    guard.emit(other)
    guard.emit(elsewhere)
    assert rec.stored[1] is other and rec.stored[2] is elsewhere


# -- the site checks --------------------------------------------------------------------


def problems(doc: dict[str, Any]) -> list[Problem]:
    return verify_site(Site.model_validate(doc))


def test_the_rule_defaults_say_at_once_ebike_only_and_the_chinese_warning(site: Site) -> None:
    rule = site.gateway("gw-xiyuan-1").gateway.cameras[0].zones[0].rules[0]
    assert rule.type == "ebike_in_elevator"
    assert rule.classes == ("ebike",) and rule.dwell_s == 1.0
    assert rule.voice is not None and rule.voice.text == "请将电动车推出电梯"
    assert rule.door_closed_severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (lambda d: d["cameras"][0]["zones"][0]["rules"][0].update(elevator="b9"), "elevator",
         "no sensor 'b9' on gateway 'gw-xiyuan-1'"),
        (lambda d: d["cameras"][0]["zones"][0]["rules"][0].update(elevator="b1-hydrant-top"),
         "elevator", "is a 'hydrant_pressure' sensor, not an elevator"),
        (lambda d: d["cameras"][0]["zones"][0]["rules"][0].update(door_field="door"),
         "door_field", "has no field 'door'"),
        (lambda d: d["cameras"][0]["zones"][0]["rules"][0].update(door_field="floor"),
         "door_field", "has a number field 'floor'"),
        (lambda d: d["sensors"][2]["controller"].update(topic="devices/elevator/b2-a"),
         "controller.topic", "is where sensor 'b2-elevator-a' publishes its readings"),
    ],
)  # fmt: skip
def test_site_check_names_what_is_wrong(change: Any, where: str, says: str) -> None:
    doc = site_doc()
    gateway = _gateway(doc)
    assert gateway["sensors"][2]["id"] == "b1-elevator-a"
    change(gateway)
    found = problems(doc)
    assert len(found) == 1, found
    assert found[0].path.endswith(where) and says in found[0].message


def test_a_controller_topic_with_a_wildcard_or_no_command_is_refused() -> None:
    from pydantic import ValidationError

    for bad in ({"topic": "devices/+/cmd", "on_raise": {"cmd": "x"}}, {"topic": "a/b"}):
        doc = site_doc()
        _gateway(doc)["sensors"][2]["controller"] = copy.deepcopy(bad)
        with pytest.raises(ValidationError):
            Site.model_validate(doc)
