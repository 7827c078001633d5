"""Frame sources on real files and real sockets, including the hostile ones."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from edge.video.sources import (
    FileSource,
    ImageSource,
    LiveSource,
    SourceError,
    SourceTruncated,
    open_source,
)
from microbrain.site.cameras import Camera
from tests.edge.video.servers import closed_port, file_server, stalling_server


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
    with pytest.raises(SourceError, match="camera cam-bad:.*broken.avi"):
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
    with pytest.raises(SourceTruncated, match=r"camera cam-cut: .*truncated.avi.* ended at frame \d+ of 795"):
        for frame in source.frames():
            frames.append(frame)
    assert 50 < len(frames) < 795 / 5  # about a third of 40 s at 2 fps


def test_missing_sample_or_file_names_the_camera(tmp_path):
    cam = Camera(id="cam-missing", source=str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="camera cam-missing: video file .*nope.mp4.* does not exist"):
        list(open_source(cam).frames())


def _consume(source: LiveSource, seconds: float) -> list:
    frames: list = []

    def read() -> None:
        for frame in source.frames():
            frames.append(frame)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(seconds)
    source.stop()
    thread.join(5)
    assert not thread.is_alive()
    return frames


def test_refusing_camera_goes_offline_with_the_reason():
    states = []
    url = f"http://127.0.0.1:{closed_port()}/stream.mjpg"
    source = LiveSource("cam-door", url, fps=5, on_state=lambda *s: states.append(s),
                        open_timeout_s=1, backoff_s=(0.1, 0.4), offline_after_s=1.0)
    cpu = time.process_time()
    frames = _consume(source, 2.0)
    assert time.process_time() - cpu < 0.6, "a silent camera must not spin the CPU"
    assert frames == []
    assert [s[0] for s in states] == [False]
    assert "cannot connect" in states[0][1] and url in states[0][1]
    assert source.reconnects >= 2  # it kept trying, with backoff


def test_stalling_camera_goes_offline():
    states = []
    with stalling_server() as port:
        source = LiveSource("cam-stall", f"http://127.0.0.1:{port}/video", fps=5,
                            on_state=lambda *s: states.append(s), open_timeout_s=1, read_timeout_s=1,
                            backoff_s=(0.1, 0.2), offline_after_s=1.5)
        frames = _consume(source, 3.0)
    assert frames == [] and [s[0] for s in states] == [False]


def test_network_camera_comes_online_and_newest_frame_wins(tmp_path, sample_media):
    shutil.copy(sample_media("vtest.avi"), tmp_path / "cam.avi")
    states = []
    with file_server(tmp_path) as port:
        source = LiveSource("cam-http", f"http://127.0.0.1:{port}/cam.avi", fps=5,
                            on_state=lambda *s: states.append(s), offline_after_s=2.0, online_after_s=0.2)
        frames = _consume(source, 2.5)
    assert states and states[0][0] is True
    # the reader decodes far faster than 5 fps: the consumer sees only the newest frames
    assert 3 <= len(frames) <= 14
    numbers = [f.index for f in frames]
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] > len(frames)
