"""Several cameras on one gateway: a broken one is marked offline, the rest run on."""

from __future__ import annotations

import threading

from edge.video.detectors import load_detector
from edge.video.pipeline import CAMERA_OFFLINE
from edge.video.runner import VideoGateway
from microbrain.protocol.payloads import Event, EventState
from microbrain.site.cameras import Camera
from tests.edge.video.servers import closed_port, mjpeg_copy, rtsp_camera

GARDEN = {
    "id": "garden",
    "polygon": [[0, 0], [768, 0], [768, 576], [0, 576]],
    "rules": [{"type": "unleashed_dog", "dwell_s": 5}],
}


def test_a_broken_camera_goes_offline_and_the_others_keep_running():
    good = Camera.model_validate(
        {"id": "cam-good", "source": "sample:dog.jpg", "fps": 2, "zones": [GARDEN]}
    )
    refusing = Camera(id="cam-refusing", source=f"rtsp://127.0.0.1:{closed_port()}/live", fps=5)
    too_small = Camera.model_validate(
        {  # person.jpg is 640×424: the zone does not fit
            "id": "cam-misdrawn",
            "source": "sample:person.jpg",
            "fps": 2,
            "zones": [GARDEN],
        }
    )
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    gateway = VideoGateway(
        [good, refusing, too_small],
        load_detector(),
        emit,
        open_timeout_s=1.0,
        backoff_s=(0.1, 0.5),
        offline_after_s=1.0,
    )
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

    by_camera: dict[str, list[Event]] = {}
    for e in events:
        by_camera.setdefault(e.source, []).append(e)
    assert [e.kind for e in by_camera["cam-good"]] == ["unleashed_dog"]
    offline = by_camera["cam-refusing"]
    assert [(e.kind, e.state) for e in offline] == [(CAMERA_OFFLINE, EventState.RAISED)]
    misdrawn = by_camera["cam-misdrawn"]
    assert [(e.kind, e.state) for e in misdrawn] == [(CAMERA_OFFLINE, EventState.RAISED)]
    message = misdrawn[0].message
    assert message is not None and "camera cam-misdrawn: zone garden" in message
    assert state == {"cam-good": "online", "cam-refusing": "offline", "cam-misdrawn": "offline"}
    assert gateway.workers[2].error and "640×424" in gateway.workers[2].error


def test_a_recording_plays_in_real_time_from_now_and_loops(sample_media):
    """How `microbrain up` uses sample media as cameras: wall-clock times, looping, video
    time running on across loops."""
    from datetime import UTC, datetime, timedelta

    from edge.video.runner import CameraWorker, Playback

    camera = Camera.model_validate(
        {"id": "cam-still", "source": "sample:dog.jpg", "fps": 4, "zones": []}
    )
    worker = CameraWorker(
        camera,
        load_detector(),
        lambda e: None,
        playback=Playback(realtime=True, loop=True),
        still_duration_s=0.5,
    )
    began = datetime.now(UTC)
    frames = []
    first_seen = None
    for frame in worker._frames():
        frames.append(frame)
        first_seen = first_seen or datetime.now(UTC)
        if len(frames) == 6:  # two loops of a 0.5 s still at 4 fps
            worker.stop()
    elapsed = (datetime.now(UTC) - began).total_seconds()
    times = [f.ts for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)  # video time runs on
    assert elapsed >= times[-1] - 0.05  # paced, not as fast as it decodes
    # stamped from now: between the start and its arrival, however long decoding took
    assert first_seen is not None
    assert began - timedelta(milliseconds=50) <= frames[0].time <= first_seen


def test_a_camera_that_fails_still_sends_the_events_waiting_for_their_clip(sample_media, tmp_path):
    """The dog is raised, its clip waits 30 s for the after-part, then the frames shrink so
    the zone no longer fits (CameraError): the RAISED still goes out, before the offline."""
    from datetime import UTC, datetime, timedelta

    import cv2
    import numpy as np

    from edge.video.evidence import EvidenceStore
    from edge.video.runner import CameraWorker
    from edge.video.sources import Frame

    camera = Camera.model_validate(
        {
            "id": "cam-dog",
            "source": "sample:dog.jpg",
            "fps": 2,
            "clip_seconds": 30,
            "zones": [GARDEN],
        }
    )
    image = cv2.imread(str(sample_media("dog.jpg")))
    assert image is not None
    dog: np.ndarray = image  # the narrowed type, for the generator below
    t0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    class ShrinkingCamera(CameraWorker):
        def _frames(self):
            for i in range(30):  # 15 s of the dog: raised after 5 s of dwell
                yield Frame(dog, i * 0.5, t0 + timedelta(seconds=i * 0.5), i)
            yield Frame(cv2.resize(dog, (320, 240)), 15.0, t0 + timedelta(seconds=15), 30)

    events: list[Event] = []
    worker = ShrinkingCamera(camera, load_detector(), events.append, EvidenceStore(tmp_path))
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and worker.error and "320×240" in worker.error
    assert [(e.kind, e.state) for e in events] == [
        ("unleashed_dog", EventState.RAISED),
        (CAMERA_OFFLINE, EventState.RAISED),
    ]
    assert [e.kind.value for e in events[0].evidence] == ["snapshot", "clip"]


def test_an_rtsp_camera_that_stops_goes_offline_and_comes_back_while_the_other_runs_on(
    tmp_path, sample_media
):
    """A real RTSP camera (GStreamer's server) beside a still played in real time: the
    camera stops, one offline event names it and why, the still is analysed all along;
    the camera comes back on its port and the offline is cleared."""
    import time

    from edge.video.runner import Playback

    video = mjpeg_copy(sample_media("vtest.avi"), tmp_path / "vtest.avi", 200)
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    def wait(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(condition())

    with rtsp_camera(video, tmp_path / "rtsp.log") as rtsp:
        url = rtsp.url
        gate = Camera(id="cam-gate", source=url, fps=5)
        still = Camera(id="cam-still", source="sample:dog.jpg", fps=2)
        # offline_after_s above the ~2 s FFmpeg takes to open an RTSP stream
        gateway = VideoGateway(
            [gate, still],
            load_detector(),
            emit,
            playback=Playback(realtime=True, loop=True),
            open_timeout_s=5.0,
            read_timeout_s=2.0,
            backoff_s=(0.2, 1.0),
            offline_after_s=3.0,
            online_after_s=0.3,
            still_duration_s=1.0,
        )
        gate_worker, still_worker = gateway.workers
        gateway.start()
        try:
            assert wait(lambda: gate_worker.online is True, 15), events
            frames_before = gate_worker.pipeline.stats.frames
            assert frames_before > 0

            rtsp.stop()
            assert wait(lambda: gate_worker.online is False, 10), events
            still_frames = still_worker.pipeline.stats.frames
            gate_frames = gate_worker.pipeline.stats.frames
            time.sleep(1.5)
            assert gateway.cameras_state() == {"cam-gate": "offline", "cam-still": "online"}
            assert still_worker.pipeline.stats.frames >= still_frames + 2  # 2 fps, on and on
            assert gate_worker.pipeline.stats.frames == gate_frames

            rtsp.start()  # back on the same port, as after a reboot
            assert wait(lambda: gate_worker.online is True, 15), events
            assert wait(lambda: gate_worker.pipeline.stats.frames > gate_frames, 5)
        finally:
            gateway.stop()
    assert gateway.cameras_state()["cam-gate"] == "online"
    gate_events = [(e.kind, e.state, e.message) for e in events if e.source == "cam-gate"]
    assert gate_events == [
        (CAMERA_OFFLINE, EventState.CLEARED, "camera cam-gate back online: frames flowing"),
        (CAMERA_OFFLINE, EventState.RAISED, f"camera cam-gate offline: cannot connect to {url}"),
        (CAMERA_OFFLINE, EventState.CLEARED, "camera cam-gate back online: frames flowing"),
    ]
    assert gate_worker.error is None and still_worker.error is None
