"""Benchmark a model rollout (issue #13): 100 simulated gateways on loopback, all at the
new version within 60 s of the canary's health check.

    python scripts/bench_rollout.py                       # 100 gateways, the tiny model
    python scripts/bench_rollout.py --gateways 300 --model /path/to/yolov8n.onnx

The cloud (CloudService: API + ingest + scheduler, as ``microbrain cloud serve`` runs it)
serves on a free loopback port in this process, against the Mosquitto on --broker and
SQLite in a temporary folder (or --db, e.g. a PostgreSQL URL). The gateways are
tests/cloud/model_registry/simulated.py's: each downloads the file over HTTP with its own
credentials, checks the signature, serial, size and sha256, replies on MQTT and
heartbeats the new serial (no detector is loaded: the gateway's own swap is
bench_model_swap.py's figure).

Measured, on one monotonic clock: the canary's install; the promotion (the rollout turns
"rolling" once the canary has been healthy for --canary-healthy s); then, from the
promotion, each other gateway's install (p50/p95/max) and the rollout's "done" in the
database. Goal: the last install within 60 s of the promotion. Prints one JSON line too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud import auth
from cloud.app import CloudService
from cloud.db import models as m
from cloud.db import transaction
from cloud.permissions import Role
from cloud.settings import Settings
from microbrain.broker.embedded import free_port
from tests.cloud.model_registry.conftest import (
    GATEWAY_PASSWORD,
    evaluation,
    onnx_model,
    registered_gateway,
)
from tests.cloud.model_registry.simulated import SimulatedGateways


def _wait(pred: Callable[[], object], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


def _raw_downloads(http: httpx.Client, model_id: int, n: int, workers: int) -> float:
    """Seconds for ``n`` downloads of the model file, ``workers`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> int:
        return len(http.get(f"/api/models/{model_id}/file").content)

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--broker", default="127.0.0.1:1883")
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--model", type=Path, default=None, help="an .onnx (default: tiny)")
    parser.add_argument("--canary-healthy", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16, help="simulated downloads at once")
    parser.add_argument(
        "--quick", action="store_true", help="about a minute (the default run already is)"
    )
    args = parser.parse_args()
    host, port = args.broker.split(":")
    tmp = Path(tempfile.mkdtemp(prefix="mb-bench-rollout-"))
    settings = Settings(
        database_url=args.db or f"sqlite:///{tmp / 'cloud.db'}",
        broker_url=f"mqtt://{host}:{port}",
        environment="test",
        ingest_group=f"b{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
        admin_password=SecretStr(uuid.uuid4().hex),
        evidence_dir=tmp / "evidence",
    )
    service = CloudService(settings)
    api_port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(service.app, host="127.0.0.1", port=api_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started, 60, "the cloud to start")
    base = f"http://127.0.0.1:{api_port}"
    user, password = f"bench-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with transaction(service.factory) as s:
        auth.create_user(s, user, password, Role.ENGINEER, now=service.clock())
    http = httpx.Client(base_url=base, timeout=120)
    token = http.post("/api/auth/token", json={"username": user, "password": password})
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    model = args.model or onnx_model(tmp / "tiny.onnx")
    with model.open("rb") as f:
        r = http.post(
            "/api/models",
            files={"file": (model.name, f)},
            data={"name": "bench", "version": uuid.uuid4().hex[:8],
                  "evaluation": json.dumps(evaluation())},
        )  # fmt: skip
    r.raise_for_status()
    uploaded = r.json()
    print(f"model {uploaded['id']}: {uploaded['bytes']} bytes; registering gateways…")
    paths = [registered_gateway(service.factory, service.clock()) for _ in range(args.gateways)]
    sims = SimulatedGateways(
        host, int(port), base, http.get("/api/models/key").text, workers=args.workers
    )
    try:
        gateways = [sims.add(p, GATEWAY_PASSWORD) for p in paths]
        ids = [p.gateway for p in paths]

        def online() -> bool:
            with service.factory() as s:
                states = s.query(m.Gateway.state).filter(m.Gateway.id.in_(ids)).all()
            return sum(st == "online" for (st,) in states) == len(ids)

        _wait(online, 120, "every gateway's heartbeat")
        start = time.monotonic()
        r = http.post(
            "/api/rollouts",
            json={
                "model_id": uploaded["id"],
                "target": {"kind": "gateway", "ids": ids},
                "canary": [ids[0]],
                "canary_healthy_s": args.canary_healthy,
            },
        )
        r.raise_for_status()
        rid = r.json()["id"]

        def state() -> str:
            with service.factory() as s:
                return s.get_one(m.ModelRollout, rid).state

        canary = gateways[0]
        _wait(lambda: canary.installed_at is not None, 120, "the canary")
        promoted = _wait(lambda: state() != "canary", 300, "the promotion")
        last = _wait(lambda: all(g.installed_at for g in gateways), 300, "every install")
        done = _wait(lambda: state() == "done", 300, "the rollout's done")
        after = sorted((g.installed_at or 0) - promoted for g in gateways[1:])
        result = {
            "gateways": args.gateways,
            "model_bytes": uploaded["bytes"],
            "database": settings.database_url.split(":")[0],
            "canary_installed_s": round((canary.installed_at or 0) - start, 3),
            "promoted_s": round(promoted - start, 3),
            "canary_healthy_s": args.canary_healthy,
            "installs_after_promotion_p50_s": round(statistics.median(after), 3),
            "installs_after_promotion_p95_s": round(after[int(0.95 * (len(after) - 1))], 3),
            "last_install_after_promotion_s": round(last - promoted, 3),
            "done_after_promotion_s": round(done - promoted, 3),
            "final_state": state(),
            # the reference, measured after the rollout: the same downloads through the
            # same API, as many at once as the simulated gateways make, no rollout around
            "reference_raw_downloads_s": round(
                _raw_downloads(http, uploaded["id"], args.gateways - 1, args.workers), 3
            ),
        }
        ok = result["last_install_after_promotion_s"] <= 60
        print(
            f"last install {result['last_install_after_promotion_s']} s after the promotion "
            f"(goal ≤ 60 s: {'met' if ok else 'MISSED'}) beside the same "
            f"{args.gateways - 1} downloads alone: {result['reference_raw_downloads_s']} s"
        )
        print(json.dumps(result))
    finally:
        # the cloud first: clearing the simulated gateways' retained statuses (empty
        # payloads) would otherwise reach its ingest as junk
        server.should_exit = True
        thread.join(30)
        sims.close()


if __name__ == "__main__":
    main()
