"""The uplink against a real Mosquitto: its pump survives a busy database and does not
spin when the outbox evicted what it was about to send."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge.outbox import Outbox, OutboxLimits
from edge.uplink import Uplink, UplinkSettings
from microbrain.protocol import Event, GatewayPath, Reading, Severity
from tests.utils.services import MosquittoProcess


def wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def start_uplink(outbox: Outbox, port: int) -> Uplink:
    uplink = Uplink(
        GatewayPath("t-uplink", "compound-1", "gw-1"),
        outbox,
        UplinkSettings(host="127.0.0.1", port=port, backoff_min_s=0.1, backoff_max_s=0.5),
    ).start()
    assert uplink.wait_connected(10)
    return uplink


def critical() -> Event:
    return Event(kind="fire_alarm", source="s1", severity=Severity.CRITICAL)


def test_pump_does_not_spin_when_new_items_were_evicted(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    # full of unacknowledged criticals (nobody acks here): each new reading is evicted
    # the moment it is appended, so the seq above the pump's cursor never exists
    outbox = Outbox(tmp_path / "o.db", OutboxLimits(max_items=5))
    uplink = start_uplink(outbox, mosquitto.port)
    try:
        outbox.append_many([critical() for _ in range(5)])
        assert wait(lambda: uplink.published == 5)
        outbox.append(Reading(sensor="h1", kind="hydrant_pressure", values={"p": 0.3}))
        assert outbox.evicted == 1 and outbox.last_seq == 6
        # count the pump's reads of the outbox (CPU time measured this on a loaded machine,
        # with every other thread of the process in it): an idle pump reads about 5 times a
        # second (it waits 0.2 s for new items), a spinning one thousands of times
        reads: list[float] = []
        real_after = outbox.after

        def counted_after(seq: int, limit: int = 500) -> list:
            reads.append(time.monotonic())
            return real_after(seq, limit)

        outbox.after = counted_after  # type: ignore[method-assign]
        time.sleep(0.3)
        before, wall0 = len(reads), time.monotonic()
        time.sleep(2.0)
        n, wall = len(reads) - before, time.monotonic() - wall0
        assert n < 50 * wall, f"{n} outbox reads in {wall:.1f} s: the pump spins"
        assert uplink.published == 5
    finally:
        uplink.stop()
        outbox.close()


def test_pump_survives_a_failing_database(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    """The outbox's database fails for a while (here its connection is closed under the
    pump, so every read raises sqlite3.ProgrammingError); once it works again, uploads
    go on."""
    outbox = Outbox(tmp_path / "o.db")
    uplink = start_uplink(outbox, mosquitto.port)
    try:
        outbox.append(critical())
        assert wait(lambda: uplink.published == 1)
        with outbox._lock:
            db = outbox._db
            db.close()
        time.sleep(1.5)  # the pump's reads fail meanwhile
        with outbox._lock:
            outbox._db = sqlite3.connect(
                tmp_path / "o.db", check_same_thread=False, isolation_level=None
            )
        outbox.append(critical())
        assert wait(lambda: uplink.published == 2), "the pump died on the failing database"
    finally:
        uplink.stop()
        outbox.close()


def test_stop_disconnects_cleanly_and_closes_the_socket(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    uplink = start_uplink(outbox, mosquitto.port)
    client_id = uplink._client._client_id.decode()
    uplink.stop()
    outbox.close()
    assert uplink._client.socket() is None
    # the broker saw a DISCONNECT ("disconnected."), not a dropped socket ("closed its
    # connection") nor a keepalive timeout, either of which publishes the last will
    assert wait(lambda: f"Client {client_id} disconnected." in mosquitto.log.read_text(), 5), (
        mosquitto.log.read_text()[-2000:]
    )
