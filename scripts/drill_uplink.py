"""The long uplink drills (the tests under tests/edge/uplink run short versions).

Against a private Mosquitto (the settings ``microbrain up`` runs) and the cloud's real
ingest (``python -m cloud.ingest`` on a SQLite database, the drill's gateway registered
first), a gateway (outbox + uplink) streams events while:

  broker_stop   the broker is stopped for --outage s (default 30) and restarted
  broker_kill   the broker is SIGKILLed, down for --outage s, restarted
  stall         the ingest worker is SIGSTOPped for --stall s (default 60) in a burst

Each drill checks that every appended event is in the cloud's database exactly once,
seq 1..N with no gap, in append order, and that the outbox empties (emptied by the
cloud's acks). ``--quick`` uses 5 s / 10 s.
The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microbrain.protocol import GatewayPath
from tests.edge.uplink.conftest import CloudIngest, CloudStore
from tests.edge.uplink.gateway_rig import event, make_rig
from tests.utils.services import private_mosquitto


def check(store: CloudStore, path: GatewayPath, ids: list[str], timeout: float) -> dict:
    rows = store.wait_for(str(path), len(ids), timeout)
    seqs = [s for s, _ in rows]
    with sqlite3.connect(store.db) as conn:
        stored_total = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return {
        "appended": len(ids),
        "stored": len(rows),
        "stored_rows_total": stored_total,
        "lost": len(set(ids) - {i for _, i in rows}),
        "gaps": sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        + (0 if not seqs or seqs[0] == 1 else 1),
        "order_kept": [i for _, i in rows] == ids,
    }


def drill(kind: str, seconds: float, rate: float, total: int, work: Path) -> dict:
    path = GatewayPath("drill", "compound-1", f"gw-{kind.replace('_', '-')}")
    with private_mosquitto(work / kind) as broker:
        store = CloudIngest(work / f"{kind}-cloud.db", broker.port, gateways=(path,)).start()
        rig = make_rig(path, work / f"{kind}-outbox.db", broker.port, resend_after_s=5.0)
        rig.uplink.start()
        ids: list[str] = []

        def produce() -> None:
            for k in range(total):
                ids.append(rig.outbox.append(event(k)).id)
                time.sleep(1 / rate)

        producer = threading.Thread(target=produce, daemon=True)
        started = time.monotonic()
        producer.start()
        time.sleep(2.0)
        if kind == "broker_stop":
            broker.stop()
            time.sleep(seconds)
            broker.start()
        elif kind == "broker_kill":
            broker.kill()
            time.sleep(seconds)
            broker.start()
        else:
            store.pause()
            time.sleep(seconds)
            store.resume()
        producer.join()
        result = check(store, path, ids, timeout=120)
        deadline = time.monotonic() + 60
        while rig.outbox.depth and time.monotonic() < deadline:
            time.sleep(0.1)
        result.update(
            outbox_left=rig.outbox.depth,
            rewinds=rig.uplink.rewinds,
            wall_s=round(time.monotonic() - started, 1),
            disruption_s=seconds,
        )
        rig.close()
        store.stop()
    result["ok"] = (
        result["lost"] == 0
        and result["gaps"] == 0
        and result["order_kept"]
        and result["outbox_left"] == 0
    )
    print(f"{kind}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="long uplink reliability drills")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--outage", type=float, default=None, help="broker down, seconds")
    parser.add_argument("--stall", type=float, default=None, help="consumer stopped, seconds")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    args = parser.parse_args()
    outage = args.outage or (5.0 if args.quick else 30.0)
    stall = args.stall or (10.0 if args.quick else 60.0)
    work = Path(tempfile.mkdtemp(prefix="drill-uplink-"))
    results = {}
    for kind, seconds in (("broker_stop", outage), ("broker_kill", outage), ("stall", stall)):
        total = int(args.rate * (seconds + 6))
        results[kind] = drill(kind, seconds, args.rate, total, work)
    print(
        json.dumps(
            {f"{k}_{m}": v for k, r in results.items() for m, v in r.items()}
            | {"all_ok": all(r["ok"] for r in results.values())}
        )
    )


if __name__ == "__main__":
    main()
