"""Uploads evidence files (snapshots, clips) to the cloud over HTTP.

Events travel on MQTT and are small; their pictures go separately, once the cloud has
stored the event (it refuses evidence of an event it does not know). Every file to send
is a row in a small SQLite queue written *before* the event enters the outbox, so a
crash between the two loses no picture. A file leaves the queue only when the cloud
answers 201 (it checked the sha256) — or is given up with a counted, logged reason
when the cloud says the file itself is wrong, or still does not know the event
``ORPHAN_AFTER_S`` after the file was queued (the event was evicted from a full outbox
and will never arrive); the file stays on disk either way.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

from microbrain.protocol import Event

log = logging.getLogger(__name__)

UPLOADS = Counter(
    "mb_edge_evidence_uploads_total", "evidence upload attempts, by outcome", ["outcome"]
)
PENDING = Gauge("mb_edge_evidence_pending", "evidence files waiting to be uploaded")

# the cloud does not know the event yet (still in the outbox / in flight): try again
_RETRY_STATUSES = {404, 408, 425, 429, 500, 502, 503, 504}
# … but not forever: an event evicted from the outbox never reaches the cloud, and its
# files would be retried for the gateway's lifetime. Two days covers any outbox backlog
# the uplink drains (a cloud that is down answers nothing, not 404, and is not counted).
ORPHAN_AFTER_S = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class PendingUpload:
    event_id: str
    name: str
    path: Path
    attempts: int
    queued_at: float = 0.0


class EvidenceQueue:
    """Durable list of files still to upload (SQLite, WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pending (event_id TEXT NOT NULL, name TEXT NOT NULL, "
                "path TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                "next_try REAL NOT NULL DEFAULT 0, queued_at REAL NOT NULL DEFAULT 0, "
                "PRIMARY KEY (event_id, name))"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
            if "queued_at" not in columns:  # a queue written before orphans were given up
                self._db.execute("ALTER TABLE pending ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")
            # rows of unknown age count from now: never given up early
            self._db.execute("UPDATE pending SET queued_at = ? WHERE queued_at = 0", (time.time(),))
        PENDING.set(self.depth)

    def add(self, event: Event, directory: Path) -> None:
        """Queue every evidence file the event declares (idempotent)."""
        if not event.evidence:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO pending (event_id, name, path, queued_at) "
                "VALUES (?, ?, ?, ?)",
                [
                    (event.id, ref.name, str(directory / ref.name), time.time())
                    for ref in event.evidence
                ],
            )
        PENDING.set(self.depth)

    def due(self, now: float, limit: int = 20) -> list[PendingUpload]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, name, path, attempts, queued_at FROM pending WHERE next_try <= ? "
                "ORDER BY next_try LIMIT ?",
                (now, limit),
            ).fetchall()
        return [PendingUpload(e, n, Path(p), a, q) for e, n, p, a, q in rows]

    def done(self, item: PendingUpload) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM pending WHERE event_id = ? AND name = ?", (item.event_id, item.name)
            )
        PENDING.set(self.depth)

    def later(self, item: PendingUpload, next_try: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE pending SET attempts = attempts + 1, next_try = ? "
                "WHERE event_id = ? AND name = ?",
                (next_try, item.event_id, item.name),
            )

    @property
    def depth(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EvidenceUploader:
    """A thread that PUTs queued files to ``{base_url}/api/evidence/{event}/{name}``
    with the gateway's credentials (HTTP Basic), backing off per file on failure."""

    def __init__(
        self,
        queue: EvidenceQueue,
        base_url: str,
        username: str,
        password: str | None,
        *,
        timeout_s: float = 30.0,
        max_backoff_s: float = 600.0,
        orphan_after_s: float = ORPHAN_AFTER_S,
    ) -> None:
        self.queue = queue
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        self._auth = f"Basic {token}"
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.orphan_after_s = orphan_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def upload_once(self, item: PendingUpload, now: float | None = None) -> str:
        """Try one file; returns the outcome label (also counted)."""
        outcome = self._attempt(item)
        now = time.time() if now is None else now
        if outcome == "unknown_event":
            if now - item.queued_at >= self.orphan_after_s:
                log.error(
                    "evidence %s of event %s given up: the cloud still does not know the "
                    "event %.0f h after it was queued (evicted from the outbox?); the file "
                    "stays at %s",
                    item.name,
                    item.event_id,
                    (now - item.queued_at) / 3600,
                    item.path,
                )
                outcome = "orphaned"
            else:
                outcome = "retry"
        UPLOADS.labels(outcome).inc()
        if outcome in ("stored", "missing_file", "refused", "orphaned"):
            self.queue.done(item)
        else:
            delay = min(self.max_backoff_s, 2.0 * 2 ** min(item.attempts, 10))
            self.queue.later(item, time.time() + delay)
        return outcome

    def _attempt(self, item: PendingUpload) -> str:
        try:
            body = item.path.read_bytes()
        except OSError as err:
            log.error(
                "evidence %s of event %s cannot be read (%s); not uploading it",
                item.name,
                item.event_id,
                err,
            )
            return "missing_file"
        request = urllib.request.Request(
            f"{self.base_url}/api/evidence/{item.event_id}/{item.name}",
            data=body,
            method="PUT",
            headers={"Authorization": self._auth, "Content-Type": "application/octet-stream"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return "stored" if response.status in (200, 201) else "retry"
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return "unknown_event"  # not yet (in flight), or never (evicted)
            if err.code in _RETRY_STATUSES:
                return "retry"
            detail = err.read(300).decode(errors="replace")
            if err.code in (401, 403):
                # wrong credentials are a configuration fault: keep the file queued
                log.error(
                    "cloud refused evidence upload credentials (%s): %s; check the "
                    "gateway's password in the cloud (PUT /api/gateways/{id}/password)",
                    err.code,
                    detail,
                )
                return "unauthorized"
            log.error(
                "cloud refused evidence %s of event %s (%s): %s",
                item.name,
                item.event_id,
                err.code,
                detail,
            )
            return "refused"
        except OSError as err:
            log.debug("evidence upload to %s failed: %s", self.base_url, err)
            return "unreachable"

    def run_pending(self, now: float | None = None) -> int:
        """Upload everything that is due; returns how many were stored."""
        stored = 0
        for item in self.queue.due(time.time() if now is None else now):
            if self._stop.is_set():
                break
            stored += self.upload_once(item, now) == "stored"
        return stored

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:  # the uploader must outlive any one bad file
                log.exception("evidence upload round failed")
            self._stop.wait(interval_s)

    def start(self, interval_s: float = 2.0) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="evidence-upload", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
