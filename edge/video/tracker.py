"""A ByteTrack-class multi-object tracker working on :class:`Detections`.

Association in two stages as in ByteTrack (Zhang et al., 2022): confident detections
first, then the low-score ones against the tracks still unmatched, so an object that
fades (occlusion, motion blur) keeps its id. Motion is a smoothed constant-velocity
prediction instead of a Kalman filter, and ages are in seconds of video time, not
frames, because the motion gate skips frames: a parked car must not age out while the
detector rests. Matching is class-agnostic and the class is a running vote, so the van
the SSD calls 'truck' in one frame and 'car' in the next stays one track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge.video.detections import Detections
from edge.video.geometry import iou_matrix

# Which of these (N, 4) boxes lie where this look did not reach: (N,) bool.
Unseen = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray  # px per second, per box coordinate
    last_ts: float
    hits: int = 1
    class_votes: dict[int, float] = field(default_factory=dict)
    confidence: float = 0.0
    missed: bool = False  # looked for and not found since it was last seen: not held

    def predict(self, ts: float) -> np.ndarray:
        return self.box + self.velocity * max(0.0, ts - self.last_ts)

    def update(self, box: np.ndarray, confidence: float, class_id: int, ts: float) -> None:
        dt = ts - self.last_ts
        if dt > 0:
            observed = (box - self.box) / dt
            self.velocity = observed if self.hits == 1 else 0.5 * self.velocity + 0.5 * observed
        self.box, self.last_ts, self.confidence = box, ts, confidence
        self.missed = False
        self.hits += 1
        self.class_votes[class_id] = self.class_votes.get(class_id, 0.0) + confidence

    @property
    def class_id(self) -> int:
        return max(self.class_votes, key=self.class_votes.__getitem__)


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by descending IoU, each row and column used once."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r, used_c = set(), set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


class Tracker:
    """``update(detections, ts) -> detections`` with ``tracker_id`` set on confirmed tracks.

    >>> t = Tracker()
    >>> len(t.update(Detections.empty(), ts=0.0))
    0
    """

    def __init__(
        self,
        high_threshold: float = 0.4,
        new_track_threshold: float = 0.4,
        match_iou: float = 0.3,
        min_hits: int = 2,
        max_age_s: float = 5.0,
    ) -> None:
        self.high_threshold = high_threshold
        self.new_track_threshold = new_track_threshold
        self.match_iou = match_iou
        self.min_hits = min_hits
        self.max_age_s = max_age_s
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def tentative(self) -> int:
        """Tracks seen but not yet confirmed: the pipeline runs the detector to confirm them."""
        return sum(1 for t in self._tracks if t.hits < self.min_hits)

    def tentative_boxes(self) -> np.ndarray:
        """(N, 4) last boxes of the unconfirmed tracks."""
        boxes = [t.box for t in self._tracks if t.hits < self.min_hits]
        return np.array(boxes, np.float32).reshape(-1, 4)

    def missed_boxes(self) -> np.ndarray:
        """(N, 4) last boxes of confirmed tracks looked for and not found since: where to
        look again before they are given up."""
        return np.array(
            [t.box for t in self._tracks if t.hits >= self.min_hits and t.missed], np.float32
        ).reshape(-1, 4)

    @property
    def active(self) -> int:
        return len(self._tracks)

    def track_ids(self) -> set[int]:
        """Ids of the tracks kept (confirmed or tentative); an id not here is gone for
        good (ids are never reused), so per-track state elsewhere can be dropped."""
        return {t.track_id for t in self._tracks}

    def reset(self) -> None:
        """Forget every track (scene cut, frame size change); ids keep counting up."""
        self._tracks = []

    def relabel(self, mapping: dict[int, int]) -> None:
        """A new model with another class list took over: class ids become ``mapping[id]``.

        Votes for a class the new model lacks are dropped, and a track left with no vote
        is forgotten (the new model cannot confirm it); the others keep their ids, boxes
        and hits, so a swap neither restarts dwell times nor raises anything twice."""
        kept = []
        for track in self._tracks:
            votes = {mapping[c]: v for c, v in track.class_votes.items() if c in mapping}
            if votes:
                track.class_votes = votes
                kept.append(track)
        self._tracks = kept

    def update(self, detections: Detections, ts: float, unseen: Unseen | None = None) -> Detections:
        """Associate this frame's detections with the tracks; return the rows that belong
        to confirmed tracks, each with its track id and voted class.

        ``unseen``: the detector looked at parts of the frame only. A confirmed track
        whose box lies where it did not look is not missed: it comes back with its last
        box, as between detector runs, and still ages from when it was last seen."""
        self._tracks = [t for t in self._tracks if ts - t.last_ts <= self.max_age_s]
        high = np.nonzero(detections.confidence >= self.high_threshold)[0]
        low = np.nonzero(detections.confidence < self.high_threshold)[0]
        predicted = np.array([t.predict(ts) for t in self._tracks], np.float32).reshape(-1, 4)

        assigned: dict[int, int] = {}  # detection row → track index
        first = _greedy_match(iou_matrix(predicted, detections.xyxy[high]), self.match_iou)
        for ti, k in first:
            assigned[int(high[k])] = ti
        free = [i for i in range(len(self._tracks)) if i not in assigned.values()]
        second = _greedy_match(iou_matrix(predicted[free], detections.xyxy[low]), self.match_iou)
        for fi, k in second:
            assigned[int(low[k])] = free[fi]

        for row, ti in assigned.items():
            self._tracks[ti].update(
                detections.xyxy[row].copy(),
                float(detections.confidence[row]),
                int(detections.class_id[row]),
                ts,
            )
        for high_row in high:
            row = int(high_row)
            if row in assigned or detections.confidence[row] < self.new_track_threshold:
                continue
            track = _Track(
                self._next_id,
                detections.xyxy[row].copy(),
                np.zeros(4, np.float32),
                ts,
                class_votes={int(detections.class_id[row]): float(detections.confidence[row])},
                confidence=float(detections.confidence[row]),
            )
            self._next_id += 1
            self._tracks.append(track)
            assigned[row] = len(self._tracks) - 1

        # as in ByteTrack, an unconfirmed track that misses its second look was noise
        matched = set(assigned.values())
        born = {ti for r, ti in assigned.items() if self._tracks[ti].hits == 1}
        keep = [
            i
            for i, t in enumerate(self._tracks)
            if t.hits >= self.min_hits or i in matched or i in born
        ]
        rows = sorted(r for r, ti in assigned.items() if self._tracks[ti].hits >= self.min_hits)
        ids = np.array([self._tracks[assigned[r]].track_id for r in rows], np.int64)
        classes = np.array([self._tracks[assigned[r]].class_id for r in rows], np.int64)
        out = detections[np.array(rows, np.int64)]
        out = Detections(out.xyxy, out.confidence, classes, detections.class_names, ids)
        held = self._held(matched, unseen)
        self._tracks = [self._tracks[i] for i in keep]
        if not held:
            return out
        return Detections.concat(
            [
                out,
                Detections(
                    np.array([t.box for t in held], np.float32),
                    np.array([t.confidence for t in held]),
                    np.array([t.class_id for t in held]),
                    detections.class_names,
                    np.array([t.track_id for t in held]),
                ),
            ],
            detections.class_names,
        )

    def _held(self, matched: set[int], unseen: Unseen | None) -> list[_Track]:
        """Confirmed tracks left unmatched because the detector did not look where they
        are. One it looked for and did not find is missed, and not held again until it is
        found: a person who walked out of view is not kept as a phantom."""
        waiting = [
            t for i, t in enumerate(self._tracks) if i not in matched and t.hits >= self.min_hits
        ]
        if not waiting:
            return []
        if unseen is None:
            hidden = np.zeros(len(waiting), bool)
        else:
            hidden = unseen(np.array([t.box for t in waiting], np.float32))
        for track, not_looked_at in zip(waiting, hidden, strict=True):
            track.missed = track.missed or not not_looked_at
        return [
            t
            for t, not_looked_at in zip(waiting, hidden, strict=True)
            if not_looked_at and not t.missed
        ]
