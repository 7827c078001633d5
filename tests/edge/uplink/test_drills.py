"""Reliability drills against real Mosquitto processes and the cloud's real ingest.

CI versions: a few seconds of outage instead of 30 s; scripts/drill_uplink.py runs the
long ones. Each drill checks the same end state: every appended item is in the store,
exactly once, seq 1..N without a gap, each with the id it was appended with, and the
outbox empty (the store's acks came back).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from microbrain.protocol import GatewayPath
from tests.edge.uplink.conftest import ROOT, CloudStore
from tests.edge.uplink.gateway_rig import event, make_rig
from tests.utils.services import MosquittoProcess


def status_watch(port: int, path: GatewayPath) -> list[dict]:
    """Every status the broker delivers for ``path`` (retained ones included)."""
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen: list[dict] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    client.connect("127.0.0.1", port)
    client.subscribe(path.topic("status"), qos=1)
    client.loop_start()
    return seen


def wait_until(cond: Callable[[], object], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


def assert_all_stored(
    store: CloudStore, path: GatewayPath, ids: list[str], timeout: float = 30
) -> None:
    rows = store.wait_for(str(path), len(ids), timeout)
    assert [seq for seq, _ in rows] == list(range(1, len(ids) + 1)), "gap or loss in the store"
    assert [i for _, i in rows] == ids, "store order differs from the append order"


def wait_empty(outbox, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while outbox.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.depth == 0, f"{outbox.depth} items never acknowledged"


def stream(rig, n: int, per_s: float, ids: list[str], done: threading.Event) -> threading.Thread:
    def run() -> None:
        for k in range(n):
            ids.append(rig.outbox.append(event(k)).id)
            time.sleep(1 / per_s)
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_steady_stream_reaches_the_store(
    tmp_path: Path,
    mosquitto: MosquittoProcess,
    cloud_ingest: Callable[..., CloudStore],
    gateway_path: GatewayPath,
) -> None:
    store = cloud_ingest(mosquitto.port, gateway_path)
    rig = make_rig(gateway_path, tmp_path / "outbox.db", mosquitto.port)
    rig.uplink.start()
    ids = [rig.outbox.append(event(k)).id for k in range(500)]
    assert_all_stored(store, gateway_path, ids)
    wait_empty(rig.outbox)
    rig.close()


def _outage_drill(
    tmp_path: Path,
    broker: MosquittoProcess,
    store_factory,
    path: GatewayPath,
    how: Callable[[MosquittoProcess], None],
    outage_s: float,
) -> None:
    store = store_factory(broker.port, path)
    rig = make_rig(path, tmp_path / "outbox.db", broker.port)
    rig.uplink.start()
    ids: list[str] = []
    done = threading.Event()
    stream(rig, 1500, 500, ids, done)
    time.sleep(1.0)
    how(broker)
    time.sleep(outage_s)
    assert not rig.uplink.connected.is_set()
    broker.start()
    assert done.wait(30)
    assert_all_stored(store, path, ids, timeout=40)
    wait_empty(rig.outbox)
    rig.close()


def test_broker_stopped_mid_stream_and_restarted(
    tmp_path: Path, mosquitto: MosquittoProcess, cloud_ingest, gateway_path: GatewayPath
) -> None:
    _outage_drill(tmp_path, mosquitto, cloud_ingest, gateway_path, lambda b: b.stop(), 3.0)


def test_broker_sigkilled_mid_stream(
    tmp_path: Path, mosquitto: MosquittoProcess, cloud_ingest, gateway_path: GatewayPath
) -> None:
    _outage_drill(tmp_path, mosquitto, cloud_ingest, gateway_path, lambda b: b.kill(), 2.0)


def test_consumer_stalled_during_a_burst(
    tmp_path: Path, mosquitto: MosquittoProcess, cloud_ingest, gateway_path: GatewayPath
) -> None:
    store = cloud_ingest(mosquitto.port, gateway_path)
    rig = make_rig(gateway_path, tmp_path / "outbox.db", mosquitto.port, resend_after_s=2.0)
    rig.uplink.start()
    store.pause()
    ids = [p.id for p in rig.outbox.append_many([event(k) for k in range(3000)])]
    # unacknowledged past resend_after_s, the gateway goes back and resends (the store
    # dedupes): waited for, not slept on — sending 3,000 items once can outlast a fixed
    # sleep on a loaded machine, and then no resend had come due yet
    assert wait_until(lambda: rig.uplink.rewinds >= 1)
    assert rig.outbox.depth == 3000  # nothing leaves without the store's ack
    store.resume()
    assert_all_stored(store, gateway_path, ids)
    wait_empty(rig.outbox)
    assert rig.uplink.rewinds >= 1
    rig.close()


def test_gateway_sigkilled_while_appending_and_restarted(
    tmp_path: Path, mosquitto: MosquittoProcess, cloud_ingest, gateway_path: GatewayPath
) -> None:
    store = cloud_ingest(mosquitto.port, gateway_path)
    db = tmp_path / "outbox.db"
    args = [
        sys.executable,
        "-m",
        "tests.edge.uplink.gateway_worker",
        str(db),
        str(mosquitto.port),
        gateway_path.community,
        gateway_path.compound,
        gateway_path.gateway,
    ]
    proc = subprocess.Popen([*args, "append"], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    confirmed: list[tuple[int, str]] = []
    while len(confirmed) < 400:
        line = proc.stdout.readline()
        assert line, "worker died"
        seq, ident = line.split()
        confirmed.append((int(seq), ident.decode()))
    statuses = status_watch(mosquitto.port, gateway_path)
    assert wait_until(lambda: statuses and statuses[-1]["state"] == "online")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # the broker publishes the gateway's retained last will at once
    assert wait_until(lambda: statuses[-1]["state"] == "offline")
    for line in proc.stdout.read().splitlines():
        if line.count(b" ") == 1:
            seq, ident = line.split()
            confirmed.append((int(seq), ident.decode()))
    # restart in drain mode: it appends nothing, only forwards what the outbox holds
    drain = subprocess.Popen([*args, "drain"], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        rows = store.wait_for(str(gateway_path), len(confirmed), 30)
        stored = dict(rows)
        for n, want in confirmed:
            assert stored.get(n) == want, f"seq {n} appended before the kill but never stored"
        assert sorted(stored) == list(range(1, max(stored) + 1))
        assert drain.stdout is not None
        assert drain.stdout.readline().strip() == b"empty"  # everything acked after restart
    finally:
        drain.kill()
        drain.wait()
