"""A candidate model beside the deployed one: box mAP and event precision/recall.

Both models run through the gateway's own detector interface (edge.video.detectors), so
the bundled COCO SSD (OpenCV's TensorFlow importer, which ultralytics' validator cannot
run) and a YOLO export are measured the same way: their detections are matched to the
labels by ultralytics' own matching (``BaseValidator.match_predictions``, IoU 0.50:0.95)
and scored with ``ap_per_class``. A detector's class names are mapped to the dataset's
by name (COCO names through models.classes). The event figures come from replaying the
scenario clips through the edge pipeline (models/event_scores.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from microbrain.model_card import Evaluation, ModelScores
from models import offline
from models.classes import class_id
from models.datasets import DatasetError, DataSpec, dataset_sha256, image_files, read_labels
from models.event_scores import EventScores, Scenario, score_events

DEFAULT_MODEL = "default"  # the bundled COCO SSD-MobileNetV2 every gateway starts with


@dataclass(frozen=True)
class BoxScores:
    map50: float
    map50_95: float
    images: int
    boxes: int  # labelled boxes scored


def load_model(model: str, threads: int = 2) -> tuple[Any, str]:
    """An edge detector for ``model`` ("default": the bundled SSD; else an ONNX export)
    and the name it is reported under."""
    from edge.video.detectors import DetectorError, load_detector
    from microbrain.site.cameras import DetectorConfig

    if model == DEFAULT_MODEL:
        detector = load_detector(DetectorConfig(threads=threads))
        return detector, f"default:{detector.name}"
    path = Path(model)
    if path.suffix != ".onnx":
        raise DetectorError(
            f"model {model!r}: give an ONNX export (.onnx) or 'default' (the bundled SSD)"
        )
    return load_detector(
        DetectorConfig(type="onnx_yolo", model=str(path.resolve()), threads=threads)
    ), str(path)


def score_boxes(
    detector: Any, spec: DataSpec, on_image: Callable[[], None] | None = None
) -> BoxScores:
    """mAP50 and mAP50-95 of ``detector`` on the val split of ``spec``."""
    offline.prepare()
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    # match_predictions reads only the IoU thresholds from its validator
    matcher = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    images = image_files(spec.val)
    if not images:
        raise DatasetError(f"{spec.path}: no images under {spec.val}")
    stats: dict[str, list[np.ndarray]] = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for image_path in images:
        image = cv2.imread(str(image_path))
        if image is None:
            raise DatasetError(f"{image_path}: not an image OpenCV can read")
        h, w = image.shape[:2]
        labels = read_labels(image_path, len(spec.names))
        gt_cls = labels[:, 0].astype(np.int64)
        cx, cy, bw, bh = (labels[:, i] for i in range(1, 5))
        gt = np.stack(
            [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], 1
        )
        found = detector.detect(image)
        mapped = [class_id(str(n), spec.names) for n in found.names]
        keep = np.array([c is not None for c in mapped], bool)
        pred_cls = np.array([c for c in mapped if c is not None], np.int64)
        conf = np.asarray(found.confidence, np.float32)[keep]
        xyxy = np.asarray(found.xyxy, np.float32).reshape(-1, 4)[keep]
        order = np.argsort(-conf, kind="stable")
        pred_cls, conf, xyxy = pred_cls[order], conf[order], xyxy[order]
        if len(gt) and len(xyxy):
            iou = box_iou(torch.from_numpy(gt.astype(np.float32)), torch.from_numpy(xyxy))
            correct = BaseValidator.match_predictions(
                matcher,  # type: ignore[arg-type]
                torch.from_numpy(pred_cls),
                torch.from_numpy(gt_cls),
                iou,
            ).numpy()
        else:
            correct = np.zeros((len(xyxy), 10), bool)
        stats["tp"].append(correct)
        stats["conf"].append(conf)
        stats["pred_cls"].append(pred_cls)
        stats["target_cls"].append(gt_cls)
        if on_image is not None:
            on_image()
    joined = {k: np.concatenate(v, 0) for k, v in stats.items()}
    if not len(joined["target_cls"]):
        raise DatasetError(f"{spec.path}: the val images hold no labelled boxes to score")
    ap = ap_per_class(
        joined["tp"], joined["conf"], joined["pred_cls"], joined["target_cls"], plot=False
    )[5]
    return BoxScores(
        float(ap[:, 0].mean()), float(ap.mean()), len(images), len(joined["target_cls"])
    )


def model_scores(name: str, boxes: BoxScores, events: EventScores) -> ModelScores:
    return ModelScores(
        model=name[-300:],
        map50=round(boxes.map50, 4),
        map50_95=round(boxes.map50_95, 4),
        event_precision=round(events.precision, 4),
        event_recall=round(events.recall, 4),
        events_expected=events.expected,
        events_raised=events.raised,
    )


@dataclass(frozen=True)
class Measured:
    scores: ModelScores
    boxes: BoxScores
    events: EventScores


def measure(
    model: str,
    spec: DataSpec,
    scenarios: list[Scenario],
    base: Path,
    threads: int = 2,
    on_step: Callable[[], None] | None = None,
) -> Measured:
    """One model's box and event figures."""
    detector, name = load_model(model, threads)
    boxes = score_boxes(detector, spec, on_step)
    events = score_events(detector, scenarios, base, (lambda _s: on_step()) if on_step else None)
    return Measured(model_scores(name, boxes, events), boxes, events)


def evaluate(candidate: Measured, deployed: Measured, spec: DataSpec, scenarios: int) -> Evaluation:
    return Evaluation(
        candidate=candidate.scores,
        deployed=deployed.scores,
        images=candidate.boxes.images,
        scenarios=scenarios,
        dataset_sha256=dataset_sha256(spec),
    )
