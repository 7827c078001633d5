"""The durable outbox: order, seq stamping, acks, bounds and priorities, SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxLimits
from microbrain.protocol import Event, Reading, Severity


def reading(n: int = 0) -> Reading:
    return Reading(sensor="h1", kind="hydrant_pressure", values={"pressure_mpa": 0.3, "n": n})


def event(severity: Severity) -> Event:
    return Event(kind="hydrant_pressure_low", source="h1", severity=severity)


def test_append_stamps_monotonic_seq_and_replays_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    stamped = [box.append(reading(n)) for n in range(5)] + box.append_many([reading(5), reading(6)])
    assert [p.seq for p in stamped] == list(range(1, 8))
    items = box.after(0)
    assert [i.seq for i in items] == list(range(1, 8))
    assert [json.loads(i.payload)["seq"] for i in items] == list(range(1, 8))
    assert [json.loads(i.payload)["id"] for i in items] == [p.id for p in stamped]
    assert [i.seq for i in box.after(3, limit=2)] == [4, 5]


def test_empty_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.depth == 0 and box.first_seq() is None and box.after(0) == []
    assert box.oldest_age_s() == 0.0 and box.append_many([]) == []
    assert box.ack([(1, 100)], box.epoch) == 0


def test_ack_removes_only_named_ranges_and_seq_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    for n in range(10):
        box.append(reading(n))
    assert box.ack([(1, 3), (5, 5), (9, 20)], box.epoch) == 6
    assert [i.seq for i in box.after(0)] == [4, 6, 7, 8]
    assert box.ack([(1, 3)], box.epoch) == 0  # a repeated ack is harmless
    box.ack([(1, 10)], box.epoch)
    box.close()
    # everything acked: the next seq still continues, never reused
    again = Outbox(path)
    assert again.depth == 0
    assert again.append(reading()).seq == 11


def test_full_outbox_evicts_routine_readings_before_critical_events(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxLimits(max_items=10))
    critical = [box.append(event(Severity.CRITICAL)) for _ in range(4)]
    warnings = [box.append(event(Severity.WARNING)) for _ in range(2)]
    readings = [box.append(reading(n)) for n in range(4)]
    assert box.depth == 10 and box.evicted == 0
    more = [box.append(reading(n)) for n in range(4, 10)]  # 6 more readings
    kept = {i.seq for i in box.after(0)}
    assert box.depth == 10 and box.evicted == 6
    assert {p.seq for p in critical + warnings} <= kept
    # oldest readings went first
    assert kept - {p.seq for p in critical + warnings} == {p.seq for p in more[2:]}
    assert not kept & {p.seq for p in readings}
    # more criticals push out the remaining readings, then the warnings, never a critical
    new_critical = [box.append(event(Severity.CRITICAL)) for _ in range(5)]
    kept = {i.seq for i in box.after(0)}
    assert {p.seq for p in critical + new_critical} <= kept
    assert kept == {p.seq for p in critical + new_critical} | {warnings[1].seq}
    assert box.evicted == 6 + 5


def test_full_outbox_of_criticals_drops_an_incoming_reading(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxLimits(max_items=3))
    crit = [box.append(event(Severity.CRITICAL)) for _ in range(3)]
    box.append(reading())
    assert [i.seq for i in box.after(0)] == [p.seq for p in crit]
    assert box.evicted == 1


def test_byte_limit_bounds_the_file_content(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxLimits(max_bytes=20_000))
    for n in range(500):
        box.append(reading(n))
    assert box.size_bytes <= 20_000 and box.evicted > 0
    assert box.depth == len(box.after(0, limit=10_000))


def test_evicted_count_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxLimits(max_items=2))
    for n in range(5):
        box.append(reading(n))
    box.close()
    assert Outbox(tmp_path / "o.db", OutboxLimits(max_items=2)).evicted == 3


def test_sigkill_while_appending_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.uplink.append_worker", str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.stdout is not None
    confirmed: list[tuple[int, str]] = []
    deadline = time.monotonic() + 20
    while len(confirmed) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seq, ident = line.split()
        confirmed.append((int(seq), ident.decode()))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # lines written after our last read were acknowledged too: read the rest of the pipe
    for line in proc.stdout.read().splitlines():
        if line.count(b" ") == 1:
            seq, ident = line.split()
            confirmed.append((int(seq), ident.decode()))
    assert len(confirmed) >= 300, "the worker did not get going"
    box = Outbox(path)
    stored = {
        json.loads(i.payload)["seq"]: json.loads(i.payload)["id"]
        for i in box.after(0, limit=1_000_000)
    }
    for n, want in confirmed:
        assert stored.get(n) == want, f"seq {n} acknowledged but lost"
    # no gaps: the store holds exactly 1..max
    assert sorted(stored) == list(range(1, max(stored) + 1))
    assert box.append(reading()).seq == max(stored) + 1


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_wait_for_items(tmp_path: Path, n: int) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append_many([reading(i) for i in range(n)])
    assert box.wait_for_items_after(0, 0.01) is (n > 0)


def test_oldest_age(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    first_before = time.time()
    box.append(reading())
    time.sleep(0.05)
    second_after = time.time()
    box.append(reading())
    assert box.oldest_age_s() >= 0.05
    now = time.time() + 10
    # bounded by the instants around the append, not by how fast the machine is
    assert box.oldest_age_s(now) <= now - first_before
    before_ack = box.oldest_age_s(now)
    box.ack([(1, 1)], box.epoch)
    assert box.oldest_age_s() < box.oldest_age_s(time.time() + 10)
    # after the ack the age is the second item's: appended after second_after, 50 ms
    # younger than the first
    after_ack = box.oldest_age_s(now)
    assert after_ack <= now - second_after and before_ack - after_ack >= 0.05
