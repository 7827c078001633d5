"""电动车进电梯: what the gateway does on the spot when a camera sees an e-bike in a lift.

A camera's ``ebike_in_elevator`` rule (microbrain/site/cameras.py) raises when an e-bike
is inside the car. Before that event reaches the outbox, the guard answers it here, on
the gateway, without waiting for the cloud:

- the rule's voice warning (请将电动车推出电梯) plays in the car through the gateway's
  announcer;
- where the rule's ``elevator`` sensor declares a ``controller``, its ``on_raise``
  command (e.g. hold the doors open) goes to the elevator on the local broker, and its
  ``on_clear`` once the e-bike is out;
- the elevator's door state comes from its readings (``door_field``): a door that is
  closed with the e-bike inside, or closes on it later, raises the alert to
  ``door_closed_severity`` (a second raise of the same alert: the cloud keeps the highest
  severity) and says the warning again.

What was done goes into the event's detail (``voice``, ``elevator_command``, ``door``), so
the duty desk sees whether the doors were held and the warning played. A step that fails
(no audio, the local broker down) is logged, counted and named there; the event is stored
all the same.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from microbrain.protocol import Announce, Event, EventState, Reading, utc_now
from microbrain.protocol.payloads import new_id
from microbrain.site.cameras import EbikeInElevator
from microbrain.site.model import GatewayPlace, Site
from microbrain.site.sensors import Controller, Sensor

log = logging.getLogger(__name__)

KIND = "ebike_in_elevator"

ACTIONS = Counter(
    "mb_edge_elevator_actions_total",
    "what the gateway did on the spot about e-bikes in elevators",
    ["action", "outcome"],
)

Store = Callable[[Event], None]
# each returns None when done, else the reason it could not be
Announcer = Callable[[Announce], str | None]
Publisher = Callable[[str, bytes, int], str | None]


@dataclass(frozen=True)
class _Watch:
    """One camera zone with an ``ebike_in_elevator`` rule, and its elevator (if named)."""

    rule: EbikeInElevator
    elevator: Sensor | None
    stale_after_s: float  # the elevator's door state is unknown once this old


@dataclass
class _Door:
    open: bool
    at: datetime


@dataclass
class _Episode:
    raised: Event  # as stored: the template of an escalation
    escalated: bool


def _short(reason: str) -> str:
    return reason.replace("\n", " ")[:200]


class ElevatorGuard:
    """Give every event to :meth:`emit` instead of the outbox, and every accepted sensor
    sample to :meth:`on_sample`. Events of other kinds pass through untouched."""

    def __init__(
        self,
        site: Site,
        place: GatewayPlace,
        store: Store,
        announce: Announcer | None = None,
        publish: Publisher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.announce = announce
        self.publish = publish
        self.clock = clock
        sensors = {s.id: s for s in place.gateway.sensors}
        self._watches: dict[tuple[str, str], _Watch] = {}
        for camera in place.gateway.cameras:
            for zone in camera.zones:
                for rule in zone.rules:
                    if not isinstance(rule, EbikeInElevator):
                        continue
                    elevator = sensors.get(rule.elevator) if rule.elevator else None
                    interval = 60.0
                    if elevator is not None:
                        interval = (
                            elevator.expected_interval_s
                            or site.profile(elevator.profile).expected_interval_s
                        )
                    self._watches[(camera.id, zone.id)] = _Watch(rule, elevator, 3 * interval)
        # elevator sensor id → the door fields its samples are read for (on_sample runs
        # for every accepted sample of every sensor: a dict lookup, nothing more)
        self._door_fields: dict[str, set[str]] = {}
        for watch in self._watches.values():
            if watch.elevator is not None and watch.rule.door_field is not None:
                self._door_fields.setdefault(watch.elevator.id, set()).add(watch.rule.door_field)
        self._doors: dict[str, _Door] = {}
        self._episodes: dict[tuple[str, str], _Episode] = {}
        # one lock over decisions and the store: an escalation never reaches the outbox
        # after the clear of its episode, and two raises never race for one episode
        self._lock = threading.Lock()

    @property
    def watching(self) -> bool:
        return bool(self._watches)

    # -- events from the cameras --------------------------------------------------------

    def emit(self, event: Event) -> None:
        watch = self._watches.get((event.source, event.zone or "")) if event.kind == KIND else None
        if watch is None:
            self.store(event)
            return
        with self._lock:
            if event.state is EventState.RAISED:
                event = self._on_raise(watch, event)
            else:
                event = self._on_clear(watch, event)
            self.store(event)

    def _on_raise(self, watch: _Watch, event: Event) -> Event:
        key = (event.source, event.zone or "")
        detail = dict(event.detail)
        detail["voice"] = self._say(watch)
        detail.update(self._command(watch, "raise"))
        door = self._door_state(watch)
        detail["door"] = door
        escalated = door == "closed"
        severity = event.severity
        message = event.message or ""
        if escalated:
            severity = max(severity, watch.rule.door_closed_severity)
            detail["escalated"] = True
            message = f"电梯门已关闭，轿厢内有电动车 · {message}"
            ACTIONS.labels("escalation", "ok").inc()
        event = event.model_copy(
            update={"severity": severity, "detail": detail, "message": message[:500]}
        )
        self._episodes[key] = _Episode(event, escalated)
        log.warning(
            "e-bike in elevator (camera %s, zone %s): voice %s, command %s, door %s",
            event.source,
            event.zone,
            detail["voice"],
            detail["elevator_command"],
            door,
        )
        return event

    def _on_clear(self, watch: _Watch, event: Event) -> Event:
        self._episodes.pop((event.source, event.zone or ""), None)
        detail = {**event.detail, **self._command(watch, "clear")}
        log.info(
            "e-bike out of the elevator (camera %s, zone %s): command %s",
            event.source,
            event.zone,
            detail["elevator_command"],
        )
        return event.model_copy(update={"detail": detail})

    # -- the elevator's readings --------------------------------------------------------

    def on_sample(self, reading: Reading) -> None:
        """A sample the sensor hub accepted (every one, not only those forwarded)."""
        fields = self._door_fields.get(reading.sensor)
        if not fields:
            return
        with self._lock:
            for name in fields:
                value = reading.values.get(name)
                if value is None:
                    continue
                was = self._doors.get(reading.sensor)
                self._doors[reading.sensor] = _Door(bool(value), reading.ts)
                if not value and (was is None or was.open):
                    self._door_closed(reading)

    def _door_closed(self, reading: Reading) -> None:
        for key, episode in self._episodes.items():
            watch = self._watches[key]
            if episode.escalated or watch.elevator is None or watch.elevator.id != reading.sensor:
                continue
            episode.escalated = True
            raised = episode.raised
            detail = {
                **raised.detail,
                "voice": self._say(watch),
                "door": "closed",
                "escalated": True,
            }
            escalation = raised.model_copy(
                update={
                    "id": new_id(),
                    "ts": reading.ts,
                    "seq": 0,
                    "severity": max(raised.severity, watch.rule.door_closed_severity),
                    "message": f"电梯门已关闭，轿厢内仍有电动车 (elevator {reading.sensor})",
                    "evidence": (),
                    "frame_ts": None,
                    "detail": detail,
                }
            )
            ACTIONS.labels("escalation", "ok").inc()
            log.warning(
                "elevator %s closed its door with an e-bike inside (camera %s, zone %s): "
                "severity %d",
                reading.sensor,
                raised.source,
                raised.zone,
                escalation.severity,
            )
            self.store(escalation)

    def _door_state(self, watch: _Watch) -> str:
        if watch.elevator is None or watch.rule.door_field is None:
            return "unknown"
        door = self._doors.get(watch.elevator.id)
        if door is None or (self.clock() - door.at).total_seconds() > watch.stale_after_s:
            return "unknown"
        return "open" if door.open else "closed"

    # -- what the gateway does ----------------------------------------------------------

    def _say(self, watch: _Watch) -> str:
        voice = watch.rule.voice
        if voice is None:
            return "off"
        if self.announce is None:
            ACTIONS.labels("voice", "failed").inc()
            return "failed: this gateway has no audio output configured"
        cmd = Announce(
            id=new_id(),
            text=voice.text,
            clip=voice.clip,
            speaker=voice.speaker,
            repeat=voice.repeat,
        )
        try:
            refused = self.announce(cmd)
        except Exception as err:  # noqa: BLE001 - the alert must be stored whatever the speaker does
            refused = f"{type(err).__name__}: {err}"
        if refused is not None:
            ACTIONS.labels("voice", "failed").inc()
            log.error("e-bike in elevator: the voice warning failed: %s", refused)
            return _short(f"failed: {refused}")
        ACTIONS.labels("voice", "ok").inc()
        return "queued"

    def _command(self, watch: _Watch, when: str) -> dict[str, str | bool | int | float]:
        controller: Controller | None = watch.elevator.controller if watch.elevator else None
        if controller is None:
            return {"elevator_command": "none"}
        payload = controller.on_raise if when == "raise" else controller.on_clear
        if payload is None:
            return {"elevator_command": "none"}
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if self.publish is None:
            reason: str | None = "no local broker configured"
        else:
            try:
                reason = self.publish(controller.topic, data, controller.qos)
            except Exception as err:  # noqa: BLE001 - named in the event, never lost
                reason = f"{type(err).__name__}: {err}"
        if reason is not None:
            ACTIONS.labels(f"command_{when}", "failed").inc()
            log.error(
                "e-bike in elevator: command to %s on %s failed: %s",
                watch.elevator.id if watch.elevator else "?",
                controller.topic,
                reason,
            )
            return {"elevator_command": _short(f"failed: {reason}")}
        ACTIONS.labels(f"command_{when}", "ok").inc()
        return {"elevator_command": "sent", "elevator_topic": controller.topic[:200]}
