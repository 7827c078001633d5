"""TensorFlow frozen-graph SSDs through OpenCV DNN: the default COCO SSD-MobileNetV2.

Several cameras share one detector. A ``cv2.dnn.Net`` serves one call at a time, so by
default the detector keeps up to ``threads`` copies of the network, each running on one
core, and calls from different cameras run side by side. Profiled on a 2-core gateway
with four cameras (scripts/bench_edge.py), the previous single network on two threads
lost CPU to OpenCV's thread pool, whose workers spin waiting for each other
(``sched_yield`` was an eighth of the forward pass's samples: 93–101 ms of CPU a call
against 76–80 ms on one core), and the cameras queued behind its one lock (8.6 ms a
frame on average, seconds at the tail: frames dropped). The price is memory: a network
holds its weights twice (as loaded and packed for the fast convolution), about 190 MB
of resident memory each, so a further copy is built only when calls overlap (a gateway
with one camera never builds one), in the background, while the busy call finishes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Self

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

log = logging.getLogger(__name__)

# The TF Object Detection API numbers COCO 1..90 with ten unused ids; map to COCO-80.
_TF_UNUSED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
TF90_TO_COCO80: dict[int, int] = {
    tf_id: n for n, tf_id in enumerate(i for i in range(1, 91) if i not in _TF_UNUSED)
}


def _version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _last_line(err: cv2.error) -> str:
    return str(err).strip().splitlines()[-1][:200]


class Turns:
    """A turn on a detector (:meth:`OpenCVTensorFlowDetector.exclusive`): while it is
    held no call of the detector runs (each waits), as the single inference lock of the
    previous detector did."""

    def __init__(self, detector: OpenCVTensorFlowDetector) -> None:
        self._detector = detector

    def acquire(self) -> bool:
        self._detector._hold_all()
        return True

    def release(self) -> None:
        self._detector._release_all()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class OpenCVTensorFlowDetector:
    """An SSD frozen graph (+ its .pbtxt) run by ``cv2.dnn``; output [1, 1, N, 7].

    ``parallel_calls`` (the default): up to ``threads`` networks of one thread each,
    the second and later ones built when calls overlap. False: one network that runs
    each call on ``threads`` threads (the previous behaviour: a single stream's lowest
    latency, and the benchmark's reference). OpenCV's thread count is process-wide, so
    the last detector built sets it for every ``cv2`` call in the process.
    """

    class_names = COCO_CLASSES
    any_input_size = False  # the graph squashes every frame to input_size × input_size

    def __init__(
        self,
        model: Path,
        config: Path,
        input_size: int = 300,
        score_threshold: float = 0.4,
        threads: int = 2,
        parallel_calls: bool = True,
    ) -> None:
        self.model_path = model
        self.config_path = config
        self.name = (
            model.stem if model.stem != "frozen_inference_graph" else "ssd_mobilenet_v2_coco"
        )
        self.version = _version(model)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.threads = threads
        self.parallel_calls = parallel_calls
        self.max_networks = threads if parallel_calls else 1
        cv2.setNumThreads(1 if parallel_calls else threads)
        # idle networks; a cv2.dnn.Net is not safe to call from two threads at once
        self._idle: list[cv2.dnn.Net] = []
        self._networks = 0
        self._building = False
        self._waiting = 0  # calls waiting for a network (tests)
        self._pool = threading.Condition()
        self._grow = threading.Lock()  # one copy built at a time
        # held, no call runs: the model manager's smoke test of a new model takes turns
        # with the cameras through it (exclusive(), edge/model_update/install.py)
        self._turns = Turns(self)
        self._turn_wanted = 0
        self._turn_held = False
        self._add(self._read_net())
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

    # -- the networks -----------------------------------------------------------------

    def _read_net(self) -> cv2.dnn.Net:
        try:
            return cv2.dnn.readNetFromTensorflow(str(self.model_path), str(self.config_path))
        except cv2.error as err:
            raise DetectorError(
                f"model {str(self.model_path)!r}: not a TensorFlow frozen graph OpenCV can "
                f"read with the text graph {str(self.config_path)!r} ({_last_line(err)})"
            ) from None

    def _add(self, net: cv2.dnn.Net) -> None:
        with self._pool:
            self._idle.append(net)
            self._networks += 1
            self._pool.notify_all()

    @property
    def networks(self) -> int:
        """How many copies of the network exist now (1 … ``max_networks``)."""
        return self._networks

    def add_network(self) -> bool:
        """Build one more copy of the network (up to ``max_networks``) and run it once,
        so its first real call is not the one that allocates; False when there are
        enough already or it cannot be built (then the ones there are serve)."""
        with self._grow:
            if self._networks >= self.max_networks:
                return False
            try:
                net = self._read_net()
                net.setInput(np.zeros((1, 3, self.input_size, self.input_size), np.float32))
                net.forward()
            except (DetectorError, cv2.error) as err:
                log.warning("detector %s: no further network copy (%s)", self.name, err)
                self.max_networks = self._networks  # stop trying: the file may be gone
                return False
            self._add(net)
            return True

    def _build_in_background(self) -> None:
        try:
            self.add_network()
        finally:
            with self._pool:
                self._building = False
                self._pool.notify_all()

    def _take(self) -> cv2.dnn.Net:
        with self._pool:
            self._waiting += 1
            try:
                while not self._idle or self._turn_wanted or self._turn_held:
                    if (
                        not self._idle
                        and not (self._turn_wanted or self._turn_held or self._building)
                        and self._networks < self.max_networks
                    ):
                        # calls overlap: another copy lets the next ones run side by
                        # side; this call waits for the busy one, not for the build
                        self._building = True
                        threading.Thread(
                            target=self._build_in_background, name="detector-copy", daemon=True
                        ).start()
                    self._pool.wait()
            finally:
                self._waiting -= 1
            return self._idle.pop()

    def _give(self, net: cv2.dnn.Net) -> None:
        with self._pool:
            self._idle.append(net)
            self._pool.notify_all()

    def _hold_all(self) -> None:
        """Wait until no call runs, then keep every network idle (calls wait)."""
        with self._pool:
            self._turn_wanted += 1  # calls that come meanwhile wait behind this turn
            try:
                while self._turn_held or self._building or len(self._idle) < self._networks:
                    self._pool.wait()
            finally:
                self._turn_wanted -= 1
            self._turn_held = True

    def _release_all(self) -> None:
        with self._pool:
            self._turn_held = False
            self._pool.notify_all()

    def exclusive(self) -> Turns:
        """Hold it (``with detector.exclusive():``) and no call of this detector runs:
        a new model's smoke test takes turns with the cameras' inferences through it."""
        return self._turns

    # -- inference --------------------------------------------------------------------

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Raw network output for one frame (used by the benchmark as the reference)."""
        blob = cv2.dnn.blobFromImage(image, size=(self.input_size, self.input_size), swapRB=True)
        net = self._take()
        try:
            net.setInput(blob)
            out: np.ndarray = net.forward()
            return out
        except cv2.error as err:
            raise DetectorError(
                f"model {str(self.model_path)!r}: inference failed ({_last_line(err)})"
            ) from None
        finally:
            self._give(net)

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
