"""Edge rules on sensor readings: threshold (duration + hysteresis), rate of change,
stuck value, fault categories, and silence (sensor offline).

Each rule keeps a little state per sensor and turns readings into ``raised`` /
``cleared`` events, so one condition is one alert in the cloud, not one per sample.
Time comes from the readings (and the caller's clock for silence), so the rules are
plain functions of their input and are tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from microbrain.protocol import Event, EventState, Reading, Severity
from microbrain.site.sensors import (
    Fault,
    RateOfChange,
    Sensor,
    SensorProfile,
    SensorRule,
    Stuck,
    Threshold,
)
from microbrain.site.standards import (
    ELEVATOR_FAULTS,
    HYDRANT_MIN_STATIC_MPA,
    HYDRANT_STANDARD,
    BuildingCategory,
)

SILENCE_FACTOR = 3  # silence longer than 3× the expected interval means offline
OFFLINE_KIND = "sensor_offline"


# what an event's detail holds (the wire's scalars)
Detail = dict[str, float | bool | str]


def _event(
    sensor: Sensor,
    kind: str,
    state: EventState,
    severity: Severity,
    ts: datetime,
    message: str | None = None,
    detail: Detail | None = None,
    **more: float | bool | str,
) -> Event:
    return Event(
        ts=ts,
        kind=kind,
        state=state,
        severity=severity,
        building=sensor.building,
        source=sensor.id,
        message=message,
        detail={**(detail or {}), **more},
    )


def _number(value: float | bool | None) -> float | None:
    return None if value is None else float(value)


class RuleState(Protocol):
    def update(self, reading: Reading) -> list[Event]: ...

    def active_kinds(self) -> set[str]:
        """Event kinds this rule has raised and not cleared (what a recheck asks)."""
        ...


def resolve_limit(rule: Threshold, category: BuildingCategory) -> tuple[float, str | None]:
    """The numeric limit of a threshold and the standard it cites (for ``gb50974``)."""
    if rule.below == "gb50974":
        return HYDRANT_MIN_STATIC_MPA[category], HYDRANT_STANDARD
    limit = rule.below if rule.below is not None else rule.above
    if limit is None:  # the model itself requires one bound
        raise ValueError(f"threshold on {rule.field!r} has neither 'below' nor 'above'")
    return float(limit), None


@dataclass
class ThresholdState:
    """Alarm once beyond the limit for ``for_s``; clear only past ``clear_at`` (hysteresis).

    With ``warn_margin`` a second, warning-level condition ``<kind>_warning`` is raised
    while the value sits within the margin of the limit (or beyond it), with the same
    duration, so a decaying hydrant is seen before it fails.
    """

    sensor: Sensor
    rule: Threshold
    category: BuildingCategory
    limit: float = 0.0
    standard: str | None = None
    beyond_since: datetime | None = None
    raised: bool = False
    warn_since: datetime | None = None
    warned: bool = False

    def __post_init__(self) -> None:
        self.limit, self.standard = resolve_limit(self.rule, self.category)

    def active_kinds(self) -> set[str]:
        return ({self.rule.kind} if self.raised else set()) | (
            {f"{self.rule.kind}_warning"[:63]} if self.warned else set()
        )

    @property
    def below(self) -> bool:
        return self.rule.below is not None

    def _beyond(self, value: float, level: float) -> bool:
        return value < level if self.below else value > level

    def _cleared(self, value: float) -> bool:
        clear = self.rule.clear_at if self.rule.clear_at is not None else self.limit
        return value >= clear if self.below else value <= clear

    def update(self, reading: Reading) -> list[Event]:
        value = _number(reading.values.get(self.rule.field))
        if value is None:
            return []
        ts, out = reading.ts, []
        detail: Detail = {"field": self.rule.field, "value": value, "limit": self.limit}
        if self.standard:
            detail["standard"] = self.standard
        if self.rule.warn_margin is not None:
            out += self._warning(value, ts, detail)
        if self.raised:
            if self._cleared(value):
                self.raised, self.beyond_since = False, None
                out.append(
                    _event(
                        self.sensor,
                        self.rule.kind,
                        EventState.CLEARED,
                        self.rule.severity,
                        ts,
                        detail=detail,
                    )
                )
            return out
        if not self._beyond(value, self.limit):
            self.beyond_since = None
            return out
        self.beyond_since = self.beyond_since or ts
        held = (ts - self.beyond_since).total_seconds()
        if held >= self.rule.for_s:
            self.raised = True
            side = "below" if self.below else "above"
            out.append(
                _event(
                    self.sensor,
                    self.rule.kind,
                    EventState.RAISED,
                    self.rule.severity,
                    ts,
                    f"{self.rule.field} {value:g} {side} {self.limit:g} for {held:.0f} s",
                    detail=detail,
                    held_s=held,
                )
            )
        return out

    def _warning(self, value: float, ts: datetime, detail: Detail) -> list[Event]:
        margin = self.rule.warn_margin or 0.0
        level = self.limit + margin if self.below else self.limit - margin
        kind = f"{self.rule.kind}_warning"[:63]
        if self.warned:
            if not self._beyond(value, level):
                self.warned, self.warn_since = False, None
                return [
                    _event(
                        self.sensor, kind, EventState.CLEARED, Severity.WARNING, ts, detail=detail
                    )
                ]
            return []
        if not self._beyond(value, level):
            self.warn_since = None
            return []
        self.warn_since = self.warn_since or ts
        if (ts - self.warn_since).total_seconds() >= self.rule.for_s:
            self.warned = True
            return [
                _event(
                    self.sensor,
                    kind,
                    EventState.RAISED,
                    Severity.WARNING,
                    ts,
                    f"{self.rule.field} {value:g} within {margin:g} of the limit {self.limit:g}",
                    detail=detail,
                    warn_level=level,
                )
            ]
        return []


# rate is measured over at least this span: sample-to-sample rates amplify sensor noise
RATE_WINDOW_S = 60.0


class _SingleCondition:
    """A rule that raises one condition, ``rule.kind``, while ``raised`` is set."""

    rule: RateOfChange | Stuck
    raised: bool

    def active_kinds(self) -> set[str]:
        return {self.rule.kind} if self.raised else set()


@dataclass
class RateOfChangeState(_SingleCondition):
    """Raised when the value moves faster than ``max_per_min`` over the last minute (or
    more); cleared when it calms."""

    sensor: Sensor
    rule: RateOfChange
    history: deque[tuple[datetime, float]] = field(default_factory=deque)
    raised: bool = False

    def update(self, reading: Reading) -> list[Event]:
        value = _number(reading.values.get(self.rule.field))
        if value is None:
            return []
        now = reading.ts
        if self.history and now <= self.history[-1][0]:
            return []  # out of order or repeated: no rate from it
        self.history.append((now, value))
        # keep one sample at least a window old as the reference, drop the older ones
        while len(self.history) > 2 and (now - self.history[1][0]).total_seconds() >= RATE_WINDOW_S:
            self.history.popleft()
        ref_ts, ref_value = self.history[0]
        dt = (now - ref_ts).total_seconds()
        if dt < RATE_WINDOW_S:
            return []
        per_min = (value - ref_value) / dt * 60.0
        fast = abs(per_min) > self.rule.max_per_min
        if fast == self.raised:
            return []
        self.raised = fast
        state = EventState.RAISED if fast else EventState.CLEARED
        return [
            _event(
                self.sensor,
                self.rule.kind,
                state,
                self.rule.severity,
                reading.ts,
                f"{self.rule.field} changing {per_min:+.3g}/min" if fast else None,
                field=self.rule.field,
                per_min=per_min,
                max_per_min=self.rule.max_per_min,
            )
        ]


@dataclass
class StuckState(_SingleCondition):
    """A value unchanged for ``for_s`` is a broken sensor, not a steady plant."""

    sensor: Sensor
    rule: Stuck
    value: float | None = None
    since: datetime | None = None
    raised: bool = False

    def update(self, reading: Reading) -> list[Event]:
        value = _number(reading.values.get(self.rule.field))
        if value is None:
            return []
        if value != self.value or self.since is None:
            self.value, self.since = value, reading.ts
            if self.raised:
                self.raised = False
                return [
                    _event(
                        self.sensor,
                        self.rule.kind,
                        EventState.CLEARED,
                        self.rule.severity,
                        reading.ts,
                        field=self.rule.field,
                        value=value,
                    )
                ]
            return []
        held = (reading.ts - self.since).total_seconds()
        if not self.raised and held >= self.rule.for_s:
            self.raised = True
            return [
                _event(
                    self.sensor,
                    self.rule.kind,
                    EventState.RAISED,
                    self.rule.severity,
                    reading.ts,
                    f"{self.rule.field} stuck at {value:g} for {held:.0f} s",
                    field=self.rule.field,
                    value=value,
                    held_s=held,
                )
            ]
        return []


@dataclass
class FaultState:
    """One event per fault category while the device reports it; cleared when it stops."""

    sensor: Sensor
    rule: Fault
    active: set[str] = field(default_factory=set)

    def active_kinds(self) -> set[str]:
        return {self.rule.kind} if self.active else set()

    def update(self, reading: Reading) -> list[Event]:
        now = set(reading.faults)
        out = []
        for category in sorted(now - self.active):
            severity = Severity.CRITICAL if category in self.rule.critical else self.rule.severity
            out.append(
                _event(
                    self.sensor,
                    self.rule.kind,
                    EventState.RAISED,
                    severity,
                    reading.ts,
                    ELEVATOR_FAULTS.get(category, category),
                    fault=category,
                )
            )
        for category in sorted(self.active - now):
            severity = Severity.CRITICAL if category in self.rule.critical else self.rule.severity
            out.append(
                _event(
                    self.sensor,
                    self.rule.kind,
                    EventState.CLEARED,
                    severity,
                    reading.ts,
                    fault=category,
                )
            )
        self.active = now
        return out


def _state_for(sensor: Sensor, rule: SensorRule, category: BuildingCategory) -> RuleState:
    if isinstance(rule, Threshold):
        return ThresholdState(sensor, rule, category)
    if isinstance(rule, RateOfChange):
        return RateOfChangeState(sensor, rule)
    if isinstance(rule, Stuck):
        return StuckState(sensor, rule)
    return FaultState(sensor, rule)


class SensorRules:
    """All the rules of one sensor, plus its silence watch.

    >>> rules = SensorRules(sensor, profile, "residential_highrise")  # doctest: +SKIP
    >>> rules.on_reading(reading)  # doctest: +SKIP
    [Event(kind='hydrant_pressure_low', ...)]
    """

    def __init__(self, sensor: Sensor, profile: SensorProfile, category: BuildingCategory) -> None:
        self.sensor = sensor
        self.profile = profile
        self.category = category
        rules = sensor.rules if sensor.rules is not None else profile.rules
        self.states = [_state_for(sensor, rule, category) for rule in rules]
        self.expected_interval_s = sensor.expected_interval_s or profile.expected_interval_s
        self.last_seen: datetime | None = None
        self.offline = False
        self.last_reading: Reading | None = None

    def on_reading(self, reading: Reading, faults_reported: bool = True) -> list[Event]:
        """Run every rule on ``reading``.

        ``faults_reported`` is False for a payload that said nothing about faults (a
        status-only partial update): the fault rules then keep their active faults
        instead of reading the empty ``faults`` as "all cleared".
        """
        out: list[Event] = []
        if self.offline:
            self.offline = False
            out.append(
                _event(self.sensor, OFFLINE_KIND, EventState.CLEARED, Severity.WARNING, reading.ts)
            )
        self.last_seen, self.last_reading = reading.ts, reading
        for state in self.states:
            if isinstance(state, FaultState) and not faults_reported:
                continue
            out += state.update(reading)
        return out

    def active_kinds(self) -> set[str]:
        """Every condition currently raised for this sensor, ``sensor_offline`` included."""
        kinds = {OFFLINE_KIND} if self.offline else set()
        for state in self.states:
            kinds |= state.active_kinds()
        return kinds

    def check_silence(self, now: datetime) -> list[Event]:
        """Raise ``sensor_offline`` once nothing came for 3× the expected interval.

        A sensor never heard from counts from ``started`` (the first call's ``now``).
        """
        if self.last_seen is None:
            self.last_seen = now
            return []
        silent = (now - self.last_seen).total_seconds()
        if self.offline or silent < SILENCE_FACTOR * self.expected_interval_s:
            return []
        self.offline = True
        return [
            _event(
                self.sensor,
                OFFLINE_KIND,
                EventState.RAISED,
                Severity.WARNING,
                now,
                f"no reading for {silent:.0f} s",
                silent_s=silent,
                expected_interval_s=self.expected_interval_s,
            )
        ]
