"""MotionGate: is anything moving where the rules look? Cheap enough to run on every
frame so the detector can rest when the scene is still.

Background subtraction (MOG2) on a grey frame downscaled to ``width`` pixels, counted
only inside a region of interest (the zones and lines, widened by a margin), plus a
scene-cut test: a frame that differs from the last one almost everywhere is a new shot
(a PTZ preset, an edited clip), not motion, and tracks across it would be phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionResult:
    moving: bool
    fraction: float  # share of region-of-interest pixels that moved
    scene_cut: bool


class MotionGate:
    """``update(frame) -> MotionResult``; call ``reset()`` when the frame size changes."""

    def __init__(
        self,
        width: int = 160,
        min_fraction: float = 0.002,
        cut_threshold: float = 40.0,
        roi: list[np.ndarray] | None = None,
        roi_margin: float = 0.03,
    ) -> None:
        self.width = width
        self.min_fraction = min_fraction
        self.cut_threshold = cut_threshold  # mean absolute grey difference (0..255)
        self._roi_polygons = roi or []
        self.roi_margin = roi_margin
        self.reset()

    def reset(self) -> None:
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=200, varThreshold=25, detectShadows=False
        )
        self._previous: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._moved: np.ndarray | None = None  # last frame's moving pixels
        self._moved_mask: np.ndarray | None = None  # … and the region they count in
        self._scale = 1.0

    def _roi_mask(self, small_shape: tuple[int, int], scale: float) -> np.ndarray | None:
        if not self._roi_polygons:
            return None
        h, w = small_shape
        mask = np.zeros((h, w), np.uint8)
        pad = int(self.roi_margin * max(h, w))
        for poly in self._roi_polygons:
            pts = np.asarray(poly, np.float32) * scale
            x0, y0 = np.floor(pts.min(axis=0)).astype(int) - pad
            x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + pad
            mask[max(0, y0) : max(0, y1) + 1, max(0, x0) : max(0, x1) + 1] = 1
        return mask

    def update(self, frame: np.ndarray, also: np.ndarray | None = None) -> MotionResult:
        """``also``: boxes (frame pixels, xyxy) that count as region of interest this
        frame besides the zones, e.g. around a tracked dog, where its owner may appear."""
        h, w = frame.shape[:2]
        scale = self.width / w
        small = cv2.resize(
            frame, (self.width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        if self._shape != grey.shape:
            self.reset()
            self._shape = grey.shape
            self._mask = self._roi_mask(grey.shape, scale)
        cut = (
            self._previous is not None
            and float(cv2.absdiff(grey, self._previous).mean()) > self.cut_threshold
        )
        if cut:
            # start the background afresh so the new shot is not all "motion"
            self._subtractor = cv2.createBackgroundSubtractorMOG2(
                history=200, varThreshold=25, detectShadows=False
            )
        first = self._previous is None
        self._previous = grey
        fg = self._subtractor.apply(grey)
        self._scale = scale
        if first or cut:
            self._moved = None  # everything is new: no telling where
            return MotionResult(True, 1.0, bool(cut))
        moved = fg > 0
        mask = self._mask
        if mask is not None and also is not None and len(also):
            mask = mask.copy()
            for x0, y0, x1, y1 in np.asarray(also, np.float32).reshape(-1, 4) * scale:
                ys = slice(max(0, int(y0)), max(0, int(np.ceil(y1))))
                xs = slice(max(0, int(x0)), max(0, int(np.ceil(x1))))
                mask[ys, xs] = 1
        if mask is not None:
            fraction = float(moved[mask > 0].mean()) if mask.any() else 0.0
        else:
            fraction = float(moved.mean())
        self._moved, self._moved_mask = moved, mask  # combined only if moving_boxes asks
        return MotionResult(fraction >= self.min_fraction, fraction, False)

    def moving_boxes(self, min_pixels: int = 4) -> np.ndarray | None:
        """(N, 4) boxes, in the last frame's pixels, around what moved in the region of
        interest (blobs of at least ``min_pixels`` downscaled pixels); None when there is
        no telling (first frame, scene cut): then everything may have changed."""
        if self._moved is None:
            return None
        moved = self._moved if self._moved_mask is None else self._moved & (self._moved_mask > 0)
        blobs = cv2.dilate(moved.astype(np.uint8), np.ones((3, 3), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
        rows = stats[1:count]
        rows = rows[rows[:, cv2.CC_STAT_AREA] >= min_pixels]
        x, y = rows[:, cv2.CC_STAT_LEFT], rows[:, cv2.CC_STAT_TOP]
        boxes = np.stack(
            [x, y, x + rows[:, cv2.CC_STAT_WIDTH], y + rows[:, cv2.CC_STAT_HEIGHT]], axis=1
        )
        return boxes.astype(np.float32).reshape(-1, 4) / self._scale
