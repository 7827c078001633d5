"""The site loader accepts the demo district and rejects broken copies by YAML path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from microbrain.protocol import Severity
from microbrain.site import SiteError, load_camera, load_site, merge_policy, parse_duration

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo" / "site.yaml"
RAW = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
GW0 = ("communities", 0, "compounds", 0, "gateways", 0)


def _dig(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        _dig(data, path[:-1])[path[-1]] = value

    return mutate


def _append(path: tuple[Any, ...], value: Any) -> Callable[[dict], None]:
    return lambda data: _dig(data, path).append(copy.deepcopy(value))


def _delete(path: tuple[Any, ...]) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        del _dig(data, path[:-1])[path[-1]]

    return mutate


def test_demo_site_loads_with_expected_shape() -> None:
    site = load_site(DEMO)
    assert len(site.communities) == 2
    assert sum(len(c.compounds) for c in site.communities) == 4
    gateways = list(site.gateways())
    assert sum(len(p.gateway.cameras) for p in gateways) == 5
    sensors = [s for p in gateways for s in p.gateway.sensors]
    assert len(sensors) >= 12
    kinds = {site.profile(s.profile).kind for s in sensors}
    assert {"elevator", "hydrant_pressure"} <= kinds
    place = site.gateway("gw-xiyuan-1")
    assert place.path.topic("event") == "mb/v1/xiyuan/xiyuan-1/gw-xiyuan-1/event"
    zone = place.gateway.cameras[0].zones[0]
    assert zone.rules[0].dwell_s == 20


def test_escalation_inherits_down_the_tree() -> None:
    site = load_site(DEMO)
    dongcheng = site.communities[1]
    community = site.escalation_for(dongcheng)
    assert community.deadline("building", Severity.CRITICAL) == 180
    assert community.deadline("building", Severity.WARNING) == 1800  # inherited
    plaza = site.escalation_for(dongcheng, dongcheng.compounds[1])
    assert plaza == merge_policy(community, dongcheng.compounds[1].escalation)
    assert plaza.deadline("compound", Severity.CRITICAL) == 300
    assert plaza.deadline("building", Severity.CRITICAL) == 180
    assert plaza.whistle["elevator_fault"] == "elevator"


CAM0 = GW0 + ("cameras", 0)
SENSOR0 = GW0 + ("sensors", 0)
MALL_HYDRANT = (
    "communities",
    1,
    "compounds",
    1,
    "gateways",
    0,
    "sensors",
    0,
)  # class-1 public: 0.10 MPa

BROKEN = [
    ("unknown key at top", _set(("colour",), "blue"), "colour", "Extra inputs are not permitted"),
    (
        "typo in a rule",
        _set(CAM0 + ("zones", 0, "rules", 0, "dwel_s"), 3),
        "zones[0].rules[0].dwel_s",
        "Extra inputs",
    ),
    ("wrong type", _set(CAM0 + ("fps",), "fast"), "cameras[0].fps", "valid number"),
    ("out of bounds", _set(CAM0 + ("fps",), 500), "cameras[0].fps", "less than or equal to 30"),
    (
        "bad duration",
        _set(CAM0 + ("zones", 0, "rules", 0, "dwell_s"), "soon"),
        "rules[0].dwell_s",
        "not a duration",
    ),
    (
        "degenerate polygon",
        _set(CAM0 + ("zones", 0, "polygon"), [[0, 0], [10, 10]]),
        "communities[0].compounds[0].gateways[0].cameras[0].zones[0].polygon",
        "needs at least 3 points",
    ),
    (
        "collinear polygon",
        _set(CAM0 + ("zones", 0, "polygon"), [[0, 0], [10, 10], [20, 20]]),
        "zones[0].polygon",
        "no area",
    ),
    (
        "unknown rule type",
        _set(CAM0 + ("zones", 0, "rules", 0, "type"), "loitering"),
        "rules[0]",
        "type",
    ),
    ("bad id", _set(("communities", 0, "id"), "Xi Yuan"), "communities[0].id", "pattern"),
    (
        "missing required",
        _delete(("communities", 0, "compounds", 0, "buildings")),
        "compounds[0].buildings",
        "Field required",
    ),
    (
        "duplicate community",
        _append(("communities",), RAW["communities"][0]),
        "communities[2].id",
        "duplicate community",
    ),
    (
        "duplicate building",
        _append(
            ("communities", 0, "compounds", 0, "buildings"),
            RAW["communities"][0]["compounds"][0]["buildings"][0],
        ),
        "buildings[3].id",
        "duplicate building",
    ),
    (
        "duplicate device",
        _set(SENSOR0 + ("id",), "cam-fire-lane"),
        "sensors[0].id",
        "duplicate device",
    ),
    (
        "sensor in unknown building",
        _set(SENSOR0 + ("building",), "b9"),
        "sensors[0].building",
        "unknown building 'b9'",
    ),
    (
        "unknown profile",
        _set(SENSOR0 + ("profile",), "nope"),
        "sensors[0].profile",
        "unknown sensor profile",
    ),
    (
        "unknown class",
        _set(CAM0 + ("zones", 0, "rules", 0, "classes"), ["tank"]),
        "rules[0].classes",
        "unknown class 'tank'",
    ),
    (
        "zone outside frame",
        _set(CAM0 + ("zones", 0, "polygon"), [[620, 30], [900, 30], [740, 120]]),
        "zones[0].polygon[1]",
        "outside the 768×576 frame",
    ),
    (
        "missing video file",
        _set(CAM0 + ("source",), "missing.avi"),
        "cameras[0].source",
        "does not exist",
    ),
    (
        "unknown sample",
        _set(CAM0 + ("source",), "sample:nope.avi"),
        "cameras[0].source",
        "unknown sample",
    ),
    (
        "usb camera by name",
        _set(CAM0 + ("source",), "usb:front-door"),
        "cameras[0].source",
        "'usb:front-door' is not a USB camera: write usb:N",
    ),
    (
        "a device written as a file",
        _set(CAM0 + ("source",), "/dev/video0"),
        "cameras[0].source",
        "write 'usb:/dev/video0' for a USB camera",
    ),
    (
        "whistle to unknown department",
        _set(("escalation", "whistle", "ebike_charging"), "army"),
        "escalation.whistle.ebike_charging",
        "unknown department",
    ),
    (
        "bad escalation override",
        _set(("communities", 1, "escalation"), {"building": {"critical": -1}}),
        "communities[1].escalation.building.critical",
        "greater than or equal",
    ),
    (
        "escalation override typo",
        _set(("communities", 1, "escalation"), {"buildng": {"critical": 60}}),
        "communities[1].escalation.buildng",
        "Extra inputs",
    ),
    (
        "override whistles to unknown department",
        _set(("communities", 1, "escalation"), {"whistle": {"x": "navy"}}),
        "communities[1].escalation.whistle.x",
        "unknown department 'navy'",
    ),
    (
        "rule field not in profile",
        _set(("sensor_profiles", 0, "rules", 0, "field"), "psi"),
        "sensor_profiles[0].rules[0].field",
        "no field 'psi'",
    ),
    (
        "threshold both sides",
        _set(("sensor_profiles", 0, "rules", 0, "above"), 1.0),
        "sensor_profiles[0].rules[0]",
        "exactly one",
    ),
    (
        "bad time zone",
        _set(("district", "timezone"), "Mars/Olympus"),
        "district.timezone",
        "unknown time zone",
    ),
    (
        "gb50974 on a non-hydrant",
        _set(
            ("sensor_profiles", 3, "rules", 0),
            {"type": "threshold", "kind": "x", "field": "level_m", "below": "gb50974"},
        ),
        "sensor_profiles[3].rules[0].below",
        "hydrant_pressure sensors only",
    ),
    # hysteresis on the wrong side of the limit raises and clears in a loop
    (
        "clear_at under a numeric below",
        _set(
            ("sensor_profiles", 0, "rules", 0),
            {
                "type": "threshold",
                "kind": "x",
                "field": "pressure_mpa",
                "below": 0.2,
                "clear_at": 0.1,
            },
        ),
        "sensor_profiles[0].rules[0]",
        "clear_at 0.1 must be at or above below 0.2",
    ),
    (
        "clear_at over a numeric above",
        _set(("sensor_profiles", 3, "rules", 0, "clear_at"), 1.5),
        "sensor_profiles[3].rules[0]",
        "clear_at 1.5 must be at or below above 1.2",
    ),
    (
        "gb50974 clear_at under the highest building limit",
        _set(MALL_HYDRANT + ("rules", 0, "clear_at"), 0.09),
        "communities[1].compounds[1].gateways[0].sensors[0].rules[0].clear_at",
        "clear_at 0.09 is below the GB 50974 limit 0.1 MPa",
    ),
    (
        "gb50974 profile clear_at under a residential limit",
        _set(("sensor_profiles", 0, "rules", 0, "clear_at"), 0.05),
        "sensor_profiles[0].rules[0].clear_at",
        "clear_at 0.05 is below the GB 50974 limit 0.07 MPa",
    ),
    (
        "field scale 0",
        _set(("sensor_profiles", 0, "fields", 0, "scale"), 0),
        "sensor_profiles[0].fields[0]",
        "scale must not be 0",
    ),
    (
        "fault rule without a fault map",
        _set(("sensor_profiles", 2, "rules", 0), {"type": "fault"}),
        "sensor_profiles[2].rules[0]",
        "a 'fault' rule needs 'faults:'",
    ),
    (
        "gateway named like the cloud's broker user",
        _set(GW0 + ("id",), "cloud"),
        "gateways[0].id",
        "reserved: it is the cloud's broker user",
    ),
    (
        "two sensors of one gateway on one topic",
        _set(GW0 + ("sensors", 1, "topic"), "devices/hydrant/b1-top"),
        "gateways[0].sensors[1].topic",
        "already used by sensor 'b1-hydrant-top'",
    ),
    ("topic with +", _set(SENSOR0 + ("topic",), "devices/+/b1"), "sensors[0].topic", "pattern"),
    ("topic with #", _set(SENSOR0 + ("topic",), "devices/#"), "sensors[0].topic", "pattern"),
    ("topic with NUL", _set(SENSOR0 + ("topic",), "devices/\0b1"), "sensors[0].topic", "pattern"),
]


@pytest.mark.parametrize(("case", "mutate", "path", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_copies_are_rejected_by_path(
    tmp_path: Path, case: str, mutate, path: str, message: str
) -> None:
    data = copy.deepcopy(RAW)
    mutate(data)
    file = tmp_path / "site.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SiteError) as err:
        load_site(file)
    text = str(err.value)
    assert any(path in str(p) and message in str(p) for p in err.value.problems), text
    assert "line " in text  # every problem points at a line


@pytest.mark.parametrize(
    ("find", "replace", "message"),
    [
        # a model error (pydantic) and a cross-check (verify): both name the value's own line
        ("fps: 5\n", "fps: 500\n", "cameras[0].fps: Input should be less than or equal to 30"),
        (
            "profile: hydrant-generic, topic: devices/hydrant/b2-top",
            "profile: nope, topic: devices/hydrant/b2-top",
            "sensors[1].profile: unknown sensor profile 'nope'",
        ),
    ],
)
def test_problems_name_the_line_of_the_value(
    tmp_path: Path, find: str, replace: str, message: str
) -> None:
    text = DEMO.read_text(encoding="utf-8")
    line = next(
        n for n, row in enumerate(text.splitlines(keepends=True), 1) if find.rstrip("\n") in row
    )
    file = tmp_path / "site.yaml"
    file.write_text(text.replace(find, replace, 1), encoding="utf-8")
    with pytest.raises(SiteError) as err:
        load_site(file)
    found = [str(p) for p in err.value.problems if message in str(p)]
    assert len(found) == 1, str(err.value)
    assert found[0].startswith(f"line {line}: communities[0].compounds[0].gateways[0].{message}"), (
        found
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("a: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "mapping"),
        ("", "mapping"),
        # a key given twice would silently keep only the last value
        ("a: 1\nb:\n  c: 2\n  c: 3\n", "line 4: b.c: duplicate key 'c' (first at line 3)"),
        ("schema: 1\nd: {x: 1, x: 2}\n", "duplicate key 'x'"),
        (b"schema: 1\nname: \xd6\xd0\xce\xc4\n", "not UTF-8"),
    ],  # GBK, not UTF-8
)
def test_unreadable_files(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    file = tmp_path / "site.yaml"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content)
    with pytest.raises(SiteError) as err:
        load_site(file)
    assert message in str(err.value)


def test_camera_file_alone(tmp_path: Path) -> None:
    camera = dict(RAW["communities"][0]["compounds"][0]["gateways"][0]["cameras"][0])
    file = tmp_path / "cam.yaml"
    file.write_text(yaml.safe_dump(camera, allow_unicode=True), encoding="utf-8")
    assert load_camera(file).zones[0].id == "fire-lane"
    camera["zones"] = [camera["zones"][0], camera["zones"][0]]
    file.write_text(yaml.safe_dump(camera, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SiteError, match="duplicate zone"):
        load_camera(file)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30), ("30", 30), ("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
