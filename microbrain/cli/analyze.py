"""`microbrain edge analyze`: run the video pipeline offline on a file, print events."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer

from microbrain.cli.errors import fail


class DetectorType(StrEnum):
    opencv_tf = "opencv_tf"
    onnx_yolo = "onnx_yolo"


def analyze(
    media: str = typer.Argument(
        ..., metavar="VIDEO_OR_IMAGE", help="video or image file, or sample:NAME (bundled media)"
    ),
    camera: Path = typer.Option(..., "--camera", help="camera YAML: zones, lines and rules"),
    json_lines: bool = typer.Option(False, "--json", help="print events as JSON lines"),
    evidence: Path | None = typer.Option(None, "--evidence", help="write evidence files here"),
    detector: DetectorType = typer.Option(
        DetectorType.opencv_tf, "--detector", help="detector backend"
    ),
    model: Path | None = typer.Option(None, "--model", help="model file (onnx_yolo needs one)"),
    threads: int = typer.Option(2, "--threads", min=1, max=64, help="detector threads"),
    fps: float | None = typer.Option(
        None, "--fps", min=0.1, max=30, help="override the camera's analysis fps"
    ),
    duration: float = typer.Option(
        30.0,
        "--duration",
        min=0.1,
        max=86_400,
        help="an image is held as a still stream this many seconds",
    ),
    start: datetime | None = typer.Option(
        None,
        "--start",
        help="wall time of the first frame (ISO, UTC if no zone); default 2026-01-01T00:00Z",
    ),
    timezone: str = typer.Option(
        "Asia/Shanghai", "--timezone", help="site timezone for night schedules"
    ),
    no_motion_gate: bool = typer.Option(
        False, "--no-motion-gate", help="run the detector on every frame"
    ),
    no_crops: bool = typer.Option(
        False,
        "--no-crops",
        help="a dynamic-shape YOLO looks at the whole frame, "
        "not only at crops around the zones (to compare the two)",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
) -> None:
    """Run the whole pipeline at full speed on a recording; deterministic (video time).

    Example:  microbrain edge analyze sample:vtest.avi
    --camera configs/cameras/vtest-fire-lane.yaml --json

    Events print as JSON lines on stdout (a summary without --json); a progress bar
    goes to stderr. An image is analysed as a still stream of --duration seconds.
    """
    from rich.console import Console
    from rich.progress import Progress

    from edge.video.detectors import DetectorError, load_detector
    from edge.video.evidence import EvidenceStore
    from edge.video.pipeline import CameraError, CameraPipeline, PipelineOptions
    from edge.video.sources import FileSource, LiveSource, SourceError, SourceTruncated, open_source
    from microbrain.protocol.payloads import Event
    from microbrain.site.cameras import DetectorConfig
    from microbrain.site.loader import SiteError, load_camera

    try:
        cam = load_camera(camera)
    except SiteError as err:
        fail(str(err))
    updates: dict[str, object] = {"source": media}
    if fps is not None:
        updates["fps"] = fps
    cam = cam.model_copy(update=updates)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown timezone {timezone!r}")
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        config = DetectorConfig(
            type=detector.value, model=str(model) if model else None, threads=threads
        )
        net = load_detector(config)
    except DetectorError as err:
        fail(str(err))
    store = EvidenceStore(evidence) if evidence else None

    def emit(event: Event) -> None:
        if json_lines:
            typer.echo(event.to_json().decode())
        else:
            typer.echo(
                f"{event.frame_ts or event.ts:%H:%M:%S} {event.kind} {event.state.value} "
                f"zone={event.zone} track={event.track_id} {event.object_class or ''} "
                f"dwell={event.dwell_s}s {event.message or ''}"
            )

    options = PipelineOptions(
        motion_gate=not no_motion_gate, crop_to_zones=not no_crops, timezone=timezone
    )
    try:  # a second stage the rules need and cannot load fails here, naming the fix
        pipeline = CameraPipeline(cam, net, emit, store, options)
    except CameraError as err:
        fail(str(err))
    try:
        source = open_source(cam, Path.cwd(), start, duration)
    except SourceError as err:
        fail(str(err))
    if isinstance(source, LiveSource):
        fail(
            f"camera {cam.id}: analyze takes a file or an image; "
            "live URLs run under 'microbrain edge run'"
        )
    total = None
    if isinstance(source, FileSource):
        import cv2

        cap = cv2.VideoCapture(source.path)
        native, frames = cap.get(cv2.CAP_PROP_FPS) or 25.0, cap.get(cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        total = int(frames / native * cam.fps) + 1 if frames > 0 else None
    else:
        total = int(duration * cam.fps) + 1
    console = Console(stderr=True)
    code = 0
    try:
        with Progress(console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task(f"{cam.id}", total=total)
            for frame in source.frames():
                pipeline.process(frame)
                bar.advance(task)
    except SourceTruncated as err:
        console.print(
            f"warning: {err}; analysed what was readable", style="yellow", highlight=False
        )
        code = 1
    except (SourceError, CameraError, DetectorError) as err:
        fail(str(err))
    pipeline.finish()
    s = pipeline.stats
    console.print(
        f"{cam.id}: {s.frames} frames analysed, {s.detector_calls} detector runs, "
        f"{s.events} events",
        highlight=False,
    )
    if code:
        raise typer.Exit(code)
