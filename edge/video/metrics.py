"""Prometheus counters for the video pipeline (one place, so names never drift)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
TWO_WHEELER_LOOKS = Counter(
    "mb_edge_two_wheeler_looks_total",
    "Two-wheeler crops the e-bike classifier looked at, by the track's verdict after it",
    ["camera", "verdict"],
)
TWO_WHEELER_SKIPPED = Counter(
    "mb_edge_two_wheeler_skipped_total",
    "Two-wheeler looks skipped (crop too small to classify)",
    ["camera", "reason"],
)
TWO_WHEELER_SECONDS = Histogram(
    "mb_edge_two_wheeler_seconds",
    "Time of one e-bike classifier run on one crop",
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32),
)
