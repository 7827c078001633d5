"""Where the detector looks: region planning, windows of the whole frame's input on a
real dynamic-shape ONNX model, and the motion gate's reach around a tracked dog."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from edge.video.detections import Detections
from edge.video.detectors.onnx_yolo import OnnxYoloDetector
from edge.video.motion import MotionGate
from edge.video.pipeline import CameraPipeline
from edge.video.regions import combine, merge_rects, plan_regions, reach_rects, zone_rects
from edge.video.sources import DEFAULT_START, Frame
from microbrain.site.cameras import Camera
from tests.edge.video.factories import dets
from tests.edge.video.onnx_models import build, build_centre_finder, v8_layout
from tests.edge.video.test_motion import scene

W, H = 768, 576


@pytest.mark.parametrize(
    ("rects", "expected"),
    [
        ([], []),
        ([(10, 10, 50, 50)], [(10, 10, 50, 50)]),
        ([(-5.5, -3, 20.2, 30.7)], [(0, 0, 21, 31)]),  # clipped, rounded outward
        ([(10, 10, 50, 50), (20, 10, 60, 50)], [(10, 10, 60, 50)]),  # mostly shared: merged
        # touching at a corner: their bounding box would cost 1.6× the two, so two crops
        ([(10, 10, 50, 50), (40, 40, 90, 90)], [(10, 10, 50, 50), (40, 40, 90, 90)]),
        ([(10, 10, 50, 50), (60, 60, 90, 90)], [(10, 10, 50, 50), (60, 60, 90, 90)]),
        # a merge that makes a new cheap overlap merges again
        ([(0, 0, 20, 20), (30, 0, 50, 20), (15, 0, 35, 20)], [(0, 0, 50, 20)]),
        ([(800, 600, 900, 700)], []),  # wholly outside the frame
    ],
)
def test_merge_rects_table(rects, expected):
    assert merge_rects(np.array(rects, np.float32).reshape(-1, 4), W, H) == expected


def test_plan_regions_falls_back_to_the_whole_frame():
    assert plan_regions(np.empty((0, 4)), W, H) is None
    small = np.array([[600, 30, 740, 120]], np.float32)
    assert plan_regions(small, W, H) == [(600, 30, 740, 120)]
    big = np.array([[0, 0, 700, 500]], np.float32)  # 79 % of the frame
    assert plan_regions(big, W, H) is None


CLASSES = ("person", "car", "truck")


def _found(*rows: tuple) -> Detections:
    return dets(*rows, names=CLASSES)


@pytest.mark.parametrize(
    ("a", "b", "kept"),
    [
        # the same person whole in both crops: found once, the higher score stays
        ([("person", 95, 100, 105, 160, 0.9)], [("person", 95, 101, 105, 161, 0.8)], [0.9]),
        # cut by crop A's right edge (x 110) and whole in crop B: B's view stays, though weaker
        ([("person", 100, 100, 110, 160, 0.95)], [("person", 100, 100, 120, 160, 0.7)], [0.7]),
        # a car and a person in the overlap: different classes, both stay
        ([("car", 100, 100, 110, 160, 0.9)], [("person", 100, 100, 120, 160, 0.7)], [0.9, 0.7]),
        # two people side by side, one in each crop: both stay
        ([("person", 60, 100, 80, 160, 0.9)], [("person", 130, 100, 150, 160, 0.8)], [0.9, 0.8]),
    ],
)
def test_combine_keeps_one_view_of_an_object_seen_by_two_crops(a, b, kept):
    regions = [(0, 50, 110, 200), (90, 50, 300, 200)]  # overlapping at x 90..110
    out = combine([_found(*a), _found(*b)], regions, W, H, CLASSES)
    assert out.confidence.tolist() == pytest.approx(kept)


def test_combine_keeps_a_person_only_one_crop_saw_whole():
    # crop A sees a small person; crop B sees that one too and a bigger one around it
    regions = [(0, 50, 110, 200), (90, 50, 300, 200)]
    a = _found(("person", 96, 120, 104, 160, 0.8))
    b = _found(("person", 94, 60, 140, 190, 0.6), ("person", 96, 120, 104, 160, 0.79))
    out = combine([a, b], regions, W, H, CLASSES)
    assert sorted(out.confidence.tolist()) == pytest.approx([0.6, 0.8])


def test_combine_keeps_one_box_for_one_object_under_two_labels():
    regions = [(0, 50, 110, 200), (90, 50, 300, 200)]
    out = combine(
        [_found(("car", 92, 100, 108, 140, 0.7)), _found(("truck", 92, 100, 108, 140, 0.6))],
        regions,
        W,
        H,
        CLASSES,
    )
    assert out.names == ["car"]


def test_combine_keeps_overlapping_people_found_in_one_crop():
    # the detector's own NMS let them both through: combine does not second-guess it
    regions = [(0, 50, 110, 200), (300, 50, 400, 200)]
    one = _found(("person", 10, 60, 50, 160, 0.9), ("person", 15, 70, 45, 150, 0.8))
    out = combine([one, _found()], regions, W, H, CLASSES)
    assert len(out) == 2


def test_zone_and_reach_rects():
    polygon = np.array([[620, 30], [740, 30], [740, 120], [620, 120]], np.float32)
    assert zone_rects([polygon], 10).tolist() == [[610, 20, 750, 130]]
    dog = np.array([[100, 200, 140, 240]], np.float32)  # 40 px high
    assert reach_rects(dog, 1.5).tolist() == [[40, 140, 200, 300]]
    assert reach_rects(dog, 1.5, margin=10).tolist() == [[30, 130, 210, 310]]


def _camera(zones: list[dict]) -> Camera:
    return Camera.model_validate(
        {"id": "cam-crops", "source": "sample:vtest.avi", "fps": 1, "zones": zones}
    )


def _zone(zone_id: str, x0: int, y0: int, x1: int, y1: int) -> dict:
    return {
        "id": zone_id,
        "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
        "rules": [
            {"type": "object_in_zone", "kind": "people", "classes": ["person"], "dwell_s": 5}
        ],
    }


def _frame(i: int = 0) -> Frame:
    return Frame(np.zeros((H, W, 3), np.uint8), float(i), DEFAULT_START + timedelta(seconds=i), i)


@pytest.fixture(scope="module")
def centre_finder(tmp_path_factory) -> OnnxYoloDetector:
    path = build_centre_finder(tmp_path_factory.mktemp("models") / "centre.onnx")
    return OnnxYoloDetector(path, input_size=640, score_threshold=0.4)


def test_a_dynamic_model_sees_the_whole_frame_in_its_own_aspect(centre_finder):
    assert centre_finder.any_input_size
    found = centre_finder.detect(np.zeros((H, W, 3), np.uint8))
    # the centre of what it saw is the frame's centre: 640 × 480, not padded to a square
    assert found.xyxy[0].tolist() == pytest.approx([372, 276, 396, 300], abs=1)


def test_a_dynamic_model_looks_only_at_the_zones_crops(centre_finder):
    zones = [_zone("fire-lane", 620, 30, 740, 120), _zone("door", 60, 400, 200, 520)]
    pipeline = CameraPipeline(_camera(zones), centre_finder)
    pipeline.process(_frame())
    assert pipeline.stats.detector_calls == 1 and pipeline.stats.detector_crops == 2
    # The whole frame's input is 640 × 480 (scale 640/768). The zones plus 10 % margins,
    # (543, 0, 768, 197) and (0, 323, 277, 576), scaled and widened to the 32-px grid, are
    # the input windows (448, 0, 640, 192) and (0, 256, 256, 480): the model finds its
    # object at their centres, (544, 96) and (128, 368), i.e. frame (652.8, 115.2), (153.6, 441.6)
    found = sorted(
        ((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in pipeline.last_detections.xyxy
    )
    assert np.allclose(found, [(153.6, 441.6), (652.8, 115.2)], atol=0.5), found
    # seen at the whole frame's scale: a 20-px box is 24 px in the frame
    widths = pipeline.last_detections.xyxy[:, 2] - pipeline.last_detections.xyxy[:, 0]
    assert widths.tolist() == pytest.approx([24, 24], abs=0.5)


def test_zones_whose_crops_touch_at_a_corner_stay_two_crops(centre_finder):
    # the bench's fire lane and walkway: with margins the crops overlap at x 543..557, y 173..197
    zones = [_zone("fire-lane", 620, 30, 740, 120), _zone("walkway", 300, 250, 480, 420)]
    pipeline = CameraPipeline(_camera(zones), centre_finder)
    pipeline.process(_frame())
    assert pipeline.stats.detector_crops == 2 and len(pipeline.last_detections) == 2


def test_windows_map_back_through_the_letterbox_padding(centre_finder):
    # 1920 × 1080 at 640: scale 1/3, 640 × 360 padded to 640 × 384 (12 rows above)
    frame = np.zeros((1080, 1920, 3), np.uint8)
    corner, edge = centre_finder.detect_windows(frame, [(0, 1000, 100, 1080), (1900, 0, 1920, 20)])
    assert corner.xyxy[0].tolist() == pytest.approx([66, 990, 126, 1050], abs=0.5)
    assert edge.xyxy[0].tolist() == pytest.approx([1842, 0, 1902, 42], abs=0.5)  # clipped at y 0


def test_windows_outside_or_empty_do_not_crash(centre_finder):
    frame = np.zeros((H, W, 3), np.uint8)
    found = centre_finder.detect_windows(
        frame, [(-50, -50, -10, -10), (300, 300, 300, 300), (760, 570, 900, 700)]
    )
    assert len(found) == 3  # each window grows to at least one stride cell inside the input


def test_windows_follow_the_models_own_stride(tmp_path):
    # a P6-style export (stride 64): 640 × 480 pads to 640 × 512 (16 rows above), and the
    # fire-lane crop (543, 0, 768, 197) becomes the 64-grid window (448, 0, 640, 192)
    model = OnnxYoloDetector(
        build_centre_finder(tmp_path / "p6.onnx", stride=64), score_threshold=0.4
    )
    assert model.stride == 64
    found = model.detect_windows(np.zeros((H, W, 3), np.uint8), [(543, 0, 768, 197)])[0]
    centre = ((found.xyxy[0, 0] + found.xyxy[0, 2]) / 2, (found.xyxy[0, 1] + found.xyxy[0, 3]) / 2)
    assert centre == pytest.approx((544 / (640 / 768), (96 - 16) / (640 / 768)), abs=0.5)


def test_a_tracked_dog_widens_the_crops_to_its_owners_reach(centre_finder):
    dog_zone = {
        "id": "lawn",
        "polygon": [[60, 400], [200, 400], [200, 520], [60, 520]],
        "rules": [{"type": "unleashed_dog", "dwell_s": 10, "person_distance_k": 1.5}],
    }
    pipeline = CameraPipeline(
        _camera([_zone("fire-lane", 620, 30, 740, 120), dog_zone]), centre_finder
    )
    pipeline.process(_frame(0))
    assert pipeline.stats.detector_crops == 2
    # as if the tracker followed a 60-px-high dog at the lawn's right edge: its owner may
    # stand 1.5 × 60 px away, beyond the lawn's crop, and the next look must cover that
    pipeline._tracked = dets(("dog", 190, 440, 250, 500, 0.9, 7))
    pipeline.process(_frame(1))
    reach = 250 + 1.5 * 60  # the owner's farthest right edge, 340 px
    # the lawn crop ended at 277; now one window reaches past the owner's limit
    assert pipeline.last_windows is not None
    right_edges = sorted(x1 for x0, y0, x1, y1 in pipeline.last_windows)
    assert right_edges[0] >= reach + 0.1 * W - 1
    pipeline = CameraPipeline(_camera([_zone("yard", 0, 0, 700, 560)]), centre_finder)
    pipeline.process(_frame())
    assert pipeline.stats.detector_crops == 0
    assert pipeline.last_detections.xyxy[0].tolist() == pytest.approx([372, 276, 396, 300], abs=1)


def test_a_fixed_size_model_always_sees_the_whole_frame(tmp_path):
    fixed = OnnxYoloDetector(
        build(
            tmp_path / "fixed.onnx",
            v8_layout([(320, 320, 20, 20)], [[0.9]]),
            {0: "person"},
            size=640,
        ),
        score_threshold=0.4,
    )
    assert not fixed.any_input_size
    with pytest.raises(ValueError, match=r"fixed input size.*dynamic=True"):
        fixed.detect_windows(np.zeros((100, 100, 3), np.uint8), [(0, 0, 50, 50)])
    pipeline = CameraPipeline(_camera([_zone("fire-lane", 620, 30, 740, 120)]), fixed)
    pipeline.process(_frame())
    assert pipeline.stats.detector_calls == 1 and pipeline.stats.detector_crops == 0


def test_motion_near_a_tracked_dog_counts_though_outside_the_zones():
    # the zone is the top-left corner; the square moves at x 200..230, y 100..130
    gate = MotionGate(roi=[np.array([[0, 0], [60, 0], [60, 60], [0, 60]])], roi_margin=0.05)
    for _ in range(5):
        gate.update(scene())
    assert not gate.update(scene(200)).moving
    dog_reach = reach_rects(np.array([[150, 90, 180, 120]], np.float32), 1.5)  # reaches x 225
    gate = MotionGate(roi=[np.array([[0, 0], [60, 0], [60, 60], [0, 60]])], roi_margin=0.05)
    for _ in range(5):
        gate.update(scene(), also=dog_reach)
    assert gate.update(scene(200), also=dog_reach).moving


def _moving_square(i: int, x: int | None) -> Frame:
    rng = np.random.default_rng(0)
    image = (
        np.full((H, W, 3), 90, np.uint8) + rng.integers(0, 5, (H, W, 3), dtype=np.uint8)
    ).astype(np.uint8)
    if x is not None:
        image[100:160, x : x + 60] = 255
    return Frame(image, i * 0.5, DEFAULT_START + timedelta(seconds=i * 0.5), i)


def test_between_full_looks_the_detector_looks_only_where_something_moved(centre_finder):
    whole = _camera([_zone("yard", 0, 0, W, H)])
    pipeline = CameraPipeline(whole, centre_finder)
    pipeline.process(_moving_square(0, None))
    first = pipeline.last_windows  # a local: mypy keeps an attribute's narrowing past calls
    assert first is None  # the first look: the whole frame
    pipeline.process(_moving_square(1, None))  # the new object waits for its second look
    assert pipeline.last_windows is not None
    [(x0, y0, x1, y1)] = pipeline.last_windows
    assert x0 < W / 2 < x1 and y0 < H / 2 < y1
    centre_track = pipeline.tracked.tracker_id.tolist()
    assert len(centre_track) == 1
    pipeline.process(_moving_square(2, 100))  # a square appears at x 100..160, y 100..160
    assert pipeline.last_windows and all(x1 < W / 2 for x0, y0, x1, y1 in pipeline.last_windows)
    assert any(
        x0 <= 100 and x1 >= 160 and y0 <= 100 and y1 >= 160
        for x0, y0, x1, y1 in pipeline.last_windows
    )
    # the object at the centre was not looked at: held with its id, not lost
    assert set(centre_track) <= set(pipeline.tracked.tracker_id.tolist())
    for i, x in ((3, 110), (4, 120)):
        pipeline.process(_moving_square(i, x))  # t = 1.5, 2.0 s
    assert pipeline.last_windows is None  # recheck_s (2 s) after the last full look: everything


def test_without_the_gate_every_look_is_a_full_one(centre_finder):
    from edge.video.pipeline import PipelineOptions

    pipeline = CameraPipeline(
        _camera([_zone("yard", 0, 0, W, H)]),
        centre_finder,
        options=PipelineOptions(motion_gate=False),
    )
    for i, x in enumerate((None, None, 100, 110)):
        pipeline.process(_moving_square(i, x))
        assert pipeline.last_windows is None
