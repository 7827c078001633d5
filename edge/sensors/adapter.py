"""Map a vendor's JSON payload to a :class:`Reading`, as its :class:`SensorProfile` says.

A payload that cannot be trusted (not JSON, too large, NaN, a wrong type, a value outside
the profile's range) raises :class:`BadSensorPayload` with a short ``reason`` label for
the counter and a one-line ``detail`` for the log; nothing half-parsed leaves here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from microbrain.protocol import Reading, utc_now
from microbrain.site.sensors import FieldMap, Sensor, SensorProfile

# the largest vendor payload we read at all; real devices send a few hundred bytes
MAX_SENSOR_PAYLOAD = 16 * 1024
NO_FAULT = {"", "0", "00", "000", "ok", "none", "normal"}
UNKNOWN_FAULT = "unknown_fault"

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class BadSensorPayload(ValueError):
    """A vendor payload rejected; ``reason`` is a fixed label, ``detail`` explains."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    node = data
    for key, index in _PATH_PART.findall(path):
        if key:
            if not isinstance(node, dict) or key not in node:
                return _MISSING
            node = node[key]
        else:
            i = int(index)
            if not isinstance(node, list) or i >= len(node):
                return _MISSING
            node = node[i]
    return node


def _reject_constant(name: str) -> None:
    raise BadSensorPayload("not_finite", f"{name} is not a finite number")


def parse_json(raw: bytes) -> dict[str, Any]:
    """Parse a vendor payload: bounded size, strict JSON, an object at the top."""
    if len(raw) > MAX_SENSOR_PAYLOAD:
        raise BadSensorPayload("too_large", f"{len(raw)} bytes exceeds {MAX_SENSOR_PAYLOAD}")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except BadSensorPayload:
        raise
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BadSensorPayload("not_json", str(err)[:120]) from None
    if not isinstance(data, dict):
        raise BadSensorPayload("not_json", f"expected a JSON object, got {type(data).__name__}")
    return data


def _field_value(spec: FieldMap, raw: Any) -> float | bool:
    if spec.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise BadSensorPayload(
            "wrong_type", f"{spec.name} ({spec.path}) must be a boolean, got {raw!r:.40}"
        )
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadSensorPayload(
            "wrong_type", f"{spec.name} ({spec.path}) must be a number, got {raw!r:.40}"
        )
    if not math.isfinite(raw):
        raise BadSensorPayload("not_finite", f"{spec.name} is {raw}")
    value = raw * spec.scale + spec.offset
    if not math.isfinite(value):
        raise BadSensorPayload("not_finite", f"{spec.name} scales to {value}")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise BadSensorPayload(
            "out_of_range", f"{spec.name} = {value:g} outside [{spec.min}, {spec.max}]"
        )
    return value


@dataclass(frozen=True)
class SensorAdapter:
    """One device's mapping: vendor bytes in, a Reading out."""

    sensor: Sensor
    profile: SensorProfile

    def to_reading(self, raw: bytes, now: datetime | None = None) -> Reading:
        """Map ``raw`` or raise :class:`BadSensorPayload`; see :meth:`read`."""
        return self.read(raw, now)[0]

    def read(self, raw: bytes, now: datetime | None = None) -> tuple[Reading, bool]:
        """Map ``raw`` to a Reading and whether the payload reported faults at all.

        A field absent from the payload is left out (devices send partial updates); a
        payload with none of the profile's fields and no fault is rejected. The flag
        tells the rules apart a status-only update (faults unknown, keep the active ones)
        from one that reports no fault (clear them): the wire Reading carries ``()`` for
        both.
        """
        data = parse_json(raw)
        values: dict[str, float | bool] = {}
        units: dict[str, str] = {}
        for spec in self.profile.fields:
            found = _lookup(data, spec.path)
            if found is _MISSING or found is None:
                continue
            values[spec.name] = _field_value(spec, found)
            if spec.unit:
                units[spec.name] = spec.unit
        faults = self._faults(data)
        if not values and faults is None:
            wanted = ", ".join(f.path for f in self.profile.fields) or "(no fields)"
            raise BadSensorPayload("missing", f"none of the fields {wanted} present")
        reading = Reading(
            ts=now or utc_now(),
            sensor=self.sensor.id,
            kind=self.profile.kind,
            building=self.sensor.building,
            values=values,
            units=units,
            faults=faults or (),
        )
        return reading, faults is not None

    def _faults(self, data: dict[str, Any]) -> tuple[str, ...] | None:
        """Fault categories reported; None when the payload says nothing about faults."""
        spec = self.profile.faults
        if spec is None:
            return None
        found = _lookup(data, spec.path)
        if found is _MISSING:
            return None
        codes = found if isinstance(found, list) else [found]
        out: list[str] = []
        for code in codes[:16]:
            if code is None or isinstance(code, bool | dict | list):
                if code in (None, False):
                    continue
                raise BadSensorPayload("wrong_type", f"fault code {code!r:.40} is not a code")
            text = str(code).strip()
            if text.lower() in NO_FAULT:
                continue
            category = spec.codes.get(text, UNKNOWN_FAULT)
            if category not in out:
                out.append(category)
        return tuple(out)
