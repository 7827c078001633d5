"""The hub routes by topic, coalesces chatty readings, counts what it rejects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from edge.sensors.hub import SensorHub
from microbrain.protocol import Event, Reading
from microbrain.site.model import Site

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("mb_edge_sensor_rejected_total", {"reason": reason}) or 0.0


def test_hub_routes_coalesces_and_counts(demo_site: Site, caplog) -> None:
    sunk: list[Event | Reading] = []
    hub = SensorHub(
        demo_site, demo_site.gateway("gw-xiyuan-1"), sunk.extend, reading_min_interval_s=10
    )
    topic = "devices/hydrant/b1-top"
    for n in range(5):  # 5 samples within 4 s → one reading forwarded now
        hub.handle(topic, b'{"data": {"p_kpa": 300}}', T0 + timedelta(seconds=n))
    hub.handle(topic, b'{"data": {"p_kpa": 300}}', T0 + timedelta(seconds=11))
    readings = [r for r in sunk if isinstance(r, Reading)]
    assert [r.samples for r in readings] == [1, 5]  # the second stands for 5 samples

    before_json, before_topic = rejected("not_json"), rejected("unknown_topic")
    assert hub.handle(topic, b"\x00garbage") == []
    assert hub.handle("devices/nobody", b"{}") == []
    assert rejected("not_json") == before_json + 1
    assert rejected("unknown_topic") == before_topic + 1
    assert hub.rejected == 2
    assert "b1-hydrant-top: rejected payload: not_json" in caplog.text
    # a flood of the same fault logs one line, not thousands, and counts them all
    caplog.clear()
    for _ in range(1000):
        hub.handle(topic, b"\x00garbage")
    assert len(caplog.records) == 0 and hub.rejected == 1002

    # an event is never held back by coalescing
    sunk.clear()
    hub.handle("devices/elevator/b1-a", b'{"fault": {"code": "E01"}}', T0)
    assert [type(x).__name__ for x in sunk] == ["Reading", "Event"]


def test_silence_reports_offline_sensors(demo_site: Site) -> None:
    sunk: list[Event | Reading] = []
    hub = SensorHub(demo_site, demo_site.gateway("gw-xiyuan-2"), sunk.extend)
    hub.check_silence(T0)
    hub.handle("devices/water/b1", b'{"level": 0.3}', T0 + timedelta(seconds=600))
    events = hub.check_silence(T0 + timedelta(seconds=900))  # fire door: 300 s × 3 = 900
    assert [(e.source, e.kind) for e in events] == [("x2-b2-firedoor", "sensor_offline")]
    assert hub.silent_sensors() == ("x2-b2-firedoor",)


def test_status_only_update_keeps_an_active_fault(demo_site: Site) -> None:
    """A payload without the fault path says nothing about faults: the fault stays raised;
    only a payload that reports the fault path (with no code in it) clears it."""
    sunk: list[Event | Reading] = []
    hub = SensorHub(demo_site, demo_site.gateway("gw-xiyuan-1"), sunk.extend)
    topic = "devices/elevator/b1-a"

    def events() -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = [
            (e.state.value, e.detail.get("fault")) for e in sunk if isinstance(e, Event)
        ]
        sunk.clear()
        return out

    hub.handle(topic, b'{"fault": {"code": "E01"}}', T0)
    raised = events()
    assert len(raised) == 1 and raised[0][0] == "raised"
    fault = raised[0][1]
    hub.handle(
        topic, b'{"status": {"running": true, "floor": 3, "speed": 1.0}}', T0 + timedelta(seconds=5)
    )
    assert events() == []
    assert hub.active_kinds("b1-elevator-a") == {"elevator_fault"}
    hub.handle(
        topic,
        b'{"status": {"running": false, "floor": 3, "speed": 0}, "fault": {"code": null}}',
        T0 + timedelta(seconds=10),
    )
    assert events() == [("cleared", fault)]
    assert hub.active_kinds("b1-elevator-a") == set()


def test_events_reach_the_sink_in_the_order_the_rules_made_them(demo_site: Site) -> None:
    """check_silence (the agent's loop) raises sensor_offline; a reading on the MQTT
    thread clears it while the RAISED is still on its way to the outbox: the CLEARED
    must not get in first."""
    import threading
    import time

    sunk: list[Event | Reading] = []
    slow_first = threading.Event()

    def sink(items) -> None:
        if not slow_first.is_set():
            slow_first.set()
            time.sleep(0.3)  # a slow fsync of the outbox append
        sunk.extend(items)

    hub = SensorHub(demo_site, demo_site.gateway("gw-xiyuan-2"), sink)
    hub.check_silence(T0)
    silence = threading.Thread(target=hub.check_silence, args=(T0 + timedelta(seconds=900),))
    silence.start()
    assert slow_first.wait(5)
    hub.handle("devices/door/b2", b'{"open": false}', T0 + timedelta(seconds=901))
    silence.join(5)
    door = [
        e.state.value
        for e in sunk
        if isinstance(e, Event) and e.kind == "sensor_offline" and e.source == "x2-b2-firedoor"
    ]
    assert door == ["raised", "cleared"]
