"""A small, real stand-in for the cloud's store, for the uplink drills.

Run as its own process (so a test can SIGSTOP or SIGKILL it)::

    python -m tests.utils.ack_consumer --port 1883 --db store.db

It subscribes to every gateway's ``event`` and ``reading`` with QoS 1 and a persistent
session, validates each payload with the wire codec, commits a batch into SQLite with a
unique ``(gateway, epoch, seq)`` (duplicates are ignored, not errors), and only *after* the
commit publishes an ``Ack`` with the stored ranges of each epoch on that gateway's ``cmd/ack``.
Invalid payloads go to a ``dead_letters`` table. The uplink drills run against the
cloud's real ingest (``python -m cloud.ingest``, tests/edge/uplink/conftest.py
``cloud_ingest``); this stand-in serves tests that need a store but not the cloud's
checks, e.g. gateways the cloud would want registered first (``cloud_store``).
"""

from __future__ import annotations

import argparse
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections import defaultdict

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from microbrain.protocol import MAX_ACK_RANGES, Ack, Event, ProtocolError, Reading, decode
from microbrain.protocol.topics import PREFIX

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, channel TEXT NOT NULL,
    payload BLOB NOT NULL, stored REAL NOT NULL, epoch TEXT NOT NULL DEFAULT '',
    UNIQUE (gateway, epoch, seq));
CREATE TABLE IF NOT EXISTS dead_letters (topic TEXT, reason TEXT, payload BLOB, stored REAL);
"""


def to_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges covering ``seqs``: [1,2,3,7] → [(1,3),(7,7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def run(
    host: str,
    port: int,
    db_path: str,
    client_id: str,
    username: str | None,
    password: str | None,
    batch: int = 1000,
    linger_s: float = 0.05,
) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if username:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(1000)

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            print(f"refused: {reason_code}", file=sys.stderr, flush=True)
            return
        c.subscribe([(f"{PREFIX}/+/+/+/event", 1), (f"{PREFIX}/+/+/+/reading", 1)])
        print("connected", flush=True)

    client.on_connect = on_connect
    client.on_message = lambda c, u, msg: inbox.put((msg.topic, bytes(msg.payload)))
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86_400
    # paho annotates the delays as int; its backoff arithmetic takes any float
    client.reconnect_delay_set(0.1, 1.0)  # type: ignore[arg-type]
    client.connect_async(host, port, 30, clean_start=False, properties=props)
    client.loop_start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        got = [first]
        deadline = time.monotonic() + linger_s
        while len(got) < batch:
            try:
                got.append(inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        rows, dead, seqs = [], [], defaultdict(list)  # seqs by (gateway, epoch)
        for topic, raw in got:
            try:
                message = decode(topic, raw)
            except ProtocolError as err:
                dead.append((topic, str(err), raw, time.time()))
                continue
            gw = message.topic.gateway
            payload = message.payload
            assert isinstance(payload, Event | Reading), topic  # what it subscribes to
            seq, epoch = payload.seq, payload.epoch
            rows.append(
                (
                    str(gw),
                    seq,
                    message.payload.id,
                    message.topic.channel.value,
                    raw,
                    time.time(),
                    epoch or "",
                )
            )
            seqs[(gw, epoch)].append(seq)
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR IGNORE INTO items (gateway, seq, id, channel, payload, stored, "
            "epoch) VALUES (?,?,?,?,?,?,?)",
            rows,
        )
        db.executemany("INSERT INTO dead_letters VALUES (?,?,?,?)", dead)
        db.execute("COMMIT")
        # only now, with the rows on disk, tell each gateway what it may forget
        for (gw, epoch), gw_seqs in seqs.items():
            ranges = to_ranges(gw_seqs)
            # one Ack carries at most MAX_ACK_RANGES, so that it fits in one payload
            for i in range(0, len(ranges), MAX_ACK_RANGES):
                ack = Ack(ranges=tuple(ranges[i : i + MAX_ACK_RANGES]), epoch=epoch)
                client.publish(gw.topic("cmd", "ack"), ack.to_json(), qos=1)
    client.loop_stop()
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--db", required=True)
    parser.add_argument("--client-id", default="mb-ack-consumer")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    run(args.host, args.port, args.db, args.client_id, args.username, args.password)


if __name__ == "__main__":
    main()
