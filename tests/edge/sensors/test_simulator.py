"""The simulator speaks each vendor's format: every payload maps back through the
adapter, normal runs stay quiet, fault runs raise the rules' events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.sensors.hub import SensorHub
from microbrain.cli import up
from microbrain.protocol import Event, EventState, Reading
from microbrain.simulate.sensors import SensorSimulator, set_path
from microbrain.site import load_site
from microbrain.site.model import Site

T0 = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("a", {"a": 1}),
        ("a.b.c", {"a": {"b": {"c": 1}}}),
        ("v[1]", {"v": [None, 1]}),
        ("a.v[0].x", {"a": {"v": [{"x": 1}]}}),
    ],
)
def test_set_path(path: str, expected: dict) -> None:
    doc: dict = {}
    set_path(doc, path, 1)
    assert doc == expected


def run(
    site: Site, gateway: str, faults: bool, ticks: int
) -> tuple[list[Reading], list[Event], int]:
    out: list[Event | Reading] = []
    hub = SensorHub(site, site.gateway(gateway), out.extend)
    sim = SensorSimulator(site, gateway=gateway, seed=7, faults=faults, fault_rate=0.05)
    for n in range(ticks):
        for topic, payload in sim.tick(n * 10.0):
            hub.handle(topic, payload, T0 + timedelta(seconds=n * 10))
    return (
        [x for x in out if isinstance(x, Reading)],
        [x for x in out if isinstance(x, Event)],
        hub.rejected,
    )


def test_normal_run_maps_cleanly_and_raises_nothing(demo_site: Site) -> None:
    readings, events, rejected = run(demo_site, "gw-xiyuan-1", faults=False, ticks=50)
    assert rejected == 0 and len(readings) == 50 * 5
    assert events == []
    hydrant = [r for r in readings if r.sensor == "b1-hydrant-top"]
    assert all(0.2 < r.values["pressure_mpa"] < 0.45 for r in hydrant)


def test_fault_run_raises_and_clears_events(demo_site: Site) -> None:
    _, events, rejected = run(demo_site, "gw-xiyuan-1", faults=True, ticks=400)
    assert rejected == 0
    kinds = {(e.kind, e.state) for e in events}
    assert ("elevator_fault", EventState.RAISED) in kinds
    assert ("elevator_fault", EventState.CLEARED) in kinds
    assert ("hydrant_pressure_low", EventState.RAISED) in kinds
    assert ("smoke_alarm", EventState.RAISED) in kinds


def test_unknown_gateway(demo_site: Site) -> None:
    with pytest.raises(KeyError):
        SensorSimulator(demo_site, gateway="nope")


def test_cli_publishes_vendor_payloads(mosquitto, demo_site_path) -> None:
    import re
    import threading
    import time

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from typer.testing import CliRunner

    from microbrain.cli import app

    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("devices/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(30)  # the SUBACK, not a guess at how long it takes
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "sensors",
            "--site",
            str(demo_site_path),
            "--rate",
            "100",
            "--faults",
            "--gateway",
            "gw-dongcheng-garden",
            "--duration",
            "1",
            "--broker",
            f"mqtt://127.0.0.1:{mosquitto.port}",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    # the simulator keeps its schedule (it catches up when late), so the count is the rate's
    found = re.search(r"sent (\d+) message", result.output)
    assert found, result.output
    sent = int(found.group(1))
    deadline = time.monotonic() + 30
    while len(got) < sent and time.monotonic() < deadline:
        time.sleep(0.02)
    sub.loop_stop()
    assert 60 <= sent <= 130 and len(got) == sent
    assert {t for t, _ in got} == {
        "devices/hydrant/t1",
        "devices/elevator/t1-a",
        "devices/elevator/t2-a",
    }
    bad = CliRunner().invoke(
        app, ["simulate", "sensors", "--site", str(demo_site_path), "--broker", "http://x"]
    )
    assert bad.exit_code == 2 and "mqtt://" in bad.output


@pytest.mark.parametrize("gateway", ["gw-xiyuan-1", "gw-xiyuan-2", "gw-dongcheng-garden"])
def test_a_demo_schedule_faults_every_sensor_early(
    demo_site_path: Path, tmp_path: Path, gateway: str
) -> None:
    """`microbrain up` asks for every sensor's first fault within 30 s, on the demo copy
    of the site (conditions count after at most 20 s): each sensor raises its condition
    within a minute, with no chance episodes (fault_rate 0)."""
    demo_site = load_site(up.demo_site(demo_site_path, tmp_path / "site.demo.yaml"))
    out: list[Event | Reading] = []
    hub = SensorHub(demo_site, demo_site.gateway(gateway), out.extend)
    sim = SensorSimulator(
        demo_site, gateway=gateway, seed=3, faults=True, fault_rate=0.0, first_fault_by=8
    )
    starts = {d.sensor.id: d.first_fault_tick for d in sim.devices}
    assert len(set(starts.values())) == len(starts)  # spread out, not all at once
    assert max(v for v in starts.values() if v is not None) == 8
    for n in range(8 + 12):  # 20 ticks of 2.5 s: 50 s
        for topic, payload in sim.tick(n * 2.5):
            hub.handle(topic, payload, T0 + timedelta(seconds=n * 2.5))
    raised = {e.source for e in out if isinstance(e, Event) and e.state == EventState.RAISED}
    assert raised == set(starts), f"never raised: {set(starts) - raised}"


def test_cli_reports_the_commands_a_simulated_controller_gets(mosquitto, demo_site_path) -> None:
    """b1-elevator-a declares a controller: the simulator listens on its command topic
    and says what the gateway told the lift (retained here, so it is there whenever the
    simulator subscribes)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from typer.testing import CliRunner

    from microbrain.cli import app

    gateway = mqtt.Client(CallbackAPIVersion.VERSION2)
    gateway.connect("127.0.0.1", mosquitto.port)
    gateway.loop_start()
    command = b'{"cmd":"hold_door_open","seconds":120}'
    gateway.publish("devices/elevator/b1-a/cmd", command, qos=1, retain=True).wait_for_publish(10)
    gateway.loop_stop()
    gateway.disconnect()
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "sensors",
            "--site",
            str(demo_site_path),
            "--gateway",
            "gw-xiyuan-1",
            "--rate",
            "20",
            "--duration",
            "5",
            "--broker",
            f"mqtt://127.0.0.1:{mosquitto.port}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"b1-elevator-a got a command on devices/elevator/b1-a/cmd: {command.decode()}"
        in result.output
    ), result.output
