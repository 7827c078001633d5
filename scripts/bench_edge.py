"""Benchmark the edge video pipeline on real footage with the default model.

Measures, side by side in one run:
  1. pipeline time per analysed frame ÷ raw detector inference on the same frames
     (ungated, so both run the detector on every frame; goal ≤ 1.15);
  2. motion gating on vtest.avi: detector calls ÷ frames analysed, and whether the
     gated and ungated runs raise identical events;
  3. capacity: how many cameras at 5 analysed fps one box sustains (live pacing,
     newest frame wins, shared detector), with CPU and resident memory per camera;
  3b. the same with the second stage on (``second_stage_*``): each camera's lawn also
     has an ``ebike_charging`` rule watching ``ebike``, so bicycle and motorcycle tracks
     go through the two-wheeler classifier; the scene is vtest.avi with two mopeds cut
     out of motorcycle_left.png and composited by models/scenes.py (one rides onto the
     lawn and stands there 24 s, one crosses the street). After a warm-up (the motion
     gate's background, the detector's second network), 1..6 cameras (--quick: 4), each
     level run with the detector as it is now (``parallel``: one single-threaded network
     per core, calls side by side) and, in turns, as it was (``previous``: one network,
     two threads, calls in line), so the gain is a ratio measured in the same run;
  3c. the gateway agent's own resident memory (full run only): a real
     ``edge.agent.GatewayAgent`` in a subprocess with a private Mosquitto, 1 and then 4
     such cameras playing made scenes at their own pace (decoding included), RSS after
     a warm-up; ``rss_mb_per_camera_agent`` = (RSS with 4 − RSS with 1) / 3. The frames
     this benchmark decodes ahead into lists (``bench_decoded_frames_mb``) are its own
     memory, not a gateway's;
  4. optional (--yolo-onnx, --ultralytics-python): our pipeline on an ultralytics YOLO
     ONNX export vs ultralytics' own ``YOLO(model).track()`` on the same video and the
     same file, frames per second each. Ultralytics runs in its own environment (it
     needs torch, which the gateway never installs): a venv with torch==2.14.1
     torchvision==0.29.1 ultralytics onnx onnxslim lap. Build the model with
     scripts/build_bench_yolo.py (a yolov8n trained on vtest, exported with dynamic
     shapes; add --imgsz 640 for ultralytics' default size): both sides then see vtest in
     its own aspect at the exported size, and ours can look at zone crops only.
     Figures: ``ours_ungated`` is the like-for-like one (the whole frame, every frame);
     ``ours_gated_whole_frame`` adds the motion gate; ``*_zones`` are a camera with two
     zones, a fire lane and a walkway, where ours looks only at their crops (and, gated,
     only when something moves there): less work for the same rules, against
     ultralytics watching the whole frame. ``yolo_crops_versus_whole_frame`` checks that
     crops raise the same events as the whole frame on all of vtest.

Usage: .venv/bin/python scripts/bench_edge.py [--quick] [--yolo-onnx M.onnx --ultralytics-python PY]
The last line printed is one JSON object of figures. On a shared machine compare the
ratios (``*_over_previous``), and run it more than once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import cv2
import psutil
import yaml

from edge.video.detectors import Detector, load_detector
from edge.video.detectors.opencv_tf import OpenCVTensorFlowDetector
from edge.video.pipeline import CameraPipeline, PipelineOptions
from edge.video.sources import DEFAULT_START, FileSource, Frame
from microbrain.broker.embedded import MosquittoBroker, free_port
from microbrain.protocol.payloads import Event
from microbrain.resources import default_model, sample
from microbrain.site.cameras import Camera, DetectorConfig
from microbrain.site.loader import load_camera
from models.scenes import SPRITE_SOURCES, K, Placement, Scene, cut_out, render

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "configs" / "cameras" / "vtest-fire-lane.yaml"
DEMO_SITE = ROOT / "configs" / "demo" / "site.yaml"


def decoded_frames(fps: float, limit: int | None = None) -> list[Frame]:
    frames = []
    for frame in FileSource("bench", str(sample("vtest.avi")), fps).frames():
        frames.append(frame)
        if limit and len(frames) >= limit:
            break
    return frames


def overhead(detector, frames: list[Frame]) -> dict:
    """Raw detector forward vs the whole (ungated) pipeline, interleaved frame by frame."""
    camera = load_camera(CAMERA)
    pipeline = CameraPipeline(camera, detector, options=PipelineOptions(motion_gate=False))
    raw, whole = [], []
    for i, frame in enumerate(frames):
        # alternate which goes first, so neither always finds the caches warm
        for job in (0, 1) if i % 2 == 0 else (1, 0):
            t = time.perf_counter()
            if job == 0:
                detector.forward(frame.image)
                raw.append(time.perf_counter() - t)
            else:
                pipeline.process(frame)
                whole.append(time.perf_counter() - t)
    return {
        "raw_detector_ms_median": round(statistics.median(raw) * 1000, 2),
        "pipeline_ms_median": round(statistics.median(whole) * 1000, 2),
        "pipeline_over_raw_detector": round(sum(whole) / sum(raw), 3),
        "overhead_frames": len(frames),
    }


def gating(detector, frames: list[Frame]) -> dict:
    """The same frames through a gated and an ungated pipeline."""
    out = {}
    runs = {}
    for gated in (False, True):
        events: list[Event] = []
        pipeline = CameraPipeline(
            load_camera(CAMERA), detector, events.append, options=PipelineOptions(motion_gate=gated)
        )
        t, cpu = time.perf_counter(), time.process_time()
        for frame in frames:
            pipeline.process(frame)
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
        runs[gated] = [
            (e.kind, e.zone, e.state.value, round((e.frame_ts - DEFAULT_START).total_seconds()))
            for e in events
        ]
        key = "gated" if gated else "ungated"
        calls_per_frame = pipeline.stats.detector_calls / len(frames)
        out[f"{key}_detector_calls_per_frame"] = round(calls_per_frame, 3)
        out[f"{key}_ms_per_frame"] = round(elapsed / len(frames) * 1000, 2)
        out[f"{key}_cpu_ms_per_frame"] = round(cpu / len(frames) * 1000, 2)
        out[f"{key}_events"] = len(events)
    out["gating_frames"] = len(frames)
    out["gated_events_identical_to_ungated"] = [r[:3] for r in runs[True]] == [
        r[:3] for r in runs[False]
    ]
    out["gated_event_times_s"] = [r[3] for r in runs[True]]
    out["ungated_event_times_s"] = [r[3] for r in runs[False]]
    return out


def _camera_loop(
    pipeline: CameraPipeline,
    frames: list[Frame],
    fps: float,
    seconds: float,
    counts: list[int],
    idx: int,
    offset: float,
    warmup: float = 0.0,
    frame_ms: list[float] | None = None,
) -> None:
    """A live camera at ``fps``: each tick takes the frame that is due now (newest wins);
    a tick missed because analysis was busy is a dropped frame. Frames of the first
    ``warmup`` seconds are analysed but not counted (``seconds`` follow them); the
    counted frames' analysis times go to ``frame_ms`` (over the period: a frame dropped)."""
    period = 1.0 / fps
    start = time.perf_counter() + offset
    end = start + warmup + seconds
    first_counted = round(warmup * fps)
    n_done = 0
    last_slot = -1
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        slot = int((now - start) / period) if now >= start else -1
        if slot <= last_slot:
            time.sleep(max(0.0, start + (last_slot + 1) * period - now))
            continue
        last_slot = slot
        src = frames[(slot + idx * len(frames) // 7) % len(frames)]  # cameras see different moments
        ts = slot * period
        t = time.perf_counter()
        pipeline.process(Frame(src.image, ts, DEFAULT_START + timedelta(seconds=ts), slot))
        if slot >= first_counted:
            n_done += 1
            if frame_ms is not None:
                frame_ms.append((time.perf_counter() - t) * 1000)
    counts[idx] = n_done


def capacity(
    detector, frames: list[Frame], levels: list[int], seconds: float, fps: float = 5.0
) -> dict:
    proc = psutil.Process(os.getpid())
    base_rss = proc.memory_info().rss
    results = {}
    best = 0
    for k in levels:
        pipelines = [
            CameraPipeline(load_camera(CAMERA).model_copy(update={"id": f"cam-{i}"}), detector)
            for i in range(k)
        ]
        counts = [0] * k
        cpu0 = proc.cpu_times()
        t0 = time.perf_counter()
        threads = [
            threading.Thread(
                target=_camera_loop,
                args=(pipelines[i], frames, fps, seconds, counts, i, i * 0.2 / k),
            )
            for i in range(k)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        cpu1 = proc.cpu_times()
        cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall * 100
        achieved = [c / seconds for c in counts]
        calls = sum(p.stats.detector_calls for p in pipelines) / max(
            1, sum(p.stats.frames for p in pipelines)
        )
        sustained = min(achieved) >= 0.95 * fps
        rss = proc.memory_info().rss
        results[k] = {
            "min_camera_fps": round(min(achieved), 2),
            "cpu_percent": round(cpu, 1),
            "detector_calls_per_frame": round(calls, 3),
            "sustained": sustained,
            "rss_mb": round(rss / 2**20, 1),
            "detector_networks": getattr(detector, "networks", 1),
        }
        if sustained:
            best = max(best, k)
        print(f"capacity {k} cameras: {results[k]}", flush=True)
    top = results.get(best) or results[levels[0]]
    return {
        "cameras_sustained_at_5fps": best,
        "cpu_percent_per_camera": round(top["cpu_percent"] / max(1, best), 1),
        "rss_mb_per_camera": round((proc.memory_info().rss - base_rss) / 2**20 / max(1, best), 1),
        "rss_mb_total": round(proc.memory_info().rss / 2**20, 1),
        "capacity_levels": {str(k): v for k, v in results.items()},
    }


# --- capacity with the second stage on ---------------------------------------------------

SCENE_SECONDS = 40.0


def two_wheeler_scene(start_s: float = 0.0) -> Scene:
    """vtest.avi (from ``start_s``) with two mopeds: one ridden onto the lawn, standing
    there 24 s (an ``ebike_charging`` dwell of 20 s passes), ridden off; one crossing
    the street above it. Both are tracks the second stage classifies."""
    return Scene(
        "capacity_two_wheelers",
        SCENE_SECONDS,
        (
            Placement(
                "motorcycle",
                (
                    K(2, -120, 520, 150),
                    K(6, 220, 520, 150),
                    K(30, 220, 520, 150),
                    K(34, 900, 520, 150),
                ),
            ),
            Placement("motorcycle", (K(14, 900, 330, 110), K(24, -100, 330, 110)), flip=True),
        ),
        start_s=start_s,
    )


def render_scenes(directory: Path, starts: list[float]) -> list[Path]:
    """The scene once per start in the footage (cameras that do not see the same people)."""
    image_name, box = SPRITE_SOURCES["motorcycle"]
    image = cv2.imread(str(sample(image_name)))
    if image is None:
        raise FileNotFoundError(image_name)
    sprites = {"motorcycle": cut_out("motorcycle", image, box)}
    return [
        render(two_wheeler_scene(start), directory / f"two-wheelers-{i}.avi", sprites)
        for i, start in enumerate(starts)
    ]


def two_wheeler_camera(camera_id: str, source: str = "sample:vtest.avi") -> Camera:
    """The fire-lane camera at 5 fps whose lawn also forbids e-bikes (the second stage on)."""
    doc = yaml.safe_load(CAMERA.read_text())
    doc.update({"id": camera_id, "source": source, "fps": 5})
    lawn = next(z for z in doc["zones"] if z["id"] == "lawn")
    lawn["rules"].append({"type": "ebike_charging", "classes": ["ebike"], "dwell_s": 20})
    return Camera.model_validate(doc)


def build_detector(variant: str, threads: int) -> Detector:
    """``parallel``: the default detector as it is now (a single-threaded network per
    core, calls side by side); ``previous``: as it was (one network on ``threads``
    threads, calls in line). Built afresh for each run: OpenCV's thread count is
    process-wide and the last detector built sets it."""
    if variant == "previous":
        model, graph = default_model()
        return OpenCVTensorFlowDetector(model, graph, threads=threads, parallel_calls=False)
    detector = load_detector(DetectorConfig(threads=threads))
    if isinstance(detector, OpenCVTensorFlowDetector):
        detector.add_network()  # what overlapping calls build in the first seconds anyway
    return detector


def _live_run(
    detector: Detector,
    cameras: list[Camera],
    frames: list[Frame],
    seconds: float,
    warmup: float,
    fps: float = 5.0,
) -> dict:
    k = len(cameras)
    pipelines = [CameraPipeline(camera, detector) for camera in cameras]
    proc = psutil.Process(os.getpid())
    counts = [0] * k
    frame_ms: list[float] = []
    threads = [
        threading.Thread(
            target=_camera_loop,
            args=(pipelines[i], frames, fps, seconds, counts, i, i * 0.2 / k, warmup, frame_ms),
        )
        for i in range(k)
    ]
    for th in threads:
        th.start()
    time.sleep(warmup)
    cpu0, t0 = proc.cpu_times(), time.perf_counter()
    for th in threads:
        th.join()
    wall, cpu1 = time.perf_counter() - t0, proc.cpu_times()
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall * 100
    achieved = [c / seconds for c in counts]
    frames_done = max(1, sum(p.stats.frames for p in pipelines))
    verifiers = [p._verifier for p in pipelines if p._verifier is not None]
    return {
        "min_camera_fps": round(min(achieved), 2),
        "cpu_percent": round(cpu, 1),
        "detector_calls_per_frame": round(
            sum(p.stats.detector_calls for p in pipelines) / frames_done, 3
        ),
        "frames_dropped": round(k * seconds * fps) - sum(counts),
        "frame_ms_median": round(statistics.median(frame_ms), 1),
        "frame_ms_p95": round(statistics.quantiles(frame_ms, n=20)[18], 1),
        "classifier_crops": sum(v.looks for v in verifiers),
        "second_stage_cameras": len(verifiers),
        "events": sum(p.stats.events for p in pipelines),
        "sustained": min(achieved) >= 0.95 * fps,
    }


def second_stage_capacity(
    frames: list[Frame], levels: list[int], seconds: float, warmup: float, threads: int
) -> dict:
    """Cameras sustained at 5 fps with the second stage on, the detector as it is now and
    as it was, level by level in turns (which goes first alternates)."""
    results: dict[str, dict[int, dict]] = {"parallel": {}, "previous": {}}
    for n, k in enumerate(levels):
        order = ("previous", "parallel") if n % 2 == 0 else ("parallel", "previous")
        for variant in order:
            detector = build_detector(variant, threads)
            cameras = [two_wheeler_camera(f"cam-{i}") for i in range(k)]
            results[variant][k] = _live_run(detector, cameras, frames, seconds, warmup)
            del detector
            print(f"second stage, {variant}, {k} cameras: {results[variant][k]}", flush=True)
    out: dict = {}
    for variant, by_level in results.items():
        best = max((k for k, r in by_level.items() if r["sustained"]), default=0)
        top = by_level.get(best) or by_level[levels[0]]
        out[f"second_stage_cameras_sustained_at_5fps_{variant}"] = best
        out[f"second_stage_cpu_percent_per_camera_{variant}"] = round(
            top["cpu_percent"] / max(1, best or levels[0]), 1
        )
        out[f"second_stage_levels_{variant}"] = {str(k): r for k, r in by_level.items()}
    # like for like: CPU per camera at each level both ran, new over old (< 1: cheaper)
    ratios = [
        results["parallel"][k]["cpu_percent"] / results["previous"][k]["cpu_percent"]
        for k in levels
        if results["previous"][k]["cpu_percent"] > 0
    ]
    out["second_stage_cpu_parallel_over_previous_median"] = round(statistics.median(ratios), 3)
    prev = out["second_stage_cameras_sustained_at_5fps_previous"]
    out["second_stage_cameras_parallel_over_previous"] = (
        round(out["second_stage_cameras_sustained_at_5fps_parallel"] / prev, 2) if prev else None
    )
    # [parallel, previous] at each level: the slowest camera's fps, the frames dropped,
    # and the 95th percentile of a frame's analysis time (at 5 fps a frame over 200 ms
    # makes the camera drop the next)
    for figure in ("min_camera_fps", "frames_dropped", "frame_ms_p95"):
        out[f"second_stage_{figure}_by_level_parallel_previous"] = {
            str(k): [results["parallel"][k][figure], results["previous"][k][figure]] for k in levels
        }
    out["second_stage_seconds_per_level"] = seconds
    out["second_stage_warmup_s"] = warmup
    return out


# --- the gateway agent's own memory ----------------------------------------------------

_AGENT_RSS = """
import json, sys, threading, time
import psutil
from edge.agent import GatewayAgent
from edge.config import load_gateway_config
from microbrain.site import load_site
config, warmup, window = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
proc = psutil.Process()
cfg = load_gateway_config(config)
agent = GatewayAgent(cfg, load_site(cfg.site))
thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
thread.start()
connected = agent.uplink.wait_connected(15)
deadline = time.monotonic() + 60
while agent.video is None and time.monotonic() < deadline:
    time.sleep(0.1)
video = agent.video
time.sleep(warmup)
before = [w.pipeline.stats.frames for w in video.workers]
cpu0, t0 = proc.cpu_times(), time.perf_counter()
time.sleep(window)
wall, cpu1 = time.perf_counter() - t0, proc.cpu_times()
fps = [(w.pipeline.stats.frames - b) / wall for w, b in zip(video.workers, before)]
detector = video.workers[0].pipeline.detector
print(json.dumps({
    "rss_mb": proc.memory_info().rss / 2**20,
    "cpu_percent": (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall * 100,
    "camera_fps": [round(f, 2) for f in fps],
    "detector_networks": getattr(detector, "networks", None),
    "second_stage_cameras": sum(w.pipeline._verifier is not None for w in video.workers),
    "camera_errors": [w.error for w in video.workers if w.error],
    "broker_connected": connected,
}), flush=True)
agent.stop()
thread.join(30)
"""


def _agent_files(work: Path, videos: list[Path], port: int) -> Path:
    """The demo site with gateway gw-xiyuan-1 watching ``videos`` (its sensors left out),
    and that gateway's agent config; returns the config's path."""
    doc = yaml.safe_load(DEMO_SITE.read_text())
    for community in doc["communities"]:
        for compound in community["compounds"]:
            for gw in compound.get("gateways", []):
                if gw["id"] == "gw-xiyuan-1":
                    gw["cameras"] = [
                        two_wheeler_camera(f"cam-{i}", str(video)).model_dump(
                            mode="json", exclude_defaults=True
                        )
                        for i, video in enumerate(videos)
                    ]
                    gw["sensors"] = []
    site = work / "site.yaml"
    site.write_text(yaml.safe_dump(doc, allow_unicode=True))
    config = work / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": str(site),
                "gateway": "gw-xiyuan-1",
                "cloud": {"url": f"mqtt://127.0.0.1:{port}"},
                "data_dir": str(work / "data"),
                "heartbeat_s": 5,
                "loop_recordings": True,
            }
        )
    )
    return config


def agent_memory(
    videos: list[Path], work: Path, warmup: float, window: float, network_mb: float | None
) -> dict:
    """RSS of a real gateway agent (a subprocess) with 1 camera and with all of ``videos``.
    Beside the plain difference per camera, the same less the detector networks that the
    overlapping calls of several cameras add (``network_mb`` each): those are the
    detector's, bought for speed, not any one camera's."""
    broker = MosquittoBroker("127.0.0.1", free_port(), work / "broker").start()
    env = {**os.environ, "MB_GW_XIYUAN_1_PASSWORD": "unused-by-an-anonymous-broker"}
    runs: dict[int, dict] = {}
    try:
        for k in (1, len(videos)):
            folder = work / f"agent-{k}"
            folder.mkdir()
            config = _agent_files(folder, videos[:k], broker.port)
            result = subprocess.run(
                [sys.executable, "-c", _AGENT_RSS, str(config), str(warmup), str(window)],
                capture_output=True,
                text=True,
                env=env,
                timeout=warmup + window + 180,
                check=False,
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["failed"])[-1]
                return {"rss_mb_per_camera_agent": None, "agent_error": last[:300]}
            runs[k] = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"agent with {k} camera(s): {runs[k]}", flush=True)
    finally:
        broker.stop()
    k = len(videos)
    one, many = runs[1], runs[k]
    added = (many["detector_networks"] or 1) - (one["detector_networks"] or 1)
    return {
        "rss_mb_per_camera_agent": round((many["rss_mb"] - one["rss_mb"]) / (k - 1), 1),
        "rss_mb_per_camera_agent_less_added_networks": (
            round((many["rss_mb"] - one["rss_mb"] - added * network_mb) / (k - 1), 1)
            if network_mb is not None
            else None
        ),
        "agent_rss_mb_1_camera": round(one["rss_mb"], 1),
        f"agent_rss_mb_{k}_cameras": round(many["rss_mb"], 1),
        "agent_detector_networks": {
            "1": one["detector_networks"],
            str(k): many["detector_networks"],
        },
        f"agent_cpu_percent_{k}_cameras": round(many["cpu_percent"], 1),
        f"agent_camera_fps_{k}_cameras": many["camera_fps"],
        "agent_second_stage_cameras": many["second_stage_cameras"],
        "agent_camera_errors": one["camera_errors"] + many["camera_errors"],
        "agent_warmup_s_window_s": [warmup, window],
    }


_NETWORK_RSS = """
import json, sys
import psutil
from edge.video.detectors import load_detector
from microbrain.site.cameras import DetectorConfig
proc = psutil.Process()
detector = load_detector(DetectorConfig(threads=int(sys.argv[1])))
one = proc.memory_info().rss
detector.add_network()
print(json.dumps({"networks": detector.networks, "grown": proc.memory_info().rss - one}))
"""


def network_rss_mb(threads: int) -> float | None:
    """Resident memory one more copy of the default network costs (what the parallel
    detector builds when calls overlap), measured in a fresh process: in this one,
    memory freed by earlier runs would be reused and hide it."""
    result = subprocess.run(
        [sys.executable, "-c", _NETWORK_RSS, str(threads)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        return None
    grown = json.loads(result.stdout.strip().splitlines()[-1])
    return round(grown["grown"] / 2**20, 1) if grown["networks"] == 2 else None


_ULTRALYTICS_TRACK = """
import json, os, sys, time
os.environ.setdefault("YOLO_OFFLINE", "1")
from ultralytics import YOLO
model, video, imgsz, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
yolo = YOLO(model, task="detect")
frames, start = 0, None
for _ in yolo.track(source=video, stream=True, imgsz=imgsz, verbose=False,
                   tracker="bytetrack.yaml"):
    frames += 1
    if start is None:
        start = time.perf_counter()  # the first frame pays for loading; time the rest
    if frames >= limit:
        break
print(json.dumps({"frames": frames - 1, "seconds": time.perf_counter() - start}))
"""


def _ours_fps(detector, camera: Camera, gated: bool, limit: int) -> tuple[float, dict]:
    """Frames/s of our pipeline on the first ``limit`` frames, and what its detector did."""
    pipeline = CameraPipeline(camera, detector, options=PipelineOptions(motion_gate=gated))
    start, n = None, 0
    for frame in FileSource("bench", str(sample("vtest.avi")), camera.fps).frames():
        pipeline.process(frame)
        n += 1
        if start is None:
            start = time.perf_counter()  # as for ultralytics: time from the second frame
        if n >= limit:
            break
    fps = (n - 1) / (time.perf_counter() - start)
    stats = pipeline.stats
    return fps, {
        "detector_calls_per_frame": round(stats.detector_calls / stats.frames, 3),
        "crops_per_call": round(stats.detector_crops / max(1, stats.detector_calls), 2),
        "events": stats.events,
    }


def crops_versus_whole_frame(detector, camera: Camera, fps: float = 2.0) -> dict:
    """A camera over all of vtest.avi, its detector on windows (the zones' crops, and
    between full looks what moved in them) and on the whole frame: do the same events
    come out, and at what cost per analysed frame (pipeline only: frames decoded before)?"""
    out: dict = {}
    runs = {}
    frames = decoded_frames(fps)
    for crops in (False, True):
        events: list[Event] = []
        pipeline = CameraPipeline(
            camera.model_copy(update={"fps": fps}),
            detector,
            events.append,
            options=PipelineOptions(crop_to_zones=crops),
        )
        t = time.perf_counter()
        for frame in frames:
            pipeline.process(frame)
        key = "crops" if crops else "whole_frame"
        out[f"{key}_ms_per_frame"] = round((time.perf_counter() - t) / len(frames) * 1000, 2)
        runs[crops] = [
            (e.kind, e.zone, e.state.value, round((e.frame_ts - DEFAULT_START).total_seconds()))
            for e in events
        ]
    out["crops_events"] = runs[True]
    out["crops_events_identical_to_whole_frame"] = runs[True] == runs[False]
    same_sequence = [r[:3] for r in runs[True]] == [r[:3] for r in runs[False]]
    out["crops_event_sequence_identical"] = same_sequence  # kinds, zones, states in order
    if same_sequence and runs[True]:
        out["crops_event_time_shift_max_s"] = max(
            abs(a[3] - b[3]) for a, b in zip(runs[True], runs[False], strict=True)
        )
    if not out["crops_events_identical_to_whole_frame"]:
        out["whole_frame_events"] = runs[False]
    return out


def versus_ultralytics(model: str, python: str, limit: int, threads: int, rounds: int = 2) -> dict:
    """Frames/s of our pipeline and of ultralytics' ``track()`` on the same ONNX file and
    the same frames of vtest.avi, alternating rounds; best round of each (the box is
    shared, so the best round is the one least disturbed by other load)."""
    import subprocess

    video = str(sample("vtest.avi"))
    detector = load_detector(
        DetectorConfig(type="onnx_yolo", model=model, threads=threads, score_threshold=0.25)
    )
    imgsz = detector.input_hw[0]
    # every frame of the 10 fps video, one zone over the whole frame: like track(), we
    # watch everything: the gate and the windows get no help from small zones
    whole_frame = Camera.model_validate(
        {
            "id": "cam-bench",
            "source": "sample:vtest.avi",
            "fps": 10,
            "zones": [
                {
                    "id": "all",
                    "polygon": [[0, 0], [768, 0], [768, 576], [0, 576]],
                    "rules": [
                        {
                            "type": "object_in_zone",
                            "kind": "crowd",
                            "classes": ["person"],
                            "min_count": 4,
                            "dwell_s": 3,
                        }
                    ],
                }
            ],
        }
    )
    # a camera watching part of the scene: the demo's fire lane around the parked van, and
    # a walkway in the middle that people cross (so the gate and the tracker have work)
    zones = Camera.model_validate(
        {
            "id": "cam-bench-zones",
            "source": "sample:vtest.avi",
            "fps": 10,
            "zones": [
                {
                    "id": "fire-lane",
                    "polygon": [[620, 30], [740, 30], [740, 120], [620, 120]],
                    "rules": [{"type": "illegal_parking", "dwell_s": 20}],
                },
                {
                    "id": "walkway",
                    "polygon": [[300, 250], [480, 250], [480, 420], [300, 420]],
                    "rules": [
                        {
                            "type": "object_in_zone",
                            "kind": "people",
                            "classes": ["person"],
                            "dwell_s": 3,
                        }
                    ],
                },
            ],
        }
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    runs: dict[str, list[float]] = {
        "ours_ungated": [],
        "ours_gated_whole_frame": [],
        "ours_ungated_zones": [],
        "ours_gated_zones": [],
        "ultralytics_track": [],
    }
    setups = {
        "ours_ungated": (whole_frame, False),
        "ours_gated_whole_frame": (whole_frame, True),
        # the detector on every frame, but (a dynamic-shape model) only on the zones' crops
        "ours_ungated_zones": (zones, False),
        "ours_gated_zones": (zones, True),
    }
    work: dict[str, dict] = {}
    for _ in range(rounds):
        for key, (camera, gated) in setups.items():
            fps, work[key] = _ours_fps(detector, camera, gated, limit)
            runs[key].append(fps)
        result = subprocess.run(
            [python, "-c", _ULTRALYTICS_TRACK, model, video, str(imgsz), str(limit)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["failed"])[-1]
            return {"ultralytics_error": last[:300]}
        theirs = json.loads(result.stdout.strip().splitlines()[-1])
        runs["ultralytics_track"].append(theirs["frames"] / theirs["seconds"])
    out: dict = {
        "yolo_model": Path(model).name,
        "yolo_imgsz": imgsz,
        "yolo_frames": limit - 1,
        "yolo_rounds": rounds,
    }
    for key, values in runs.items():
        out[f"{key}_fps_best"] = round(max(values), 2)
        out[f"{key}_fps_all"] = [round(v, 2) for v in values]
    theirs_best = out["ultralytics_track_fps_best"]
    out["yolo_dynamic_shape"] = detector.any_input_size
    out["ours_detector_work"] = work
    out["yolo_crops_versus_whole_frame"] = crops_versus_whole_frame(detector, zones)
    out["yolo_motion_windows_versus_whole_frame"] = crops_versus_whole_frame(detector, whole_frame)
    for key in ("ours_ungated", "ours_gated_whole_frame", "ours_ungated_zones", "ours_gated_zones"):
        out[f"{key}_over_ultralytics_fps"] = round(out[f"{key}_fps_best"] / theirs_best, 2)
    return out


def second_stage(threads: int, quick: bool) -> dict:
    """Capacity with the second stage on (parallel vs previous detector), a network's
    memory, and (full run) the real agent's memory per camera."""
    out: dict = {
        "second_stage_scene": "vtest.avi + two mopeds composited (models/scenes.py), "
        f"{SCENE_SECONDS:g} s, looped; rule ebike_charging classes [ebike] on the lawn",
    }
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        work = Path(tmp)
        videos = render_scenes(work, [0.0] if quick else [0.0, 20.0, 40.0, 60.0])
        frames = list(FileSource("scene", str(videos[0]), 5).frames())
        out.update(
            second_stage_capacity(
                frames,
                [4] if quick else [1, 2, 3, 4, 5, 6],
                seconds=6 if quick else 15,
                warmup=2 if quick else 4,
                threads=threads,
            )
        )
        del frames
        out["detector_network_rss_mb"] = network_mb = network_rss_mb(threads)
        if quick:
            out["rss_mb_per_camera_agent"] = None
            out["rss_mb_per_camera_agent_reason"] = (
                "full run only: two real gateway agents with a warm-up take about a minute"
            )
        else:
            out.update(agent_memory(videos, work, warmup=15, window=15, network_mb=network_mb))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--yolo-onnx", help="an ultralytics YOLO ONNX export, for the comparison")
    parser.add_argument("--ultralytics-python", help="python of an environment with ultralytics")
    args = parser.parse_args()
    detector = load_detector(DetectorConfig(threads=args.threads))
    figures: dict = {
        "cpu_count": os.cpu_count(),
        "detector": detector.name,
        "detector_threads": args.threads,
        "opencv": cv2.__version__,
    }
    quick = args.quick
    load_start = round(os.getloadavg()[0], 2)  # other work on the box skews every timing
    proc = psutil.Process(os.getpid())
    rss_before_frames = proc.memory_info().rss
    # vtest decoded once at 5 fps and shared by the figures below (this process's
    # memory, not a gateway's: a camera decodes one frame at a time)
    five = decoded_frames(5)
    gating_frames = decoded_frames(2) if quick else five
    held = {id(f.image): f.image.nbytes for f in five + gating_frames}
    figures["bench_decoded_frames_mb"] = round(sum(held.values()) / 2**20, 1)
    figures["bench_rss_mb_for_decoded_frames"] = round(
        (proc.memory_info().rss - rss_before_frames) / 2**20, 1
    )
    overhead_frames = five[: 40 if quick else 150]
    figures.update(overhead(detector, overhead_frames))
    print(f"overhead: {figures['pipeline_over_raw_detector']}", flush=True)
    figures.update(gating(detector, gating_frames))
    print(f"gating: {figures['gated_detector_calls_per_frame']}", flush=True)
    live_frames = five
    levels = [1, 2, 4] if quick else [1, 2, 3, 4, 5, 6]
    figures.update(capacity(detector, live_frames, levels, seconds=6 if quick else 20))
    # the same figure derived from measured cost: CPU-seconds one camera needs per second
    # at 5 fps (gated), against the box's cores; robust to other load on a shared machine
    per_camera_cpu_s = 5 * figures["gated_cpu_ms_per_frame"] / 1000
    figures["cameras_at_5fps_estimated_from_gated_cost"] = round(
        (os.cpu_count() or 1) / per_camera_cpu_s, 2
    )
    del five, gating_frames, live_frames, overhead_frames, held
    figures.update(second_stage(args.threads, quick))
    if args.yolo_onnx and args.ultralytics_python:
        figures.update(
            versus_ultralytics(
                args.yolo_onnx, args.ultralytics_python, 100 if quick else 400, args.threads
            )
        )
        if "ultralytics_track_fps_best" in figures:
            print(
                f"versus ultralytics track() at {figures['ultralytics_track_fps_best']} fps: "
                "ours "
                f"whole frame {figures['ours_ungated_over_ultralytics_fps']}× "
                f"(gated {figures['ours_gated_whole_frame_over_ultralytics_fps']}×), "
                f"two zones {figures['ours_ungated_zones_over_ultralytics_fps']}× "
                f"(gated {figures['ours_gated_zones_over_ultralytics_fps']}×)",
                flush=True,
            )
        else:
            print(f"versus ultralytics: {figures.get('ultralytics_error')}", flush=True)
    else:
        figures["ultralytics_comparison"] = "skipped: pass --yolo-onnx and --ultralytics-python"
    figures["load_average_1min_start_end"] = [load_start, round(os.getloadavg()[0], 2)]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
