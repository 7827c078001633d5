"""YOLO-format datasets: written from frames plus pseudo-labels, read back for scoring.

Layout (what ultralytics trains on): ``images/<split>/NAME.jpg`` beside
``labels/<split>/NAME.txt`` (one ``class cx cy w h`` row per box, fractions of the
frame), a ``data.yaml`` naming the splits and the classes, and ``manifest.jsonl`` (one
line per image: where the frame came from and what labelled it) for the human who
reviews the labels before anyone trains on them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from models.classes import MICROBRAIN_CLASSES, class_id

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# pseudo-labels: a box below this score is more often wrong than right, and a reviewer
# deletes a wrong box more slowly than she draws a missing one
LABEL_MIN_SCORE = 0.5


class DatasetError(ValueError):
    """A data.yaml or a dataset folder that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Box:
    """One label: class id and the box's centre and size as fractions of the frame."""

    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def row(self) -> str:
        return f"{self.cls} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


@dataclass(frozen=True)
class DataSpec:
    """A data.yaml, resolved: its splits' image folders and its class names."""

    path: Path
    train: Path
    val: Path
    names: tuple[str, ...]


def pseudo_labels(
    detector: Any,
    image: np.ndarray,
    names: tuple[str, ...] = MICROBRAIN_CLASSES,
    min_score: float = LABEL_MIN_SCORE,
) -> list[Box]:
    """The boxes an edge detector (edge.video.detectors.Detector) finds in ``image``,
    as labels in ``names`` (mapped by class name; a class with no place is dropped)."""
    found = detector.detect(image)
    h, w = image.shape[:2]
    boxes = []
    for (x0, y0, x1, y1), score, name in zip(
        found.xyxy, found.confidence, found.names, strict=True
    ):
        cls = class_id(str(name), names)
        if cls is None or score < min_score or x1 <= x0 or y1 <= y0:
            continue
        boxes.append(
            Box(cls, float(x0 + x1) / 2 / w, float(y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h)
        )
    return boxes


class DatasetWriter:
    """Writes one split of a YOLO dataset, its manifest and (on :meth:`finish`) data.yaml."""

    def __init__(
        self, out: Path, names: tuple[str, ...] = MICROBRAIN_CLASSES, split: str = "train"
    ) -> None:
        self.out = out.resolve()
        self.names = names
        self.split = split
        self.images = self.out / "images" / split
        self.labels = self.out / "labels" / split
        self.images.mkdir(parents=True, exist_ok=True)
        self.labels.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.boxes = 0
        self._manifest = (self.out / "manifest.jsonl").open("a", encoding="utf-8")

    def add(
        self,
        stem: str,
        boxes: list[Box],
        record: dict[str, Any],
        *,
        image: np.ndarray | None = None,
        encoded: bytes | None = None,
        suffix: str = ".jpg",
    ) -> Path:
        """Store one frame (``encoded`` bytes as they are, else ``image`` as JPEG), its
        label file (empty: a background image) and its manifest line."""
        target = self.images / f"{stem}{suffix}"
        if encoded is None:
            if image is None:
                raise ValueError("add() needs the image or its encoded bytes")
            ok, buffer = cv2.imencode(suffix, image)
            if not ok:
                raise DatasetError(f"cannot encode {stem} as {suffix}")
            encoded = buffer.tobytes()
        target.write_bytes(encoded)
        (self.labels / f"{stem}.txt").write_text("".join(b.row() + "\n" for b in boxes))
        line = {
            "image": str(target.relative_to(self.out)),
            "sha256": hashlib.sha256(encoded).hexdigest(),
            "boxes": len(boxes),
            **record,
        }
        self._manifest.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
        self._manifest.flush()
        self.count += 1
        self.boxes += len(boxes)
        return target

    def finish(self) -> Path:
        """Write data.yaml (the one split serves as train and val: a reviewed dataset is
        split by the reviewer, who knows which frames are near-duplicates)."""
        self._manifest.close()
        data = self.out / "data.yaml"
        spec = {
            "path": str(self.out),
            "train": f"images/{self.split}",
            "val": f"images/{self.split}",
            "names": dict(enumerate(self.names)),
        }
        data.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
        return data


def load_data_yaml(path: Path) -> DataSpec:
    """Read a YOLO data.yaml (``path``, ``train``, ``val``, ``names`` as a list or dict)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetError(f"{path}: cannot read it ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise DatasetError(f"{path}: not YAML ({err})") from None
    if not isinstance(raw, dict) or "names" not in raw or "train" not in raw:
        raise DatasetError(f"{path}: a YOLO data.yaml needs 'train', 'val' and 'names'")
    root = Path(str(raw.get("path") or path.parent))
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    names_raw = raw["names"]
    if isinstance(names_raw, dict):
        names = tuple(str(names_raw[k]) for k in sorted(names_raw))
    elif isinstance(names_raw, list):
        names = tuple(str(n) for n in names_raw)
    else:
        raise DatasetError(f"{path}: 'names' must be a list or a mapping of id to name")

    def folder(key: str) -> Path:
        value = raw.get(key) or raw["train"]
        if not isinstance(value, str):
            raise DatasetError(f"{path}: '{key}' must be one folder (lists are not supported)")
        p = Path(value)
        return p if p.is_absolute() else root / p

    return DataSpec(path, folder("train"), folder("val"), names)


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such image folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def label_file(image: Path) -> Path:
    """Where ultralytics looks for an image's labels: the last ``images`` folder in its
    path replaced by ``labels``, the suffix by ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(image: Path, nc: int) -> np.ndarray:
    """An image's labels as an (n, 5) float array (class, cx, cy, w, h); none: (0, 5)."""
    file = label_file(image)
    if not file.is_file():
        return np.zeros((0, 5), np.float32)
    rows = [line.split() for line in file.read_text().splitlines() if line.strip()]
    try:
        labels = np.array([[float(v) for v in row[:5]] for row in rows], np.float32).reshape(-1, 5)
    except ValueError:
        raise DatasetError(f"{file}: not a YOLO label file (class cx cy w h per line)") from None
    if len(labels) and (labels[:, 0].min() < 0 or labels[:, 0].max() >= nc):
        raise DatasetError(f"{file}: a class id outside the dataset's {nc} names")
    return labels


def _dataset_files(spec: DataSpec) -> Iterator[Path]:
    seen: set[Path] = set()
    for folder in (spec.train, spec.val):
        for image in image_files(folder):
            for file in (image, label_file(image)):
                if file not in seen and file.is_file():
                    seen.add(file)
                    yield file


def dataset_sha256(spec: DataSpec) -> str:
    """One hash of what a model was trained on: the class names and every image and
    label file (by its path in the dataset and its bytes), in a fixed order."""
    h = hashlib.sha256(json.dumps(list(spec.names)).encode())
    root = spec.path.parent
    for file in sorted(_dataset_files(spec)):
        try:
            name = str(file.relative_to(root))
        except ValueError:
            name = str(file)
        h.update(name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()
