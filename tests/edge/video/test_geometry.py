from __future__ import annotations

import numpy as np
import pytest

from edge.video.detections import Detections
from edge.video.geometry import (
    anchors,
    box_gap,
    iou_matrix,
    nms,
    points_in_polygon,
    segments_intersect,
    side_of_line,
)
from tests.edge.video.factories import dets

SQUARE = [(0, 0), (10, 0), (10, 10), (0, 10)]
L_SHAPE = [(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),  # touching corners
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate boxes, no division by zero
    ],
)
def test_iou(a, b, expected):
    assert iou_matrix(a, b)[0, 0] == pytest.approx(expected, abs=1e-6)


def test_iou_of_empty_sets_has_the_right_shape():
    assert iou_matrix(np.empty((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert iou_matrix(np.zeros((2, 4)), np.empty((0, 4))).shape == (2, 0)


@pytest.mark.parametrize("anchor, expected", [("bottom_center", [5, 20]), ("center", [5, 15])])
def test_anchors(anchor, expected):
    np.testing.assert_allclose(anchors(np.array([[0, 10, 10, 20]]), anchor)[0], expected)


@pytest.mark.parametrize(
    "polygon, point, inside",
    [
        (SQUARE, (5, 5), True),
        (SQUARE, (10, 5), True),  # on an edge counts
        (SQUARE, (0, 0), True),  # a vertex counts
        (SQUARE, (10.01, 5), False),
        (SQUARE, (-1, -1), False),
        (L_SHAPE, (2, 8), True),
        (L_SHAPE, (8, 8), False),  # the notch of the L
        (L_SHAPE, (8, 2), True),
    ],
)
def test_point_in_polygon(polygon, point, inside):
    assert points_in_polygon(np.array([point]), np.array(polygon))[0] == inside


def test_point_in_polygon_empty():
    assert points_in_polygon(np.empty((0, 2)), np.array(SQUARE)).shape == (0,)


@pytest.mark.parametrize("point, side", [((5, 5), 1), ((5, -5), -1), ((5, 0), 0)])
def test_side_of_line_image_coordinates(point, side):
    # along +x with y pointing down, your right hand points down (+y)
    assert side_of_line(np.array([point]), np.array([0, 0]), np.array([10, 0]))[0] == side


@pytest.mark.parametrize(
    "p, q, crosses",
    [
        ((5, -5), (5, 5), True),
        ((15, -5), (15, 5), False),  # crosses the infinite line, not the segment
        ((5, 1), (6, 5), False),
        ((10, -1), (10, 1), True),  # through the end point
    ],
)
def test_segments_intersect(p, q, crosses):
    assert (
        segments_intersect(np.array(p), np.array(q), np.array([0, 0]), np.array([10, 0])) == crosses
    )


@pytest.mark.parametrize(
    "a, b, gap",
    [
        ([0, 0, 10, 10], [5, 5, 15, 15], 0.0),
        ([0, 0, 10, 10], [13, 0, 20, 10], 3.0),
        ([0, 0, 10, 10], [13, 14, 20, 20], 5.0),
    ],
)
def test_box_gap(a, b, gap):
    assert box_gap(a, b)[0, 0] == pytest.approx(gap)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    assert sorted(nms(boxes, np.array([0.5, 0.9, 0.3]), 0.5).tolist()) == [1, 2]
    assert nms(np.empty((0, 4)), np.empty(0), 0.5).size == 0


# -- Detections ---------------------------------------------------------------------------


def test_detections_filtering_keeps_the_type():
    d = dets(("car", 0, 0, 10, 10), ("dog", 5, 5, 8, 8, 0.5), ("person", 1, 1, 2, 2))
    assert isinstance(d[d.confidence > 0.6], Detections)
    assert d.of_classes(("dog", "person")).names == ["dog", "person"]
    assert len(d[np.zeros(3, bool)]) == 0
    assert d[1].names == ["dog"]
    assert (d.tracker_id == -1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"xyxy": np.zeros((2, 4)), "confidence": np.zeros(3), "class_id": np.zeros(2)},
            "confidence has 3 rows",
        ),
        (
            {"xyxy": np.zeros((2, 4)), "confidence": np.zeros(2), "class_id": np.zeros(1)},
            "class_id has 1 rows",
        ),
        (
            {
                "xyxy": np.zeros((1, 4)),
                "confidence": np.zeros(1),
                "class_id": np.array([5]),
                "class_names": ("a",),
            },
            "out of range",
        ),
        (
            {
                "xyxy": np.array([[0, 0, np.nan, 1]]),
                "confidence": np.zeros(1),
                "class_id": np.zeros(1),
            },
            "NaN",
        ),
        (
            {
                "xyxy": np.zeros((1, 4)),
                "confidence": np.zeros(1),
                "class_id": np.zeros(1),
                "tracker_id": np.zeros(2),
            },
            "tracker_id has 2 rows",
        ),
    ],
)
def test_detections_shapes_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_empty_detections():
    d = Detections.empty(("car",))
    assert len(d) == 0 and d.xyxy.shape == (0, 4) and d.names == []
    assert len(Detections.concat([d, d])) == 0
