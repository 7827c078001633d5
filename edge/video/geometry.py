"""Pure numpy geometry: IoU, anchor points, point-in-polygon, side of a segment."""

from __future__ import annotations

from typing import Literal

import numpy as np

Anchor = Literal["bottom_center", "center"]


def box_area(xyxy: np.ndarray) -> np.ndarray:
    # numpy types a column of an untyped array as Any: name the result's type once
    area: np.ndarray = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(
        xyxy[:, 3] - xyxy[:, 1], 0, None
    )
    return area


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) area shared by each pair of xyxy boxes."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    shared: np.ndarray = wh[..., 0] * wh[..., 1]
    return shared


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of xyxy boxes."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = intersection_matrix(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def anchors(xyxy: np.ndarray, anchor: Anchor = "bottom_center") -> np.ndarray:
    """(N, 2) point of each box tested against zones: its bottom centre (where a vehicle
    or person stands) or its centre."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    x = (xyxy[:, 0] + xyxy[:, 2]) / 2
    y = xyxy[:, 3] if anchor == "bottom_center" else (xyxy[:, 1] + xyxy[:, 3]) / 2
    return np.stack([x, y], axis=1)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: is each point inside (or on the edge of) the polygon? Even-odd rule."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros(0, bool)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    # on an edge counts as inside, so a box resting on the zone's border is in it
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    within = (
        (np.minimum(x1, x2) - 1e-6 <= x)
        & (x <= np.maximum(x1, x2) + 1e-6)
        & (np.minimum(y1, y2) - 1e-6 <= y)
        & (y <= np.maximum(y1, y2) + 1e-6)
    )
    on_edge = ((np.abs(cross) < 1e-6) & within).any(axis=1)
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = (straddles & (x < x_cross)).sum(axis=1) % 2 == 1
    result: np.ndarray = inside | on_edge
    return result


def side_of_line(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(N,) sign of each point relative to the directed segment start→end, in image
    coordinates (y down): +1 right of it, −1 left of it, 0 on it."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    s, e = np.asarray(start, np.float64), np.asarray(end, np.float64)
    cross = (e[0] - s[0]) * (pts[:, 1] - s[1]) - (e[1] - s[1]) * (pts[:, 0] - s[0])
    sides: np.ndarray = np.sign(cross).astype(np.int8)
    return sides


def segments_intersect(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Does segment p→q cross segment a→b (touching counts)?"""

    def orient(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
        return float((v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0]))

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0) and not (d1 == d2 == 0)


def box_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean gap between boxes; 0 where they touch or overlap."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    dx = np.maximum(0, np.maximum(a[:, None, 0] - b[None, :, 2], b[None, :, 0] - a[:, None, 2]))
    dy = np.maximum(0, np.maximum(a[:, None, 1] - b[None, :, 3], b[None, :, 1] - a[:, None, 3]))
    gap: np.ndarray = np.hypot(dx, dy)
    return gap


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-np.asarray(scores))
    keep: list[int] = []
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        overlaps = iou_matrix(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= iou]
    return np.asarray(keep, np.int64)
