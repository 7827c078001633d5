"""Real services for tests: the machine's Mosquitto, private Mosquittos, PostgreSQL.

No mocks: every fixture here talks to the real thing or fails with the command that
starts it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from microbrain.broker.embedded import free_port, minimal_mosquitto_conf, mosquitto_executable

BROKER_HOST = os.environ.get("MB_TEST_BROKER_HOST", "127.0.0.1")
BROKER_PORT = int(os.environ.get("MB_TEST_BROKER_PORT", "1883"))
# the server the tests create their databases on; its database part is not used: the
# fresh databases are created from the built-in 'postgres' one, which always exists
PG_URL = os.environ.get("MB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def end_process(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Signal a child and wait for it; kill it if it does not exit within ``timeout``.
    A paused (SIGSTOP) child is continued first, so it can act on the signal."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class MosquittoProcess:
    """A private ``mosquitto`` the test owns: it can be stopped, killed, restarted."""

    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        exe = mosquitto_executable()
        if exe is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        with self.log.open("ab") as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # a broken config: say why now, not after the whole timeout
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(
                    f"mosquitto exited with {code} at start-up ({self.config}): {self._log_tail()}"
                )
            if port_open("127.0.0.1", self.port, 0.2):
                return self
            time.sleep(0.05)
        self.stop()  # running but not listening: no orphan holding the port
        raise TimeoutError(
            f"mosquitto did not listen on 127.0.0.1:{self.port} within "
            f"{timeout:g} s: {self._log_tail()}"
        )

    def _log_tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no log)"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        end_process(self.proc, sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def write_mosquitto_conf(directory: Path, port: int, extra: str = "") -> Path:
    """A private broker config with the settings ``microbrain up`` runs (persistence,
    autosave, queue limits, packet size: :func:`minimal_mosquitto_conf`); ``extra``
    adds auth/ACL lines (``allow_anonymous``/``password_file`` there replace anonymous)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "mosquitto.conf"
    conf.write_text(minimal_mosquitto_conf("127.0.0.1", port, directory, extra))
    return conf


@contextmanager
def private_mosquitto(
    directory: Path, extra: str = "", conf: Path | None = None, port: int | None = None
) -> Iterator[MosquittoProcess]:
    port = port or free_port()
    conf = conf or write_mosquitto_conf(directory, port, extra)
    broker = MosquittoProcess(conf, port, directory / "mosquitto.log").start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards; yields its URL."""
    import psycopg  # the postgres extra

    name = f"mb_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, dbname="postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as err:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_URL} ({err}); start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from err
    try:
        yield urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(PG_URL, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
