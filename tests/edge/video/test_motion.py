from __future__ import annotations

import cv2
import numpy as np

from edge.video.motion import MotionGate


def scene(square_x: int | None = None, shade: int = 90) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), shade, np.uint8) + rng.integers(
        0, 5, (240, 320, 3), dtype=np.uint8
    )
    if square_x is not None:
        cv2.rectangle(img, (square_x, 100), (square_x + 30, 130), (255, 255, 255), -1)
    return img


def test_a_still_scene_is_not_motion_after_the_first_frame():
    gate = MotionGate()
    results = [gate.update(scene()) for _ in range(10)]
    assert results[0].moving and not any(r.moving for r in results[1:])


def test_a_moving_object_is_motion():
    gate = MotionGate()
    for _ in range(5):
        gate.update(scene())
    assert gate.update(scene(100)).moving


def test_motion_outside_the_region_of_interest_is_ignored():
    gate = MotionGate(roi=[np.array([[0, 0], [60, 0], [60, 60], [0, 60]])], roi_margin=0.05)
    for _ in range(5):
        gate.update(scene())
    assert not gate.update(scene(200)).moving  # square at x 200..230, far from the roi
    near = MotionGate(roi=[np.array([[180, 80], [260, 80], [260, 160], [180, 160]])])
    for _ in range(5):
        near.update(scene())
    assert near.update(scene(200)).moving


def test_a_scene_cut_is_reported_and_the_next_frame_is_calm():
    gate = MotionGate()
    for _ in range(5):
        gate.update(scene(shade=40))
    cut = gate.update(scene(shade=200))
    assert cut.scene_cut and cut.moving
    assert not gate.update(scene(shade=200)).scene_cut


def test_frame_size_change_restarts_the_gate():
    gate = MotionGate()
    gate.update(scene())
    small = cv2.resize(scene(), (320, 120))  # another aspect ratio
    result = gate.update(small)
    assert result.moving and not result.scene_cut


def test_moving_boxes_surround_what_moved_in_frame_pixels():
    gate = MotionGate()
    assert gate.moving_boxes() is None  # nothing seen yet
    gate.update(scene())
    assert gate.moving_boxes() is None  # the first frame: no telling where
    for _ in range(4):
        gate.update(scene())
    still = gate.moving_boxes()
    assert still is not None and still.shape == (0, 4)  # a still scene
    gate.update(scene(100))  # a square at x 100..130, y 100..130 appears
    moved = gate.moving_boxes()
    assert moved is not None
    ((x0, y0, x1, y1),) = moved
    assert x0 <= 100 <= 130 <= x1 and y0 <= 100 <= 130 <= y1
    assert x1 - x0 < 80 and y1 - y0 < 80  # around the square, not the frame


def test_moving_boxes_stay_inside_the_region_of_interest():
    gate = MotionGate(roi=[np.array([[0, 0], [60, 0], [60, 60], [0, 60]])], roi_margin=0.05)
    for _ in range(5):
        gate.update(scene())
    gate.update(scene(200))  # moves far from the region
    boxes = gate.moving_boxes()
    assert boxes is not None and boxes.shape == (0, 4)
