"""Where to look: the parts of a frame a camera's rules care about.

Rules see only objects in or near the zones and lines, and an unleashed-dog rule also
people within reach of a dog. A detector that takes any input size (a dynamic-shape
ONNX export) runs on those parts only, each at the scale the whole frame would get, so
it costs what the parts cost and sees objects at the size it would have seen them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Past this share of the frame, one whole-frame call is cheaper than several crops.
WHOLE_FRAME_SHARE = 0.6
# Crops reach this far (share of the frame's longer side) beyond the zones, so an object
# standing in a zone is not cut off at the crop's edge (a car's roof above a fire lane).
CROP_MARGIN = 0.1


def zone_rects(shapes: Sequence[np.ndarray], margin: float) -> np.ndarray:
    """(N, 4) bounding box of each polygon or line, widened by ``margin`` pixels."""
    rects = [np.concatenate([np.min(s, axis=0), np.max(s, axis=0)]) for s in shapes]
    out = np.asarray(rects, np.float32).reshape(-1, 4)
    return out + np.array([-margin, -margin, margin, margin], np.float32)


def reach_rects(boxes: np.ndarray, k: float) -> np.ndarray:
    """Each box widened by ``k`` × its own height on every side (a dog's owner's reach)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    pad = (boxes[:, 3] - boxes[:, 1])[:, None] * k
    return boxes + np.hstack([-pad, -pad, pad, pad])


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def merge_rects(rects: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Clip to the frame, round outward to whole pixels, and merge overlapping rects until
    none overlap (so no object is detected twice in two crops)."""
    limit = np.array([width, height, width, height], np.float32)
    boxes = [np.clip(r, 0, limit) for r in np.asarray(rects, np.float32).reshape(-1, 4)]
    boxes = [np.array([np.floor(b[0]), np.floor(b[1]), np.ceil(b[2]), np.ceil(b[3])]) for b in boxes
             if b[2] - b[0] >= 1 and b[3] - b[1] >= 1]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlap(boxes[i], boxes[j]):
                    a, b = boxes[i], boxes.pop(j)
                    boxes[i] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                    merged = True
                    break
            if merged:
                break
    return sorted((int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes)


def plan_regions(rects: np.ndarray, width: int, height: int,
                 whole_frame_share: float = WHOLE_FRAME_SHARE) -> list[tuple[int, int, int, int]] | None:
    """The crops to detect on, or None for the whole frame (no rects, or crops that
    together cover more than ``whole_frame_share`` of it)."""
    regions = merge_rects(rects, width, height)
    if not regions:
        return None
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
    return None if area > whole_frame_share * width * height else regions
