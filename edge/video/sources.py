"""Frame sources: video files, still images, and live cameras (RTSP/HTTP/USB).

Files are read at the camera's analysis fps using the video's own timestamps, so an
offline run is deterministic. Live cameras are read by a thread that keeps only the
newest frame (capture never waits for inference), reconnects with exponential
backoff, and reports a debounced online/offline state. Network cameras go through
FFmpeg; USB cameras (``usb:N`` or ``usb:/dev/…``) through V4L2.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict, Unpack

import cv2
import numpy as np

from edge.video import metrics
from microbrain.resources import USB_SCHEME, ResourceMissing, resolve_source, usb_device
from microbrain.site.cameras import Camera

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# recorded media carry no wall-clock time; runs are reproducible from this start
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
StateCallback = Callable[[bool, str, datetime], None]


class LiveOptions(TypedDict, total=False):
    """What a caller may tune of a :class:`LiveSource` (defaults: its constructor's)."""

    open_timeout_s: float
    read_timeout_s: float
    backoff_s: tuple[float, float]
    offline_after_s: float
    online_after_s: float


class SourceOptions(LiveOptions, total=False):
    """:class:`LiveOptions`, and how long a still image plays (``open_source``)."""

    still_duration_s: float


class SourceError(RuntimeError):
    """A camera source that cannot deliver frames; the message names the camera."""


class SourceTruncated(SourceError):
    """A video file that ended before its declared length (truncated or corrupt)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR, HxWx3
    ts: float  # seconds since the stream started (video time for files)
    time: datetime  # UTC time of the frame
    index: int  # frame number in the source


class FileSource:
    """A video file sampled at ``fps`` by its own timestamps."""

    def __init__(
        self, camera_id: str, path: str, fps: float, start: datetime | None = None
    ) -> None:
        self.camera_id, self.path, self.fps = camera_id, path, fps
        self.start = start or DEFAULT_START
        self.frames_read = 0
        self.frames_declared = 0

    def frames(self) -> Iterator[Frame]:
        if not Path(self.path).is_file():
            metrics.SOURCE_ERRORS.labels(self.camera_id, "open").inc()
            raise SourceError(f"camera {self.camera_id}: video file {self.path!r} does not exist")
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                metrics.SOURCE_ERRORS.labels(self.camera_id, "open").inc()
                raise SourceError(
                    f"camera {self.camera_id}: cannot open {self.path!r} (not a video, or corrupt)"
                )
            native_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.frames_declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            period, next_due = 1.0 / self.fps, 0.0
            tolerance = 0.5 / native_fps
            while cap.grab():
                self.frames_read += 1
                ts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if ts <= 0 and self.frames_read > 1:
                    ts = (self.frames_read - 1) / native_fps
                if ts + tolerance < next_due:
                    continue  # decode only the frames we analyse
                ok, image = cap.retrieve()
                if not ok or image is None:
                    metrics.SOURCE_ERRORS.labels(self.camera_id, "bad_frame").inc()
                    continue
                while next_due <= ts + tolerance:
                    next_due += period
                yield Frame(image, ts, self.start + timedelta(seconds=ts), self.frames_read - 1)
        finally:
            cap.release()
        if self.frames_read == 0:
            metrics.SOURCE_ERRORS.labels(self.camera_id, "no_frames").inc()
            raise SourceError(
                f"camera {self.camera_id}: {self.path!r} has no readable frames (corrupt?)"
            )
        if self.frames_declared and self.frames_read < 0.98 * self.frames_declared:
            metrics.SOURCE_ERRORS.labels(self.camera_id, "truncated").inc()
            raise SourceTruncated(
                f"camera {self.camera_id}: {self.path!r} ended at frame "
                f"{self.frames_read} of {self.frames_declared} "
                "(truncated or corrupt)"
            )


class ImageSource:
    """A still image held as a stream of ``duration_s`` seconds at ``fps``."""

    def __init__(
        self,
        camera_id: str,
        path: str,
        fps: float,
        duration_s: float,
        start: datetime | None = None,
    ) -> None:
        self.camera_id, self.path, self.fps, self.duration_s = camera_id, path, fps, duration_s
        self.start = start or DEFAULT_START

    def frames(self) -> Iterator[Frame]:
        image = cv2.imread(self.path, cv2.IMREAD_COLOR)
        if image is None:
            metrics.SOURCE_ERRORS.labels(self.camera_id, "open").inc()
            raise SourceError(f"camera {self.camera_id}: cannot read image {self.path!r}")
        for i in range(int(self.duration_s * self.fps) + 1):
            ts = i / self.fps
            yield Frame(image, ts, self.start + timedelta(seconds=ts), i)


class LiveSource:
    """A camera read by a background thread; ``frames()`` yields the newest frame at
    ``fps`` and calls ``on_state(online, reason, when)`` on debounced state changes."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        fps: float,
        on_state: StateCallback | None = None,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        offline_after_s: float = 10.0,
        online_after_s: float = 1.0,
    ) -> None:
        self.camera_id, self.url, self.fps = camera_id, url, fps
        try:
            self.device = usb_device(url)
        except ValueError as err:
            raise SourceError(f"camera {camera_id}: {err}") from None
        self.on_state = on_state
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_s = backoff_s
        self.offline_after_s, self.online_after_s = offline_after_s, online_after_s
        self.online: bool | None = None
        self.last_error = ""
        self.reconnects = 0
        self._lock = threading.Condition()
        self._newest: tuple[np.ndarray, float, int] | None = None  # image, monotonic, number
        self._streak_start: float | None = None  # first frame of the current unbroken run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> cv2.VideoCapture:
        if self.device is not None:
            # no timeout parameters: V4L2 cannot apply them, and OpenCV refuses to open
            # a capture whose backend cannot apply a parameter it was given (a V4L2 read
            # waits up to OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT, 10 s by default)
            return cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _cannot_open(self) -> str:
        if self.device is None:
            return f"cannot connect to {self.url}"
        node = f"/dev/video{self.device}" if isinstance(self.device, int) else self.device
        if not os.path.exists(node):
            return f"cannot open USB camera {self.url} (no device {node}: unplugged?)"
        return f"cannot open USB camera {self.url} ({node} is there but is not a camera, or busy)"

    def _read_loop(self) -> None:
        delay = self.backoff_s[0]
        number = 0
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self.last_error = self._cannot_open()
                metrics.SOURCE_ERRORS.labels(self.camera_id, "connect").inc()
                log.warning(
                    "camera %s: %s; retrying in %.1fs", self.camera_id, self.last_error, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                self.reconnects += 1
                continue
            delay = self.backoff_s[0]
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    self.last_error = f"stream {self.url} stopped delivering frames"
                    metrics.SOURCE_ERRORS.labels(self.camera_id, "read").inc()
                    break
                number += 1
                now = time.monotonic()
                with self._lock:
                    previous = self._newest
                    if previous is None or now - previous[1] > self.offline_after_s / 2:
                        self._streak_start = now
                    self._newest = (image, now, number)
                    self._lock.notify_all()
            cap.release()
            self._stop.wait(delay)

    def _set_state(self, online: bool, reason: str) -> None:
        if self.online is online:
            return
        self.online = online
        metrics.CAMERA_ONLINE.labels(self.camera_id).set(1 if online else 0)
        log.warning("camera %s %s: %s", self.camera_id, "online" if online else "offline", reason)
        if self.on_state:
            self.on_state(online, reason, datetime.now(UTC))

    def frames(self) -> Iterator[Frame]:
        self._thread = threading.Thread(
            target=self._read_loop, name=f"camera-{self.camera_id}", daemon=True
        )
        self._thread.start()
        started = time.monotonic()
        period = 1.0 / self.fps
        last_number = 0
        next_due = started
        try:
            while not self._stop.is_set():
                with self._lock:
                    # before the next frame is due, sleep until it is; once due, sleep until a
                    # new frame arrives (notify) — never spin while the camera is silent
                    due_in = next_due - time.monotonic()
                    self._lock.wait(timeout=due_in if due_in > 0 else period)
                    newest, streak = self._newest, self._streak_start
                now = time.monotonic()
                age = now - newest[1] if newest else now - started
                if age > self.offline_after_s:
                    self._set_state(False, self.last_error or f"no frame for {age:.0f}s")
                elif newest and streak is not None and now - streak >= self.online_after_s:
                    self._set_state(True, "frames flowing")
                if now < next_due or newest is None or newest[2] == last_number:
                    continue
                next_due = max(next_due + period, now)
                last_number = newest[2]
                yield Frame(newest[0], now - started, datetime.now(UTC), newest[2])
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()


def open_source(
    camera: Camera,
    base: Path | None = None,
    start: datetime | None = None,
    still_duration_s: float = 30.0,
    on_state: StateCallback | None = None,
    **live_options: Unpack[LiveOptions],
) -> FileSource | ImageSource | LiveSource:
    """The frame source for a camera's ``source`` (``sample:NAME``, a file, or a URL)."""
    try:
        where = resolve_source(camera.source, base)
    except ResourceMissing as err:
        raise SourceError(f"camera {camera.id}: {err}") from None
    if "://" in where or where.startswith(USB_SCHEME):
        return LiveSource(camera.id, where, camera.fps, on_state, **live_options)
    if Path(where).suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(camera.id, where, camera.fps, still_duration_s, start)
    return FileSource(camera.id, where, camera.fps, start)
