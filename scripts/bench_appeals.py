"""Benchmark residents' appeal intake over HTTP on SQLite, against the same server's
/healthz rate, in one run.

    python scripts/bench_appeals.py --quick      # about a minute

One uvicorn process serves the real API (create_api) over a migrated SQLite database
(WAL) with a site of 4 compounds × 3 buildings; the clients (threads here, another
process than the server's) post appeals as fast as the server answers, each with a new
phone (residents, not one spammer: the per-contact limit stays on), a Chinese text the
classifier reads, and 1-3 real JPEG photos (about 20 KB each, Pillow-made) that are
checked, sniffed and written under the photo directory.

Figures (last line, JSON):
- healthz_per_s: GET /healthz (one SELECT 1) at the same concurrency: the reference
- intake_no_photos_per_s: POST /api/appeals without photos
- intake_photos_per_s (goal ≥ 50): with 1-3 photos each; p50/p95 latency of each phase
- ratios to the reference, appeals and photos stored (counted in the database)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx

GOAL_PER_S = 50.0
COMPOUNDS = [("bench", f"c{i}") for i in range(4)]
BUILDINGS = ("b1", "b2", "b3")
TEXTS = (
    "楼道里有人飞线充电，电线从窗户拉下来",
    "电梯又坏了，老人上不了楼",
    "消防通道被私家车堵住了",
    "垃圾桶满了三天没人清运",
    "楼上每天晚上装修噪音太大",
    "小区里有人遛狗不牵绳，孩子被吓到",
    "单元门禁坏了，陌生人随便进出",
    "路灯不亮，晚上回家很黑",
)


def jpegs(n: int = 6) -> list[bytes]:
    """Small real JPEGs (noise, so they do not compress to nothing)."""
    from PIL import Image

    out = []
    rng = random.Random(7)
    for _ in range(n):
        img = Image.frombytes(
            "RGB", (160, 120), bytes(rng.getrandbits(8) for _ in range(160 * 120 * 3))
        )
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def serve(db_url: str, port: int, photo_dir: str) -> None:
    """The server process: migrate, load the bench site, serve the API."""
    import uvicorn

    from cloud.api import create_api
    from cloud.api.deps import ApiState
    from cloud.db import make_engine, read_only, session_factory, transaction, upgrade
    from cloud.db import models as m
    from cloud.settings import Settings
    from cloud.site_sync import register_gateway

    upgrade(db_url)
    engine = make_engine(db_url)
    factory = session_factory(engine)
    with transaction(factory) as s:
        for community, compound in COMPOUNDS:
            register_gateway(s, community, compound, f"gw-{compound}", building="b1")
            for b in BUILDINGS[1:]:
                s.add(
                    m.Building(
                        community=community,
                        compound=compound,
                        id=b,
                        name=b,
                        category="residential_highrise",
                    )
                )
        for dept in ("fire", "elevator", "police"):
            s.merge(m.Department(id=dept, name=dept, contacts=[]))
    os.environ["MB_CLOUD_APPEALS_PHOTO_DIR"] = photo_dir
    state = ApiState(
        settings=Settings(environment="test", database_url=db_url),
        factory=factory,
        readers=session_factory(read_only(engine)),
    )
    uvicorn.run(create_api(state), host="127.0.0.1", port=port, log_level="warning")


def phase(url: str, name: str, make: Any, seconds: float, threads: int) -> dict[str, float]:
    """Requests from ``threads`` clients for ``seconds``: rate and latency."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                r = make(http, rng)
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code < 300:
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status_code} {r.text[:120]}")

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    last_report = started
    for t in pool:
        while t.is_alive():
            t.join(timeout=0.5)
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                print(
                    f"  {name}: {len(latencies)} ok, {len(errors)} refused, "
                    f"{last_report - started:.0f} s",
                    file=sys.stderr,
                )
    elapsed = time.monotonic() - started  # the last request ends at most one latency late
    if errors:
        print(f"  {name}: first refusals: {errors[:3]}", file=sys.stderr)
    ordered = sorted(latencies) or [0.0]
    return {
        "per_s": round(len(latencies) / elapsed, 1),
        "ok": len(latencies),
        "refused": len(errors),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
    }


def appeal(photos: list[bytes] | None) -> Any:
    def make(http: httpx.Client, rng: random.Random) -> httpx.Response:
        community, compound = rng.choice(COMPOUNDS)
        fields = {
            "community": community,
            "compound": compound,
            "building": rng.choice(BUILDINGS),
            "text": rng.choice(TEXTS),
            "phone": f"13{rng.randrange(10**9):09d}",
        }
        files = None
        if photos is not None:
            files = [
                ("photos", (f"p{i}.jpg", rng.choice(photos), "image/jpeg"))
                for i in range(rng.randint(1, 3))
            ]
        return http.post("/api/appeals", data=fields, files=files)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--serve", nargs=3, metavar=("DB_URL", "PORT", "PHOTO_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    from microbrain.broker.embedded import free_port

    seconds = 15.0 if args.quick else 60.0
    figures: dict[str, Any] = {
        "goal_intake_photos_per_s": GOAL_PER_S,
        "threads": args.threads,
        "seconds_per_phase": seconds,
    }
    with tempfile.TemporaryDirectory(prefix="bench-appeals-") as tmp:
        db = Path(tmp) / "appeals.db"
        photo_dir = Path(tmp) / "photos"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", f"sqlite:///{db}", str(port), str(photo_dir)]
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            images = jpegs()
            figures["photo_bytes_mean"] = round(statistics.mean(len(p) for p in images))
            # the classifier's dictionary loads on the first appeal: not measured
            with httpx.Client(base_url=url, timeout=60) as http:
                r = appeal(images)(http, random.Random(0))
                assert r.status_code == 201, r.text
            print("healthz (reference) …", file=sys.stderr)
            ref = phase(
                url, "healthz", lambda http, _rng: http.get("/healthz"), seconds, args.threads
            )
            print("intake without photos …", file=sys.stderr)
            bare = phase(url, "no photos", appeal(None), seconds, args.threads)
            print("intake with 1-3 photos …", file=sys.stderr)
            full = phase(url, "photos", appeal(images), seconds, args.threads)
        finally:
            server.terminate()
            server.wait(timeout=30)
        import sqlite3

        with sqlite3.connect(db) as con:
            figures["appeals_stored"] = con.execute("SELECT count(*) FROM appeals").fetchone()[0]
            figures["photos_stored"] = con.execute("SELECT count(*) FROM appeal_photos").fetchone()[
                0
            ]
        figures["photo_files_on_disk"] = sum(1 for p in photo_dir.rglob("*.jpg"))
    for key, result in (("healthz", ref), ("intake_no_photos", bare), ("intake_photos", full)):
        for k, v in result.items():
            figures[f"{key}_{k}"] = v
    figures["intake_photos_ratio_to_healthz"] = round(full["per_s"] / ref["per_s"], 3)
    figures["intake_photos_ratio_to_no_photos"] = round(full["per_s"] / bare["per_s"], 3)
    figures["goal_met"] = full["per_s"] >= GOAL_PER_S
    print(
        f"intake with photos: {full['per_s']}/s (goal ≥ {GOAL_PER_S}), healthz "
        f"{ref['per_s']}/s, without photos {bare['per_s']}/s",
        file=sys.stderr,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
