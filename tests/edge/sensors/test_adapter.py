"""Vendor payloads → Readings, and every kind of garbage rejected with a reason."""

from __future__ import annotations

import json

import pytest

from edge.sensors.adapter import MAX_SENSOR_PAYLOAD, BadSensorPayload, SensorAdapter
from microbrain.site.model import Site


def adapter(site: Site, sensor_id: str) -> SensorAdapter:
    for place in site.gateways():
        for sensor in place.gateway.sensors:
            if sensor.id == sensor_id:
                return SensorAdapter(sensor, site.profile(sensor.profile))
    raise KeyError(sensor_id)


def test_hydrant_kpa_scaled_to_mpa(demo_site: Site) -> None:
    r = adapter(demo_site, "b1-hydrant-top").to_reading(b'{"data": {"p_kpa": 350}}')
    assert r.values == {"pressure_mpa": pytest.approx(0.35)}
    assert r.units == {"pressure_mpa": "MPa"} and r.kind == "hydrant_pressure"
    assert r.sensor == "b1-hydrant-top" and r.building == "b1"


@pytest.mark.parametrize(
    "code, faults",
    [
        ("E01", ("trapped_passenger",)),
        ("E02", ("door_open_while_moving",)),
        ("E09", ("emergency_call",)),
        ("0", ()),
        ("", ()),
        (None, ()),
        (["E03", "E05"], ("overrun_top", "overspeed")),
        ("E77", ("unknown_fault",)),
    ],
)
def test_elevator_fault_codes(demo_site: Site, code: object, faults: tuple[str, ...]) -> None:
    body = {"status": {"running": True, "floor": 7, "speed": 1.5}, "fault": {"code": code}}
    r = adapter(demo_site, "b1-elevator-a").to_reading(json.dumps(body).encode())
    assert r.faults == faults
    assert r.values == {"running": True, "floor": 7, "speed_mps": 1.5}


def test_partial_payload_keeps_what_is_there(demo_site: Site) -> None:
    r = adapter(demo_site, "b1-elevator-a").to_reading(b'{"fault": {"code": "E08"}}')
    assert r.values == {} and r.faults == ("power_loss",)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "not_json"),
        (b"not json at all", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"[1, 2, 3]", "not_json"),
        (b'"a string"', "not_json"),
        (b'{"data": {"p_kpa": NaN}}', "not_finite"),
        (b'{"data": {"p_kpa": Infinity}}', "not_finite"),
        (b'{"data": {"p_kpa": 1e400}}', "not_finite"),
        (b'{"data": {"p_kpa": "350"}}', "wrong_type"),
        (b'{"data": {"p_kpa": true}}', "wrong_type"),
        (b'{"data": {"p_kpa": [350]}}', "wrong_type"),
        (b'{"data": {"p_kpa": -5}}', "out_of_range"),
        (b'{"data": {"p_kpa": 99999}}', "out_of_range"),
        (b'{"data": {}}', "missing"),
        (b"{}", "missing"),
        (b'{"data": {"p_kpa": 1}, "pad": "' + b"x" * (MAX_SENSOR_PAYLOAD) + b'"}', "too_large"),
        (b"[" * 100_000 + b"]" * 100_000, "too_large"),
        (b"[" * 5000 + b"]" * 5000, "not_json"),
    ],
)
def test_garbage_rejected_with_reason(demo_site: Site, raw: bytes, reason: str) -> None:
    with pytest.raises(BadSensorPayload) as err:
        adapter(demo_site, "b1-hydrant-top").to_reading(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"status": {"running": "yes"}}', "wrong_type"),
        (b'{"status": {"running": 2}}', "wrong_type"),
        (b'{"status": {"floor": 500}}', "out_of_range"),
        (b'{"fault": {"code": {"nested": 1}}}', "wrong_type"),
    ],
)
def test_elevator_garbage(demo_site: Site, raw: bytes, reason: str) -> None:
    with pytest.raises(BadSensorPayload) as err:
        adapter(demo_site, "b1-elevator-a").to_reading(raw)
    assert err.value.reason == reason


def test_boolean_smoke_accepts_0_and_1(demo_site: Site) -> None:
    a = adapter(demo_site, "b3-smoke-stair")
    assert a.to_reading(b'{"alarm": 1}').values == {"smoke": True}
    assert a.to_reading(b'{"alarm": false}').values == {"smoke": False}
