"""Evidence clips as WebM/VP8 from real footage: OpenCV decodes every frame back, frames
wider than the budget's width are scaled down, a clip over its byte budget is not kept
(nothing left on disk), and no frames is no clip. (The console's test plays one in
Chromium: tests/cloud/console/test_detail.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.video.clips import (
    CONTENT_TYPE,
    ClipBudget,
    ClipWriter,
    HeldFrame,
    bit_rate,
    write_webm,
)
from edge.video.evidence import EvidenceStore, FrameRing


def _footage(sample_media: Any, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_media("vtest.avi")))
    frames = [frame for ok, frame in (cap.read() for _ in range(n)) if ok]
    cap.release()
    assert len(frames) == n
    return frames


def _decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_a_clip_of_real_footage_decodes_frame_for_frame(sample_media: Any, tmp_path: Path) -> None:
    frames = _footage(sample_media, 40)
    store = EvidenceStore(tmp_path)
    ref = store.clip("cam-1-ev-1", frames, fps=10.0)
    assert ref is not None
    assert ref.content_type == CONTENT_TYPE == "video/webm"
    assert ref.name == "cam-1-ev-1.webm"
    path = tmp_path / ref.name
    assert path.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML
    decoded = _decoded(path)
    assert len(decoded) == 40
    assert decoded[0].shape == frames[0].shape
    # lossy, but the scene is there: the mean absolute difference is small
    assert float(np.mean(cv2.absdiff(decoded[20], frames[20]))) < 12.0
    assert ref.bytes == path.stat().st_size <= ClipBudget().max_bytes


def test_wide_frames_are_scaled_to_the_budget_and_odd_sizes_made_even(
    sample_media: Any, tmp_path: Path
) -> None:
    wide = [cv2.resize(f, (1921, 1441)) for f in _footage(sample_media, 10)]
    path = tmp_path / "wide.webm"
    assert write_webm(path, wide, 5.0, ClipBudget(max_width=640))
    (first, *_) = _decoded(path)
    assert first.shape[:2] == (480, 640)  # 1441 * 640/1921 = 480.1 → 480


def test_a_clip_over_its_budget_is_not_kept(sample_media: Any, tmp_path: Path) -> None:
    frames = _footage(sample_media, 30)
    path = tmp_path / "big.webm"
    assert not write_webm(path, frames, 10.0, ClipBudget(max_bytes=2_000, min_bit_rate=150_000))
    assert not path.exists()


def test_no_frames_no_clip_and_frames_of_another_size_are_left_out(
    sample_media: Any, tmp_path: Path
) -> None:
    assert EvidenceStore(tmp_path).clip("none", [], fps=5.0) is None
    frames = _footage(sample_media, 12)
    frames[5] = cv2.resize(frames[5], (320, 240))  # the camera changed size mid-clip
    path = tmp_path / "mixed.webm"
    assert write_webm(path, frames, 5.0)
    assert len(_decoded(path)) == 11


def test_the_bit_rate_follows_the_budget_and_the_clip_length() -> None:
    budget = ClipBudget(max_bytes=1_000_000, min_bit_rate=100_000)
    assert bit_rate(100, 10.0, budget) == int(1_000_000 * 8 * 0.9 / 10)
    assert bit_rate(200, 10.0, budget) == bit_rate(100, 10.0, budget) // 2
    assert bit_rate(10_000, 10.0, budget) == 100_000  # never below the floor


def test_the_writer_spreads_the_encoding_over_the_frames_that_come(
    sample_media: Any, tmp_path: Path
) -> None:
    """As the pipeline uses it: the before-part queued at once, then each new frame added
    with two encoded; at the end nothing (or almost nothing) is left for close()."""
    frames = _footage(sample_media, 40)
    writer = ClipWriter(tmp_path / "spread.webm", 10.0, expected_frames=40)
    for image in frames[:20]:  # the ring's before-part
        writer.add(image)
    assert writer.written == 0  # queueing costs no encoding
    for image in frames[20:]:
        writer.add(image)
        writer.step(2)
        assert writer.queued == 20 - (writer.written // 2)  # one of the backlog per frame
    assert writer.queued == 0 and writer.written == 40
    assert writer.close()
    assert len(_decoded(tmp_path / "spread.webm")) == 40


def test_a_ring_holds_its_frames_as_jpeg_and_their_clip_is_the_same_scene(
    sample_media: Any, tmp_path: Path
) -> None:
    """The before-part of a clip is held JPEG-encoded (a camera's largest memory when
    raw); a clip from the held frames, mixed with raw after-part frames as the pipeline
    adds them, decodes to the same scene, and a held frame of another size is left out."""
    frames = _footage(sample_media, 30)
    ring = FrameRing(seconds=2.0)
    for i, image in enumerate(frames[:20]):
        ring.push(i / 5, image)
    held = ring.frames()
    assert len(held) == 11  # 2 s at 5 fps, both ends
    raw_bytes = sum(f.nbytes for f in frames[9:20])
    assert ring.held_bytes * 8 < raw_bytes  # measured: about a twelfth
    assert all(isinstance(f, HeldFrame) for f in held)
    writer = ClipWriter(tmp_path / "held.webm", 5.0, expected_frames=21)
    for frame in held:
        writer.add(frame)
    other = HeldFrame.encode(cv2.resize(frames[0], (320, 240)))
    assert other is not None
    writer.add(other)  # the camera changed size: left out, as a raw frame would be
    for image in frames[20:]:
        writer.add(image)
        writer.step(2)
    assert writer.close()
    decoded = _decoded(tmp_path / "held.webm")
    assert len(decoded) == 21 and decoded[0].shape == frames[0].shape
    assert float(np.mean(cv2.absdiff(decoded[5], frames[14]))) < 12.0
    assert float(np.mean(cv2.absdiff(decoded[15], frames[24]))) < 12.0


def test_no_ring_without_clips() -> None:
    ring = FrameRing(seconds=0)
    ring.push(0.0, np.zeros((576, 768, 3), np.uint8))
    assert ring.frames() == [] and ring.held_bytes == 0
