"""Benchmark the gateway's store-and-forward path against raw paho, in one run.

Measures, against a private Mosquitto started here (persistence on, large queues):
  * raw paho QoS 1 publish rate (MQTT 5, the uplink's in-flight window, all PUBACKed):
    the reference;
  * durable outbox append rate: one fsynced transaction per item, and in batches of 100;
  * replay rate of a backlog through the uplink (QoS 1, until every item is PUBACKed);
  * resident memory while the backlog grows and while it replays (should stay flat).
Ratios are each rate ÷ the raw paho rate. Goal: replay ≥ 0.8.

    python scripts/bench_uplink.py            # 100,000-item backlog
    python scripts/bench_uplink.py --quick    # about a minute

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.outbox import Outbox
from edge.uplink import Uplink, UplinkSettings
from microbrain.broker.embedded import MosquittoBroker, free_port
from microbrain.protocol import Event, GatewayPath, Severity

PROC = psutil.Process()


def rss_mb() -> float:
    return PROC.memory_info().rss / 2**20


def sample_event(n: int) -> Event:
    return Event(
        kind="hydrant_pressure_low",
        source="b1-hydrant-top",
        building="b1",
        severity=Severity.CRITICAL,
        message="pressure_mpa 0.06 below 0.07 for 30 s",
        detail={"value": 0.06, "limit": 0.07, "n": n},
    )


def raw_paho_rate(port: int, path: GatewayPath, n: int) -> float:
    """QoS 1 publishes of the same payload size, timed until every PUBACK is in."""
    payload = sample_event(1).model_copy(update={"seq": 123456}).to_json()
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, rc, props):  # type: ignore[no-untyped-def]
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(UplinkSettings.max_inflight)  # the same window as the uplink
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic = path.topic("event")
    start = time.perf_counter()
    for _ in range(n):
        client.publish(topic, payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def append_rate(db: Path, seconds: float, batch: int) -> float:
    box = Outbox(db)
    items = [sample_event(n) for n in range(batch)]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if batch == 1:
            box.append(items[0])
        else:
            box.append_many(items)
        count += batch
    elapsed = time.perf_counter() - start
    box.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="outbox and uplink throughput vs raw paho")
    parser.add_argument("--quick", action="store_true", help="smaller backlog, about a minute")
    parser.add_argument("--backlog", type=int, default=None)
    args = parser.parse_args()
    backlog = args.backlog or (50_000 if args.quick else 100_000)
    raw_n = 30_000 if args.quick else 50_000
    append_s = 4.0 if args.quick else 8.0

    work = Path(tempfile.mkdtemp(prefix="bench-uplink-"))
    (work / "broker").mkdir()
    broker = MosquittoBroker(port=free_port(), data_dir=work / "broker").start()
    port = broker.port
    path = GatewayPath("bench", "compound-1", f"gw-{os.getpid()}")
    try:
        raw_before = raw_paho_rate(port, path, raw_n)
        print(f"raw paho QoS 1 publish: {raw_before:,.0f} msg/s", flush=True)
        single = append_rate(work / "append1.db", append_s, 1)
        print(f"durable append, 1 per transaction: {single:,.0f} items/s", flush=True)
        batched = append_rate(work / "append100.db", append_s, 100)
        print(f"durable append, 100 per transaction: {batched:,.0f} items/s", flush=True)

        # grow a backlog (the cloud unreachable), watching memory
        box = Outbox(work / "backlog.db")
        rss_samples = []
        chunk = [sample_event(n) for n in range(1000)]
        rss_start = rss_mb()
        for k in range(backlog // 1000):
            box.append_many(chunk)
            if k % 10 == 0:
                rss_samples.append(rss_mb())
        rss_end = rss_mb()
        print(
            f"backlog of {box.depth:,} items: RSS {rss_start:.1f} → {rss_end:.1f} MB "
            f"(max {max(rss_samples):.1f})",
            flush=True,
        )

        uplink = Uplink(
            path,
            box,
            UplinkSettings(
                host="127.0.0.1", port=port, max_unacked=backlog + 1, resend_after_s=3600
            ),
        )
        replay_rss = []
        start = time.perf_counter()
        uplink.start()
        deadline = time.monotonic() + 600
        while (uplink.published < backlog or uplink.pending) and time.monotonic() < deadline:
            time.sleep(0.01)
            if len(replay_rss) < 10_000:
                replay_rss.append(rss_mb())
        replay_s = time.perf_counter() - start
        uplink.stop()
        replay = backlog / replay_s
        print(
            f"replay of {backlog:,}: {replay:,.0f} msg/s ({replay_s:.1f} s), "
            f"RSS max {max(replay_rss):.1f} MB",
            flush=True,
        )
        raw_after = raw_paho_rate(port, path, raw_n)
        print(f"raw paho QoS 1 publish (again): {raw_after:,.0f} msg/s", flush=True)
        # the machine is shared: take the reference on both sides of the replay
        raw = (raw_before + raw_after) / 2
        box.close()
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        json.dumps(
            {
                "raw_paho_qos1_publish_msg_per_s": round(raw),
                "raw_paho_qos1_publish_before_after_msg_per_s": [
                    round(raw_before),
                    round(raw_after),
                ],
                "outbox_append_durable_single_items_per_s": round(single),
                "outbox_append_durable_batch100_items_per_s": round(batched),
                "outbox_append_single_over_raw_publish": round(single / raw, 3),
                "outbox_append_batch100_over_raw_publish": round(batched / raw, 3),
                "replay_backlog_items": backlog,
                "replay_qos1_msg_per_s": round(replay),
                "replay_over_raw_publish": round(replay / raw, 3),
                "replay_goal_ratio": 0.8,
                "rss_mb_backlog_growth_start": round(rss_start, 1),
                "rss_mb_backlog_growth_end": round(rss_end, 1),
                "rss_mb_during_replay_max": round(max(replay_rss), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
