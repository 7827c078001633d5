"""TensorFlow frozen-graph SSDs through OpenCV DNN: the default COCO SSD-MobileNetV2."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np

from edge.video.detections import Detections
from edge.video.detectors import (
    LOW_SCORE,
    DetectorError,
    merge_relabelled,
    resolve_model_path,
)
from microbrain.resources import ResourceMissing, default_model
from microbrain.site.cameras import DetectorConfig
from microbrain.site.classes import COCO_CLASSES

# The TF Object Detection API numbers COCO 1..90 with ten unused ids; map to COCO-80.
_TF_UNUSED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
TF90_TO_COCO80: dict[int, int] = {
    tf_id: n for n, tf_id in enumerate(i for i in range(1, 91) if i not in _TF_UNUSED)
}


def _version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class OpenCVTensorFlowDetector:
    """An SSD frozen graph (+ its .pbtxt) run by ``cv2.dnn``; output [1, 1, N, 7]."""

    class_names = COCO_CLASSES
    any_input_size = False  # the graph squashes every frame to input_size × input_size

    def __init__(
        self,
        model: Path,
        config: Path,
        input_size: int = 300,
        score_threshold: float = 0.4,
        threads: int = 2,
    ) -> None:
        self.model_path = model
        self.name = (
            model.stem if model.stem != "frozen_inference_graph" else "ssd_mobilenet_v2_coco"
        )
        self.version = _version(model)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self._lock = threading.Lock()  # cv2.dnn.Net is not safe to call from two threads
        cv2.setNumThreads(threads)
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(model), str(config))
        except cv2.error as err:
            raise DetectorError(
                f"model {str(model)!r}: not a TensorFlow frozen graph OpenCV can read with "
                f"the text graph {str(config)!r} ({str(err).strip().splitlines()[-1][:200]})"
            ) from None
        self.detect(np.zeros((input_size, input_size, 3), np.uint8))  # validates the outputs

    @classmethod
    def from_config(
        cls, config: DetectorConfig, base: Path | None = None
    ) -> OpenCVTensorFlowDetector:
        if config.model is None:
            try:
                model, graph = default_model()
            except ResourceMissing as err:
                raise DetectorError(str(err)) from None
        else:
            model = resolve_model_path(config.model, base)
            if config.config is None:
                raise DetectorError(f"model {str(model)!r}: opencv_tf needs 'config' (the .pbtxt)")
            graph = resolve_model_path(config.config, base)
        return cls(model, graph, config.input_size or 300, config.score_threshold, config.threads)

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Raw network output for one frame (used by the benchmark as the reference)."""
        blob = cv2.dnn.blobFromImage(image, size=(self.input_size, self.input_size), swapRB=True)
        with self._lock:
            self._net.setInput(blob)
            try:
                return self._net.forward()
            except cv2.error as err:
                raise DetectorError(
                    f"model {str(self.model_path)!r}: inference failed "
                    f"({str(err).strip().splitlines()[-1][:200]})"
                ) from None

    def detect(self, image: np.ndarray) -> Detections:
        out = self.forward(image)
        if out.ndim != 4 or out.shape[:2] != (1, 1) or out.shape[3] != 7:
            raise DetectorError(
                f"model {str(self.model_path)!r}: unexpected output shape "
                f"{tuple(out.shape)}; an SSD gives [1, 1, N, 7]"
            )
        rows = out[0, 0]
        rows = rows[rows[:, 2] >= min(self.score_threshold, LOW_SCORE)]
        labels = rows[:, 1].astype(np.int64)
        known = np.array([label in TF90_TO_COCO80 for label in labels], bool)
        rows, labels = rows[known], labels[known]
        h, w = image.shape[:2]
        xyxy = np.clip(rows[:, 3:7], 0, 1) * np.array([w, h, w, h], np.float32)
        dets = Detections(
            xyxy,
            rows[:, 2],
            np.array([TF90_TO_COCO80[x] for x in labels], np.int64),
            self.class_names,
        )
        return merge_relabelled(dets)
