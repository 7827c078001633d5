"""Run several cameras on one gateway: a thread per camera, one shared detector.

A camera that fails (cannot connect, zone outside its frames, corrupt file) is marked
offline with an event naming it; the other cameras keep running.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from edge.video import metrics
from edge.video.detectors import Detector, DetectorError
from edge.video.evidence import EvidenceStore
from edge.video.pipeline import CameraError, CameraPipeline, Emit, PipelineOptions
from edge.video.sources import LiveSource, SourceError, open_source
from microbrain.site.cameras import Camera

log = logging.getLogger(__name__)


class CameraWorker(threading.Thread):
    """One camera's source → pipeline loop, in its own thread."""

    def __init__(self, camera: Camera, detector: Detector, emit: Emit, evidence: EvidenceStore | None = None,
                 base: Path | None = None, options: PipelineOptions | None = None,
                 **live_options: float) -> None:
        super().__init__(name=f"camera-{camera.id}", daemon=True)
        self.camera = camera
        self.pipeline = CameraPipeline(camera, detector, emit, evidence, options)
        self.base = base
        self.live_options = live_options
        self.error: str | None = None
        self.online: bool | None = None
        self._halt = threading.Event()
        self._source = None

    def _on_state(self, online: bool, reason: str, when: datetime) -> None:
        self.online = online
        self.pipeline.camera_state(online, reason, when)

    def run(self) -> None:
        try:
            self._source = open_source(self.camera, self.base, on_state=self._on_state, **self.live_options)
            for frame in self._source.frames():
                if self._halt.is_set():
                    break
                if self.online is None and not isinstance(self._source, LiveSource):
                    self.online = True
                self.pipeline.process(frame)
            self.pipeline.finish()
        except (SourceError, CameraError, DetectorError) as err:
            self._fail(str(err), type(err).__name__)
        except Exception as err:  # one camera's bug must not take the gateway down
            log.exception("camera %s stopped", self.camera.id)
            self._fail(f"camera {self.camera.id}: {type(err).__name__}: {err}", "crash")

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

    def __init__(self, cameras: list[Camera], detector: Detector, emit: Emit,
                 evidence: EvidenceStore | None = None, base: Path | None = None,
                 options: PipelineOptions | None = None, **live_options: float) -> None:
        self.workers = [CameraWorker(c, detector, emit, evidence, base, options, **live_options) for c in cameras]

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

    def cameras_state(self) -> dict[str, str]:
        return {w.camera.id: "online" if w.online else "offline" for w in self.workers}
