"""Fixtures for the uplink drills: the cloud's store.

:func:`cloud_ingest` is the cloud's real ingest (``python -m cloud.ingest`` on a SQLite
database with the drill's gateway registered); :func:`cloud_store` is the small ack
consumer in tests/utils, for tests that need a store but not the cloud's checks (e.g.
gateways of the demo site that the cloud would want registered first)."""

from __future__ import annotations

import os
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

from tests.utils.services import end_process

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
        cmd = [
            sys.executable,
            "-m",
            "tests.utils.ack_consumer",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
            "--client-id",
            self.client_id,
        ]
        if self.username:
            cmd += ["--username", self.username, "--password", self.password or ""]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "connected" once subscribed
        assert b"connected" in line, line
        return self

    def stop(self) -> None:
        end_process(self.proc)

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
                return conn.execute(
                    "SELECT seq, id FROM items WHERE gateway = ? ORDER BY seq", (gateway,)
                ).fetchall()
            except sqlite3.OperationalError:
                return []

    def wait_for(self, gateway: str, count: int, timeout: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        rows = self.rows(gateway)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.rows(gateway)
        return rows


@dataclass
class CloudIngest(CloudStore):
    """The cloud's own ingest worker as a process: same interface as :class:`CloudStore`."""

    gateways: tuple = ()
    site: Path | None = None  # a site file to sync (its gateways, cameras and sensors)

    def start(self) -> CloudIngest:
        from cloud.db import make_engine, session_factory, transaction, upgrade
        from cloud.site_sync import register_gateway, sync_site
        from microbrain.site import load_site

        url = f"sqlite:///{self.db}"
        upgrade(url)
        engine = make_engine(url)
        with transaction(session_factory(engine)) as session:
            if self.site is not None:
                sync_site(session, load_site(self.site))
            for path in self.gateways:
                register_gateway(
                    session,
                    path.community,
                    path.compound,
                    path.gateway,
                    building="b1",
                    sensors=("b1-elevator-a",),
                )  # gateway_rig's events
        engine.dispose()
        env = {
            **os.environ,
            "MB_CLOUD_DATABASE_URL": url,
            "MB_CLOUD_BROKER_URL": f"mqtt://127.0.0.1:{self.port}",
            # a stable id: the broker keeps this worker's session across a stall
            "MB_CLOUD_INGEST_CLIENT_ID": self.client_id,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloud.ingest"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert b"ingest ready" in line, line
        return self

    def rows(self, gateway: str) -> list[tuple[int, str]]:
        if not self.db.exists():
            return []
        gateway_id = gateway.rsplit("/", 1)[-1]
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                "SELECT seq, id FROM events WHERE gateway = ? ORDER BY seq", (gateway_id,)
            ).fetchall()


@pytest.fixture
def cloud_ingest(tmp_path: Path) -> Iterator[Callable[..., CloudIngest]]:
    """``cloud_ingest(port, gateway_path, …, site=None)`` → the cloud's ingest, started,
    the gateways registered (or ``site``, a site file, synced)."""
    started: list[CloudIngest] = []

    def make(port: int, *gateways: object, site: Path | None = None) -> CloudIngest:
        db = tmp_path / f"cloud-{len(started)}.db"
        ingest = CloudIngest(db, port, gateways=gateways, site=site).start()
        started.append(ingest)
        return ingest

    yield make
    for ingest in started:
        ingest.stop()


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
