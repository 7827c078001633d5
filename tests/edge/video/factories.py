"""Small builders for Detections in unit tests."""

from __future__ import annotations

import numpy as np

from edge.video.detections import Detections
from microbrain.site.classes import COCO_CLASSES, EXTENDED_CLASSES

NAMES = COCO_CLASSES + EXTENDED_CLASSES


def dets(*rows: tuple, names: tuple[str, ...] = NAMES) -> Detections:
    """``dets(("car", x0, y0, x1, y1[, conf[, track]]), …)``."""
    if not rows:
        return Detections.empty(names)
    xyxy = [r[1:5] for r in rows]
    conf = [r[5] if len(r) > 5 else 0.9 for r in rows]
    cls = [names.index(r[0]) for r in rows]
    tid = [r[6] if len(r) > 6 else -1 for r in rows]
    return Detections(
        np.array(xyxy, np.float32), np.array(conf), np.array(cls), names, np.array(tid)
    )
