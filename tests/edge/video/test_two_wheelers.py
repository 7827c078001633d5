"""The e-bike / pedal-bike second stage: the real bundled TFLite classifier on the
shipped media, its per-track cache in video time, rules that watch ``ebike`` through
the real pipeline, and the errors a bad model or config gives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from edge.video.detectors import load_detector
from edge.video.evidence import EvidenceStore
from edge.video.pipeline import CameraError, CameraPipeline
from edge.video.rules import crossing_findings, watched_as
from edge.video.sources import open_source
from edge.video.two_wheelers import (
    EBIKE_IMAGENET,
    MIN_CROP_PX,
    PEDAL_IMAGENET,
    TwoWheelerClassifier,
    TwoWheelerVerifier,
    Verdict,
    crop_of,
    decide,
    load_classifier,
    verifier_for,
)
from edge.video.zones import Crossing
from microbrain.protocol.payloads import Event, EventState
from microbrain.resources import sample, two_wheeler_classifier
from microbrain.site.cameras import Camera, Line, TwoWheelerCheck
from microbrain.site.loader import SiteError, load_camera
from tests.edge.video.factories import NAMES, dets

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "cameras"
MOTORCYCLE_ZONE = [[0, 0], [740, 0], [740, 500], [0, 500]]
BICYCLE_ZONE = [[60, 120], [560, 120], [560, 420], [60, 420]]  # dog.jpg's road bicycle


@pytest.fixture(scope="module")
def detector():
    return load_detector()


@pytest.fixture(scope="module")
def classifier() -> TwoWheelerClassifier:
    return load_classifier(TwoWheelerCheck())


def _image(name: str) -> np.ndarray:
    image = cv2.imread(str(sample(name)))
    assert image is not None
    return image


def _bikes_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(sample("bikes.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


def _two_wheeler_box(detector, image: np.ndarray) -> np.ndarray:
    """The detector's most confident bicycle/motorcycle box (the pipeline's crop source)."""
    found = detector.detect(image).of_classes(("bicycle", "motorcycle"))
    assert len(found), "the detector found no two-wheeler"
    return found.xyxy[int(np.argmax(found.confidence))]


def _verdict(classifier, image, box, detector_class: str) -> Verdict:
    crop = crop_of(image, box)
    assert crop is not None
    scores = classifier.classify(crop)
    return decide(scores.ebike, scores.pedal_bike, 1, detector_class, 0.5, 0.9)


def _camera(source: str, polygon, rules: list[dict], **extra) -> Camera:
    zone = {"id": "stairwell", "anchor": "center", "polygon": polygon, "rules": rules}
    return Camera.model_validate(
        {"id": "cam-tw", "source": source, "fps": 2, "zones": [zone], **extra}
    )


def _run(camera: Camera, detector, seconds: float, evidence: Path | None = None):
    events: list[Event] = []
    store = EvidenceStore(evidence) if evidence else None
    pipeline = CameraPipeline(camera, detector, events.append, store)
    for frame in open_source(camera, still_duration_s=seconds).frames():
        pipeline.process(frame)
    pipeline.finish()
    return events, pipeline


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the classifier on the shipped media ------------------------------------------------


def test_the_imagenet_mapping_names_the_classes_the_wheel_labels():
    # the indices are the bundled model's own label order (efficientnet_labels.txt)
    labels = (
        two_wheeler_classifier()
        .with_name("efficientnet_labels.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    for index, name in {**EBIKE_IMAGENET, **PEDAL_IMAGENET}.items():
        assert labels[index].startswith(name), (index, labels[index])


def test_shipped_motorcycle_image_is_an_ebike(detector, classifier):
    image = _image("motorcycle_left.png")
    verdict = _verdict(classifier, image, _two_wheeler_box(detector, image), "motorcycle")
    assert verdict.label == "ebike" and verdict.source == "classifier"
    assert verdict.score > 0.9 and verdict.mass > 0.3  # ImageNet: moped, motor scooter


@pytest.mark.parametrize(
    "media",
    ["dog.jpg", "bikes.mp4@210"],  # dog.jpg's road bicycle; the city bike parked in bikes.mp4
)
def test_shipped_pedal_bicycles_are_pedal_bikes(detector, classifier, media):
    name, _, at = media.partition("@")
    image = _bikes_frame(int(at)) if at else _image(name)
    verdict = _verdict(classifier, image, _two_wheeler_box(detector, image), "bicycle")
    assert verdict.label == "pedal_bike" and verdict.source == "classifier"
    assert verdict.score > 0.8


def test_scooter_the_detector_calls_a_bicycle_is_an_ebike(classifier):
    # bikes.mp4 frame 130: the SSD calls the parked scooter at the right edge 'bicycle'
    frame = _bikes_frame(130)
    verdict = _verdict(classifier, frame, np.array([522, 130, 638, 270], np.float32), "bicycle")
    assert verdict.label == "ebike" and verdict.score > 0.8


def test_a_crop_with_no_two_wheeler_falls_back_to_the_detector_class(classifier):
    sky = np.full((120, 160, 3), (235, 206, 135), np.uint8)
    scores = classifier.classify(sky)
    assert scores.mass < 0.02
    verdict = decide(scores.ebike, scores.pedal_bike, 1, "motorcycle", 0.5, 0.7)
    assert (verdict.label, verdict.source, verdict.score) == ("ebike", "detector", 0.7)
    verdict = decide(scores.ebike, scores.pedal_bike, 1, "bicycle", 0.5, 0.7)
    assert (verdict.label, verdict.source) == ("pedal_bike", "detector")


@pytest.mark.parametrize(
    ("ebike", "pedal", "threshold", "label"),
    [(0.6, 0.4, 0.5, "ebike"), (0.4, 0.6, 0.5, "pedal_bike"), (0.6, 0.4, 0.7, "pedal_bike")],
)
def test_the_threshold_is_the_ebike_share(ebike, pedal, threshold, label):
    assert decide(ebike, pedal, 1, "motorcycle", threshold, 0.9).label == label


def test_crops_too_small_are_skipped_and_counted(classifier):
    image = _image("motorcycle_left.png")
    assert crop_of(image, np.array([10, 10, 10 + MIN_CROP_PX // 2, 60], np.float32)) is None
    verifier = TwoWheelerVerifier(classifier, TwoWheelerCheck(), "cam-tiny")
    before = _metric(
        "mb_edge_two_wheeler_skipped_total", camera="cam-tiny", reason="crop_too_small"
    )
    verifier.update(image, dets(("motorcycle", 10, 10, 20, 20, 0.9, 1)), 0.0)
    assert verifier.looks == 0 and verifier.verdicts == {}
    after = _metric("mb_edge_two_wheeler_skipped_total", camera="cam-tiny", reason="crop_too_small")
    assert after == before + 1


# -- the cache: once on confirmation, again only after recheck_s of video time ----------------


def test_a_track_is_looked_at_on_confirmation_and_again_after_recheck_s(classifier):
    image = _image("motorcycle_left.png")
    verifier = TwoWheelerVerifier(classifier, TwoWheelerCheck(recheck_s=10), "cam-cache")
    moped = ("motorcycle", 0, 0, 740, 500, 0.9, 7)
    looks = []
    for ts in (0.0, 0.5, 4.0, 9.99, 10.0, 12.0, 19.9, 20.0):
        verifier.update(image, dets(moped), ts)
        looks.append(verifier.looks)
    assert looks == [1, 1, 1, 1, 2, 2, 2, 3]
    assert verifier.verdicts[7].label == "ebike" and verifier.verdicts[7].looks == 3
    # unconfirmed tracks (no id) are never looked at; a new track is looked at at once
    verifier.update(image, dets(moped, ("motorcycle", 0, 0, 740, 500, 0.9)), 20.5)
    assert verifier.looks == 3
    verifier.update(image, dets(moped, ("motorcycle", 0, 0, 740, 500, 0.9, 8)), 21.0)
    assert verifier.looks == 4 and set(verifier.verdicts) == {7, 8}
    # a track the tracker dropped is forgotten: the same id later is a new object
    verifier.update(image, dets(("motorcycle", 0, 0, 740, 500, 0.9, 8)), 22.0)
    assert set(verifier.verdicts) == {8}
    verifier.update(image, dets(moped), 23.0)
    assert verifier.looks == 5 and verifier.verdicts[7].looks == 1


def test_other_classes_are_never_classified(classifier):
    verifier = TwoWheelerVerifier(classifier, TwoWheelerCheck(), "cam-other")
    verifier.update(_image("dog.jpg"), dets(("dog", 140, 208, 313, 535, 0.9, 1)), 0.0)
    assert verifier.looks == 0 and verifier.verdicts == {}


def test_the_pipeline_looks_per_track_not_per_frame(detector):
    camera = _camera(
        "sample:motorcycle_left.png",
        MOTORCYCLE_ZONE,
        [{"type": "ebike_charging", "classes": ["ebike"], "dwell_s": 5}],
        two_wheelers={"recheck_s": 10},
    )
    _, pipeline = _run(camera, detector, seconds=25)
    verifier = pipeline._verifier
    assert verifier is not None
    # 51 frames, a detector call every 2 s on the still scene: the one track is looked
    # at when confirmed, then after ≥ 10 s of video time, twice more in 25 s at most
    assert pipeline.stats.frames >= 50 and pipeline.stats.detector_calls >= 10
    assert 2 <= verifier.looks <= 3, verifier.looks


# -- rules watching ebike, through the real pipeline -------------------------------------


def test_ebike_rule_raises_on_the_moped_with_the_verdict_in_detail_and_picture(detector, tmp_path):
    camera = load_camera(CONFIGS / "ebike-stairwell.yaml")
    events, _ = _run(camera, detector, seconds=15, evidence=tmp_path)
    raised = [e for e in events if e.state is EventState.RAISED]
    assert [(e.kind, e.object_class) for e in raised] == [("ebike_charging", "ebike")]
    detail = raised[0].detail
    assert detail["verdict"] == "ebike" and detail["detector_class"] == "motorcycle"
    assert detail["verdict_source"] == "classifier" and float(detail["verdict_score"]) > 0.9
    snapshot = tmp_path / raised[0].evidence[0].name
    assert snapshot.is_file() and cv2.imread(str(snapshot)) is not None


def test_ebike_rule_stays_quiet_on_a_road_bicycle(detector):
    rules: list[dict] = [
        {"type": "ebike_charging", "classes": ["ebike"], "dwell_s": 3},
        # the same track through a rule that watches the other verdict: it is seen, and
        # it is a pedal bike (so the quiet above is the verdict, not a missed detection)
        {"type": "object_in_zone", "kind": "pedal_bike_seen", "classes": ["pedal_bike"]},
    ]
    events, pipeline = _run(_camera("sample:dog.jpg", BICYCLE_ZONE, rules), detector, 10)
    raised = [(e.kind, e.object_class) for e in events if e.state is EventState.RAISED]
    assert raised == [("pedal_bike_seen", "pedal_bike")]
    assert [v.label for v in pipeline.verdicts.values()] == ["pedal_bike"]


def test_rules_watching_detector_classes_still_match_them(detector):
    # a rule that names every two-wheeler matches the bicycle by its detector class; the
    # verdict only goes into the detail
    rule = {"type": "ebike_charging", "classes": ["bicycle", "motorcycle", "ebike"], "dwell_s": 3}
    camera = _camera("sample:dog.jpg", BICYCLE_ZONE, [rule])
    events, _ = _run(camera, detector, 8)
    raised = [e for e in events if e.state is EventState.RAISED]
    assert [e.object_class for e in raised] == ["bicycle"]
    assert raised[0].detail["verdict"] == "pedal_bike"


def test_no_classifier_where_no_rule_watches_two_wheelers(detector):
    camera = _camera("sample:dog.jpg", BICYCLE_ZONE, [{"type": "unleashed_dog", "dwell_s": 3}])
    _, pipeline = _run(camera, detector, 4)
    assert pipeline._verifier is None and pipeline.verdicts == {}


@pytest.mark.parametrize(
    ("name", "tid", "classes", "verdicts", "expected"),
    [
        ("motorcycle", 1, ("ebike",), {1: "ebike"}, "ebike"),
        ("bicycle", 1, ("ebike",), {1: "pedal_bike"}, None),
        ("bicycle", 1, ("ebike",), {}, None),  # no verdict (yet): not an e-bike
        ("bicycle", 1, ("bicycle", "ebike"), {1: "ebike"}, "bicycle"),  # detector class first
        ("ebike", 1, ("ebike",), {}, "ebike"),  # a retrained detector's own class
        ("motorcycle", 2, ("ebike",), {1: "ebike"}, None),  # another track's verdict
    ],
)
def test_watched_as(name, tid, classes, verdicts, expected):
    table = {t: Verdict(label, 0.9, 1.0, 0.5, "classifier", 1) for t, label in verdicts.items()}
    assert watched_as(name, tid, classes, table) == expected


@pytest.mark.parametrize(("label", "expected"), [("ebike", 1), ("pedal_bike", 0)])
def test_a_line_watching_ebike_counts_only_ebike_verdicts(label, expected):
    line = Line(
        id="door", kind="ebike_entering_building", points=((0, 0), (0, 100)), classes=("ebike",)
    )
    tracked = dets(("motorcycle", 10, 10, 60, 60, 0.8, 3))
    verdicts = {3: Verdict(label, 0.9, 0.9 if label == "ebike" else 0.1, 0.5, "classifier", 2)}
    found = crossing_findings(line, tracked, [Crossing(3, 0, "in")], verdicts)
    assert len(found) == expected
    if found:
        assert found[0].object_class == "ebike" and found[0].detail["verdict_looks"] == 2
        assert found[0].detail["detector_class"] == "motorcycle"


def test_a_detector_with_an_ebike_class_decides_alone():
    camera = _camera(
        "sample:dog.jpg", BICYCLE_ZONE, [{"type": "ebike_charging", "classes": ["ebike"]}]
    )
    verifier = verifier_for(camera, NAMES)  # NAMES has the retrained model's 'ebike'
    assert verifier is not None and verifier.classifier is None
    image = np.zeros((100, 100, 3), np.uint8)
    found = dets(("ebike", 0, 0, 50, 50, 0.8, 1), ("bicycle", 50, 50, 99, 99, 0.7, 2))
    verdicts = verifier.update(image, found, 0.0)
    assert (verdicts[1].label, verdicts[1].source) == ("ebike", "detector")
    assert verdicts[2].label == "pedal_bike" and verifier.looks == 0


# -- bad models and bad config -------------------------------------------------------------


def _ebike_camera(**two_wheelers) -> Camera:
    return _camera(
        "sample:motorcycle_left.png",
        MOTORCYCLE_ZONE,
        [{"type": "ebike_charging", "classes": ["ebike"]}],
        two_wheelers=two_wheelers,
    )


def test_corrupt_tflite_fails_at_load_naming_the_config_field(detector, tmp_path):
    bad = tmp_path / "classifier.tflite"
    bad.write_bytes(b"\x00not a flatbuffer" * 64)
    before = _metric(
        "mb_edge_pipeline_errors_total", camera="cam-tw", reason="two_wheeler_classifier"
    )
    with pytest.raises(
        CameraError, match=r"camera cam-tw: .*not a TFLite model.*two_wheelers\.model"
    ):
        CameraPipeline(_ebike_camera(model=str(bad)), detector)
    after = _metric(
        "mb_edge_pipeline_errors_total", camera="cam-tw", reason="two_wheeler_classifier"
    )
    assert after == before + 1


def test_missing_tflite_fails_at_load(detector, tmp_path):
    with pytest.raises(CameraError, match=r"no such file; fix two_wheelers\.model"):
        CameraPipeline(_ebike_camera(model=str(tmp_path / "gone.tflite")), detector)


def test_a_tflite_that_is_not_an_imagenet_classifier_is_refused(detector):
    # the same wheel's MoveNet: a real TFLite model, but pose keypoints, not 1000 classes
    movenet = two_wheeler_classifier().with_name("movenet_lightning.tflite")
    with pytest.raises(CameraError, match=r"51 outputs; .* ImageNet-1k classifier"):
        CameraPipeline(_ebike_camera(model=str(movenet)), detector)


def test_ebike_rule_with_the_check_off_and_no_ebike_class_is_refused(detector):
    with pytest.raises(CameraError, match=r"two_wheelers\.enabled is false.*could never fire"):
        CameraPipeline(_ebike_camera(enabled=False), detector)


@pytest.mark.parametrize(
    ("two_wheelers", "message"),
    [
        ({"model": "classifier.onnx"}, "is not a .tflite file"),
        ({"recheck_s": 0}, "greater than or equal to 1"),
        ({"recheck_s": "5 fortnights"}, "is not a duration"),
        ({"score_threshold": 1.5}, "less than 1"),
        ({"score_threshold": 0}, "greater than 0"),
        ({"threads": 0}, "greater than or equal to 1"),
        ({"every_frame": True}, "Extra inputs are not permitted"),
    ],
)
def test_bad_two_wheeler_config_is_refused_at_the_door(two_wheelers, message):
    with pytest.raises(ValidationError, match=message):
        _ebike_camera(**two_wheelers)


def test_camera_file_may_watch_verdict_classes_and_names_unknown_ones(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        (CONFIGS / "ebike-stairwell.yaml")
        .read_text(encoding="utf-8")
        .replace("classes: [ebike]", "classes: [ebike, pedal_bike]"),
        encoding="utf-8",
    )
    assert load_camera(good).watched_classes() == {"ebike", "pedal_bike"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text(encoding="utf-8").replace("pedal_bike]", "e_bike]"), encoding="utf-8"
    )
    with pytest.raises(SiteError, match="unknown class 'e_bike'"):
        load_camera(bad)


def test_verifier_for_is_none_when_no_rule_watches_a_verdict():
    camera = _camera("sample:dog.jpg", BICYCLE_ZONE, [{"type": "unleashed_dog"}])
    assert verifier_for(camera, NAMES) is None
