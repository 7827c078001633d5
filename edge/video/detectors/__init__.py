"""Detector backends behind one small interface, chosen by ``DetectorConfig.type``.

One detector serves all cameras of a gateway; backends serialise their own inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edge.video.detections import Detections, merge_relabelled
from edge.video.regions import Rect
from microbrain.site.cameras import DetectorConfig

# Detectors also return boxes down to this score (or their threshold, if lower): the
# tracker's second, ByteTrack stage uses them to keep existing tracks alive through a
# weak frame; only boxes at or above ``score_threshold`` may start a track.
LOW_SCORE = 0.1


__all__ = [
    "LOW_SCORE",
    "Detector",
    "DetectorError",
    "WindowDetector",
    "load_detector",
    "merge_relabelled",
    "resolve_model_path",
]


class DetectorError(RuntimeError):
    """A model that cannot be used: not a model, unexpected outputs, missing file."""


@runtime_checkable
class Detector(Protocol):
    """Finds objects in one BGR frame."""

    name: str
    version: str
    class_names: tuple[str, ...]
    score_threshold: float  # boxes below it are returned only to extend existing tracks
    input_size: int  # the side a frame's longer side is resized to (square for fixed models)
    # True when the model takes any input size (a dynamic-shape ONNX export): then it can
    # look at parts of a frame (detect_windows), each costing only its own area
    any_input_size: bool

    def detect(self, image: np.ndarray) -> Detections: ...


@runtime_checkable
class WindowDetector(Detector, Protocol):
    """A detector that can look at parts of a frame only (see edge.video.regions)."""

    def detect_windows(self, image: np.ndarray, windows: Sequence[Rect]) -> list[Detections]:
        """Detections in each window (frame pixels, xyxy), as the whole frame's input
        would have shown them there."""
        ...


def load_detector(config: DetectorConfig | None = None, base: Path | None = None) -> Detector:
    """Build the configured detector (default: the bundled COCO SSD-MobileNetV2) and
    run it once on a blank frame, so a bad model fails here with its name, not later."""
    config = config or DetectorConfig()
    if config.type == "opencv_tf":
        from edge.video.detectors.opencv_tf import OpenCVTensorFlowDetector

        return OpenCVTensorFlowDetector.from_config(config, base)
    from edge.video.detectors.onnx_yolo import OnnxYoloDetector

    return OnnxYoloDetector.from_config(config, base)


def resolve_model_path(path: str, base: Path | None) -> Path:
    file = Path(path)
    if not file.is_absolute() and base is not None:
        file = base / file
    if not file.is_file():
        raise DetectorError(f"model {str(file)!r}: no such file")
    return file
