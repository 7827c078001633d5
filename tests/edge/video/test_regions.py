"""Where the detector looks: region planning, crops at the whole frame's scale on a real
dynamic-shape ONNX model, and the motion gate's reach around a tracked dog."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from edge.video.detectors.onnx_yolo import OnnxYoloDetector
from edge.video.motion import MotionGate
from edge.video.pipeline import CameraPipeline
from edge.video.regions import merge_rects, plan_regions, reach_rects, zone_rects
from edge.video.sources import DEFAULT_START, Frame
from microbrain.site.cameras import Camera
from tests.edge.video.onnx_models import build, build_centre_finder, v8_layout
from tests.edge.video.test_motion import scene

W, H = 768, 576


@pytest.mark.parametrize(("rects", "expected"), [
    ([], []),
    ([(10, 10, 50, 50)], [(10, 10, 50, 50)]),
    ([(-5.5, -3, 20.2, 30.7)], [(0, 0, 21, 31)]),  # clipped, rounded outward
    ([(10, 10, 50, 50), (40, 40, 90, 90)], [(10, 10, 90, 90)]),  # overlapping: merged
    ([(10, 10, 50, 50), (60, 60, 90, 90)], [(10, 10, 50, 50), (60, 60, 90, 90)]),
    # a merge that makes a new overlap merges again
    ([(0, 0, 10, 100), (20, 0, 30, 10), (5, 5, 25, 15)], [(0, 0, 30, 100)]),
    ([(800, 600, 900, 700)], []),  # wholly outside the frame
])
def test_merge_rects_table(rects, expected):
    assert merge_rects(np.array(rects, np.float32).reshape(-1, 4), W, H) == expected


def test_plan_regions_falls_back_to_the_whole_frame():
    assert plan_regions(np.empty((0, 4)), W, H) is None
    small = np.array([[600, 30, 740, 120]], np.float32)
    assert plan_regions(small, W, H) == [(600, 30, 740, 120)]
    big = np.array([[0, 0, 700, 500]], np.float32)  # 79 % of the frame
    assert plan_regions(big, W, H) is None


def test_zone_and_reach_rects():
    polygon = np.array([[620, 30], [740, 30], [740, 120], [620, 120]], np.float32)
    assert zone_rects([polygon], 10).tolist() == [[610, 20, 750, 130]]
    dog = np.array([[100, 200, 140, 240]], np.float32)  # 40 px high
    assert reach_rects(dog, 1.5).tolist() == [[40, 140, 200, 300]]


def _camera(zones: list[dict]) -> Camera:
    return Camera.model_validate({"id": "cam-crops", "source": "sample:vtest.avi", "fps": 1,
                                  "zones": zones})


def _zone(zone_id: str, x0: int, y0: int, x1: int, y1: int) -> dict:
    return {"id": zone_id, "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
            "rules": [{"type": "object_in_zone", "kind": "people", "classes": ["person"], "dwell_s": 5}]}


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
    margin = 0.1 * W  # regions.CROP_MARGIN of the longer side
    crops = [(620 - margin, 30 - margin, 740 + margin, 120 + margin),
             (60 - margin, 400 - margin, 200 + margin, 520 + margin)]
    crops = [(max(0, x0), max(0, y0), min(W, x1), min(H, y1)) for x0, y0, x1, y1 in crops]
    centres = sorted(((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in crops)
    assert pipeline.stats.detector_calls == 1 and pipeline.stats.detector_crops == 2
    found = sorted(((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in pipeline.last_detections.xyxy)
    assert np.allclose(found, centres, atol=2), (found, centres)
    # each crop seen at the whole frame's scale (640 / 768): a 20-px box is 24 px here
    widths = pipeline.last_detections.xyxy[:, 2] - pipeline.last_detections.xyxy[:, 0]
    assert widths.tolist() == pytest.approx([24, 24], abs=0.5)


def test_zones_that_cover_most_of_the_frame_get_one_whole_frame_call(centre_finder):
    pipeline = CameraPipeline(_camera([_zone("yard", 0, 0, 700, 560)]), centre_finder)
    pipeline.process(_frame())
    assert pipeline.stats.detector_crops == 0
    assert pipeline.last_detections.xyxy[0].tolist() == pytest.approx([372, 276, 396, 300], abs=1)


def test_a_fixed_size_model_always_sees_the_whole_frame(tmp_path):
    fixed = OnnxYoloDetector(build(tmp_path / "fixed.onnx", v8_layout([(320, 320, 20, 20)], [[0.9]]),
                                   {0: "person"}, size=640), score_threshold=0.4)
    assert not fixed.any_input_size
    with pytest.raises(ValueError, match="fixed input size"):
        fixed.detect(np.zeros((100, 100, 3), np.uint8), 0.5)
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
