"""Several cameras on one gateway: a broken one is marked offline, the rest run on."""

from __future__ import annotations

import threading

from edge.video.detectors import load_detector
from edge.video.pipeline import CAMERA_OFFLINE
from edge.video.runner import VideoGateway
from microbrain.protocol.payloads import Event, EventState
from microbrain.site.cameras import Camera
from tests.edge.video.servers import closed_port

GARDEN = {"id": "garden", "polygon": [[0, 0], [768, 0], [768, 576], [0, 576]],
          "rules": [{"type": "unleashed_dog", "dwell_s": 5}]}


def test_a_broken_camera_goes_offline_and_the_others_keep_running():
    good = Camera.model_validate({"id": "cam-good", "source": "sample:dog.jpg", "fps": 2, "zones": [GARDEN]})
    refusing = Camera(id="cam-refusing", source=f"rtsp://127.0.0.1:{closed_port()}/live", fps=5)
    too_small = Camera.model_validate({  # person.jpg is 640×424: the zone does not fit
        "id": "cam-misdrawn", "source": "sample:person.jpg", "fps": 2, "zones": [GARDEN]})
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    gateway = VideoGateway([good, refusing, too_small], load_detector(), emit,
                           open_timeout_s=1.0, backoff_s=(0.1, 0.5), offline_after_s=1.0)
    gateway.start()
    gateway.workers[0].join(30)
    gateway.workers[2].join(30)
    deadline = threading.Event()
    for _ in range(50):
        if gateway.workers[1].online is False:
            break
        deadline.wait(0.1)
    state = gateway.cameras_state()
    gateway.stop()

    by_camera = {}
    for e in events:
        by_camera.setdefault(e.source, []).append(e)
    assert [e.kind for e in by_camera["cam-good"]] == ["unleashed_dog"]
    offline = by_camera["cam-refusing"]
    assert [(e.kind, e.state) for e in offline] == [(CAMERA_OFFLINE, EventState.RAISED)]
    misdrawn = by_camera["cam-misdrawn"]
    assert [(e.kind, e.state) for e in misdrawn] == [(CAMERA_OFFLINE, EventState.RAISED)]
    assert "camera cam-misdrawn: zone garden" in misdrawn[0].message
    assert state == {"cam-good": "online", "cam-refusing": "offline", "cam-misdrawn": "offline"}
    assert gateway.workers[2].error and "640×424" in gateway.workers[2].error


def test_a_recording_plays_in_real_time_from_now_and_loops(sample_media):  # type: ignore[no-untyped-def]
    """How `microbrain up` uses sample media as cameras: wall-clock times, looping, video
    time running on across loops."""
    from datetime import UTC, datetime

    from edge.video.runner import CameraWorker, Playback

    camera = Camera.model_validate({"id": "cam-still", "source": "sample:dog.jpg", "fps": 4, "zones": []})
    worker = CameraWorker(camera, load_detector(), lambda e: None, playback=Playback(realtime=True, loop=True),
                          still_duration_s=0.5)
    began = datetime.now(UTC)
    frames = []
    for frame in worker._frames():
        frames.append(frame)
        if len(frames) == 6:  # two loops of a 0.5 s still at 4 fps
            worker.stop()
    elapsed = (datetime.now(UTC) - began).total_seconds()
    times = [f.ts for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)  # video time runs on
    assert elapsed >= times[-1] - 0.05  # paced, not as fast as it decodes
    assert abs((frames[0].time - began).total_seconds()) < 1.0  # stamped from now


def test_a_camera_that_fails_still_sends_the_events_waiting_for_their_clip(sample_media, tmp_path):  # type: ignore[no-untyped-def]
    """The dog is raised, its clip waits 30 s for the after-part, then the frames shrink so
    the zone no longer fits (CameraError): the RAISED still goes out, before the offline."""
    from datetime import UTC, datetime, timedelta

    import cv2

    from edge.video.evidence import EvidenceStore
    from edge.video.runner import CameraWorker
    from edge.video.sources import Frame

    camera = Camera.model_validate({"id": "cam-dog", "source": "sample:dog.jpg", "fps": 2,
                                    "clip_seconds": 30, "zones": [GARDEN]})
    image = cv2.imread(str(sample_media("dog.jpg")))
    t0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    class ShrinkingCamera(CameraWorker):
        def _frames(self):  # type: ignore[no-untyped-def]
            for i in range(30):  # 15 s of the dog: raised after 5 s of dwell
                yield Frame(image, i * 0.5, t0 + timedelta(seconds=i * 0.5), i)
            yield Frame(cv2.resize(image, (320, 240)), 15.0, t0 + timedelta(seconds=15), 30)

    events: list[Event] = []
    worker = ShrinkingCamera(camera, load_detector(), events.append, EvidenceStore(tmp_path))
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and worker.error and "320×240" in worker.error
    assert [(e.kind, e.state) for e in events] == [
        ("unleashed_dog", EventState.RAISED), (CAMERA_OFFLINE, EventState.RAISED)]
    assert [e.kind.value for e in events[0].evidence] == ["snapshot", "clip"]
