"""Zone rules: turn who-is-where-since-when into findings (raise once, clear once).

Every rule raises one finding per violation and one ``cleared`` finding when it ends.

A stationary violator is held through what busy scenes do to its boxes (issue #14):
- its *full box* (the largest view of it where it stands) is kept beside its last box:
  the evidence and the re-association use the full box, not the sliver a passer-by left
  visible;
- a violator whose track vanishes where it stood (hidden, missed by the detector, or
  named another class for a while: a dog seen as a sheep) is held for ``REACQUIRE_S``,
  raised or not: found again by overlap with its full box, on any track id, it is the
  same violation and its dwell goes on through the gap (it was hidden, not gone); a
  violator whose track is still seen, outside the zone, left, and is not taken for
  whatever parks there next;
- a parked vehicle is still while its box stays where it stopped (mostly inside the box
  it stopped in, or holding it): a partial box inside that place is the same car standing
  there, not a car that moved.
Thresholds come from the camera config (microbrain/site/cameras.py), bounded there.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Generic, TypeVar

import numpy as np

from edge.video.detections import Detections
from edge.video.geometry import anchors, box_area, box_gap, intersection_matrix, iou_matrix
from edge.video.two_wheelers import Verdict
from edge.video.zones import Crossing, Occupant
from microbrain.protocol.payloads import EventState, Severity
from microbrain.site.cameras import (
    EbikeCharging,
    EbikeInElevator,
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
# a box this much inside a violator's full box is (part of) it: a car half hidden by a
# passer-by, the motorcycle's sliver that was last visible
CONTAINED = 0.7
MOVED_IOU = 0.3  # a box overlapping its full box less than this is somewhere else now
STILL_INSIDE = 0.6  # parking: a box this much inside the place it stopped is still there


def _ioa(a: np.ndarray, b: np.ndarray) -> float:
    """The share of box ``a`` that lies inside box ``b``."""
    inter = intersection_matrix(a.reshape(1, 4), b.reshape(1, 4))[0, 0]
    return float(inter / max(float(box_area(a.reshape(1, 4))[0]), 1e-9))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_matrix(a.reshape(1, 4), b.reshape(1, 4))[0, 0])


def _area(box: np.ndarray) -> float:
    return float(box_area(box.reshape(1, 4))[0])


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
    # the second stage's verdict (ebike / pedal_bike) on two-wheeler tracks, by track id
    verdicts: Mapping[int, Verdict] = field(default_factory=dict)


def watched_as(
    name: str, track_id: int, classes: Collection[str], verdicts: Mapping[int, Verdict]
) -> str | None:
    """The class under which a rule watching ``classes`` sees this object: the detector's
    own class when watched, else its two-wheeler verdict (``classes: [ebike]`` matches a
    motorcycle the second stage calls an e-bike); None when the rule does not watch it."""
    if name in classes:
        return name
    verdict = verdicts.get(track_id)
    return verdict.label if verdict is not None and verdict.label in classes else None


def verdict_detail(name: str, track_id: int, verdicts: Mapping[int, Verdict]) -> Detail:
    """The verdict's fields for an event's detail (with the detector's class), if any."""
    verdict = verdicts.get(track_id)
    if verdict is None:
        return {}
    return {**verdict.detail(), "detector_class": name}


@dataclass
class _Violation:
    since: float | None  # when the condition became (and stayed) true
    box: np.ndarray
    class_name: str
    confidence: float
    raised: bool = False
    raised_detail: Detail = field(default_factory=dict)
    ref: np.ndarray | None = None  # parking: anchor where it stopped
    place: np.ndarray | None = None  # parking: the box it stopped in (grows, never moves)
    full_box: np.ndarray | None = None  # the largest view of it where it stands
    lost_at: float | None = None
    left: bool = False  # lost while still tracked elsewhere: it drove off, not hidden

    def see(self, box: np.ndarray) -> None:
        """A new box of this violator: the last one, and the full one kept apart."""
        self.box = box
        full = self.full_box
        if full is None or _iou(box, full) < MOVED_IOU or _area(box) >= _area(full):
            self.full_box = box.copy()

    def shown(self) -> np.ndarray:
        """The box for the evidence: the full view, unless it has moved from there."""
        full = self.full_box
        return self.box if full is None or _ioa(self.box, full) < CONTAINED else full


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

    def _adopt(self, track_id: int, box: np.ndarray, ts: float) -> _Violation | None:
        """A lost violation this box continues: its own track come back, or, on another
        track, one that vanished where it stood and overlaps this box's place."""
        v = self._lost.pop(track_id, None)
        if v is not None:
            v.lost_at, v.left = None, False
            return v
        for tid, v in list(self._lost.items()):
            if v.left or ts - (v.lost_at or ts) > REACQUIRE_S:
                continue
            full = v.full_box if v.full_box is not None else v.box
            if _iou(box, full) >= REACQUIRE_IOU or _ioa(box, full) >= CONTAINED:
                del self._lost[tid]
                v.lost_at = None
                return v
        return None

    def _held_by_another(self, track_id: int, box: np.ndarray) -> bool:
        for tid, v in self._tracks.items():
            full = v.full_box if v.full_box is not None else v.box
            if tid != track_id and (
                _iou(box, full) >= REACQUIRE_IOU or _ioa(box, full) >= CONTAINED
            ):
                return True
        return False

    def update(self, ctx: Context) -> list[Finding]:
        out: list[Finding] = []
        names = ctx.tracked.names
        present: set[int] = set()
        for occ in ctx.occupants:
            cls = watched_as(names[occ.row], occ.track_id, self.classes, ctx.verdicts)
            if cls is None:
                continue
            box = ctx.tracked.xyxy[occ.row]
            conf = float(ctx.tracked.confidence[occ.row])
            present.add(occ.track_id)
            v = self._tracks.get(occ.track_id)
            if v is None:
                v = self._adopt(occ.track_id, box, ctx.ts)
                if v is None:
                    if self._held_by_another(occ.track_id, box):
                        # a second track on the same object (the detector gave it two
                        # boxes, car and truck): one violation, one alert
                        present.discard(occ.track_id)
                        continue
                    v = _Violation(ctx.ts - occ.time_in_zone, box, cls, conf)
                self._tracks[occ.track_id] = v
            v.see(box)
            v.class_name, v.confidence = cls, conf
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
                v.raised, v.raised_detail = (
                    True,
                    {
                        **detail,
                        **verdict_detail(names[occ.row], occ.track_id, ctx.verdicts),
                        "dwell_limit_s": self.limit(ctx),
                    },
                )
                out.append(
                    Finding(
                        self.kind,
                        EventState.RAISED,
                        severity,
                        self.zone,
                        occ.track_id,
                        v.shown().copy(),
                        cls,
                        conf,
                        round(dwell, 3),
                        self.describe(v, dwell),
                        v.raised_detail,
                    )
                )
        tracked = set(ctx.tracked.tracker_id.tolist())
        in_zone = {occ.track_id for occ in ctx.occupants}
        for tid in [t for t in self._tracks if t not in present]:
            v = self._tracks.pop(tid)
            # not raised yet, its dwell is kept too: a few frames without a box (hidden,
            # or missed) must not throw away what it had built
            v.lost_at, v.left = ctx.ts, tid in tracked and tid not in in_zone
            if v.raised or not v.left:
                self._lost[tid] = v
        for tid, v in list(self._lost.items()):
            if ctx.ts - (v.lost_at or ctx.ts) > REACQUIRE_S:
                del self._lost[tid]
                if v.raised:
                    out.append(
                        self._finding(
                            EventState.CLEARED, tid, v, v.lost_at or ctx.ts, "left the zone"
                        )
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
            v.shown().copy(),
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
        box = v.box
        point = anchors(box)[0]
        height = max(1.0, float(box[3] - box[1]))
        if v.ref is None or v.place is None:
            v.ref, v.place = point, box.copy()
            return True
        if _ioa(box, v.place) >= STILL_INSIDE or _ioa(v.place, box) >= 0.9:
            # where it stopped: a partial view (a passer-by in front) or a fuller one
            if _ioa(v.place, box) >= 0.9 and _area(box) > _area(v.place):
                v.place = box.copy()
            return True
        if np.hypot(*(point - v.ref)) > self.config.max_drift * height:
            # it moved from where it stopped: driving, not parked; the clock restarts
            v.ref, v.place = point, box.copy()
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
    event per episode, named by the rule's ``kind``. An ``ebike_in_elevator`` rule is one
    of these (an e-bike in the car, at once); the gateway's answer to it on the spot lives
    in edge/elevator_guard.py."""

    def __init__(self, zone: str, config: ObjectInZone | EbikeInElevator) -> None:
        self.zone = zone
        self.config = config
        self.kind = config.kind
        self._since: float | None = None
        self._raised = False
        self._below_since: float | None = None  # raised, and below min_count since then
        self._last: tuple[np.ndarray, str, float, int, Detail] | None = None

    def update(self, ctx: Context) -> list[Finding]:
        names = ctx.tracked.names
        seen = {
            o.track_id: watched_as(names[o.row], o.track_id, self.config.classes, ctx.verdicts)
            for o in ctx.occupants
        }
        inside = [o for o in ctx.occupants if seen[o.track_id] is not None]
        if len(inside) >= self.config.min_count:
            self._below_since = None
            if self._since is None:
                self._since = ctx.ts - min(o.time_in_zone for o in inside)
            best = max(inside, key=lambda o: ctx.tracked.confidence[o.row])
            self._last = (
                ctx.tracked.xyxy[best.row].copy(),
                seen[best.track_id] or names[best.row],
                float(ctx.tracked.confidence[best.row]),
                best.track_id,
                verdict_detail(names[best.row], best.track_id, ctx.verdicts),
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
        box, cls, conf, tid, detail = self._last
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
            {**detail, "count": count},
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


def crossing_findings(
    line: Line,
    tracked: Detections,
    crossings: list[Crossing],
    verdicts: Mapping[int, Verdict] | None = None,
) -> list[Finding]:
    """Line-crossing findings for the configured classes and direction."""
    out = []
    names = tracked.names
    verdicts = verdicts or {}
    for c in crossings:
        wrong_way = line.direction != "both" and c.direction != line.direction
        cls = watched_as(names[c.row], c.track_id, line.classes, verdicts)
        if cls is None or wrong_way:
            continue
        out.append(
            Finding(
                line.kind,
                EventState.RAISED,
                line.severity,
                None,
                c.track_id,
                tracked.xyxy[c.row].copy(),
                cls,
                float(tracked.confidence[c.row]),
                None,
                f"{cls} crossed line {line.id} ({c.direction})",
                {
                    **verdict_detail(names[c.row], c.track_id, verdicts),
                    "line": line.id,
                    "direction": c.direction,
                },
            )
        )
    return out
