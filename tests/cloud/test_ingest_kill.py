"""SIGKILL the ingest process around its commits: after a restart nothing is lost and
nothing is stored twice. The ingest runs as a real subprocess against a private
Mosquitto with persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import func, select

from cloud.db import models as m
from tests.cloud.helpers import ack_of, mqtt_client, publish_all, reading, topic, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud.ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ingest ready" once subscribed
    assert b"ingest ready" in line, log.read_text()[-2000:]
    return proc


def _stored(factory, gateway: str) -> tuple[int, int]:
    with factory() as s:
        rows = s.scalar(
            select(func.count()).select_from(m.ReadingRow).where(m.ReadingRow.gateway == gateway)
        )
        seqs = s.scalar(
            select(func.count(func.distinct(m.ReadingRow.seq))).where(
                m.ReadingRow.gateway == gateway
            )
        )
        return rows, seqs


def test_sigkill_around_commits_loses_and_duplicates_nothing(
    mosquitto, cloud_url, factory, gw, tmp_path
):
    total = 3000
    env = {
        **os.environ,
        "MB_CLOUD_DATABASE_URL": cloud_url,
        "MB_CLOUD_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
        "MB_CLOUD_INGEST_CLIENT_ID": f"kill-{uuid.uuid4().hex[:8]}",
        "MB_CLOUD_INGEST_GROUP": "cloud",
        "MB_CLOUD_SESSION_EXPIRY_S": "600",
        "MB_CLOUD_INGEST_BATCH_SIZE": "100",
        "MB_CLOUD_ENVIRONMENT": "test",
    }
    acked: set[int] = set()
    at_kill: list[int] = []
    log = tmp_path / "ingest.log"
    proc = _start(env, log)
    try:
        with mqtt_client("127.0.0.1", mosquitto.port) as pub:

            def on_ack(_c, _u, msg):
                for first, last in ack_of(msg).ranges:
                    acked.update(range(first, last + 1))

            pub.on_message = on_ack
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            # The stream goes out in three parts. The process is killed once half of the
            # first part is stored, the second part goes into its persistent session while it
            # is dead, it is killed again halfway through the second, and the third waits for
            # the last start. Each kill lands before the stream's end however fast or slow
            # this machine is: the ingest cannot run ahead of what it has been sent.
            third = total // 3
            part1, part2, part3 = (range(k * third + 1, (k + 1) * third + 1) for k in range(3))

            def kill_once_stored(count: int) -> None:
                wait_for(lambda: _stored(factory, gw.gateway)[0] >= count, timeout=60, every=0.005)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                at_kill.append(_stored(factory, gw.gateway)[0])

            publish_all(pub, [topic(gw, reading(s)) for s in part1])
            kill_once_stored(third // 2)
            publish_all(pub, [topic(gw, reading(s)) for s in part2])
            proc = _start(env, log)
            kill_once_stored(third + third // 2)
            publish_all(pub, [topic(gw, reading(s)) for s in part3])
            proc = _start(env, log)
            wait_for(lambda: _stored(factory, gw.gateway)[0] >= total, timeout=90)
            wait_for(lambda: len(acked) >= total, timeout=30)
        assert _stored(factory, gw.gateway) == (total, total)
        print("stored when killed:", at_kill)
        assert acked == set(range(1, total + 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
