"""Simulated IoT sensors: realistic readings and fault episodes, each device speaking
its vendor's own payload format (the inverse of its profile's field map) on its topic.

    sim = SensorSimulator(site, seed=1, faults=True)
    for topic, payload in sim.tick(now):   # one message per sensor
        client.publish(topic, payload)
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from microbrain.site.model import Site
from microbrain.site.sensors import FieldMap, Sensor, SensorProfile
from microbrain.site.standards import HYDRANT_MIN_STATIC_MPA

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

# a fault episode lasts this many ticks of its sensor
EPISODE_TICKS = (20, 60)
GARBAGE = (
    b"not json",
    b'{"data": {"p_kpa": NaN}}',
    b"[1,2",
    b'{"status": {"floor": "x"}}',
    b"\xff\xfe",
    b"{}",
)


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Put ``value`` at a dotted/indexed path, creating objects and lists on the way."""
    parts = [(k, int(i) if i else None) for k, i in _PART.findall(path)]
    node: Any = doc
    for n, (key, index) in enumerate(parts):
        last = n == len(parts) - 1
        nxt: Any = None if last else ([] if parts[n + 1][1] is not None else {})
        if key:
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, nxt)
        else:
            assert index is not None  # no key: the pattern matched "[N]"
            while len(node) <= index:
                node.append(None)
            if last:
                node[index] = value
            else:
                node[index] = node[index] if node[index] is not None else nxt
                node = node[index]


def _raw(spec: FieldMap, value: float | bool) -> float | bool:
    if spec.type == "boolean":
        return bool(value)
    raw = (float(value) - spec.offset) / spec.scale
    return round(raw, 3)


@dataclass
class _Device:
    sensor: Sensor
    profile: SensorProfile
    limit: float
    phase: float
    fault_left: int = 0
    fault_code: str | None = None
    state: dict[str, float] = field(default_factory=dict)
    ticks: int = 0
    first_fault_tick: int | None = None  # a scheduled first episode (demos)


class SensorSimulator:
    """Generates one vendor payload per sensor per :meth:`tick`."""

    def __init__(
        self,
        site: Site,
        *,
        gateway: str | None = None,
        seed: int | None = None,
        faults: bool = False,
        fault_rate: float = 0.01,
        garbage_rate: float = 0.0,
        first_fault_by: int | None = None,
    ) -> None:
        """``first_fault_by``: with ``faults``, every sensor has its first episode by this
        tick, the sensors' starts spread evenly over the ticks before it (a demo shows every
        kind of fault in its first minute instead of whenever chance brings it)."""
        self.rng = random.Random(seed)
        self.faults = faults
        self.fault_rate = fault_rate
        self.garbage_rate = garbage_rate
        self.devices: list[_Device] = []
        for place in site.gateways():
            if gateway is not None and place.gateway.id != gateway:
                continue
            cats = {b.id: b.category for b in place.compound.buildings}
            for sensor in place.gateway.sensors:
                self.devices.append(
                    _Device(
                        sensor,
                        site.profile(sensor.profile),
                        HYDRANT_MIN_STATIC_MPA[cats[sensor.building]],
                        self.rng.uniform(0, 2 * math.pi),
                    )
                )
        if gateway is not None and not self.devices:
            raise KeyError(f"gateway {gateway!r} has no sensors in the site")
        if first_fault_by is not None:
            n = len(self.devices)
            for i, device in enumerate(self.devices):
                device.first_fault_tick = max(1, round((i + 1) * first_fault_by / n))

    @property
    def controllers(self) -> dict[str, str]:
        """Command topic → sensor id, for the devices that declare a controller: the
        simulator listens there and reports what the gateway told them (it does not act
        on it: a held door still closes on the simulated schedule)."""
        return {
            d.sensor.controller.topic: d.sensor.id
            for d in self.devices
            if d.sensor.controller is not None
        }

    def tick(self, t: float) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) for every sensor at time ``t`` (seconds)."""
        for device in self.devices:
            yield device.sensor.topic, self.payload(device, t)

    def payload(self, device: _Device, t: float) -> bytes:
        if self.garbage_rate and self.rng.random() < self.garbage_rate:
            return self.rng.choice(GARBAGE)
        device.ticks += 1
        scheduled = device.first_fault_tick is not None and device.ticks == device.first_fault_tick
        if (
            self.faults
            and device.fault_left == 0
            and (scheduled or self.rng.random() < self.fault_rate)
        ):
            device.fault_left = self.rng.randint(*EPISODE_TICKS)
            codes = list(device.profile.faults.codes) if device.profile.faults else []
            device.fault_code = self.rng.choice(codes) if codes else None
        faulty = device.fault_left > 0
        device.fault_left = max(0, device.fault_left - 1)
        doc: dict[str, Any] = {}
        for spec in device.profile.fields:
            set_path(doc, spec.path, _raw(spec, self._value(device, spec, t, faulty)))
        if device.profile.faults is not None:
            set_path(doc, device.profile.faults.path, device.fault_code if faulty else "0")
        return json.dumps(doc, separators=(",", ":")).encode()

    def _value(self, device: _Device, spec: FieldMap, t: float, faulty: bool) -> float | bool:
        kind, name, rng = device.profile.kind, spec.name, self.rng
        if spec.type == "boolean":
            if name == "running":
                return math.sin(t / 40 + device.phase) > 0
            if name == "door_open":  # open while the car stands at a floor
                return math.sin(t / 40 + device.phase) <= 0
            return faulty  # smoke, fire door open, leak …: true only in an episode
        if kind == "hydrant_pressure":
            if faulty:  # a leak: below the building's GB 50974 limit
                return round(device.limit * rng.uniform(0.5, 0.9), 4)
            return round(0.32 + 0.03 * math.sin(t / 600 + device.phase) + rng.gauss(0, 0.001), 4)
        if kind == "elevator" and name == "floor":
            return float(max(1, round(9 + 8 * math.sin(t / 40 + device.phase))))
        if kind == "elevator" and "speed" in name:
            return round(1.5 * math.cos(t / 40 + device.phase), 2)
        low = spec.min if spec.min is not None else 0.0
        high = spec.max if spec.max is not None else low + 100.0
        span = high - low
        base = low + span * (0.25 + 0.05 * math.sin(t / 300 + device.phase))
        if faulty:
            base = low + span * 0.9
        return round(min(high, max(low, base + rng.gauss(0, span * 0.005))), 4)
