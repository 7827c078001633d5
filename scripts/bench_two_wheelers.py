"""Benchmark the e-bike / pedal-bike second stage (edge/video/two_wheelers.py).

Measures, side by side in one run, with the bundled EfficientNet-Lite3 (int8 TFLite,
ai-edge-litert, 2 threads) and the default detector (COCO SSD-MobileNetV2):

  1. accuracy on real two-wheelers in the shipped media, each annotated by eye below
     (:data:`ANNOTATED`): the moped in motorcycle_left.png, dog.jpg's road bicycle, and
     in bikes.mp4 a cyclist's bicycle, a parked scooter (which the SSD calls 'bicycle')
     and a parked city bicycle — every detector box at or above its score threshold,
     cropped as the pipeline crops it — and on scenes made from them: each instance
     shrunk (further away), mirrored, darkened, overexposed, noisy, JPEG-degraded,
     half-hidden behind a passer-by cut from vtest.avi, and pasted into vtest.avi's
     walkway where the detector must find it again first;
  2. cost: classifier milliseconds per crop beside the detector's own per frame;
  3. memory: the classifier's resident memory (one per gateway, shared by its cameras)
     beside the detector's;
  4. cost per camera with the per-track cache: crops per second on bikes.mp4 at 5 fps
     (the demo's entrance camera, rules on ``ebike``) and on the moped held still for
     30 s (--quick) or a minute; milliseconds per second of video they cost (crops/s ×
     ms per crop) beside the detector's (its calls/s × ms per frame); and, measured, the
     camera's CPU per frame with the check beside the same camera whose rules watch only
     the detector's classes (frame by frame in turns).

Times are medians of wall-clock time in this process: on a shared, loaded machine both
grow, their ratio much less (the JSON ends with the load average at start and end).

Usage: .venv/bin/python scripts/bench_two_wheelers.py [--quick]
``--quick`` (about a minute) samples every 5th frame of bikes.mp4 and fewer made scenes.
The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.video.detectors import load_detector
from edge.video.geometry import iou_matrix
from edge.video.pipeline import CameraPipeline
from edge.video.sources import open_source
from edge.video.two_wheelers import (
    CHECKED_CLASSES,
    TwoWheelerClassifier,
    crop_of,
    decide,
    load_classifier,
)
from microbrain.resources import sample
from microbrain.site.cameras import Camera, TwoWheelerCheck

THRESHOLD = TwoWheelerCheck().score_threshold


@dataclass(frozen=True)
class Instance:
    """One real two-wheeler: where it is, what it is (annotated by eye)."""

    name: str
    truth: str  # ebike | pedal_bike
    media: str
    frame: int  # video frame (0 for an image)
    box: tuple[int, int, int, int]  # xyxy, for the made scenes


# the distinct two-wheelers in the shipped media, looked at frame by frame
INSTANCES = (
    Instance("moped", "ebike", "motorcycle_left.png", 0, (0, 0, 741, 500)),
    Instance("dog_jpg_bicycle", "pedal_bike", "dog.jpg", 0, (77, 134, 549, 409)),
    Instance("bikes_scooter", "ebike", "bikes.mp4", 130, (522, 130, 638, 270)),
    Instance("bikes_cyclist", "pedal_bike", "bikes.mp4", 125, (365, 140, 520, 269)),
    Instance("bikes_parked", "pedal_bike", "bikes.mp4", 210, (280, 5, 595, 219)),
)


def bikes_truth(frame: int, box: np.ndarray) -> str | None:
    """bikes.mp4, annotated by eye: frames 100–140 show a cyclist (pedal bike, left of
    x = 510) and a parked scooter at the right edge; 185–250 a parked city bicycle.
    Boxes elsewhere are none of these (None: not scored)."""
    if 100 <= frame <= 140:
        return "ebike" if box[0] >= 510 else "pedal_bike"
    if 185 <= frame <= 250:
        return "pedal_bike"
    return None


def image_of(media: str, frame: int) -> np.ndarray:
    if media.endswith((".mp4", ".avi")):
        cap = cv2.VideoCapture(str(sample(media)))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, image = cap.read()
        cap.release()
        if not ok:
            raise SystemExit(f"{media}: no frame {frame}")
        return image
    image = cv2.imread(str(sample(media)))
    if image is None:
        raise SystemExit(f"{media}: unreadable")
    return image


@dataclass
class Scored:
    """Correct and total per group, a confusion table and the detector fallbacks."""

    right: Counter[str]
    total: Counter[str]
    confusion: Counter[tuple[str, str]]
    errors: list[str]
    fallbacks: int = 0

    @classmethod
    def new(cls) -> Scored:
        return cls(Counter(), Counter(), Counter(), [])

    def add(
        self,
        what: str,
        group: str,
        truth: str,
        crop: np.ndarray | None,
        detector_class: str,
        clf: TwoWheelerClassifier,
        times: list[float],
    ) -> None:
        if crop is None:
            return
        t = time.perf_counter()
        scores = clf.classify(crop)
        times.append(time.perf_counter() - t)
        verdict = decide(scores.ebike, scores.pedal_bike, 1, detector_class, THRESHOLD, 1.0)
        self.fallbacks += verdict.source == "detector"
        self.total[group] += 1
        self.right[group] += verdict.label == truth
        self.confusion[(truth, verdict.label)] += 1
        if verdict.label != truth:
            self.errors.append(
                f"{what}: {truth} called {verdict.label} ({verdict.source}, "
                f"e-bike share {verdict.ebike_share:.2f}, mass {verdict.mass:.3f})"
            )

    def accuracy(self, group: str | None = None) -> float | None:
        total = sum(self.total.values()) if group is None else self.total[group]
        right = sum(self.right.values()) if group is None else self.right[group]
        return round(right / total, 3) if total else None


def real_boxes(detector, clf, scored: Scored, times: list[float], step: int) -> None:
    """Every detector box of a two-wheeler in the annotated media, cropped as the
    pipeline crops it."""
    for media in ("motorcycle_left.png", "dog.jpg"):
        image = image_of(media, 0)
        found = detector.detect(image)
        found = found[found.confidence >= detector.score_threshold].of_classes(CHECKED_CLASSES)
        truth = "ebike" if media.startswith("motorcycle") else "pedal_bike"
        for box, name in zip(found.xyxy, found.names, strict=True):
            where = f"{media} {name} {box.astype(int).tolist()}"
            scored.add(where, "real", truth, crop_of(image, box), name, clf, times)
    cap = cv2.VideoCapture(str(sample("bikes.mp4")))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % step == 0 and bikes_truth(index, np.zeros(4)) is not None:
            found = detector.detect(frame)
            found = found[found.confidence >= detector.score_threshold].of_classes(CHECKED_CLASSES)
            for box, name in zip(found.xyxy, found.names, strict=True):
                truth = bikes_truth(index, box)
                if truth is not None:
                    where = f"bikes.mp4#{index} {name} {box.astype(int).tolist()}"
                    scored.add(where, "real", truth, crop_of(frame, box), name, clf, times)
        index += 1
    cap.release()


def _passer_by() -> np.ndarray:
    """A person cut from vtest.avi (frame 100, a walker in the middle of the square)."""
    frame = image_of("vtest.avi", 100)
    return frame[150:420, 330:430].copy()


def made_scenes(detector, clf, scored: Scored, times: list[float], quick: bool) -> dict:
    """Each instance, degraded as a camera degrades it, and pasted into vtest.avi."""
    rng = np.random.default_rng(14)
    walker = _passer_by()
    background = image_of("vtest.avi", 300)
    missed = 0
    for inst in INSTANCES:
        image = image_of(inst.media, inst.frame)
        x0, y0, x1, y1 = inst.box
        obj = image[y0:y1, x0:x1]
        h, w = obj.shape[:2]
        variants: dict[str, np.ndarray] = {
            "mirrored": obj[:, ::-1],
            "half_size": cv2.resize(obj, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
            "quarter_size": cv2.resize(obj, (w // 4, h // 4), interpolation=cv2.INTER_AREA),
            "dark": cv2.convertScaleAbs(obj, alpha=0.35, beta=0),
            "overexposed": cv2.convertScaleAbs(obj, alpha=1.6, beta=40),
            "noisy": np.clip(obj + rng.normal(0, 18, obj.shape), 0, 255).astype(np.uint8),
            "jpeg_q15": cv2.imdecode(
                cv2.imencode(".jpg", obj, [cv2.IMWRITE_JPEG_QUALITY, 15])[1], cv2.IMREAD_COLOR
            ),
        }
        if not quick:
            variants["dark_noisy"] = np.clip(
                variants["dark"] + rng.normal(0, 12, obj.shape), 0, 255
            ).astype(np.uint8)
            variants["eighth_size"] = cv2.resize(obj, (max(16, w // 8), max(16, h // 8)))
        occluded = obj.copy()
        person = cv2.resize(walker, (max(1, int(w * 0.3)), h))
        occluded[:, int(w * 0.35) : int(w * 0.35) + person.shape[1]] = person
        variants["occluded_30pct"] = occluded
        for variant, crop in variants.items():
            scored.add(
                f"{inst.name} {variant}",
                "made",
                inst.truth,
                crop_of(crop, np.array([0, 0, *crop.shape[1::-1]])),
                "bicycle" if inst.truth == "pedal_bike" else "motorcycle",
                clf,
                times,
            )
        # pasted into the walkway of vtest.avi at two sizes: found by the detector first
        for height in (200, 300) if quick else (160, 220, 280, 340):
            scale = height / h
            pasted = cv2.resize(obj, (max(1, int(w * scale)), height))
            scene = background.copy()
            sh, sw = scene.shape[:2]
            ph, pw = pasted.shape[:2]
            pw = min(pw, sw - 20)
            px, py = (sw - pw) // 2, sh - ph - 10
            scene[py : py + ph, px : px + pw] = pasted[:, :pw]
            truth_box = np.array([[px, py, px + pw, py + ph]], np.float32)
            found = detector.detect(scene)
            found = found[found.confidence >= detector.score_threshold].of_classes(CHECKED_CLASSES)
            hits = iou_matrix(found.xyxy, truth_box)[:, 0] >= 0.3 if len(found) else []
            if not np.any(hits):
                missed += 1
                continue
            row = int(np.argmax(np.where(hits, found.confidence, -1)))
            scored.add(
                f"{inst.name} pasted {height} px high",
                "pasted",
                inst.truth,
                crop_of(scene, found.xyxy[row]),
                found.names[row],
                clf,
                times,
            )
    return {"pasted_scenes_detector_missed": missed}


def per_camera(detector, seconds_still: float) -> dict:
    """Crops per second and their CPU cost per camera, through the real pipeline."""
    out: dict = {}
    entrance = {
        "id": "cam-entrance",
        "source": "sample:bikes.mp4",
        "fps": 5,
        "zones": [
            {
                "id": "entrance",
                "polygon": [[0, 0], [640, 0], [640, 272], [0, 272]],
                "rules": [{"type": "ebike_charging", "classes": ["ebike"], "dwell_s": 60}],
            }
        ],
        "lines": [
            {
                "id": "door",
                "kind": "ebike_entering_building",
                "points": [[320, 0], [320, 272]],
                "direction": "in",
                "classes": ["ebike"],
            }
        ],
    }
    plain = json.loads(json.dumps(entrance).replace('["ebike"]', '["bicycle", "motorcycle"]'))
    still = {
        "id": "cam-stairwell",
        "source": "sample:motorcycle_left.png",
        "fps": 5,
        "zones": [
            {
                "id": "stairwell",
                "anchor": "center",
                "polygon": [[0, 0], [740, 0], [740, 500], [0, 500]],
                "rules": [{"type": "ebike_charging", "classes": ["ebike"], "dwell_s": 60}],
            }
        ],
    }
    # bikes.mp4 through the camera with the check and the same camera without it,
    # frame by frame in turns (neither always finds the caches warm), CPU time each
    pair = {
        "bikes": CameraPipeline(Camera.model_validate(entrance), detector),
        "bikes_without_check": CameraPipeline(Camera.model_validate(plain), detector),
    }
    frames = list(open_source(pair["bikes"].camera).frames())
    cpu = dict.fromkeys(pair, 0.0)
    for i, frame in enumerate(frames):
        for key in list(pair) if i % 2 == 0 else list(pair)[::-1]:
            t = time.process_time()
            pair[key].process(frame)
            cpu[key] += time.process_time() - t
    runs = [(key, pipeline, frames, cpu[key]) for key, pipeline in pair.items()]
    camera = Camera.model_validate(still)
    pipeline = CameraPipeline(camera, detector)
    stills = list(open_source(camera, still_duration_s=seconds_still).frames())
    t = time.process_time()
    for frame in stills:
        pipeline.process(frame)
    runs.append(("still_moped", pipeline, stills, time.process_time() - t))
    for key, pipeline, seen, spent in runs:
        video_s = seen[-1].ts - seen[0].ts + 1 / pipeline.camera.fps
        out[f"{key}_video_s"] = round(video_s, 1)
        out[f"{key}_pipeline_cpu_ms_per_frame"] = round(spent / len(seen) * 1000, 2)
        out[f"{key}_detector_calls_per_s"] = round(pipeline.stats.detector_calls / video_s, 2)
        verifier = pipeline._verifier
        if verifier is not None:
            out[f"{key}_crops_per_s"] = round(verifier.looks / video_s, 3)
            out[f"{key}_crops"] = verifier.looks
            out[f"{key}_tracks_checked"] = verifier.tracks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    args = parser.parse_args()
    quick = args.quick
    load_start = round(os.getloadavg()[0], 2)
    process = psutil.Process()
    rss = process.memory_info().rss
    detector = load_detector()
    rss_detector = process.memory_info().rss
    clf = load_classifier(TwoWheelerCheck())  # one per gateway, shared by its cameras
    figures: dict = {
        "quick": quick,
        "classifier": clf.name,
        "threads": 2,
        "classifier_rss_mb": round((process.memory_info().rss - rss_detector) / 2**20, 1),
        "detector_rss_mb": round((rss_detector - rss) / 2**20, 1),
    }

    # reference: the detector's own time per frame, on vtest frames, in this run
    frames = [image_of("vtest.avi", i) for i in range(0, 200, 10)]
    det_times = []
    for image in frames:
        t = time.perf_counter()
        detector.forward(image)
        det_times.append(time.perf_counter() - t)

    scored, times = Scored.new(), []
    real_boxes(detector, clf, scored, times, step=5 if quick else 1)
    print(f"real: {scored.accuracy('real')} over {scored.total['real']}", flush=True)
    figures.update(made_scenes(detector, clf, scored, times, quick))
    print(
        f"made: {scored.accuracy('made')} over {scored.total['made']}, "
        f"pasted: {scored.accuracy('pasted')} over {scored.total['pasted']}",
        flush=True,
    )
    # the classifier alone, on crops of its usual size, interleaved with the detector
    crop = crop_of(image_of("motorcycle_left.png", 0), np.array([0, 0, 741, 500]))
    assert crop is not None
    crop_times, det_times2 = [], []
    for image in frames:
        t = time.perf_counter()
        clf.classify(crop)
        crop_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        detector.forward(image)
        det_times2.append(time.perf_counter() - t)
    all_crop = times + crop_times
    det_ms = statistics.median(det_times + det_times2) * 1000
    crop_ms = statistics.median(all_crop) * 1000
    figures.update(
        {
            "classifier_ms_median": round(crop_ms, 2),
            "classifier_ms_p95": round(float(np.percentile(all_crop, 95)) * 1000, 2),
            "detector_ms_median": round(det_ms, 2),
            "classifier_over_detector": round(crop_ms / det_ms, 3),
            "accuracy_all": scored.accuracy(),
            "accuracy_real": scored.accuracy("real"),
            "accuracy_made": scored.accuracy("made"),
            "accuracy_pasted": scored.accuracy("pasted"),
            "crops_real": scored.total["real"],
            "crops_made": scored.total["made"],
            "crops_pasted": scored.total["pasted"],
            "ebike_recall": _recall(scored, "ebike"),
            "pedal_bike_recall": _recall(scored, "pedal_bike"),
            "detector_fallbacks": scored.fallbacks,
            "errors": scored.errors,
            "confusion_truth_to_verdict": {
                f"{truth}->{label}": n for (truth, label), n in sorted(scored.confusion.items())
            },
        }
    )
    print(f"classifier {crop_ms:.1f} ms per crop, detector {det_ms:.1f} ms per frame", flush=True)
    figures.update(per_camera(detector, 30.0 if quick else 60.0))
    for key in ("bikes", "still_moped"):
        rate = figures.get(f"{key}_crops_per_s", 0.0)
        figures[f"{key}_classifier_ms_per_s"] = round(rate * crop_ms, 2)
        figures[f"{key}_detector_ms_per_s"] = round(
            figures[f"{key}_detector_calls_per_s"] * det_ms, 1
        )
    # measured: the camera's CPU with the check over the same camera without it
    figures["bikes_check_overhead_pct_measured"] = round(
        100
        * (
            figures["bikes_pipeline_cpu_ms_per_frame"]
            / figures["bikes_without_check_pipeline_cpu_ms_per_frame"]
            - 1
        ),
        1,
    )
    # derived: the classifier's time per second of video over the detector's, same camera
    figures["bikes_check_cost_over_detector_pct"] = round(
        100 * figures["bikes_classifier_ms_per_s"] / figures["bikes_detector_ms_per_s"], 2
    )
    print(
        f"per camera: bikes.mp4 {figures['bikes_crops_per_s']} crops/s "
        f"({figures['bikes_classifier_ms_per_s']} ms/s beside the detector's "
        f"{figures['bikes_detector_ms_per_s']} ms/s); still moped "
        f"{figures['still_moped_crops_per_s']} crops/s",
        flush=True,
    )
    figures["load_average_1min_start_end"] = [load_start, round(os.getloadavg()[0], 2)]
    print(json.dumps(figures))


def _recall(scored: Scored, label: str) -> float | None:
    total = sum(n for (truth, _), n in scored.confusion.items() if truth == label)
    return round(scored.confusion[(label, label)] / total, 3) if total else None


if __name__ == "__main__":
    main()
