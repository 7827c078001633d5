from __future__ import annotations

import cv2
import numpy as np

from edge.video.motion import MotionGate


def scene(square_x: int | None = None, shade: int = 90) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), shade, np.uint8) + rng.integers(0, 5, (240, 320, 3), dtype=np.uint8)
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
