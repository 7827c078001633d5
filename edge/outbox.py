"""The gateway's durable outbox: everything bound for the cloud waits here until the
cloud says it committed it.

An append is on disk (SQLite WAL, ``synchronous=FULL``) before :meth:`Outbox.append`
returns, so it survives SIGKILL and power loss. Each item is stamped with the gateway's
monotonic ``seq``; the cloud acknowledges stored sequence ranges on ``cmd/ack`` and only
then does :meth:`Outbox.ack` delete them — never on the broker's PUBACK, which covers one
hop only.

Each outbox file has an *epoch*, 16 random hex digits made when the file is created and
stamped on every item next to its ``seq``: a replaced disk or a wiped data folder starts
a new file, a new epoch and ``seq`` 1 again, and the cloud keys sequences by (gateway,
epoch), so the new items are never taken for the old ones. An ack names its epoch; acks
of another epoch (for the items of a file since deleted) are ignored, or they would
delete new items that happen to have the same ``seq``.

Bounded by bytes and items: when full, the lowest priority goes first and the oldest of
that priority first, so critical events are never evicted before routine readings.
Every eviction is counted (and the agent reports the count in its heartbeat).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from prometheus_client import Counter, Gauge

from microbrain.protocol import Channel, Event, Reading

log = logging.getLogger(__name__)

EVICTED = Counter("mb_edge_outbox_evicted_total", "items evicted from a full outbox", ["priority"])
DEPTH = Gauge("mb_edge_outbox_depth", "items waiting for the cloud's ack")
FOREIGN_ACKS = Counter(
    "mb_edge_outbox_foreign_acks_total", "acks ignored because they name another outbox epoch"
)

# readings are routine; an event's priority is its severity (info 1 … critical 3)
READING_PRIORITY = 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq      INTEGER PRIMARY KEY,
    channel  TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    created  REAL    NOT NULL,
    payload  BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_priority ON items (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

OutboxPayload = Event | Reading


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored item, ready to publish: ``payload`` is the JSON with ``seq`` stamped."""

    seq: int
    channel: Channel
    priority: int
    created: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    max_bytes: int = 256 * 1024 * 1024
    max_items: int = 2_000_000


def new_epoch() -> str:
    """16 random hex digits (64 bits): two files of one gateway never share one."""
    return secrets.token_hex(8)


def priority_of(payload: OutboxPayload) -> int:
    """Readings are routine (0); events rank by severity."""
    return READING_PRIORITY if isinstance(payload, Reading) else int(payload.severity)


class Outbox:
    """A durable, bounded, prioritised FIFO keyed by the gateway's sequence number.

    Thread-safe: the sensor thread appends, the uplink thread reads and the MQTT thread
    acknowledges, all through one connection guarded by a lock.

    >>> box = Outbox(":memory:")  # doctest: +SKIP
    >>> box.append(Reading(sensor="h1", kind="hydrant_pressure")).seq  # doctest: +SKIP
    1
    """

    def __init__(
        self, path: str | Path, limits: OutboxLimits | None = None, *, durable: bool = True
    ) -> None:
        self.path = str(path)
        self.limits = limits or OutboxLimits()
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at each commit, so an acknowledged append survives
        # power loss, not just a process kill
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(seq), 0) FROM items"
        ).fetchone()
        self._count, self._bytes, max_seq = int(row[0]), int(row[1]), int(row[2])
        self._next_seq = max(max_seq, self._meta("last_seq")) + 1
        self._evicted = self._meta("evicted")
        self.epoch, self._legacy_last_seq = self._load_epoch(self._next_seq - 1)
        DEPTH.set(self._count)

    # -- writing -------------------------------------------------------------------

    def append(self, payload: OutboxPayload) -> OutboxPayload:
        """Stamp the next ``seq`` on ``payload``, store it durably, return the stamped copy."""
        return self.append_many([payload])[0]

    def append_many(self, payloads: Sequence[OutboxPayload]) -> list[OutboxPayload]:
        """Append several items in one transaction (one fsync); returns the stamped copies."""
        if not payloads:
            return []
        now = time.time()
        with self._lock:
            stamped: list[OutboxPayload] = []
            rows = []
            seq = self._next_seq
            for payload in payloads:
                item = payload.model_copy(update={"seq": seq, "epoch": self.epoch})
                channel = Channel.READING if isinstance(item, Reading) else Channel.EVENT
                rows.append((seq, channel.value, priority_of(item), now, item.to_json()))
                stamped.append(item)
                seq += 1
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO items (seq, channel, priority, created, payload) "
                    "VALUES (?,?,?,?,?)",
                    rows,
                )
                self._set_meta("last_seq", seq - 1)
                self._count += len(rows)
                self._bytes += sum(len(r[4]) for r in rows)
                self._evict_over_limit()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            self._next_seq = seq
            DEPTH.set(self._count)
            self._appended.notify_all()
            return stamped

    def _evict_over_limit(self) -> None:
        # inside the append transaction: lowest priority first, oldest first
        before = self._evicted
        while self._count > self.limits.max_items or self._bytes > self.limits.max_bytes:
            over_items = self._count - self.limits.max_items
            batch = max(1, min(1000, over_items if over_items > 0 else 64))
            victims = self._db.execute(
                "SELECT seq, priority, LENGTH(payload) FROM items ORDER BY priority, seq LIMIT ?",
                (batch,),
            ).fetchall()
            if not victims:
                return
            taken = []
            for seq, priority, size in victims:
                if self._count <= self.limits.max_items and self._bytes <= self.limits.max_bytes:
                    break
                taken.append(seq)
                self._count -= 1
                self._bytes -= size
                EVICTED.labels(priority=str(priority)).inc()
            self._db.executemany("DELETE FROM items WHERE seq = ?", ((s,) for s in taken))
            self._evicted += len(taken)
            log.warning(
                "outbox full: evicted %d item(s) of priority %s and below",
                len(taken),
                victims[len(taken) - 1][1] if taken else "?",
            )
        if self._evicted != before:
            self._set_meta("evicted", self._evicted)

    # -- reading -------------------------------------------------------------------

    def after(self, seq: int, limit: int = 500) -> list[OutboxItem]:
        """Items with a sequence above ``seq``, in order (the replay cursor's next batch)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, channel, priority, created, payload FROM items "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [OutboxItem(r[0], Channel(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    def wait_for_items_after(self, seq: int, timeout: float) -> bool:
        """Block until something above ``seq`` was appended, or ``timeout`` passes."""
        with self._lock:
            if self._next_seq - 1 > seq:
                return True
            return self._appended.wait_for(lambda: self._next_seq - 1 > seq, timeout)

    def first_seq(self) -> int | None:
        """The oldest unacknowledged sequence number, or None when empty."""
        with self._lock:
            row = self._db.execute("SELECT MIN(seq) FROM items").fetchone()
        return int(row[0]) if row[0] is not None else None

    def oldest_age_s(self, now: float | None = None) -> float:
        with self._lock:
            # items are appended in time order: the lowest seq is the oldest (uses the key)
            row = self._db.execute("SELECT created FROM items ORDER BY seq LIMIT 1").fetchone()
        return max(0.0, (now or time.time()) - row[0]) if row is not None else 0.0

    @property
    def depth(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def evicted(self) -> int:
        """Items evicted because the outbox was full, over its whole life."""
        return self._evicted

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    # -- acknowledging -------------------------------------------------------------

    def ack(self, ranges: Iterable[tuple[int, int]], epoch: str | None = None) -> int:
        """Delete the inclusive sequence ranges the cloud committed in ``epoch``; returns
        how many went.

        An ack of another epoch deletes nothing (counted and logged). An ack without an
        epoch (the cloud acknowledging items that carried none) reaches only the items
        written before this file had an epoch, i.e. by an older version of the gateway.
        """
        if epoch != self.epoch:
            ranges = self._legacy_ranges(ranges, epoch)
        with self._lock:
            removed = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for first, last in ranges:
                    row = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM items "
                        "WHERE seq BETWEEN ? AND ?",
                        (first, last),
                    ).fetchone()
                    if row[0]:
                        self._db.execute(
                            "DELETE FROM items WHERE seq BETWEEN ? AND ?", (first, last)
                        )
                        removed += row[0]
                        self._count -= row[0]
                        self._bytes -= row[1]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            DEPTH.set(self._count)
            return removed

    def _legacy_ranges(
        self, ranges: Iterable[tuple[int, int]], epoch: str | None
    ) -> list[tuple[int, int]]:
        if epoch is not None:
            FOREIGN_ACKS.inc()
            log.warning(
                "ignored an ack for outbox epoch %s (this outbox is epoch %s)", epoch, self.epoch
            )
            return []
        top = self._legacy_last_seq
        return [(first, min(last, top)) for first, last in ranges if first <= top]

    # -- housekeeping --------------------------------------------------------------

    def _load_epoch(self, last_seq: int) -> tuple[str, int]:
        """This file's epoch (made now if the file has none) and the last seq written
        before it had one (0 for a file made with its epoch)."""
        self._db.execute("BEGIN IMMEDIATE")  # two processes opening one new file agree
        try:
            row = self._db.execute("SELECT value FROM identity WHERE key = 'epoch'").fetchone()
            if row is not None:
                self._db.execute("COMMIT")
                return str(row[0]), self._meta("legacy_last_seq")
            epoch = new_epoch()
            self._db.execute("INSERT INTO identity (key, value) VALUES ('epoch', ?)", (epoch,))
            self._set_meta("legacy_last_seq", last_seq)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if last_seq:
            log.info(
                "outbox %s: epoch %s from seq %d on (items up to it carry none)",
                self.path,
                epoch,
                last_seq + 1,
            )
        return epoch, last_seq

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _reload_totals(self) -> None:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM items"
        ).fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
