"""Where to look: the parts of a frame a camera's rules care about.

Rules see only objects in or near the zones and lines, and an unleashed-dog rule also
people within reach of a dog. A detector that takes any input size (a dynamic-shape
ONNX export) runs on those parts of the whole frame's network input only, aligned to its
stride grid, so it costs what the parts cost and sees there what it would have seen.
Between full looks the pipeline narrows the parts further, to what moved (motion.py);
the tracker holds the tracks it did not look at (tracker.py, ``unseen``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.video.detections import Detections, merge_relabelled
from edge.video.geometry import box_area, intersection_matrix, iou_matrix

# Past this share of the frame, one whole-frame call is cheaper than several crops.
WHOLE_FRAME_SHARE = 0.6
# Crops reach this far (share of the frame's longer side) beyond the zones, so an object
# standing in a zone is not cut off at the crop's edge (a car's roof above a fire lane).
CROP_MARGIN = 0.1
# Windows around what moved reach this far around it: a moving blob already covers most of
# its object, and the window widens to the model's stride grid besides.
MOTION_MARGIN = 0.05
# Two overlapping crops become one when their bounding box costs at most this much more
# than the two (a fire lane and a walkway that touch at a corner stay two crops).
MERGE_COST = 1.25
# Where crops overlap, two boxes of one class from different crops are one object seen
# twice when they overlap this much (IoU), or when one reaches its crop's edge (it may be
# cut there) and lies this much (intersection over its own area) inside the other.
DUPLICATE_IOU = 0.5
DUPLICATE_SHARE = 0.6

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole frame pixels


def zone_rects(shapes: Sequence[np.ndarray], margin: float) -> np.ndarray:
    """(N, 4) bounding box of each polygon or line, widened by ``margin`` pixels."""
    return widen(
        np.array(
            [np.concatenate([np.min(s, axis=0), np.max(s, axis=0)]) for s in shapes], np.float32
        ),
        margin,
    )


def widen(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Each box widened by ``margin`` pixels on every side."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return boxes + np.array([-margin, -margin, margin, margin], np.float32)


def reach_rects(boxes: np.ndarray, k: float, margin: float = 0.0) -> np.ndarray:
    """Each box widened by ``k`` × its own height, plus ``margin`` pixels, on every side
    (a dog's owner's reach; the margin lets a crop hold an owner standing at its limit)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    pad = (boxes[:, 3] - boxes[:, 1])[:, None] * k + margin
    return boxes + np.hstack([-pad, -pad, pad, pad])


def _area(r: np.ndarray) -> float:
    return float(max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1]))


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    return _area(np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])]))


def merge_rects(rects: np.ndarray, width: int, height: int) -> list[Rect]:
    """Clip to the frame, round outward to whole pixels, and merge overlapping rects
    whose bounding box costs little more than the two (``MERGE_COST``), until no such
    pair is left. Crops that still overlap are deduplicated by :func:`combine`."""
    limit = np.array([width, height, width, height], np.float32)
    boxes = [np.clip(r, 0, limit) for r in np.asarray(rects, np.float32).reshape(-1, 4)]
    boxes = [
        np.array([np.floor(b[0]), np.floor(b[1]), np.ceil(b[2]), np.ceil(b[3])])
        for b in boxes
        if b[2] - b[0] >= 1 and b[3] - b[1] >= 1
    ]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                inter = _intersection(a, b)
                union = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                if inter > 0 and _area(union) <= MERGE_COST * (_area(a) + _area(b) - inter):
                    boxes[i] = union
                    boxes.pop(j)
                    merged = True
                    break
            if merged:
                break
    return sorted((int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes)


def combine(
    parts: list[Detections],
    regions: list[Rect],
    width: int,
    height: int,
    class_names: tuple[str, ...],
) -> Detections:
    """Detections of each crop (already in frame pixels) as one set. Where crops overlap,
    an object may be found twice, or cut by one crop's edge and whole in the other:
    boxes reaching an inner crop edge (the window the detector saw may be a little wider,
    so reaching means at or past it) yield to an overlapping box of the same class from
    another crop, and of two views the one with the higher score stays."""
    if len(parts) == 1:
        return parts[0]
    found = Detections.concat(parts, class_names)
    if len(found) < 2:
        return found
    crop = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    rects = np.asarray(regions, np.float32)[crop]
    inner = np.stack(
        [rects[:, 0] > 0, rects[:, 1] > 0, rects[:, 2] < width, rects[:, 3] < height], axis=1
    )
    box = found.xyxy
    reach = np.stack(
        [
            box[:, 0] <= rects[:, 0] + 2,
            box[:, 1] <= rects[:, 1] + 2,
            box[:, 2] >= rects[:, 2] - 2,
            box[:, 3] >= rects[:, 3] - 2,
        ],
        axis=1,
    )
    touches = (inner & reach).any(axis=1)
    order = np.lexsort((-found.confidence, touches))  # whole views first, then by score
    # j repeats a kept i when another crop saw the same class there: overlapping by IoU,
    # or j cut at its crop's edge and lying mostly inside i
    inside = (
        intersection_matrix(found.xyxy, found.xyxy) / np.maximum(box_area(found.xyxy), 1.0)[None, :]
    )
    same = (
        (crop[:, None] != crop[None, :])
        & (found.class_id[:, None] == found.class_id[None, :])
        & (
            (iou_matrix(found.xyxy, found.xyxy) >= DUPLICATE_IOU)
            | (touches[None, :] & (inside >= DUPLICATE_SHARE))
        )
    )
    kept: list[int] = []
    for j in order:
        if not same[kept, j].any():
            kept.append(int(j))
    # the same box under two labels from two crops (car in one, truck in the other)
    return merge_relabelled(found[np.sort(np.asarray(kept, np.int64))])


def plan_regions(
    rects: np.ndarray, width: int, height: int, whole_frame_share: float = WHOLE_FRAME_SHARE
) -> list[Rect] | None:
    """The crops to detect on, or None for the whole frame (no rects, or crops that
    together cover more than ``whole_frame_share`` of it)."""
    regions = merge_rects(rects, width, height)
    if not regions:
        return None
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
    return None if area > whole_frame_share * width * height else regions


def unseen_boxes(
    boxes: np.ndarray, watched: np.ndarray, windows: np.ndarray, whole: float = 0.9
) -> np.ndarray:
    """(N,) bool: which boxes are centred in a ``watched`` rect but lie less than
    ``whole`` (share of their area) inside every one of the ``windows`` looked at."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    watched = np.asarray(watched, np.float32).reshape(-1, 4)
    windows = np.asarray(windows, np.float32).reshape(-1, 4)
    cx, cy = (boxes[:, :1] + boxes[:, 2:3]) / 2, (boxes[:, 1:2] + boxes[:, 3:4]) / 2
    inside = (
        (cx >= watched[:, 0]) & (cx < watched[:, 2]) & (cy >= watched[:, 1]) & (cy < watched[:, 3])
    )
    in_watch: np.ndarray = np.asarray(inside.any(axis=1))
    if not len(windows):
        return in_watch
    share = intersection_matrix(boxes, windows) / np.maximum(box_area(boxes), 1e-9)[:, None]
    looked_at = (share >= whole).any(axis=1)
    unseen: np.ndarray = in_watch & ~looked_at
    return unseen
