"""Evidence clips as WebM/VP8 from real footage: OpenCV decodes every frame back, frames
wider than the budget's width are scaled down, a clip over its byte budget is not kept
(nothing left on disk), and no frames is no clip. (The console's test plays one in
Chromium: tests/cloud/console/test_detail.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.video.clips import CONTENT_TYPE, ClipBudget, ClipWriter, bit_rate, write_webm
from edge.video.evidence import EvidenceStore


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
