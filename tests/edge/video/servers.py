"""Local stand-ins for cameras: a port that refuses, one that stalls, an HTTP server
that serves a real video file (FFmpeg reads it like a network camera), and a real RTSP
camera (GStreamer's RTSP server) that can be stopped and started again."""

from __future__ import annotations

import contextlib
import functools
import http.server
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2

from tests.utils.services import end_process

# Debian's python3, which has GObject introspection for GStreamer (the venv has not)
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good"


def closed_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def stalling_server() -> Iterator[int]:
    """Accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[int]:
    """Serves ``directory`` over HTTP on a free port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):
            super().handle()


def mjpeg_copy(video: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``video`` as an MJPEG AVI at its own frame rate, for
    :class:`RtspCamera`: the samples are MPEG-4 part 2, which Debian's GStreamer decodes
    only with gstreamer1.0-libav; JPEG it decodes with plugins-good."""
    src = cv2.VideoCapture(str(video))
    fps = src.get(cv2.CAP_PROP_FPS) or 10.0
    size = int(src.get(cv2.CAP_PROP_FRAME_WIDTH)), int(src.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(out), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    try:
        for _ in range(frames):
            ok, image = src.read()
            if not ok:
                break
            writer.write(image)
    finally:
        writer.release()
        src.release()
    return out


class RtspCamera:
    """GStreamer's RTSP server playing ``video`` (an MJPEG AVI: :func:`mjpeg_copy`) at
    rtsp://127.0.0.1:PORT/cam, each client from the start at the file's frame rate.

    Runs ``rtsp_camera.py`` under Debian's python3; fails with the packages to install
    when GStreamer's RTSP server is missing. ``stop()`` then ``start()`` brings it back
    on the same port, as a camera that rebooted."""

    def __init__(self, video: Path, log: Path, mount: str = "/cam") -> None:
        self.video, self.log, self.mount = video, log, mount
        self.port = 0  # 0 until the first start picks a free port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 10.0) -> RtspCamera:
        script = Path(__file__).with_name("rtsp_camera.py")
        if not Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(f"{SYSTEM_PYTHON} is missing: apt-get install {RTSP_PACKAGES}")
        with self.log.open("a") as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(script), str(self.port), self.mount, str(self.video)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            tail = " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
            raise RuntimeError(
                f"the RTSP camera did not start within {timeout:g} s "
                f"({tail or 'no log'}); it needs: apt-get install {RTSP_PACKAGES}"
            )
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        end_process(self.proc, timeout=5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


@contextlib.contextmanager
def rtsp_camera(video: Path, log: Path) -> Iterator[RtspCamera]:
    """A started :class:`RtspCamera`, stopped afterwards whatever the test did to it."""
    camera = RtspCamera(video, log).start()
    try:
        yield camera
    finally:
        camera.stop()
