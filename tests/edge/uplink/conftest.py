"""Fixtures for the uplink drills: the cloud's store (today the ack consumer in
tests/utils; switching to the cloud's real ingest changes only :func:`cloud_store`)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class CloudStore:
    """The store the drills check: every (gateway, seq, id) the cloud committed."""

    db: Path
    port: int
    username: str | None = None
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    client_id: str = field(default_factory=lambda: f"ack-{uuid.uuid4().hex[:8]}")

    def start(self) -> CloudStore:
        cmd = [sys.executable, "-m", "tests.utils.ack_consumer", "--port", str(self.port),
               "--db", str(self.db), "--client-id", self.client_id]
        if self.username:
            cmd += ["--username", self.username, "--password", self.password or ""]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "connected" once subscribed
        assert b"connected" in line, line
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def rows(self, gateway: str) -> list[tuple[int, str]]:
        """(seq, id) stored for ``gateway`` ("community/compound/gateway"), by seq."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as conn:
            try:
                return conn.execute("SELECT seq, id FROM items WHERE gateway = ? ORDER BY seq",
                                    (gateway,)).fetchall()
            except sqlite3.OperationalError:
                return []

    def wait_for(self, gateway: str, count: int, timeout: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        rows = self.rows(gateway)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.rows(gateway)
        return rows


@pytest.fixture
def cloud_store(tmp_path: Path) -> Iterator[Callable[..., CloudStore]]:
    """``cloud_store(port, username=None, password=None)`` → a started store."""
    started: list[CloudStore] = []

    def make(port: int, username: str | None = None, password: str | None = None) -> CloudStore:
        store = CloudStore(tmp_path / f"store-{len(started)}.db", port, username, password).start()
        started.append(store)
        return store

    yield make
    for store in started:
        store.stop()
