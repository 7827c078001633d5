"""Benchmark what an evidence clip costs the gateway: WebM/VP8 (what it writes, a browser
plays it) against Motion-JPEG AVI (what it wrote before; no browser plays it), in one run.

On real footage (the sample media's vtest.avi, 768×576), alternating the two writers
several rounds so the machine's load hits both alike:
  * CPU milliseconds per frame of each writer (this process's user + system time), the
    median over rounds; the ratio VP8 ÷ MJPEG;
  * bytes per clip (VP8 within its budget; MJPEG has none);
  * the longest stall one analysed frame sees while a clip is written the way the
    pipeline does it (ClipWriter: two frames encoded per analysed frame), against
    encoding a whole clip at once on one frame (what the pipeline avoids);
  * a camera's share of one core at 5 fps with one event an hour (a clip of 2 × 2 s).

    python scripts/bench_clips.py            # 8 rounds of 4 s clips
    python scripts/bench_clips.py --quick    # 3 rounds (about a minute)

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.video.clips import ClipWriter, write_webm
from microbrain.resources import sample

FPS = 10.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def footage(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample("vtest.avi")))
    frames = [f for ok, f in (cap.read() for _ in range(n)) if ok]
    cap.release()
    if len(frames) < n:
        raise SystemExit(f"vtest.avi gave {len(frames)} frames, wanted {n}")
    return frames


def mjpeg(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def spread_stall_ms(path: Path, frames: list[np.ndarray]) -> float:
    """The longest time one analysed frame spends on the clip, written as the pipeline
    writes it: the before-part queued, then each frame added with two encoded."""
    half = len(frames) // 2
    writer = ClipWriter(path, FPS, len(frames))
    worst = 0.0
    for f in frames[:half]:
        writer.add(f)
    for f in frames[half:]:
        started = time.perf_counter()
        writer.add(f)
        writer.step(2)
        worst = max(worst, time.perf_counter() - started)
    started = time.perf_counter()
    writer.close()
    return 1000 * max(worst, time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 8")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length (2 s before + after)")
    args = ap.parse_args()
    rounds = 3 if args.quick else 8
    n = int(args.seconds * FPS)
    frames = footage(n)
    vp8_ms, mjpeg_ms, vp8_bytes, mjpeg_bytes, stalls, whole = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp:
        out = Path(tmp)
        for i in range(rounds):
            c = cpu_s()
            mjpeg(out / f"m{i}.avi", frames)
            mjpeg_ms.append(1000 * (cpu_s() - c) / n)
            mjpeg_bytes.append((out / f"m{i}.avi").stat().st_size)
            c, started = cpu_s(), time.perf_counter()
            if not write_webm(out / f"v{i}.webm", frames, FPS):
                raise SystemExit("the WebM clip was not written (see the log)")
            vp8_ms.append(1000 * (cpu_s() - c) / n)
            whole.append(1000 * (time.perf_counter() - started))
            vp8_bytes.append((out / f"v{i}.webm").stat().st_size)
            stalls.append(spread_stall_ms(out / f"s{i}.webm", frames))
            print(
                f"round {i + 1}/{rounds}: VP8 {vp8_ms[-1]:.1f} ms CPU/frame, "
                f"MJPEG {mjpeg_ms[-1]:.1f}; worst frame stall spread {stalls[-1]:.0f} ms, "
                f"whole clip at once {whole[-1]:.0f} ms",
                flush=True,
            )
    vp8, mj = statistics.median(vp8_ms), statistics.median(mjpeg_ms)
    # 5 fps, one event an hour, its clip 2 s before + 2 s after: 20 frames
    camera_core_pct = 100 * (20 * vp8 / 1000) / 3600
    figures = {
        "frame": "768x576",
        "clip_frames": n,
        "rounds": rounds,
        "vp8_cpu_ms_per_frame": round(vp8, 2),
        "mjpeg_cpu_ms_per_frame": round(mj, 2),
        "vp8_over_mjpeg_cpu": round(vp8 / mj, 2),
        "vp8_clip_kb": round(statistics.median(vp8_bytes) / 1024, 1),
        "mjpeg_clip_kb": round(statistics.median(mjpeg_bytes) / 1024, 1),
        "worst_frame_stall_spread_ms": round(statistics.median(stalls), 1),
        "whole_clip_at_once_ms": round(statistics.median(whole), 1),
        "camera_core_pct_at_one_event_an_hour": round(camera_core_pct, 4),
    }
    print(
        f"VP8 {vp8:.1f} ms CPU a frame vs MJPEG {mj:.1f} ({vp8 / mj:.1f}×); a clip "
        f"{figures['vp8_clip_kb']} KB vs {figures['mjpeg_clip_kb']} KB; the worst analysed "
        f"frame waits {figures['worst_frame_stall_spread_ms']} ms for the clip (all at once: "
        f"{figures['whole_clip_at_once_ms']} ms)",
        flush=True,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
