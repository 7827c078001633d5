"""电动车进电梯 end to end, nothing simulated but the lift itself: a made scene (an e-bike
wheeled into a drawn lift car, models/scenes.py) played by a real gateway agent's camera
through the default detector and the e-bike classifier; the elevator's door state and
its controller on a real Mosquitto (the gateway's local broker, also its uplink here);
the voice warning written by espeak-ng; the cloud's own ingest folding the events into
one alert whose severity rises when the door closes on the e-bike."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import GatewayAgent
from edge.config import load_gateway_config
from microbrain.protocol import Event, EventState, GatewayPath
from microbrain.site import load_site
from models.scenes import (
    ELEVATOR_CAR,
    SPRITE_SOURCES,
    Expected,
    Scene,
    cut_out,
    render,
)
from models.scenes import _pushed_in as pushed_in
from tests.edge.uplink.conftest import CloudIngest
from tests.utils.services import MosquittoProcess

GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
DOOR_TOPIC = "devices/elevator/b1-a"
CONTROL_TOPIC = "devices/elevator/b1-a/cmd"
# the e-bike is wheeled in at 4 s (the door reading is in by then), stands until 11 s
SCENE = Scene(
    "ebike_into_the_lift_agent",
    22,
    (pushed_in("motorcycle", 4, 11),),
    (Expected("ebike_in_elevator", "car", 5, 13),),
    background=ELEVATOR_CAR,
)


def wait(cond: Callable[[], object], timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


@pytest.fixture(autouse=True)
def no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_GW_XIYUAN_1_PASSWORD", "unused-here")


def lift_site(tmp_path: Path, demo_site_path: Path, video: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load(demo_site_path.read_text())
    gateway = doc["communities"][0]["compounds"][0]["gateways"][0]
    assert gateway["id"] == GW.gateway
    gateway["cameras"] = [
        {
            "id": "cam-lift-b1a",
            "name": "1号楼A梯轿厢",
            "building": "b1",
            "source": str(video),
            "fps": 5,
            "zones": [
                {
                    "id": "car",
                    "polygon": [[140, 280], [500, 280], [640, 480], [0, 480]],
                    "rules": [{"type": "ebike_in_elevator", "elevator": "b1-elevator-a"}],
                }
            ],
        }
    ]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


class Lift:
    """The elevator on the local broker: publishes its door state, takes commands."""

    def __init__(self, port: int) -> None:
        self.commands: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lift-b1a")
        self.client.on_message = lambda c, u, m: self.commands.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(CONTROL_TOPIC, qos=1)
        self.client.loop_start()

    def door(self, open_: bool) -> None:
        # retained: the gateway knows the door however late it subscribes
        doc: dict[str, Any] = {
            "status": {"running": False, "floor": 1, "speed": 0.0, "door_open": open_},
            "fault": {"code": "0"},
        }
        self.client.publish(DOOR_TOPIC, json.dumps(doc), qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def lift_events(cloud: CloudIngest) -> list[Event]:
    """The e-bike-in-lift events the cloud stored, in the gateway's order."""
    with sqlite3.connect(cloud.db) as conn:
        rows = conn.execute(
            "SELECT payload FROM events WHERE kind = 'ebike_in_elevator' ORDER BY seq"
        ).fetchall()
    return [Event.model_validate(json.loads(p) if isinstance(p, str) else p) for (p,) in rows]


def lift_alerts(cloud: CloudIngest) -> list[tuple[int, int, bool, str]]:
    """(severity, count, cleared, status) of the e-bike-in-lift alerts."""
    with sqlite3.connect(cloud.db) as conn:
        return conn.execute(
            "SELECT severity, count, cleared, status FROM alerts "
            "WHERE kind = 'ebike_in_elevator' ORDER BY id"
        ).fetchall()


@pytest.fixture
def scene_video(tmp_path: Path) -> Path:
    image_name, box = SPRITE_SOURCES["motorcycle"]
    import cv2

    from microbrain.resources import sample

    image = cv2.imread(str(sample(image_name)))
    assert image is not None
    sprite = cut_out("motorcycle", image, box)
    return render(SCENE, tmp_path / "lift.avi", {"motorcycle": sprite})


@pytest.fixture
def lift(mosquitto: MosquittoProcess) -> Iterator[Lift]:
    lift = Lift(mosquitto.port)
    yield lift
    lift.close()


def test_an_ebike_wheeled_into_the_lift_is_answered_on_the_spot_and_escalated(
    tmp_path: Path,
    demo_site_path: Path,
    mosquitto: MosquittoProcess,
    scene_video: Path,
    lift: Lift,
    cloud_ingest: Callable[..., CloudIngest],
) -> None:
    site_path = lift_site(tmp_path, demo_site_path, scene_video)
    cloud = cloud_ingest(mosquitto.port, site=site_path)
    lift.door(True)  # the car stands at a floor, doors open
    config = {
        "site": str(site_path),
        "gateway": GW.gateway,
        "cloud": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"},
        "local_broker": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"},
        "data_dir": str(tmp_path / "data"),
        "heartbeat_s": 1,
        "reading_min_interval_s": 0,
        "audio": {"out_dir": str(tmp_path / "announcements")},
        "cloud_api": None,
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    cfg = load_gateway_config(tmp_path / "gateway.yaml")
    agent = GatewayAgent(cfg, load_site(cfg.site))
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    started = datetime.now(UTC)
    thread.start()
    try:
        # raised at once: the e-bike is on the car floor 2 s after it came through the door
        assert wait(lambda: any(e.state is EventState.RAISED for e in lift_events(cloud)))
        raised = lift_events(cloud)[0]
        assert raised.state is EventState.RAISED and raised.source == "cam-lift-b1a"
        assert raised.object_class == "ebike" and raised.detail["verdict"] == "ebike"
        assert raised.detail["voice"] == "queued"
        assert raised.detail["elevator_command"] == "sent"
        assert raised.detail["door"] == "open"
        assert raised.dwell_s is not None and raised.dwell_s <= 3  # seconds in the car
        assert raised.frame_ts is not None
        assert (raised.frame_ts - started).total_seconds() < 4 + 2 + 10  # start-up included
        assert wait(lambda: {"cmd": "hold_door_open", "seconds": 120} in lift.commands, 10)
        assert wait(lambda: lift_alerts(cloud) and lift_alerts(cloud)[0][0] == 2, 10)

        lift.door(False)  # the doors close with the e-bike inside
        assert wait(lambda: len(lift_events(cloud)) >= 2, 15)
        escalation = lift_events(cloud)[1]
        assert escalation.state is EventState.RAISED and escalation.severity == 3
        assert escalation.detail["door"] == "closed" and escalation.detail["escalated"] is True
        assert wait(lambda: lift_alerts(cloud)[0][:2] == (3, 2), 10)  # one alert, now critical

        # wheeled out: cleared, the doors released
        assert wait(lambda: any(e.state is EventState.CLEARED for e in lift_events(cloud)), 30)
        assert wait(lambda: {"cmd": "release_door"} in lift.commands, 10)
        [(severity, count, cleared, _)] = lift_alerts(cloud)
        assert (severity, count, bool(cleared)) == (3, 2, True)
        assert lift.commands.count({"cmd": "hold_door_open", "seconds": 120}) == 1

        # the warning was said twice in the car: at the raise, and when the doors closed
        def spoken() -> list[Path]:
            return sorted((tmp_path / "announcements").glob("announce-*.wav"))

        assert wait(lambda: len(spoken()) == 2, 30)
        assert all(p.read_bytes()[:4] == b"RIFF" and p.stat().st_size > 1000 for p in spoken())
    finally:
        agent.stop()
        thread.join(15)
