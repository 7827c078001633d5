"""Frame sources on real files and real sockets, including the hostile ones."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import pytest

from edge.video import metrics
from edge.video.sources import (
    FileSource,
    ImageSource,
    LiveSource,
    SourceError,
    SourceTruncated,
    open_source,
)
from microbrain.site.cameras import Camera
from tests.edge.video.servers import (
    closed_port,
    file_server,
    mjpeg_copy,
    rtsp_camera,
    stalling_server,
)


def test_file_is_sampled_at_the_analysis_fps_by_its_own_timestamps(sample_media):
    source = FileSource("cam-a", str(sample_media("vtest.avi")), fps=2)
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 6:
            break
    assert [round(f.ts, 3) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]  # vtest.avi is 10 fps
    assert frames[0].image.shape == (576, 768, 3)


def test_image_is_a_still_stream(sample_media):
    frames = list(ImageSource("cam-a", str(sample_media("dog.jpg")), fps=2, duration_s=3).frames())
    assert [f.ts for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert frames[0].image is frames[-1].image


@pytest.mark.parametrize("content", [b"", b"RIFF" + bytes(5000), bytes(range(256)) * 100])
def test_corrupt_video_names_the_camera(tmp_path, content):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(content)
    with pytest.raises(SourceError, match=r"camera cam-bad:.*broken.avi"):
        list(FileSource("cam-bad", str(bad), fps=5).frames())


def test_unreadable_image_names_the_camera(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(SourceError, match="camera cam-img: cannot read image"):
        list(ImageSource("cam-img", str(bad), fps=1, duration_s=1).frames())


def test_truncated_video_yields_what_it_has_then_says_so(tmp_path, sample_media):
    whole = sample_media("vtest.avi")
    cut = tmp_path / "truncated.avi"
    data = Path(whole).read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    source = FileSource("cam-cut", str(cut), fps=2)
    frames = []
    with pytest.raises(
        SourceTruncated, match=r"camera cam-cut: .*truncated.avi.* ended at frame \d+ of 795"
    ):
        for frame in source.frames():
            frames.append(frame)
    assert 50 < len(frames) < 795 / 5  # about a third of 40 s at 2 fps


def test_missing_sample_or_file_names_the_camera(tmp_path):
    cam = Camera(id="cam-missing", source=str(tmp_path / "nope.mp4"))
    with pytest.raises(
        SourceError, match=r"camera cam-missing: video file .*nope.mp4.* does not exist"
    ):
        list(open_source(cam).frames())


def _consume(
    source: LiveSource,
    seconds: float,
    until: Callable[[list], bool] | None = None,
    deadline_s: float = 30.0,
) -> list:
    """Read ``source`` for ``seconds``, then on until ``until(frames)`` holds (polled, at most
    ``deadline_s``): what must have happened is waited for, not assumed done in time."""
    frames: list = []

    def read() -> None:
        for frame in source.frames():
            frames.append(frame)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(seconds)
    deadline = time.monotonic() + deadline_s
    while until is not None and not until(frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    source.stop()
    thread.join(5)
    assert not thread.is_alive()
    return frames


def test_refusing_camera_goes_offline_with_the_reason():
    states = []
    url = f"http://127.0.0.1:{closed_port()}/stream.mjpg"
    source = LiveSource(
        "cam-door",
        url,
        fps=5,
        on_state=lambda *s: states.append(s),
        open_timeout_s=1,
        backoff_s=(0.1, 0.4),
        offline_after_s=1.0,
    )
    cpu, wall = time.process_time(), time.monotonic()
    frames = _consume(source, 2.0, lambda _: bool(states) and source.reconnects >= 2)
    assert time.process_time() - cpu < 0.3 * (time.monotonic() - wall), (
        "a silent camera must not spin the CPU"
    )
    assert frames == []
    assert [s[0] for s in states] == [False]
    assert "cannot connect" in states[0][1] and url in states[0][1]
    assert source.reconnects >= 2  # it kept trying, with backoff


def test_stalling_camera_goes_offline():
    states = []
    with stalling_server() as port:
        source = LiveSource(
            "cam-stall",
            f"http://127.0.0.1:{port}/video",
            fps=5,
            on_state=lambda *s: states.append(s),
            open_timeout_s=1,
            read_timeout_s=1,
            backoff_s=(0.1, 0.2),
            offline_after_s=1.5,
        )
        frames = _consume(source, 3.0, lambda _: bool(states))
    assert frames == [] and [s[0] for s in states] == [False]


def test_network_camera_comes_online_and_newest_frame_wins(tmp_path, sample_media):
    shutil.copy(sample_media("vtest.avi"), tmp_path / "cam.avi")
    states = []
    with file_server(tmp_path) as port:
        source = LiveSource(
            "cam-http",
            f"http://127.0.0.1:{port}/cam.avi",
            fps=5,
            on_state=lambda *s: states.append(s),
            offline_after_s=2.0,
            online_after_s=0.2,
        )
        began = time.monotonic()
        frames = _consume(source, 2.5, lambda f: len(f) >= 3)
        took = time.monotonic() - began
    assert states and states[0][0] is True
    # the reader decodes far faster than 5 fps: the consumer sees only the newest frames,
    # at most 5 a second however long it read
    assert 3 <= len(frames) <= 5 * took + 2
    numbers = [f.index for f in frames]
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] > len(frames)


# -- USB: no camera device here (v4l2loopback needs a kernel module), so what is tested
# is the camera that is not there: named, offline, counted, retried without spinning


def _absent_video_node() -> int:
    return next(n for n in range(64) if not Path(f"/dev/video{n}").exists())


@pytest.mark.parametrize("form", ["index", "path", "not a camera"])
def test_usb_camera_that_cannot_open_goes_offline_naming_it_without_spinning(form, caplog):
    caplog.set_level(logging.WARNING, logger="edge.video.sources")
    n = _absent_video_node()
    where, why = {
        "index": (f"usb:{n}", f"no device /dev/video{n}: unplugged?"),
        "path": (f"usb:/dev/video{n}", f"no device /dev/video{n}: unplugged?"),
        "not a camera": ("usb:/dev/null", "/dev/null is there but is not a camera, or busy"),
    }[form]
    camera = Camera(id=f"cam-usb-{form.replace(' ', '-')}", source=where, fps=5)
    connect_errors = metrics.SOURCE_ERRORS.labels(camera.id, "connect")._value.get()
    states = []
    source = open_source(
        camera, on_state=lambda *s: states.append(s), backoff_s=(0.1, 0.4), offline_after_s=1.0
    )
    assert isinstance(source, LiveSource)
    cpu, wall = time.process_time(), time.monotonic()
    frames = _consume(source, 2.0, lambda _: bool(states) and source.reconnects >= 2)
    assert time.process_time() - cpu < 0.3 * (time.monotonic() - wall), (
        "a missing camera must not spin the CPU"
    )
    assert frames == []
    assert [(s[0], s[1]) for s in states] == [(False, f"cannot open USB camera {where} ({why})")]
    assert source.reconnects >= 2  # it kept trying, with backoff
    assert metrics.SOURCE_ERRORS.labels(camera.id, "connect")._value.get() >= connect_errors + 2
    assert metrics.CAMERA_ONLINE.labels(camera.id)._value.get() == 0
    assert f"camera {camera.id} offline: cannot open USB camera {where} ({why})" in caplog.messages


@pytest.mark.parametrize("where", ["usb:front-door", "usb:", "usb:/tmp/cam.avi"])
def test_usb_source_that_names_no_device_is_refused_naming_the_camera(where):
    with pytest.raises(
        SourceError, match=rf"camera cam-usb: '{where}' is not a USB camera: write usb:N"
    ):
        open_source(Camera(id="cam-usb", source=where, fps=5))


# -- RTSP: GStreamer's RTSP server, Debian's packages (tests/edge/video/rtsp_camera.py) --

RTSP_FRAMES = 200  # 20 s of vtest.avi: each connection plays it from the start


@pytest.fixture(scope="module")
def rtsp_video(tmp_path_factory, sample_media) -> Path:
    return mjpeg_copy(
        sample_media("vtest.avi"), tmp_path_factory.mktemp("rtsp") / "vtest.avi", RTSP_FRAMES
    )


@pytest.fixture(scope="module")
def vtest_thumbs(sample_media) -> list[np.ndarray]:
    """vtest.avi's frames, small and grey, to tell which one a camera sent."""
    cap = cv2.VideoCapture(str(sample_media("vtest.avi")))
    thumbs = []
    for _ in range(RTSP_FRAMES):
        ok, image = cap.read()
        assert ok
        thumbs.append(_thumb(image))
    cap.release()
    return thumbs


def _thumb(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (192, 144), interpolation=cv2.INTER_AREA)


def _closest(image: np.ndarray, thumbs: list[np.ndarray]) -> tuple[int, float]:
    """(index, mean absolute difference) of the sample frame ``image`` is nearest to."""
    diffs = [float(cv2.absdiff(_thumb(image), t).mean()) for t in thumbs]
    best = int(np.argmin(diffs))
    return best, diffs[best]


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class _Reader:
    """Consumes a live source in a thread, recording frames and state changes."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.frames: list = []
        self.states: list[tuple[bool, str, float]] = []  # online, reason, monotonic time
        source.on_state = lambda online, reason, when: self.states.append(
            (online, reason, time.monotonic())
        )
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        for frame in self.source.frames():
            self.frames.append(frame)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the live source did not stop"


def test_rtsp_camera_delivers_the_sample_videos_frames_in_order(tmp_path, rtsp_video, vtest_thumbs):
    with rtsp_camera(rtsp_video, tmp_path / "rtsp.log") as camera:
        source = LiveSource(
            "cam-rtsp",
            camera.url,
            fps=5,
            open_timeout_s=5,
            read_timeout_s=2,
            offline_after_s=3.0,
            online_after_s=0.3,
        )
        with _Reader(source) as reader:
            assert _wait(lambda: len(reader.frames) >= 8, 15), (reader.states, source.last_error)
    assert [s[0] for s in reader.states] == [True]
    assert source.online is True and source.reconnects == 0
    assert metrics.CAMERA_ONLINE.labels("cam-rtsp")._value.get() == 1
    for frame in reader.frames:
        assert frame.image.shape == (576, 768, 3)
        # decoded for real: the frame is the sample's frame of the same number (the source
        # counts from 1), not a neighbour, not noise (a broken decode is ~80 off)
        index, diff = _closest(frame.image, vtest_thumbs)
        assert index == frame.index - 1 and diff < 4, (frame.index, index, diff)
    # 10 fps camera read at 5 fps: the newest frame wins, about every second one
    numbers = [f.index for f in reader.frames]
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] >= len(numbers)


def test_rtsp_camera_goes_offline_when_it_stops_and_online_when_it_is_back(
    tmp_path, rtsp_video, vtest_thumbs, caplog
):
    caplog.set_level(logging.WARNING, logger="edge.video.sources")
    # offline_after_s above the ~2 s FFmpeg takes to open an RTSP stream (it probes it)
    with rtsp_camera(rtsp_video, tmp_path / "rtsp.log") as camera:
        url = camera.url
        source = LiveSource(
            "cam-gate",
            url,
            fps=5,
            open_timeout_s=5,
            read_timeout_s=2,
            backoff_s=(0.2, 1.0),
            offline_after_s=3.0,
            online_after_s=0.3,
        )
        connect_errors = metrics.SOURCE_ERRORS.labels("cam-gate", "connect")._value.get()
        with _Reader(source) as reader:
            assert _wait(lambda: source.online is True, 15), (reader.states, source.last_error)

            camera.stop()
            stopped = time.monotonic()
            assert _wait(lambda: source.online is False, 10), reader.states
            frames_when_offline = len(reader.frames)
            time.sleep(1.5)  # reconnects keep failing: one offline, not one per attempt
            assert [s[0] for s in reader.states] == [True, False]
            assert len(reader.frames) == frames_when_offline
            offline = reader.states[1]
            # debounced: not before offline_after_s without a frame
            assert offline[2] - stopped >= 3.0 - 0.3
            assert offline[1] == f"cannot connect to {url}"  # the latest of its reconnects
            assert metrics.CAMERA_ONLINE.labels("cam-gate")._value.get() == 0
            assert metrics.SOURCE_ERRORS.labels("cam-gate", "connect")._value.get() > connect_errors
            assert source.reconnects >= 2

            camera.start()  # the same port, as a camera back from a reboot
            assert _wait(lambda: source.online is True, 15), (reader.states, source.last_error)
            assert _wait(lambda: len(reader.frames) >= frames_when_offline + 3, 5)
    assert [s[0] for s in reader.states] == [True, False, True]
    assert reader.states[2][1] == "frames flowing"
    assert metrics.CAMERA_ONLINE.labels("cam-gate")._value.get() == 1
    # after the reconnect the camera's stream starts over: real frames of the sample again
    for frame in reader.frames[frames_when_offline:]:
        assert _closest(frame.image, vtest_thumbs)[1] < 4
    messages = [r.getMessage() for r in caplog.records]
    assert f"camera cam-gate offline: cannot connect to {url}" in messages
    assert "camera cam-gate online: frames flowing" in messages
