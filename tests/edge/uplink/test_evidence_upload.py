"""The evidence queue keeps every file until the cloud stored it (the happy path runs
end to end through the real cloud in tests/microbrain/test_up.py)."""

from __future__ import annotations

import time
from pathlib import Path

from edge.evidence_upload import EvidenceQueue, EvidenceUploader
from microbrain.protocol import Event, EvidenceRef
from tests.utils.services import free_port


def _event(name: str = "e1.jpg") -> Event:
    ref = EvidenceRef(kind="snapshot", name=name, sha256="0" * 64, bytes=3)
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
    assert uploader.upload_once(queue.due(time.time())[0]) == "unreachable"
    assert queue.depth == 1
    assert queue.due(time.time()) == []  # backing off
    item = queue.due(time.time() + 60)[0]
    assert item.attempts == 1


def test_missing_file_is_dropped_from_the_queue_with_a_reason(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    queue = EvidenceQueue(tmp_path / "q.db")
    queue.add(_event("gone.jpg"), tmp_path)
    uploader = EvidenceUploader(queue, "http://127.0.0.1:9", "gw-1", "pw")
    assert uploader.upload_once(queue.due(time.time())[0]) == "missing_file"
    assert queue.depth == 0
    assert "gone.jpg" in caplog.text and "cannot be read" in caplog.text
