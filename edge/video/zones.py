"""Zones and tripwires over tracked :class:`Detections`.

A track is *in* a polygon zone once its anchor point has been inside for ``inertia``
consecutive updates, and *out* after as many updates outside (or unseen): one noisy
box never flips the state. Time in zone counts from the first update of the streak
that brought it in, in video seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.video.detections import Detections
from edge.video.geometry import Anchor, anchors, points_in_polygon, segments_intersect


class ZoneOutsideFrame(ValueError):
    """A zone or line does not fit the camera's frames."""


@dataclass
class _Presence:
    inside: bool = False
    streak: int = 0  # consecutive updates disagreeing with ``inside``
    streak_since: float = 0.0
    entered_at: float = 0.0


@dataclass(frozen=True)
class Occupant:
    """A track inside a zone now."""

    track_id: int
    row: int  # its row in the detections passed to ``update``
    time_in_zone: float


class PolygonZone:
    """Which tracks are in the polygon, and since when."""

    def __init__(
        self,
        polygon: np.ndarray | Sequence[tuple[float, float]],
        anchor: Anchor = "bottom_center",
        inertia: int = 3,
    ) -> None:
        self.polygon = np.asarray(polygon, np.float32).reshape(-1, 2)
        self.anchor: Anchor = anchor
        self.inertia = inertia
        self._presence: dict[int, _Presence] = {}

    def check_fits(self, width: int, height: int, what: str) -> None:
        """Raise :class:`ZoneOutsideFrame` naming ``what`` if a vertex lies outside the frame."""
        outside = (self.polygon[:, 0] > width) | (self.polygon[:, 1] > height)
        if outside.any():
            x, y = self.polygon[int(np.argmax(outside))]
            raise ZoneOutsideFrame(
                f"{what}: point ({x:g}, {y:g}) lies outside the {width}×{height} frame"
            )

    def reset(self) -> None:
        self._presence.clear()

    def update(self, tracked: Detections, ts: float) -> tuple[list[Occupant], list[int]]:
        """Feed one update of tracked detections; return (occupants now, ids that left)."""
        raw_inside = points_in_polygon(anchors(tracked.xyxy, self.anchor), self.polygon)
        rows = {int(tid): i for i, tid in enumerate(tracked.tracker_id) if tid >= 0}
        left: list[int] = []
        for tid in set(rows) | set(self._presence):
            state = self._presence.setdefault(tid, _Presence())
            now_inside = tid in rows and bool(raw_inside[rows[tid]])
            if now_inside == state.inside:
                state.streak = 0
            else:
                if state.streak == 0:
                    state.streak_since = ts
                state.streak += 1
                if state.streak >= self.inertia:
                    state.inside, state.streak = now_inside, 0
                    if now_inside:
                        state.entered_at = state.streak_since
                    else:
                        left.append(tid)
            if not state.inside and state.streak == 0 and tid not in rows:
                del self._presence[tid]
        occupants = [
            Occupant(tid, rows[tid], ts - s.entered_at)
            for tid, s in sorted(self._presence.items())
            if s.inside and tid in rows
        ]
        return occupants, left

    def forget(self, track_id: int) -> bool:
        """Drop a track (the tracker lost it); True if it was inside."""
        state = self._presence.pop(track_id, None)
        return bool(state and state.inside)


@dataclass(frozen=True)
class Crossing:
    track_id: int
    row: int
    direction: str  # "in" (left → right of start→end) or "out"


class LineZone:
    """A tripwire start→end; 'in' is crossing from its left to its right (image
    coordinates, y down: walking along start→end, right is your right hand)."""

    def __init__(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        anchor: Anchor = "bottom_center",
        hysteresis: float = 0.15,
    ) -> None:
        self.start = np.asarray(start, np.float64)
        self.end = np.asarray(end, np.float64)
        self.anchor: Anchor = anchor
        self.hysteresis = hysteresis
        self._last: dict[int, tuple[int, np.ndarray]] = {}  # track → (side, point there)

    def reset(self) -> None:
        self._last.clear()

    def _sides(self, points: np.ndarray, heights: np.ndarray) -> np.ndarray:
        """+1/−1 for points clearly on one side; 0 within ``hysteresis`` × box height of
        the line, where a jittery box must not count as crossing back and forth."""
        direction = self.end - self.start
        length = float(np.hypot(*direction)) or 1.0
        signed = (
            direction[0] * (points[:, 1] - self.start[1])
            - direction[1] * (points[:, 0] - self.start[0])
        ) / length
        side: np.ndarray = np.sign(signed).astype(np.int8)
        side[np.abs(signed) < np.maximum(1.0, self.hysteresis * heights)] = 0
        return side

    def update(self, tracked: Detections) -> list[Crossing]:
        points = anchors(tracked.xyxy, self.anchor).astype(np.float64)
        heights = (tracked.xyxy[:, 3] - tracked.xyxy[:, 1]).astype(np.float64)
        sides = self._sides(points, heights)
        crossings: list[Crossing] = []
        for row, raw_tid in enumerate(tracked.tracker_id):
            if raw_tid < 0 or sides[row] == 0:
                continue  # untracked, or too close to the line to tell: keep the last side
            tid = int(raw_tid)
            previous = self._last.get(tid)
            self._last[tid] = (int(sides[row]), points[row])
            if previous is None or previous[0] == sides[row]:
                continue
            if segments_intersect(previous[1], points[row], self.start, self.end):
                crossings.append(Crossing(tid, row, "in" if sides[row] > 0 else "out"))
        return crossings

    def forget(self, track_id: int) -> None:
        self._last.pop(track_id, None)

    def retain(self, track_ids: set[int]) -> None:
        """Drop the sides of tracks not in ``track_ids`` (the tracker's live ones): every
        track that ever passed would otherwise stay here for the camera's lifetime."""
        for tid in [t for t in self._last if t not in track_ids]:
            self.forget(tid)
