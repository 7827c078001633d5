"""Evidence clips a browser plays: VP8 in WebM, written with PyAV (FFmpeg's libvpx).

Motion-JPEG AVI, which every OpenCV build writes, plays in no browser, so the console's
``<video>`` showed nothing. WebM/VP8 plays in every current browser (Chromium, Firefox,
Safari 14.1+) and its codec is royalty-free (H.264 in MP4 would need x264, GPL, and a
patent licence in some places). OpenCV's own FFmpeg can write VP8 too, but sets neither
the bit rate (so no size budget) nor libvpx's realtime mode.

VP8 costs tens of milliseconds of CPU a frame (Motion-JPEG a few), so a clip is written
a few frames at a time while the camera's frames keep coming (:class:`ClipWriter`),
never all at once on the frame that completes it: that would stall the camera for
seconds.

A clip must fit ``max_bytes`` (the evidence upload's budget): the bit rate is set from
it and the clip's expected length, and frames wider than ``max_width`` are scaled down.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "video/webm"
SUFFIX = ".webm"
CODEC = "libvpx"  # VP8
# libvpx's fastest mode: a gateway box writes a clip while its cameras are analysed
REALTIME = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}


@dataclass(frozen=True, slots=True)
class ClipBudget:
    """How big a clip may get: bytes in all, and the widest frame kept."""

    max_bytes: int = 2_000_000
    max_width: int = 960
    min_bit_rate: int = 150_000  # below this VP8 turns a scene to mush: shorten the clip


DEFAULT_BUDGET = ClipBudget()

# JPEG quality of frames held for a clip's before-part: far above what the clip's VP8
# bit rate keeps, so the clip looks the same
HELD_QUALITY = 90


@dataclass(frozen=True, slots=True)
class HeldFrame:
    """A frame held JPEG-encoded until a clip needs it. A camera with clips keeps its last
    ``clip_seconds`` of frames for their before-part: raw, 30 s at 5 fps of 768×576 are
    190 MB (930 MB at 1080p) per camera; as JPEG (about 105 KB a vtest frame) 15 MB, for
    about 1 ms of one core a frame."""

    jpeg: bytes
    height: int
    width: int

    @classmethod
    def encode(cls, image: np.ndarray, quality: int = HELD_QUALITY) -> HeldFrame | None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            return None
        return cls(buf.tobytes(), int(image.shape[0]), int(image.shape[1]))

    def decode(self) -> np.ndarray | None:
        image = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        return image if image is not None and image.shape[:2] == (self.height, self.width) else None


def _even(n: int) -> int:
    return max(2, n - n % 2)  # VP8 in yuv420p wants even sides


def frame_size(w: int, h: int, max_width: int) -> tuple[int, int]:
    """The clip's (width, height) for frames of ``w`` × ``h``."""
    if w <= max_width:
        return _even(w), _even(h)
    return _even(max_width), _even(round(h * max_width / w))


def bit_rate(frames: int, fps: float, budget: ClipBudget) -> int:
    """Bits per second that keep ``frames`` at ``fps`` within the budget, with 10 % for
    the container and the encoder's overshoot."""
    seconds = max(frames / max(fps, 1.0), 0.5)
    return max(budget.min_bit_rate, int(budget.max_bytes * 8 * 0.9 / seconds))


class ClipWriter:
    """One clip, encoded a few frames at a time: :meth:`add` queues a frame, :meth:`step`
    encodes up to ``n`` queued ones, :meth:`close` encodes the rest and finishes the file.

    The first frame fixes the size; a frame of another size (the camera changed mid-clip)
    is left out. Any encoder failure is logged once and the clip is dropped: the event
    still goes out, with its snapshot.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        expected_frames: int,
        budget: ClipBudget = DEFAULT_BUDGET,
    ) -> None:
        self.path = path
        self.budget = budget
        self._rate = Fraction(round(max(fps, 1.0) * 1000), 1000)
        self._expected = max(1, expected_frames)
        self._queue: deque[np.ndarray | HeldFrame] = deque()
        self._source: tuple[int, int] | None = None  # (h, w) of the first frame
        self._size: tuple[int, int] = (0, 0)  # (w, h) written
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._failed = False
        self.written = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, image: np.ndarray | HeldFrame) -> None:
        """Queue a frame: a BGR image, or a :class:`HeldFrame` (decoded when encoded)."""
        if self._failed:
            return
        shape = (
            (image.height, image.width)
            if isinstance(image, HeldFrame)
            else (int(image.shape[0]), int(image.shape[1]))
        )
        if self._source is None:
            self._source = shape
        if shape == self._source:
            self._queue.append(image)

    def step(self, n: int) -> None:
        """Encode up to ``n`` queued frames."""
        while n > 0 and self._queue and not self._failed:
            self._encode(self._queue.popleft())
            n -= 1

    def _open(self) -> None:
        assert self._source is not None
        h, w = self._source
        self._size = frame_size(w, h, self.budget.max_width)
        container = av.open(str(self.path), mode="w", format="webm")
        stream = container.add_stream(CODEC, rate=self._rate)
        if not isinstance(stream, av.VideoStream):  # libvpx is a video encoder
            container.close()
            raise ValueError(f"{CODEC} gave a {type(stream).__name__}")
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate(self._expected, float(self._rate), self.budget)
        stream.options = dict(REALTIME)
        self._container, self._stream = container, stream

    def _encode(self, queued: np.ndarray | HeldFrame) -> None:
        image = queued.decode() if isinstance(queued, HeldFrame) else queued
        if image is None:
            log.warning("clip %s: a held frame did not decode; left out", self.path.name)
            return
        try:
            if self._container is None:
                self._open()
            assert self._container is not None and self._stream is not None
            w, h = self._size
            if (image.shape[1], image.shape[0]) != (w, h):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            # OpenCV's BGR → I420 is cheaper than FFmpeg's swscale from bgr24
            yuv = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), np.uint8)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            self._container.mux(self._stream.encode(frame))
            self.written += 1
        except (av.FFmpegError, OSError, ValueError) as err:
            self._fail(f"encoder failed: {err}")

    def _fail(self, why: str) -> None:
        if not self._failed:
            log.error("clip %s dropped: %s", self.path.name, why)
        self._failed = True
        self._queue.clear()
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):  # already failing
                self._container.close()
            self._container = None
        self.path.unlink(missing_ok=True)

    def close(self) -> bool:
        """Encode what is queued and finish the file; False (and no file) when there was
        nothing to write, the encoder failed, or the clip is over its byte budget."""
        self.step(len(self._queue))
        if self._failed:
            return False
        if self._container is None or self._stream is None:
            return False  # no frames
        try:
            self._container.mux(self._stream.encode(None))  # the encoder's last frames
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as err:
            self._container = None
            self._fail(f"could not finish: {err}")
            return False
        self._container = None
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size == 0 or size > self.budget.max_bytes:
            self._fail(
                f"{size} bytes, over its budget of {self.budget.max_bytes}; "
                "shorten the camera's clip_seconds"
            )
            return False
        return True


def write_webm(
    path: Path, frames: list[np.ndarray], fps: float, budget: ClipBudget = DEFAULT_BUDGET
) -> bool:
    """Write BGR ``frames`` to ``path`` at once (see :class:`ClipWriter`)."""
    writer = ClipWriter(path, fps, len(frames), budget)
    for image in frames:
        writer.add(image)
    return writer.close()
