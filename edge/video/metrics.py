"""Prometheus counters for the video pipeline (one place, so names never drift)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FRAMES_ANALYSED = Counter(
    "mb_edge_frames_analysed_total", "Frames that reached the pipeline", ["camera"]
)
DETECTOR_CALLS = Counter("mb_edge_detector_calls_total", "Frames the detector ran on", ["camera"])
EVENTS = Counter("mb_edge_events_total", "Events raised or cleared", ["camera", "kind", "state"])
SOURCE_ERRORS = Counter(
    "mb_edge_source_errors_total",
    "Camera sources that failed to open, stalled, ended early or gave bad frames",
    ["camera", "reason"],
)
FRAME_SIZE_CHANGES = Counter(
    "mb_edge_frame_size_changes_total", "Frames whose size differs from the last", ["camera"]
)
SCENE_CUTS = Counter("mb_edge_scene_cuts_total", "Scene cuts that reset the tracker", ["camera"])
CAMERA_ONLINE = Gauge("mb_edge_camera_online", "1 while the camera delivers frames", ["camera"])
PIPELINE_ERRORS = Counter(
    "mb_edge_pipeline_errors_total", "Cameras stopped by an error", ["camera", "reason"]
)
