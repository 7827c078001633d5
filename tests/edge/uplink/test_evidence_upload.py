"""The evidence queue keeps every file until the cloud stored it (the happy path runs
end to end through the real cloud in tests/microbrain/test_up.py)."""

from __future__ import annotations

import time
from pathlib import Path

from edge.evidence_upload import EvidenceQueue, EvidenceUploader
from microbrain.broker.embedded import free_port
from microbrain.protocol import Event, EvidenceKind, EvidenceRef


def _event(name: str = "e1.jpg") -> Event:
    ref = EvidenceRef(kind=EvidenceKind.SNAPSHOT, name=name, sha256="0" * 64, bytes=3)
    return Event(kind="unleashed_dog", source="cam-1", evidence=(ref,))


def test_queue_survives_reopen_and_is_idempotent(tmp_path: Path) -> None:
    queue = EvidenceQueue(tmp_path / "q.db")
    event = _event()
    queue.add(event, tmp_path)
    queue.add(event, tmp_path)  # re-emitted: still one row
    queue.add(Event(kind="k", source="s"), tmp_path)  # no evidence: nothing queued
    queue.close()
    again = EvidenceQueue(tmp_path / "q.db")
    assert again.depth == 1
    assert again.due(time.time())[0].path == tmp_path / "e1.jpg"


def test_unreachable_cloud_keeps_the_file_queued_with_backoff(tmp_path: Path) -> None:
    (tmp_path / "e1.jpg").write_bytes(b"abc")
    queue = EvidenceQueue(tmp_path / "q.db")
    queue.add(_event(), tmp_path)
    uploader = EvidenceUploader(queue, f"http://127.0.0.1:{free_port()}", "gw-1", "pw", timeout_s=2)
    tried = time.time()  # the backoff counts from after this, however slow the machine
    assert uploader.upload_once(queue.due(tried)[0]) == "unreachable"
    assert queue.depth == 1
    assert queue.due(tried) == []  # backing off
    item = queue.due(time.time() + 60)[0]
    assert item.attempts == 1


def test_missing_file_is_dropped_from_the_queue_with_a_reason(tmp_path: Path, caplog) -> None:
    queue = EvidenceQueue(tmp_path / "q.db")
    queue.add(_event("gone.jpg"), tmp_path)
    uploader = EvidenceUploader(queue, "http://127.0.0.1:9", "gw-1", "pw")
    assert uploader.upload_once(queue.due(time.time())[0]) == "missing_file"
    assert queue.depth == 0
    assert "gone.jpg" in caplog.text and "cannot be read" in caplog.text


def test_an_event_the_cloud_never_learns_of_is_given_up_after_two_days(
    tmp_path: Path, caplog
) -> None:
    """404: the cloud does not know the event. Retried while the event may still be on its
    way; once it is 48 h old it is "orphaned" (evicted from the outbox, it never comes):
    counted, logged, out of the queue, the file left on disk."""
    import http.server
    import threading

    from prometheus_client import REGISTRY

    from edge.evidence_upload import ORPHAN_AFTER_S

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "e1.jpg").write_bytes(b"abc")
        queue = EvidenceQueue(tmp_path / "q.db")
        before = time.time()
        queue.add(_event(), tmp_path)
        after = time.time()
        uploader = EvidenceUploader(queue, f"http://127.0.0.1:{server.server_port}", "gw-1", "pw")
        item = queue.due(after)[0]
        assert before <= item.queued_at <= after
        assert uploader.upload_once(item, item.queued_at + 3600) == "retry"  # may be in flight
        assert queue.depth == 1
        item = queue.due(time.time() + 3600)[0]
        assert item.attempts == 1
        before = (
            REGISTRY.get_sample_value("mb_edge_evidence_uploads_total", {"outcome": "orphaned"})
            or 0
        )
        assert uploader.upload_once(item, item.queued_at + ORPHAN_AFTER_S) == "orphaned"
        assert queue.depth == 0 and (tmp_path / "e1.jpg").read_bytes() == b"abc"
        assert (
            REGISTRY.get_sample_value("mb_edge_evidence_uploads_total", {"outcome": "orphaned"})
            == before + 1
        )
        assert "e1.jpg" in caplog.text and "given up" in caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_a_queue_from_before_orphans_counts_its_rows_from_now(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "q.db")
    db.execute(
        "CREATE TABLE pending (event_id TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, "
        "PRIMARY KEY (event_id, name))"
    )
    db.execute("INSERT INTO pending (event_id, name, path) VALUES ('e', 'a.jpg', '/x/a.jpg')")
    db.commit()
    db.close()
    before = time.time()
    queue = EvidenceQueue(tmp_path / "q.db")
    after = time.time()
    (item,) = queue.due(after)
    assert before <= item.queued_at <= after
