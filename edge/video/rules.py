"""Zone rules: turn who-is-where-since-when into findings (raise once, clear once).

Every rule raises one finding per violation and one ``cleared`` finding when it ends;
a violator the tracker loses and finds again at the same place within ``REACQUIRE_S``
(the same parked car after a missed detection, a new track id) is the same violation.
Thresholds come from the camera config (microbrain/site/cameras.py), bounded there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Generic, TypeVar

import numpy as np

from edge.video.detections import Detections
from edge.video.geometry import anchors, box_gap, iou_matrix
from edge.video.zones import Crossing, Occupant
from microbrain.protocol.payloads import EventState, Severity
from microbrain.site.cameras import (
    EbikeCharging,
    IllegalParking,
    Line,
    ObjectInZone,
    UnleashedDog,
    ZoneRule,
)

# the detail an event carries (the wire's `Scalar` values)
Detail = dict[str, float | int | bool | str]
# the config of a per-track dwell rule (ObjectInZone counts the zone, not tracks)
_Config = TypeVar("_Config", IllegalParking, EbikeCharging, UnleashedDog)

REACQUIRE_S = 10.0  # a lost violator found again at the same spot within this is the same one
REACQUIRE_IOU = 0.5


@dataclass(frozen=True)
class Finding:
    """What a rule concluded this frame; the pipeline turns it into an Event."""

    kind: str
    state: EventState
    severity: Severity
    zone: str | None
    track_id: int | None
    box: np.ndarray | None  # xyxy of the object, for the evidence picture
    object_class: str | None
    confidence: float | None
    dwell_s: float | None
    message: str
    detail: Detail = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """One update of one zone: all tracked detections, who is inside, the time."""

    tracked: Detections
    occupants: list[Occupant]
    ts: float  # video seconds
    local_time: datetime  # frame time in the site's timezone, for night schedules


@dataclass
class _Violation:
    since: float | None  # when the condition became (and stayed) true
    box: np.ndarray
    class_name: str
    confidence: float
    raised: bool = False
    raised_detail: Detail = field(default_factory=dict)
    ref: np.ndarray | None = None  # parking: anchor where it stopped
    lost_at: float | None = None


class _TrackRule(Generic[_Config]):
    """Per-track dwell machinery shared by parking, charging and dog rules."""

    kind = ""

    def __init__(self, zone: str, config: _Config) -> None:
        self.zone = zone
        self.config: _Config = config
        self._tracks: dict[int, _Violation] = {}
        self._lost: dict[int, _Violation] = {}

    classes: tuple[str, ...] = ()

    def condition(self, ctx: Context, occ: Occupant, v: _Violation) -> bool:
        return True

    def limit(self, ctx: Context) -> float:
        return float(self.config.dwell_s)

    def raise_detail(self, ctx: Context, occ: Occupant) -> tuple[Severity, Detail]:
        return self.config.severity, {}

    def describe(self, v: _Violation, dwell: float) -> str:
        return f"{v.class_name} in zone {self.zone} for {dwell:.0f}s"

    def _adopt(self, box: np.ndarray, ts: float) -> _Violation | None:
        for tid, v in list(self._lost.items()):
            if (
                ts - (v.lost_at or ts) <= REACQUIRE_S
                and iou_matrix(box, v.box)[0, 0] >= REACQUIRE_IOU
            ):
                del self._lost[tid]
                v.lost_at = None
                return v
        return None

    def update(self, ctx: Context) -> list[Finding]:
        out: list[Finding] = []
        names = ctx.tracked.names
        present: set[int] = set()
        for occ in ctx.occupants:
            cls = names[occ.row]
            if cls not in self.classes:
                continue
            box = ctx.tracked.xyxy[occ.row]
            conf = float(ctx.tracked.confidence[occ.row])
            present.add(occ.track_id)
            v = self._tracks.get(occ.track_id)
            if v is None:
                v = self._adopt(box, ctx.ts) or _Violation(
                    ctx.ts - occ.time_in_zone, box, cls, conf
                )
                self._tracks[occ.track_id] = v
            v.box, v.class_name, v.confidence = box, cls, conf
            if not self.condition(ctx, occ, v):
                if v.raised:
                    out.append(
                        self._finding(
                            EventState.CLEARED, occ.track_id, v, ctx.ts, "condition ended"
                        )
                    )
                    v.raised = False
                v.since = None
                continue
            if v.since is None:
                v.since = ctx.ts
            dwell = ctx.ts - v.since
            if not v.raised and dwell >= self.limit(ctx):
                severity, detail = self.raise_detail(ctx, occ)
                v.raised, v.raised_detail = True, {**detail, "dwell_limit_s": self.limit(ctx)}
                out.append(
                    Finding(
                        self.kind,
                        EventState.RAISED,
                        severity,
                        self.zone,
                        occ.track_id,
                        box.copy(),
                        cls,
                        conf,
                        round(dwell, 3),
                        self.describe(v, dwell),
                        v.raised_detail,
                    )
                )
        for tid in [t for t in self._tracks if t not in present]:
            v = self._tracks.pop(tid)
            if v.raised:
                v.lost_at = ctx.ts
                self._lost[tid] = v
        for tid, v in list(self._lost.items()):
            if ctx.ts - (v.lost_at or ctx.ts) > REACQUIRE_S:
                del self._lost[tid]
                out.append(
                    self._finding(EventState.CLEARED, tid, v, v.lost_at or ctx.ts, "left the zone")
                )
        return out

    @property
    def active(self) -> bool:
        """A violation is raised and not cleared (what a recheck asks)."""
        return any(v.raised for v in [*self._tracks.values(), *self._lost.values()])

    def flush(self, ts: float) -> list[Finding]:
        """Clear every raised violation now (end of stream, scene cut, camera reset)."""
        out = [
            self._finding(EventState.CLEARED, tid, v, ts, "no longer observed")
            for tid, v in {**self._lost, **self._tracks}.items()
            if v.raised
        ]
        self._tracks.clear()
        self._lost.clear()
        return out

    def _finding(self, state: EventState, tid: int, v: _Violation, ts: float, why: str) -> Finding:
        dwell = max(0.0, ts - v.since) if v.since is not None else None
        severity = Severity.INFO if state is EventState.CLEARED else self.config.severity
        return Finding(
            self.kind,
            state,
            severity,
            self.zone,
            tid,
            v.box.copy(),
            v.class_name,
            v.confidence,
            round(dwell, 3) if dwell is not None else None,
            f"{v.class_name} in zone {self.zone}: {why}",
            dict(v.raised_detail),
        )


class IllegalParkingRule(_TrackRule[IllegalParking]):
    """违停: a vehicle standing still in the zone for ``dwell_s``; moving more than
    ``max_drift`` × its box height restarts the clock (it was driving, not parked)."""

    kind = "illegal_parking"

    def __init__(self, zone: str, config: IllegalParking) -> None:
        super().__init__(zone, config)
        self.classes = tuple(config.classes)

    def condition(self, ctx: Context, occ: Occupant, v: _Violation) -> bool:
        point = anchors(v.box)[0]
        height = max(1.0, float(v.box[3] - v.box[1]))
        if v.ref is None:
            v.ref = point
        elif np.hypot(*(point - v.ref)) > self.config.max_drift * height:
            v.ref = point
            if not v.raised:
                v.since = ctx.ts
        return True

    def describe(self, v: _Violation, dwell: float) -> str:
        return f"{v.class_name} parked in no-parking zone {self.zone} for {dwell:.0f}s"


def in_window(now: time, start: time, end: time) -> bool:
    """Is ``now`` inside [start, end), a window that may wrap past midnight?"""
    return start <= now < end if start < end else (now >= start or now < end)


class EbikeChargingRule(_TrackRule[EbikeCharging]):
    """飞线充电: a two-wheeler standing in a no-charging zone; stricter at night; a
    ``charging_cable`` box touching it (retrained models only) raises the severity."""

    kind = "ebike_charging"

    def __init__(self, zone: str, config: EbikeCharging) -> None:
        super().__init__(zone, config)
        self.classes = tuple(config.classes)

    def limit(self, ctx: Context) -> float:
        night = self.config.night
        if night is not None and in_window(ctx.local_time.time(), night.start, night.end):
            return float(night.dwell_s)
        return float(self.config.dwell_s)

    def raise_detail(self, ctx: Context, occ: Occupant) -> tuple[Severity, Detail]:
        cables = ctx.tracked.of_classes(("charging_cable",))
        box = ctx.tracked.xyxy[occ.row]
        touching = bool(len(cables) and (box_gap(box, cables.xyxy)[0] == 0).any())
        severity = self.config.severity
        if touching:
            severity = Severity(min(int(Severity.CRITICAL), int(severity) + 1))
        night = self.limit(ctx) != float(self.config.dwell_s)
        return severity, {"cable_touching": touching, "night": night}

    def describe(self, v: _Violation, dwell: float) -> str:
        return f"{v.class_name} standing in no-charging zone {self.zone} for {dwell:.0f}s"


class UnleashedDogRule(_TrackRule[UnleashedDog]):
    """不文明养犬: a dog with no person within ``person_distance_k`` × its box height (gap
    between the boxes) and no ``leash`` box touching it, for ``dwell_s``."""

    kind = "unleashed_dog"
    classes = ("dog",)

    def condition(self, ctx: Context, occ: Occupant, v: _Violation) -> bool:
        box = ctx.tracked.xyxy[occ.row]
        height = max(1.0, float(box[3] - box[1]))
        persons = ctx.tracked.of_classes(("person",))
        reach = self.config.person_distance_k * height
        if len(persons) and box_gap(box, persons.xyxy)[0].min() <= reach:
            return False
        leashes = ctx.tracked.of_classes(("leash",))
        return not (len(leashes) and (box_gap(box, leashes.xyxy)[0] == 0).any())

    def describe(self, v: _Violation, dwell: float) -> str:
        return f"dog without a person nearby in zone {self.zone} for {dwell:.0f}s"


class ObjectInZoneRule:
    """Generic: at least ``min_count`` of ``classes`` in the zone for ``dwell_s``; one
    event per episode, named by the rule's ``kind``."""

    def __init__(self, zone: str, config: ObjectInZone) -> None:
        self.zone = zone
        self.config = config
        self.kind = config.kind
        self._since: float | None = None
        self._raised = False
        self._below_since: float | None = None  # raised, and below min_count since then
        self._last: tuple[np.ndarray, str, float, int] | None = None

    def update(self, ctx: Context) -> list[Finding]:
        names = ctx.tracked.names
        inside = [o for o in ctx.occupants if names[o.row] in self.config.classes]
        if len(inside) >= self.config.min_count:
            self._below_since = None
            if self._since is None:
                self._since = ctx.ts - min(o.time_in_zone for o in inside)
            best = max(inside, key=lambda o: ctx.tracked.confidence[o.row])
            self._last = (
                ctx.tracked.xyxy[best.row].copy(),
                names[best.row],
                float(ctx.tracked.confidence[best.row]),
                best.track_id,
            )
            dwell = ctx.ts - self._since
            if not self._raised and dwell >= self.config.dwell_s:
                self._raised = True
                return [self._finding(EventState.RAISED, dwell, len(inside))]
            return []
        if self._raised:
            # a raised episode ends only after clear_after_s below min_count: one missed
            # detection must not clear it and raise it again a frame later
            if self._below_since is None:
                self._below_since = ctx.ts
            if ctx.ts - self._below_since < self.config.clear_after_s:
                return []
        return self.flush(ctx.ts)

    @property
    def active(self) -> bool:
        return self._raised

    def flush(self, ts: float) -> list[Finding]:
        out = []
        if self._raised and self._since is not None:
            # the episode lasted until the zone emptied, not until clear_after_s ran out
            end = ts if self._below_since is None else self._below_since
            out.append(self._finding(EventState.CLEARED, end - self._since, 0))
        self._since, self._raised, self._below_since = None, False, None
        return out

    def _finding(self, state: EventState, dwell: float, count: int) -> Finding:
        # only a raised episode makes a finding, and raising it set _last
        assert self._last is not None
        box, cls, conf, tid = self._last
        severity = self.config.severity if state is EventState.RAISED else Severity.INFO
        return Finding(
            self.kind,
            state,
            severity,
            self.zone,
            tid,
            box,
            cls,
            conf,
            round(dwell, 3),
            f"{count} × {'/'.join(self.config.classes)} in zone {self.zone}"
            if state is EventState.RAISED
            else f"zone {self.zone} empty again",
            {"count": count},
        )


ZoneRuleObject = IllegalParkingRule | EbikeChargingRule | UnleashedDogRule | ObjectInZoneRule


def make_rule(zone: str, config: ZoneRule) -> ZoneRuleObject:
    """The rule object for one configured zone rule."""
    if isinstance(config, IllegalParking):
        return IllegalParkingRule(zone, config)
    if isinstance(config, EbikeCharging):
        return EbikeChargingRule(zone, config)
    if isinstance(config, UnleashedDog):
        return UnleashedDogRule(zone, config)
    return ObjectInZoneRule(zone, config)


def crossing_findings(line: Line, tracked: Detections, crossings: list[Crossing]) -> list[Finding]:
    """Line-crossing findings for the configured classes and direction."""
    out = []
    names = tracked.names
    for c in crossings:
        wrong_way = line.direction != "both" and c.direction != line.direction
        if names[c.row] not in line.classes or wrong_way:
            continue
        out.append(
            Finding(
                line.kind,
                EventState.RAISED,
                line.severity,
                None,
                c.track_id,
                tracked.xyxy[c.row].copy(),
                names[c.row],
                float(tracked.confidence[c.row]),
                None,
                f"{names[c.row]} crossed line {line.id} ({c.direction})",
                {"line": line.id, "direction": c.direction},
            )
        )
    return out
