"""The whole pipeline on real footage with the real default model; deterministic
because time comes from the video, never the wall clock."""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.video.detectors import load_detector
from edge.video.evidence import EvidenceStore
from edge.video.pipeline import CameraError, CameraPipeline
from edge.video.sources import DEFAULT_START, Frame, open_source
from microbrain.protocol.payloads import Event, EventState
from microbrain.site.cameras import Camera
from microbrain.site.loader import load_camera

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "cameras"


@pytest.fixture(scope="module")
def detector():
    return load_detector()


def run(
    camera: Camera, detector, evidence: Path | None = None, duration: float = 20.0
) -> tuple[list[Event], CameraPipeline]:
    events: list[Event] = []
    pipeline = CameraPipeline(
        camera, detector, events.append, EvidenceStore(evidence) if evidence else None
    )
    for frame in open_source(camera, still_duration_s=duration).frames():
        pipeline.process(frame)
    pipeline.finish()
    return events, pipeline


def raised(events: list[Event], kind: str | None = None, zone: str | None = None) -> list[Event]:
    return [
        e
        for e in events
        if e.state is EventState.RAISED
        and (kind is None or e.kind == kind)
        and (zone is None or e.zone == zone)
    ]


def test_vtest_van_in_the_fire_lane_raises_exactly_one_parking_event(detector, tmp_path):
    camera = load_camera(CONFIGS / "vtest-fire-lane.yaml")
    events, pipeline = run(camera, detector, tmp_path)
    van = raised(events, "illegal_parking", "fire-lane")
    assert len(van) == 1, [(e.kind, e.zone, e.state) for e in events]
    event = van[0]
    assert event.dwell_s is not None and event.frame_ts is not None
    assert event.object_class in ("car", "truck") and event.dwell_s >= 20
    assert (event.frame_ts - DEFAULT_START).total_seconds() >= 20
    assert event.seq == 0 and event.model is not None and event.source == "cam-fire-lane"
    assert raised(events, zone="lawn") == []
    assert pipeline.stats.frames >= 75
    # the evidence is on disk and its hash is the one the event carries
    (snapshot,) = event.evidence
    data = (tmp_path / snapshot.name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256 and len(data) == snapshot.bytes
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (576, 768, 3)


def test_dog_alone_in_dog_jpg_raises_an_unleashed_dog_event(detector):
    events, _ = run(load_camera(CONFIGS / "dog-courtyard.yaml"), detector)
    dogs = raised(events, "unleashed_dog")
    assert len(dogs) == 1 and dogs[0].object_class == "dog"
    assert dogs[0].dwell_s is not None and dogs[0].dwell_s >= 10


def test_dog_beside_its_owner_in_person_jpg_raises_nothing(detector):
    events, pipeline = run(load_camera(CONFIGS / "person-courtyard.yaml"), detector)
    assert events == [] and pipeline.stats.detector_calls >= 2


@pytest.mark.parametrize(
    "config, zone, expected",
    [
        ("motorcycle-stairwell.yaml", None, 1),
        (
            "motorcycle-stairwell.yaml",
            [[0, 0], [120, 0], [120, 80], [0, 80]],
            0,
        ),  # a corner, no bike
        # the road bicycle under the stairwell-door zone: not an e-bike, nothing raised
        ("dog-courtyard.yaml", None, 0),
        ("dog-courtyard.yaml", [[600, 400], [760, 400], [760, 570], [600, 570]], 0),
    ],
)
def test_two_wheeler_in_a_no_charging_zone(detector, config, zone, expected):
    camera = load_camera(CONFIGS / config)
    if zone is not None:
        zones = [
            z.model_copy(update={"polygon": tuple(map(tuple, zone))})
            for z in camera.zones
            if any(r.type == "ebike_charging" for r in z.rules)
        ]
        camera = camera.model_copy(update={"zones": tuple(zones)})
    events, _ = run(camera, detector)
    charging = raised(events, "ebike_charging")
    assert len(charging) == expected
    if charging:
        assert charging[0].object_class == "ebike"  # the second stage's verdict
        assert charging[0].detail["cable_touching"] is False  # COCO has no cable class


def test_bikes_mp4_scene_cuts_make_no_phantoms(detector):
    camera = Camera.model_validate(
        {
            "id": "cam-street",
            "source": "sample:bikes.mp4",
            "fps": 5,
            "zones": [
                {
                    "id": "all",
                    "polygon": [[0, 0], [640, 0], [640, 272], [0, 272]],
                    "rules": [
                        {"type": "illegal_parking", "dwell_s": 5},
                        {"type": "ebike_charging", "dwell_s": 3},
                        {
                            "type": "object_in_zone",
                            "kind": "seen",
                            "classes": ["car", "bicycle"],
                            "dwell_s": 1,
                        },
                    ],
                }
            ],
        }
    )
    events, pipeline = run(camera, detector)
    assert pipeline.stats.scene_cuts >= 5
    # every shot is shorter than 3 s: an event needing 3 s of presence would be a phantom
    assert raised(events, "illegal_parking") == [] and raised(events, "ebike_charging") == []
    # what is seen for a second within one shot is raised once and cleared at the cut
    seen = [e for e in events if e.kind == "seen"]
    assert raised(seen) and len(seen) == 2 * len(raised(seen))


def _frame(image: np.ndarray, ts: float, i: int) -> Frame:
    from datetime import timedelta

    return Frame(image, ts, DEFAULT_START + timedelta(seconds=ts), i)


def test_frames_of_changing_size_reset_tracks_without_crashing(detector, sample_media):
    camera = load_camera(CONFIGS / "dog-courtyard.yaml").model_copy(update={"frame_size": None})
    image = cv2.imread(str(sample_media("dog.jpg")))
    assert image is not None
    bigger = cv2.resize(image, (800, 600))
    pipeline = CameraPipeline(camera, detector)
    for i in range(12):
        pipeline.process(_frame(image if (i // 3) % 2 == 0 else bigger, i * 0.5, i))
    assert pipeline.stats.size_changes == 3
    smaller = cv2.resize(image, (320, 240))
    with pytest.raises(
        CameraError, match=r"camera cam-courtyard: zone garden: point .* 320×240 frame"
    ):
        pipeline.process(_frame(smaller, 7.0, 13))


def test_clip_evidence_holds_seconds_before_and_after(detector, tmp_path):
    camera = load_camera(CONFIGS / "dog-courtyard.yaml").model_copy(update={"clip_seconds": 2})
    events, _ = run(camera, detector, tmp_path, duration=14)
    dog = raised(events, "unleashed_dog")[0]
    kinds = [e.kind.value for e in dog.evidence]
    assert kinds == ["snapshot", "clip"]
    clip = tmp_path / dog.evidence[1].name
    cap = cv2.VideoCapture(str(clip))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 8  # 2 s before + 2 s after at 2 fps
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == dog.evidence[1].sha256


def test_events_leave_in_order_while_a_raised_waits_for_its_clip(detector, tmp_path, sample_media):
    """A CLEARED (and a camera state change) inside the clip window of its RAISED is held
    behind it, so the outbox stamps the RAISED first."""
    camera = load_camera(CONFIGS / "dog-courtyard.yaml").model_copy(
        update={"clip_seconds": 4, "frame_size": None}
    )
    events: list[Event] = []
    pipeline = CameraPipeline(camera, detector, events.append, EvidenceStore(tmp_path))
    image = cv2.imread(str(sample_media("dog.jpg")))
    assert image is not None
    i = 0
    while "unleashed_dog" not in pipeline.active_kinds():
        pipeline.process(_frame(image, i * 0.5, i))
        i += 1
        assert i < 40, "the dog was never raised"
    assert raised(events, "unleashed_dog") == []  # waiting for the after-part of its clip
    # a size change resets the tracks: the violation clears within the clip window
    pipeline.process(_frame(cv2.resize(image, (800, 600)), i * 0.5, i))
    pipeline.camera_state(False, "test", DEFAULT_START)
    assert events == []  # held behind the RAISED, not sent ahead of it
    pipeline.finish()
    dog = [(e.state, e.kind) for e in events if e.kind in ("unleashed_dog", "camera_offline")]
    assert dog == [
        (EventState.RAISED, "unleashed_dog"),
        (EventState.CLEARED, "unleashed_dog"),
        (EventState.RAISED, "camera_offline"),
    ], [(e.kind, e.state) for e in events]
    assert [e.kind.value for e in raised(events, "unleashed_dog")[0].evidence] == [
        "snapshot",
        "clip",
    ]


def test_motion_gating_skips_detector_runs_but_not_events(detector):
    from edge.video.pipeline import PipelineOptions

    camera = load_camera(CONFIGS / "vtest-fire-lane.yaml").model_copy(update={"fps": 2})
    frames = []
    for frame in open_source(camera).frames():
        frames.append(frame)
        if len(frames) == 50:  # 25 s: past the 20 s dwell
            break
    outcome = {}
    for gated in (False, True):
        events: list[Event] = []
        pipeline = CameraPipeline(
            camera, detector, events.append, options=PipelineOptions(motion_gate=gated)
        )
        for frame in frames:
            pipeline.process(frame)
        outcome[gated] = (
            [(e.kind, e.zone, e.state) for e in events],
            pipeline.stats.detector_calls,
        )
    assert (
        outcome[True][0]
        == outcome[False][0]
        == [("illegal_parking", "fire-lane", EventState.RAISED)]
    )
    assert outcome[False][1] == 50 and outcome[True][1] < 0.85 * 50


def test_people_crossing_a_tripwire_in_vtest(detector):
    camera = Camera.model_validate(
        {
            "id": "cam-plaza",
            "source": "sample:vtest.avi",
            "fps": 3,
            "lines": [
                {
                    "id": "mid",
                    "kind": "person_crossing",
                    "points": [[384, 0], [384, 576]],
                    "direction": "both",
                    "classes": ["person"],
                }
            ],
        }
    )
    events: list[Event] = []
    pipeline = CameraPipeline(camera, detector, events.append)
    for frame in open_source(camera).frames():
        pipeline.process(frame)
        if frame.ts > 30:
            break
    assert len(events) >= 2
    assert {e.kind for e in events} == {"person_crossing"} and {e.object_class for e in events} == {
        "person"
    }
    assert {e.detail["direction"] for e in events} <= {"in", "out"}
    # one walker crossing once is one event, not a burst from a jittery box
    per_track: dict[int | None, list[datetime]] = {}
    for e in events:
        assert e.frame_ts is not None  # a video event carries the time of its frame
        per_track.setdefault(e.track_id, []).append(e.frame_ts)
    for times in per_track.values():
        assert all((b - a).total_seconds() >= 2 for a, b in itertools.pairwise(times))
    # the tripwire keeps no state for walkers the tracker has dropped
    ((_, line),) = pipeline._lines
    assert set(line._last) <= pipeline._tracker.track_ids()


def test_recheck_sees_what_is_raised_now(detector):
    """A cloud recheck asks the pipeline whether the condition is still there."""
    camera = load_camera(CONFIGS / "dog-courtyard.yaml")
    pipeline = CameraPipeline(camera, detector)
    assert pipeline.active_kinds() == set()
    for frame in open_source(camera, still_duration_s=15).frames():
        pipeline.process(frame)
    zone = camera.zones[0].id
    assert pipeline.active_kinds(zone) == {"unleashed_dog"}
    # the road bicycle is not an e-bike: nothing stands raised by the stairwell door
    assert pipeline.active_kinds("stairwell-door") == set()
    assert pipeline.active_kinds("no-such-zone") == set()
    pipeline.finish()  # the stream ended; the dog did not leave: still raised
    assert pipeline.active_kinds() == {"unleashed_dog"}
