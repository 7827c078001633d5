"""The gateway's sensor hub: subscribe to device topics on the local broker, map each
payload to a Reading, run the rules, and hand readings and events to a sink (the outbox).

Bad payloads are logged (rate-limited, so a flood cannot fill the disk with log lines),
counted per reason, and dropped; they never stop the hub. Messages are handled on the
MQTT thread, one at a time, so a flood is held back by TCP rather than queued in memory.
Readings of a chatty device are coalesced to one per ``reading_min_interval_s`` (the
forwarded one carries how many ``samples`` it stands for); every sample still goes
through the rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from edge.sensors.adapter import BadSensorPayload, SensorAdapter
from edge.sensors.rules import SensorRules
from microbrain.protocol import Event, Reading, utc_now
from microbrain.site.model import GatewayPlace, Site

log = logging.getLogger(__name__)

REJECTED = Counter("mb_edge_sensor_rejected_total", "sensor payloads rejected", ["reason"])
ACCEPTED = Counter("mb_edge_sensor_readings_total", "sensor payloads accepted")
EVENTS = Counter("mb_edge_sensor_events_total", "events raised by sensor rules", ["kind"])

Sink = Callable[[Sequence[Event | Reading]], None]
LOG_EVERY_S = 10.0


@dataclass
class _Device:
    adapter: SensorAdapter
    rules: SensorRules
    last_forwarded: datetime | None = None
    pending_samples: int = 0


class SensorHub:
    """Route payloads by topic to their sensor; see :meth:`handle`."""

    def __init__(
        self, site: Site, place: GatewayPlace, sink: Sink, reading_min_interval_s: float = 0.0
    ) -> None:
        self.sink = sink
        self.reading_min_interval_s = reading_min_interval_s
        categories = {b.id: b.category for b in place.compound.buildings}
        self.devices: dict[str, _Device] = {}
        for sensor in place.gateway.sensors:
            profile = site.profile(sensor.profile)
            self.devices[sensor.topic] = _Device(
                SensorAdapter(sensor, profile),
                SensorRules(sensor, profile, categories[sensor.building]),
            )
        self.by_id = {d.adapter.sensor.id: d for d in self.devices.values()}
        # told of every accepted sample, coalesced or not (the elevator guard's door state)
        self.on_sample: Callable[[Reading], None] | None = None
        self.rejected = 0
        self._lock = threading.Lock()
        self._last_log: dict[tuple[str, str], tuple[float, int]] = {}

    def carry_over(self, previous: SensorHub) -> int:
        """Keep the rule state of every sensor ``previous`` (the hub this one replaces on
        a config reload) ran with the same definition, profile and building category, so
        raised conditions are neither forgotten nor raised twice; returns how many."""
        kept = 0
        with previous._lock, self._lock:
            for sensor_id, device in self.by_id.items():
                old = previous.by_id.get(sensor_id)
                if old is None:
                    continue
                rules, new = old.rules, device.rules
                same = (rules.sensor, rules.profile, rules.category) == (
                    new.sensor,
                    new.profile,
                    new.category,
                )
                if same:
                    device.rules = rules
                    device.last_forwarded = old.last_forwarded
                    device.pending_samples = old.pending_samples
                    kept += 1
        return kept

    @property
    def topics(self) -> list[str]:
        return list(self.devices)

    def handle(self, topic: str, raw: bytes, now: datetime | None = None) -> list[Event | Reading]:
        """Process one device message; returns what went to the sink (for tests)."""
        device = self.devices.get(topic)
        if device is None:
            self._reject(topic, BadSensorPayload("unknown_topic", "no sensor on this topic"))
            return []
        try:
            reading, faults_reported = device.adapter.read(raw, now)
        except BadSensorPayload as err:
            self._reject(device.adapter.sensor.id, err)
            return []
        ACCEPTED.inc()
        with self._lock:
            events = device.rules.on_reading(reading, faults_reported)
            out: list[Event | Reading] = []
            if self._forward(device, reading, bool(events)):
                out.append(reading.model_copy(update={"samples": device.pending_samples}))
                device.pending_samples = 0
            out += events
            # still under the lock: another thread's events (check_silence) must not
            # reach the outbox between these rules' state change and their seq
            if out:
                self.sink(out)
        for event in events:
            EVENTS.labels(kind=event.kind).inc()
        if self.on_sample is not None:
            try:
                self.on_sample(reading)
            except Exception:  # a listener's bug must never stop the sensors
                log.exception("sensor %s: the sample listener failed", reading.sensor)
        return out

    def _forward(self, device: _Device, reading: Reading, has_events: bool) -> bool:
        device.pending_samples += 1
        last = device.last_forwarded
        due = (
            last is None
            or has_events
            or self.reading_min_interval_s <= 0
            or (reading.ts - last).total_seconds() >= self.reading_min_interval_s
        )
        if due:
            device.last_forwarded = reading.ts
        return due

    def check_silence(self, now: datetime | None = None) -> list[Event]:
        """Raise ``sensor_offline`` for devices silent too long; call it every few seconds."""
        now = now or utc_now()
        with self._lock:
            events = [e for d in self.devices.values() for e in d.rules.check_silence(now)]
            if events:  # under the lock, as in handle(): outbox order = rule order
                self.sink(events)
        return events

    def silent_sensors(self) -> tuple[str, ...]:
        return tuple(sorted(d.adapter.sensor.id for d in self.devices.values() if d.rules.offline))

    def active_kinds(self, sensor_id: str) -> set[str] | None:
        """Conditions raised and not cleared for a sensor; None if it is not ours."""
        device = self.by_id.get(sensor_id)
        if device is None:
            return None
        with self._lock:
            return device.rules.active_kinds()

    def last_reading(self, sensor_id: str) -> Reading | None:
        device = self.by_id.get(sensor_id)
        return device.rules.last_reading if device else None

    def _reject(self, where: str, err: BadSensorPayload) -> None:
        self.rejected += 1
        REJECTED.labels(reason=err.reason).inc()
        key = (where[:64], err.reason)
        now = time.monotonic()
        last, suppressed = self._last_log.get(key, (0.0, 0))
        if now - last >= LOG_EVERY_S:
            more = f" ({suppressed} more since the last line)" if suppressed else ""
            log.warning("sensor %s: rejected payload: %s%s", where[:64], err, more)
            self._last_log[key] = (now, 0)
        else:
            self._last_log[key] = (last, suppressed + 1)
        if len(self._last_log) > 1024:  # unknown topics must not grow this without end
            self._last_log.clear()
