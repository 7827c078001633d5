"""`Detections`: the one columnar type that flows from detector to tracker to rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.video.geometry import nms

NO_TRACK = -1


@dataclass(frozen=True)
class Detections:
    """N boxes as parallel numpy columns; indexing with a mask or indices keeps the type.

    >>> d = Detections.empty(("person",))
    >>> len(d)
    0
    """

    xyxy: np.ndarray  # (N, 4) float32, pixels
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64, index into class_names
    class_names: tuple[str, ...] = ()
    tracker_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        xyxy = (
            np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
            if np.size(self.xyxy)
            else np.empty((0, 4), np.float32)
        )
        n = len(xyxy)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        tid = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
        if tid.size == 0 and n:
            tid = np.full(n, NO_TRACK, dtype=np.int64)
        for name, column in (("confidence", conf), ("class_id", cls), ("tracker_id", tid)):
            if len(column) != n:
                raise ValueError(f"Detections.{name} has {len(column)} rows, xyxy has {n}")
        if n and (cls.min() < 0 or (self.class_names and cls.max() >= len(self.class_names))):
            raise ValueError(f"Detections.class_id out of range 0..{len(self.class_names) - 1}")
        if n and not np.isfinite(xyxy).all():
            raise ValueError("Detections.xyxy holds NaN or infinite values")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        object.__setattr__(self, "tracker_id", tid)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        """No detections, with the detector's class names."""
        return cls(
            np.empty((0, 4), np.float32),
            np.empty(0, np.float32),
            np.empty(0, np.int64),
            tuple(class_names),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | Sequence[int] | int) -> Detections:
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            self.class_names,
            self.tracker_id[index],
        )

    @property
    def names(self) -> list[str]:
        """Class name of each row."""
        return [self.class_names[i] if i < len(self.class_names) else str(i) for i in self.class_id]

    def of_classes(self, wanted: Sequence[str]) -> Detections:
        """Only the rows whose class name is in ``wanted``."""
        ids = [i for i, name in enumerate(self.class_names) if name in set(wanted)]
        return self[np.isin(self.class_id, ids)]

    def with_tracker_ids(self, tracker_id: np.ndarray) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_id, self.class_names, tracker_id)

    @staticmethod
    def concat(parts: Sequence[Detections], class_names: Sequence[str] = ()) -> Detections:
        """Rows of every part, in order (all parts must share class names)."""
        if not parts:
            return Detections.empty(class_names)
        return Detections(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            parts[0].class_names,
            np.concatenate([p.tracker_id for p in parts]),
        )


def merge_relabelled(dets: Detections, iou: float = 0.9) -> Detections:
    """Keep one row where the same box carries several labels (the SSD calls the van in
    vtest.avi both 'truck' and 'car'), so one object is never tracked twice."""
    if len(dets) < 2:
        return dets
    return dets[np.sort(nms(dets.xyxy, dets.confidence, iou))]
