"""Evidence files: a JPEG with the boxes, zone and labels drawn, and optionally a short
WebM clip (before and after the event) from a ring buffer of analysed frames; each
returned as an ``EvidenceRef``."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from edge.video import clips
from edge.video.detections import Detections
from microbrain.protocol.payloads import EvidenceKind, EvidenceRef

_ZONE = (0, 200, 255)
_OTHER = (200, 200, 200)
_SUBJECT = (0, 0, 255)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def draw(
    image: np.ndarray,
    tracked: Detections,
    zone: np.ndarray | None,
    subject: np.ndarray | None,
    caption: str,
    tags: Mapping[int, str] | None = None,
) -> np.ndarray:
    """A copy of ``image`` with the zone polygon, every tracked box (the subject in red)
    and a caption line; ``tags`` add a word to a track's label (its e-bike verdict)."""
    out = image.copy()
    if zone is not None:
        pts = np.asarray(zone, np.int32).reshape(-1, 1, 2)
        overlay = out.copy()
        cv2.fillPoly(overlay, [pts], _ZONE)
        out = cv2.addWeighted(overlay, 0.2, out, 0.8, 0)
        cv2.polylines(out, [pts], True, _ZONE, 2)
    for box, name, conf, tid in zip(
        tracked.xyxy, tracked.names, tracked.confidence, tracked.tracker_id, strict=True
    ):
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), _OTHER, 1)
        label = f"{name} {conf:.2f}" + (f" #{tid}" if tid >= 0 else "")
        if tags and int(tid) in tags:
            label += f" {tags[int(tid)]}"
        cv2.putText(out, label, (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _OTHER, 1)
    if subject is not None:
        x0, y0, x1, y1 = (int(v) for v in subject)
        cv2.rectangle(out, (x0, y0), (x1, y1), _SUBJECT, 2)
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, caption[:120], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return out


class EvidenceStore:
    """Writes evidence under ``directory``; file names are ``<camera id>-<event id>.<ext>``
    (the pipeline passes ``<camera id>-<event id>`` as ``name``)."""

    def __init__(
        self,
        directory: Path | str,
        jpeg_quality: int = 85,
        clip_budget: clips.ClipBudget = clips.DEFAULT_BUDGET,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.jpeg_quality = jpeg_quality
        self.clip_budget = clip_budget

    def snapshot(self, name: str, picture: np.ndarray) -> EvidenceRef:
        """Write one JPEG and return its reference (name, sha256, size)."""
        ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise OSError(f"could not encode evidence {name}")
        path = self.directory / f"{name}.jpg"
        path.write_bytes(buf.tobytes())
        return EvidenceRef(
            kind=EvidenceKind.SNAPSHOT,
            name=path.name,
            sha256=_sha256(path),
            bytes=path.stat().st_size,
            content_type="image/jpeg",
        )

    def open_clip(self, name: str, fps: float, expected_frames: int) -> clips.ClipWriter:
        """A WebM clip written a few frames at a time (:class:`edge.video.clips.ClipWriter`);
        hand it to :meth:`finish_clip` when its last frame is added."""
        path = self.directory / f"{name}{clips.SUFFIX}"
        return clips.ClipWriter(path, fps, expected_frames, self.clip_budget)

    def finish_clip(self, writer: clips.ClipWriter) -> EvidenceRef | None:
        """Close the clip and return its reference; None when there is none (no frames,
        the encoder failed, over the budget: the writer logged why)."""
        if not writer.close():
            return None
        path = writer.path
        return EvidenceRef(
            kind=EvidenceKind.CLIP,
            name=path.name,
            sha256=_sha256(path),
            bytes=path.stat().st_size,
            content_type=clips.CONTENT_TYPE,
        )

    def clip(self, name: str, frames: list[np.ndarray], fps: float) -> EvidenceRef | None:
        """Write ``frames`` as one WebM clip a browser plays, at once."""
        writer = self.open_clip(name, fps, len(frames))
        for frame in frames:
            writer.add(frame)
        return self.finish_clip(writer)


class FrameRing:
    """The last ``seconds`` of analysed frames, for the before-part of a clip; held as
    JPEG (:class:`edge.video.clips.HeldFrame`), not raw: raw, a camera's ring was its
    largest memory (30 s at 5 fps of 768×576: 190 MB; as JPEG 15 MB)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._frames: deque[tuple[float, clips.HeldFrame]] = deque()

    def push(self, ts: float, frame: np.ndarray) -> None:
        if self.seconds <= 0:
            return
        held = clips.HeldFrame.encode(frame)
        if held is not None:
            self._frames.append((ts, held))
        while self._frames and ts - self._frames[0][0] > self.seconds:
            self._frames.popleft()

    @property
    def held_bytes(self) -> int:
        return sum(len(f.jpeg) for _, f in self._frames)

    def frames(self) -> list[clips.HeldFrame]:
        return [f for _, f in self._frames]

    def clear(self) -> None:
        self._frames.clear()
