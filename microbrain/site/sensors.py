"""Sensors: how a vendor's payload maps to a Reading, and the rules that judge it.

A new sensor kind is a new :class:`SensorProfile` in YAML, not code.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue, StringConstraints, model_validator

from microbrain.protocol.payloads import Severity
from microbrain.site.common import Duration, Id, Name, Strict

JsonPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+|\[\d+\])*$", max_length=200),
    Field(description="dotted path into the vendor JSON, e.g. data.pressure or values[0]"),
]


class FieldMap(Strict):
    """One value taken from the vendor payload: ``value = raw * scale + offset``."""

    name: Id
    path: JsonPath
    type: Literal["number", "boolean"] = "number"
    scale: float = 1.0
    offset: float = 0.0
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None
    min: float | None = Field(default=None, description="below this the reading is rejected")
    max: float | None = Field(default=None, description="above this the reading is rejected")

    @model_validator(mode="after")
    def _range(self) -> FieldMap:
        # scale 0 turns every reading into `offset` (and the simulator divides by it)
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


class FaultMap(Strict):
    """Vendor fault codes → fault categories (e.g. GB/T 24476's for elevators)."""

    path: JsonPath
    codes: dict[str, Id] = Field(min_length=1)


class Threshold(Strict):
    """Alarm when ``field`` stays beyond the limit for ``for_s``; clear past ``clear_at``.

    ``below: gb50974`` takes the hydrant limit for the building's category.
    """

    type: Literal["threshold"]
    kind: Id = Field(description="event kind raised, e.g. hydrant_pressure_low")
    field: Id
    below: float | Literal["gb50974"] | None = None
    above: float | None = None
    clear_at: float | None = Field(default=None, description="hysteresis: level that clears it")
    warn_margin: float | None = Field(
        default=None, ge=0, description="a warning band this far before the limit"
    )
    for_s: Duration = Field(
        default=0.0, ge=0, le=86_400, description="the condition must persist this long"
    )
    severity: Severity = Severity.CRITICAL

    @model_validator(mode="after")
    def _one_side(self) -> Threshold:
        if (self.below is None) == (self.above is None):
            raise ValueError("set exactly one of 'below' or 'above'")
        # clear_at is hysteresis: it must lie on the healthy side of the limit, or a
        # value between the two raises and clears in a loop. 'gb50974' depends on the
        # building, so site verification checks that case.
        if self.clear_at is not None:
            if isinstance(self.below, float) and self.clear_at < self.below:
                raise ValueError(
                    f"clear_at {self.clear_at:g} must be at or above below {self.below:g}"
                )
            if self.above is not None and self.clear_at > self.above:
                raise ValueError(
                    f"clear_at {self.clear_at:g} must be at or below above {self.above:g}"
                )
        return self


class RateOfChange(Strict):
    type: Literal["rate_of_change"]
    kind: Id
    field: Id
    max_per_min: float = Field(gt=0, description="largest change per minute still normal")
    severity: Severity = Severity.WARNING


class Stuck(Strict):
    """A value that never changes is a broken sensor, not a steady plant."""

    type: Literal["stuck"]
    kind: Id = "sensor_stuck"
    field: Id
    for_s: Duration = Field(
        default=6 * 3600.0, ge=60, le=30 * 86_400, description="no change for this long"
    )
    severity: Severity = Severity.WARNING


class Fault(Strict):
    """Raise an event for each fault category the reading reports."""

    type: Literal["fault"]
    kind: Id = "device_fault"
    critical: tuple[Id, ...] = Field(default=(), description="categories raised as critical")
    severity: Severity = Severity.WARNING


SensorRule = Annotated[Threshold | RateOfChange | Stuck | Fault, Field(discriminator="type")]


class SensorProfile(Strict):
    """A kind of device as one vendor reports it."""

    id: Id
    kind: Id = Field(description="what it measures: elevator, hydrant_pressure, smoke, …")
    fields: tuple[FieldMap, ...] = Field(default=(), max_length=32)
    faults: FaultMap | None = None
    expected_interval_s: Duration = Field(
        default=60.0, ge=1, le=86_400, description="silence longer than 3× this is 'offline'"
    )
    rules: tuple[SensorRule, ...] = ()


# A concrete topic on the gateway's local broker: routed by exact match, so a wildcard
# (+, #) would swallow other sensors' messages, and MQTT forbids NUL.
LocalTopic = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^+#\x00]+$")
]


class Controller(Strict):
    """A device's own command interface on the gateway's local broker (e.g. an elevator
    controller that can hold its doors open): what the gateway publishes, and where, when
    a camera rule that names this device raises (``on_raise``) and clears (``on_clear``).
    The payloads are the vendor's JSON, sent as written."""

    topic: LocalTopic = Field(description="topic the device takes commands on")
    on_raise: dict[str, JsonValue] = Field(
        min_length=1,
        max_length=32,
        description='e.g. {"cmd": "hold_door_open", "seconds": 120}',
    )
    on_clear: dict[str, JsonValue] | None = Field(
        default=None, max_length=32, description='e.g. {"cmd": "release_door"}; null: nothing'
    )
    qos: Literal[0, 1] = 1


class Sensor(Strict):
    """One device, wired to a gateway, in a building."""

    id: Id
    name: Name | None = None
    building: Id
    profile: Id
    topic: LocalTopic = Field(
        description="topic the device publishes on the gateway's local broker (no + or # wildcards)"
    )
    rules: tuple[SensorRule, ...] | None = Field(
        default=None, description="replace the profile's rules for this device"
    )
    expected_interval_s: Duration | None = Field(
        default=None, ge=1, le=86_400, description="override the profile's"
    )
    controller: Controller | None = Field(
        default=None, description="its command interface, where it has one (see Controller)"
    )
