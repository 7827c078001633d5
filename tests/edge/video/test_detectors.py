"""Detectors on real models: the default SSD through OpenCV, tiny YOLO-layout graphs
through onnxruntime, and models that are not models."""

from __future__ import annotations

import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from edge.video.detectors import DetectorError, load_detector
from edge.video.detectors.onnx_yolo import OnnxYoloDetector
from edge.video.detectors.opencv_tf import TF90_TO_COCO80, OpenCVTensorFlowDetector
from edge.video.geometry import iou_matrix
from microbrain.resources import default_model
from microbrain.site.cameras import DetectorConfig
from microbrain.site.classes import COCO_CLASSES
from tests.edge.video.onnx_models import build, end_to_end_layout, v8_layout
from tests.edge.video.tf_graphs import cut_text_graph, edit_text_graph

NAMES = {0: "person", 1: "bicycle", 2: "dog"}


@pytest.fixture(scope="module")
def ssd():
    return load_detector(DetectorConfig())


def test_tf_label_map_covers_coco80_in_order():
    assert len(TF90_TO_COCO80) == 80
    assert COCO_CLASSES[TF90_TO_COCO80[1]] == "person"
    assert COCO_CLASSES[TF90_TO_COCO80[18]] == "dog"
    assert COCO_CLASSES[TF90_TO_COCO80[90]] == "toothbrush"
    assert 12 not in TF90_TO_COCO80


def test_default_ssd_sees_dog_and_bicycle_in_dog_jpg(ssd, sample_media):
    found = ssd.detect(cv2.imread(str(sample_media("dog.jpg"))))
    assert found.confidence.min() >= 0.1  # weak boxes come too, for the tracker's second stage
    dets = found[found.confidence >= ssd.score_threshold]
    by_name = {n: dets.xyxy[i] for i, n in enumerate(dets.names)}
    assert {"dog", "bicycle"} <= set(by_name)
    assert iou_matrix(by_name["dog"], np.array([140, 208, 313, 535]))[0, 0] > 0.8
    assert iou_matrix(by_name["bicycle"], np.array([76, 134, 548, 408]))[0, 0] > 0.8
    assert "person" not in by_name


def test_ssd_reports_the_van_once_not_as_car_and_truck(ssd, sample_media):
    cap = cv2.VideoCapture(str(sample_media("vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 400)
    ok, frame = cap.read()
    assert ok
    dets = ssd.detect(frame)
    dets = dets[dets.confidence >= ssd.score_threshold]
    van = iou_matrix(dets.xyxy, np.array([642, 41, 725, 100]))[:, 0] > 0.7
    assert van.sum() == 1
    assert dets.names[int(np.argmax(van))] in ("car", "truck")


@pytest.mark.parametrize("content", [b"", b"not a model at all\n" * 10, bytes(range(256)) * 40])
def test_a_file_that_is_not_a_model_names_the_model(tmp_path, content):
    bad = tmp_path / "broken.pb"
    bad.write_bytes(content)
    pbtxt = tmp_path / "broken.pbtxt"
    pbtxt.write_text("garbage {")
    with pytest.raises(DetectorError, match=r"broken.pb"):
        load_detector(DetectorConfig(model=str(bad), config=str(pbtxt)))
    onnx_file = tmp_path / "broken.onnx"
    onnx_file.write_bytes(content)
    with pytest.raises(DetectorError, match=r"broken.onnx"):
        load_detector(DetectorConfig(type="onnx_yolo", model=str(onnx_file)))


@pytest.mark.parametrize(
    ("last", "shape"),
    [
        ("FeatureExtractor/MobilenetV2/Conv/Relu6", "(1, 32, 150, 150)"),  # the first conv's output
        ("BoxEncodingPredictor/concat", "(1, 7668)"),  # box deltas, before DetectionOutput
    ],
)
def test_tf_graph_that_ends_early_names_the_model_and_what_was_expected(
    tmp_path, default_model_files, last, shape
):
    """The real frozen weights under a text graph cut off before its SSD head: OpenCV
    loads and runs it, and what comes out is not detections."""
    pb, pbtxt = default_model_files
    cut = cut_text_graph(pbtxt, last, tmp_path / "cut.pbtxt")
    expected = (
        rf"model '{re.escape(str(pb))}': unexpected output shape {re.escape(shape)}; "
        r"an SSD gives \[1, 1, N, 7\]"
    )
    with pytest.raises(DetectorError, match=expected):
        load_detector(DetectorConfig(model=str(pb), config=str(cut)))


@pytest.mark.parametrize(
    "content",
    [
        b"not a graph at all\n" * 10,
        "the .pbtxt in place of the .pb",
        "the first MB of the real .pb",
    ],
)
def test_a_pb_that_is_not_a_graph_names_it_even_with_the_real_pbtxt(
    tmp_path, default_model_files, content
):
    pb, pbtxt = default_model_files
    if content == "the .pbtxt in place of the .pb":
        content = pbtxt.read_bytes()
    elif content == "the first MB of the real .pb":
        content = pb.read_bytes()[: 1 << 20]
    bad = tmp_path / "bad_graph.pb"
    bad.write_bytes(content)
    with pytest.raises(
        DetectorError, match=r"model '.*bad_graph\.pb': not a TensorFlow frozen graph"
    ):
        load_detector(DetectorConfig(model=str(bad), config=str(pbtxt)))


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        # a layer whose weights the .pb does not hold
        (
            'input: "FeatureExtractor/MobilenetV2/Conv/weights"',
            'input: "FeatureExtractor/MobilenetV2/Conv/w"',
            (
                r"not a TensorFlow frozen graph OpenCV can read with the text graph "
                r"'.*other\.pbtxt' \(.*weights not found"
            ),
        ),
        # a head for 7 classes on weights trained for 91: loads, then fails on the first frame
        ("      i: 91\n", "      i: 7\n", r"inference failed \(.*"),
    ],
)
def test_a_pbtxt_that_does_not_match_the_weights_names_the_model(
    tmp_path, default_model_files, old, new, why
):
    pb, pbtxt = default_model_files
    edited = edit_text_graph(pbtxt, old, new, tmp_path / "other.pbtxt")
    with pytest.raises(DetectorError, match=rf"model '{re.escape(str(pb))}': {why}"):
        load_detector(DetectorConfig(model=str(pb), config=str(edited)))


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(DetectorError, match=r"nope.onnx.*no such file"):
        load_detector(DetectorConfig(type="onnx_yolo", model=str(tmp_path / "nope.onnx")))


def test_yolo_v8_layout_runs_nms_and_maps_boxes_back(tmp_path):
    # two overlapping 'dog' boxes (NMS keeps the better) and one 'person', 320 input
    pred = v8_layout(
        [(100, 100, 40, 40), (102, 101, 40, 40), (250, 200, 60, 100)],
        [[0.0, 0.0, 0.9], [0.0, 0.0, 0.7], [0.8, 0.0, 0.0]],
    )
    det = OnnxYoloDetector(build(tmp_path / "v8.onnx", pred, NAMES), score_threshold=0.4)
    assert det.class_names == ("person", "bicycle", "dog")
    image = np.zeros((320, 640, 3), np.uint8)  # letterboxed: scale 0.5, 80 px top pad
    dets = det.detect(image)
    assert sorted(dets.names) == ["dog", "person"]
    dog = dets.xyxy[dets.names.index("dog")]
    # model space (80..120, 80..120) → image: minus the pad (0, 80), times 2
    np.testing.assert_allclose(dog, [160, 0, 240, 80], atol=1e-3)
    assert float(dets.confidence[dets.names.index("dog")]) == pytest.approx(0.9)


def test_yolo_end_to_end_layout(tmp_path):
    pred = end_to_end_layout(
        [(10, 90, 110, 190, 0.95, 1), (0, 0, 5, 5, 0.05, 0), (200, 200, 250, 250, 0.2, 2)]
    )
    det = OnnxYoloDetector(build(tmp_path / "e2e.onnx", pred, NAMES), score_threshold=0.4)
    dets = det.detect(np.zeros((320, 320, 3), np.uint8))
    assert dets.names == ["bicycle", "dog"]  # the 0.2 dog may extend a track, never start one
    assert dets.confidence.tolist() == pytest.approx([0.95, 0.2])
    np.testing.assert_allclose(dets.xyxy[0], [10, 90, 110, 190], atol=1e-3)


def test_yolo_without_metadata_names_classes_by_number(tmp_path):
    pred = v8_layout([(50, 50, 20, 20)], [[0.0, 0.9]])
    det = OnnxYoloDetector(build(tmp_path / "anon.onnx", pred, None))
    assert det.class_names == ("class0", "class1")


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 6, 10), (1, 10, 5)])
def test_unexpected_outputs_name_the_model(tmp_path, shape):
    model = build(tmp_path / "odd.onnx", np.zeros(shape, np.float32), NAMES)
    with pytest.raises(DetectorError, match=r"odd\.onnx.*(unexpected output|image input)"):
        OnnxYoloDetector(model)


def test_onnx_yolo_needs_a_model_path():
    with pytest.raises(DetectorError, match="needs 'model'"):
        load_detector(DetectorConfig(type="onnx_yolo"))


def test_yolo_class_ids_beyond_names_are_refused(tmp_path):
    pred = end_to_end_layout([(10, 10, 50, 50, 0.9, 7)])
    with pytest.raises(DetectorError, match="class id 7"):
        OnnxYoloDetector(build(tmp_path / "ids.onnx", pred, NAMES)).detect(
            np.zeros((320, 320, 3), np.uint8)
        )


# -- the default detector shared by several cameras: networks side by side --------------


def _vtest_frames(sample_media, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_media("vtest.avi")))
    frames: list[np.ndarray] = []
    while len(frames) < n:
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
        for _ in range(19):  # every 20th frame: different people, different boxes
            cap.grab()
    cap.release()
    return frames


def _same(a, b) -> None:
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    np.testing.assert_array_equal(a.class_id, b.class_id)


def test_calls_side_by_side_find_what_calls_one_at_a_time_find(sample_media):
    """Four cameras calling at once on two single-threaded networks get, frame for frame,
    the boxes of one call at a time, and those of the previous single network on two
    threads."""
    detector = load_detector(DetectorConfig(threads=2))
    assert isinstance(detector, OpenCVTensorFlowDetector) and detector.networks == 1
    assert detector.add_network() and detector.networks == 2
    assert not detector.add_network() and detector.networks == 2  # threads=2: two at most
    frames = _vtest_frames(sample_media, 12)
    one_by_one = [detector.detect(frame) for frame in frames]
    assert sum(len(d) for d in one_by_one) > 12  # people in every frame: a real comparison
    with ThreadPoolExecutor(4) as pool:
        side_by_side = list(pool.map(detector.detect, frames))
    for a, b in zip(one_by_one, side_by_side, strict=True):
        _same(a, b)
    model, graph = default_model()
    previous = OpenCVTensorFlowDetector(model, graph, threads=2, parallel_calls=False)
    assert previous.max_networks == 1 and not previous.add_network()
    for frame, a in zip(frames, one_by_one, strict=True):
        _same(previous.detect(frame), a)


def test_a_call_that_finds_every_network_busy_gets_a_new_one_built(sample_media):
    detector = load_detector(DetectorConfig(threads=2))
    assert isinstance(detector, OpenCVTensorFlowDetector)
    frame = _vtest_frames(sample_media, 1)[0]
    busy = detector._take()  # another camera's call, in progress
    found: list = []
    call = threading.Thread(target=lambda: found.append(detector.detect(frame)))
    call.start()
    call.join(120)  # returns on the copy built for it, while the first is still taken
    detector._give(busy)
    assert not call.is_alive() and len(found) == 1 and detector.networks == 2


def test_a_copy_that_cannot_be_built_leaves_the_calls_to_the_networks_there_are(
    sample_media, tmp_path
):
    model, graph = default_model()
    copy = tmp_path / "ssd.pb"
    shutil.copyfile(model, copy)
    detector = OpenCVTensorFlowDetector(copy, graph, threads=2)
    copy.unlink()  # e.g. an old model version cleaned away while it still runs
    assert not detector.add_network() and detector.max_networks == 1
    frame = _vtest_frames(sample_media, 1)[0]
    busy = detector._take()
    found: list = []
    call = threading.Thread(target=lambda: found.append(detector.detect(frame)))
    call.start()
    detector._give(busy)  # the waiting call gets the one network back
    call.join(120)
    assert not call.is_alive() and len(found) == 1 and detector.networks == 1


def test_a_turn_on_the_detector_holds_every_call_until_it_is_given_back(sample_media):
    """The model manager's smoke test of a new model takes turns with the cameras through
    the running detector's ``_lock`` (edge/model_update/install.py): held, no call runs,
    however many networks there are."""
    detector = load_detector(DetectorConfig(threads=2))
    assert isinstance(detector, OpenCVTensorFlowDetector) and detector.add_network()
    frame = _vtest_frames(sample_media, 1)[0]
    found: list = []
    with detector.exclusive():
        calls = [
            threading.Thread(target=lambda: found.append(detector.detect(frame))) for _ in range(2)
        ]
        for call in calls:
            call.start()
        for _ in range(6000):  # both calls waiting (a bounded wait, not a timing)
            if detector._waiting == 2:
                break
            threading.Event().wait(0.01)
        assert detector._waiting == 2 and found == []
    for call in calls:
        call.join(120)
    assert len(found) == 2 and detector.networks == 2
