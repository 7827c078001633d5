"""Run several cameras on one gateway: a thread per camera, one shared detector.

A camera that fails (cannot connect, zone outside its frames, corrupt file) is marked
offline with an event naming it; the other cameras keep running.

A recording (a file or an image) can stand in for a live camera — in demos, drills and
`microbrain up`: with :class:`Playback` ``realtime`` it is played at its own pace from
the moment it starts (frames carry wall-clock times), and with ``loop`` it starts over
when it ends, its video time running on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Unpack

from edge.video import metrics
from edge.video.detectors import Detector, DetectorError
from edge.video.evidence import EvidenceStore
from edge.video.pipeline import CameraError, CameraPipeline, Emit, PipelineOptions
from edge.video.sources import (
    FileSource,
    Frame,
    ImageSource,
    LiveSource,
    SourceError,
    SourceOptions,
    open_source,
)
from microbrain.protocol import CameraState
from microbrain.site.cameras import Camera

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Playback:
    """How a recording stands in for a camera; live sources ignore it."""

    realtime: bool = False  # pace frames by their video time, stamped from now
    loop: bool = False  # start over at the end


class CameraWorker(threading.Thread):
    """One camera's source → pipeline loop, in its own thread."""

    def __init__(
        self,
        camera: Camera,
        detector: Detector,
        emit: Emit,
        evidence: EvidenceStore | None = None,
        base: Path | None = None,
        options: PipelineOptions | None = None,
        playback: Playback = Playback(),
        **source_options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(name=f"camera-{camera.id}", daemon=True)
        self.playback = playback
        self.camera = camera
        self.pipeline = CameraPipeline(camera, detector, emit, evidence, options)
        self.base = base
        self.source_options = source_options
        self.error: str | None = None
        self.online: bool | None = None
        self._halt = threading.Event()
        self._source: FileSource | ImageSource | LiveSource | None = None
        # notified after each analysed frame (VideoGateway.wait_between_frames)
        self.frame_done: threading.Condition | None = None

    def _on_state(self, online: bool, reason: str, when: datetime) -> None:
        self.online = online
        self.pipeline.camera_state(online, reason, when)

    def _frames(self) -> Iterator[Frame]:
        """The source's frames; a recording played back as :class:`Playback` says."""
        start = datetime.now(UTC) if self.playback.realtime else None
        clock0 = time.monotonic()
        offset = 0.0  # video seconds played by earlier loops
        while not self._halt.is_set():
            when = start + timedelta(seconds=offset) if start is not None else None
            self._source = open_source(
                self.camera, self.base, start=when, on_state=self._on_state, **self.source_options
            )
            if isinstance(self._source, LiveSource):
                yield from self._source.frames()
                return
            last = None
            for frame in self._source.frames():
                due_in = clock0 + offset + frame.ts - time.monotonic()
                if self.playback.realtime and self._halt.wait(due_in):
                    return
                last = frame
                yield replace(frame, ts=frame.ts + offset) if offset else frame
            if not self.playback.loop or last is None:
                return
            offset += last.ts + 1.0 / self.camera.fps

    def run(self) -> None:
        try:
            for frame in self._frames():
                if self._halt.is_set():
                    break
                if self.online is None and not isinstance(self._source, LiveSource):
                    self.online = True
                self.pipeline.process(frame)
                if self.frame_done is not None:
                    with self.frame_done:
                        self.frame_done.notify_all()
        except (SourceError, CameraError, DetectorError) as err:
            self._fail(str(err), type(err).__name__)
        except Exception as err:  # one camera's bug must not take the gateway down
            log.exception("camera %s stopped", self.camera.id)
            self._fail(f"camera {self.camera.id}: {type(err).__name__}: {err}", "crash")
        finally:
            # RAISED events waiting for their clip (and what is queued behind them) go
            # out however the camera ended: a failed camera must not lose them
            try:
                self.pipeline.finish()
            except Exception:
                log.exception("camera %s: pending events could not be finished", self.camera.id)

    def _fail(self, message: str, reason: str) -> None:
        self.error = message
        log.error("%s", message)
        metrics.PIPELINE_ERRORS.labels(self.camera.id, reason).inc()
        if self.online is not False:
            self.online = False
            self.pipeline.camera_state(False, message, datetime.now(UTC))

    def stop(self) -> None:
        self._halt.set()
        if isinstance(self._source, LiveSource):
            self._source.stop()


class VideoGateway:
    """All cameras of one gateway; ``cameras_state()`` feeds the gateway's health report."""

    def __init__(
        self,
        cameras: list[Camera],
        detector: Detector,
        emit: Emit,
        evidence: EvidenceStore | None = None,
        base: Path | None = None,
        options: PipelineOptions | None = None,
        playback: Playback = Playback(),
        **source_options: Unpack[SourceOptions],
    ) -> None:
        self.workers = [
            CameraWorker(c, detector, emit, evidence, base, options, playback, **source_options)
            for c in cameras
        ]
        self._frame_done = threading.Condition()
        for worker in self.workers:
            worker.frame_done = self._frame_done

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        for worker in self.workers:
            worker.join(timeout)

    def active_kinds(self, camera_id: str, zone: str | None = None) -> set[str] | None:
        """Conditions raised on a camera right now; None if it is not one of ours."""
        for worker in self.workers:
            if worker.camera.id == camera_id:
                return worker.pipeline.active_kinds(zone)
        return None

    def wait_between_frames(self, timeout_s: float = 0.3) -> bool:
        """Block until a camera has just finished a frame (True) or ``timeout_s`` passed.
        Background work begun then (a new model's load, a smoke-test inference) runs in
        the gap before that camera's next frame instead of beside it."""
        with self._frame_done:
            return self._frame_done.wait(timeout_s)

    def swap_detector(self, detector: Detector) -> None:
        """Every camera runs ``detector`` from its next frame on (see
        :meth:`CameraPipeline.use_detector`); returns at once."""
        for worker in self.workers:
            worker.pipeline.use_detector(detector)

    def cameras_state(self) -> dict[str, CameraState]:
        return {w.camera.id: "online" if w.online else "offline" for w in self.workers}
