"""Benchmark a model swap on a running gateway: a camera at 5 fps on real video keeps
analysing while the model manager installs new signed models, one after the other.

Measures, in one run:
  1. the reference: the model's own inference time on the same video's frames
     (``inference_ms_median``), measured before the camera starts;
  2. analysed frames lost across the run (gaps in the camera's frame sequence; goal 0);
  3. how late each analysed frame finishes against its due time, steady and during the
     swaps (from the command to the first frame on the new model): the worst extra
     delay of a frame during a swap over the steady median, against the inference time
     (goal: at most one inference time, ``swap_extra_delay_over_inference`` ≤ 1);
  4. how long an install takes (signature, download from a loopback HTTP server, sha256,
     load, smoke test, trust state) and how long the cameras take to pick the new model
     up (from the swap to the first frame analysed with it).

The model: an ultralytics YOLOv8n (random weights: the same network, the same work as a
trained one) exported to ONNX with dynamic shapes at imgsz 320, fully offline, in a
subprocess (the gateway never imports torch); or ``--model M.onnx``. Each install is a
copy of it with another version in its metadata (another file, another sha256). The
camera runs ungated on the whole frame, so every frame costs one inference.

Usage: .venv/bin/python scripts/bench_model_swap.py [--quick] [--model M.onnx]
The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.model_update.install import ModelManager, sha256_of
from edge.video.detectors import Detector, load_detector
from edge.video.pipeline import PipelineOptions
from edge.video.runner import Playback, VideoGateway
from edge.video.sources import FileSource, Frame
from microbrain.protocol import ModelInstall, ModelManifest, Reply, utc_now
from microbrain.resources import sample
from microbrain.signing import sign_manifest
from microbrain.site.cameras import DetectorConfig
from microbrain.site.loader import load_camera

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "configs" / "cameras" / "vtest-fire-lane.yaml"
FPS = 5.0

EXPORT = """
import sys, torch
torch.manual_seed(0)
from ultralytics import YOLO
print(YOLO("yolov8n.yaml").export(format="onnx", imgsz=320, dynamic=True, simplify=False))
"""


def base_model(work: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    path = work / "yolov8n.onnx"
    if not path.exists():
        print("exporting yolov8n (random weights) to ONNX, offline …", file=sys.stderr)
        env = {**os.environ, "YOLO_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", EXPORT],
            check=False,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not path.exists():
            sys.exit(
                "could not export yolov8n with ultralytics (install the train extra: "
                f"pip install -e '.[train]', or pass --model M.onnx):\n{done.stderr[-2000:]}"
            )
    return path


def variant(base: Path, out: Path, version: str) -> bytes:
    """The base model with ``version`` in its metadata: another file, the same network."""
    model = onnx.load(str(base))
    props = {p.key: p.value for p in model.metadata_props}
    props["version"] = version
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(out))
    return out.read_bytes()


class Files:
    """A loopback HTTP server with the model files (the cloud's download endpoint)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                data = files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def inference_ms(detector: Detector, frames: list[Frame]) -> float:
    times = []
    for frame in frames:
        t = time.perf_counter()
        detector.detect(frame.image)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 swaps in about a minute")
    parser.add_argument("--model", help="an ultralytics ONNX export (default: yolov8n, built)")
    parser.add_argument("--swaps", type=int, default=None)
    parser.add_argument("--every-s", type=float, default=None, help="seconds between installs")
    args = parser.parse_args()
    swaps = args.swaps or (4 if args.quick else 10)
    every = args.every_s or (7.0 if args.quick else 10.0)

    work = Path(tempfile.mkdtemp(prefix="mb-bench-swap-"))
    cache = Path(tempfile.gettempdir()) / "mb-bench-model-swap"
    cache.mkdir(exist_ok=True)
    base = base_model(cache, args.model)
    key = Ed25519PrivateKey.generate()
    files = Files()

    site_model = work / "site.onnx"
    variant(base, site_model, "0")
    site = DetectorConfig(type="onnx_yolo", model=str(site_model), threads=2)
    camera = load_camera(CAMERA).model_copy(update={"fps": FPS})
    frames = []
    for frame in FileSource("bench", str(sample("vtest.avi")), FPS).frames():
        frames.append(frame)
        if len(frames) == 30:
            break
    reference = load_detector(site)
    inference = inference_ms(reference, frames)
    del reference

    replies: list[tuple[float, Reply]] = []
    swapped_at: list[float] = []
    video: VideoGateway | None = None

    def on_swap() -> None:
        swapped_at.append(time.monotonic())
        assert video is not None and manager.running is not None
        video.swap_detector(manager.running.detector)

    manager = ModelManager(
        work / "models",
        key.public_key(),
        reply=lambda r: replies.append((time.monotonic(), r)),
        on_swap=on_swap,
        gap=lambda: video.wait_between_frames() if video is not None else None,
        cloud_api=files.url,
    )
    detector = manager.boot(site, None)
    video = VideoGateway(
        [camera],
        detector,
        lambda event: None,
        options=PipelineOptions(motion_gate=False, crop_to_zones=False),
        playback=Playback(realtime=True, loop=True),
    )
    pipeline = video.workers[0].pipeline
    seen: list[tuple[float, float, float, str]] = []  # frame ts, start, end, model version
    process = pipeline.process

    def timed(frame: Frame):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        out = process(frame)
        seen.append((frame.ts, start, time.monotonic(), pipeline.model.version))
        return out

    pipeline.process = timed  # type: ignore[method-assign]

    installs: list[tuple[float, str]] = []  # sent at, version
    video.start()
    try:
        time.sleep(3.0)  # warm: the camera settles at its pace
        for n in range(1, swaps + 1):
            version = f"{n}.0"
            data = variant(base, work / f"v{n}.onnx", version)
            url = f"/api/models/{n}/file"
            files.files[url] = data
            manifest = ModelManifest(
                name="yolov8n",
                version=version,
                serial=n,
                sha256=sha256_of(work / f"v{n}.onnx"),
                bytes=len(data),
                classes=detector.class_names,
                input_size=320,
                issued=utc_now(),
                expires=utc_now() + timedelta(days=1),
            )
            text, signature = sign_manifest(key, manifest)
            installs.append((time.monotonic(), version))
            manager.submit(ModelInstall(manifest=text, signature=signature, url=url))
            deadline = time.monotonic() + 120
            while len(replies) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(every)
    finally:
        video.stop()
        manager.stop()

    ok = [r for _, r in replies if r.ok]
    for _, r in replies:
        if not r.ok:
            print(f"install refused: {r.reason}", file=sys.stderr)

    # frames: none missing from the camera's sequence, none analysed twice
    ts = [s[0] for s in seen]
    step = 1.0 / FPS
    lost = sum(max(0, round((b - a) / step) - 1) for a, b in itertools.pairwise(ts))
    repeated = len(ts) - len(set(ts))
    # how late each frame finished against its due time (the source paces by video time)
    # the source's clock: the frame that started soonest after its due time started on it
    clock0 = min(start - t for t, start, _, _ in seen)
    late = [(end - (clock0 + t)) * 1000 for t, _, end, _ in seen]
    windows = []  # (command sent, first frame on the new model)
    pickups = []
    for (sent, version), swapped in zip(installs, swapped_at, strict=False):
        first = next((s for s in seen if s[3] == version), None)
        if first is None:
            continue
        windows.append((sent, first[2]))
        pickups.append((first[1] - swapped) * 1000)
    in_swap = [
        lat
        for (_, start, end, _), lat in zip(seen, late, strict=True)
        if any(start <= b and end >= a for a, b in windows)
    ]
    steady = [
        lat
        for (_, start, end, _), lat in zip(seen, late, strict=True)
        if not any(start <= b and end >= a for a, b in windows)
    ]
    steady_median = statistics.median(steady)
    worst_extra = max(in_swap) - steady_median if in_swap else 0.0
    install_s = [
        when - sent for (sent, _), (when, r) in zip(installs, replies, strict=False) if r.ok
    ]
    figures = {
        "fps": FPS,
        "swaps": swaps,
        "swaps_installed": len(ok),
        "frames_analysed": len(seen),
        "frames_lost": lost,
        "frames_repeated": repeated,
        "inference_ms_median": round(inference, 2),
        "steady_delay_ms_median": round(steady_median, 2),
        "steady_delay_ms_max": round(max(steady), 2),
        # the machine's own noise: the worst frame outside any swap, over the median
        "steady_worst_extra_delay_ms": round(max(steady) - steady_median, 2),
        "frames_during_swaps": len(in_swap),
        "worst_swap_frame_extra_delay_ms": round(worst_extra, 2),
        "swap_extra_delay_over_inference": round(worst_extra / inference, 3),
        "install_s_median": round(statistics.median(install_s), 3) if install_s else None,
        "swap_pickup_ms_max": round(max(pickups), 2) if pickups else None,
        "model_bytes": len(base.read_bytes()),
        "cpu_count": os.cpu_count(),
    }
    print(
        f"frames analysed {len(seen)} at {FPS:g} fps, lost {lost}, repeated {repeated}; "
        f"{len(ok)}/{swaps} models installed"
    )
    print(
        f"worst extra delay of a frame during a swap {worst_extra:.1f} ms "
        f"vs one inference {inference:.1f} ms (steady median delay {steady_median:.1f} ms; "
        f"worst frame outside swaps {max(steady) - steady_median:.1f} ms over it)"
    )
    print(
        f"install (verify, download, hash, load, smoke, trust) median "
        f"{figures['install_s_median']} s; cameras on the new model within "
        f"{figures['swap_pickup_ms_max']} ms of the swap"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
