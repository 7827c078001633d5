#!/usr/bin/env python
"""Throughput of the embedded broker candidates, side by side, in one run.

One paho-mqtt publisher process and one paho-mqtt subscriber process (MQTT 3.1.1,
the only version amqtt speaks) send 200-byte JSON messages over loopback through:

* Mosquitto (the system binary, generated config, as ``microbrain up`` starts it),
* amqtt (in this process, in a background thread: ``AmqttBroker``; ``microbrain up``
  never picks it, it refuses MQTT 5 clients; kept for the comparison),
* iotcore (rumqttd compiled into a wheel), when it is installed.

For each broker and QoS (0, 1) it reports msg/s = messages received / (last receipt -
first publish), how many were lost or duplicated, and the broker's CPU seconds per
1,000 messages (= cores it keeps busy per 1k msg/s). Runs alternate between brokers
so that a noisy neighbour on the shared cores hurts all of them alike; the figure is
the median of the repeats.

    .venv/bin/python scripts/bench_broker.py --quick     # about a minute: 8k messages
    .venv/bin/python scripts/bench_broker.py             # 50k messages, 3 repeats

The last line is one JSON object of figures (compare with ../shared/REFERENCE.md:
Mosquitto QoS 0 ~8.0k, QoS 1 5.2-6.0k; amqtt 3.0k / 1.5k msg/s).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from microbrain.broker.embedded import (
    AmqttBroker,
    MosquittoBroker,
    free_port,
    mosquitto_executable,
)

HOST = "127.0.0.1"
PAYLOAD_BYTES = 200
TOPIC = "mb/v1/bench/compound-1/gw-1/event"
IDLE_GIVE_UP_S = 5.0  # subscriber stops this long after the last message


def payload(seq: int) -> bytes:
    """A 200-byte JSON document carrying its sequence number."""
    head = json.dumps({"seq": seq, "kind": "illegal_parking", "building": "b-1", "pad": ""})
    pad = PAYLOAD_BYTES - len(head.encode())
    return head.replace('"pad": ""', '"pad": "' + "x" * pad + '"').encode()


def _client(client_id: str) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
    )
    c.max_inflight_messages_set(1000)  # same client window for every broker
    return c


def subscriber(port: int, qos: int, expected: int, ready: mp.Event, out: mp.Queue) -> None:
    """Count distinct sequence numbers until all arrived or the stream went idle."""
    seen: set[int] = set()
    dups = 0
    last = [0.0]

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal dups
        seq = json.loads(msg.payload)["seq"]
        if seq in seen:
            dups += 1
        seen.add(seq)
        last[0] = time.monotonic()

    c = _client(f"bench-sub-{qos}")
    c.on_message = on_message
    c.on_subscribe = lambda *_a: ready.set()
    c.connect(HOST, port, keepalive=30)
    c.subscribe(TOPIC, qos=qos)
    c.loop_start()
    start = time.monotonic()
    while len(seen) < expected:
        time.sleep(0.01)
        newest = last[0] or start
        if time.monotonic() - newest > IDLE_GIVE_UP_S:
            break
    c.disconnect()
    c.loop_stop()
    out.put({"received": len(seen), "duplicates": dups, "last_receipt": last[0]})


def publisher(port: int, qos: int, count: int, ready: mp.Event, out: mp.Queue) -> None:
    """Publish ``count`` messages as fast as paho takes them; wait for the PUBACKs."""
    messages = [payload(i) for i in range(count)]
    c = _client(f"bench-pub-{qos}")
    c.connect(HOST, port, keepalive=30)
    c.loop_start()
    if not ready.wait(10):
        out.put({"error": "subscriber did not subscribe within 10 s"})
        return
    start = time.monotonic()
    info = None
    for body in messages:
        info = c.publish(TOPIC, body, qos=qos)
    if info is not None and qos > 0:
        info.wait_for_publish(timeout=120)
    out.put({"first_publish": start, "published_s": time.monotonic() - start})
    c.disconnect()
    c.loop_stop()


def run_once(port: int, qos: int, count: int) -> dict[str, float]:
    """One publisher/subscriber pass through the broker listening on ``port``."""
    ctx = mp.get_context("spawn")
    ready, sub_out, pub_out = ctx.Event(), ctx.Queue(), ctx.Queue()
    sub = ctx.Process(target=subscriber, args=(port, qos, count, ready, sub_out))
    pub = ctx.Process(target=publisher, args=(port, qos, count, ready, pub_out))
    sub.start()
    pub.start()
    p = pub_out.get(timeout=300)
    s = sub_out.get(timeout=300)
    pub.join(30)
    sub.join(30)
    if "error" in p:
        raise RuntimeError(p["error"])
    elapsed = max(s["last_receipt"] - p["first_publish"], 1e-9)
    return {
        "msg_s": s["received"] / elapsed,
        "lost": count - s["received"],
        "duplicates": s["duplicates"],
    }


def broker_cpu_s(children: list[psutil.Process]) -> float:
    """CPU seconds of the broker: this process (amqtt's thread; the main thread only
    waits) plus the broker child processes that existed before the clients started."""
    total = time.process_time()
    for child in children:
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


BrokerFactory = Callable[[int, Path], AbstractContextManager[object]]


def brokers() -> dict[str, BrokerFactory]:
    """The candidates installed here, by name."""
    found: dict[str, BrokerFactory] = {
        "amqtt": lambda port, _d: AmqttBroker(HOST, port),
    }
    if mosquitto_executable():
        found = {"mosquitto": lambda port, d: MosquittoBroker(HOST, port, d), **found}
    try:
        from iotcore import Broker as IotcoreBroker  # optional candidate

        found["iotcore"] = lambda port, _d: IotcoreBroker(
            port=port, listen=HOST, max_inflight_count=1000
        )
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="about a minute: 8k messages, 3 runs of each"
    )
    parser.add_argument("--messages", type=int, help="messages per run (default 50k; 8k quick)")
    parser.add_argument("--repeats", type=int, help="runs per broker and QoS (default 3)")
    args = parser.parse_args()
    count = args.messages or (8_000 if args.quick else 50_000)
    repeats = args.repeats or 3
    logging.basicConfig(level=logging.WARNING)

    candidates = brokers()
    if "mosquitto" not in candidates:
        print(
            "mosquitto is not installed (apt-get install mosquitto): no reference figure",
            file=sys.stderr,
        )
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        name: {0: [], 1: []} for name in candidates
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for qos in (0, 1):
                for name, factory in candidates.items():
                    port = free_port(HOST)
                    with factory(port, Path(tmp) / f"{name}-{rep}-{qos}"):
                        children = psutil.Process().children(recursive=True)
                        cpu0 = broker_cpu_s(children)
                        r = run_once(port, qos, count)
                        # broker CPU seconds per 1,000 messages = cores busy per 1k msg/s
                        r["cpu_s_per_1k"] = (broker_cpu_s(children) - cpu0) / (count / 1000)
                    results[name][qos].append(r)
                    print(
                        f"{name:9s} qos{qos} run {rep + 1}/{repeats}: {r['msg_s']:8.0f} msg/s "
                        f"lost {r['lost']:.0f} dup {r['duplicates']:.0f} "
                        f"broker cpu {r['cpu_s_per_1k']:.2f} s/1k msgs",
                        flush=True,
                    )

    figures: dict[str, float | int] = {
        "messages_per_run": count,
        "repeats": repeats,
        "payload_bytes": PAYLOAD_BYTES,
    }
    for name, by_qos in results.items():
        for qos, runs in by_qos.items():
            figures[f"{name}_qos{qos}_msg_s"] = round(statistics.median(r["msg_s"] for r in runs))
            figures[f"{name}_qos{qos}_lost"] = int(sum(r["lost"] for r in runs))
            figures[f"{name}_qos{qos}_broker_cpu_s_per_1k_msgs"] = round(
                statistics.median(r["cpu_s_per_1k"] for r in runs), 3
            )
    for name in results:
        if name == "mosquitto" or "mosquitto" not in results:
            continue
        for qos in (0, 1):
            figures[f"{name}_over_mosquitto_qos{qos}"] = round(
                figures[f"{name}_qos{qos}_msg_s"] / figures[f"mosquitto_qos{qos}_msg_s"], 2
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
