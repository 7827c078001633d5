"""CameraPipeline: one camera's frames → motion gate → detector → tracker → zones and
rules → evidence-backed :class:`microbrain.protocol.Event` objects, handed to ``emit``.

``emit`` is the seam to the gateway's outbox: the pipeline leaves ``seq`` at 0 and the
outbox stamps it. Time is the frame's own (video time for files), never the wall clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

import numpy as np

from edge.video import metrics
from edge.video.clips import ClipWriter
from edge.video.detections import Detections
from edge.video.detectors import Detector, WindowDetector
from edge.video.evidence import EvidenceStore, FrameRing, draw
from edge.video.geometry import box_gap
from edge.video.motion import MotionGate
from edge.video.regions import (
    CROP_MARGIN,
    MOTION_MARGIN,
    Rect,
    combine,
    plan_regions,
    reach_rects,
    unseen_boxes,
    widen,
    zone_rects,
)
from edge.video.rules import (
    Context,
    Finding,
    UnleashedDogRule,
    ZoneRuleObject,
    crossing_findings,
    make_rule,
)
from edge.video.sources import Frame
from edge.video.tracker import Tracker, Unseen
from edge.video.two_wheelers import ClassifierError, Verdict, verifier_for
from edge.video.zones import LineZone, PolygonZone, ZoneOutsideFrame
from microbrain.protocol.payloads import (
    Event,
    EventState,
    EvidenceRef,
    ModelRef,
    Severity,
    new_id,
)
from microbrain.site.cameras import Camera

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
CAMERA_OFFLINE = "camera_offline"


class CameraError(RuntimeError):
    """This camera cannot go on (zones that do not fit its frames, …); others can."""


@dataclass(frozen=True)
class PipelineOptions:
    """Knobs of the pipeline itself; zone and rule thresholds live in the camera config."""

    motion_gate: bool = True
    # a dynamic-shape model looks only at crops around the zones and lines (regions.py)
    crop_to_zones: bool = True
    recheck_s: float = 2.0  # re-detect a still scene that has tracks this often
    idle_recheck_s: float = 5.0  # … and one without tracks (what motion may have missed)
    timezone: str = "Asia/Shanghai"
    tracker_max_age_s: float = 5.0

    def __post_init__(self) -> None:
        # a still object is re-detected at every recheck: two chances before it ages out
        if not 0 < 2 * self.recheck_s <= self.tracker_max_age_s:
            raise ValueError(
                f"recheck_s ({self.recheck_s:g}) must be positive and at most half "
                f"of tracker_max_age_s ({self.tracker_max_age_s:g}), or still "
                "objects age out"
            )


@dataclass
class PipelineStats:
    frames: int = 0
    detector_calls: int = 0  # frames the detector looked at (whole, or in crops)
    detector_crops: int = 0  # network runs on parts of a frame (one per crop), see _detect
    scene_cuts: int = 0
    size_changes: int = 0
    events: int = 0


# frames of a pending clip encoded per analysed frame: the new one and one of the
# before-part, which is as long as the after-part, so the clip is written when it ends
CLIP_FRAMES_PER_FRAME = 2


@dataclass
class _PendingClip:
    """An event waiting to go out: for its clip's after-part (``clip``, written as the
    frames come), or, with ``clip`` None, only behind an earlier event that waits."""

    event: Event
    clip: ClipWriter | None
    until: float


@dataclass
class _Zone:
    id: str
    geometry: PolygonZone
    rules: list[ZoneRuleObject] = field(default_factory=list)


def _relabelled(dets: Detections, mapping: dict[int, int], names: tuple[str, ...]) -> Detections:
    """``dets`` with class ids mapped into another class list; rows of classes it lacks
    are dropped."""
    keep = np.array([int(c) in mapping for c in dets.class_id], bool).reshape(-1)
    kept = dets[keep]
    ids = np.array([mapping[int(c)] for c in kept.class_id], np.int64)
    return Detections(kept.xyxy, kept.confidence, ids, names, kept.tracker_id)


class CameraPipeline:
    """Feed frames with :meth:`process`; call :meth:`finish` at the end of a stream."""

    def __init__(
        self,
        camera: Camera,
        detector: Detector,
        emit: Emit | None = None,
        evidence: EvidenceStore | None = None,
        options: PipelineOptions | None = None,
    ) -> None:
        self.camera = camera
        self.detector = detector
        self.emit = emit or (lambda event: None)
        self.evidence = evidence
        self.options = options or PipelineOptions()
        self.stats = PipelineStats()
        self.model = ModelRef(name=detector.name[:100], version=detector.version[:64])
        self._tz = ZoneInfo(self.options.timezone)
        self._zones = [
            _Zone(
                z.id,
                PolygonZone(z.polygon, z.anchor, z.inertia),
                [make_rule(z.id, r) for r in z.rules],
            )
            for z in camera.zones
        ]
        self._lines = [(line, LineZone(line.points[0], line.points[1])) for line in camera.lines]
        self._roi_shapes = [z.geometry.polygon for z in self._zones] + [
            np.asarray(line.points, np.float32) for line in camera.lines
        ]
        # motion counts only in and near the zones and lines (MotionGate's own margin)
        self._gate = MotionGate(roi=self._roi_shapes or None)
        self._roi = zone_rects(self._roi_shapes, 0.0)
        # an unleashed-dog rule looks for the owner up to k dog-heights from the dog,
        # inside the zone or not: the gate and the crops reach that far around dogs
        self._dog_reach = max(
            (
                rule.config.person_distance_k
                for z in self._zones
                for rule in z.rules
                if isinstance(rule, UnleashedDogRule)
            ),
            default=None,
        )
        self._crop_rects = np.empty((0, 4), np.float32)
        self._tracker = Tracker(
            high_threshold=detector.score_threshold,
            new_track_threshold=detector.score_threshold,
            max_age_s=self.options.tracker_max_age_s,
        )
        self._tracked = Detections.empty(detector.class_names)
        # the e-bike / pedal-bike second stage, where a rule watches ebike or pedal_bike
        try:
            self._verifier = verifier_for(camera, detector.class_names)
        except ClassifierError as err:
            metrics.PIPELINE_ERRORS.labels(camera.id, "two_wheeler_classifier").inc()
            raise CameraError(f"camera {camera.id}: {err}") from None
        # what the detector found at its last call, before tracking, and where it looked
        # (crops in frame pixels; None: the whole frame), for overlays and tests
        self.last_detections = Detections.empty(detector.class_names)
        self.last_windows: list[Rect] | None = None
        self._size: tuple[int, int] | None = None
        self._roi_pad = 0.0
        self._last_detect: float | None = None
        self._last_full: float | None = None  # the last look over every zone (windows)
        self._ring = FrameRing(camera.clip_seconds)
        # events in the order they happened; the head goes out once its clip is written,
        # so a CLEARED never overtakes its RAISED on the way to the outbox (seq order)
        self._pending: list[_PendingClip] = []
        # camera_state() may come from a live source's thread while process() runs
        self._out_lock = threading.RLock()
        self._last_frame: Frame | None = None
        # a model swap waits here until the next frame starts (use_detector)
        self._swap_lock = threading.Lock()
        self._next_detector: Detector | None = None
        self._next_verifier = self._verifier

    # -- frames ---------------------------------------------------------------------------

    def _check_size(self, frame: Frame) -> list[Finding]:
        h, w = frame.image.shape[:2]
        if self._size == (w, h):
            return []
        findings: list[Finding] = []
        if self._size is not None:
            self.stats.size_changes += 1
            metrics.FRAME_SIZE_CHANGES.labels(self.camera.id).inc()
            log.warning(
                "camera %s: frame size changed from %s to %s; tracks reset",
                self.camera.id,
                self._size,
                (w, h),
            )
            findings = self._reset(frame.ts)
        self._size = (w, h)
        self._gate.reset()  # its mask and background were for the old size
        self._roi_pad = self._gate.roi_margin * max(w, h)
        self._crop_rects = zone_rects(self._roi_shapes, CROP_MARGIN * max(w, h))
        for zone in self._zones:
            try:
                zone.geometry.check_fits(w, h, f"camera {self.camera.id}: zone {zone.id}")
            except ZoneOutsideFrame as err:
                metrics.PIPELINE_ERRORS.labels(self.camera.id, "zone_outside_frame").inc()
                raise CameraError(str(err)) from None
        for line, _ in self._lines:
            if any(x > w or y > h for x, y in line.points):
                metrics.PIPELINE_ERRORS.labels(self.camera.id, "zone_outside_frame").inc()
                raise CameraError(
                    f"camera {self.camera.id}: line {line.id} lies outside the {w}×{h} frame"
                )
        return findings

    def _reset(self, ts: float) -> list[Finding]:
        """Forget tracks and zone presence; violations in progress are cleared."""
        findings = [f for zone in self._zones for rule in zone.rules for f in rule.flush(ts)]
        self._tracker.reset()
        if self._verifier is not None:
            self._verifier.reset()
        self._tracked = Detections.empty(self.detector.class_names)
        self.last_detections = Detections.empty(self.detector.class_names)
        for zone in self._zones:
            zone.geometry.reset()
        for _, line in self._lines:
            line.reset()
        self._last_detect = None
        self._last_full = None
        return findings

    def _should_detect(self, frame: Frame, moving: bool) -> bool:
        if not self.options.motion_gate or self._last_detect is None or moving:
            return True
        if self._tentative_in_roi():
            return True  # a new object near a zone waits for its confirming second look
        wait = self.options.recheck_s if self._tracker.active else self.options.idle_recheck_s
        return frame.ts - self._last_detect >= wait

    def _tentative_in_roi(self) -> bool:
        boxes = self._tracker.tentative_boxes()
        if not len(boxes) or not len(self._roi):
            return bool(len(boxes))
        return bool((box_gap(boxes, self._roi) <= self._roi_pad).any())

    def _dog_rects(self, margin: float = 0.0) -> np.ndarray | None:
        """Where a tracked dog's owner may be (None when no rule asks), widened by
        ``margin`` pixels so that an owner standing at the limit is seen whole."""
        if self._dog_reach is None:
            return None
        dogs = self._tracked.of_classes(("dog",))
        return reach_rects(dogs.xyxy, self._dog_reach, margin) if len(dogs) else None

    def _detect(self, frame: Frame) -> tuple[Detections, Unseen | None]:
        """The detector where the rules care, when the model takes any input size: on
        what moved there (and tracks to confirm), with a full look over every zone at
        least every ``recheck_s``; otherwise on the whole frame. Also returns where it
        did not look (for the tracker), or None when it looked everywhere it watches."""
        detector, image = self.detector, frame.image
        self.last_windows = None
        if not (
            self.options.crop_to_zones
            and isinstance(detector, WindowDetector)
            and detector.any_input_size
            and len(self._crop_rects)
        ):
            return detector.detect(image), None
        h, w = image.shape[:2]
        dogs = self._dog_rects(CROP_MARGIN * max(w, h))
        due = self._last_full is None or frame.ts - self._last_full >= self.options.recheck_s
        regions = None if due else self._narrow_windows(w, h, dogs)
        narrow = regions is not None
        if regions is None:  # a full look: every zone (too much moved counts as due)
            self._last_full = frame.ts
            crops = self._crop_rects if dogs is None else np.vstack([self._crop_rects, dogs])
            regions = plan_regions(crops, w, h)
            if regions is None:
                return detector.detect(image), None
        self.last_windows = regions
        self.stats.detector_crops += len(regions)
        found = combine(
            detector.detect_windows(image, regions), regions, w, h, detector.class_names
        )
        return found, (self._unseen(regions) if narrow else None)

    def _narrow_windows(self, w: int, h: int, dogs: np.ndarray | None) -> list[Rect] | None:
        """Windows for a narrow look, or None when a full look is needed instead (no
        telling what moved, or it covers most of the frame)."""
        moved = self._gate.moving_boxes() if self.options.motion_gate else None
        if moved is None:
            return None
        near = MOTION_MARGIN * max(w, h)
        # what moved, new objects to confirm, and tracks lost at the last look
        rects = widen(
            np.vstack([moved, self._tracker.tentative_boxes(), self._tracker.missed_boxes()]), near
        )
        # a tracked object the windows touch is looked at whole: a window that cut a
        # parked car in two would hand the tracker half a car, and its dwell restarts
        tracked = self._tracked.xyxy
        touched = tracked[(box_gap(tracked, rects) <= 0).any(axis=1)] if len(rects) else tracked[:0]
        rects = np.vstack([rects, widen(touched, near)] + ([] if dogs is None else [dogs]))
        return plan_regions(rects, w, h)

    def _unseen(self, looked: list[Rect]) -> Unseen:
        """Boxes centred in the watched crops that no window ``looked`` held (almost)
        whole: the detector could not have found them there."""
        return partial(
            unseen_boxes, watched=self._crop_rects, windows=np.asarray(looked, np.float32)
        )

    def use_detector(self, detector: Detector) -> None:
        """Run ``detector`` from the next frame on (any thread may call this).

        The swap happens between frames, in :meth:`process`, so no frame is analysed half
        by one model and half by the other, and none waits for it: the new model is
        loaded and tested before it gets here. Tracks, zone presence and raised
        conditions carry over (class ids are mapped by name when the class list changes).
        """
        verifier = self._verifier
        if detector.class_names != self.detector.class_names:
            # whether a second stage is needed depends on the classes (an ebike class of
            # its own); prepared here, in the caller's thread, not between two frames
            try:
                verifier = verifier_for(self.camera, detector.class_names)
            except ClassifierError as err:
                metrics.PIPELINE_ERRORS.labels(self.camera.id, "two_wheeler_classifier").inc()
                log.error("camera %s: %s; the second stage stays as it was", self.camera.id, err)
        with self._swap_lock:
            self._next_detector, self._next_verifier = detector, verifier

    def _take_detector(self) -> None:
        with self._swap_lock:
            detector, self._next_detector = self._next_detector, None
            verifier = self._next_verifier
        if detector is None or detector is self.detector:
            return
        self._verifier = verifier
        old_names = self.detector.class_names
        self.detector = detector
        self.model = ModelRef(name=detector.name[:100], version=detector.version[:64])
        self._tracker.high_threshold = detector.score_threshold
        self._tracker.new_track_threshold = detector.score_threshold
        names = detector.class_names
        if names != old_names:
            mapping = {i: names.index(n) for i, n in enumerate(old_names) if n in names}
            self._tracker.relabel(mapping)
            self._tracked = _relabelled(self._tracked, mapping, names)
            self.last_detections = Detections.empty(names)
        log.info(
            "camera %s: model %s %s from this frame on",
            self.camera.id,
            self.model.name,
            self.model.version,
        )

    def process(self, frame: Frame) -> list[Event]:
        """Analyse one frame; return (and emit) the events it completes."""
        if self._next_detector is not None:
            self._take_detector()
        self.stats.frames += 1
        metrics.FRAMES_ANALYSED.labels(self.camera.id).inc()
        findings = self._check_size(frame)
        moving = True
        if self.options.motion_gate:
            motion = self._gate.update(frame.image, also=self._dog_rects())
            moving = motion.moving
            if motion.scene_cut:
                self.stats.scene_cuts += 1
                metrics.SCENE_CUTS.labels(self.camera.id).inc()
                findings += self._reset(frame.ts)
        if self._should_detect(frame, moving):
            detections, unseen = self._detect(frame)
            self.last_detections = detections
            self.stats.detector_calls += 1
            metrics.DETECTOR_CALLS.labels(self.camera.id).inc()
            self._tracked = self._tracker.update(detections, frame.ts, unseen)
            if self._verifier is not None:  # its own cache says which tracks are due
                self._verifier.update(frame.image, self._tracked, frame.ts)
            self._last_detect = frame.ts
            live = self._tracker.track_ids() if self._lines else set()
            for line, geometry in self._lines:
                findings += crossing_findings(
                    line, self._tracked, geometry.update(self._tracked), self.verdicts
                )
                geometry.retain(live)  # tracks the tracker dropped never come back
        # between detector runs nothing moved, so the last tracked boxes still hold
        tracked = self._tracked
        local = frame.time.astimezone(self._tz)
        for zone in self._zones:
            occupants, _ = zone.geometry.update(tracked, frame.ts)
            context = Context(tracked, occupants, frame.ts, local, self.verdicts)
            for rule in zone.rules:
                findings += rule.update(context)
        self._ring.push(frame.ts, frame.image)
        self._last_frame = frame
        return self._publish(findings, frame, tracked)

    @property
    def verdicts(self) -> Mapping[int, Verdict]:
        """The second stage's e-bike / pedal-bike verdicts on live tracks, by track id."""
        return self._verifier.verdicts if self._verifier is not None else {}

    @property
    def tracked(self) -> Detections:
        """The tracked objects as of the last frame (confirmed tracks, with their ids)."""
        return self._tracked

    def finish(self) -> list[Event]:
        """End of stream: write pending clips. Violations still standing are not cleared:
        the stream ended, the car did not leave."""
        with self._out_lock:
            events = [self._release(pending) for pending in self._pending]
            self._pending = []
        return events

    def active_kinds(self, zone: str | None = None) -> set[str]:
        """Zone-rule conditions raised and not cleared, in ``zone`` or in every zone."""
        return {
            rule.kind
            for z in self._zones
            if zone is None or z.id == zone
            for rule in z.rules
            if rule.active
        }

    def camera_state(self, online: bool, reason: str, when: datetime) -> Event:
        """The debounced camera online/offline change as an event (raised = offline)."""
        event = Event(
            ts=when,
            kind=CAMERA_OFFLINE,
            state=EventState.CLEARED if online else EventState.RAISED,
            severity=Severity.INFO if online else Severity.WARNING,
            building=self.camera.building,
            source=self.camera.id,
            message=f"camera {self.camera.id} {'back online' if online else 'offline'}: {reason}"[
                :500
            ],
            frame_ts=when,
        )
        self._send(event)
        return event

    # -- events ---------------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        self.stats.events += 1
        metrics.EVENTS.labels(self.camera.id, event.kind, event.state.value).inc()
        self.emit(event)

    def _send(self, event: Event) -> bool:
        """Deliver now, or queue behind events still waiting for their clip; True if sent."""
        with self._out_lock:
            if self._pending:
                self._pending.append(_PendingClip(event, None, float("-inf")))
                return False
            self._deliver(event)
            return True

    def _zone_polygon(self, zone_id: str | None) -> np.ndarray | None:
        return next((z.geometry.polygon for z in self._zones if z.id == zone_id), None)

    def _publish(self, findings: list[Finding], frame: Frame, tracked: Detections) -> list[Event]:
        with self._out_lock:
            return self._publish_locked(findings, frame, tracked)

    def _publish_locked(
        self, findings: list[Finding], frame: Frame, tracked: Detections
    ) -> list[Event]:
        out: list[Event] = []
        for pending in self._pending:
            if pending.clip is not None:
                pending.clip.add(frame.image)
                pending.clip.step(CLIP_FRAMES_PER_FRAME)
        # release from the head only, in order: a later event never passes an earlier one
        while self._pending and frame.ts >= self._pending[0].until:
            out.append(self._release(self._pending.pop(0)))
        for f in findings:
            event_id = new_id()
            evidence: tuple[EvidenceRef, ...] = ()
            if self.evidence is not None:
                caption = (
                    f"{self.camera.id} {f.kind} {f.state.value} {frame.time:%Y-%m-%d %H:%M:%S}Z"
                )
                if f.dwell_s is not None:
                    caption += f" dwell {f.dwell_s:.0f}s"
                if "verdict" in f.detail:
                    caption += f" {f.detail['verdict']} {f.detail['verdict_score']}"
                tags = {tid: v.tag() for tid, v in self.verdicts.items()}
                picture = draw(
                    frame.image, tracked, self._zone_polygon(f.zone), f.box, caption, tags
                )
                evidence = (self.evidence.snapshot(f"{self.camera.id}-{event_id}", picture),)
            event = Event(
                id=event_id,
                ts=frame.time,
                kind=f.kind,
                state=f.state,
                severity=f.severity,
                building=self.camera.building,
                source=self.camera.id,
                zone=f.zone,
                track_id=f.track_id,
                object_class=f.object_class,
                confidence=None if f.confidence is None else min(1.0, f.confidence),
                dwell_s=f.dwell_s,
                frame_ts=frame.time,
                model=self.model,
                evidence=evidence,
                message=f.message[:500],
                detail=dict(f.detail),
            )
            if (
                self.evidence is not None
                and self.camera.clip_seconds > 0
                and f.state is EventState.RAISED
            ):
                until = frame.ts + self.camera.clip_seconds
                before = self._ring.frames()
                clip = self.evidence.open_clip(
                    f"{self.camera.id}-{event.id}",
                    self.camera.fps,
                    expected_frames=len(before) + round(self.camera.clip_seconds * self.camera.fps),
                )
                for image in before:
                    clip.add(image)
                self._pending.append(_PendingClip(event, clip, until))
                continue
            if self._send(event):
                out.append(event)
        return out

    def _release(self, pending: _PendingClip) -> Event:
        event = pending.event
        if pending.clip is None:  # held only for ordering: nothing to write
            self._deliver(event)
            return event
        assert self.evidence is not None
        clip = self.evidence.finish_clip(pending.clip)
        if clip is not None:
            event = event.model_copy(update={"evidence": (*event.evidence, clip)})
        self._deliver(event)
        return event
